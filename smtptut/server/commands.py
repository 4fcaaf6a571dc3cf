"""Command and parameter parsing (MAIL/RCPT paths, SIZE, BODY) and the server's reply table."""

from __future__ import annotations

import errno
import functools
from typing import NamedTuple

from twisted.mail import smtp

from smtptut.addresses import AddressError, normalLiteral


class Reply(NamedTuple):
    """
    One SMTP reply: its code and its text (enhanced status code first).
    """

    code: int
    text: bytes


class Replies:
    """
    The server's fixed replies, by meaning.
    """

    EMPTY_COMMAND = Reply(500, b"5.5.2 Syntax error: empty command")
    UNKNOWN_COMMAND = Reply(500, b"5.5.2 Command not recognized")
    LINE_TOO_LONG = Reply(500, b"5.5.2 Line too long")
    TOO_MANY_ERRORS = Reply(421, b"4.7.0 Too many errors, closing connection")
    SHUTTING_DOWN = Reply(421, b"4.3.2 Service shutting down, closing connection")
    IDLE = Reply(421, b"4.4.2 Idle timeout, closing connection")
    SESSION_TOO_LONG = Reply(421, b"4.4.2 Session too long, closing connection")
    LINE_TOO_SLOW = Reply(421, b"4.4.2 Command line too slow, closing connection")
    NO_HELO = Reply(503, b"5.5.1 Send HELO or EHLO first")
    NESTED_MAIL = Reply(503, b"5.5.1 Nested MAIL command")
    MAIL_SYNTAX = Reply(501, b"5.5.4 Syntax: MAIL FROM:<address>")
    BAD_SIZE = Reply(501, b"5.5.4 Bad SIZE parameter")
    TOO_BIG = Reply(552, b"5.3.4 Message size exceeds fixed maximum message size")
    BAD_BODY = Reply(501, b"5.5.4 Bad BODY parameter")
    UNSUPPORTED_PARAMETER = Reply(555, b"5.5.4 Unsupported parameter")
    BAD_SENDER = Reply(501, b"5.1.7 Bad sender address syntax")
    SENDER_OK = Reply(250, b"2.1.0 Sender ok")
    NO_MAIL = Reply(503, b"5.5.1 Need MAIL before RCPT")
    RCPT_SYNTAX = Reply(501, b"5.5.4 Syntax: RCPT TO:<address>")
    BAD_RECIPIENT = Reply(501, b"5.1.3 Bad recipient address syntax")
    RECIPIENT_OK = Reply(250, b"2.1.5 Recipient ok")
    DATA_SYNTAX = Reply(501, b"5.5.4 Syntax: DATA")
    NO_MAIL_FOR_DATA = Reply(503, b"5.5.1 Need MAIL and RCPT before DATA")
    NO_RECIPIENTS = Reply(554, b"5.5.1 No valid recipients")
    CANNOT_TAKE = Reply(451, b"4.3.0 Cannot take the message now")
    START_DATA = Reply(354, b"End data with <CR><LF>.<CR><LF>")
    STORED = Reply(250, b"2.0.0 Delivery in progress")
    NOT_STORED = Reply(451, b"4.3.0 Could not store the message, try again later")
    NO_STORAGE = Reply(452, b"4.3.1 Insufficient system storage")
    RESET = Reply(250, b"2.0.0 Reset")
    OK = Reply(250, b"2.0.0 OK")
    BYE = Reply(221, b"2.0.0 Bye")
    VRFY = Reply(252, b"2.5.2 Cannot VRFY user, but will accept message")
    NO_EXPN = Reply(502, b"5.5.1 EXPN not available")
    HELP = Reply(214, b"2.0.0 See RFC 5321; this is smtptut's development sink")
    NO_TLS = Reply(502, b"5.5.1 TLS not available")
    TLS_ACTIVE = Reply(503, b"5.5.1 TLS already active")
    STARTTLS_SYNTAX = Reply(501, b"5.5.4 Syntax: STARTTLS")
    START_TLS = Reply(220, b"2.0.0 Ready to start TLS")
    NO_AUTH = Reply(502, b"5.5.1 AUTH not available")
    AUTH_NEEDS_TLS = Reply(
        538, b"5.7.11 Encryption required for requested authentication mechanism"
    )
    NO_EHLO = Reply(503, b"5.5.1 Send EHLO first")
    AUTHENTICATED_ALREADY = Reply(503, b"5.5.1 Already authenticated")
    AUTH_IN_TRANSACTION = Reply(503, b"5.5.1 AUTH not allowed during a transaction")
    UNKNOWN_MECHANISM = Reply(504, b"5.5.4 Unrecognized authentication type")
    AUTH_CANCELLED = Reply(501, b"5.0.0 Authentication cancelled")
    AUTH_UNDECODABLE = Reply(501, b"5.5.2 Cannot decode the response")
    AUTH_BAD_PLAIN = Reply(501, b"5.5.2 Bad PLAIN response")
    AUTH_THROTTLED = Reply(
        454,
        b"4.7.0 Too many authentication failures from your address, try again later",
    )
    AUTH_OK = Reply(235, b"2.7.0 Authentication successful")
    AUTH_INVALID = Reply(535, b"5.7.8 Authentication credentials invalid")
    AUTH_TOO_MANY = Reply(421, b"4.7.0 Too many authentication failures, closing")
    NOT_HERE = Reply(550, b"5.7.1 Recipient not accepted here")


#: Verbs a refusal's log line names; anything else is "(unrecognized)", as
#: it may be a credential sent out of turn.
KNOWN_VERBS = frozenset(
    b"HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY EXPN HELP STARTTLS AUTH"
    b" BDAT ETRN TURN ATRN SEND SOML SAML XCLIENT XFORWARD LHLO".split()
)


def decode(data: bytes) -> str:
    """
    Client-supplied octets as text, whatever they are.
    """
    return data.decode("utf-8", "replace")


def printable(data: bytes, limit: int = 200) -> str:
    """
    Client-supplied text made safe for a log line: no control characters,
    at most C{limit} characters.
    """
    text = decode(data[:limit])
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text + ("..." if len(data) > limit else "")


def splitCommand(line: bytes) -> tuple[bytes, bytes]:
    """
    A command line's verb (upper case) and its argument, both stripped.
    """
    verb, _, rest = line.strip().partition(b" ")
    return verb.upper(), rest.strip()


def splitPath(rest: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | None:
    """
    Split C{FROM:<path> PARAMS} (C{keyword} is C{FROM:} or C{TO:}) into the
    path and its parameters; L{None} if it is not that.
    """
    if rest[: len(keyword)].upper() != keyword:
        return None
    rest = rest[len(keyword) :].lstrip()
    if rest.startswith(b"<"):
        path, close, params = rest[1:].partition(b">")
        if not close:
            return None
    else:
        path, _, params = rest.partition(b" ")
    return path, params.split()


def checkMailParameters(params: list[bytes], maxSize: int) -> Reply | None:
    """
    The refusal for MAIL's parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC
    4954 AUTH), or L{None} when they are all right.
    """
    for param in params:
        key, _, value = param.partition(b"=")
        key = key.upper()
        if key == b"SIZE":
            if not value.isdigit():
                return Replies.BAD_SIZE
            if int(value) > maxSize:
                return Replies.TOO_BIG
        elif key == b"BODY":
            if value.upper() not in (b"7BIT", b"8BITMIME"):
                return Replies.BAD_BODY
        elif key != b"AUTH":
            return Replies.UNSUPPORTED_PARAMETER
    return None


def _literalDomain(domain: bytes) -> bytes:
    """
    An RFC 5321 §4.1.3 address literal (C{[127.0.0.1]}, C{[IPv6:::1]}) in its
    usual form, or L{smtp.AddressError} when it holds no IP address.
    """
    try:
        return normalLiteral(domain.decode("ascii")).encode("ascii")
    except (AddressError, UnicodeDecodeError):
        raise smtp.AddressError("bad address literal") from None


@functools.lru_cache(maxsize=256)
def _parsedAddress(path: bytes, defaultDomain: bytes | None) -> smtp.Address:
    local, at, domain = path.rpartition(b"@")
    if at and domain[:1] == b"[" and domain[-1:] == b"]":
        # Twisted's parser takes no address literal: parse the rest with a
        # name in its place.
        address = smtp.Address(local + b"@literal.invalid", defaultDomain)
        address.domain = _literalDomain(domain)
        address.addrstr = path
        return address
    return smtp.Address(path, defaultDomain)


def parseAddress(path: bytes, defaultDomain: bytes | None = None) -> smtp.Address:
    """
    C{smtp.Address(path, defaultDomain)}, remembering recent addresses: a
    sink sees the same few again and again, and Twisted's parser is the
    larger part of a MAIL or RCPT command.  Each caller gets its own copy.
    """
    return smtp.Address(_parsedAddress(path, defaultDomain))


def parseRecipient(path: bytes, ownDomain: bytes) -> smtp.Address:
    """
    A RCPT path: no default domain, as RFC 5321 §4.1.1.3 allows only
    C{Postmaster} without one (Twisted would fill in this host's name); that
    one is C{ownDomain}'s.

    @raise smtp.AddressError: it is not an address.
    """
    dest = parseAddress(path, b"")
    if not dest.domain:
        if dest.local.lower() != b"postmaster" or dest.local != path:
            raise smtp.AddressError("no domain")
        dest.domain = ownDomain
    return dest


def storageReply(error: OSError) -> Reply:
    """
    The reply for a message that could not be stored because of C{error}:
    RFC 3463's 4.3.1 for a full disk or quota, else a local error; both
    temporary, so the client keeps the message and tries again.
    """
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Replies.NO_STORAGE
    return Replies.NOT_STORED


def storageError(error: OSError) -> str:
    """
    C{error} in words for one log line: the reason and the file, no traceback.
    """
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename else reason


def addressText(address: object) -> str:
    """
    A peer's address for a log line: C{127.0.0.1:5555}, C{[::1]:5555}, a
    UNIX socket's path, not Twisted's C{IPv4Address(type='TCP', ...)} repr.
    """
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return decode(name) if isinstance(name, bytes) else str(name)
    return "unix socket" if host is None and name is None else str(address)
