"""The sans-IO framer: command lines, limits, dot-unstuffing, CRLF.CRLF only, any chunking."""

from __future__ import annotations

from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smtptut.server.framing import (
    MAX_AUTH_LINE,
    CommandLine,
    DataChunk,
    EndOfData,
    Event,
    Framer,
    LineTooLong,
)

from .strategies import smtpStreams

#: Message lines: any octets but a CRLF pair (CR or LF alone included), up
#: to the 998 octets RFC 5321 allows, many starting with a dot.
_textLine = st.binary(max_size=60).filter(lambda b: b"\r\n" not in b)
messageText = st.lists(
    st.one_of(
        _textLine,
        _textLine.map(lambda b: b"." + b),
        st.just(b"."),
        st.just(b"x" * 998),
        # With its stuffed dot, the longest a dot line may be.
        st.just(b"." * 997),
    ),
    max_size=30,
)


def stuffed(lines: list[bytes]) -> bytes:
    """
    C{lines} as a client sends them after DATA: dot-stuffed, CRLF, the dot.
    """
    return (
        b"".join((b"." if line[:1] == b"." else b"") + line + b"\r\n" for line in lines)
        + b".\r\n"
    )


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """
    C{data} cut into pieces of the given sizes (cycled), the rest at the end.
    """
    pieces, at, i = [], 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        pieces.append(data[at : at + size])
        at += size
        i += 1
    return pieces


def drive(pieces: list[bytes]) -> list[Event]:
    """
    Feed C{pieces} to a framer as a protocol does (DATA switches to message
    text, AUTH to its longer lines until one line has come), collecting the
    events.
    """
    framer = Framer()
    events: list[Event] = []
    for piece in pieces:
        framer.receive(piece)
        while (event := framer.nextEvent()) is not None:
            events.append(event)
            if isinstance(event, CommandLine):
                verb = event.line.strip().upper()
                if verb == b"DATA":
                    framer.expectData()
                elif verb.startswith(b"AUTH") and framer.lineLimit != MAX_AUTH_LINE:
                    framer.expectLines(MAX_AUTH_LINE)
                else:
                    framer.expectLines()
            elif isinstance(event, LineTooLong) and not framer.inData:
                framer.expectLines()
    return events


def normal(events: list[Event]) -> list[object]:
    """
    What a protocol makes of C{events}, whatever the chunking: a message's
    chunks joined, or only L{LineTooLong} for a message with a line too long
    (it is refused whole).
    """
    result: list[object] = []
    message: list[object] | None = None
    for event in events:
        if message is None:
            result.append(event)
            if isinstance(event, CommandLine) and event.line.strip().upper() == b"DATA":
                message = []
            continue
        if isinstance(event, EndOfData):
            result += _message(message)
            result.append(event)
            message = None
        else:
            message.append(event)
    # A message not ended yet, as far as it came.
    return result + _message(message or [])


def _message(parts: list[object]) -> list[object]:
    if any(isinstance(part, LineTooLong) for part in parts):
        return [LineTooLong()]
    if parts:
        return [b"".join(cast(DataChunk, part).data for part in parts)]
    return []


class FramerTests(SynchronousTestCase):
    def test_commandLines(self) -> None:
        # A bare LF ends a command line too (many clients send it).
        self.assertEqual(
            drive([b"EHLO a\r\nNOOP\nQU", b"IT\r\n"]),
            [CommandLine(b"EHLO a"), CommandLine(b"NOOP"), CommandLine(b"QUIT")],
        )

    def test_commandLineLimit(self) -> None:
        # RFC 5321 §4.5.3.1.4: 512 octets with the CRLF.
        longest = b"X" * 510 + b"\r\n"
        self.assertEqual(drive([longest]), [CommandLine(b"X" * 510)])
        tooLong = b"X" * 511 + b"\r\nNOOP\r\n"
        self.assertEqual(drive([tooLong]), [LineTooLong(), CommandLine(b"NOOP")])

    def test_endlessLineReportedOnce(self) -> None:
        events = drive([b"X" * 600] * 20 + [b"\r\nNOOP\r\n"])
        self.assertEqual(events, [LineTooLong(), CommandLine(b"NOOP")])

    def test_authLinesMayBeLonger(self) -> None:
        framer = Framer()
        framer.expectLines(MAX_AUTH_LINE)
        framer.receive(b"A" * 12000 + b"\r\n")
        self.assertEqual(framer.nextEvent(), CommandLine(b"A" * 12000))

    def test_textLineLimit(self) -> None:
        # RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF.
        events = drive([b"DATA\r\n" + b"y" * 998 + b"\r\n.\r\n"])
        self.assertEqual(
            events, [CommandLine(b"DATA"), DataChunk(b"y" * 998 + b"\r\n"), EndOfData()]
        )
        events = drive([b"DATA\r\n" + b"y" * 999 + b"\r\n.\r\nNOOP\r\n"])
        self.assertEqual(
            events,
            [CommandLine(b"DATA"), LineTooLong(), EndOfData(), CommandLine(b"NOOP")],
        )

    def test_onlyCRLFDotCRLFEnds(self) -> None:
        # No SMTP smuggling: a dot after a bare LF or CR is message text.
        wire = b"DATA\r\na\n.\r\nb\r.\r\nc\r\n.\n\r\n.\r\nNOOP\r\n"
        events = normal(drive([wire]))
        self.assertEqual(
            events,
            [
                CommandLine(b"DATA"),
                b"a\n.\r\nb\r.\r\nc\r\n\n\r\n",
                EndOfData(),
                CommandLine(b"NOOP"),
            ],
        )

    def test_discardAfterSTARTTLS(self) -> None:
        framer = Framer()
        framer.receive(b"STARTTLS\r\nMAIL FROM:<a@b>\r\n")
        self.assertEqual(framer.nextEvent(), CommandLine(b"STARTTLS"))
        self.assertEqual(framer.discard(), len(b"MAIL FROM:<a@b>\r\n"))
        self.assertIsNone(framer.nextEvent())
        self.assertFalse(framer.pending)

    @settings(max_examples=300, deadline=None, database=None)
    @given(messageText, st.lists(st.integers(1, 700), max_size=8))
    def test_messageRoundTrip(self, lines: list[bytes], sizes: list[int]) -> None:
        # Whatever the lines and however they arrive, the message comes out
        # as it went in (unstuffed), ends at its dot, and commands follow.
        wire = b"DATA\r\n" + stuffed(lines) + b"QUIT\r\n"
        events = normal(drive(chunked(wire, sizes)))
        text = b"".join(line + b"\r\n" for line in lines)
        expected: list[object] = [CommandLine(b"DATA")]
        if text:
            expected.append(text)
        expected += [EndOfData(), CommandLine(b"QUIT")]
        self.assertEqual(events, expected)

    @settings(max_examples=300, deadline=None, database=None)
    @given(smtpStreams, st.lists(st.integers(1, 97), min_size=1, max_size=8))
    def test_anyChunkingSameEvents(self, data: bytes, sizes: list[int]) -> None:
        # The fuzz the socket test ran 100 times, here by the hundred: no
        # exception, and the same events however the octets are cut.
        self.assertEqual(normal(drive(chunked(data, sizes))), normal(drive([data])))
