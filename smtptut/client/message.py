"""The message to send: checked before connecting, then streamed in SMTP form."""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPullProducer
from zope.interface import implementer

from smtptut.errors import MessageError

#: The tutorial's own message (step 7 onwards), with the newlines SMTP wants.
TUTORIAL_MESSAGE = b"""\
Date: Fri, 6 Feb 2004 10:14:39 -0800
From: Tutorial Guy <tutorial_sender@example.com>
To: Tutorial Gal <tutorial_recipient@example.net>
Subject: Tutorate!

Hello, how are you, goodbye.
"""

#: RFC 5321 §4.5.3.1.6: a text line is at most 998 octets before its CRLF.
MAX_LINE = 998

#: How much of the message file one write carries.
CHUNK_SIZE = 2**16

#: The largest message taken from standard input (it is copied to a
#: temporary file first, which must not fill the disk): 100 MiB, four times
#: the largest message common MXes take (Postfix's default is 10 MB).
MAX_SPOOL = 100 * 2**20

#: Header fields left out of the message sent (lower case).
BLIND_FIELDS = frozenset({b"bcc", b"resent-bcc"})


@dataclass(frozen=True)
class MessageSource:
    """
    A checked message: how to open it, what it needs added, and what it holds.

    @ivar extraHeaders: C{Date:} and C{Message-ID:} fields to put in front of
        the message because it lacks them, in SMTP (CRLF) form.
    @ivar size: the message's size in octets as sent, before dot-stuffing.
    """

    name: str
    open: Callable[[], BinaryIO]
    eightBit: bool
    extraHeaders: bytes
    size: int
    #: Whether a header field holds non-ASCII text (RFC 6532): it may go
    #: only to a server that offers SMTPUTF8.
    eightBitHeaders: bool = False


def tutorialMessage() -> MessageSource:
    """
    The tutorial's message, ready to send.
    """
    return checkMessage("the tutorial's message", lambda: io.BytesIO(TUTORIAL_MESSAGE))


def messageFromPath(path: str, idDomain: str = "localhost") -> MessageSource:
    """
    Check the message file at C{path}, reading it once without keeping it.
    Only a regular file is taken: a FIFO would block C{open} until a writer
    comes, and could be read only once; a device may never end.
    """

    def opener() -> BinaryIO:
        # O_NONBLOCK: opening a FIFO with no writer returns at once, so that
        # it can be refused instead of hanging here.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise MessageError(
                    f"message file {path}: not a regular file (a FIFO, device or"
                    " socket is never read)",
                    missing=True,
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    try:
        if os.path.isdir(path):
            raise MessageError(f"message file {path}: is a directory", missing=True)
        return checkMessage(path, opener, idDomain)
    except OSError as e:
        raise MessageError(
            f"message file {path}: {e.strerror or e}", missing=True
        ) from None


def checkMessage(
    name: str, opener: Callable[[], BinaryIO], idDomain: str = "localhost"
) -> MessageSource:
    """
    Read the message once, refusing what SMTP cannot carry unchanged (a NUL,
    a bare CR, a line over 998 octets) or nothing at all, and noting what it
    lacks and holds.
    """
    checker = MessageChecker(name)
    with opener() as f:
        while True:
            line = f.readline(MAX_LINE + 3)
            if not line:
                break
            checker.feed(line)
    return checker.source(opener, idDomain)


@contextmanager
def spooledMessage(
    name: str, stream: BinaryIO, idDomain: str = "localhost", maxSize: int = MAX_SPOOL
) -> Iterator[MessageSource]:
    """
    A message read once from C{stream} (standard input), checked line by line
    as it is copied to a temporary file, so that copying stops at the first
    line SMTP cannot carry or once C{maxSize} octets are passed.

    The temporary file has no name (C{O_TMPFILE} on Linux, unlinked at once
    elsewhere), so nothing is left behind however the process ends, SIGTERM
    and SIGKILL included; each reader gets its own offset in it.
    """
    with tempfile.TemporaryFile(prefix="smtptut-", suffix=".eml") as spool:
        checker = MessageChecker(name, maxSize)
        while True:
            line = stream.readline(MAX_LINE + 3)
            if not line:
                break
            checker.feed(line)
            spool.write(line)
        spool.flush()
        fd = spool.fileno()

        def opener() -> BinaryIO:
            return io.BufferedReader(_PositionalReader(fd), CHUNK_SIZE)

        yield checker.source(opener, idDomain)


class MessageChecker:
    """
    The checks of L{checkMessage}, one line at a time: what SMTP cannot carry
    unchanged raises L{MessageError}; what the message lacks (C{Date:},
    C{Message-ID:}) and holds (8-bit data, C{Bcc:} fields) is noted.

    @ivar omit: the C{(start, end)} offsets of the C{Bcc:} and
        C{Resent-Bcc:} fields (continuation lines included), which are not
        sent: as sendmail and msmtp do, the blind copies stay blind.
    """

    def __init__(self, name: str, maxSize: int | None = None) -> None:
        self.name = name
        self.maxSize = maxSize
        self.number = 0
        self.offset = 0
        self.size = 0
        self.eightBit = False
        self.eightBitHeaders = False
        self.blank = True
        self.inHeaders = True
        self.seen: set[bytes] = set()
        self.omit: list[tuple[int, int]] = []
        self._omitting = False

    def feed(self, line: bytes) -> None:
        """
        Check one line as read, its line end included.
        """
        name = self.name
        self.number += 1
        number = self.number
        content = line.rstrip(b"\n")
        if content.endswith(b"\r"):
            content = content[:-1]
        if len(content) > MAX_LINE:
            raise MessageError(
                f"{name}: line {number} is longer than {MAX_LINE} octets"
            )
        if b"\0" in content:
            raise MessageError(f"{name}: line {number} contains a NUL byte")
        if b"\r" in content:
            raise MessageError(
                f"{name}: line {number} contains a bare CR (carriage return)"
            )
        if not self.eightBit and not content.isascii():
            self.eightBit = True
        if self.inHeaders and not content.isascii():
            self.eightBitHeaders = True
        if self.blank and content.strip():
            self.blank = False
        start, self.offset = self.offset, self.offset + len(line)
        if self.maxSize is not None and self.offset > self.maxSize:
            raise MessageError(f"{name}: larger than {self.maxSize} octets")
        if self.inHeaders:
            if not content:
                self.inHeaders = False
                self._omitting = False
            elif content[:1] not in b" \t":
                field = content.split(b":", 1)[0].strip().lower()
                self.seen.add(field)
                self._omitting = b":" in content and field in BLIND_FIELDS
                if self._omitting:
                    self.omit.append((start, self.offset))
            elif self._omitting:
                self.omit[-1] = (self.omit[-1][0], self.offset)
            if self._omitting:
                return
        self.size += len(content) + 2

    def source(self, opener: Callable[[], BinaryIO], idDomain: str) -> MessageSource:
        """
        The checked message, once every line was fed.
        """
        if self.blank:
            raise MessageError(f"{self.name}: the message is empty")
        extra = b""
        if b"date" not in self.seen:
            extra += b"Date: " + formatdate(localtime=True).encode("ascii") + b"\r\n"
        if b"message-id" not in self.seen:
            msgid = make_msgid(domain=idDomain).encode("ascii")
            extra += b"Message-ID: " + msgid + b"\r\n"
        if self.omit:
            omit = tuple(self.omit)
            inner = opener

            def opener() -> BinaryIO:
                return io.BufferedReader(_OmittingReader(inner(), omit), CHUNK_SIZE)

        return MessageSource(
            self.name,
            opener,
            self.eightBit,
            extra,
            self.size + len(extra),
            self.eightBitHeaders,
        )


class _PositionalReader(io.RawIOBase):
    """
    A reader of a file descriptor shared with others, at its own offset
    (C{pread}); closing it leaves the descriptor open.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, len(buffer), self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


class _OmittingReader(io.RawIOBase):
    """
    A file read without the C{(start, end)} ranges of octets in C{omit}.
    """

    def __init__(self, f: BinaryIO, omit: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self._file = f
        self._omit = list(omit)
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._omit and self._position >= self._omit[0][0]:
            start, end = self._omit.pop(0)
            while self._position < end:
                skipped = self._file.read(end - self._position)
                if not skipped:
                    return 0
                self._position += len(skipped)
        wanted = len(buffer)
        if self._omit:
            wanted = min(wanted, self._omit[0][0] - self._position)
        data = self._file.read(wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def toSMTP(lines: bytes) -> bytes:
    """
    Put whole lines (ending in LF or CRLF) in SMTP form: CRLF line ends, and
    a dot doubled at the start of any line (RFC 5321 §4.5.2).
    """
    wire = lines.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if wire.startswith(b"."):
        wire = b"." + wire
    return wire.replace(b"\r\n.", b"\r\n..")


@implementer(IPullProducer)
class MessageProducer:
    """
    Stream a message to the server in SMTP form, ending with the C{.} line.

    Unlike Twisted's C{FileSender}, which C{SMTPClient} uses, this splits the
    file only at line ends, so a dot at the start of the first line or right
    after a chunk boundary is stuffed too, and CRLF input is not doubled; and
    it sends the final C{.} in the same write as the last line, so Nagle's
    algorithm cannot hold it back.
    """

    def __init__(
        self,
        source: MessageSource,
        chunkSize: int = CHUNK_SIZE,
        progress: Callable[[], object] = lambda: None,
    ) -> None:
        self._source = source
        self._chunkSize = chunkSize
        self._progress = progress
        self._file: BinaryIO | None = None
        self._pending = b""
        self._next = b""
        self._consumer: IConsumer | None = None
        self._done: Deferred[None] | None = None

    def beginTransfer(self, consumer: IConsumer) -> Deferred[None]:
        """
        Start writing to C{consumer}; the result fires once all is written.
        """
        self._file = self._source.open()
        # Reading one chunk ahead tells the last chunk from the others, so
        # the final "." goes out in the same write as the last line.
        self._next = self._file.read(self._chunkSize)
        self._consumer = consumer
        done = self._done = Deferred()
        self._first = True
        # A pull producer is resumed at once: a small message may be done
        # before registerProducer returns.
        consumer.registerProducer(self, False)
        return done

    def resumeProducing(self) -> None:
        assert self._file is not None and self._consumer is not None
        chunk = self._next
        self._next = self._file.read(self._chunkSize) if chunk else b""
        self._progress()
        data = self._pending + chunk
        if self._next:
            cut = data.rfind(b"\n") + 1
            self._pending = data[cut:]
            out = toSMTP(data[:cut])
        else:
            self._pending = b""
            if data and not data.endswith(b"\n"):
                data += b"\n"
            out = toSMTP(data)
        if self._first:
            out = self._source.extraHeaders + out
            self._first = False
        if not self._next:
            self._finish(out + b".\r\n")
        elif out:
            self._consumer.write(out)

    def _finish(self, last: bytes) -> None:
        assert self._consumer is not None and self._done is not None
        self._consumer.write(last)
        self._close()
        self._consumer.unregisterProducer()
        done, self._done = self._done, None
        done.callback(None)

    def stopProducing(self) -> None:
        self._close()
        if self._done is not None:
            done, self._done = self._done, None
            done.errback(ConnectionError("the connection closed while sending"))

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
