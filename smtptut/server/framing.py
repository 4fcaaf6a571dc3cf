"""Sans-IO SMTP server framing: octets in, events out (command lines, message text, its end)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
MAX_COMMAND_LINE = 512
#: RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
MAX_TEXT_LINE = 1000
#: RFC 4954 §4: an AUTH line (with its initial response) may reach 12288 octets.
MAX_AUTH_LINE = 12288


@dataclass(frozen=True)
class CommandLine:
    """
    A complete line outside a message (a command or an AUTH response),
    without its line end (CRLF, or a bare LF as many clients send).
    """

    line: bytes


@dataclass(frozen=True)
class LineTooLong:
    """
    A line over the limit: reported once, and the line dropped as it comes.
    """


@dataclass(frozen=True)
class DataChunk:
    """
    Complete lines of a message, dot-unstuffed, with their CRLF ends.
    """

    data: bytes


@dataclass(frozen=True)
class EndOfData:
    """
    The message ended (CRLF . CRLF): what follows is commands again.
    """


Event = CommandLine | LineTooLong | DataChunk | EndOfData


class Framer:
    """
    Splits what a client sends into L{Event}s, one L{nextEvent} at a time,
    so that its user decides between events what the next octets are
    (L{expectLines} with the limit for a command or an AUTH response,
    L{expectData} after 354); until then they stay in the buffer.

    Only CRLF . CRLF ends a message: a dot line after a bare LF or a bare CR
    is message text (no SMTP smuggling).

    @ivar lineLimit: the longest line taken outside a message, its line end
        included.
    @ivar inData: whether message text is being read.
    """

    def __init__(self) -> None:
        self.lineLimit = MAX_COMMAND_LINE
        self.inData = False
        self._buffer = b""
        self._events: deque[Event] = deque()
        #: An overlong command line is being dropped.
        self._discarding = False
        #: Message text resumes in the middle of a line (an overlong one
        #: was dropped): its first dot is no dot-stuffing.
        self._midLine = False

    @property
    def buffered(self) -> int:
        """
        How many octets are held, not yet made into events.
        """
        return len(self._buffer)

    @property
    def pending(self) -> bool:
        """
        Whether a line has begun and not ended.
        """
        return bool(self._buffer or self._discarding or self._midLine)

    def receive(self, data: bytes) -> None:
        """
        Octets from the client.
        """
        self._buffer += data

    def discard(self) -> int:
        """
        Forget everything held (after STARTTLS, or at the end); returns how
        many octets that was.
        """
        count = len(self._buffer)
        self._buffer = b""
        self._events.clear()
        return count

    def expectLines(self, limit: int = MAX_COMMAND_LINE) -> None:
        """
        The next octets are lines of at most C{limit} octets (commands, AUTH
        responses).
        """
        self.lineLimit = limit
        self.inData = False
        self._midLine = False

    def expectData(self) -> None:
        """
        The next octets are a message's text (DATA was answered 354).
        """
        self.inData = True
        self._midLine = False

    def nextEvent(self) -> Event | None:
        """
        The next event the octets held make, or L{None} until more come.
        """
        if not self._events:
            if self.inData:
                self._dataEvents()
            else:
                self._lineEvent()
        return self._events.popleft() if self._events else None

    def _lineEvent(self) -> None:
        while self._buffer:
            buf, limit = self._buffer, self.lineLimit
            end = buf.find(b"\n", 0, limit)
            if end < 0:
                if len(buf) < limit:
                    return
                # Too long: say so once, and drop the line as it comes.
                if not self._discarding:
                    self._events.append(LineTooLong())
                end = buf.find(b"\n", limit)
                if end < 0:
                    self._buffer = b""
                    self._discarding = True
                    return
                self._buffer = buf[end + 1 :]
                self._discarding = False
                if self._events:
                    return
                continue
            line, self._buffer = buf[:end], buf[end + 1 :]
            if self._discarding:
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            self._events.append(CommandLine(line))
            return

    def _dataEvents(self) -> None:
        buf = self._buffer
        if not buf:
            return
        if not self._midLine and buf.startswith(b".\r\n"):
            end = 0
        else:
            found = buf.find(b"\r\n.\r\n")
            end = found + 2 if found >= 0 else -1
        if end >= 0:
            self._buffer = buf[end + 3 :]
            self._content(buf[:end])
            self._events.append(EndOfData())
            self.expectLines(MAX_COMMAND_LINE)
            return
        last = buf.rfind(b"\r\n")
        if last < 0:
            if len(buf) > MAX_TEXT_LINE:
                # An overlong line: drop it as it comes, keeping a final CR
                # that may start the CRLF ending it.
                self._events.append(LineTooLong())
                self._buffer = buf[-1:] if buf.endswith(b"\r") else b""
                self._midLine = True
            return
        self._buffer = buf[last + 2 :]
        self._content(buf[: last + 2])

    def _content(self, content: bytes) -> None:
        """
        Complete lines of the message (CRLF ends), dot-stuffed.
        """
        midLine, self._midLine = self._midLine, False
        if not content:
            return
        if len(content) > MAX_TEXT_LINE - 2 and (
            max(map(len, content.split(b"\r\n"))) > MAX_TEXT_LINE - 2
        ):
            self._events.append(LineTooLong())
            return
        if content[0] == 0x2E and not midLine:
            content = content[1:]
        self._events.append(DataChunk(content.replace(b"\r\n.", b"\r\n")))
