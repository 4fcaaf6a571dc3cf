"""The tutorial's SMTP client: one connection, one or more transactions, an outcome per recipient."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, cast

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IConsumer, IReactorTime, ITCPTransport
from twisted.mail import smtp
from twisted.python.failure import Failure

from smtptut.addresses import checkHostName, isLoopbackAddress
from smtptut.message import MessageProducer, MessageSource
from smtptut.settings import parseAs
from smtptut.tls import REQUIRED

DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCED = "bounced"

Reply = tuple[int, bytes]

#: Why a message with 8-bit data bounces at a server without 8BITMIME.
EIGHT_BIT_REFUSED = (
    "the message has 8-bit data and the server does not offer 8BITMIME"
    " (RFC 6152): not sent"
)

#: The code of an outcome or a failure that came with no SMTP reply at all
#: (a refused connection, a timeout, a failed handshake, a DNS error).
NO_REPLY = 0

#: The longest reply line taken, CRLF included (RFC 5321 §4.5.3.1.5).
MAX_REPLY_LINE = 512

#: The most lines one reply may have: an EHLO reply has a dozen or two.
MAX_REPLY_LINES = 100


def tooManyRecipients(code: int, resp: bytes) -> bool:
    """
    Whether a RCPT reply says the transaction has reached the server's
    recipient limit (RFC 5321 §4.5.3.1.10: 452, or 552 from old servers;
    Postfix and Exim say C{452 4.5.3 ... too many recipients}): the
    recipient is to be sent again in another transaction.
    """
    if code not in (452, 552):
        return False
    text = resp.lower()
    return text[1:6] == b".5.3 " or b"too many recipients" in text


def pathOf(address: str) -> bytes:
    """
    The RFC 5321 path for an address the settings already checked.

    Twisted's C{quoteaddr} parses every address again with
    C{email.utils.parseaddr}, a sixth of the client's time per message.
    """
    return b"<" + address.encode("utf-8") + b">"


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
    #: What the user should know about how it went, shown in parentheses
    #: after the status: C{interrupted}, C{unencrypted: TLS handshake
    #: failed: ...} or C{not authenticated: ...}.
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        via = ""
        if self.exchange:
            via = f" via {self.exchange}"
            if self.address and self.address != self.exchange:
                via += f" [{self.address}]"
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        reply = f"{self.code} {self.reply}" if self.code != NO_REPLY else self.reply
        return f"{self.recipient}: {self.status}{notes}{via}: {reply}"


@dataclass(frozen=True)
class Timeouts:
    """
    How long to wait, in seconds: for the connection, then for each reply.

    The defaults are RFC 5321 §4.5.3.2's: 5 minutes for the greeting and for
    EHLO, MAIL and RCPT, 2 for DATA, 3 for each block of the message to be
    taken, and 10 for the reply after the message.
    """

    connect: float = 30.0
    greeting: float = 300.0
    command: float = 300.0
    dataCommand: float = 120.0
    block: float = 180.0
    final: float = 600.0

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """
        The same limit for every wait (C{SMTPTUT_TIMEOUT}).
        """
        return cls(seconds, seconds, seconds, seconds, seconds, seconds)

    @classmethod
    def of(cls, timeout: float | Timeouts | None) -> Timeouts:
        """
        L{Timeouts} from a number of seconds for every wait, or the defaults.
        """
        if timeout is None:
            return cls()
        if isinstance(timeout, Timeouts):
            return timeout
        return cls.uniform(timeout)


def statusForCode(code: int) -> str:
    """
    C{delivered} for 2xx, C{bounced} for 5xx, C{deferred} for anything else.
    """
    if 200 <= code < 300:
        return DELIVERED
    if 500 <= code < 600:
        return BOUNCED
    return DEFERRED


def addressLiteral(address: IAddress) -> str:
    """
    The RFC 5321 §4.1.3 address literal of a TCP address: C{[192.0.2.1]} or
    C{[IPv6:2001:db8::1]} (without any zone).
    """
    host = str(getattr(address, "host", "")).split("%")[0]
    if ":" in host:
        return f"[IPv6:{host}]"
    return f"[{host}]"


#: The note on the outcome when a login was asked for but not offered.
NOT_AUTHENTICATED = "not authenticated: the server offers no AUTH"


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
    @ivar errorCode: the SMTP code that came with it, or L{NO_REPLY}.
    @ivar tlsFailed: whether the session ended in the TLS handshake.
    @ivar connected: C{False} when no connection could be made at all.
    """

    outcomes: list[RecipientOutcome]
    unsettled: list[Envelope]
    error: str | None = None
    errorCode: int = NO_REPLY
    tlsFailed: bool = False
    connected: bool = True


class SMTPTutorialClient(smtp.ESMTPClient):
    """
    The tutorial's C{SMTPTutorialClient}, sending each envelope it is given
    over one connection and noting each recipient's fate.

    Twisted's C{ESMTPClient} does the greeting, EHLO, STARTTLS and AUTH; the
    transactions are run here, because its own send an RSET after every
    message, drop the connection when every recipient is refused, know
    nothing of PIPELINING (RFC 2920) and miss dots in the message (see
    L{MessageProducer}).
    """

    factory: SMTPClientFactory

    # No transcript is kept: it would hold the AUTH exchange, and Twisted puts
    # it in the text of its exceptions.
    debug = False

    def __init__(
        self, secret: bytes | None, contextFactory: Any = None, *args: Any, **kw: Any
    ) -> None:
        envelopes: Iterable[Envelope] = kw.pop("envelopes", ())
        username: bytes | None = kw.pop("username", None)
        tlsPolicy: str = kw.pop("tlsPolicy", "may" if contextFactory else "off")
        super().__init__(secret, contextFactory, *args, **kw)
        self.tlsPolicy = tlsPolicy
        self.requireTransportSecurity = tlsPolicy in REQUIRED
        if username is not None and secret is not None:
            for authenticator in (
                smtp.PLAINAuthenticator(username),
                smtp.LOGINAuthenticator(username),
                smtp.CramMD5ClientAuthenticator(username),
            ):
                self.registerAuthenticator(authenticator)
        self._envelopes: Iterator[Envelope] = iter(envelopes)
        self._current: Envelope | None = None
        self._extensions: dict[bytes, bytes | None] = {}
        self._pipelining = False
        self._unsent: deque[tuple[bytes, Callable[[int, bytes], None]]] = deque()
        self._waiting: deque[Callable[[int, bytes], None]] = deque()
        self._mailReply: Reply | None = None
        self._rcptReplies: list[Reply] = []
        self._dataReply: Reply | None = None
        self._messageSent = False
        self._tlsStarted = False
        self._tlsDone = False
        self.timeouts = Timeouts()
        self.outcomes: list[RecipientOutcome] = []
        self.failure: tuple[str, int] | None = None
        self.notes: tuple[str, ...] = ()

    # The tutorial's hooks.

    def getMailFrom(self) -> str | None:
        self._current = next(self._envelopes, None)
        return None if self._current is None else self._current.sender

    def getMailTo(self) -> list[str]:
        assert self._current is not None
        return list(self._current.recipients)

    def getMailData(self) -> MessageSource:
        assert self._current is not None
        return self._current.message

    def sentMail(
        self,
        code: int,
        resp: bytes | str,
        numOk: int,
        addresses: list[tuple[bytes | str, int, bytes | str]],
        log: Any,
    ) -> None:
        """
        Note the final reply for each recipient of the transaction just ended.
        """
        for address, rcptCode, rcptResp in addresses:
            if isinstance(address, bytes):
                address = address.decode("utf-8", "replace")
            self._record(str(address), rcptCode, _text(rcptResp))

    # Session set-up, with ESMTPClient.

    def connectionMade(self) -> None:
        # Without TCP_NODELAY every message waits ~40 ms for a delayed ACK.
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
        self.timeouts = self.factory.timeouts
        self.timeout = self.timeouts.greeting  # type: ignore[assignment]
        if not self.identity:
            # No fully qualified name: the address this connection comes
            # from, as Postfix's smtp_helo_name would need to be set to.
            local = self.transport.getHost()  # type: ignore[union-attr]
            self.identity = addressLiteral(local).encode("ascii")
        super().connectionMade()

    # Longer lines are refused (lineLengthExceeded), not kept.
    MAX_LENGTH = MAX_REPLY_LINE - 2

    def lineReceived(self, line: bytes) -> Any:
        # Twisted's SMTPClient.lineReceived keeps every continuation line of
        # a reply and restarts the timer on each (no Twisted ticket found):
        # a server sending "250-..." forever, or one line every few seconds,
        # would grow the client without end and hold it for ever.  Here a
        # reply has at most MAX_REPLY_LINES lines, and the timer runs from
        # the command to the end of its reply: only a whole reply restarts it.
        if line[3:4] == b"-" and line[:3].isdigit():
            if len(self.resp) >= MAX_REPLY_LINES - 1:
                self._giveUp(
                    f"the server's reply is longer than {MAX_REPLY_LINES} lines"
                )
                return None
            self.resp.append(line[4:])
            return None
        return super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._giveUp(
            f"the server's reply has a line longer than {MAX_REPLY_LINE} octets"
        )

    def _giveUp(self, reason: str) -> None:
        """
        Stop at a reply that breaks the protocol: drop what is buffered and
        abort the connection; what is not settled is deferred with C{reason}.
        """
        self._setFailure(reason, NO_REPLY)
        self.resp = []
        self.clearLineBuffer()
        cast(ITCPTransport, self.transport).abortConnection()

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        # TimeoutMixin would use the global reactor; use the factory's clock.
        return self.factory.clock.callLater(period, func)

    def sendLine(self, line: bytes) -> None:
        wait = self.timeouts.dataCommand if line == b"DATA" else self.timeouts.command
        if self.timeOut != wait:
            self.setTimeout(wait)
        super().sendLine(line)

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
        if self._tlsStarted:
            self._tlsDone = True
        super().esmtpState_serverConfig(code, resp)

    def esmtpState_starttls(self, code: int, resp: bytes) -> None:
        self._tlsStarted = True
        # Twisted would read whatever came after the 220 in the same packet
        # as plaintext replies once TLS is on: a man in the middle could
        # inject replies that way (as in CVE-2011-0411).  Refuse instead.
        if self.clearLineBuffer():
            self._setFailure("TLS handshake failed: plaintext after STARTTLS's 220", 0)
            cast(ITCPTransport, self.transport).abortConnection()
            return
        super().esmtpState_starttls(code, resp)

    def esmtpTLSFailed(self, code: int = -1, resp: bytes | None = None) -> None:
        if self.tlsPolicy == "may" and not self._tlsStarted:
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
                self._quit()
                return
        super().authenticate(code, resp, items)

    def smtpState_from(self, code: int, resp: bytes) -> None:
        # The session is ready (after EHLO or HELO, STARTTLS and AUTH): from
        # here on every reply goes to the handler of the command it answers.
        self._expected = range(0, 1000)  # type: ignore[assignment]
        self._okresponse = self._dispatch
        self._failresponse = self._dispatch
        self._pipelining = b"PIPELINING" in self._extensions
        self._nextTransaction()

    # Transactions (RFC 5321 §3.3), pipelined when the server allows.

    def _nextTransaction(self) -> None:
        sender = self.getMailFrom()
        while (
            self._current is not None
            and self._current.message.eightBit
            and b"8BITMIME" not in self._extensions
        ):
            # RFC 6152 §3: 8-bit data only to a server that offers 8BITMIME.
            # Converting it would change the message: it bounces instead.
            for recipient in self._current.recipients:
                self._record(recipient, NO_REPLY, EIGHT_BIT_REFUSED, BOUNCED)
            sender = self.getMailFrom()
        if sender is None or self._current is None:
            self._quit()
            return
        self._mailReply, self._rcptReplies, self._dataReply = None, [], None
        self._messageSent = False
        self._unsent.clear()
        self._unsent.append((self._mailLine(sender), self._mailReplied))
        for recipient in self.getMailTo():
            line = b"RCPT TO:" + pathOf(recipient)
            self._unsent.append((line, self._rcptReplied))
        self._unsent.append((b"DATA", self._dataReplied))
        if self._pipelining:
            while self._unsent:
                self._sendCommand()
        else:
            self._sendCommand()

    def _mailLine(self, sender: str) -> bytes:
        line = b"MAIL FROM:" + pathOf(sender)
        message = self.getMailData()
        if b"SIZE" in self._extensions:
            line += b" SIZE=%d" % message.size
        if message.eightBit and b"8BITMIME" in self._extensions:
            line += b" BODY=8BITMIME"
        return line

    def _sendCommand(self) -> None:
        line, handler = self._unsent.popleft()
        self._waiting.append(handler)
        self.sendLine(line)

    def _dispatch(self, code: int, resp: bytes) -> None:
        if code == 421:
            # The server is closing: what is not settled goes to another exchange.
            self._setFailure(_text(resp), code)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if not self._waiting:
            self._setFailure(f"unexpected reply from the server: {code}", 0)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._waiting.popleft()(code, resp)

    def _mailReplied(self, code: int, resp: bytes) -> None:
        self._mailReply = (code, resp)
        if self._pipelining:
            return
        if code == 250:
            self._sendCommand()
        else:
            self._endTransaction(open=False)

    def _rcptReplied(self, code: int, resp: bytes) -> None:
        self._rcptReplies.append((code, resp))
        if self._pipelining:
            return
        if self._unsent[0][0] != b"DATA" or self._anyAccepted():
            self._sendCommand()
        else:
            self._endTransaction(open=True)

    def _anyAccepted(self) -> bool:
        return (
            self._mailReply is not None
            and self._mailReply[0] == 250
            and any(200 <= code < 300 for code, _ in self._rcptReplies)
        )

    def _dataReplied(self, code: int, resp: bytes) -> None:
        if code == 354 and self._anyAccepted():
            producer = MessageProducer(self.getMailData(), progress=self.resetTimeout)
            self.setTimeout(self.timeouts.block)
            sending = producer.beginTransfer(cast(IConsumer, self.transport))
            sending.addCallbacks(self._messageWritten, self._sendingFailed)
            self._waiting.append(self._finalReplied)
        elif code == 354:
            # Pipelined, the server took DATA though it took no recipient: an
            # empty message ends it (RFC 2920 §3.1), and its reply means nothing.
            self.transport.write(b".\r\n")  # type: ignore[union-attr]
            self._waiting.append(lambda code, resp: None)
            self._endTransaction(open=False)
        else:
            self._dataReply = (code, resp)
            mailOk = self._mailReply is not None and self._mailReply[0] == 250
            self._endTransaction(open=mailOk)

    def _messageWritten(self, ignored: None) -> None:
        self._messageSent = True
        self.setTimeout(self.timeouts.final)

    def _sendingFailed(self, failure: Failure) -> None:
        self._setFailure(str(failure.value) or failure.value.__class__.__name__, 0)

    def _finalReplied(self, code: int, resp: bytes) -> None:
        if not self._messageSent:
            # A reply before the final dot (RFC 5321 §4.1.1.4 allows none):
            # going on would write the next command into the message.  A
            # refusal settles the recipients; anything else leaves them to
            # be tried again, the message never having been taken whole.
            if 500 <= code < 600:
                self._dataReply = (code, resp)
                self._endTransaction(open=False, carryOn=False)
            self._giveUp(
                "the server replied before the end of the message:"
                f" {code} {_text(resp)}"
            )
            return
        self._dataReply = (code, resp)
        self._endTransaction(open=False)

    def _endTransaction(self, open: bool, carryOn: bool = True) -> None:
        """
        Give each recipient the reply that settled it, then go on to the next
        envelope (unless not C{carryOn}), after an RSET if the server still
        holds this transaction.

        Recipients refused because the transaction reached the server's
        recipient limit (L{tooManyRecipients}) go in a further transaction
        on this connection, when this one took any recipient at all.
        """
        assert self._current is not None
        mail = self._mailReply or (0, b"no reply to MAIL")
        results: list[tuple[bytes | str, int, bytes | str]] = []
        again: list[str] = []
        progress = self._anyAccepted()
        for i, recipient in enumerate(self._current.recipients):
            if (
                progress
                and i < len(self._rcptReplies)
                and tooManyRecipients(*self._rcptReplies[i])
            ):
                again.append(recipient)
                continue
            if mail[0] != 250:
                code, resp = mail
            elif i < len(self._rcptReplies) and not (
                200 <= self._rcptReplies[i][0] < 300
            ):
                code, resp = self._rcptReplies[i]
            elif self._dataReply is not None:
                code, resp = self._dataReply
            else:
                code, resp = self._rcptReplies[i]
            results.append((recipient, code, resp))
        okCount = sum(1 for _, code, _ in results if 200 <= code < 300)
        final = self._dataReply or mail
        self.sentMail(final[0], final[1], okCount, results, self.log)
        if again:
            rest = Envelope(self._current.sender, tuple(again), self._current.message)
            self._envelopes = chain([rest], self._envelopes)
        self._current = None
        self._unsent.clear()
        if not carryOn:
            return
        if open:
            self._waiting.append(lambda code, resp: self._nextTransaction())
            self.sendLine(b"RSET")
        else:
            self._nextTransaction()

    def _quit(self) -> None:
        self._waiting.append(self._quitReplied)
        self._expected = range(0, 1000)  # type: ignore[assignment]
        self._okresponse = self._failresponse = self._dispatch
        self.sendLine(b"QUIT")
        # Everything is settled: do not wait long for a goodbye.
        self.setTimeout(min(self.timeouts.command, 10.0))

    def _quitReplied(self, code: int, resp: bytes) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    # Where a session ends.

    def _setFailure(self, reason: str, code: int) -> None:
        if self.failure is None:
            self.failure = (reason, code)

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
            self._setFailure(_text(exc.resp), code)
        else:
            self._setFailure(str(exc) or exc.__class__.__name__, 0)
        super().sendError(exc)

    def timeoutConnection(self) -> None:
        self._setFailure(f"no reply from the server in {self.timeOut:g} s", 0)
        cast(ITCPTransport, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        tlsFailed = self._tlsStarted and not self._tlsDone
        if tlsFailed:
            self._setFailure(f"TLS handshake failed: {_tlsReason(reason)}", 0)
        unsettled: list[Envelope] = []
        if self._current is not None:
            self._settleWhatArrived()
        if self._current is not None:
            unsettled.append(self._current)
            self._current = None
        unsettled.extend(self._envelopes)
        error, errorCode = self.failure or (None, NO_REPLY)
        if unsettled and error is None:
            error = "the connection closed before the transaction completed"
        self.factory.attemptFinished(
            AttemptResult(self.outcomes, unsettled, error, errorCode, tlsFailed)
        )

    def _settleWhatArrived(self) -> None:
        """
        The connection closed in the middle of a transaction (Exim's ACL
        C{drop} answers C{550} and closes): the replies that did arrive
        still count, as for Postfix.  A refused MAIL settles every
        recipient, a refused RCPT its recipient; the others stay unsettled.
        """
        assert self._current is not None
        mail = self._mailReply
        if mail is None:
            return
        if mail[0] != 250:
            self._endTransaction(open=False, carryOn=False)
            return
        left: list[str] = []
        for i, recipient in enumerate(self._current.recipients):
            if i < len(self._rcptReplies):
                code, resp = self._rcptReplies[i]
                if not (200 <= code < 300) and not tooManyRecipients(code, resp):
                    self._record(recipient, code, _text(resp))
                    continue
            left.append(recipient)
        if left:
            self._current = Envelope(
                self._current.sender, tuple(left), self._current.message
            )
        else:
            self._current = None

    def _record(
        self, recipient: str, code: int, reply: str, status: str | None = None
    ) -> None:
        outcome = RecipientOutcome(
            recipient,
            status or statusForCode(code),
            code,
            reply,
            self.factory.exchange,
            self.factory.address,
            self.notes,
        )
        self.outcomes.append(outcome)


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
    return _text(str(value)) or value.__class__.__name__


class SMTPClientFactory(protocol.ClientFactory):
    """
    The tutorial's C{SMTPClientFactory}: builds an L{SMTPTutorialClient} for
    one connection to one exchange, and reports how that connection ended.

    @param timeout: seconds for every wait, or L{Timeouts}, or L{None} for
        the RFC 5321 waits.
    @param tlsMode: C{off}, C{may}, C{encrypt} or C{verify} (see
        L{smtptut.tls.clientContext}, which makes C{contextFactory}).
    @param username: with C{secret} (the password), log in with AUTH.
    @param clock: what times the waits; the global reactor by default.
    """

    protocol = SMTPTutorialClient  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        envelopes: Iterable[Envelope],
        identity: str | None = None,
        secret: bytes | None = None,
        contextFactory: Any = None,
        timeout: float | Timeouts | None = None,
        exchange: str | None = None,
        address: str | None = None,
        username: bytes | None = None,
        tlsMode: str | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock: IReactorTime = clock  # type: ignore[assignment]
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
        self.tlsMode = tlsMode or ("may" if contextFactory is not None else "off")
        self.finished: Deferred[AttemptResult] = Deferred()

    def __repr__(self) -> str:
        return f"<SMTPClientFactory to {self.exchange or self.address}>"

    def buildProtocol(self, addr: IAddress | None) -> SMTPTutorialClient:  # type: ignore[override]
        client = self.protocol(
            secret=self.secret,
            contextFactory=self.contextFactory,
            identity=self.identity,
            envelopes=self.envelopes,
            username=self.username,
            tlsPolicy=self.tlsMode,
        )
        client.factory = self
        return client

    def attemptFinished(self, result: AttemptResult) -> None:
        """
        Called by the protocol when its connection is gone.
        """
        if not self.finished.called:
            self.finished.callback(result)
