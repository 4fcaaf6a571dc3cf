"""DATA and the message's text as the framer hands it over, to its final dot, for ConsoleESMTP."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtptut.server.commands import (
    Replies,
    Reply,
    decode,
    storageError,
    storageReply,
)
from smtptut.server.framing import Framer
from smtptut.server.messages import ISinkMessage
from smtptut.server.session import Session, State
from smtptut.server.settings import ServerSettings


class DataCommands:
    """
    L{ConsoleESMTP}'s DATA (RFC 5321 §4.1.1.4): the message is opened,
    streamed into storage line by line, and stored (or refused) at its final
    dot.  The envelope it carries is L{TransactionCommands}'; what it uses
    of the protocol is declared here.
    """

    log: Logger
    settings: ServerSettings
    session: Session
    framer: Framer
    peer: str
    _message: ISinkMessage | None
    _reply: Callable[[int, bytes | str], None]
    _refused: Callable[..., None]
    _error: Callable[..., None]
    _flush: Callable[[], None]
    _wait: Callable[[defer.Deferred[None]], None]
    _traceFields: Callable[[], bytes]
    _logTransaction: Callable[[str, str | None], None]

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
