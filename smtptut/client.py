"""The tutorial's SMTP client: one connection, one or more transactions, an outcome per recipient."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IConsumer, ITCPTransport
from twisted.mail import smtp
from twisted.python.failure import Failure

from smtptut.message import MessageProducer, MessageSource

DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCED = "bounced"


@dataclass(frozen=True)
class Envelope:
    """
    One transaction: the sender, the recipients and the message.
    """

    sender: str
    recipients: tuple[str, ...]
    message: MessageSource


@dataclass(frozen=True)
class RecipientOutcome:
    """
    What happened to one recipient: C{delivered}, C{deferred} or C{bounced}.
    """

    recipient: str
    status: str
    code: int
    reply: str
    exchange: str | None = None
    address: str | None = None

    def __str__(self) -> str:
        via = ""
        if self.exchange:
            via = f" via {self.exchange}"
            if self.address and self.address != self.exchange:
                via += f" [{self.address}]"
        reply = f"{self.code} {self.reply}" if self.code > 0 else self.reply
        return f"{self.recipient}: {self.status}{via}: {reply}"


def statusForCode(code: int) -> str:
    """
    C{delivered} for 2xx, C{bounced} for 5xx, C{deferred} for anything else.
    """
    if 200 <= code < 300:
        return DELIVERED
    if 500 <= code < 600:
        return BOUNCED
    return DEFERRED


def _text(resp: bytes | str | None) -> str:
    if resp is None:
        return ""
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(resp.split())


@dataclass
class AttemptResult:
    """
    The end of one connection: the outcomes it settled, and why it stopped
    early if it did.

    @ivar unsettled: envelopes (or what is left of them) that this connection
        did not bring to a final reply; another exchange may still take them.
    @ivar error: the reason the session failed, when it did.
    @ivar errorCode: the SMTP code that came with it, or 0.
    """

    outcomes: list[RecipientOutcome]
    unsettled: list[Envelope]
    error: str | None = None
    errorCode: int = 0


class SMTPTutorialClient(smtp.ESMTPClient):
    """
    The tutorial's C{SMTPTutorialClient}, sending each envelope it is given
    over one connection and noting each recipient's fate.
    """

    factory: SMTPClientFactory

    def __init__(
        self, secret: bytes | None, contextFactory: Any = None, *args: Any, **kw: Any
    ) -> None:
        envelopes: Iterable[Envelope] = kw.pop("envelopes", ())
        super().__init__(secret, contextFactory, *args, **kw)
        self._envelopes: Iterator[Envelope] = iter(envelopes)
        self._current: Envelope | None = None
        self._extensions: dict[bytes, bytes | None] = {}
        self.outcomes: list[RecipientOutcome] = []
        self.failure: tuple[str, int] | None = None
        self.greeted = False

    # ESMTPClient's hooks, as the tutorial overrides them.

    def getMailFrom(self) -> str | None:
        self._current = next(self._envelopes, None)
        return None if self._current is None else self._current.sender

    def getMailTo(self) -> list[str]:
        assert self._current is not None
        return list(self._current.recipients)

    def getMailData(self) -> Any:
        assert self._current is not None
        return self._current.message.open()

    def sentMail(
        self,
        code: int,
        resp: bytes | str,
        numOk: int,
        addresses: list[tuple[bytes | str, int, bytes]],
        log: Any,
    ) -> None:
        assert self._current is not None
        if not addresses:
            # MAIL FROM (or the session) failed before any RCPT was sent.
            addresses = [(r, code, resp) for r in self._current.recipients]  # type: ignore[misc]
        for address, rcptCode, rcptResp in addresses:
            if isinstance(address, bytes):
                address = address.decode("utf-8", "replace")
            if 200 <= rcptCode < 300 and code > 0:
                final, reply = code, _text(resp)
            else:
                final, reply = rcptCode, _text(rcptResp)
            self._record(str(address), final, reply)
        self._current = None

    # Where Twisted's ESMTPClient falls short.

    def connectionMade(self) -> None:
        # Without TCP_NODELAY every message waits ~40 ms for a delayed ACK.
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
        self.timeout = self.factory.timeout  # type: ignore[assignment]
        super().connectionMade()

    def esmtpState_ehlo(self, code: int, resp: bytes) -> None:
        self.greeted = True
        super().esmtpState_ehlo(code, resp)

    def smtpState_helo(self, code: int, resp: bytes) -> None:
        self.greeted = True
        super().smtpState_helo(code, resp)

    def esmtpState_serverConfig(self, code: int, resp: bytes) -> None:
        self._extensions = {}
        for line in resp.splitlines():
            keyword, _, value = line.partition(b" ")
            self._extensions[keyword.upper()] = value or None
        super().esmtpState_serverConfig(code, resp)

    def smtpState_from(self, code: int, resp: bytes) -> None:
        self._from = self.getMailFrom()
        self._failresponse = self.smtpTransferFailed
        if self._current is None:
            self._disconnectFromServer()
            return
        line = b"MAIL FROM:" + smtp.quoteaddr(self._from)
        message = self._current.message
        if b"SIZE" in self._extensions:
            line += b" SIZE=%d" % message.size
        if message.eightBit and b"8BITMIME" in self._extensions:
            line += b" BODY=8BITMIME"
        self.sendLine(line)
        self._expected = [250]
        self._okresponse = self.smtpState_to

    def smtpState_data(self, code: int, resp: bytes) -> None:
        assert self._current is not None
        # Progress while sending counts as life: reset the idle timeout per chunk.
        producer = MessageProducer(self._current.message, progress=self.resetTimeout)
        sending = producer.beginTransfer(cast(IConsumer, self.transport))
        sending.addErrback(self._sendingFailed)
        self._expected = smtp.SUCCESS  # type: ignore[assignment]
        self._okresponse = self.smtpState_msgSent

    def _sendingFailed(self, failure: Failure) -> None:
        self.sendError(cast(BaseException, failure.value))

    def smtpState_msgSent(self, code: int, resp: bytes) -> None:
        if self._from is not None:
            self.sentMail(
                code, resp, len(self.successAddresses), self.toAddressesResult, self.log
            )
        self.toAddressesResult = []
        self._from = None
        # A finished transaction needs no RSET before the next MAIL.
        self.smtpState_from(code, resp)

    def sendError(self, exc: BaseException) -> None:
        if isinstance(exc, smtp.SMTPClientError):
            code = exc.code if isinstance(exc.code, int) else 0
            self.failure = (_text(exc.resp), code)
        else:
            self.failure = (str(exc) or exc.__class__.__name__, 0)
        super().sendError(exc)

    def timeoutConnection(self) -> None:
        self.failure = (f"no reply from the server in {self.timeout:g} s", 0)
        cast(ITCPTransport, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        unsettled: list[Envelope] = []
        if self._current is not None:
            unsettled.append(self._current)
            self._current = None
        unsettled.extend(self._envelopes)
        error, errorCode = self.failure or (None, 0)
        if unsettled and error is None:
            error = "the connection closed before the transaction completed"
        self.factory.attemptFinished(
            AttemptResult(self.outcomes, unsettled, error, errorCode)
        )

    def _record(self, recipient: str, code: int, reply: str) -> None:
        outcome = RecipientOutcome(
            recipient,
            statusForCode(code),
            code,
            reply,
            self.factory.exchange,
            self.factory.address,
        )
        self.outcomes.append(outcome)


class SMTPClientFactory(protocol.ClientFactory):
    """
    The tutorial's C{SMTPClientFactory}: builds an L{SMTPTutorialClient} for
    one connection to one exchange, and reports how that connection ended.
    """

    protocol = SMTPTutorialClient  # type: ignore[assignment]

    def __init__(
        self,
        envelopes: Iterable[Envelope],
        identity: str = "localhost",
        secret: bytes | None = None,
        contextFactory: Any = None,
        timeout: float | None = 300.0,
        exchange: str | None = None,
        address: str | None = None,
    ) -> None:
        self.envelopes = list(envelopes)
        self.identity = identity
        self.secret = secret
        self.contextFactory = contextFactory
        self.timeout = timeout
        self.exchange = exchange
        self.address = address
        self.finished: Deferred[AttemptResult] = Deferred()

    def buildProtocol(self, addr: IAddress | None) -> SMTPTutorialClient:  # type: ignore[override]
        client = self.protocol(
            secret=self.secret,
            contextFactory=self.contextFactory,
            identity=self.identity,
            envelopes=self.envelopes,
        )
        client.factory = self
        return client

    def attemptFinished(self, result: AttemptResult) -> None:
        """
        Called by the protocol when its connection is gone.
        """
        if not self.finished.called:
            self.finished.callback(result)
