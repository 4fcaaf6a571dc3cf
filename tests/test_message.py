"""Tests for smtptut.message: checking a message and streaming it in SMTP form."""

from __future__ import annotations

import io
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from smtptut.client.message import (
    MAX_LINE,
    MAX_SPOOL,
    MessageError,
    MessageProducer,
    MessageSource,
    checkMessage,
    messageFromPath,
    spooledMessage,
    tutorialMessage,
)

from .strategies import lineEnds, messageLines


def source(data: bytes) -> MessageSource:
    return checkMessage("test", lambda: io.BytesIO(data))


def wire(message: MessageSource, chunkSize: int = 16384) -> bytes:
    """
    Everything the producer writes, driven as a transport would drive it.
    """
    transport = StringTransport()
    done = MessageProducer(message, chunkSize).beginTransfer(transport)
    for _ in range(10_000):
        if done.called:
            break
        assert transport.producer is not None
        transport.producer.resumeProducing()
    return transport.value()


def unstuff(data: bytes) -> bytes:
    """
    What an RFC 5321 server makes of the DATA section (the reverse of stuffing).
    """
    assert data.endswith(b".\r\n")
    lines = data[:-3].split(b"\r\n")
    assert lines[-1] == b""
    return b"".join(
        (line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1]
    )


def filler(size: int) -> bytes:
    """
    C{size} octets of 80-column lines, the last one shorter.
    """
    full, rest = divmod(size, 80)
    lines = b"a" * 79 + b"\n"
    return lines * full + (b"b" * (rest - 1) + b"\n" if rest else b"")


HEADERS = b"Date: now\nMessage-ID: <x@y>\n\n"


class CheckTests(SynchronousTestCase):
    def test_addsDateAndMessageId(self) -> None:
        message = source(b"Subject: hi\n\nbody\n")
        self.assertIn(b"Date: ", message.extraHeaders)
        self.assertIn(b"Message-ID: <", message.extraHeaders)

    def test_keepsExisting(self) -> None:
        message = source(b"DATE: x\nmessage-id: <1@x>\n\nbody\n")
        self.assertEqual(message.extraHeaders, b"")

    def test_headerNamesOnlyFromTheHeader(self) -> None:
        message = source(b"Subject: x\n\nDate: in the body\n")
        self.assertIn(b"Date: ", message.extraHeaders)

    def test_eightBit(self) -> None:
        self.assertTrue(source(HEADERS + "caf\u00e9\n".encode()).eightBit)
        self.assertFalse(source(HEADERS + b"cafe\n").eightBit)

    def test_longestLegalLine(self) -> None:
        """
        A line of exactly 998 octets is taken, and streamed unchanged, even
        where it crosses a chunk boundary.
        """
        line = b"x" * MAX_LINE
        message = source(HEADERS + line + b"\r\n")
        self.assertEqual(message.extraHeaders, b"")
        expected = HEADERS.replace(b"\n", b"\r\n") + line + b"\r\n"
        for chunkSize in (16384, 100, MAX_LINE, MAX_LINE + 1):
            sent = wire(message, chunkSize)
            self.assertEqual(sent, expected + b".\r\n", chunkSize)
            self.assertIn(b"\r\n" + line + b"\r\n", sent)

    def test_tooLong(self) -> None:
        e = self.assertRaises(
            MessageError, source, HEADERS + b"x" * (MAX_LINE + 1) + b"\n"
        )
        self.assertIn("line 4", str(e))
        self.assertIn("998", str(e))

    def test_bareCR(self) -> None:
        e = self.assertRaises(MessageError, source, HEADERS + b"a\rb\n")
        self.assertIn("bare CR", str(e))

    def test_nul(self) -> None:
        e = self.assertRaises(MessageError, source, HEADERS + b"a\0b\n")
        self.assertIn("NUL", str(e))

    def test_missingFile(self) -> None:
        e = self.assertRaises(MessageError, messageFromPath, "/nonexistent/message.eml")
        self.assertTrue(e.missing)
        self.assertIn("/nonexistent/message.eml", str(e))

    def test_directory(self) -> None:
        e = self.assertRaises(MessageError, messageFromPath, os.path.dirname(__file__))
        self.assertTrue(e.missing)

    def test_deviceRefused(self) -> None:
        """
        A device is not read at all: /dev/zero would never end.
        """
        e = self.assertRaises(MessageError, messageFromPath, "/dev/zero")
        self.assertTrue(e.missing)
        self.assertEqual(
            str(e),
            "message file /dev/zero: not a regular file (a FIFO, device or socket"
            " is never read)",
        )

    def test_fifoRefusedWithoutWaiting(self) -> None:
        """
        A FIFO is refused at once, even with nobody writing to it (a plain
        open() would wait for a writer forever).
        """
        path = self.mktemp()
        os.mkfifo(path)
        e = self.assertRaises(MessageError, messageFromPath, path)
        self.assertTrue(e.missing)
        self.assertIn("not a regular file", str(e))

    def test_emptyRefused(self) -> None:
        for data in (b"", b"\n", b"\r\n \r\n\t\n"):
            e = self.assertRaises(MessageError, source, data)
            self.assertEqual(str(e), "test: the message is empty", data)


class BlindCopyTests(SynchronousTestCase):
    """
    C{Bcc:} fields are not sent, as sendmail -t and msmtp do: the other
    recipients would learn of the blind copies.
    """

    MESSAGE = (
        b"From: a@x.test\r\n"
        b"BCC: hidden@x.test,\r\n"
        b"  also-hidden@x.test\r\n"
        b"To: b@x.test\r\n"
        b"Resent-Bcc: again@x.test\n"
        b"Subject: s\r\n"
        b"Bcc:last@x.test\n"
        b"\n"
        b"Bcc: in the body, kept\n"
    )
    SENT = (
        b"From: a@x.test\r\nTo: b@x.test\r\nSubject: s\r\n\r\n"
        b"Bcc: in the body, kept\r\n.\r\n"
    )

    def test_removed(self) -> None:
        message = source(HEADERS.replace(b"\n\n", b"\n") + self.MESSAGE)
        for chunkSize in (1, 5, 16, 17, 100, 16384):
            sent = wire(message, chunkSize)
            self.assertEqual(
                sent,
                HEADERS.replace(b"\n\n", b"\n").replace(b"\n", b"\r\n") + self.SENT,
            )
            # SIZE announces what is sent.
            self.assertEqual(message.size, len(sent) - 3)

    def test_notAFieldName(self) -> None:
        message = source(HEADERS.replace(b"\n\n", b"\n") + b"Bccx: kept\n\nbody\n")
        self.assertIn(b"Bccx: kept\r\n", wire(message))


class SpoolTests(SynchronousTestCase):
    """
    Standard input, checked as it is copied.
    """

    def test_stopsAtTheFirstBadLine(self) -> None:
        reads: list[int] = []

        class Endless(io.RawIOBase):
            # A line over 998 octets, then data for ever.
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                reads.append(len(buffer))
                if len(reads) > 1000:
                    raise AssertionError("read on after the bad line")
                buffer[:] = b"x" * len(buffer)
                return len(buffer)

        stream = io.BufferedReader(Endless(), 4096)
        e = self.assertRaises(
            MessageError, lambda: spooledMessage("standard input", stream).__enter__()
        )
        self.assertEqual(str(e), "standard input: line 1 is longer than 998 octets")
        self.assertEqual(len(reads), 1)

    def test_sizeBound(self) -> None:
        data = HEADERS + b"a line of text\n" * 100
        with spooledMessage("standard input", io.BytesIO(data), maxSize=len(data)):
            pass
        e = self.assertRaises(
            MessageError,
            lambda: spooledMessage(
                "standard input", io.BytesIO(data), maxSize=len(data) - 1
            ).__enter__(),
        )
        self.assertEqual(str(e), f"standard input: larger than {len(data) - 1} octets")
        self.assertEqual(MAX_SPOOL, 100 * 2**20)

    def test_readersDoNotShareAnOffset(self) -> None:
        data = HEADERS + b"".join(b"line %d\n" % i for i in range(5000))
        with spooledMessage("standard input", io.BytesIO(data)) as message:
            first, second = message.open(), message.open()
            self.assertEqual(first.read(10), data[:10])
            self.assertEqual(second.read(), data)
            self.assertEqual(first.read(), data[10:])
            first.close()
            second.close()
            self.assertEqual(unstuff(wire(message)), data.replace(b"\n", b"\r\n"))


class WireTests(SynchronousTestCase):
    def test_tutorialMessage(self) -> None:
        data = wire(tutorialMessage())
        self.assertTrue(data.startswith(b"Message-ID: <"))
        self.assertIn(
            b"Subject: Tutorate!\r\n\r\nHello, how are you, goodbye.\r\n.\r\n", data
        )

    def test_firstLineDot(self) -> None:
        message = checkMessage("t", lambda: io.BytesIO(b".leading\n"))
        data = wire(message)
        self.assertTrue(data.endswith(b"\r\n..leading\r\n.\r\n"), data)

    def test_dotAfterEveryChunkBoundary(self) -> None:
        # Twisted's FileSender misses a dot that starts a chunk (16 KiB).
        for offset in [*range(16380, 16390), *range(65530, 65540)]:
            body = filler(offset - len(HEADERS)) + b".x\n"
            self.assertEqual(
                unstuff(wire(source(HEADERS + body))),
                (HEADERS + body).replace(b"\n", b"\r\n"),
            )

    def test_crlfNotDoubled(self) -> None:
        self.assertEqual(
            wire(source(HEADERS.replace(b"\n", b"\r\n") + b"x\r\n")),
            HEADERS.replace(b"\n", b"\r\n") + b"x\r\n.\r\n",
        )

    def test_noFinalNewline(self) -> None:
        self.assertTrue(wire(source(HEADERS + b"last")).endswith(b"\r\nlast\r\n.\r\n"))

    def test_terminatorInTheLastWrite(self) -> None:
        # Sent apart, the 3-byte "." line waits for a delayed ACK (Nagle).
        writes: list[bytes] = []
        transport = StringTransport()
        transport.write = writes.append  # type: ignore[method-assign]
        done = MessageProducer(source(HEADERS + filler(1024))).beginTransfer(transport)
        assert transport.producer is not None
        transport.producer.resumeProducing()
        self.successResultOf(done)
        self.assertEqual(len(writes), 1)
        self.assertTrue(writes[0].endswith(b"b\r\n.\r\n"))

    def test_empty(self) -> None:
        # checkMessage refuses an empty message (CheckTests); the producer
        # still ends one properly.
        message = MessageSource("t", lambda: io.BytesIO(b""), False, b"", 0)
        self.assertEqual(wire(message), b".\r\n")

    @settings(max_examples=200, deadline=None)
    @given(lines=messageLines(), end=lineEnds, chunk=st.integers(1, 300))
    def test_roundTrip(self, lines: list[bytes], end: bytes, chunk: int) -> None:
        data = HEADERS + b"".join(line + end for line in lines)
        self.assertEqual(
            unstuff(wire(source(data), chunk)),
            data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
        )
