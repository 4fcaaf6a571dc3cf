"""The tutorial's console ESMTP server, grown into a safe, durable development mail sink."""

from __future__ import annotations

import base64
import binascii
import codecs
import errno
import functools
import ipaddress
import re
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from email.utils import formatdate
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.application import service
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, endpoints, protocol, task, tcp
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IPushProducer,
    ISSLTransport,
)
from twisted.logger import Logger, LoggingFile
from twisted.mail import smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from smtptut.addresses import AddressError, isLoopbackAddress, normalLiteral, toALabel
from smtptut.certificates import loadCertificateChain
from smtptut.config import AcceptPolicy, ServerSettings
from smtptut.consoleview import showMessage
from smtptut.errors import EX_OSERR
from smtptut.maildir import Maildir, MaildirMessage
from smtptut.settings import ConfigError

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection
    from twisted.internet.ssl import CertificateOptions
    from twisted.protocols.tls import TLSMemoryBIOProtocol

#: The tutorial's account, kept as the default for loopback use.
TUTORIAL_USERS = {b"guest": b"password"}

#: RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
MAX_COMMAND_LINE = 512
#: RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
MAX_TEXT_LINE = 1000
#: RFC 4954 §4: an AUTH line (with its initial response) may reach 12288 octets.
MAX_AUTH_LINE = 12288
#: Failed AUTH attempts before the session ends.
MAX_AUTH_FAILURES = 3
#: AUTH attempts one client address may make in AUTH_PEER_WINDOW seconds,
#: over all its connections, before AUTH is refused (454) for the rest of
#: that window: 90 parallel connections made 270 guesses in 7 s (issue 9).
AUTH_PEER_LIMIT = 10
AUTH_PEER_WINDOW = 300.0
#: Client addresses the AUTH throttle remembers (the oldest forgotten first).
AUTH_PEERS_REMEMBERED = 10000
#: Postfix's smtpd_recipient_overshoot_limit: recipients past
#: SMTPTUT_MAX_RECIPIENTS a session may send before each one counts as an
#: error.  A client that sends more than the limit is not misbehaving: it
#: sends the rest in a later transaction (RFC 5321 §4.5.3.1.10).
RECIPIENT_OVERSHOOT_LIMIT = 1000
#: The console copy of a message stays in memory up to this size, then spools.
SPOOL_IN_MEMORY = 1024 * 1024
#: Replies gathered before they are written: the transport then says (as a
#: producer's consumer) when the client is not reading them.
REPLY_BATCH = 64
#: Input held, in octets, while the client leaves its replies unread: then
#: reading stops too.
MAX_HELD_INPUT = 65536
#: Longest wait, in seconds, for a closing connection to finish (the client
#: to read the last replies, TLS close_notify): then it is cut.
CLOSE_TIMEOUT = 10.0

COMMAND, DATA, AUTH, CLOSED = "COMMAND", "DATA", "AUTH", "CLOSED"

log = Logger()


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


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
        return _decode(name) if isinstance(name, bytes) else str(name)
    return "unix socket" if host is None and name is None else str(address)


#: Verbs a refusal's log line names; anything else is "(unrecognized)", as
#: it may be a credential sent out of turn.
_KNOWN_VERBS = frozenset(
    b"HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY EXPN HELP STARTTLS AUTH"
    b" BDAT ETRN TURN ATRN SEND SOML SAML XCLIENT XFORWARD LHLO".split()
)


def _printable(data: bytes, limit: int = 200) -> str:
    """
    Client-supplied text made safe for a log line: no control characters,
    at most C{limit} characters.
    """
    text = _decode(data[:limit])
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text + ("..." if len(data) > limit else "")


#: Whether a peer's address is a loopback one, remembered: a sink sees the
#: same few peers again and again.
_isLoopbackPeer = functools.lru_cache(maxsize=1024)(isLoopbackAddress)


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


_dateCache: tuple[int, str] = (0, "")


def _now() -> str:
    """
    The date for a trace field (RFC 5322), made once a second.
    """
    global _dateCache
    second = int(time.time())
    if _dateCache[0] != second:
        _dateCache = (second, formatdate(second, localtime=True))
    return _dateCache[1]


def consoleOutput() -> IO[str]:
    """
    Where messages are printed: standard output as the process got it.

    Under twistd, C{sys.stdout} is a log file that drops blank lines (such as
    the one between header and body), so the message goes to the real one.
    """
    return cast(
        IO[str], sys.__stdout__ if isinstance(sys.stdout, LoggingFile) else sys.stdout
    )


def _writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it at once if nothing is queued.

    Twisted's TCP transport only queues in C{write}: the send comes on the
    next reactor turn (an epoll_ctl to watch for writability, a poll, the
    send, an epoll_ctl to stop).  A reply is small and the socket almost
    always has room for it, so sending it here saves that turn for every
    reply: the larger part of the server's work for a client that waits for
    each reply.  Anything not sent (or a TLS connection, or any other
    transport) goes the usual way.
    """
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        # The queue is Twisted's (abstract.FileDescriptor): write only when
        # it is empty, so that nothing is sent out of order.
        and not transport.dataBuffer
        and not transport._tempDataLen
        and not transport._writeDisconnected
    ):
        sent = transport.writeSomeData(data)
        # Otherwise (an exception: the connection is lost) write() finds out.
        if isinstance(sent, int):
            data = data[sent:]
            if not data:
                return
    transport.write(data)


#: What the console copy of a message must not pass to a terminal raw: C0
#: controls but TAB and LF, DEL and C1 controls (escape sequences, bells,
#: title changes, a bare CR overwriting a line).
_CONSOLE_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def consoleSafe(text: str) -> str:
    """
    C{text} with every control character a terminal would act on shown as
    C{\\xNN} instead: what a client sends cannot drive the console.
    """
    return _CONSOLE_UNSAFE.sub(_visible, text)


def storageReply(error: OSError) -> tuple[int, bytes]:
    """
    The reply for a message that could not be stored because of C{error}:
    RFC 3463's 4.3.1 for a full disk or quota, else a local error; both
    temporary, so the client keeps the message and tries again.
    """
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return 452, b"4.3.1 Insufficient system storage"
    return 451, b"4.3.0 Could not store the message, try again later"


def storageError(error: OSError) -> str:
    """
    C{error} in words for one log line: the reason and the file, no traceback.
    """
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename else reason


# ------------------------------------------------------------------ messages


@implementer(smtp.IMessage)
class ConsoleMessage:
    """
    A message being received, printed when it is complete, as the tutorial
    does; held in a spool (in memory while small, then a temporary file) so
    that a large message costs no memory and concurrent messages do not mix.
    """

    def __init__(
        self, output: IO[str] | None = None, spoolDirectory: str | None = None
    ) -> None:
        """
        @param spoolDirectory: where a large message is spooled (default:
            C{tempfile}'s, from C{TMPDIR}).
        """
        self.output = output if output is not None else consoleOutput()
        self.spool: IO[bytes] | None = cast(
            IO[bytes],
            tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=spoolDirectory),
        )

    def trace(self, returnPath: bytes, received: bytes) -> None:
        """
        The console shows the C{Received:} field on top, as the tutorial's does.
        """
        self.write(received)

    def lineReceived(self, line: bytes) -> None:
        self.write(line + b"\n")

    def write(self, data: bytes) -> None:
        """
        Part of the message, with LF line ends.
        """
        assert self.spool is not None
        self.spool.write(data)

    def eomReceived(self) -> defer.Deferred[None]:
        assert self.spool is not None
        spool, self.spool = self.spool, None
        spool.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        write = self.output.write
        # Every line ends with LF already: the tutorial's format exactly.  A
        # small message is printed with one write (the console may be
        # unbuffered, a system call a write), a large one chunk by chunk.
        # The Maildir copy is the message as received; this one is made safe
        # for a terminal.
        prefix = ["New message received:\n"]

        def writeOnce(data: str) -> None:
            write(prefix.pop() + data if prefix else data)

        # Encoded words, quoted-printable, base64 and attachments are shown
        # decoded for a person; anything else as it came.
        if not showMessage(spool, writeOnce, consoleSafe):
            while chunk := spool.read(65536):
                writeOnce(consoleSafe(decoder.decode(chunk)))
            rest = consoleSafe(decoder.decode(b"", final=True))
            if rest or prefix:
                writeOnce(rest)
        self.output.flush()
        spool.close()
        return defer.succeed(None)

    def connectionLost(self) -> None:
        # There was an error, throw away the stored message.
        if self.spool is not None:
            spool, self.spool = self.spool, None
            try:
                spool.close()
            except OSError:
                # A full spool directory fails the flush in close too; the
                # file is closed (and, being temporary, gone) all the same.
                pass


@implementer(smtp.IMessage)
class MaildirSink:
    """
    A message streamed into a Maildir: C{Return-Path:} and C{Received:} on
    top, then the message with LF line ends; in C{new/} once L{eomReceived}
    fires.
    """

    def __init__(self, message: MaildirMessage) -> None:
        self.message = message

    def trace(self, returnPath: bytes, received: bytes) -> None:
        self.message.write(b"Return-Path: <" + returnPath + b">\n" + received)

    def lineReceived(self, line: bytes) -> None:
        self.message.write(line + b"\n")

    def write(self, data: bytes) -> None:
        self.message.write(data)

    def eomReceived(self) -> defer.Deferred[str]:
        return self.message.commit()

    def connectionLost(self) -> None:
        self.message.abort()


@implementer(smtp.IMessage)
class Destinations:
    """
    One message going to several places (the console, a Maildir).
    """

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def trace(self, returnPath: bytes, received: bytes) -> None:
        for part in self.parts:
            part.trace(returnPath, received)

    def lineReceived(self, line: bytes) -> None:
        self.write(line + b"\n")

    def write(self, data: bytes) -> None:
        for part in self.parts:
            part.write(data)

    def eomReceived(self) -> defer.Deferred[str | None]:
        """
        Fires with the Maildir file's path, if there is one.
        """
        d = defer.gatherResults(
            [defer.maybeDeferred(p.eomReceived) for p in self.parts],
            consumeErrors=True,
        )

        def firstPath(results: list[Any]) -> str | None:
            return next((r for r in results if r), None)

        def firstFailure(failure: Failure) -> Failure:
            return cast(Failure, getattr(failure.value, "subFailure", failure))

        return d.addCallbacks(firstPath, firstFailure)

    def connectionLost(self) -> None:
        for part in self.parts:
            try:
                part.connectionLost()
            except Exception:
                log.failure("while dropping a message")


# ------------------------------------------------------------------ delivery


@implementer(smtp.IMessageDelivery)
class ConsoleMessageDelivery:
    """
    Decides who may receive mail here, and makes the message (printed, stored
    in a Maildir, or both) for a transaction.
    """

    def __init__(
        self,
        accept: AcceptPolicy | None = None,
        hostname: str = "localhost",
        output: Callable[[], IO[str]] = consoleOutput,
        maildir: Maildir | None = None,
        printMessages: bool = True,
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.accept = accept or AcceptPolicy()
        self.hostname = hostname
        self.output = output
        self.maildir = maildir
        self.printMessages = printMessages
        self.reactor = reactor
        #: Where the console spools a large message (L{ConsoleMessage}).
        self.spoolDirectory: str | None = None

    def receivedHeader(
        self,
        helo: tuple[bytes | None, bytes],
        origin: smtp.Address,
        recipients: list[Any],
    ) -> bytes:
        """
        An RFC 5321 §4.4 trace field: who handed us the message, and when.
        """
        heloName, peer = helo
        peerText = _decode(peer) if isinstance(peer, bytes) else str(peer)
        name = _decode(heloName) if heloName else peerText
        if ":" in peerText:
            # RFC 5321 §4.1.3: an IPv6 address literal is tagged.
            peerText = "IPv6:" + peerText
        protocol = "ESMTP"
        if recipients:
            server = getattr(recipients[0], "protocol", None)
            protocol = getattr(server, "withProtocol", protocol)
        forClause = ""
        if len(recipients) == 1:
            forClause = f"\r\n\tfor <{recipients[0].dest}>"
        return (
            f"Received: from {name} ([{peerText}])\r\n"
            f"\tby {self.hostname} (smtptut) with {protocol}{forClause};"
            f" {_now()}"
        ).encode("utf-8", "replace")

    def validateFrom(
        self, helo: tuple[bytes | None, bytes], origin: smtp.Address
    ) -> smtp.Address:
        # All senders are accepted, as in the tutorial.
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], Any]:
        # Never an open relay: whoever the client is, authenticated or not,
        # only the recipients SMTPTUT_ACCEPT names are taken.
        local = _decode(user.dest.local)
        domain = _decode(user.dest.domain)
        if self.accept.accepts(local, domain):
            return self.makeMessage
        if local.lower() == "postmaster" and self.isLocalDomain(domain, user):
            # RFC 5321 §4.5.1: postmaster is taken for every domain served.
            return self.makeMessage
        raise smtp.SMTPBadRcpt(user, code=550, resp="5.7.1 Recipient not accepted here")

    def isLocalDomain(self, domain: str, user: smtp.User | None = None) -> bool:
        """
        Whether C{domain} is one this sink serves: one C{SMTPTUT_ACCEPT}
        accepts mail for (see L{AcceptPolicy.acceptsDomain}), its own name,
        or the address literal of the address the client connected to.
        """
        domain = domain.lower()
        if domain == self.hostname.lower() or self.accept.acceptsDomain(domain):
            return True
        transport = getattr(getattr(user, "protocol", None), "transport", None)
        host = getattr(transport.getHost(), "host", None) if transport else None
        if not host:
            return False
        try:
            own = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        # A literal recipient domain is in its usual form already (_literalDomain).
        return domain == (f"[ipv6:{own}]" if own.version == 6 else f"[{own}]")

    def makeMessage(self) -> Any:
        """
        Where one message goes: the console, the Maildir, or both.
        """
        parts: list[Any] = []
        if self.printMessages:
            parts.append(ConsoleMessage(self.output(), self.spoolDirectory))
        if self.maildir is not None:
            parts.append(MaildirSink(self.maildir.newMessage(self.reactor)))
        if len(parts) == 1:
            return parts[0]
        return Destinations(parts)


# ------------------------------------------------------------------ protocol


def _tlsFailure(reason: Failure) -> str:
    """
    Why a TLS handshake failed, in a few words (OpenSSL's reasons).
    """
    from OpenSSL.SSL import Error

    error = reason.value
    if isinstance(error, Error) and error.args and isinstance(error.args[0], list):
        words = [part[-1] for part in error.args[0] if part and part[-1]]
        if words:
            return ", ".join(words)
    if reason.check(ConnectionDone, ConnectionLost):
        return "the client closed the connection"
    return str(error) or error.__class__.__name__


@implementer(IHalfCloseableProtocol, IHandshakeListener, IPushProducer)
class ConsoleESMTP(smtp.ESMTP):
    """
    The console server's ESMTP protocol.

    It is Twisted's C{ESMTP} by name and interfaces (the tutorial's
    C{IMessageDelivery}, C{IMessage}, cred portal) but reads the connection
    itself, because Twisted's server (24.x-26.x):
      - keeps a whole message in memory per recipient and has no size limit,
        no PIPELINING, SIZE or 8BITMIME, and a blank line inserted into
        messages without a header;
      - offers AUTH before STARTTLS and has no way to require TLS for it;
      - runs plaintext commands pipelined behind STARTTLS and keeps HELO/MAIL
        state across the upgrade (the CVE-2011-0411 class of injection);
      - mixes str and bytes on Python 3 in the tutorial's setup (AUTH
        mechanism names, the default C{receivedHeader} raises TypeError:
        twisted/twisted#11634), and gives C{receivedHeader} one recipient
        where its interface promises all of them (twisted/twisted#8804).
    No Twisted ticket was found for the STARTTLS injection or the memory use.
    Replies to pipelined commands are gathered and written at once; as the
    transport's producer it stops reading while the client leaves its
    replies unread.
    """

    log = Logger()
    factory: ConsoleSMTPFactory
    delivery: Any
    usedEHLO = False
    #: The client's address, as the factory counts its connections.
    peerHost: str | None = None
    _lineTimer: Any = None
    _sessionTimer: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.state = COMMAND
        self.startedTLS = False
        self.closing = False

    # -- connection

    def connectionMade(self) -> None:
        factory = self.factory
        self.settings = factory.settings
        self.callLater = factory.reactor.callLater  # type: ignore[method-assign]
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = str(getattr(peer, "host", peer))
        self.peerIsLoopback = factory.loopbackPeersTrusted and (
            _isLoopbackPeer(self.peer) or not hasattr(peer, "host")
        )
        self._buffer = b""
        self._replies: list[bytes] = []
        self._waiting = False
        self._repliesBlocked = False
        self._readingPaused = False
        self._abortLater: Any = None
        self._eof = False
        self._discardLine = False
        self.errors = 0
        self.overshoot = 0
        self.authFailures = 0
        self.user: bytes | None = None
        self._authMechanism: bytes | None = None
        self._authUser: bytes | None = None
        self._message: Any = None
        self._resetSession()
        # Implicit TLS (an ssl: endpoint) counts as TLS from the start.
        self.startedTLS = ISSLTransport.providedBy(self.transport)
        self.handshaking = self.startedTLS
        self.setTimeout(self.settings.idleTimeout)
        # The idle timer restarts with every octet: a client trickling one a
        # second would hold its slot forever without these two.
        self._sessionTimer = self.factory.reactor.callLater(
            self.settings.sessionTimeout, self._timedOut, b"4.4.2 Session too long"
        )
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._producing = True
        _writeNow(
            self.transport, b"220 " + factory.domain + b" ESMTP smtptut ready\r\n"
        )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        for timer in (self._sessionTimer, self._lineTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._sessionTimer = self._lineTimer = None
        if self._abortLater is not None and self._abortLater.active():
            self._abortLater.cancel()
        if self.handshaking:
            self.log.info(
                "TLS handshake with {peer} failed: {reason}",
                peer=self.peer,
                reason=_tlsFailure(reason),
            )
            self.handshaking = False
        if self._message is not None:
            message, self._message = self._message, None
            try:
                message.connectionLost()
            except Exception:
                self.log.failure("while dropping a half-received message")
            self._logTransaction("aborted: connection lost", None)
        self.state = CLOSED
        if self._onLogout:
            self._onLogout()
            self._onLogout = None
        self.factory.protocolGone(self)

    def readConnectionLost(self) -> None:
        """
        The client has sent all it will (C{printf ... | nc}): answer all of
        it, then close.  Without this Twisted drops the replies not yet
        written.
        """
        self._eof = True
        self._continue()

    def writeConnectionLost(self) -> None:
        self._close()

    def handshakeCompleted(self) -> None:
        self.handshaking = False

    def timeoutConnection(self) -> None:
        if self.handshaking:
            # No reply can reach a client that has not finished the TLS
            # handshake, and Twisted's TLS close waits for that handshake.
            self.log.info(
                "cut a connection from {peer}: TLS handshake not done in {timeout} s",
                peer=self.peer,
                timeout=self.settings.idleTimeout,
            )
            # That line says it all: connectionLost adds no second one.
            self.handshaking = False
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._refused(b"(session)", 421, b"4.4.2 Idle timeout, closing connection")
        self._close()

    def _timedOut(self, why: bytes) -> None:
        if self.state is CLOSED:
            return
        self._refused(b"(session)", 421, why + b", closing connection")
        self._close()

    def _watchLine(self, lineEnded: bool) -> None:
        """
        Give the line the buffer holds the start of (a command, AUTH or
        message text) C{settings.commandTimeout} seconds from its first
        octet to its end, as Postfix's smtpd_timeout; no deadline while the
        server itself is busy or nothing is pending.
        """
        pending = (
            self._buffer or self._discardLine or self._midLine
        ) and self.state is not CLOSED
        timer = self._lineTimer
        if not pending or self._waiting:
            if timer is not None:
                if timer.active():
                    timer.cancel()
                self._lineTimer = None
            return
        if timer is None or not timer.active():
            self._lineTimer = self.factory.reactor.callLater(
                self.settings.commandTimeout,
                self._timedOut,
                b"4.4.2 Command line too slow",
            )
        elif lineEnded:
            timer.reset(self.settings.commandTimeout)

    # -- flow control (IPushProducer, for the transport's write buffer)

    def pauseProducing(self) -> None:
        """
        The client leaves its replies unread (or TLS holds them until its
        handshake is done): answer no more commands until they drain, and
        read no more than L{MAX_HELD_INPUT}, so that a client that pipelines
        without reading cannot grow the server.
        """
        self._repliesBlocked = True
        self._updateReading()

    def resumeProducing(self) -> None:
        self._repliesBlocked = False
        self._continue()
        self._updateReading()

    def stopProducing(self) -> None:
        self._producing = False

    def _updateReading(self) -> None:
        """
        Read from the client unless a reply is awaited (an AUTH check, a
        message being stored) or the client is not reading its replies and
        has sent enough meanwhile.  Reading must go on while only TLS holds
        replies back: the TLS handshake needs it.  A session that is over
        reads always, so that the client's close (or its TLS close_notify,
        which Twisted's TLS close waits for) is seen.
        """
        pause = self.state is not CLOSED and (
            self._waiting
            or (self._repliesBlocked and len(self._buffer) >= MAX_HELD_INPUT)
        )
        if self.transport is None or pause == self._readingPaused:
            return
        self._readingPaused = pause
        if pause:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _continue(self) -> None:
        """
        Go on with the input received so far, unless something holds it;
        after the client's end of input, close once all of it is answered.
        """
        if self.state is CLOSED or self._waiting or self._repliesBlocked:
            return
        self._process()
        self._flush()
        if self._eof and not self._waiting and not self._repliesBlocked:
            self._close()

    def _resetSession(self) -> None:
        self._helo: tuple[bytes | None, bytes] = (None, self.peer.encode())
        self.usedEHLO = False
        self.authenticated = False
        self.user = None
        self._resetTransaction()

    def _resetTransaction(self) -> None:
        self._from: smtp.Address | None = None
        self._to: list[tuple[smtp.User, Callable[[], Any]]] = []
        self._size = 0
        self._dataFailure: tuple[int, bytes] | None = None
        self._midLine = False

    @property
    def withProtocol(self) -> str:
        if not self.usedEHLO:
            return "SMTP"
        return (
            "ESMTP"
            + ("S" if self.startedTLS else "")
            + ("A" if self.authenticated else "")
        )

    # -- input

    def dataReceived(self, data: bytes) -> None:
        if self.state is CLOSED:
            return
        self.resetTimeout()
        total = len(self._buffer) + len(data)
        self._buffer += data
        self._continue()
        self._updateReading()
        # A line ended when input was taken, unless it was all an overlong
        # line being dropped.
        self._watchLine(
            len(self._buffer) < total and not (self._discardLine and not self._buffer)
        )

    def _process(self) -> None:
        while self._buffer and not self._waiting and self.state is not CLOSED:
            if len(self._replies) >= REPLY_BATCH:
                self._flush()
                if self._repliesBlocked:
                    return
            if self.state is DATA:
                if not self._dataChunk():
                    return
                continue
            limit = MAX_AUTH_LINE if self.state is AUTH else MAX_COMMAND_LINE
            buf = self._buffer
            end = buf.find(b"\n", 0, limit)
            if end < 0:
                if len(buf) < limit:
                    return
                # Too long: answer once, and drop the line as it comes.
                if not self._discardLine:
                    self._lineTooLong()
                end = buf.find(b"\n", limit)
                if end < 0:
                    self._buffer = b""
                    self._discardLine = True
                    return
                self._buffer = buf[end + 1 :]
                self._discardLine = False
                continue
            line, self._buffer = buf[:end], buf[end + 1 :]
            if self._discardLine:
                self._discardLine = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.state is AUTH:
                self._authResponse(line)
            else:
                self._command(line)

    def _lineTooLong(self) -> None:
        if self.state is AUTH:
            self.state = COMMAND
        self._error(b"", 500, b"5.5.2 Line too long")

    def _command(self, line: bytes) -> None:
        verb, _, rest = line.strip().partition(b" ")
        verb = verb.upper()
        if self.closing:
            self._afterTransaction()
            if self.state is CLOSED:
                return
        method = self._commands.get(verb)
        if method is None:
            if not verb:
                self._error(b"", 500, b"5.5.2 Syntax error: empty command")
            else:
                self._error(verb, 500, b"5.5.2 Command not recognized")
            return
        method(self, rest.strip())

    # -- output

    def _reply(self, code: int, text: bytes | str) -> None:
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        self._replies.append(b"%d %s\r\n" % (code, text))

    def _flush(self) -> None:
        if self._replies and self.transport is not None:
            replies, self._replies = self._replies, []
            _writeNow(self.transport, b"".join(replies))

    def _close(self) -> None:
        self._flush()
        self.state = CLOSED
        self._buffer = b""
        self.setTimeout(None)
        if self.transport is None:
            return
        self._updateReading()
        if self._producing:
            # A registered producer holds a close back until it goes
            # (FileDescriptor.loseConnection, TLSMemoryBIOProtocol's).
            self._producing = False
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
        self.transport.loseConnection()
        if self._abortLater is None:
            # A client that reads no more, or never answers TLS
            # close_notify, would hold the connection (and its slot) forever.
            self._abortLater = self.callLater(
                min(self.settings.idleTimeout, CLOSE_TIMEOUT), self._abortClose
            )

    def _abortClose(self) -> None:
        if self.transport is not None:
            self.log.info(
                "cut a connection from {peer} that did not finish closing",
                peer=self.peer,
            )
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _refused(
        self, verb: bytes, code: int, text: bytes | str, argument: bytes = b""
    ) -> None:
        """
        Refuse a command: the reply, and one log line (with the command's
        argument only when given: never for AUTH).
        """
        self._reply(code, text)
        if verb and not verb.startswith(b"(") and verb not in _KNOWN_VERBS:
            verb = b"(unrecognized)"
        self.log.info(
            "refused {command}{argument} from {peer}: {code} {reply}",
            command=_decode(verb) or "(line)",
            argument=" " + _printable(argument) if argument else "",
            peer=self.peer,
            code=code,
            reply=text if isinstance(text, str) else _decode(text),
        )

    def _error(
        self, verb: bytes, code: int, text: bytes | str, argument: bytes = b""
    ) -> None:
        """
        Refuse a command and count it; too many errors end the session.
        """
        self._refused(verb, code, text, argument)
        self.errors += 1
        if self.errors >= self.settings.maxErrors:
            self._refused(
                b"(session)", 421, b"4.7.0 Too many errors, closing connection"
            )
            self._close()

    def _wait(self, d: defer.Deferred[Any]) -> None:
        """
        Hold further input until C{d} (which sends the reply) has fired; when
        it has fired already (the console, an AUTH check in memory) the
        caller's loop simply goes on.
        """
        self._waiting = True
        paused = False

        def resume(result: Any) -> None:
            self._waiting = False
            if self.state is not CLOSED:
                self._afterTransaction()
            if not paused:
                return
            if self.state is not CLOSED:
                self.setTimeout(self.settings.idleTimeout)
            # Whatever came meanwhile (a pipelined QUIT may close the
            # session); reading goes on in every case, closed or not.
            self._continue()
            self._watchLine(True)
            self._updateReading()

        d.addErrback(lambda f: self.log.failure("while answering", f))
        d.addCallback(resume)
        if self._waiting:
            paused = True
            self.setTimeout(None)
            self._watchLine(False)
            self._updateReading()

    # -- commands

    def _inTransaction(self) -> bool:
        return self._from is not None or self.state is DATA or self._waiting

    def _afterTransaction(self) -> None:
        if self.closing and not self._inTransaction() and self.state is not CLOSED:
            self._reply(421, b"4.3.2 Service shutting down, closing connection")
            self._close()

    def shutdown(self) -> None:
        """
        The server is stopping: close now if idle, else after this transaction.
        """
        self.closing = True
        self._afterTransaction()

    def authOffered(self) -> bool:
        """
        AUTH needs accounts, and TLS unless the client is on loopback.
        """
        return self.portal is not None and (self.startedTLS or self.peerIsLoopback)

    def _greet(self, rest: bytes, extended: bool) -> None:
        verb = b"EHLO" if extended else b"HELO"
        if not rest:
            self._error(verb, 501, b"5.5.4 Syntax: " + verb + b" hostname")
            return
        self._resetTransaction()
        self._helo = (rest, self.peer.encode())
        self.usedEHLO = extended
        greeting = (
            self.factory.domain + b" Hello " + rest + b" [" + self._helo[1] + b"]"
        )
        if not extended:
            self._reply(250, greeting)
            return
        lines = [
            greeting,
            b"PIPELINING",
            b"SIZE %d" % self.settings.maxSize,
            b"8BITMIME",
            b"ENHANCEDSTATUSCODES",
        ]
        if self.factory.ctx is not None and not self.startedTLS:
            lines.append(b"STARTTLS")
        if self.authOffered():
            lines.append(b"AUTH PLAIN LOGIN")
        self._replies.extend(b"250-%s\r\n" % line for line in lines[:-1])
        self._reply(250, lines[-1])

    def do_HELO(self, rest: bytes) -> None:
        self._greet(rest, False)

    def do_EHLO(self, rest: bytes) -> None:
        self._greet(rest, True)

    def _path(self, rest: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | None:
        """
        Split C{FROM:<path> PARAMS} into the path and its parameters.
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

    def do_MAIL(self, rest: bytes) -> None:
        if self._helo[0] is None:
            self._error(b"MAIL", 503, b"5.5.1 Send HELO or EHLO first")
            return
        if self._from is not None:
            self._error(b"MAIL", 503, b"5.5.1 Nested MAIL command")
            return
        parsed = self._path(rest, b"FROM:")
        if parsed is None:
            self._error(b"MAIL", 501, b"5.5.4 Syntax: MAIL FROM:<address>")
            return
        path, params = parsed
        for param in params:
            key, _, value = param.partition(b"=")
            key = key.upper()
            if key == b"SIZE":
                if not value.isdigit():
                    self._error(b"MAIL", 501, b"5.5.4 Bad SIZE parameter")
                    return
                if int(value) > self.settings.maxSize:
                    self._error(
                        b"MAIL",
                        552,
                        b"5.3.4 Message size exceeds fixed maximum message size",
                    )
                    return
            elif key == b"BODY":
                if value.upper() not in (b"7BIT", b"8BITMIME"):
                    self._error(b"MAIL", 501, b"5.5.4 Bad BODY parameter")
                    return
            elif key != b"AUTH":
                self._error(b"MAIL", 555, b"5.5.4 Unsupported parameter")
                return
        try:
            origin = parseAddress(path)
            self._from = self.delivery.validateFrom(self._helo, origin)
        except smtp.SMTPBadSender as e:
            self._error(b"MAIL", e.code, e.resp)
            return
        except smtp.AddressError:
            self._error(b"MAIL", 501, b"5.1.7 Bad sender address syntax")
            return
        self._reply(250, b"2.1.0 Sender ok")

    def do_RCPT(self, rest: bytes) -> None:
        if self._from is None:
            self._error(b"RCPT", 503, b"5.5.1 Need MAIL before RCPT")
            return
        parsed = self._path(rest, b"TO:")
        if parsed is None or not parsed[0]:
            self._error(b"RCPT", 501, b"5.5.4 Syntax: RCPT TO:<address>")
            return
        path, params = parsed
        if params:
            self._error(b"RCPT", 555, b"5.5.4 Unsupported parameter")
            return
        if len(self._to) >= self.settings.maxRecipients:
            # Not an error (so far): see RECIPIENT_OVERSHOOT_LIMIT.
            self.overshoot += 1
            refuse = (
                self._error
                if self.overshoot > RECIPIENT_OVERSHOOT_LIMIT
                else self._refused
            )
            refuse(
                b"RCPT",
                452,
                b"4.5.3 Too many recipients (at most %d a message)"
                % self.settings.maxRecipients,
            )
            return
        try:
            # No default domain: RFC 5321 §4.1.1.3 allows only "Postmaster"
            # without one (Twisted would fill in this host's name).
            dest = parseAddress(path, b"")
            if not dest.domain:
                if dest.local.lower() != b"postmaster" or dest.local != path:
                    raise smtp.AddressError("no domain")
                dest.domain = self.factory.domain
            user = smtp.User(dest, self._helo, self, self._from)
            makeMessage = self.delivery.validateTo(user)
        except smtp.SMTPBadRcpt as e:
            self._error(b"RCPT", e.code, e.resp, b"<" + path + b">")
            return
        except smtp.AddressError:
            self._error(b"RCPT", 501, b"5.1.3 Bad recipient address syntax")
            return
        self._to.append((user, makeMessage))
        self._reply(250, b"2.1.5 Recipient ok")

    def do_DATA(self, rest: bytes) -> None:
        if rest:
            self._error(b"DATA", 501, b"5.5.4 Syntax: DATA")
            return
        if self._from is None:
            self._error(b"DATA", 503, b"5.5.1 Need MAIL and RCPT before DATA")
            return
        if not self._to:
            self._error(b"DATA", 554, b"5.5.1 No valid recipients")
            return
        try:
            message = self._to[0][1]()
            received = self.delivery.receivedHeader(
                self._helo, self._from, [user for user, _ in self._to]
            )
            received = received.replace(b"\r\n", b"\n") + b"\n"
            # RFC 9228: whom the message was for, so that a Bcc recipient
            # shows; one field per recipient, as Postfix's local delivery
            # writes it (a sink makes no aliases: X-Original-To would say
            # the same again).  Below Received:, so that the console still
            # starts with it, as the tutorial's does.
            received += b"".join(
                b"Delivered-To: %s\n" % bytes(user.dest) for user, _ in self._to
            )
            if hasattr(message, "trace"):
                message.trace(bytes(self._from), received)
            else:
                message.lineReceived(received[:-1])
        except OSError as e:
            # Cannot open a file in tmp/ (read-only, full): one line.
            self.log.error(
                "cannot store a message from {peer}: {error}",
                peer=self.peer,
                error=storageError(e),
            )
            code, text = storageReply(e)
            self._reply(code, text)
            self._resetTransaction()
            return
        except Exception:
            self.log.failure("while starting a message")
            self._reply(451, b"4.3.0 Cannot take the message now")
            self._resetTransaction()
            return
        self._message = message
        self.state = DATA
        self._reply(354, b"End data with <CR><LF>.<CR><LF>")

    def do_RSET(self, rest: bytes) -> None:
        self._resetTransaction()
        self._reply(250, b"2.0.0 Reset")
        self._afterTransaction()

    def do_NOOP(self, rest: bytes) -> None:
        self._reply(250, b"2.0.0 OK")

    def do_QUIT(self, rest: bytes) -> None:
        self._reply(221, b"2.0.0 Bye")
        self._close()

    def do_VRFY(self, rest: bytes) -> None:
        self._reply(252, b"2.5.2 Cannot VRFY user, but will accept message")

    def do_EXPN(self, rest: bytes) -> None:
        self._error(b"EXPN", 502, b"5.5.1 EXPN not available")

    def do_HELP(self, rest: bytes) -> None:
        self._reply(214, b"2.0.0 See RFC 5321; this is smtptut's development sink")

    def do_STARTTLS(self, rest: bytes) -> None:
        if self.factory.ctx is None:
            self._error(b"STARTTLS", 502, b"5.5.1 TLS not available")
            return
        if self.startedTLS:
            self._error(b"STARTTLS", 503, b"5.5.1 TLS already active")
            return
        if rest:
            self._error(b"STARTTLS", 501, b"5.5.4 Syntax: STARTTLS")
            return
        self._reply(220, b"2.0.0 Ready to start TLS")
        self._flush()
        if self._buffer:
            # RFC 3207 §5 / CVE-2011-0411: nothing sent in plaintext after
            # STARTTLS may be taken as said over TLS.
            self.log.info(
                "discarded {count} octets pipelined after STARTTLS from {peer}",
                count=len(self._buffer),
                peer=self.peer,
            )
            self._buffer = b""
        self.transport.startTLS(self.factory.ctx)  # type: ignore[union-attr]
        self.startedTLS = True
        self.handshaking = True
        # RFC 3207 §4.2: forget everything learnt before TLS.
        self._resetSession()

    def do_AUTH(self, rest: bytes) -> None:
        if self.portal is None:
            self._error(b"AUTH", 502, b"5.5.1 AUTH not available")
            return
        if not self.authOffered():
            self._error(
                b"AUTH",
                538,
                b"5.7.11 Encryption required for requested authentication mechanism",
            )
            return
        if self._helo[0] is None or not self.usedEHLO:
            self._error(b"AUTH", 503, b"5.5.1 Send EHLO first")
            return
        if self.authenticated:
            self._error(b"AUTH", 503, b"5.5.1 Already authenticated")
            return
        if self._from is not None:
            self._error(b"AUTH", 503, b"5.5.1 AUTH not allowed during a transaction")
            return
        mechanism, _, initial = rest.partition(b" ")
        mechanism = mechanism.upper()
        initial = initial.strip()
        if mechanism not in (b"PLAIN", b"LOGIN"):
            self._error(b"AUTH", 504, b"5.5.4 Unrecognized authentication type")
            return
        if self._authThrottled():
            return
        self._authMechanism = mechanism
        self._authUser = None
        self.state = AUTH
        if mechanism == b"PLAIN":
            if initial:
                self._authResponse(initial)
            else:
                self._replies.append(b"334 \r\n")
        elif initial:
            self._authResponse(initial)
        else:
            self._reply(334, base64.b64encode(b"Username:"))

    def _authResponse(self, line: bytes) -> None:
        # Never log what the client sends here: it is a credential.
        if line.strip() == b"*":
            self.state = COMMAND
            self._error(b"AUTH", 501, b"5.0.0 Authentication cancelled")
            return
        try:
            answer = (
                b"" if line.strip() == b"=" else base64.b64decode(line, validate=True)
            )
        except (binascii.Error, ValueError):
            self.state = COMMAND
            self._error(b"AUTH", 501, b"5.5.2 Cannot decode the response")
            return
        if self._authMechanism == b"LOGIN" and self._authUser is None:
            self._authUser = answer
            self._reply(334, base64.b64encode(b"Password:"))
            return
        if self._authMechanism == b"LOGIN":
            assert self._authUser is not None
            user, password = self._authUser, answer
        else:
            parts = answer.split(b"\0")
            if len(parts) != 3:
                self.state = COMMAND
                self._error(b"AUTH", 501, b"5.5.2 Bad PLAIN response")
                return
            _, user, password = parts
        self.state = COMMAND
        assert self.portal is not None
        # Checked again here: parallel connections may all have passed the
        # check at AUTH before any of them sent credentials.
        if self._authThrottled():
            return
        attempt = self.factory.authThrottle.attempt(self.peer)
        d = self.portal.login(
            UsernamePassword(user, password), None, smtp.IMessageDelivery
        )
        d.addCallbacks(
            self._authSucceeded,
            self._authFailed,
            callbackArgs=(user, attempt),
        )
        self._wait(d)

    def _authThrottled(self) -> bool:
        """
        Refuse AUTH (454, an error) when this client's address has made all
        the attempts it may for now, over all its connections.
        """
        if not self.factory.authThrottle.refuses(self.peer):
            return False
        self.state = COMMAND
        self._error(
            b"AUTH",
            454,
            b"4.7.0 Too many authentication failures from your address,"
            b" try again later",
        )
        return True

    def _authSucceeded(self, result: Any, user: bytes, attempt: float) -> None:
        self.factory.authThrottle.succeeded(self.peer, attempt)
        _, avatar, logout = result
        self.delivery = avatar
        self._onLogout = logout
        self.authenticated = True
        self.user = user
        self.log.info(
            "authenticated {user} from {peer}", user=_decode(user), peer=self.peer
        )
        self._reply(235, b"2.7.0 Authentication successful")

    def _authFailed(self, failure: Failure) -> defer.Deferred[None]:
        self.authFailures += 1
        self.errors += 1
        # Each failure waits longer before its answer, the longer the more
        # failures this address has had on any connection (doubling, up to
        # 32 times authDelay); enough of them end the session.
        peerFailures = self.factory.authThrottle.failures(self.peer)
        delay = self.factory.authDelay * max(
            self.authFailures, 2 ** (min(peerFailures, 6) - 1)
        )

        def answer() -> None:
            self._refused(b"AUTH", 535, b"5.7.8 Authentication credentials invalid")
            if self.authFailures >= MAX_AUTH_FAILURES:
                self._refused(
                    b"(session)",
                    421,
                    b"4.7.0 Too many authentication failures, closing",
                )
                self._close()

        return task.deferLater(self.factory.reactor, delay, answer)

    _commands: dict[bytes, Callable[[ConsoleESMTP, bytes], None]] = {}

    # -- DATA

    def _dataChunk(self) -> bool:
        """
        Take the complete lines in the buffer; L{True} if the message ended.

        Only CRLF . CRLF ends it: a dot line after a bare LF or bare CR is
        message text (no SMTP smuggling).
        """
        buf = self._buffer
        if not self._midLine and buf.startswith(b".\r\n"):
            end = 0
        else:
            found = buf.find(b"\r\n.\r\n")
            end = found + 2 if found >= 0 else -1
        if end >= 0:
            self._buffer = buf[end + 3 :]
            self._dataContent(buf[:end])
            self._endOfData()
            return True
        last = buf.rfind(b"\r\n")
        if last < 0:
            if len(buf) > MAX_TEXT_LINE:
                # An overlong line: drop it as it comes, keeping a final CR
                # that may start the CRLF ending it.
                self._failData(500, b"5.5.2 Line too long")
                keep = buf[-1:] if buf.endswith(b"\r") else b""
                self._buffer = keep
                self._midLine = True
            return False
        self._buffer = buf[last + 2 :]
        self._dataContent(buf[: last + 2])
        return False

    def _failData(self, code: int, text: bytes) -> None:
        if self._dataFailure is None:
            self._dataFailure = (code, text)
            if self._message is not None:
                self._message.connectionLost()

    def _dataContent(self, content: bytes) -> None:
        """
        Complete lines of the message (CRLF ends), dot-stuffed.
        """
        midLine, self._midLine = self._midLine, False
        if self._dataFailure is not None or not content:
            return
        if len(content) > MAX_TEXT_LINE - 2 and (
            max(map(len, content.split(b"\r\n"))) > MAX_TEXT_LINE - 2
        ):
            self._failData(500, b"5.5.2 Line too long")
            return
        if content[0] == 0x2E and not midLine:
            content = content[1:]
        content = content.replace(b"\r\n.", b"\r\n")
        self._size += len(content)
        if self._size > self.settings.maxSize:
            self._failData(
                552, b"5.3.4 Message size exceeds fixed maximum message size"
            )
            return
        try:
            self._message.write(content.replace(b"\r\n", b"\n"))
        except OSError as e:
            self._storageFailed(e)

    def _storageFailed(self, error: OSError) -> None:
        """
        The message cannot be written (a full disk, a read-only Maildir):
        one log line, the rest of it read and dropped, a 4xx after the dot.
        """
        self.log.error(
            "cannot store a message from {peer}: {error}",
            peer=self.peer,
            error=storageError(error),
        )
        self._failData(*storageReply(error))

    def _endOfData(self) -> None:
        self.state = COMMAND
        message, self._message = self._message, None
        if self._dataFailure is not None:
            code, text = self._dataFailure
            self._logTransaction(f"refused: {code} {_decode(text)}", None)
            self._resetTransaction()
            if code in (451, 452):
                # The server's trouble, not the client's error.
                self._refused(b"DATA", code, text)
            else:
                self._error(b"DATA", code, text)
            return
        d = defer.maybeDeferred(message.eomReceived)
        d.addCallbacks(self._stored, self._notStored)
        self._wait(d)

    def _stored(self, path: str | None) -> None:
        self._reply(250, b"2.0.0 Delivery in progress")
        if not self._buffer:
            # The client waits for this reply, not for the log line (which
            # costs about as much as the rest of a small message): send it
            # first.  Pipelined commands still get their replies at once.
            self._flush()
        self._logTransaction("accepted", path)
        self._resetTransaction()

    def _notStored(self, failure: Failure) -> None:
        code, text = 451, b"4.3.0 Could not store the message, try again later"
        if isinstance(failure.value, OSError):
            # A full disk or a read-only Maildir: one line, not a traceback.
            code, text = storageReply(failure.value)
            self.log.error(
                "cannot store a message from {peer}: {error}",
                peer=self.peer,
                error=storageError(failure.value),
            )
        else:
            self.log.failure(
                "while storing a message from {peer}", failure, peer=self.peer
            )
        self._logTransaction(f"failed: {code}", None)
        self._resetTransaction()
        self._reply(code, text)

    def _logTransaction(self, result: str, path: str | None) -> None:
        """
        One log line for a transaction; its parts are also the event's fields
        (for JSON observers).  The text is made here: formatting nine fields
        in Twisted's observer costs more than the rest of a small message.
        """
        fields = {
            "result": result,
            "peer": self.peer,
            "helo": _printable(self._helo[0] or b""),
            "sender": _printable(bytes(self._from)) if self._from is not None else "",
            "recipients": ",".join(
                _printable(bytes(user.dest)) for user, _ in self._to
            ),
            "size": self._size,
            "user": _decode(self.user) if self.user else "-",
            "tls": self.startedTLS,
            "file": path or "-",
        }
        self.log.info(
            "{transaction}",
            transaction=(
                "message {result}: peer={peer} helo={helo} from=<{sender}>"
                " to={recipients} size={size} user={user} tls={tls} file={file}"
            ).format_map(fields),
            **fields,
        )


ConsoleESMTP._commands = {
    name[3:].encode(): method
    for name, method in vars(ConsoleESMTP).items()
    if name.startswith("do_")
}


class _TooBusy(protocol.Protocol):
    """
    Says 421 and hangs up: the server has as many connections as it takes.
    """

    reply = b"421 4.7.0 Too many connections, try again later\r\n"

    def connectionMade(self) -> None:
        self.transport.write(self.reply)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class _TooBusyForPeer(_TooBusy):
    """
    Says 421 and hangs up: this client address has as many connections as
    one address may have (Postfix's smtpd_client_connection_count_limit).
    """

    reply = b"421 4.7.0 Too many connections from your address, try again later\r\n"


class AuthThrottle:
    """
    AUTH attempts per client address over all its connections: at most
    C{limit} in any C{window} seconds.  An attempt counts from the moment its
    credentials are checked (so that parallel connections cannot all pass
    the check at once) until it succeeds; failures stay for the window.

    @ivar clock: an L{IReactorTime} (the reactor; a L{task.Clock} in tests).
    """

    def __init__(
        self,
        clock: Any,
        limit: int = AUTH_PEER_LIMIT,
        window: float = AUTH_PEER_WINDOW,
        remembered: int = AUTH_PEERS_REMEMBERED,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.remembered = remembered
        self._attempts: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, peer: str) -> list[float]:
        times = self._attempts.get(peer, [])
        cutoff = self.clock.seconds() - self.window
        while times and times[0] <= cutoff:
            del times[0]
        if not times:
            self._attempts.pop(peer, None)
        return times

    def failures(self, peer: str) -> int:
        """
        The attempts from C{peer} in the window that did not succeed.
        """
        return len(self._recent(peer))

    def refuses(self, peer: str) -> bool:
        """
        Whether C{peer} has made as many attempts as it may for now.
        """
        return self.failures(peer) >= self.limit

    def attempt(self, peer: str) -> float:
        """
        Count an attempt by C{peer}; the result identifies it to L{succeeded}.
        """
        now = self.clock.seconds()
        times = self._recent(peer)
        times.append(now)
        self._attempts[peer] = times
        self._attempts.move_to_end(peer)
        while len(self._attempts) > self.remembered:
            self._attempts.popitem(last=False)
        return now

    def succeeded(self, peer: str, attempt: float) -> None:
        """
        The attempt was right: it is no failure.
        """
        times = self._attempts.get(peer)
        if times and attempt in times:
            times.remove(attempt)


class ConsoleSMTPFactory(smtp.SMTPFactory):
    """
    The tutorial's C{ConsoleSMTPFactory}: one L{ConsoleMessageDelivery} for
    unauthenticated clients, AUTH LOGIN and PLAIN through the portal, and the
    sink's limits from L{ServerSettings}.
    """

    protocol = ConsoleESMTP  # type: ignore[assignment]
    noisy = False
    #: Seconds an AUTH failure waits, times the failures so far.
    authDelay = 1.0

    def __init__(
        self,
        portal: Portal | None = None,
        delivery: ConsoleMessageDelivery | None = None,
        settings: ServerSettings | None = None,
        ctx: Any = None,
        reactor: Any = None,
        *,
        loopbackPeersTrusted: bool = True,
    ) -> None:
        """
        @param loopbackPeersTrusted: whether a client on loopback may use AUTH
            without TLS (tests turn it off to act as a remote client).
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        smtp.SMTPFactory.__init__(self, portal)
        self.delivery = delivery or ConsoleMessageDelivery()
        self.domain = toALabel(self.delivery.hostname).encode("ascii")
        self.settings = settings or ServerSettings()
        self.ctx = ctx
        self.reactor = reactor
        self.loopbackPeersTrusted = loopbackPeersTrusted
        self.protocols: set[ConsoleESMTP] = set()
        self._allGone: list[defer.Deferred[None]] = []
        self.authThrottle = AuthThrottle(reactor)
        #: Connections served per client address (for maxPeerConnections).
        self.peerConnections: dict[str, int] = {}

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host = getattr(addr, "host", None)
        busy: _TooBusy | None = None
        if len(self.protocols) >= self.settings.maxConnections:
            log.info(
                "refused a connection from {peer}: too many", peer=addressText(addr)
            )
            busy = _TooBusy()
        elif (
            host is not None
            and self.peerConnections.get(host, 0) >= self.settings.maxPeerConnections
        ):
            log.info(
                "refused a connection from {peer}: too many from {host}",
                peer=addressText(addr),
                host=host,
            )
            busy = _TooBusyForPeer()
        if busy is not None:
            busy.factory = self
            return busy
        p = cast(ConsoleESMTP, smtp.SMTPFactory.buildProtocol(self, addr))
        p.delivery = self.delivery
        p.peerHost = host
        if host is not None:
            self.peerConnections[host] = self.peerConnections.get(host, 0) + 1
        self.protocols.add(p)
        return p

    def protocolGone(self, p: ConsoleESMTP) -> None:
        if p in self.protocols and p.peerHost is not None:
            left = self.peerConnections.pop(p.peerHost, 1) - 1
            if left > 0:
                self.peerConnections[p.peerHost] = left
        self.protocols.discard(p)
        if not self.protocols:
            waiting, self._allGone = self._allGone, []
            for d in waiting:
                d.callback(None)

    def shutdown(self, grace: float) -> defer.Deferred[None]:
        """
        Close idle connections, let transactions in flight finish for up to
        C{grace} seconds, then cut what is left.
        """
        for p in list(self.protocols):
            p.shutdown()
        if not self.protocols:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._allGone.append(d)

        def cut() -> None:
            for p in list(self.protocols):
                log.warn(
                    "cut a connection from {peer} still busy at shutdown", peer=p.peer
                )
                p.transport.abortConnection()  # type: ignore[union-attr]

        later = self.reactor.callLater(grace, cut)
        d.addBoth(lambda r: later.cancel() if later.active() else None)
        return d


@implementer(IRealm)
class SimpleRealm:
    """
    The tutorial's realm: an authenticated client gets the same kind of
    delivery as everyone else (and so the same recipients: no relaying).
    """

    def __init__(
        self,
        makeDelivery: Callable[[], ConsoleMessageDelivery] = ConsoleMessageDelivery,
    ) -> None:
        self.makeDelivery = makeDelivery

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, ConsoleMessageDelivery, Callable[[], None]]:
        if smtp.IMessageDelivery in interfaces:
            return smtp.IMessageDelivery, self.makeDelivery(), lambda: None
        raise NotImplementedError()


def makePortal(
    makeDelivery: Callable[[], ConsoleMessageDelivery],
    users: dict[bytes, bytes] | None = None,
    checker: Any = None,
) -> Portal:
    """
    A portal whose checker is C{checker}, or one that knows C{users} (the
    tutorial's guest by default).
    """
    portal = Portal(SimpleRealm(makeDelivery))
    if checker is None:
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        for name, password in (TUTORIAL_USERS if users is None else users).items():
            checker.addUser(name, password)
    portal.registerChecker(checker)
    return portal


#: Mozilla's "intermediate" server profile (ssl-config.mozilla.org, v5.7)
#: without its DHE suites (no DH parameters are configured): TLS 1.2 with
#: ECDHE key exchange and AEAD ciphers only (no CBC, no static RSA key
#: exchange), and TLS 1.3 with OpenSSL's default suites.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    ":ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    ":ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def _ignoreALPN(connection: Any, offered: list[bytes]) -> Any:
    from OpenSSL.SSL import NO_OVERLAPPING_PROTOCOLS

    return NO_OVERLAPPING_PROTOCOLS


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The sink's server TLS: Twisted's C{CertificateOptions} for the
    certificate, its chain and L{INTERMEDIATE_CIPHERS}, with one fix.

    Twisted 26.10 (since the ALPN rework that twisted/twisted#12598 traces
    to #12506) calls C{_sslverify.setupForALPN} on every context it makes,
    acceptable protocols or not, and its selection callback answers C{b""}
    when nothing overlaps (a TODO there says it should be pyOpenSSL's
    C{NO_OVERLAPPING_PROTOCOLS}).  pyOpenSSL takes C{b""} as "select an empty
    protocol" (pyca/pyopenssl#876), which OpenSSL 3 refuses with an
    C{internal_error} alert (80): every client that offers ALPN (openssl
    s_client -alpn, Go, Android) failed the handshake.  No Twisted ticket
    for this was found.  SMTP negotiates no application protocol, so the
    context gets a callback that ignores the client's list, as a server
    without ALPN does.  A pyOpenSSL context cannot be changed once a
    connection uses it: this is done here, before the first one.
    """

    def __init__(self, options: CertificateOptions) -> None:
        self.options = options
        self.context = options.getContext()
        self.context.set_alpn_select_callback(_ignoreALPN)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> Connection:
        from OpenSSL.SSL import Connection

        return Connection(self.context, None)


def serverTLS(
    privateKey: Any, certificate: Any, extraCertChain: list[Any] | None = None
) -> ServerTLS:
    """
    L{ServerTLS} for a key, its certificate and the intermediate certificates
    that lead from it to a root (all pyOpenSSL objects).
    """
    from twisted.internet import ssl

    return ServerTLS(
        ssl.CertificateOptions(
            privateKey=privateKey,
            certificate=certificate,
            extraCertChain=extraCertChain or None,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(
                INTERMEDIATE_CIPHERS
            ),
        )
    )


def loadTLS(certPath: str, keyPath: str) -> ServerTLS:
    """
    A server TLS context factory from PEM files: the first certificate in
    C{certPath} is the server's, the others (a C{fullchain.pem}'s
    intermediates) are sent after it.
    """
    return serverTLS(*loadCertificateChain(certPath, keyPath))


def _sinkTLSEndpoint(endpoint: Any) -> Any:
    """
    An C{ssl:} endpoint with the sink's TLS (L{ServerTLS}) in place of the
    context Twisted's parser made, keeping that one's certificate, key and
    chain; any other endpoint as it is.

    The endpoint keeps its context factory in a private attribute, and no
    public way builds one from a description with another: replaced here
    only, for the ALPN bug L{ServerTLS} describes.
    """
    if not isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        return endpoint
    options = endpoint._sslContextFactory
    endpoint._sslContextFactory = serverTLS(
        options.privateKey, options.certificate, options.extraCertChain
    )
    return endpoint


def makeFactory(
    settings: ServerSettings,
    reactor: Any = None,
    output: Callable[[], IO[str]] = consoleOutput,
    *,
    loopbackPeersTrusted: bool = True,
) -> ConsoleSMTPFactory:
    """
    The console server's factory for C{settings}.

    @param loopbackPeersTrusted: see L{ConsoleSMTPFactory}.
    """
    from smtptut.passwords import UsersFileChecker

    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    try:
        maildir = Maildir(settings.maildir) if settings.maildir else None
        if maildir is not None:
            maildir.checkWritable()
    except OSError as e:
        raise ConfigError(
            "SMTPTUT_MAILDIR", f"{settings.maildir}: {e.strerror}"
        ) from None

    # Deliveries hold no per-session state: one serves every client,
    # authenticated or not.
    delivery = ConsoleMessageDelivery(
        settings.accept,
        settings.hostname,
        output,
        maildir,
        settings.printMessages,
        reactor,
    )

    def makeDelivery() -> ConsoleMessageDelivery:
        return delivery

    portal: Portal | None
    if settings.users:
        portal = makePortal(
            makeDelivery, checker=UsersFileChecker(settings.users, reactor)
        )
    elif settings.loopback:
        portal = makePortal(makeDelivery)
    else:
        # No accounts, and not on loopback: the tutorial's guest is no default.
        portal = None
    ctx = None
    if settings.tlsCert:
        try:
            ctx = loadTLS(settings.tlsCert, settings.tlsKey or settings.tlsCert)
        except Exception as e:
            raise ConfigError(
                "SMTPTUT_TLS_CERT",
                f"cannot load {settings.tlsCert} with {settings.tlsKey}: {e}",
            ) from None
    return ConsoleSMTPFactory(
        portal,
        delivery,
        settings,
        ctx,
        reactor,
        loopbackPeersTrusted=loopbackPeersTrusted,
    )


class SinkService(service.Service):
    """
    Listens on the settings' endpoint; on stop, finishes transactions in
    flight (up to C{settings.shutdownGrace} seconds) before it is done.

    It listens when it starts (in C{privilegedStartService} under twistd, as
    Twisted's own C{StreamServerEndpointService} does), before the reactor
    runs: when it cannot, stopping the reactor would do nothing, so it says
    so in one line on standard error and ends the process (C{EX_OSERR}).
    """

    def __init__(
        self,
        settings: ServerSettings,
        factory: ConsoleSMTPFactory,
        reactor: Any,
        program: str = "emailserver.tac",
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.reactor = reactor
        self.program = program
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[Any] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self._listen()

    def _listen(self) -> None:
        endpoint = _sinkTLSEndpoint(
            endpoints.serverFromString(self.reactor, self.settings.listen)
        )
        self._listening = d = endpoint.listen(self.factory)
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        if outcome:
            # The usual case (tcp:, unix:, ssl:): the endpoint listened at once.
            if isinstance(outcome[0], Failure):
                self._cannotListen(outcome[0])
                raise SystemExit(EX_OSERR)
            self.port = outcome[0]
            return

        # Some other endpoint: it may fail once the reactor runs.
        def listening(result: Any) -> None:
            if isinstance(result, Failure):
                self._cannotListen(result)
                self.reactor.callWhenRunning(self.reactor.stop)
            else:
                self.port = result

        d.addCallback(listening)

    def _cannotListen(self, failure: Failure) -> None:
        """
        Say why the service cannot listen: one line, no traceback, on the
        process's real standard error (under twistd, C{sys.stderr} is the log).
        """
        error = failure.value
        reason = str(error)
        socketError = getattr(error, "socketError", None)
        if isinstance(socketError, OSError) and socketError.strerror:
            reason = socketError.strerror
        elif socketError is not None:
            reason = str(socketError)
        elif isinstance(error, OSError) and error.strerror:
            reason = error.strerror
        stderr = sys.__stderr__ if isinstance(sys.stderr, LoggingFile) else sys.stderr
        assert stderr is not None
        print(
            f"{self.program}: cannot listen on {self.settings.listen}: {reason}",
            file=stderr,
            flush=True,
        )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        d = (
            defer.maybeDeferred(self.port.stopListening)
            if self.port
            else defer.succeed(None)
        )
        d.addCallback(lambda _: self.factory.shutdown(self.settings.shutdownGrace))
        return cast(defer.Deferred[None], d)


def makeServerService(
    settings: ServerSettings, reactor: Any = None, program: str = "emailserver.tac"
) -> service.IService:
    """
    The console server as a service listening on C{settings.listen}.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    return SinkService(settings, makeFactory(settings, reactor), reactor, program)
