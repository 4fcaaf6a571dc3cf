"""The mail transaction's commands (MAIL, RCPT, DATA) and its message's text, for ConsoleESMTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from smtptut.server.commands import (
    Replies,
    Reply,
    checkMailParameters,
    decode,
    parseAddress,
    parseRecipient,
    printable,
    splitPath,
    storageError,
    storageReply,
)
from smtptut.server.delivery import ISinkDelivery
from smtptut.server.framing import Framer
from smtptut.server.messages import ISinkMessage
from smtptut.server.session import Session, State
from smtptut.server.settings import ServerSettings

if TYPE_CHECKING:
    from smtptut.server.factory import ConsoleSMTPFactory

#: Postfix's smtpd_recipient_overshoot_limit: recipients past
#: SMTPTUT_MAX_RECIPIENTS a session may send before each one counts as an
#: error.  A client that sends more than the limit is not misbehaving: it
#: sends the rest in a later transaction (RFC 5321 §4.5.3.1.10).
RECIPIENT_OVERSHOOT_LIMIT = 1000


class TransactionCommands:
    """
    L{ConsoleESMTP}'s mail transaction (RFC 5321 §3.3): MAIL, RCPT and DATA,
    the message's text as the framer hands it over, its end and the log
    line.  Apart from the rest of the protocol (the connection, flow
    control, STARTTLS, AUTH) so that each reads on its own; what it uses of
    the protocol is declared here.
    """

    log: Logger
    factory: ConsoleSMTPFactory
    settings: ServerSettings
    session: Session
    framer: Framer
    delivery: smtp.IMessageDelivery
    peer: str
    _message: ISinkMessage | None
    _reply: Callable[[int, bytes | str], None]
    _refused: Callable[..., None]
    _error: Callable[..., None]
    _flush: Callable[[], None]
    _wait: Callable[[defer.Deferred[None]], None]

    def _localHost(self) -> str | None:
        raise NotImplementedError()

    def do_MAIL(self, rest: bytes) -> None:
        transaction = self.session.transaction
        if self.session.helo is None:
            self._error(b"MAIL", *Replies.NO_HELO)
            return
        if transaction.sender is not None:
            self._error(b"MAIL", *Replies.NESTED_MAIL)
            return
        parsed = splitPath(rest, b"FROM:")
        if parsed is None:
            self._error(b"MAIL", *Replies.MAIL_SYNTAX)
            return
        path, params = parsed
        refusal = checkMailParameters(params, self.settings.maxSize)
        if refusal is not None:
            self._error(b"MAIL", *refusal)
            return
        try:
            origin = parseAddress(path)
            transaction.sender = self.delivery.validateFrom(
                self.session.heloPair, origin
            )
        except smtp.SMTPBadSender as e:
            self._error(b"MAIL", e.code, e.resp)
            return
        except smtp.AddressError:
            self._error(b"MAIL", *Replies.BAD_SENDER)
            return
        self._reply(*Replies.SENDER_OK)

    def do_RCPT(self, rest: bytes) -> None:
        session = self.session
        transaction = session.transaction
        if transaction.sender is None:
            self._error(b"RCPT", *Replies.NO_MAIL)
            return
        parsed = splitPath(rest, b"TO:")
        if parsed is None or not parsed[0]:
            self._error(b"RCPT", *Replies.RCPT_SYNTAX)
            return
        path, params = parsed
        if params:
            self._error(b"RCPT", *Replies.UNSUPPORTED_PARAMETER)
            return
        if len(transaction.recipients) >= self.settings.maxRecipients:
            # Not an error (so far): see RECIPIENT_OVERSHOOT_LIMIT.
            session.overshoot += 1
            refuse = (
                self._error
                if session.overshoot > RECIPIENT_OVERSHOOT_LIMIT
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
            dest = parseRecipient(path, self.factory.domain)
            user = smtp.User(dest, session.heloPair, None, transaction.sender)
            makeMessage = self._validateRecipient(user)
        except smtp.SMTPBadRcpt as e:
            self._error(b"RCPT", e.code, e.resp, b"<" + path + b">")
            return
        except smtp.AddressError:
            self._error(b"RCPT", *Replies.BAD_RECIPIENT)
            return
        transaction.recipients.append((user, makeMessage))
        self._reply(*Replies.RECIPIENT_OK)

    def _validateRecipient(self, user: smtp.User) -> Callable[[], ISinkMessage]:
        """
        The delivery's verdict on C{user}, told the address the client
        connected to when it is an L{ISinkDelivery}.
        """
        if ISinkDelivery.providedBy(self.delivery):
            return ISinkDelivery(self.delivery).validateRecipient(
                user, self._localHost()
            )
        return self.delivery.validateTo(user)

    def _traceFields(self) -> bytes:
        """
        The C{Received:} and C{Delivered-To:} fields, LF line ends.
        """
        transaction = self.session.transaction
        assert transaction.sender is not None
        users = transaction.users()
        if ISinkDelivery.providedBy(self.delivery):
            received = ISinkDelivery(self.delivery).traceHeader(
                self.session.heloPair,
                transaction.sender,
                users,
                self.session.withProtocol,
            )
        else:
            received = self.delivery.receivedHeader(
                self.session.heloPair, transaction.sender, users
            )
        # RFC 9228: whom the message was for, so that a Bcc recipient
        # shows; one field per recipient, as Postfix's local delivery
        # writes it (a sink makes no aliases: X-Original-To would say the
        # same again).  Below Received:, so that the console still starts
        # with it, as the tutorial's does.
        return (
            received.replace(b"\r\n", b"\n")
            + b"\n"
            + b"".join(b"Delivered-To: %s\n" % bytes(user.dest) for user in users)
        )

    def do_DATA(self, rest: bytes) -> None:
        transaction = self.session.transaction
        if rest:
            self._error(b"DATA", *Replies.DATA_SYNTAX)
            return
        if transaction.sender is None:
            self._error(b"DATA", *Replies.NO_MAIL_FOR_DATA)
            return
        if not transaction.recipients:
            self._error(b"DATA", *Replies.NO_RECIPIENTS)
            return
        try:
            message = transaction.recipients[0][1]()
            message.trace(bytes(transaction.sender), self._traceFields())
        except OSError as e:
            # Cannot open a file in tmp/ (read-only, full): one line.
            self.log.error(
                "cannot store a message from {peer}: {error}",
                peer=self.peer,
                error=storageError(e),
            )
            self._reply(*storageReply(e))
            self.session.newTransaction()
            return
        except Exception:
            self.log.failure("while starting a message")
            self._reply(*Replies.CANNOT_TAKE)
            self.session.newTransaction()
            return
        self._message = message
        self.session.state = State.DATA
        self.framer.expectData()
        self._reply(*Replies.START_DATA)

    def failData(self, reply: Reply) -> None:
        """
        The message cannot be taken: drop it, read the rest, and give
        C{reply} after its end.
        """
        transaction = self.session.transaction
        if transaction.failure is None:
            transaction.failure = reply
            if self._message is not None:
                self._message.connectionLost()

    def dataContent(self, content: bytes) -> None:
        """
        Complete lines of the message (unstuffed, CRLF ends).
        """
        transaction = self.session.transaction
        if transaction.failure is not None:
            return
        transaction.size += len(content)
        if transaction.size > self.settings.maxSize:
            self.failData(Replies.TOO_BIG)
            return
        try:
            assert self._message is not None
            self._message.write(content.replace(b"\r\n", b"\n"))
        except OSError as e:
            # A full disk, a read-only Maildir: one log line, the rest of
            # the message read and dropped, a 4xx after the dot.
            self.log.error(
                "cannot store a message from {peer}: {error}",
                peer=self.peer,
                error=storageError(e),
            )
            self.failData(storageReply(e))

    def endOfData(self) -> None:
        """
        The message's final dot: store it, or give the refusal.
        """
        message, self._message = self._message, None
        failure = self.session.transaction.failure
        if failure is not None:
            code, text = failure
            self._logTransaction(f"refused: {code} {decode(text)}", None)
            self.session.newTransaction()
            if code in (451, 452):
                # The server's trouble, not the client's error.
                self._refused(b"DATA", code, text)
            else:
                self._error(b"DATA", code, text)
            return
        assert message is not None
        d = defer.maybeDeferred(message.eomReceived)
        d.addCallbacks(self._stored, self._notStored)
        self._wait(d)

    def _stored(self, path: str | None) -> None:
        self._reply(*Replies.STORED)
        if not self.framer.buffered:
            # The client waits for this reply, not for the log line (which
            # costs about as much as the rest of a small message): send it
            # first.  Pipelined commands still get their replies at once.
            self._flush()
        self._logTransaction("accepted", path)
        self.session.newTransaction()

    def _notStored(self, failure: Failure) -> None:
        reply = Replies.NOT_STORED
        if isinstance(failure.value, OSError):
            # A full disk or a read-only Maildir: one line, not a traceback.
            reply = storageReply(failure.value)
            self.log.error(
                "cannot store a message from {peer}: {error}",
                peer=self.peer,
                error=storageError(failure.value),
            )
        else:
            self.log.failure(
                "while storing a message from {peer}", failure, peer=self.peer
            )
        self._logTransaction(f"failed: {reply.code}", None)
        self.session.newTransaction()
        self._reply(*reply)

    def dropMessage(self, why: str) -> None:
        """
        The connection is gone with a message half received: drop it.
        """
        if self._message is None:
            return
        message, self._message = self._message, None
        try:
            message.connectionLost()
        except Exception:
            self.log.failure("while dropping a half-received message")
        self._logTransaction(why, None)

    def _logTransaction(self, result: str, path: str | None) -> None:
        """
        One log line for a transaction; its parts are also the event's fields
        (for JSON observers).  The text is made here: formatting nine fields
        in Twisted's observer costs more than the rest of a small message.
        """
        session = self.session
        transaction = session.transaction
        sender = transaction.sender
        fields = {
            "result": result,
            "peer": self.peer,
            "helo": printable(session.helo or b""),
            "sender": printable(bytes(sender)) if sender is not None else "",
            "recipients": ",".join(
                printable(bytes(user.dest)) for user in transaction.users()
            ),
            "size": transaction.size,
            "user": decode(session.user) if session.user else "-",
            "tls": session.startedTLS,
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
