# You can run this module directly with:
#    twistd -ny emailserver.tac
"""
The tutorial's console email server, on Python 3.

It listens on SMTPTUT_LISTEN (default tcp:2525:interface=127.0.0.1), takes mail
for the recipients SMTPTUT_ACCEPT names (default: the local part "console") and
prints each message it receives.  The pieces it is built from
(ConsoleMessageDelivery, ConsoleMessage, ConsoleSMTPFactory, SimpleRealm) are in
smtptut/server.py.
"""

from twisted.application import service

from smtptut.config import ServerSettings
from smtptut.errors import exitOnBadInput
from smtptut.server import makeServerService


def main():
    settings = exitOnBadInput("emailserver.tac", ServerSettings.fromEnvironment)
    a = service.Application("Console SMTP Server")
    makeServerService(settings).setServiceParent(a)
    return a


application = main()
