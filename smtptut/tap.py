"""``twistd smtptut-server``: the console server's command-line options and service."""

from __future__ import annotations

import os
from typing import Any

from twisted.application import service
from twisted.python import usage

from smtptut import settings as tables
from smtptut.config import SERVER_SETTINGS, ConfigError, ServerSettings
from smtptut.inbox.settings import INBOX_SETTINGS, PLUGIN_HTTP, InboxSettings


def _option(variable: str) -> str:
    return variable.removeprefix("SMTPTUT_").lower().replace("_", "-")


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
    optParameters = [
        [
            _option(variable),
            None,
            None,
            f"{meaning} [{variable}, default: {default or 'none'}]",
        ]
        for variable, default, meaning in SERVER_SETTINGS
    ] + tables.optParameters(INBOX_SETTINGS)  # inbox wiring (issue 11)

    def postOptions(self) -> None:
        environ = dict(os.environ)
        for variable, _, _ in SERVER_SETTINGS:
            value = self[_option(variable)]
            if value is not None:
                environ[variable] = value
        try:
            self["settings"] = ServerSettings.fromEnvironment(environ)
        except ConfigError as e:
            raise usage.UsageError(self._nameTheOption(str(e))) from None
        # Inbox wiring (issue 11): the plugin serves the inbox unless told not to.
        given = {
            s.variable: self[s.optionName]
            for s in INBOX_SETTINGS
            if s.optionName and self[s.optionName] is not None
        }
        try:
            self["inbox"] = InboxSettings.fromEnvironment(
                os.environ, given, defaultHTTP=PLUGIN_HTTP
            )
        except tables.ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _nameTheOption(self, message: str) -> str:
        """
        Errors name the variable; name the option instead when one was given.
        """
        for variable, _, _ in SERVER_SETTINGS:
            option = _option(variable)
            if self[option] is not None and message.startswith(variable + ":"):
                return "--" + option + message[len(variable) :]
        return message


def makeService(options: Any) -> service.IService:
    """
    The console server for the parsed C{options}.
    """
    try:
        # Inbox wiring (issue 11): the sink and its inbox.
        from smtptut.inbox.service import makeSinkWithInbox

        return makeSinkWithInbox(
            options["settings"], options["inbox"], program="smtptut-server"
        )
    except ConfigError as e:
        raise usage.UsageError(str(e)) from None
