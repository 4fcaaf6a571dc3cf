"""The console's copy of a message, for a person: MIME decoded, streamed."""

from __future__ import annotations

import binascii
import codecs
import email.errors
import email.header
import email.message
import enum
import re
import sys
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import IO, cast

from twisted.logger import LoggingFile

#: The most header octets looked at for the decision (and parsed at once).
HEADER_LIMIT = 256 * 1024
#: Decoded octets of one text part shown; the rest is counted, not printed.
TEXT_PART_LIMIT = 1024 * 1024
#: Output is written in pieces of about this size (the console may be
#: unbuffered: a write is a system call).
WRITE_SIZE = 65536


class Encoding(enum.Enum):
    """
    A part's Content-Transfer-Encoding, as far as showing it goes.
    """

    IDENTITY = "identity"
    BASE64 = "base64"
    QUOTED_PRINTABLE = "quoted-printable"


def _encoding(message: email.message.Message) -> Encoding:
    cte = str(message.get("content-transfer-encoding", "")).strip().lower()
    try:
        return Encoding(cte)
    except ValueError:
        return Encoding.IDENTITY


def _headerBlock(lines: Iterator[bytes]) -> tuple[list[bytes], bytes | None]:
    """
    The header lines from C{lines} (up to the empty line, which is
    consumed), and the first body line when the header ended without one
    (a line that is no field), or L{None}.
    """
    header: list[bytes] = []
    size = 0
    for line in lines:
        if line in (b"\n", b"\r\n"):
            return header, None
        isField = line[:1] in (b" ", b"\t") or b":" in line.split(b" ", 1)[0]
        if not isField or size > HEADER_LIMIT:
            return header, line
        header.append(line)
        size += len(line)
    return header, None


def _parse(header: list[bytes]) -> email.message.Message:
    return BytesHeaderParser(policy=compat32).parsebytes(b"".join(header))


def _decodedField(field: bytes) -> str:
    """
    One header field (with its continuation lines) with RFC 2047 encoded
    words decoded; as received when they cannot be.
    """
    text = field.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    name, colon, value = text.partition(":")
    if not colon:
        return text
    unfolded = " ".join(value.split())
    try:
        decoded = str(email.header.make_header(email.header.decode_header(unfolded)))
    except (LookupError, UnicodeError, email.errors.HeaderParseError, ValueError):
        return text
    return f"{name}: {decoded}\n"


def _fields(header: list[bytes]) -> Iterator[bytes]:
    """
    The header's fields, each with its continuation lines.
    """
    current = b""
    for line in header:
        if line[:1] in (b" ", b"\t") and current:
            current += line
            continue
        if current:
            yield current
        current = line
    if current:
        yield current


def needsDecoding(header: list[bytes]) -> bool:
    """
    Whether a message with this header would show differently decoded:
    encoded words, MIME parts, or a transfer encoding.
    """
    if any(b"=?" in line for line in header):
        return True
    lowered = b"".join(header).lower()
    if b"content-type:" not in lowered and b"content-transfer-encoding:" not in lowered:
        # The usual small message: no parsing at all.
        return False
    message = _parse(header)
    return message.is_multipart() or (
        message.get_content_maintype() == "multipart"
        or _encoding(message) is not Encoding.IDENTITY
    )


class ConsoleView:
    """
    Writes a message read from C{lines} (LF line ends) for a person: header
    fields with encoded words decoded, text parts decoded from
    quoted-printable or base64 (up to L{TEXT_PART_LIMIT} octets each), and
    one line for each attachment (name, type, size).  Line by line: a huge
    message costs no memory.
    """

    def __init__(
        self, write: Callable[[str], None], safe: Callable[[str], str]
    ) -> None:
        self._write = write
        self._safe = safe
        self._pending: list[str] = []
        self._pendingSize = 0

    def out(self, text: str) -> None:
        text = self._safe(text)
        self._pending.append(text)
        self._pendingSize += len(text)
        if self._pendingSize >= WRITE_SIZE:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._write("".join(self._pending))
            self._pending, self._pendingSize = [], 0

    def show(self, header: list[bytes], lines: Iterator[bytes]) -> None:
        """
        Show the message whose header is C{header} and whose body the rest
        of C{lines} is.
        """
        for field in _fields(header):
            self.out(_decodedField(field))
        self.out("\n")
        self._body(_parse(header), lines, [])
        self.flush()

    def _boundaryOf(self, line: bytes, boundaries: list[bytes]) -> bool:
        if not line.startswith(b"--"):
            return False
        stripped = line.rstrip()
        return any(
            stripped == b"--" + b or stripped == b"--" + b + b"--" for b in boundaries
        )

    def _body(
        self,
        message: email.message.Message,
        lines: Iterator[bytes],
        boundaries: list[bytes],
    ) -> bytes | None:
        """
        Show one part's body; return the boundary line that ended it (or
        L{None} at the end of the message).
        """
        boundary = message.get_boundary()
        if message.get_content_maintype() == "multipart" and boundary:
            return self._multipart(
                boundary.encode("utf-8", "replace"), lines, boundaries
            )
        return self._leaf(message, lines, boundaries)

    def _multipart(
        self, boundary: bytes, lines: Iterator[bytes], outer: list[bytes]
    ) -> bytes | None:
        inner = [*outer, boundary]
        delimiter, close = b"--" + boundary, b"--" + boundary + b"--"
        ended = self._skip(lines, inner)  # the preamble
        while ended is not None and ended.rstrip() == delimiter:
            header, first = _headerBlock(lines)
            partLines: Iterator[bytes] = lines
            if first is not None:
                partLines = _prepend(first, lines)
            ended = self._body(_parse(header), partLines, inner)
        if ended is not None and ended.rstrip() == close:
            return self._skip(lines, outer)  # the epilogue
        return ended

    def _skip(self, lines: Iterator[bytes], boundaries: list[bytes]) -> bytes | None:
        for line in lines:
            if self._boundaryOf(line, boundaries):
                return line
        return None

    def _leaf(
        self,
        message: email.message.Message,
        lines: Iterator[bytes],
        boundaries: list[bytes],
    ) -> bytes | None:
        encoding = _encoding(message)
        contentType = message.get_content_type()
        disposition = str(message.get("content-disposition", "")).lower()
        filename = message.get_filename()
        isText = (
            message.get_content_maintype() == "text"
            and not disposition.startswith("attachment")
            and filename is None
        )
        decoder = None
        if isText:
            charset = message.get_content_charset() or "utf-8"
            try:
                decoder = codecs.getincrementaldecoder(charset)("replace")
            except LookupError:
                decoder = codecs.getincrementaldecoder("utf-8")("replace")
        size = 0
        shown = 0
        remainder = b""
        ended = None
        for line in lines:
            if boundaries and self._boundaryOf(line, boundaries):
                ended = line
                break
            if encoding is Encoding.BASE64:
                data = remainder + line.strip()
                usable = len(data) // 4 * 4
                remainder = data[usable:]
                try:
                    decoded = binascii.a2b_base64(data[:usable])
                except binascii.Error:
                    decoded = b""
            elif encoding is Encoding.QUOTED_PRINTABLE:
                decoded = binascii.a2b_qp(line)
            else:
                decoded = line
            size += len(decoded)
            if decoder is not None and shown < TEXT_PART_LIMIT:
                part = decoded[: TEXT_PART_LIMIT - shown]
                shown += len(part)
                self.out(decoder.decode(part))
        if decoder is not None:
            self.out(decoder.decode(b"", final=True))
            if size > shown:
                self.out(f"\n[{size - shown} more octets of this {contentType} part]\n")
        else:
            name = filename or "(no name)"
            self.out(f"[attachment: {name}, {contentType}, {size} octets]\n")
        return ended


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def showMessage(
    spool: IO[bytes], write: Callable[[str], None], safe: Callable[[str], str]
) -> bool:
    """
    Show the spooled message decoded when it needs decoding (see
    L{needsDecoding}); L{False}, with C{spool} rewound and nothing written,
    when it does not, so that the caller can copy it as it is.
    """
    lines = iter(spool)
    header, first = _headerBlock(lines)
    if not needsDecoding(header):
        spool.seek(0)
        return False
    body: Iterator[bytes] = lines if first is None else _prepend(first, lines)
    ConsoleView(write, safe).show(header, body)
    return True


def consoleOutput() -> IO[str]:
    """
    Where messages are printed: standard output as the process got it.

    Under twistd, C{sys.stdout} is a log file that drops blank lines (such as
    the one between header and body), so the message goes to the real one.
    """
    return cast(
        IO[str], sys.__stdout__ if isinstance(sys.stdout, LoggingFile) else sys.stdout
    )


#: What the console copy of a message must not pass to a terminal raw: C0
#: controls but TAB and LF, DEL and C1 controls (escape sequences, bells,
#: title changes, a bare CR overwriting a line).
_CONSOLE_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def consoleSafe(text: str) -> str:
    """
    C{text} with every control character a terminal would act on shown as
    C{\\xNN} instead: what a client sends cannot drive the console.
    """
    return _CONSOLE_UNSAFE.sub(_visible, text)
