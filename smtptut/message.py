"""The message to send: checked before connecting, then streamed in SMTP form."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from typing import BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPullProducer
from zope.interface import implementer

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


class MessageError(Exception):
    """
    The message cannot be sent as it is; the text is one line saying why.

    @ivar missing: C{True} when the message file could not be opened at all.
    """

    def __init__(self, text: str, missing: bool = False) -> None:
        super().__init__(text)
        self.missing = missing


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


def tutorialMessage() -> MessageSource:
    """
    The tutorial's message, ready to send.
    """
    return checkMessage("the tutorial's message", lambda: io.BytesIO(TUTORIAL_MESSAGE))


def messageFromPath(path: str, idDomain: str = "localhost") -> MessageSource:
    """
    Check the message file at C{path}, reading it once without keeping it.
    """

    def opener() -> BinaryIO:
        return open(path, "rb")

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
    a bare CR, a line over 998 octets) and noting what it lacks and holds.
    """
    eightBit = False
    inHeaders = True
    seen: set[bytes] = set()
    size = 0
    with opener() as f:
        number = 0
        while True:
            line = f.readline(MAX_LINE + 3)
            if not line:
                break
            number += 1
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
            if not eightBit and not content.isascii():
                eightBit = True
            if inHeaders:
                if not content:
                    inHeaders = False
                elif content[:1] not in b" \t":
                    seen.add(content.split(b":", 1)[0].strip().lower())
            size += len(content) + 2
    extra = b""
    if b"date" not in seen:
        extra += b"Date: " + formatdate(localtime=True).encode("ascii") + b"\r\n"
    if b"message-id" not in seen:
        extra += b"Message-ID: " + make_msgid(domain=idDomain).encode("ascii") + b"\r\n"
    return MessageSource(name, opener, eightBit, extra, size + len(extra))


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
