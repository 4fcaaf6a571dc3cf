from __future__ import print_function  # Python 3: a no-op now, kept as the tutorial has it
# Python 3: there is no StringIO module; io.BytesIO is the file-like object
# for bytes, which is what Twisted sends.  (The tutorial: import StringIO)
import io
import os

from twisted.application import service

application = service.Application("SMTP Client Tutorial")

from twisted.application import internet
from twisted.internet import protocol
from twisted.internet import defer
from twisted.mail import smtp, relaymanager

class SMTPTutorialClient(smtp.ESMTPClient):
    mailFrom = "tutorial_sender@example.com"
    # smtptut: the recipient comes from SMTPTUT_TO (the tutorial's by default).
    mailTo = os.environ.get("SMTPTUT_TO", "tutorial_recipient@example.net")
    # Python 3: the message is bytes (b'''...'''), as the socket wants; with a
    # str the client fails after DATA ("TypeError: replace() argument 1 must
    # be str, not bytes") and the transaction never ends.
    mailData = b'''\
Date: Fri, 6 Feb 2004 10:14:39 -0800
From: Tutorial Guy <tutorial_sender@example.com>
To: Tutorial Gal <tutorial_recipient@example.net>
Subject: Tutorate!

Hello, how are you, goodbye.
'''

    def getMailFrom(self):
        result = self.mailFrom
        self.mailFrom = None
        return result

    def getMailTo(self):
        return [self.mailTo]

    def getMailData(self):
        # Python 3: io.BytesIO instead of StringIO.StringIO.
        return io.BytesIO(self.mailData)

    def sentMail(self, code, resp, numOk, addresses, log):
        print('Sent', numOk, 'messages')

        from twisted.internet import reactor
        reactor.stop()

class SMTPClientFactory(protocol.ClientFactory):
    protocol = SMTPTutorialClient

    def buildProtocol(self, addr):
        return self.protocol(secret=None, identity='example.com')

# smtptut: SMTPTUT_NAMESERVER (HOST or HOST:PORT) names a DNS server to ask
# first, for a run on loopback; unset, resolver stays None and MXCalculator
# asks the servers in /etc/resolv.conf, as in the tutorial.
resolver = None
nameserver = os.environ.get("SMTPTUT_NAMESERVER")
if nameserver:
    from twisted.names import client
    nsHost, _, nsPort = nameserver.partition(':')
    resolver = client.createResolver(servers=[(nsHost, int(nsPort or 53))])
    # smtptut: MXCalculator finds the exchange's *name* with this resolver,
    # but TCPClient looks that name up with the reactor's resolver (the
    # system's), which has never heard of it: the connection fails with a
    # DNSLookupError that the factory ignores, and nothing happens.  So the
    # reactor gets the same resolver.
    from twisted.internet import reactor
    reactor.installResolver(resolver)

def getMailExchange(host):
    def cbMX(mxRecord):
        return str(mxRecord.name)
    return relaymanager.MXCalculator(resolver).getMX(host).addCallback(cbMX)

# smtptut: the port comes from SMTPTUT_PORT (the tutorial's 25 by default).
port = int(os.environ.get("SMTPTUT_PORT", "25"))

def cbMailExchange(exchange):
    smtpClientFactory = SMTPClientFactory()

    smtpClientService = internet.TCPClient(exchange, port, smtpClientFactory)
    smtpClientService.setServiceParent(application)

# smtptut: the tutorial asks for 'example.net', the domain of its recipient;
# this asks for the domain of SMTPTUT_TO (example.net by default).
domain = SMTPTutorialClient.mailTo.split('@')[-1]

getMailExchange(domain).addCallback(cbMailExchange)
