"""ConsoleESMTP: the sink's protocol: the connection, its octets through the framer to the commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import protocol
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
    ISSLTransport,
    ITransport,
)
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from smtptut.addresses import isLoopbackAddress
from smtptut.server.commands import (
    Replies,
    Reply,
    splitCommand,
)
from smtptut.server.data import DataCommands
from smtptut.server.deadlines import Deadlines
from smtptut.server.flow import FlowControl
from smtptut.server.framing import (
    CommandLine,
    DataChunk,
    EndOfData,
    Framer,
    LineTooLong,
)
from smtptut.server.messages import ISinkMessage
from smtptut.server.output import ReplyOutput
from smtptut.server.sasl import (
    AuthExchange,
)
from smtptut.server.session import Session, State
from smtptut.server.sessioncommands import SessionCommands
from smtptut.server.tls import tlsFailure
from smtptut.server.transaction import TransactionCommands
from smtptut.writing import writeNow

if TYPE_CHECKING:
    from smtptut.server.factory import ConsoleSMTPFactory

#: Replies gathered before they are written: the transport then says (as a
#: producer's consumer) when the client is not reading them.
REPLY_BATCH = 64
#: Whether a peer's address is a loopback one, remembered: a sink sees the
#: same few peers again and again.
_isLoopbackPeer = functools.lru_cache(maxsize=1024)(isLoopbackAddress)


@functools.lru_cache(maxsize=64)
def _methodName(verb: bytes) -> str | None:
    """
    The name of the C{do_VERB} method for C{verb} (upper case), or L{None}
    when it is no verb: only letters, so that no other attribute can be
    named.  Remembered: a session sends the same few verbs again and again,
    and the checks and the decoding were most of a command's dispatch.
    """
    return "do_" + verb.decode("ascii") if verb.isalpha() else None


@implementer(IHalfCloseableProtocol, IHandshakeListener, IPushProducer)
class ConsoleESMTP(
    SessionCommands,
    TransactionCommands,
    DataCommands,
    ReplyOutput,
    FlowControl,
    protocol.Protocol,
    TimeoutMixin,
):
    """
    The console server's ESMTP protocol: the tutorial's C{ConsoleESMTP} by
    name, serving Twisted's C{IMessageDelivery}, C{IMessage} and cred portal.

    It is not a subclass of Twisted's C{smtp.ESMTP}: that reads lines with
    C{LineOnlyReceiver} and keeps a whole message in memory per recipient,
    so every part of it would be overridden and none used.  Twisted's server
    (24.x-26.x):
      - has no size limit, no PIPELINING, SIZE or 8BITMIME, and inserts a
        blank line into messages without a header;
      - offers AUTH before STARTTLS and has no way to require TLS for it;
      - runs plaintext commands pipelined behind STARTTLS and keeps HELO/MAIL
        state across the upgrade (the CVE-2011-0411 class of injection);
      - mixes str and bytes on Python 3 in the tutorial's setup (AUTH
        mechanism names, the default C{receivedHeader} raises TypeError:
        twisted/twisted#11634), and gives C{receivedHeader} one recipient
        where its interface promises all of them (twisted/twisted#8804).
    No Twisted ticket was found for the STARTTLS injection or the memory use.

    Octets go through a L{Framer}; commands are C{do_VERB} methods (from
    L{SessionCommands}, L{TransactionCommands} and L{DataCommands}; a
    subclass may add some); what the session knows is a L{Session}.
    Replies to pipelined commands are gathered and written at once; as the
    transport's producer it stops reading while the client leaves its
    replies unread.
    """

    log = Logger()
    factory: ConsoleSMTPFactory
    transport: ITransport | None
    delivery: smtp.IMessageDelivery
    #: The client's address, as the factory counts its connections.
    peerHost: str | None = None
    #: The address the client connected to, once asked (L{_localHost}).
    _local: str | None = None
    _localKnown = False

    # -- connection

    def connectionMade(self) -> None:
        factory = self.factory
        self.settings = factory.settings
        self.clock = factory.clock
        self.portal = factory.portal
        self.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        transport = self.transport
        assert transport is not None
        peer = transport.getPeer()
        self.peer = str(getattr(peer, "host", peer))
        self.peerIsLoopback = self.trustsPeer(peer)
        self.session = Session(self.peer)
        self.framer = Framer()
        self._replies: list[bytes] = []
        self._waiting = False
        self._repliesBlocked = False
        self._readingPaused = False
        self._eof = False
        self._auth: AuthExchange | None = None
        self._onLogout: Callable[[], None] | None = None
        self._message: ISinkMessage | None = None
        # Implicit TLS (an ssl: endpoint) counts as TLS from the start.
        self.session.startedTLS = ISSLTransport.providedBy(transport)
        self.handshaking = self.session.startedTLS
        self.setTimeout(self.settings.idleTimeout)
        self.deadlines = Deadlines(
            self.clock, self.settings, self._timedOut, self._abortClose
        )
        transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self._producing = True
        writeNow(transport, b"220 " + factory.domain + b" ESMTP smtptut ready\r\n")

    def _localHost(self) -> str | None:
        """
        The address the client connected to (its literal is a local domain).
        """
        if not self._localKnown:
            # Asked at every RCPT; Twisted's getHost makes a new address each
            # time, and a connection's own address never changes.
            if self.transport is None:
                return None
            self._local = getattr(self.transport.getHost(), "host", None)
            self._localKnown = True
        return self._local

    def trustsPeer(self, peer: object) -> bool:
        """
        Whether the client may use AUTH without TLS: one on loopback (or a
        UNIX socket), where nobody can listen in.
        """
        host = getattr(peer, "host", None)
        return host is None or _isLoopbackPeer(str(host))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        self.deadlines.cancel()
        if self.handshaking:
            self.log.info(
                "TLS handshake with {peer} failed: {reason}",
                peer=self.peer,
                reason=tlsFailure(reason),
            )
            self.handshaking = False
        self.dropMessage("aborted: connection lost")
        self.session.state = State.CLOSED
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
        self._refused(b"(session)", *Replies.IDLE)
        self._close()

    def _timedOut(self, why: Reply) -> None:
        if self.session.closed:
            return
        self._refused(b"(session)", *why)
        self._close()

    def _watchLine(self, lineEnded: bool) -> None:
        """
        A deadline for the line the framer holds the start of (a command,
        AUTH or message text), unless the server itself is busy.
        """
        pending = self.framer.pending and not self.session.closed
        self.deadlines.watchLine(pending and not self._waiting, lineEnded)

    # -- input

    def dataReceived(self, data: bytes) -> None:
        if self.session.closed:
            return
        self.resetTimeout()
        total = self.framer.buffered + len(data)
        self.framer.receive(data)
        self._continue()
        self._updateReading()
        # A line ended when input was taken, unless it was all an overlong
        # line being dropped.
        self._watchLine(self.framer.buffered < total and self.framer.pending)

    def _process(self) -> None:
        while not self._waiting and not self.session.closed:
            if len(self._replies) >= REPLY_BATCH:
                self._flush()
                if self._repliesBlocked:
                    return
            event = self.framer.nextEvent()
            if event is None:
                return
            if isinstance(event, CommandLine):
                if self.session.state is State.AUTH:
                    self._authResponse(event.line)
                else:
                    self._command(event.line)
            elif isinstance(event, DataChunk):
                self.dataContent(event.data)
            elif isinstance(event, EndOfData):
                self.session.state = State.COMMAND
                self.endOfData()
            elif isinstance(event, LineTooLong):
                self._lineTooLong()

    def _lineTooLong(self) -> None:
        if self.session.state is State.DATA:
            self.failData(Replies.LINE_TOO_LONG)
            return
        if self.session.state is State.AUTH:
            self._endAuth()
        self._error(b"", *Replies.LINE_TOO_LONG)

    def _command(self, line: bytes) -> None:
        verb, rest = splitCommand(line)
        if self.session.closing:
            self._afterTransaction()
            if self.session.closed:
                return
        # Looked up on the instance, so that a subclass's do_VERB is found.
        name = _methodName(verb)
        method = getattr(self, name, None) if name is not None else None
        if method is None:
            if not verb:
                self._error(b"", *Replies.EMPTY_COMMAND)
            else:
                self._error(verb, *Replies.UNKNOWN_COMMAND)
            return
        method(rest)

    # -- output

    def _close(self) -> None:
        self._flush()
        self.session.state = State.CLOSED
        self.framer.discard()
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
        self.deadlines.closing()

    def _abortClose(self) -> None:
        if self.transport is not None:
            self.log.info(
                "cut a connection from {peer} that did not finish closing",
                peer=self.peer,
            )
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- session

    def _inTransaction(self) -> bool:
        return (
            self.session.transaction.sender is not None
            or self.session.state is State.DATA
            or self._waiting
        )

    def _afterTransaction(self) -> None:
        if (
            self.session.closing
            and not self._inTransaction()
            and not self.session.closed
        ):
            self._reply(*Replies.SHUTTING_DOWN)
            self._close()

    def shutdown(self) -> None:
        """
        The server is stopping: close now if idle, else after this transaction.
        """
        self.session.closing = True
        self._afterTransaction()
