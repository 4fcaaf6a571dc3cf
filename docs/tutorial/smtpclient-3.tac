import os

from twisted.application import service

application = service.Application("SMTP Client Tutorial")

from twisted.application import internet
from twisted.internet import protocol

smtpClientFactory = protocol.ClientFactory()

# smtptut: the port comes from SMTPTUT_PORT (the tutorial's 25 by default), so
# that this step can talk to a console server on a port you may open.
port = int(os.environ.get("SMTPTUT_PORT", "25"))

smtpClientService = internet.TCPClient('localhost', port, smtpClientFactory)
smtpClientService.setServiceParent(application)
