"""The server's settings from the environment (``SMTPTUT_*``), checked up front with one-line errors."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from smtptut.addresses import (
    AddressError,
    checkHostName,
    normalLiteral,
    parseAddress,
)
from smtptut.settings import (
    ConfigError,
    parseAs,
    parseEndpoint,
    parseFlag,
    parsePositiveInt,
    parseReadableFile,
    parseSeconds,
)

T = TypeVar("T")

DEFAULT_LISTEN = "tcp:2525:interface=127.0.0.1"
DEFAULT_ACCEPT = "console"


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


#: Server defaults (issue 4).
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

#: Every server setting: variable, default as text, meaning (README, --help).
SERVER_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("SMTPTUT_LISTEN", DEFAULT_LISTEN, "a Twisted server endpoint string"),
    (
        "SMTPTUT_ACCEPT",
        DEFAULT_ACCEPT,
        "recipients taken, comma-separated: a local part, user@domain, @domain or *",
    ),
    ("SMTPTUT_HOSTNAME", "localhost", "the name in the greeting and Received: fields"),
    ("SMTPTUT_MAILDIR", "", "store every accepted message in this Maildir"),
    ("SMTPTUT_PRINT", "1", "print messages on standard output (0 to only store)"),
    ("SMTPTUT_MAX_SIZE", str(DEFAULT_MAX_SIZE), "largest message taken, in octets"),
    (
        "SMTPTUT_MAX_RECIPIENTS",
        str(DEFAULT_MAX_RECIPIENTS),
        "recipients per message",
    ),
    (
        "SMTPTUT_MAX_ERRORS",
        str(DEFAULT_MAX_ERRORS),
        "refused commands before the session is closed",
    ),
    (
        "SMTPTUT_MAX_CONNECTIONS",
        str(DEFAULT_MAX_CONNECTIONS),
        "connections served at once (421 beyond)",
    ),
    (
        "SMTPTUT_IDLE_TIMEOUT",
        f"{DEFAULT_IDLE_TIMEOUT:g}",
        "seconds of client silence before 421 and close",
    ),
    (
        "SMTPTUT_COMMAND_TIMEOUT",
        f"{DEFAULT_COMMAND_TIMEOUT:g}",
        "seconds one command line may take, first octet to last (421 beyond)",
    ),
    (
        "SMTPTUT_SESSION_TIMEOUT",
        f"{DEFAULT_SESSION_TIMEOUT:g}",
        "seconds a whole session may last (421 beyond)",
    ),
    (
        "SMTPTUT_MAX_PEER_CONNECTIONS",
        str(DEFAULT_MAX_PEER_CONNECTIONS),
        "connections served at once from one client address (421 beyond)",
    ),
    ("SMTPTUT_TLS_CERT", "", "PEM certificate (chain): offer STARTTLS"),
    ("SMTPTUT_TLS_KEY", "", "PEM private key (default: the certificate file)"),
    (
        "SMTPTUT_USERS",
        "",
        "AUTH accounts, user:hash lines (smtptut passwd);"
        " without it guest/password on loopback only",
    ),
    (
        "SMTPTUT_SHUTDOWN_GRACE",
        f"{DEFAULT_SHUTDOWN_GRACE:g}",
        "seconds SIGTERM waits for transactions in flight",
    ),
)


#: A server timeout: positive seconds, at most L{MAX_TIMEOUT}.
_serverSeconds = functools.partial(parseSeconds, maximum=MAX_TIMEOUT)
#: SMTPTUT_MAX_SIZE: a positive number of octets, at most L{MAX_MAX_SIZE}.
_maxSize = functools.partial(parsePositiveInt, maximum=MAX_MAX_SIZE)


def _read(
    env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T
) -> T:
    """
    The setting C{name} from C{env}, stripped, parsed; C{default} if empty.
    """
    text = env.get(name, "").strip()
    return parseAs(name, parse, text) if text else default


def isLoopbackListen(listen: str) -> bool:
    """
    Whether the endpoint string C{listen} listens on loopback only (a UNIX
    socket counts: only local processes reach it).
    """
    parts = [p.strip() for p in listen.replace("\\:", "\0").split(":")]
    kind = parts[0].lower()
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    interface = ""
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq and key == "interface":
            interface = value.replace("\0", ":")
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
    idleTimeout: float = DEFAULT_IDLE_TIMEOUT
    commandTimeout: float = DEFAULT_COMMAND_TIMEOUT
    sessionTimeout: float = DEFAULT_SESSION_TIMEOUT
    maxPeerConnections: int = DEFAULT_MAX_PEER_CONNECTIONS
    tlsCert: str | None = None
    tlsKey: str | None = None
    users: str | None = None
    shutdownGrace: float = DEFAULT_SHUTDOWN_GRACE

    @property
    def loopback(self) -> bool:
        """
        Whether the server listens on loopback only.
        """
        return isLoopbackListen(self.listen)

    @classmethod
    def fromEnvironment(
        cls, environ: Mapping[str, str] | None = None
    ) -> ServerSettings:
        """
        Read the C{SMTPTUT_*} server settings; raise L{ConfigError} on a bad one.
        """
        env = os.environ if environ is None else environ
        listen = _read(env, "SMTPTUT_LISTEN", parseEndpoint, DEFAULT_LISTEN)
        accept = AcceptPolicy.parse(env.get("SMTPTUT_ACCEPT", DEFAULT_ACCEPT))
        hostname = _read(env, "SMTPTUT_HOSTNAME", checkHostName, "localhost")
        maildir = env.get("SMTPTUT_MAILDIR", "").strip() or None
        if maildir is not None and os.path.exists(maildir):
            if not os.path.isdir(maildir):
                raise ConfigError("SMTPTUT_MAILDIR", f"{maildir}: not a directory")
        printMessages = _read(env, "SMTPTUT_PRINT", parseFlag, True)
        tlsCert = _read(env, "SMTPTUT_TLS_CERT", parseReadableFile, None)
        tlsKey = _read(env, "SMTPTUT_TLS_KEY", parseReadableFile, None)
        if tlsKey is not None and tlsCert is None:
            raise ConfigError("SMTPTUT_TLS_KEY", "given without SMTPTUT_TLS_CERT")
        return cls(
            listen=listen,
            accept=accept,
            hostname=hostname,
            maildir=maildir,
            printMessages=printMessages,
            maxSize=_read(env, "SMTPTUT_MAX_SIZE", _maxSize, DEFAULT_MAX_SIZE),
            maxRecipients=_read(
                env, "SMTPTUT_MAX_RECIPIENTS", parsePositiveInt, DEFAULT_MAX_RECIPIENTS
            ),
            maxErrors=_read(
                env, "SMTPTUT_MAX_ERRORS", parsePositiveInt, DEFAULT_MAX_ERRORS
            ),
            maxConnections=_read(
                env,
                "SMTPTUT_MAX_CONNECTIONS",
                parsePositiveInt,
                DEFAULT_MAX_CONNECTIONS,
            ),
            idleTimeout=_read(
                env, "SMTPTUT_IDLE_TIMEOUT", _serverSeconds, DEFAULT_IDLE_TIMEOUT
            ),
            commandTimeout=_read(
                env, "SMTPTUT_COMMAND_TIMEOUT", _serverSeconds, DEFAULT_COMMAND_TIMEOUT
            ),
            sessionTimeout=_read(
                env, "SMTPTUT_SESSION_TIMEOUT", _serverSeconds, DEFAULT_SESSION_TIMEOUT
            ),
            maxPeerConnections=_read(
                env,
                "SMTPTUT_MAX_PEER_CONNECTIONS",
                parsePositiveInt,
                DEFAULT_MAX_PEER_CONNECTIONS,
            ),
            tlsCert=tlsCert,
            tlsKey=tlsKey or tlsCert,
            users=_read(env, "SMTPTUT_USERS", parseReadableFile, None),
            shutdownGrace=_read(
                env, "SMTPTUT_SHUTDOWN_GRACE", _serverSeconds, DEFAULT_SHUTDOWN_GRACE
            ),
        )
