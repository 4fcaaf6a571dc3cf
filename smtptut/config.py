"""Settings from the environment (``SMTPTUT_*``), checked up front with one-line errors."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import idna
from twisted.internet.endpoints import serverFromString

TUTORIAL_SENDER = "tutorial_sender@example.com"
TUTORIAL_RECIPIENT = "tutorial_recipient@example.net"
DEFAULT_LISTEN = "tcp:2525:interface=127.0.0.1"
DEFAULT_ACCEPT = "console"

#: How many domains are delivered to at the same time.
DEFAULT_CONCURRENCY = 8

TLS_MODES = ("may", "encrypt", "verify", "off")


class ConfigError(ValueError):
    """
    A setting is wrong; the message is one line naming the setting and the problem.
    """


@dataclass(frozen=True)
class MailAddress:
    """
    An RFC 5321 mailbox split into local part and domain.
    """

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def isLiteral(self) -> bool:
        """
        Whether the domain is an address literal such as C{[127.0.0.1]}.
        """
        return self.domain.startswith("[")


def parseAddress(text: str, setting: str = "address") -> MailAddress:
    """
    Parse C{local@domain} (optionally in angle brackets) or raise L{ConfigError}.
    """
    candidate = text.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1].strip()
    local, at, domain = candidate.rpartition("@")
    if not at or not local or not domain:
        raise ConfigError(
            f"{setting}: {text!r} is not an address of the form user@domain"
        )
    if any(c.isspace() or c in "<>" for c in candidate):
        raise ConfigError(f"{setting}: {text!r} contains spaces or angle brackets")
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    if "@" in local and not quoted:
        # rpartition would take "a@b@c" as the mailbox "a@b" at "c".
        raise ConfigError(f"{setting}: {text!r} has more than one @")
    if domain.startswith("["):
        literal = literalAddress(domain) or ""
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            raise ConfigError(
                f"{setting}: {text!r} has a malformed address literal"
            ) from None
    elif domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise ConfigError(f"{setting}: {text!r} has a malformed domain")
    return MailAddress(local, domain)


def literalAddress(domain: str) -> str | None:
    """
    The IP address inside an address literal (C{[127.0.0.1]}, C{[IPv6:::1]}), or
    L{None} when C{domain} is a name.
    """
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    literal = domain[1:-1]
    if literal.lower().startswith("ipv6:"):
        literal = literal[5:]
    return literal


#: One label of a host name: letters, digits and inner hyphens (RFC 5321
#: §4.1.2's C{sub-domain}, RFC 1123 §2.1).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def isHostName(name: str) -> bool:
    """
    Whether C{name} is a domain name as SMTP carries it: ASCII labels of
    letters, digits and hyphens, 63 octets at most each, 253 in all, no
    trailing dot (so no space, CR, LF or other control character either).
    """
    if not name or len(name) > 253 or not name.isascii():
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def checkHostName(text: str, setting: str) -> str:
    """
    The name to send with EHLO: a domain name (an internationalized one in
    its A-label form) or an address literal, C{[192.0.2.1]} or
    C{[IPv6:2001:db8::1]} (RFC 5321 §4.1.1.1).  Anything else, and above all
    whitespace or a CR or LF that would start another command on the wire,
    raises L{ConfigError}.
    """
    if text.startswith("["):
        literal = literalAddress(text)
        try:
            address = ipaddress.ip_address(literal or "")
        except ValueError:
            address = None
        isV6 = text[1:6].lower() == "ipv6:"
        # ipaddress takes anything after a "%" as an IPv6 zone, CR LF
        # included; a zone means nothing to the server anyway.
        plain = "%" not in text and text.isascii() and text.isprintable()
        if address is not None and (address.version == 6) == isV6 and plain:
            return text
        raise ConfigError(
            f"{setting}: {text!r} is not an address literal such as [192.0.2.1]"
            " or [IPv6:2001:db8::1]"
        )
    name = text
    if not name.isascii() and name.isprintable() and not any(c.isspace() for c in name):
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass
    if not isHostName(name):
        raise ConfigError(
            f"{setting}: {text!r} is not a host name (letters, digits, hyphens"
            " and dots) or an address literal"
        )
    return name


#: Where the machine's own names are looked up (see L{localFQDN}).
HOSTS_FILE = "/etc/hosts"


def _canonicalFromHosts(name: str) -> str | None:
    """
    The canonical (first) name of the L{HOSTS_FILE} line that lists C{name}, as
    the resolver's C{files} source would give it, or L{None}.
    """
    try:
        with open(HOSTS_FILE, encoding="utf-8", errors="replace") as hosts:
            for line in hosts:
                names = line.partition("#")[0].split()[1:]
                if name.lower() in (n.lower() for n in names):
                    return names[0]
    except OSError:
        pass
    return None


@functools.cache
def localFQDN() -> str | None:
    """
    This machine's fully qualified domain name, as msmtp finds it (the host
    name, or its canonical name when it has no dot), or L{None} when there is
    none: no dot, not a valid name, or a C{localhost} one.  (Postfix's
    C{myhostname} wants a fully qualified name too.)

    The canonical name comes from L{HOSTS_FILE} only, not from
    C{socket.getfqdn}: that may ask the system's DNS servers, and reading
    settings must send nothing off the machine.
    """
    name = socket.gethostname()
    if "." not in name:
        name = _canonicalFromHosts(name) or name
    name = name.rstrip(".").lower()
    if "." not in name or not isHostName(name):
        return None
    if name.split(".")[0] == "localhost" or name.endswith(".localhost"):
        return None
    return name


def isLoopbackAddress(host: str) -> bool:
    """
    Whether C{host}, an IP address as text (an IPv6 one may carry a
    C{%zone}), is a loopback address; a name or anything else is not.
    """
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def parseNameserver(text: str, setting: str) -> tuple[str, int]:
    """
    Parse C{IP}, C{IP:PORT}, C{[IPV6]} or C{[IPV6]:PORT}: a DNS server is
    given by address (as in resolv.conf), since finding it by name would need
    DNS already.
    """
    host, port = parseHostPort(text, 53, setting)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{setting}: {host!r} is not an IP address (give the DNS server's"
            " address, not its name)"
        ) from None
    return str(address), port


def parseHostPort(text: str, defaultPort: int, setting: str) -> tuple[str, int]:
    """
    Parse C{HOST}, C{HOST:PORT}, C{[V6]} or C{[V6]:PORT}.
    """
    text = text.strip()
    if not text:
        raise ConfigError(f"{setting}: empty host")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        portText = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{setting}: {text!r} is not HOST[:PORT]")
    elif text.count(":") == 1:
        host, _, portText = text.partition(":")
    else:
        # A bare IPv6 address has several colons and no port.
        host, portText = text, ""
    port = parsePort(portText, setting) if portText else defaultPort
    if not host:
        raise ConfigError(f"{setting}: {text!r} has no host")
    return host, port


def parsePort(text: str, setting: str) -> int:
    """
    Parse a TCP port number, 1 to 65535.
    """
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{setting}: {text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{setting}: port {port} is out of range 1-65535")
    return port


def parseTimeout(text: str, setting: str, maximum: float | None = None) -> float:
    """
    Parse a positive number of seconds, at most C{maximum} when given.
    """
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{setting}: {text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"{setting}: the timeout must be more than 0 seconds")
    if maximum is not None and not seconds <= maximum:
        # inf included: a timer that never fires holds a slot forever.
        raise ConfigError(f"{setting}: {text!r} is more than {maximum:g} seconds")
    return seconds


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class ClientSettings:
    """
    What the sending side needs: envelope, message, routing, TLS and limits.

    @ivar helo: the EHLO name; L{None} for an address literal of the local
        end of each connection (what C{fromEnvironment} leaves when the
        machine has no fully qualified name, see L{localFQDN}).
    @ivar insecureAuth: allow AUTH over TLS whose certificate is not checked
        (C{SMTPTUT_INSECURE_AUTH=1}, with C{SMTPTUT_TLS=encrypt}).
    @ivar timeout: seconds to wait for any one reply, or L{None} for the
        RFC 5321 §4.5.3.2 waits (5 minutes for most replies, 10 after the
        message).
    @ivar concurrency: how many domains are delivered to at the same time.
    """

    sender: str = TUTORIAL_SENDER
    recipients: tuple[MailAddress, ...] = (parseAddress(TUTORIAL_RECIPIENT),)
    dataPath: str | None = None
    helo: str | None = None
    port: int = 25
    nameservers: tuple[tuple[str, int], ...] = ()
    relay: tuple[str, int] | None = None
    tls: str = "may"
    ca: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    insecureAuth: bool = False
    timeout: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY

    @classmethod
    def fromEnvironment(
        cls, environ: Mapping[str, str] | None = None
    ) -> ClientSettings:
        """
        Read the C{SMTPTUT_*} client settings; raise L{ConfigError} on a bad one.
        """
        env = os.environ if environ is None else environ
        sender = env.get("SMTPTUT_FROM", TUTORIAL_SENDER).strip()
        if sender and sender != "<>":
            _asciiLocalPart(parseAddress(sender, "SMTPTUT_FROM"), "SMTPTUT_FROM")
        elif sender == "<>":
            sender = ""
        recipientTexts = _split(env.get("SMTPTUT_TO", TUTORIAL_RECIPIENT))
        if not recipientTexts:
            raise ConfigError("SMTPTUT_TO: no recipient given")
        recipients = tuple(
            _asciiLocalPart(parseAddress(r, "SMTPTUT_TO"), "SMTPTUT_TO")
            for r in recipientTexts
        )
        port = parsePort(env.get("SMTPTUT_PORT", "25"), "SMTPTUT_PORT")
        nameservers = tuple(
            parseNameserver(ns, "SMTPTUT_NAMESERVER")
            for ns in _split(env.get("SMTPTUT_NAMESERVER", ""))
        )
        relayText = env.get("SMTPTUT_RELAY", "").strip()
        relay = parseHostPort(relayText, 25, "SMTPTUT_RELAY") if relayText else None
        tls = env.get("SMTPTUT_TLS", "may").strip().lower()
        if tls not in TLS_MODES:
            raise ConfigError(
                f"SMTPTUT_TLS: {tls!r} is not one of {', '.join(TLS_MODES)}"
            )
        ca = env.get("SMTPTUT_CA") or None
        if ca is not None and not os.path.isfile(ca):
            raise ConfigError(f"SMTPTUT_CA: {ca}: no such file")
        timeoutText = env.get("SMTPTUT_TIMEOUT", "").strip()
        timeout = parseTimeout(timeoutText, "SMTPTUT_TIMEOUT") if timeoutText else None
        # Not stripped: a space or CR around the name is refused, not hidden.
        heloText = env.get("SMTPTUT_HELO", "")
        helo = checkHostName(heloText, "SMTPTUT_HELO") if heloText else localFQDN()
        return cls(
            sender=sender,
            recipients=recipients,
            dataPath=env.get("SMTPTUT_DATA") or None,
            helo=helo,
            port=port,
            nameservers=nameservers,
            relay=relay,
            tls=tls,
            ca=ca,
            user=env.get("SMTPTUT_USER") or None,
            password=env.get("SMTPTUT_PASSWORD") or None,
            insecureAuth=_flag(env, "SMTPTUT_INSECURE_AUTH", False),
            timeout=timeout,
        )

    @property
    def dnsLifetime(self) -> float:
        """
        How long one DNS lookup may take, all retries included.
        """
        return min(self.timeout or 10.0, 10.0)

    def domains(self) -> dict[str, list[MailAddress]]:
        """
        Recipients grouped by domain (case-insensitively), in first-seen order.
        """
        groups: dict[str, list[MailAddress]] = {}
        for rcpt in self.recipients:
            groups.setdefault(rcpt.domain.lower(), []).append(rcpt)
        return groups


def _asciiLocalPart(address: MailAddress, setting: str) -> MailAddress:
    """
    Refuse a non-ASCII local part: it would need SMTPUTF8, which is not supported.
    """
    if not address.local.isascii():
        raise ConfigError(
            f"{setting}: {address} has a non-ASCII local part (SMTPUTF8 is not supported)"
        )
    return address


def _normalLiteral(domain: str) -> str:
    """
    A valid address literal in the form the server compares (lower case):
    C{[ipv6:0::1]} becomes C{[ipv6:::1]}.
    """
    literal = literalAddress(domain) or ""
    ip = ipaddress.ip_address(literal)
    if ip.version == 6:
        return f"[ipv6:{ip.compressed}]"
    return f"[{ip}]"


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
            raise ConfigError(f"{setting}: no recipient pattern given")
        normal = []
        for pattern in patterns:
            if pattern == "*" or pattern.startswith("@"):
                if pattern != "*" and len(pattern) == 1:
                    raise ConfigError(f"{setting}: {pattern!r} names no domain")
                if pattern.startswith("@["):
                    try:
                        pattern = "@" + _normalLiteral(pattern[1:])
                    except ValueError:
                        raise ConfigError(
                            f"{setting}: {pattern!r} has a malformed address literal"
                        ) from None
            elif "@" in pattern:
                address = parseAddress(pattern, setting)
                if address.isLiteral:
                    pattern = f"{address.local}@{_normalLiteral(address.domain)}"
            elif any(c.isspace() for c in pattern):
                raise ConfigError(f"{setting}: {pattern!r} contains spaces")
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


def _positiveInt(
    env: Mapping[str, str], name: str, default: int, maximum: int | None = None
) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}: {value} is not at least 1")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: {text} is more than {maximum}")
    return value


def _timeout(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    return parseTimeout(text, name, MAX_TIMEOUT) if text else default


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"{name}: {text!r} is not 1 or 0")


def _readableFile(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name, "").strip()
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError(f"{name}: {path}: no such file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{name}: {path}: not readable")
    return path


def checkListen(listen: str, setting: str) -> None:
    """
    Raise L{ConfigError} unless C{listen} is a server endpoint string that
    Twisted can parse (its port number, files and so on included).
    """
    try:
        # Parsing builds the endpoint without listening: no reactor needed yet.
        endpoint = serverFromString(None, listen)
    except Exception as e:
        reason = " ".join(str(e).split()) or e.__class__.__name__
        raise ConfigError(
            f"{setting}: {listen!r} is not a server endpoint ({reason})"
        ) from None
    # Twisted takes any integer as a TCP port and fails only when listening
    # (an OSError, exit 71): a port out of range is the user's mistake.
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ConfigError(
            f"{setting}: {listen!r} is not a server endpoint"
            f" (port {port} is out of range 0-65535)"
        )


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
        listen = env.get("SMTPTUT_LISTEN", DEFAULT_LISTEN).strip() or DEFAULT_LISTEN
        checkListen(listen, "SMTPTUT_LISTEN")
        accept = AcceptPolicy.parse(env.get("SMTPTUT_ACCEPT", DEFAULT_ACCEPT))
        hostname = checkHostName(
            env.get("SMTPTUT_HOSTNAME", "").strip() or "localhost", "SMTPTUT_HOSTNAME"
        )
        maildir = env.get("SMTPTUT_MAILDIR", "").strip() or None
        if maildir is not None and os.path.exists(maildir):
            if not os.path.isdir(maildir):
                raise ConfigError(f"SMTPTUT_MAILDIR: {maildir}: not a directory")
        printMessages = _flag(env, "SMTPTUT_PRINT", True)
        tlsCert = _readableFile(env, "SMTPTUT_TLS_CERT")
        tlsKey = _readableFile(env, "SMTPTUT_TLS_KEY")
        if tlsKey is not None and tlsCert is None:
            raise ConfigError("SMTPTUT_TLS_KEY: given without SMTPTUT_TLS_CERT")
        return cls(
            listen=listen,
            accept=accept,
            hostname=hostname,
            maildir=maildir,
            printMessages=printMessages,
            maxSize=_positiveInt(
                env, "SMTPTUT_MAX_SIZE", DEFAULT_MAX_SIZE, MAX_MAX_SIZE
            ),
            maxRecipients=_positiveInt(
                env, "SMTPTUT_MAX_RECIPIENTS", DEFAULT_MAX_RECIPIENTS
            ),
            maxErrors=_positiveInt(env, "SMTPTUT_MAX_ERRORS", DEFAULT_MAX_ERRORS),
            maxConnections=_positiveInt(
                env, "SMTPTUT_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS
            ),
            idleTimeout=_timeout(env, "SMTPTUT_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT),
            commandTimeout=_timeout(
                env, "SMTPTUT_COMMAND_TIMEOUT", DEFAULT_COMMAND_TIMEOUT
            ),
            sessionTimeout=_timeout(
                env, "SMTPTUT_SESSION_TIMEOUT", DEFAULT_SESSION_TIMEOUT
            ),
            maxPeerConnections=_positiveInt(
                env, "SMTPTUT_MAX_PEER_CONNECTIONS", DEFAULT_MAX_PEER_CONNECTIONS
            ),
            tlsCert=tlsCert,
            tlsKey=tlsKey or tlsCert,
            users=_readableFile(env, "SMTPTUT_USERS"),
            shutdownGrace=_timeout(
                env, "SMTPTUT_SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE
            ),
        )
