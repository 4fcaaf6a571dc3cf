"""Where a received message goes: the declared ISinkMessage, the console, a Maildir, both."""

from __future__ import annotations

import codecs
import tempfile
from typing import IO, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from smtptut.server.consoleview import consoleSafe, showMessage
from smtptut.server.maildir import MaildirMessage

#: The console copy of a message stays in memory up to this size, then spools.
SPOOL_IN_MEMORY = 1024 * 1024

log = Logger()


class ISinkMessage(smtp.IMessage):
    """
    A message the sink receives: Twisted's L{smtp.IMessage} (C{eomReceived}
    fires when it is stored, C{connectionLost} drops it), taking its text in
    chunks rather than one line at a time.
    """

    def trace(returnPath: bytes, received: bytes) -> None:
        """
        The trace fields to put on top: C{returnPath} (the envelope sender,
        for a C{Return-Path:} field) and C{received} (C{Received:} and
        C{Delivered-To:} fields, LF line ends), before any L{write}.
        """

    def write(data: bytes) -> None:
        """
        Part of the message's text, complete lines with LF line ends.
        """


@implementer(ISinkMessage)
class ConsoleMessage:
    """
    A message being received, printed when it is complete, as the tutorial
    does; held in a spool (in memory while small, then a temporary file) so
    that a large message costs no memory and concurrent messages do not mix.
    """

    def __init__(self, output: IO[str], spoolDirectory: str | None = None) -> None:
        """
        @param spoolDirectory: where a large message is spooled (default:
            C{tempfile}'s, from C{TMPDIR}).
        """
        self.output = output
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


@implementer(ISinkMessage)
class MaildirSink:
    """
    A message streamed into a Maildir: C{Return-Path:} and C{Received:} on
    top, then the message with LF line ends; in C{new/} once L{eomReceived}
    fires (with its path).
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


@implementer(ISinkMessage)
class Destinations:
    """
    One message going to several places (the console, a Maildir).
    """

    def __init__(self, parts: list[ISinkMessage]) -> None:
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

        def firstPath(results: list[str | None]) -> str | None:
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
