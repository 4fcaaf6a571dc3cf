"""The inbox's settings: the HTTP listener, its users, and where release may send."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smtptut import config
from smtptut.config import AcceptPolicy, checkListen, isLoopbackListen
from smtptut.settings import ConfigError, Setting, readSettings

#: Where C{twistd smtptut-server} serves the inbox (Mailpit's and MailHog's port).
PLUGIN_HTTP = "tcp:8025:interface=127.0.0.1"
#: C{emailserver.tac} stays the tutorial's console server unless told.
OFF = "off"


def parseHTTP(text: str) -> str:
    """
    A Twisted server endpoint string, or C{off}.
    """
    if text.lower() == OFF:
        return OFF
    try:
        checkListen(text, "SMTPTUT_HTTP")
    except config.ConfigError as e:
        raise ValueError(str(e).partition(": ")[2]) from None
    return text


def parseUsersFile(text: str) -> str:
    """
    A users file made by C{smtptut passwd}: it must exist and be readable.
    """
    try:
        with open(text, "rb"):
            pass
    except OSError as e:
        raise ValueError(f"{text}: {e.strerror}") from None
    return text


def parseReleaseTo(text: str) -> AcceptPolicy:
    """
    Recipient patterns in the C{SMTPTUT_ACCEPT} syntax.
    """
    try:
        return AcceptPolicy.parse(text, "SMTPTUT_RELEASE_TO")
    except config.ConfigError as e:
        raise ValueError(str(e).partition(": ")[2]) from None


def parseRelay(text: str) -> tuple[str, int]:
    """
    C{host[:port]} of the relay release goes through (port 25 by default).
    """
    try:
        return config.parseHostPort(text, 25, "SMTPTUT_RELEASE_RELAY")
    except config.ConfigError as e:
        raise ValueError(str(e).partition(": ")[2]) from None


#: Every inbox setting (to merge into the server's table after the refactor).
INBOX_SETTINGS: tuple[Setting[object], ...] = (
    Setting(
        "http",
        "SMTPTUT_HTTP",
        parseHTTP,
        "",
        "the inbox's HTTP listener, a Twisted server endpoint string, or off",
        f"{PLUGIN_HTTP} (twistd smtptut-server), off (emailserver.tac)",
        "ENDPOINT",
    ),
    Setting(
        "users",
        "SMTPTUT_HTTP_USERS",
        parseUsersFile,
        None,
        "HTTP Basic accounts for the inbox (a users file made by smtptut passwd);"
        " required off loopback",
        metavar="FILE",
    ),
    Setting(
        "releaseTo",
        "SMTPTUT_RELEASE_TO",
        parseReleaseTo,
        None,
        "recipients a stored message may be released to (the SMTPTUT_ACCEPT"
        " syntax); without it release is refused",
        metavar="PATTERNS",
    ),
    Setting(
        "releaseRelay",
        "SMTPTUT_RELEASE_RELAY",
        parseRelay,
        None,
        "release through this host[:port] instead of the recipients' MX",
        metavar="HOST[:PORT]",
    ),
)


@dataclass(frozen=True)
class InboxSettings:
    """
    What the inbox needs: where to listen, who may use it, where release may go.

    @ivar http: an endpoint string, or L{OFF}.
    """

    http: str = OFF
    users: str | None = None
    releaseTo: AcceptPolicy | None = None
    releaseRelay: tuple[str, int] | None = None

    @property
    def enabled(self) -> bool:
        """
        Whether the inbox listens at all.
        """
        return self.http != OFF

    @property
    def loopback(self) -> bool:
        """
        Whether the listener is on loopback only.
        """
        return isLoopbackListen(self.http)

    @classmethod
    def fromEnvironment(
        cls,
        environ: Mapping[str, str],
        options: Mapping[str, str] | None = None,
        defaultHTTP: str = OFF,
    ) -> InboxSettings:
        """
        Read the settings; C{defaultHTTP} is the listener when none is given.

        @raise ConfigError: naming the option or variable that is wrong, or
            C{SMTPTUT_HTTP} off loopback without C{SMTPTUT_HTTP_USERS}.
        """
        values = readSettings(INBOX_SETTINGS, environ, options)
        values["http"] = values["http"] or defaultHTTP
        settings = cls(**values)
        if settings.enabled and not settings.loopback and settings.users is None:
            label = (
                "--http" if options and "SMTPTUT_HTTP" in options else "SMTPTUT_HTTP"
            )
            raise ConfigError(
                label,
                f"{settings.http!r} is not loopback-only: set SMTPTUT_HTTP_USERS"
                " (a users file made by smtptut passwd) to require a login",
            )
        return settings
