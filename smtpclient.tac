# You can run this module directly with:
#    twistd -ny smtpclient.tac
"""
The tutorial's SMTP client, final step: look up the mail exchange of each
recipient's domain, connect, send the message, report, stop the reactor.

Settings come from SMTPTUT_* variables (see README.md); the machinery --
SMTPTutorialClient, SMTPClientFactory, getMailExchange -- is in smtptut/.
"""

from twisted.application import service
from twisted.internet import reactor
from twisted.internet.defer import DeferredSemaphore

from smtptut.delivery import DeliveryService, Report, lookupFailed, stopWhenDone
from smtptut.errors import exitOnBadInput
from smtptut.exchange import getMailExchange, makeResolver
from smtptut.sending import loadClientJob

settings, envelopes = exitOnBadInput("smtpclient.tac", loadClientJob)
resolver = makeResolver(settings.nameservers, lifetime=settings.dnsLifetime)
report = Report(len(envelopes), stopWhenDone(reactor))
# On SIGTERM or Ctrl-C: no new connection, the rest "deferred (interrupted)".
report.watchShutdown(reactor, envelopes.values())
# At most this many domains are delivered to at the same time.
limit = DeferredSemaphore(settings.concurrency)

application = service.Application("SMTP Client Tutorial")


def cbMailExchange(exchange, envelope):
    smtpClientService = DeliveryService(
        reactor, exchange, envelope, settings, report, limit
    )
    smtpClientService.setServiceParent(application)


def ebMailExchange(failure, envelope):
    report.domainDone(lookupFailed(failure, envelope))


for domain, envelope in envelopes.items():
    getMailExchange(reactor, domain, resolver, settings.relay).addCallbacks(
        cbMailExchange,
        ebMailExchange,
        callbackArgs=(envelope,),
        errbackArgs=(envelope,),
    )
