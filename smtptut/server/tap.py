"""``twistd smtptut-server``: options made from SERVER_SETTINGS, and the service."""

from __future__ import annotations

import os

from twisted.application import service
from twisted.python import usage

from smtptut.server.service import makeServerService
from smtptut.server.settings import PLUGIN_HTTP, SERVER_SETTINGS, ServerSettings
from smtptut.settings import ConfigError, labels, optParameters
from smtptut.twistdlog import LoggedService


class Options(usage.Options):
    """
    One option per C{SMTPTUT_*} server setting; an option given wins over the
    variable, which wins over the default.
    """

    synopsis = "[options]"
    longdesc = (
        "The smtptut console ESMTP server: a development mail sink that prints"
        " and/or stores (Maildir) the mail applications send it.  Every option"
        " can also be set with the environment variable named in its help."
    )
    optParameters = optParameters(SERVER_SETTINGS)

    def postOptions(self) -> None:
        given = {
            setting.variable: self[setting.optionName]
            for setting in SERVER_SETTINGS
            if setting.optionName and self[setting.optionName] is not None
        }
        #: How each setting was given (C{--maildir} or C{SMTPTUT_MAILDIR}),
        #: for the errors found when the service is made.
        self["labels"] = labels(SERVER_SETTINGS, given)
        try:
            # The plugin serves the inbox unless told not to (issue 11).
            self["settings"] = ServerSettings.fromEnvironment(
                os.environ, given, defaultHTTP=PLUGIN_HTTP
            )
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> service.IService:
    """
    The console server for the parsed C{options}, on the global reactor,
    logging through L{smtptut.logs}' observer, installed where twistd's
    options say (L{smtptut.twistdlog}).
    """
    from twisted.internet import reactor

    settings = options["settings"]
    try:
        server = makeServerService(settings, reactor, program="smtptut-server")
    except ConfigError as e:
        # A Maildir that cannot be written, a certificate that cannot be
        # loaded: named as the user gave it.
        named = e.renamed(options["labels"].get(e.setting, e.setting))
        raise usage.UsageError(str(named)) from None
    # twistd's own options (-l, --logger) are the parent's, when under twistd.
    logged = LoggedService(options.parent, settings.logFormat)
    server.setServiceParent(logged)
    return logged
