"""Tests for smtptut.message: checking a message and streaming it in SMTP form."""

from __future__ import annotations

import io
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from smtptut.message import (
    MAX_LINE,
    MessageError,
    MessageProducer,
    MessageSource,
    checkMessage,
    messageFromPath,
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
        message = checkMessage("t", lambda: io.BytesIO(b""))
        self.assertEqual(wire(message), message.extraHeaders + b".\r\n")

    @settings(max_examples=200, deadline=None)
    @given(lines=messageLines(), end=lineEnds, chunk=st.integers(1, 300))
    def test_roundTrip(self, lines: list[bytes], end: bytes, chunk: int) -> None:
        data = HEADERS + b"".join(line + end for line in lines)
        self.assertEqual(
            unstuff(wire(source(data), chunk)),
            data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
        )
