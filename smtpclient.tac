# You can run this module directly with:
#    twistd -ny smtpclient.tac
"""
The tutorial's SMTP client, final step: look up the mail exchange of each
recipient's domain, connect, send the message, report, stop the reactor.

Settings come from SMTPTUT_* variables (see README.md); the machinery is in
smtptut/client/.
"""

import os

from twisted.application import service
from twisted.internet import reactor

from smtptut.client import exchange
from smtptut.client.delivery import (
    Report,
    SMTPClientService,
    loadClientJob,
    lookupFailed,
    stopWhenDone,
)
from smtptut.client.protocol import SMTPClientFactory, SMTPTutorialClient
from smtptut.errors import exitOnBadInput

application = service.Application("SMTP Client Tutorial")

# The tutorial's SMTPTutorialClient has its sender, recipient and message
# built in; here they come from the settings, one envelope per domain.
settings, envelopes = exitOnBadInput(
    "smtpclient.tac", lambda: loadClientJob(os.environ)
)
resolver = exchange.makeResolver(settings.nameservers, lifetime=settings.dnsLifetime)
# Stops the reactor once every domain is settled, as the tutorial's sentMail
# does after its one message; at most settings.concurrency domains at a time.
report = Report(len(envelopes), stopWhenDone(reactor), concurrency=settings.concurrency)
# On SIGTERM or Ctrl-C: no new connection, the rest "deferred (interrupted)".
report.watchShutdown(reactor, envelopes.values())


def getMailExchange(host):
    # All the exchanges, by preference, with their addresses (dnspython).
    return exchange.getMailExchange(reactor, host, resolver, settings.relay)


def cbMailExchange(exchanges, envelope):
    smtpClientFactory = SMTPClientFactory(
        [envelope],
        settings.helo,
        secret=settings.secret,
        timeout=settings.timeout,
        username=settings.username,
        clock=reactor,
    )
    # The protocol it builds, as the tutorial's factory says (and the default).
    smtpClientFactory.protocol = SMTPTutorialClient

    # Where the tutorial has internet.TCPClient(exchange, port,
    # smtpClientFactory): TCPClient tries one host once, with no timeout;
    # SMTPClientService tries every address of every exchange in turn, each
    # connection with its timeouts and TLS policy (see its docstring).
    smtpClientService = SMTPClientService(
        reactor, exchanges, smtpClientFactory, settings, report
    )
    smtpClientService.setServiceParent(application)


def ebMailExchange(failure, envelope):
    report.domainDone(lookupFailed(failure, envelope))


for domain, envelope in envelopes.items():
    getMailExchange(domain).addCallbacks(
        cbMailExchange,
        ebMailExchange,
        callbackArgs=(envelope,),
        errbackArgs=(envelope,),
    )
