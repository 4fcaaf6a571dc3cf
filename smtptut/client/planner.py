"""Sans-IO SMTP transactions: envelopes and extensions in, command lines and settled recipients out."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain

from smtptut.client.message import MessageSource
from smtptut.client.model import Envelope

#: Why a message with 8-bit data bounces at a server without 8BITMIME.
EIGHT_BIT_REFUSED = (
    "the message has 8-bit data and the server does not offer 8BITMIME"
    " (RFC 6152): not sent"
)


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


#: Why a recipient whose address is not ASCII bounces at a server without
#: SMTPUTF8 (RFC 6531 §3.2: no downgrade; its domain alone would have gone
#: as A-labels).
UTF8_ADDRESS_REFUSED = (
    "the server does not offer SMTPUTF8 (RFC 6531), which this non-ASCII address needs"
)

#: Why everyone bounces there when the sender's address, or a header field
#: (RFC 6532), is not ASCII.
UTF8_MESSAGE_REFUSED = (
    "the server does not offer SMTPUTF8 (RFC 6531), which the message's"
    " non-ASCII sender or header fields need"
)


def needsUTF8(envelope: Envelope) -> bool:
    """
    Whether the transaction needs SMTPUTF8: a non-ASCII address (a local
    part: domains go as A-labels) or header field.
    """
    return (
        not envelope.sender.isascii()
        or envelope.message.eightBitHeaders
        or not all(r.isascii() for r in envelope.recipients)
    )


def pathOf(address: str) -> bytes:
    """
    The RFC 5321 path for an address the settings already checked.

    Twisted's C{quoteaddr} parses every address again with
    C{email.utils.parseaddr}, a sixth of the client's time per message.
    """
    return b"<" + address.encode("utf-8") + b">"


def replyText(resp: bytes | str | None) -> str:
    """
    A reply's text on one line, for an outcome.
    """
    if resp is None:
        return ""
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(resp.split())


# What the planner asks of the connection, in order.


@dataclass(frozen=True)
class Send:
    """
    Send a command line (without its CRLF).
    """

    line: bytes


@dataclass(frozen=True)
class Transfer:
    """
    Stream the message (after C{354}); then call
    L{TransactionPlanner.messageWritten}.
    """

    message: MessageSource


@dataclass(frozen=True)
class Settle:
    """
    A transaction is over: the reply that settled each recipient (what the
    tutorial's C{sentMail} is given), C{code} and C{resp} the last reply.
    """

    code: int
    resp: bytes
    results: tuple[tuple[str, int, bytes], ...]


@dataclass(frozen=True)
class PassOn:
    """
    The server deferred a whole transaction (a 4xx reply to MAIL, or to
    every RCPT): its recipients are left for the next exchange, as Postfix
    does, with C{code} and C{reason} the reply in case none takes them.
    """

    recipients: tuple[str, ...]
    code: int
    reason: str


@dataclass(frozen=True)
class Refuse:
    """
    These recipients bounce with C{reason}, no command sent for them.
    """

    recipients: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Close:
    """
    The session cannot go on: close the connection; what is not settled is
    deferred with C{reason} (and C{code}, the server's, when it gave one).
    """

    reason: str
    code: int


@dataclass(frozen=True)
class Abort:
    """
    The server broke the protocol: drop what is buffered and abort now.
    """

    reason: str


@dataclass(frozen=True)
class Quit:
    """
    Everything is settled: send C{QUIT}.
    """


@dataclass(frozen=True)
class Hangup:
    """
    C{QUIT} was answered: close the connection.
    """


Step = Send | Transfer | Settle | PassOn | Refuse | Close | Abort | Quit | Hangup
Reply = tuple[int, bytes]
_Handler = Callable[[int, bytes], list[Step]]


class TransactionPlanner:
    """
    The transactions of one session (RFC 5321 §3.3), pipelined when the
    server offers PIPELINING (RFC 2920), with no I/O: L{begin} with the
    server's extensions once the session is ready, then L{replied} with
    each reply; each returns the L{Step}s to take, in order.

    Unlike Twisted's C{SMTPClient}, there is no RSET after a message, a
    transaction where every recipient is refused does not end the session,
    recipients over the server's limit go in another transaction
    (L{tooManyRecipients}), and 8-bit data goes only with 8BITMIME.
    """

    def __init__(self, envelopes: Iterable[Envelope]) -> None:
        self._envelopes: Iterator[Envelope] = iter(envelopes)
        self.current: Envelope | None = None
        self._extensions: Mapping[bytes, bytes | None] = {}
        self._pipelining = False
        self._unsent: deque[tuple[bytes, _Handler]] = deque()
        self._waiting: deque[_Handler] = deque()
        self._mailReply: Reply | None = None
        self._rcptReplies: list[Reply] = []
        self._dataReply: Reply | None = None
        self._messageSent = False
        #: Envelopes this server deferred whole (see L{PassOn}).
        self._passedOn: list[Envelope] = []

    def begin(self, extensions: Mapping[bytes, bytes | None]) -> list[Step]:
        """
        The session is ready (after EHLO, STARTTLS and AUTH): the first
        transaction's commands.
        """
        self._extensions = extensions
        self._pipelining = b"PIPELINING" in extensions
        return self._nextTransaction()

    def replied(self, code: int, resp: bytes) -> list[Step]:
        """
        A reply to the oldest command still unanswered.
        """
        if code == 421:
            # The server is closing: what is not settled goes to another exchange.
            return [Close(replyText(resp), code)]
        if not self._waiting:
            return [Close(f"unexpected reply from the server: {code}", 0)]
        return self._waiting.popleft()(code, resp)

    def messageWritten(self) -> None:
        """
        The whole message, final dot included, has been written.
        """
        self._messageSent = True

    def quit(self) -> list[Step]:
        """
        End the session now, nothing sent (or nothing more).
        """
        self._waiting.append(lambda code, resp: [Hangup()])
        return [Quit()]

    def connectionLost(self) -> tuple[list[Step], list[Envelope]]:
        """
        The connection is gone: the recipients the replies that did arrive
        settle, and the envelopes (or what is left of them) still unsettled.
        """
        steps: list[Step] = []
        if self.current is not None:
            steps = self._settleWhatArrived()
        unsettled = list(self._passedOn)
        if self.current is not None:
            unsettled.append(self.current)
        self.current = None
        unsettled.extend(self._envelopes)
        return steps, unsettled

    # Transactions.

    def _nextTransaction(self) -> list[Step]:
        steps: list[Step] = []
        envelope = next(self._envelopes, None)
        utf8 = b"SMTPUTF8" in self._extensions
        while envelope is not None:
            if envelope.message.eightBit and b"8BITMIME" not in self._extensions:
                # RFC 6152 §3: 8-bit data only to a server that offers 8BITMIME.
                # Converting it would change the message: it bounces instead.
                steps.append(Refuse(envelope.recipients, EIGHT_BIT_REFUSED))
            elif utf8 or not needsUTF8(envelope):
                break
            elif not envelope.sender.isascii() or envelope.message.eightBitHeaders:
                steps.append(Refuse(envelope.recipients, UTF8_MESSAGE_REFUSED))
            else:
                # Only the non-ASCII recipients bounce; the others go.
                wide = tuple(r for r in envelope.recipients if not r.isascii())
                steps.append(Refuse(wide, UTF8_ADDRESS_REFUSED))
                ascii = tuple(r for r in envelope.recipients if r.isascii())
                if ascii:
                    envelope = Envelope(envelope.sender, ascii, envelope.message)
                    break
            envelope = next(self._envelopes, None)
        self.current = envelope
        if envelope is None:
            return steps + self.quit()
        self._mailReply, self._rcptReplies, self._dataReply = None, [], None
        self._messageSent = False
        self._unsent.clear()
        self._unsent.append((self._mailLine(envelope), self._mailReplied))
        for recipient in envelope.recipients:
            self._unsent.append((b"RCPT TO:" + pathOf(recipient), self._rcptReplied))
        self._unsent.append((b"DATA", self._dataReplied))
        steps.append(self._sendNext())
        while self._pipelining and self._unsent:
            steps.append(self._sendNext())
        return steps

    def _mailLine(self, envelope: Envelope) -> bytes:
        line = b"MAIL FROM:" + pathOf(envelope.sender)
        if b"SIZE" in self._extensions:
            line += b" SIZE=%d" % envelope.message.size
        if envelope.message.eightBit and b"8BITMIME" in self._extensions:
            line += b" BODY=8BITMIME"
        if b"SMTPUTF8" in self._extensions and needsUTF8(envelope):
            line += b" SMTPUTF8"
        return line

    def _sendNext(self) -> Step:
        line, handler = self._unsent.popleft()
        self._waiting.append(handler)
        return Send(line)

    def _mailReplied(self, code: int, resp: bytes) -> list[Step]:
        self._mailReply = (code, resp)
        if self._pipelining:
            return []
        if code == 250:
            return [self._sendNext()]
        return self._end(open=False)

    def _rcptReplied(self, code: int, resp: bytes) -> list[Step]:
        self._rcptReplies.append((code, resp))
        if self._pipelining:
            return []
        if self._unsent[0][0] != b"DATA" or self._anyAccepted():
            return [self._sendNext()]
        return self._end(open=True)

    def _anyAccepted(self) -> bool:
        return (
            self._mailReply is not None
            and self._mailReply[0] == 250
            and any(200 <= code < 300 for code, _ in self._rcptReplies)
        )

    def _dataReplied(self, code: int, resp: bytes) -> list[Step]:
        assert self.current is not None
        if code == 354 and self._anyAccepted():
            self._waiting.append(self._finalReplied)
            return [Transfer(self.current.message)]
        if code == 354:
            # Pipelined, the server took DATA though it took no recipient: an
            # empty message ends it (RFC 2920 §3.1), and its reply means nothing.
            self._waiting.append(lambda code, resp: [])
            return [Send(b".")] + self._end(open=False)
        self._dataReply = (code, resp)
        mailOk = self._mailReply is not None and self._mailReply[0] == 250
        return self._end(open=mailOk)

    def _finalReplied(self, code: int, resp: bytes) -> list[Step]:
        if not self._messageSent:
            # A reply before the final dot (RFC 5321 §4.1.1.4 allows none):
            # going on would write the next command into the message.  A
            # refusal settles the recipients; anything else leaves them to
            # be tried again, the message never having been taken whole.
            steps: list[Step] = []
            if 500 <= code < 600:
                self._dataReply = (code, resp)
                steps = self._end(open=False, carryOn=False)
            reason = (
                "the server replied before the end of the message:"
                f" {code} {replyText(resp)}"
            )
            return steps + [Abort(reason)]
        self._dataReply = (code, resp)
        return self._end(open=False)

    def _end(self, open: bool, carryOn: bool = True) -> list[Step]:
        """
        Give each recipient the reply that settled it, then go on to the next
        envelope (unless not C{carryOn}), after an RSET if the server still
        holds this transaction.

        Recipients refused because the transaction reached the server's
        recipient limit go in a further transaction on this connection,
        when this one took any recipient at all.
        """
        assert self.current is not None
        mail = self._mailReply or (0, b"no reply to MAIL")
        deferredWhole = self._deferredWhole()
        if deferredWhole is not None:
            passed = self.current
            self._passedOn.append(passed)
            self.current = None
            self._unsent.clear()
            code, resp = deferredWhole
            steps: list[Step] = [PassOn(passed.recipients, code, replyText(resp))]
            if not carryOn:
                return steps
            if open:
                self._waiting.append(lambda code, resp: self._nextTransaction())
                return steps + [Send(b"RSET")]
            return steps + self._nextTransaction()
        results: list[tuple[str, int, bytes]] = []
        again: list[str] = []
        progress = self._anyAccepted()
        for i, recipient in enumerate(self.current.recipients):
            rcpt = self._rcptReplies[i] if i < len(self._rcptReplies) else None
            if progress and rcpt is not None and tooManyRecipients(*rcpt):
                again.append(recipient)
                continue
            if mail[0] != 250:
                code, resp = mail
            elif rcpt is not None and not 200 <= rcpt[0] < 300:
                code, resp = rcpt
            elif self._dataReply is not None:
                code, resp = self._dataReply
            else:
                code, resp = rcpt or mail
            results.append((recipient, code, resp))
        final = self._dataReply or mail
        steps = [Settle(final[0], final[1], tuple(results))]
        if again:
            rest = Envelope(self.current.sender, tuple(again), self.current.message)
            self._envelopes = chain([rest], self._envelopes)
        self.current = None
        self._unsent.clear()
        if not carryOn:
            return steps
        if open:
            self._waiting.append(lambda code, resp: self._nextTransaction())
            return steps + [Send(b"RSET")]
        return steps + self._nextTransaction()

    def _deferredWhole(self) -> Reply | None:
        """
        The 4xx reply that deferred the current transaction as a whole: to
        MAIL, or to every RCPT (none taken, none refused for good).
        """
        assert self.current is not None
        mail = self._mailReply
        if mail is None:
            return None
        if 400 <= mail[0] < 500:
            return mail
        replies = self._rcptReplies
        if (
            mail[0] == 250
            and replies
            and len(replies) == len(self.current.recipients)
            and all(400 <= code < 500 for code, _ in replies)
        ):
            return replies[-1]
        return None

    def _settleWhatArrived(self) -> list[Step]:
        """
        The connection closed in the middle of a transaction (Exim's ACL
        C{drop} answers C{550} and closes): the replies that did arrive
        still count, as for Postfix.  A refused MAIL settles every
        recipient, a refused RCPT its recipient; the others stay unsettled.
        """
        assert self.current is not None
        mail = self._mailReply
        if mail is None:
            return []
        if mail[0] != 250:
            return self._end(open=False, carryOn=False)
        left: list[str] = []
        refused: list[tuple[str, int, bytes]] = []
        for i, recipient in enumerate(self.current.recipients):
            if i < len(self._rcptReplies):
                code, resp = self._rcptReplies[i]
                if not (200 <= code < 300) and not tooManyRecipients(code, resp):
                    refused.append((recipient, code, resp))
                    continue
            left.append(recipient)
        current = self.current
        self.current = (
            Envelope(current.sender, tuple(left), current.message) if left else None
        )
        return [Settle(mail[0], mail[1], tuple(refused))] if refused else []
