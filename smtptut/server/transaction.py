"""The mail transaction's envelope commands (MAIL, RCPT) and its log line, for ConsoleESMTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import smtp

from smtptut.server.commands import (
    Replies,
    checkMailParameters,
    decode,
    parseAddress,
    parseRecipient,
    printable,
    splitPath,
)
from smtptut.server.delivery import ISinkDelivery
from smtptut.server.framing import Framer
from smtptut.server.messages import ISinkMessage
from smtptut.server.session import Session
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
    L{ConsoleESMTP}'s mail transaction (RFC 5321 §3.3): the envelope (MAIL
    and RCPT), its trace fields and the transaction's log line; DATA and the
    message's text are L{DataCommands}.  Apart from the rest of the protocol
    (the connection, flow control, STARTTLS, AUTH) so that each reads on its
    own; what it uses of the protocol is declared here.
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
        # One adaptation, not a providedBy check and then another (a few per
        # cent of a small message's time).
        sink = ISinkDelivery(self.delivery, None)
        if sink is not None:
            return sink.validateRecipient(user, self._localHost())
        return self.delivery.validateTo(user)

    def _traceFields(self) -> bytes:
        """
        The C{Received:} and C{Delivered-To:} fields, LF line ends.
        """
        transaction = self.session.transaction
        assert transaction.sender is not None
        users = transaction.users()
        sink = ISinkDelivery(self.delivery, None)
        if sink is not None:
            received = sink.traceHeader(
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
