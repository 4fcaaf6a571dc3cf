import os

from twisted.application import service

application = service.Application("SMTP Client Tutorial")

from twisted.application import internet
from twisted.internet import protocol

smtpClientFactory = protocol.ClientFactory()

from twisted.mail import smtp
smtpClientFactory.protocol = smtp.ESMTPClient

# smtptut: the port comes from SMTPTUT_PORT (the tutorial's 25 by default).
port = int(os.environ.get("SMTPTUT_PORT", "25"))

smtpClientService = internet.TCPClient('localhost', port, smtpClientFactory)
smtpClientService.setServiceParent(application)
