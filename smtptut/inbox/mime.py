"""A message's MIME structure read in one bounded pass: headers, and where each part's body lies."""

from __future__ import annotations

import base64
import binascii
import email.header
import email.parser
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO

#: The longest line read at once: longer ones are read in pieces, so a
#: message without line ends is never held whole.
LINE_LIMIT = 65536
#: Header bytes kept per part (more are skipped: no header needs more).
HEADER_LIMIT = 256 * 1024
#: Parts recorded per message (a pathological message stops being split).
PART_LIMIT = 1000
#: Octets read at a time when a part is decoded.
CHUNK = 65536

# compat32: the header registry of email.policy.default costs about a
# millisecond a message, most of an index build; encoded words are decoded
# where shown (L{decodedHeader}).
_parser = email.parser.BytesHeaderParser()
_WHITESPACE = b" \t\r\n\x0b\x0c"
_OCTET_STREAM = "application/octet-stream"
_BODY_TYPES = ("text/plain", "text/html")


@dataclass
class Part:
    """
    One leaf part: its headers and the octets of its (encoded) body.

    @ivar partId: Mailpit's part number, C{"1"}, C{"1.2"}, ...
    """

    partId: str
    headers: Message
    start: int
    end: int = -1

    @property
    def contentType(self) -> str:
        return self.headers.get_content_type()

    @property
    def disposition(self) -> str:
        return (self.headers.get_content_disposition() or "").lower()

    @property
    def fileName(self) -> str:
        try:
            return decodedHeader(self.headers.get_filename() or "")
        except Exception:
            return ""

    @property
    def contentId(self) -> str:
        return decodedHeader(self.headers.get("Content-ID", "")).strip("<>")

    @property
    def encoding(self) -> str:
        return (
            str(self.headers.get("Content-Transfer-Encoding", "") or "").strip().lower()
        )

    @property
    def charset(self) -> str:
        return self.headers.get_content_charset() or "utf-8"

    @property
    def size(self) -> int:
        """
        About how many octets the decoded body has.
        """
        encoded = max(self.end - self.start, 0)
        return encoded * 3 // 4 if self.encoding == "base64" else encoded

    @property
    def isAttachment(self) -> bool:
        return self.disposition == "attachment" or (
            bool(self.fileName) and self.disposition != "inline"
        )


@dataclass
class Structure:
    """
    A message's top-level headers and its leaf parts, in order.
    """

    headers: Message
    parts: list[Part] = field(default_factory=list)

    def body(self, contentType: str) -> Part | None:
        """
        The first part of C{contentType} that is the message's text, not an attachment.
        """
        for part in self.parts:
            if part.contentType == contentType and not part.isAttachment:
                return part
        return None

    def attachments(self) -> tuple[list[Part], list[Part]]:
        """
        The parts that are not the text or HTML body: (attachments, inline
        ones), sorted as Mailpit sorts them (its MIME library enmime's rules):
        an attachment has C{Content-Disposition: attachment} or is
        C{application/octet-stream}, whatever its Content-ID; an inline part
        has C{Content-Disposition: inline}, or no disposition and a type
        other than C{text/plain} and C{text/html} (an image in a
        C{multipart/related}), and is listed when it has a file name or a
        Content-ID, as Mailpit lists it (a C{text/plain} footer marked
        inline is not).  A whole message that is not text is an attachment
        unless marked inline.
        """
        bodies = {id(self.body("text/plain")), id(self.body("text/html"))}
        single = self.headers.get_content_maintype() != "multipart"
        attached: list[Part] = []
        inline: list[Part] = []
        for part in self.parts:
            if id(part) in bodies or part.contentType.startswith("multipart/"):
                continue
            disposition = part.disposition
            if disposition == "attachment" or part.contentType == _OCTET_STREAM:
                attached.append(part)
            elif single:
                (inline if disposition == "inline" else attached).append(part)
            elif disposition == "inline" or (
                not disposition and part.contentType not in _BODY_TYPES
            ):
                if part.fileName or part.contentId:
                    inline.append(part)
            elif part.fileName or not part.contentType.startswith("text/"):
                # Mailpit would fold a named text part into the body text,
                # which smtptut does not: listed, so that nothing is hidden.
                attached.append(part)
        return attached, inline

    def part(self, partId: str) -> Part | None:
        return next((p for p in self.parts if p.partId == partId), None)


def _headerBlock(f: BinaryIO) -> tuple[bytes, int]:
    """
    Read a header block up to and including its blank line; (kept bytes, octets read).
    """
    kept: list[bytes] = []
    size = read = 0
    while True:
        line = f.readline(LINE_LIMIT)
        read += len(line)
        if not line or line in (b"\n", b"\r\n"):
            break
        if size < HEADER_LIMIT:
            kept.append(line)
            size += len(line)
    return b"".join(kept), read


def _parseHeaders(block: bytes) -> Message:
    return _parser.parsebytes(block)


def decodedHeader(value: object) -> str:
    """
    A header field's value as text, its RFC 2047 encoded words decoded,
    unfolded.
    """
    text = str(value or "")
    # Without "=?" there is no encoded word: decode_header and make_header
    # would give the text back, at more cost than all the rest of a field.
    if "=?" in text:
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except (ValueError, LookupError, UnicodeError):
            pass
    return " ".join(text.split())


def _boundary(headers: Message) -> bytes | None:
    if headers.get_content_maintype() != "multipart":
        return None
    boundary = headers.get_boundary()
    return boundary.encode("ascii", "replace") if boundary else None


#: Octets read at a time while looking for the next boundary line.
BLOCK = 1024 * 1024
#: A boundary line is short (RFC 2046: a boundary is at most 70 characters).
_DELIMITER_LIMIT = 1000


def _nextDelimiter(
    f: BinaryIO, pos: int, boundaries: list[bytes]
) -> tuple[int, int, int, bytes] | None:
    """
    The first line at or after C{pos} (a line start) that is C{--b} or
    C{--b--} for one of C{boundaries}: (where it starts, where it ends, the
    length of the line end before it, its text), or L{None}.  The body is
    read in blocks and only lines starting C{--} are looked at, so a big
    attachment costs a few C{find}s per block, not a Python loop per line.
    """
    wanted = {b"--" + b for b in boundaries} | {b"--" + b + b"--" for b in boundaries}
    f.seek(pos)
    # A line end before pos, so that the first line is found like any other.
    buf = b"\n" + f.read(BLOCK)
    base = pos - 1
    eof = len(buf) - 1 < BLOCK
    search = 0
    while True:
        found = buf.find(b"\n--", search)
        if found == -1:
            if eof:
                return None
            base += len(buf) - 2
            buf = buf[-2:] + f.read(BLOCK)
            eof = len(buf) - 2 < BLOCK
            search = 0
            continue
        start = found + 1
        end = buf.find(b"\n", start)
        while end == -1 and not eof and len(buf) - start < _DELIMITER_LIMIT:
            more = f.read(BLOCK)
            eof = len(more) < BLOCK
            buf += more
            end = buf.find(b"\n", start)
        lineEnd = len(buf) if end == -1 else end + 1
        text = buf[start:lineEnd].rstrip()
        if text in wanted:
            before = 2 if found >= 1 and buf[found - 1 : found] == b"\r" else 1
            if base + start == pos:
                before = 0
            return base + start, base + lineEnd, before, text
        search = start


def scan(f: BinaryIO) -> Structure:
    """
    Read the message in C{f} once, keeping headers only (bounded), and
    note where each leaf part's body starts and ends.
    """
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    block, pos = _headerBlock(f)
    top = _parseHeaders(block)
    structure = Structure(top)
    #: Open multiparts: (boundary, part number prefix, [children so far]).
    stack: list[tuple[bytes, str, list[int]]] = []

    def enter(headers: Message, partId: str, start: int) -> Part | None:
        boundary = _boundary(headers)
        if boundary is not None:
            stack.append((boundary, partId, [0]))
            return None
        return Part(partId or "1", headers, start)

    leaf = enter(top, "", pos)
    while stack:
        found = _nextDelimiter(f, pos, [entry[0] for entry in stack])
        if found is None:
            break
        lineStart, lineEnd, before, text = found
        pos = lineEnd
        level = max(
            i
            for i, (boundary, _, _) in enumerate(stack)
            if text in (b"--" + boundary, b"--" + boundary + b"--")
        )
        if leaf is not None:
            leaf.end = max(leaf.start, lineStart - before)
            structure.parts.append(leaf)
            leaf = None
        closing = text == b"--" + stack[level][0] + b"--"
        del stack[level + 1 :]
        if closing:
            stack.pop()
            continue
        if len(structure.parts) >= PART_LIMIT:
            break
        boundary, prefix, children = stack[level]
        children[0] += 1
        partId = f"{prefix}.{children[0]}" if prefix else str(children[0])
        f.seek(pos)
        block, read = _headerBlock(f)
        pos += read
        leaf = enter(_parseHeaders(block), partId, pos)
    if leaf is not None:
        leaf.end = size
        structure.parts.append(leaf)
    return structure


def decodedChunks(f: BinaryIO, part: Part, limit: int | None = None) -> Iterator[bytes]:
    """
    The part's body decoded from its transfer encoding, a chunk at a time
    (at most C{limit} octets of encoded input when given).
    """
    f.seek(part.start)
    remaining = part.end - part.start
    if limit is not None:
        remaining = min(remaining, limit)
    encoding = part.encoding
    pending = b""
    while remaining > 0:
        data = f.read(min(CHUNK, remaining))
        if not data:
            break
        remaining -= len(data)
        if encoding == "base64":
            pending += data.translate(None, _WHITESPACE)
            usable = len(pending) - len(pending) % 4
            chunk, pending = pending[:usable], pending[usable:]
            try:
                yield base64.b64decode(chunk)
            except binascii.Error:
                return
        elif encoding == "quoted-printable":
            pending += data
            cut = pending.rfind(b"\n") + 1
            if cut:
                chunk, pending = pending[:cut], pending[cut:]
                yield binascii.a2b_qp(chunk)
        else:
            yield data
    if pending:
        if encoding == "base64":
            try:
                yield base64.b64decode(pending + b"=" * (-len(pending) % 4))
            except binascii.Error:
                pass
        else:
            yield binascii.a2b_qp(pending)


def decodedText(f: BinaryIO, part: Part, limit: int) -> str:
    """
    At most about C{limit} octets of a text part, decoded to text.
    """
    data = b"".join(decodedChunks(f, part, limit))
    try:
        return data.decode(part.charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")
