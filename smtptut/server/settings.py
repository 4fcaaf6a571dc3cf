"""The server's settings: the SERVER_SETTINGS table, ServerSettings and the AcceptPolicy."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smtptut.addresses import AddressError, checkHostName, normalLiteral, parseAddress
from smtptut.logs import LogFormat
from smtptut.settings import (
    ConfigError,
    Setting,
    labels,
    parseAs,
    parseEndpoint,
    parseFlag,
    parseHostPort,
    parsePositiveInt,
    parseReadableFile,
    parseSeconds,
    readSettings,
)

DEFAULT_LISTEN = "tcp:2525:interface=127.0.0.1"
DEFAULT_ACCEPT = "console"
DEFAULT_MAX_SIZE = 25 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 100
DEFAULT_MAX_ERRORS = 20
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_SHUTDOWN_GRACE = 10.0
#: Postfix's smtpd_timeout: one command line, from its first octet to its end.
DEFAULT_COMMAND_TIMEOUT = 300.0
#: A whole session, however busy (Postfix has no such bound; an hour is
#: plenty for a development sink and frees a slot a trickling client holds).
DEFAULT_SESSION_TIMEOUT = 3600.0
#: Postfix's smtpd_client_connection_count_limit.
DEFAULT_MAX_PEER_CONNECTIONS = 50
#: The largest SMTPTUT_MAX_SIZE: 1 TiB (a bound, so that a typo such as
#: 10^26 is an error and not an unlimited sink).
MAX_MAX_SIZE = 2**40
#: The longest any server timeout may be: a day.
MAX_TIMEOUT = 86400.0
#: SMTPTUT_HTTP's value for no inbox (emailserver.tac's default).
HTTP_OFF = "off"
#: Where C{twistd smtptut-server} serves the inbox (Mailpit's and MailHog's port).
PLUGIN_HTTP = "tcp:8025:interface=127.0.0.1"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class AcceptPolicy:
    """
    Which recipients the console server takes: C{console}, C{user@domain},
    C{@domain} or C{*}, as in C{SMTPTUT_ACCEPT}.
    """

    patterns: tuple[str, ...] = (DEFAULT_ACCEPT,)

    @classmethod
    def parse(cls, text: str, setting: str = "SMTPTUT_ACCEPT") -> AcceptPolicy:
        """
        Parse a comma-separated list of patterns.
        """
        patterns = tuple(p.lower() for p in _split(text))
        if not patterns:
            raise ConfigError(setting, "no recipient pattern given")
        normal = []
        for pattern in patterns:
            local, domain = "", ""
            if pattern == "*" or pattern.startswith("@"):
                if pattern != "*" and len(pattern) == 1:
                    raise ConfigError(setting, f"{pattern!r} names no domain")
                domain = pattern[1:]
            elif "@" in pattern:
                address = parseAs(setting, parseAddress, pattern)
                local, domain = address.local, address.domain
            elif any(c.isspace() for c in pattern):
                raise ConfigError(setting, f"{pattern!r} contains spaces")
            if domain.startswith("["):
                # Compared lower-cased with a RCPT's literal in the same form.
                try:
                    pattern = f"{local}@{normalLiteral(domain).lower()}"
                except AddressError:
                    raise ConfigError(
                        setting, f"{pattern!r} has a malformed address literal"
                    ) from None
            normal.append(pattern)
        return cls(tuple(normal))

    def accepts(self, local: str, domain: str) -> bool:
        """
        Whether mail for C{local@domain} is accepted.
        """
        local, domain = local.lower(), domain.lower()
        for pattern in self.patterns:
            if pattern == "*":
                return True
            if pattern.startswith("@"):
                if domain == pattern[1:]:
                    return True
            elif "@" in pattern:
                if pattern == f"{local}@{domain}":
                    return True
            elif pattern == local:
                return True
        return False

    def acceptsDomain(self, domain: str) -> bool:
        """
        Whether C{domain} is one mail is accepted for: one a pattern names
        (C{@domain}, C{user@domain}), or any domain when a pattern is C{*}
        or a bare local part (C{console} takes C{console@} every domain).
        Address literals compare in their usual form (C{[ipv6:::1]}).
        """
        domain = domain.lower()
        for pattern in self.patterns:
            if pattern == "*" or "@" not in pattern:
                return True
            if pattern.rpartition("@")[2] == domain:
                return True
        return False


def _parseAccept(text: str) -> AcceptPolicy:
    # The setting is named by readSettings (the variable or the option).
    return AcceptPolicy.parse(text, "SMTPTUT_ACCEPT")


def _parseDirectory(text: str) -> str:
    """
    A Maildir's path: a directory, or nothing yet (it is created).
    """
    if os.path.exists(text) and not os.path.isdir(text):
        raise ValueError(f"{text}: not a directory")
    return text


def _parseHTTP(text: str) -> str:
    """
    The inbox's listener: a Twisted server endpoint string, or C{off}.
    """
    if text.lower() == HTTP_OFF:
        return HTTP_OFF
    return parseEndpoint(text)


def _parseReleaseTo(text: str) -> AcceptPolicy:
    return AcceptPolicy.parse(text, "SMTPTUT_RELEASE_TO")


def _parseRelay(text: str) -> tuple[str, int]:
    return parseHostPort(text, 25)


#: A server timeout: positive seconds, at most L{MAX_TIMEOUT}.
_serverSeconds = functools.partial(parseSeconds, maximum=MAX_TIMEOUT)
#: SMTPTUT_MAX_SIZE: a positive number of octets, at most L{MAX_MAX_SIZE}.
_maxSize = functools.partial(parsePositiveInt, maximum=MAX_MAX_SIZE)

#: Every server setting, in README's order: README's table, the twistd
#: plugin's options and L{ServerSettings.fromEnvironment} are made from it.
SERVER_SETTINGS: tuple[Setting[Any], ...] = (
    Setting(
        "listen",
        "SMTPTUT_LISTEN",
        parseEndpoint,
        DEFAULT_LISTEN,
        "a Twisted server endpoint string",
        DEFAULT_LISTEN,
        "ENDPOINT",
    ),
    Setting(
        "accept",
        "SMTPTUT_ACCEPT",
        _parseAccept,
        AcceptPolicy(),
        "recipients taken, comma-separated: a local part, user@domain, @domain or *",
        DEFAULT_ACCEPT,
        "PATTERNS",
    ),
    Setting(
        "hostname",
        "SMTPTUT_HOSTNAME",
        checkHostName,
        "localhost",
        "the name in the greeting and Received: fields",
        "localhost",
        "NAME",
    ),
    Setting(
        "maildir",
        "SMTPTUT_MAILDIR",
        _parseDirectory,
        None,
        "store every accepted message in this Maildir",
        metavar="DIRECTORY",
    ),
    Setting(
        "printMessages",
        "SMTPTUT_PRINT",
        parseFlag,
        True,
        "print messages on standard output (0 to only store)",
        "1",
        "0|1",
    ),
    Setting(
        "maxSize",
        "SMTPTUT_MAX_SIZE",
        _maxSize,
        DEFAULT_MAX_SIZE,
        "largest message taken, in octets",
        f"{DEFAULT_MAX_SIZE} (25 MiB)",
        "OCTETS",
    ),
    Setting(
        "maxRecipients",
        "SMTPTUT_MAX_RECIPIENTS",
        parsePositiveInt,
        DEFAULT_MAX_RECIPIENTS,
        "recipients per message",
        str(DEFAULT_MAX_RECIPIENTS),
        "COUNT",
    ),
    Setting(
        "maxErrors",
        "SMTPTUT_MAX_ERRORS",
        parsePositiveInt,
        DEFAULT_MAX_ERRORS,
        "refused commands before the session is closed",
        str(DEFAULT_MAX_ERRORS),
        "COUNT",
    ),
    Setting(
        "maxConnections",
        "SMTPTUT_MAX_CONNECTIONS",
        parsePositiveInt,
        DEFAULT_MAX_CONNECTIONS,
        "connections served at once (421 beyond)",
        str(DEFAULT_MAX_CONNECTIONS),
        "COUNT",
    ),
    Setting(
        "maxPeerConnections",
        "SMTPTUT_MAX_PEER_CONNECTIONS",
        parsePositiveInt,
        DEFAULT_MAX_PEER_CONNECTIONS,
        "connections served at once from one client address (421 beyond)",
        str(DEFAULT_MAX_PEER_CONNECTIONS),
        "COUNT",
    ),
    Setting(
        "idleTimeout",
        "SMTPTUT_IDLE_TIMEOUT",
        _serverSeconds,
        DEFAULT_IDLE_TIMEOUT,
        "seconds of client silence before 421 and close",
        f"{DEFAULT_IDLE_TIMEOUT:g}",
        "SECONDS",
    ),
    Setting(
        "commandTimeout",
        "SMTPTUT_COMMAND_TIMEOUT",
        _serverSeconds,
        DEFAULT_COMMAND_TIMEOUT,
        "seconds one command line may take, first octet to last (421 beyond)",
        f"{DEFAULT_COMMAND_TIMEOUT:g}",
        "SECONDS",
    ),
    Setting(
        "sessionTimeout",
        "SMTPTUT_SESSION_TIMEOUT",
        _serverSeconds,
        DEFAULT_SESSION_TIMEOUT,
        "seconds a whole session may last (421 beyond)",
        f"{DEFAULT_SESSION_TIMEOUT:g}",
        "SECONDS",
    ),
    Setting(
        "tlsCert",
        "SMTPTUT_TLS_CERT",
        parseReadableFile,
        None,
        "PEM certificate (chain): offer STARTTLS",
        metavar="FILE",
    ),
    Setting(
        "tlsKey",
        "SMTPTUT_TLS_KEY",
        parseReadableFile,
        None,
        "PEM private key",
        "the certificate file",
        "FILE",
    ),
    Setting(
        "users",
        "SMTPTUT_USERS",
        parseReadableFile,
        None,
        "AUTH accounts, user:hash lines (smtptut passwd);"
        " without it guest/password on loopback only",
        metavar="FILE",
    ),
    Setting(
        "shutdownGrace",
        "SMTPTUT_SHUTDOWN_GRACE",
        _serverSeconds,
        DEFAULT_SHUTDOWN_GRACE,
        "seconds SIGTERM waits for transactions in flight",
        f"{DEFAULT_SHUTDOWN_GRACE:g}",
        "SECONDS",
    ),
    Setting(
        "logFormat",
        "SMTPTUT_LOGFORMAT",
        LogFormat.parse,
        LogFormat.TEXT,
        "the log's lines under twistd: text (twistd's) or json (an object a line)",
        "text",
        "text|json",
    ),
    # The inbox (issue 11): smtptut.inbox serves the Maildir over HTTP.
    Setting(
        "http",
        "SMTPTUT_HTTP",
        _parseHTTP,
        HTTP_OFF,
        "the inbox's HTTP listener, a Twisted server endpoint string, or off;"
        " off loopback it needs SMTPTUT_HTTP_USERS",
        f"{PLUGIN_HTTP} for twistd smtptut-server, off for emailserver.tac",
        "ENDPOINT",
    ),
    Setting(
        "httpUsers",
        "SMTPTUT_HTTP_USERS",
        parseReadableFile,
        None,
        "HTTP Basic accounts for the inbox (a users file made by smtptut passwd)",
        metavar="FILE",
    ),
    Setting(
        "releaseTo",
        "SMTPTUT_RELEASE_TO",
        _parseReleaseTo,
        None,
        "recipients a stored message may be released to (the SMTPTUT_ACCEPT"
        " syntax); without it release is refused",
        metavar="PATTERNS",
    ),
    Setting(
        "releaseRelay",
        "SMTPTUT_RELEASE_RELAY",
        _parseRelay,
        None,
        "release through this host[:port] instead of the recipients' MX",
        metavar="HOST[:PORT]",
    ),
)


def listenInterface(listen: str) -> str:
    """
    The C{interface=} of the endpoint string C{listen}, or C{""}.
    """
    interface = ""
    for part in listen.replace("\\:", "\0").split(":")[1:]:
        key, eq, value = part.strip().partition("=")
        if eq and key == "interface":
            interface = value.replace("\0", ":")
    return interface


def isLoopbackListen(listen: str) -> bool:
    """
    Whether the endpoint string C{listen} listens on loopback only (a UNIX
    socket counts: only local processes reach it).
    """
    kind = listen.partition(":")[0].strip().lower()
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    interface = listenInterface(listen)
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """
    What the console server needs: where to listen, whom to accept mail for,
    where to put it, limits, TLS and accounts.  See L{SERVER_SETTINGS}.
    """

    listen: str = DEFAULT_LISTEN
    accept: AcceptPolicy = AcceptPolicy()
    hostname: str = "localhost"
    maildir: str | None = None
    printMessages: bool = True
    maxSize: int = DEFAULT_MAX_SIZE
    maxRecipients: int = DEFAULT_MAX_RECIPIENTS
    maxErrors: int = DEFAULT_MAX_ERRORS
    maxConnections: int = DEFAULT_MAX_CONNECTIONS
    maxPeerConnections: int = DEFAULT_MAX_PEER_CONNECTIONS
    idleTimeout: float = DEFAULT_IDLE_TIMEOUT
    commandTimeout: float = DEFAULT_COMMAND_TIMEOUT
    sessionTimeout: float = DEFAULT_SESSION_TIMEOUT
    tlsCert: str | None = None
    tlsKey: str | None = None
    users: str | None = None
    shutdownGrace: float = DEFAULT_SHUTDOWN_GRACE
    logFormat: LogFormat = LogFormat.TEXT
    http: str = HTTP_OFF
    httpUsers: str | None = None
    releaseTo: AcceptPolicy | None = None
    releaseRelay: tuple[str, int] | None = None

    @property
    def loopback(self) -> bool:
        """
        Whether the server listens on loopback only.
        """
        return isLoopbackListen(self.listen)

    @property
    def httpEnabled(self) -> bool:
        """
        Whether the inbox listens at all.
        """
        return self.http != HTTP_OFF

    @property
    def httpLoopback(self) -> bool:
        """
        Whether the inbox listens on loopback only.
        """
        return isLoopbackListen(self.http)

    @classmethod
    def fromEnvironment(
        cls,
        environ: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        defaultHTTP: str = HTTP_OFF,
    ) -> ServerSettings:
        """
        Read the server settings from C{options} (text by variable, as given
        on a command line), else C{environ}'s C{SMTPTUT_*}, else defaults;
        C{defaultHTTP} is the inbox's listener when C{SMTPTUT_HTTP} is not
        given (the plugin's is L{PLUGIN_HTTP}).

        @raise ConfigError: naming the option or the variable that is wrong,
            or the inbox off loopback without C{SMTPTUT_HTTP_USERS}.
        """
        env = os.environ if environ is None else environ
        values = readSettings(SERVER_SETTINGS, env, options)
        named = labels(SERVER_SETTINGS, options)
        given = (options or {}).get("SMTPTUT_HTTP") or env.get("SMTPTUT_HTTP", "")
        if not given.strip():
            values["http"] = defaultHTTP
        if (
            values["http"] != HTTP_OFF
            and not isLoopbackListen(values["http"])
            and values["httpUsers"] is None
        ):
            raise ConfigError(
                named["SMTPTUT_HTTP"],
                f"{values['http']!r} is not loopback-only: set SMTPTUT_HTTP_USERS"
                " (a users file made by smtptut passwd) to require a login",
            )
        if values["tlsKey"] is not None and values["tlsCert"] is None:
            raise ConfigError(
                named["SMTPTUT_TLS_KEY"], f"given without {named['SMTPTUT_TLS_CERT']}"
            )
        values["tlsKey"] = values["tlsKey"] or values["tlsCert"]
        return cls(**values)
