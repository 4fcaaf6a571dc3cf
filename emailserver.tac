# You can run this module directly with:
#    twistd -ny emailserver.tac
"""
The tutorial's console email server, on Python 3, as a development mail sink.

It listens on SMTPTUT_LISTEN (default tcp:2525:interface=127.0.0.1), takes mail
for the recipients SMTPTUT_ACCEPT names (default: the local part "console"),
prints each message it receives and, with SMTPTUT_MAILDIR, stores it; the
other SMTPTUT_* settings are in README.md.  The pieces it is built from
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
    sink = exitOnBadInput("emailserver.tac", lambda: makeServerService(settings))
    sink.setServiceParent(a)
    return a


application = main()
