"""The tutorial's SMTPTutorialClient and SMTPClientFactory: one connection, a planner's transactions over it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IOpenSSLClientConnectionCreator,
    IProducer,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.ssl import CertificateOptions
from twisted.mail import smtp
from twisted.python.failure import Failure
from twisted.python.util import LineLog
from zope.interface import implementer

from smtptut.addresses import checkHostName, isLoopbackAddress
from smtptut.client.message import MessageProducer, MessageSource
from smtptut.client.model import (
    NO_REPLY,
    AttemptResult,
    Envelope,
    RecipientOutcome,
    Status,
    Timeouts,
    TLSPolicy,
)
from smtptut.client.planner import (
    Abort,
    Close,
    Hangup,
    PassOn,
    Quit,
    Refuse,
    Send,
    Settle,
    Step,
    TransactionPlanner,
    Transfer,
    replyText,
)
from smtptut.client.replies import BoundedESMTPClient
from smtptut.client.transcript import Transcript
from smtptut.settings import parseAs

# The server's immediate send, for the same reason on this side.
from smtptut.writing import writeNow

#: The note on the outcome when a login was asked for but not offered.
NOT_AUTHENTICATED = "not authenticated: the server offers no AUTH"

#: What C{ESMTPClient} takes as its context factory: none for no STARTTLS.
ClientTLS = IOpenSSLClientConnectionCreator | CertificateOptions | None


def addressLiteral(address: IAddress) -> str:
    """
    The RFC 5321 §4.1.3 address literal of a TCP address: C{[192.0.2.1]} or
    C{[IPv6:2001:db8::1]} (without any zone).
    """
    host = str(getattr(address, "host", "")).split("%")[0]
    if ":" in host:
        return f"[IPv6:{host}]"
    return f"[{host}]"


class SMTPTutorialClient(BoundedESMTPClient):
    """
    The tutorial's C{SMTPTutorialClient}, sending each envelope it is given
    over one connection and noting each recipient's fate.

    Twisted's C{ESMTPClient} does the greeting, EHLO, STARTTLS and AUTH; the
    transactions are planned by a L{TransactionPlanner}, because Twisted's
    own send an RSET after every message, drop the connection when every
    recipient is refused, know nothing of PIPELINING (RFC 2920) and miss
    dots in the message (see L{MessageProducer}).  This class only carries
    the planner's L{Step}s to the wire; L{BoundedESMTPClient} bounds and
    times the replies.
    """

    factory: SMTPClientFactory

    # Twisted's own transcript is not kept: it would hold the AUTH exchange,
    # and Twisted puts it in the text of its exceptions.  --debug's is a
    # L{Transcript}, which hides it.
    debug = False
    transcript: Transcript | None = None
    #: Whether replies go to the planner (after the session's set-up).
    _toPlanner = False

    def __init__(
        self,
        secret: bytes | None,
        contextFactory: ClientTLS = None,
        identity: str | None = None,
        envelopes: Iterable[Envelope] = (),
        username: bytes | None = None,
        tlsPolicy: TLSPolicy | None = None,
    ) -> None:
        super().__init__(secret, contextFactory, identity)
        if tlsPolicy is None:
            tlsPolicy = TLSPolicy.MAY if contextFactory else TLSPolicy.OFF
        self.tlsPolicy = tlsPolicy
        self.requireTransportSecurity = tlsPolicy.required
        if username is not None and secret is not None:
            for authenticator in (
                smtp.PLAINAuthenticator(username),
                smtp.LOGINAuthenticator(username),
                smtp.CramMD5ClientAuthenticator(username),
            ):
                self.registerAuthenticator(authenticator)
        self.planner = TransactionPlanner(envelopes)
        self._extensions: dict[bytes, bytes | None] = {}
        self._tlsStarted = False
        self._tlsDone = False
        self.outcomes: list[RecipientOutcome] = []
        self.notes: tuple[str, ...] = ()
        #: The TLS version of the session once STARTTLS is done (C{TLSv1.3}).
        self.tlsVersion: str | None = None

    # The tutorial's hooks: the planner picks the envelope, these show it.

    def getMailFrom(self) -> str | None:
        current = self.planner.current
        return None if current is None else current.sender

    def getMailTo(self) -> list[str]:
        current = self.planner.current
        return [] if current is None else list(current.recipients)

    def getMailData(self) -> MessageSource | None:
        current = self.planner.current
        return None if current is None else current.message

    def sentMail(
        self,
        code: int,
        resp: bytes | str,
        numOk: int,
        addresses: list[tuple[bytes | str, int, bytes | str]],
        log: LineLog,
    ) -> None:
        """
        Note the final reply for each recipient of the transaction just ended.
        """
        for address, rcptCode, rcptResp in addresses:
            if isinstance(address, bytes):
                address = address.decode("utf-8", "replace")
            self._record(str(address), rcptCode, replyText(rcptResp))

    # Session set-up, with ESMTPClient.

    def connectionMade(self) -> None:
        # Without TCP_NODELAY every message waits ~40 ms for a delayed ACK.
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
        self.timeouts = self.factory.timeouts
        self.clock = self.factory.clock
        self.timeout = self.timeouts.greeting  # type: ignore[assignment]
        if not self.identity:
            # No fully qualified name: the address this connection comes
            # from, as Postfix's smtp_helo_name would need to be set to.
            local = self.transport.getHost()  # type: ignore[union-attr]
            self.identity = addressLiteral(local).encode("ascii")
        super().connectionMade()

    def smtpState_helo(self, code: int, resp: bytes) -> None:
        super().smtpState_helo(code, resp)
        # Twisted leaves the EHLO failure handler in place, which is this
        # method: a server refusing the name (Postfix's 504 for a name that
        # is not fully qualified) got HELO after HELO for ever.  A refused
        # HELO ends the session with that reply.  (No Twisted ticket found.)
        self._failresponse = self.smtpConnectionFailed

    def esmtpState_serverConfig(self, code: int, resp: bytes) -> None:
        self._extensions = {}
        for line in resp.splitlines():
            keyword, _, value = line.strip().partition(b" ")
            self._extensions[keyword.upper()] = value or None
        if self._tlsStarted and not self._tlsDone:
            self._tlsDone = True
            self.tlsVersion = _tlsVersion(self.transport)
        super().esmtpState_serverConfig(code, resp)

    def esmtpState_starttls(self, code: int, resp: bytes) -> None:
        self._tlsStarted = True
        # Twisted would read whatever came after the 220 in the same packet
        # as plaintext replies once TLS is on: a man in the middle could
        # inject replies that way (as in CVE-2011-0411).  Refuse instead.
        if self.clearLineBuffer():
            self._setFailure(
                "TLS handshake failed: plaintext after STARTTLS's 220", NO_REPLY
            )
            cast(ITCPTransport, self.transport).abortConnection()
            return
        super().esmtpState_starttls(code, resp)

    def esmtpTLSFailed(self, code: int = -1, resp: bytes | None = None) -> None:
        if self.tlsPolicy is TLSPolicy.MAY and not self._tlsStarted:
            # STARTTLS refused: "may" carries on in plaintext, as Postfix does.
            self.authenticate(code, resp or b"", self._extensions)
            return
        super().esmtpTLSFailed(code, resp)

    def authenticate(
        self, code: int, resp: bytes, items: dict[bytes, bytes | None]
    ) -> None:
        offered = items.get(b"AUTH")
        if self.secret and not offered:
            # As Postfix does, the message goes all the same; the user is told.
            self.notes += (NOT_AUTHENTICATED,)
        if self.secret and offered and not self._tlsMode:
            peer = self.transport.getPeer()  # type: ignore[union-attr]
            if not isLoopbackAddress(getattr(peer, "host", "")):
                self._setFailure(
                    "refusing to send the password over an unencrypted connection"
                    " (the server offers no STARTTLS)",
                    0,
                )
                self._perform(self.planner.quit())
                return
        super().authenticate(code, resp, items)

    def smtpState_from(self, code: int, resp: bytes) -> None:
        # The session is ready (after EHLO or HELO, STARTTLS and AUTH): from
        # here on every reply goes to the planner.
        self._routeRepliesToPlanner()
        self._perform(self.planner.begin(self._extensions))

    def _routeRepliesToPlanner(self) -> None:
        self._expected = range(0, 1000)  # type: ignore[assignment]
        self._okresponse = self._failresponse = self._replied
        self._toPlanner = True

    def _replied(self, code: int, resp: bytes) -> None:
        self._perform(self.planner.replied(code, resp))

    def _perform(self, steps: list[Step]) -> None:
        """
        Carry out what the planner asks, in order; command lines in a row
        (MAIL, RCPT and DATA, pipelined) go in one write.
        """
        lines: list[bytes] = []
        for step in steps:
            if isinstance(step, Send):
                lines.append(step.line)
                continue
            if lines:
                self._sendLines(lines)
                lines = []
            if isinstance(step, Transfer):
                self._transfer(step.message)
            elif isinstance(step, Settle):
                results: list[tuple[bytes | str, int, bytes | str]] = [*step.results]
                okCount = sum(1 for _, code, _ in results if 200 <= code < 300)
                self.sentMail(step.code, step.resp, okCount, results, self.log)
            elif isinstance(step, PassOn):
                # Why the next exchange is tried (and, if none takes the
                # recipients, the reply they are deferred with).
                self._setFailure(step.reason, step.code)
            elif isinstance(step, Refuse):
                for recipient in step.recipients:
                    self._record(recipient, NO_REPLY, step.reason, Status.BOUNCED)
            elif isinstance(step, Close):
                self._setFailure(step.reason, step.code)
                self.transport.loseConnection()  # type: ignore[union-attr]
            elif isinstance(step, Abort):
                self._giveUp(step.reason)
            elif isinstance(step, Quit):
                self._routeRepliesToPlanner()
                self._sendLines([b"QUIT"])
                # Everything is settled: do not wait long for a goodbye.
                self.setTimeout(min(self.timeouts.command, 10.0))
            elif isinstance(step, Hangup):
                self.transport.loseConnection()  # type: ignore[union-attr]
        if lines:
            self._sendLines(lines)

    def sendLine(self, line: bytes) -> None:
        # Twisted's own commands (EHLO, STARTTLS, AUTH) go the planner's way.
        self._sendLines([line])

    def _sendLines(self, lines: list[bytes]) -> None:
        """
        The planner's command lines, in one write sent at once when nothing
        is queued (L{writeNow}): Twisted's C{write} sends on the next
        reactor turn, and watching the socket for room, then no longer,
        costs two C{epoll_ctl} calls each time (that turn was a quarter of
        the client's CPU for 1 KiB messages), for a client that then only
        waits.
        """
        for line in lines:
            if self.transcript is not None:
                self.transcript.sent(line)
        self._commandSent(lines[-1])
        assert self.transport is not None
        writeNow(self.transport, b"\r\n".join(lines) + b"\r\n")

    def lineReceived(self, line: bytes) -> None:
        if self.transcript is not None:
            self.transcript.received(line)
        if self._toPlanner and line[3:4] == b" " and line[:3].isdigit():
            # The last line of a reply for the planner (every code goes to
            # _replied): what Twisted's SMTPClient.lineReceived does for it,
            # less its bookkeeping of self.code and self.resp, each set of
            # an attribute going through ESMTPClient.__setattr__ (a Python
            # call): together a tenth of the client's time per message.
            # Continuation lines are BoundedESMTPClient's; anything else
            # (no code, a 0xx line) goes the usual way.
            code = int(line[:3])
            if code >= 100:
                self.resetTimeout()
                resp = line[4:]
                if self.resp:
                    self.resp.append(resp)
                    resp = b"\n".join(self.resp)
                    self.resp = []
                self._replied(code, resp)
                return
        super().lineReceived(line)

    def _transfer(self, message: MessageSource) -> None:
        if self.transcript is not None:
            self.transcript.message(message.size)
        producer = MessageProducer(message, progress=self.resetTimeout)
        self.setTimeout(self.timeouts.block)
        assert self.transport is not None
        sending = producer.beginTransfer(_SendingNow(self.transport))
        sending.addCallbacks(self._messageWritten, self._sendingFailed)

    def _messageWritten(self, ignored: None) -> None:
        self.planner.messageWritten()
        self.setTimeout(self.timeouts.final)

    def _sendingFailed(self, failure: Failure) -> None:
        reason = str(failure.value) or failure.value.__class__.__name__
        self._setFailure(reason, NO_REPLY)

    # Where a session ends.

    def sendError(self, exc: BaseException) -> None:
        if isinstance(exc, smtp.TLSRequiredError):
            self._setFailure(
                f"the server offers no STARTTLS, which SMTPTUT_TLS={self.tlsPolicy}"
                " requires",
                0,
            )
        elif isinstance(exc, smtp.SMTPClientError):
            code = (
                exc.code if isinstance(exc.code, int) and exc.code >= 200 else NO_REPLY
            )
            self._setFailure(replyText(exc.resp), code)
        else:
            self._setFailure(str(exc) or exc.__class__.__name__, 0)
        super().sendError(exc)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        tlsFailed = self._tlsStarted and not self._tlsDone
        if tlsFailed:
            self._setFailure(f"TLS handshake failed: {_tlsReason(reason)}", NO_REPLY)
        steps, unsettled = self.planner.connectionLost()
        self._perform(steps)
        error, errorCode = self.failure or (None, NO_REPLY)
        if unsettled and error is None:
            error = "the connection closed before the transaction completed"
        self.factory.attemptFinished(
            AttemptResult(self.outcomes, unsettled, error, errorCode, tlsFailed)
        )

    def _record(
        self, recipient: str, code: int, reply: str, status: Status | None = None
    ) -> None:
        outcome = RecipientOutcome(
            recipient,
            status or Status.forCode(code),
            code,
            reply,
            self.factory.exchange,
            self.factory.address,
            self.notes,
            tlsVersion=self.tlsVersion,
            # A verifying context aborts a handshake it does not accept.
            tlsVerified=self._tlsDone and self.tlsPolicy is TLSPolicy.VERIFY,
        )
        self.outcomes.append(outcome)


@implementer(IConsumer)
class _SendingNow:
    """
    The connection as the message's consumer, sending a message that is
    written whole while its producer registers (Twisted resumes a pull
    producer at once, and most messages are one chunk) in one write at
    once (L{writeNow}), for the reason L{SMTPTutorialClient._sendLines}
    gives.  A longer message's first chunk goes to the transport once
    registering is done and the rest as usual: Twisted asks a pull
    producer for more only as its own buffer drains.
    """

    def __init__(self, transport: ITransport) -> None:
        self._transport = transport
        self._registering = False
        self._held: list[bytes] = []

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._registering = True
        try:
            cast(IConsumer, self._transport).registerProducer(producer, streaming)
        finally:
            self._registering = False
        if self._held:
            # Not done yet: the rest comes as the transport asks for it.
            self._transport.write(b"".join(self._held))
            self._held = []

    def unregisterProducer(self) -> None:
        cast(IConsumer, self._transport).unregisterProducer()
        if self._held:
            # All of it was written while registering.
            writeNow(self._transport, b"".join(self._held))
            self._held = []

    def write(self, data: bytes) -> None:
        if self._registering:
            self._held.append(data)
        else:
            self._transport.write(data)


def _tlsVersion(transport: object) -> str | None:
    """
    The TLS version of a connection (its pyOpenSSL connection's name for it).
    """
    getHandle = getattr(transport, "getHandle", None)
    handle = getHandle() if getHandle is not None else None
    name = getattr(handle, "get_protocol_version_name", None)
    return str(name()) if name is not None else None


def _tlsReason(reason: Failure) -> str:
    """
    A short text for a failed handshake: OpenSSL's reason strings, if any.
    """
    value = reason.value
    args = getattr(value, "args", ())
    if args and isinstance(args[0], list):
        texts = [str(part[-1]) for part in args[0] if isinstance(part, tuple)]
        if texts:
            return "; ".join(texts)
    return replyText(str(value)) or value.__class__.__name__


class SMTPClientFactory(protocol.ClientFactory):
    """
    The tutorial's C{SMTPClientFactory}: builds an L{SMTPTutorialClient} for
    a connection to an exchange, and reports how that connection ended.

    One factory serves one connection; L{forAttempt} makes the next one's,
    for another address or another TLS policy, from this one.

    @param timeout: seconds for every wait, or L{Timeouts}, or L{None} for
        the RFC 5321 waits.
    @param tlsPolicy: see L{smtptut.client.tls.clientContext}, which makes
        C{contextFactory}.
    @param username: with C{secret} (the password), log in with AUTH.
    @param clock: what times the waits.
    """

    protocol = SMTPTutorialClient  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        envelopes: Iterable[Envelope],
        identity: str | None = None,
        secret: bytes | None = None,
        contextFactory: ClientTLS = None,
        timeout: float | Timeouts | None = None,
        exchange: str | None = None,
        address: str | None = None,
        username: bytes | None = None,
        tlsPolicy: TLSPolicy | None = None,
        *,
        clock: IReactorTime,
        transcript: Callable[[str], object] | None = None,
    ) -> None:
        self.clock = clock
        #: Where --debug's transcript lines go (L{None}: none is made).
        self.transcript = transcript
        self.envelopes = list(envelopes)
        if identity is not None:
            # Whatever built the settings, nothing but a name reaches the wire.
            parseAs("identity", checkHostName, identity)
        self.identity = identity
        self.secret = secret
        self.contextFactory = contextFactory
        self.timeouts = Timeouts.of(timeout)
        self.exchange = exchange
        self.address = address
        self.username = username
        if tlsPolicy is None:
            tlsPolicy = TLSPolicy.OFF if contextFactory is None else TLSPolicy.MAY
        self.tlsPolicy = tlsPolicy
        self.finished: Deferred[AttemptResult] = Deferred()

    def forAttempt(
        self,
        envelopes: Iterable[Envelope],
        exchange: str,
        address: str,
        tlsPolicy: TLSPolicy,
        contextFactory: ClientTLS,
        login: bool,
    ) -> SMTPClientFactory:
        """
        A factory like this one (its class, name, timeouts and clock) for a
        connection to C{address} of C{exchange}; with this one's credentials
        only if C{login}.
        """
        factory = type(self)(
            envelopes,
            self.identity,
            secret=self.secret if login else None,
            contextFactory=contextFactory,
            timeout=self.timeouts,
            exchange=exchange,
            address=address,
            username=self.username if login else None,
            tlsPolicy=tlsPolicy,
            clock=self.clock,
            transcript=self.transcript,
        )
        factory.protocol = self.protocol
        return factory

    def __repr__(self) -> str:
        return f"<SMTPClientFactory to {self.exchange or self.address}>"

    def buildProtocol(self, addr: IAddress | None) -> SMTPTutorialClient:  # type: ignore[override]
        client = self.protocol(
            secret=self.secret,
            contextFactory=self.contextFactory,
            identity=self.identity,
            envelopes=self.envelopes,
            username=self.username,
            tlsPolicy=self.tlsPolicy,
        )
        client.factory = self
        if self.transcript is not None:
            client.transcript = Transcript(self.transcript, self.secret)
        return client

    def attemptFinished(self, result: AttemptResult) -> None:
        """
        Called by the protocol when its connection is gone.
        """
        if not self.finished.called:
            self.finished.callback(result)
