import os

from twisted.application import service

application = service.Application("SMTP Client Tutorial")

from twisted.application import internet
from twisted.internet import protocol
from twisted.mail import smtp

class SMTPClientFactory(protocol.ClientFactory):
    protocol = smtp.ESMTPClient

    def buildProtocol(self, addr):
        return self.protocol(secret=None, identity='example.com')
# The overridden method does almost the same thing as the base implementation:
# the only change is that it passes values for two arguments to
# twisted.mail.smtp.ESMTPClient 's initializer. The secret argument is used for
# SMTP authentication (which we will not attempt yet). The identity argument is
# used as a to identify ourselves Another minor change to note is that the
# protocol attribute is now defined in the class definition, rather than tacked
# onto an instance after one is created. This means it is a class attribute,
# rather than an instance attribute, now, which makes no difference as far as
# this example is concerned. There are circumstances in which the difference is
# important: be sure you understand the implications of each approach when
# creating your own factories.

# One other change is required: instead of instantiating
# twisted.internet.protocol.ClientFactory , we will now instantiate
# SMTPClientFactory :
smtpClientFactory = SMTPClientFactory()

# smtptut: the port comes from SMTPTUT_PORT (the tutorial's 25 by default).
port = int(os.environ.get("SMTPTUT_PORT", "25"))

smtpClientService = internet.TCPClient('localhost', port, smtpClientFactory)
smtpClientService.setServiceParent(application)
