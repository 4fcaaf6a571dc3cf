"""Mail addresses, address literals, host names and A-labels, shared by both sides."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass

import idna


class AddressError(ValueError):
    """
    Text is not the address or name it should be; C{str(error)} is the
    reason, without the name of the setting it came from.
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


def parseAddress(text: str) -> MailAddress:
    """
    Parse C{local@domain} (optionally in angle brackets) or raise L{AddressError}.
    """
    candidate = text.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1].strip()
    local, at, domain = candidate.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{text!r} is not an address of the form user@domain")
    if any(c.isspace() or c in "<>" for c in candidate):
        raise AddressError(f"{text!r} contains spaces or angle brackets")
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    if "@" in local and not quoted:
        # rpartition would take "a@b@c" as the mailbox "a@b" at "c".
        raise AddressError(f"{text!r} has more than one @")
    if domain.startswith("["):
        try:
            ipaddress.ip_address(literalAddress(domain) or "")
        except ValueError:
            raise AddressError(f"{text!r} has a malformed address literal") from None
    elif domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise AddressError(f"{text!r} has a malformed domain")
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


def normalLiteral(domain: str) -> str:
    """
    An RFC 5321 §4.1.3 address literal in its usual form, C{[127.0.0.1]} or
    C{[IPv6:::1]} (so C{[ipv6:0::1]} and C{[IPv6:::1]} compare equal), or
    L{AddressError}: an IPv6 address needs its C{IPv6:} tag, and a C{%zone}
    (which C{ipaddress} would take with anything in it, CR LF included)
    means nothing to another host.
    """
    if not (domain.startswith("[") and domain.endswith("]")):
        raise AddressError(f"{domain!r} is not an address literal")
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            v6 = inner[5:]
            if "%" in v6:
                raise ValueError(v6)
            return f"[IPv6:{ipaddress.IPv6Address(v6).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        raise AddressError(f"{domain!r} is not an address literal") from None


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


def toALabel(domain: str) -> str:
    """
    The ASCII form of a domain (A-labels, RFC 5890), without a trailing dot:
    the project's one IDNA codec (the C{idna} package, UTS 46 mapping).
    An ASCII name is kept as it is.
    """
    name = domain.rstrip(".")
    if name.isascii():
        labels = name.split(".")
        if not name or len(name) > 253 or not all(0 < len(x) <= 63 for x in labels):
            raise AddressError(
                f"not a valid domain name ({name!r} has an empty or too long label)"
            )
        return name
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise AddressError(f"not a valid domain name ({e})") from None


def checkHostName(text: str) -> str:
    """
    A name to greet with (EHLO, or the server's own): a domain name (an
    internationalized one in its A-label form) or an address literal,
    C{[192.0.2.1]} or C{[IPv6:2001:db8::1]} (RFC 5321 §4.1.1.1), kept as
    given.  Anything else, and above all whitespace or a CR or LF that would
    start another command on the wire, raises L{AddressError}.
    """
    if text.startswith("["):
        try:
            normalLiteral(text)
        except AddressError:
            raise AddressError(
                f"{text!r} is not an address literal such as [192.0.2.1]"
                " or [IPv6:2001:db8::1]"
            ) from None
        return text
    name = text
    if not name.isascii() and name.isprintable() and not any(c.isspace() for c in name):
        try:
            name = toALabel(name)
        except AddressError:
            pass
    if not isHostName(name):
        raise AddressError(
            f"{text!r} is not a host name (letters, digits, hyphens"
            " and dots) or an address literal"
        )
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


def wireAddress(address: MailAddress) -> str:
    """
    The address as it goes on the wire: an internationalized domain in its
    ASCII form (A-labels, RFC 5890), so no SMTPUTF8 is needed.

    @raise AddressError: the domain has no A-label form.
    """
    if address.isLiteral or address.domain.isascii():
        return str(address)
    try:
        return f"{address.local}@{toALabel(address.domain)}"
    except AddressError as e:
        raise AddressError(f"{address}: {e}") from None
