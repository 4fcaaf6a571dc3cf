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

import os

from twisted.application import service

from smtptut.config import ConfigError, ServerSettings
from smtptut.errors import exitOnBadInput
from smtptut.inbox.service import makeSinkWithInbox
from smtptut.inbox.settings import InboxSettings
from smtptut.settings import ConfigError as SettingError


def inboxSettings():
    try:
        return InboxSettings.fromEnvironment(os.environ)
    except SettingError as e:
        raise ConfigError(str(e)) from None


def main():
    settings = exitOnBadInput("emailserver.tac", ServerSettings.fromEnvironment)
    # Inbox wiring (issue 11): console-only unless SMTPTUT_HTTP is set.
    inbox = exitOnBadInput("emailserver.tac", inboxSettings)
    a = service.Application("Console SMTP Server")
    sink = exitOnBadInput(
        "emailserver.tac",
        lambda: makeSinkWithInbox(settings, inbox, program="emailserver.tac"),
    )
    sink.setServiceParent(a)
    return a


application = main()
