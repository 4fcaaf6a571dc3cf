from __future__ import print_function  # Python 3: a no-op now, kept as the tutorial has it
# Python 3: there is no StringIO module; io.BytesIO is the file-like object
# for bytes, which is what Twisted sends.  (The tutorial: import StringIO)
import io
import os

from twisted.application import service

application = service.Application("SMTP Client Tutorial")

from twisted.application import internet
from twisted.internet import protocol
from twisted.mail import smtp

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

def getMailExchange(host):
    return 'localhost'

smtpClientFactory = SMTPClientFactory()

# smtptut: the port comes from SMTPTUT_PORT (the tutorial's 25 by default).
port = int(os.environ.get("SMTPTUT_PORT", "25"))

# smtptut: the tutorial asks for 'example.net', the domain of its recipient;
# this asks for the domain of SMTPTUT_TO (example.net by default).
domain = SMTPTutorialClient.mailTo.split('@')[-1]

smtpClientService = internet.TCPClient(
    getMailExchange(domain), port, smtpClientFactory)
smtpClientService.setServiceParent(application)
