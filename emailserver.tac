# You can run this module directly with:
#    twistd -ny emailserver.tac
"""
The tutorial's console email server, on Python 3, as a development mail sink.

It listens on SMTPTUT_LISTEN (default tcp:2525:interface=127.0.0.1), takes mail
for the recipients SMTPTUT_ACCEPT names (default: the local part "console"),
prints each message it receives and, with SMTPTUT_MAILDIR, stores it; the
other SMTPTUT_* settings are in README.md.  The pieces (ConsoleMessageDelivery,
ConsoleSMTPFactory, SimpleRealm in the portal) are in smtptut/server/.
"""

from twisted.application import service
from twisted.internet import reactor

from smtptut.errors import exitOnBadInput
from smtptut.server.factory import ConsoleSMTPFactory
from smtptut.server.service import (
    SinkService,
    makeDelivery,
    makeServerService,
    sinkPortal,
    sinkTLS,
)
from smtptut.server.settings import ServerSettings
from smtptut.twistdlog import installLogObserver


def main():
    settings = exitOnBadInput("emailserver.tac", ServerSettings.fromEnvironment)
    a = service.Application("Console SMTP Server")
    # A log observer cheaper than twistd's, in SMTPTUT_LOGFORMAT (README: Logs).
    installLogObserver(a, settings.logFormat)
    if settings.httpEnabled:
        # SMTPTUT_HTTP is set: the sink with its web inbox (smtptut/inbox/).
        sink = exitOnBadInput(
            "emailserver.tac", lambda: makeServerService(settings, reactor)
        )
        sink.setServiceParent(a)
        return a
    # The tutorial's ConsoleMessageDelivery, printing (and storing) messages.
    delivery = exitOnBadInput(
        "emailserver.tac", lambda: makeDelivery(settings, reactor, reactor)
    )
    # The tutorial's Portal(SimpleRealm()) with its checker.
    portal = sinkPortal(settings, delivery, reactor)
    tls = exitOnBadInput("emailserver.tac", lambda: sinkTLS(settings))
    # In the place of the tutorial's strports.service(listen, factory): it
    # also waits for transactions in flight when the server stops.
    factory = ConsoleSMTPFactory(reactor, delivery, portal, settings, tls)
    SinkService(settings, factory, reactor).setServiceParent(a)
    return a


application = main()
