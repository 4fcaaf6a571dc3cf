"""A message's parts sent as the client takes them, decoded a chunk at a time."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO
from urllib.parse import quote

from twisted.internet.interfaces import IPullProducer
from twisted.web import server
from zope.interface import implementer

from smtptut.inbox.mime import Part, decodedChunks
from smtptut.inbox.safety import PART_CSP
from smtptut.inbox.wire import APIError

#: Types a browser would render (and run) if opened directly: sent as downloads.
ACTIVE = (
    "text/html",
    "image/svg+xml",
    "application/xhtml+xml",
    "text/xml",
    "application/xml",
)


#: The longest Content-ID whose C{cid:} references are rewritten (a header
#: line is at most 998 octets).
CID_LIMIT = 998
#: What may come just before a C{cid:} URL: an attribute's C{=} (Mailpit's
#: rule) or CSS's C{url(}, each with an optional quote.
_BEFORE = rb"(=[ \t]{0,4}[\"']?|url\([ \t]{0,4}[\"']?)"
#: ... and just after it (Mailpit's rule, plus CSS's closing parenthesis).
_AFTER = rb"(?=[\"'\s/>;)])"


def linkInline(chunks: Iterable[bytes], links: Mapping[str, str]) -> Iterator[bytes]:
    """
    HTML from C{chunks} with each C{cid:} reference to a Content-ID in
    C{links} replaced by its URL, as Mailpit's C{/view/{ID}.html} does; the
    HTML is still sent a chunk at a time (a reference cut by a chunk's end
    is held back until the next).
    """
    urls: dict[bytes, bytes] = {}
    for cid, url in links.items():
        if 0 < len(cid) <= CID_LIMIT:
            # RFC 2392: a cid: URL is the Content-ID, %-encoded where needed.
            for form in {cid, quote(cid, safe=""), quote(cid, safe="@")}:
                urls[form.encode("utf-8").lower()] = url.encode("ascii")
    if not urls:
        yield from chunks
        return
    names = b"|".join(re.escape(n) for n in sorted(urls, key=len, reverse=True))
    pattern = re.compile(_BEFORE + rb"cid:(" + names + rb")" + _AFTER, re.I)
    # Longer than any match with the character after it.
    hold = max(len(n) for n in urls) + 16

    def link(match: re.Match[bytes]) -> bytes:
        return match.group(1) + urls[match.group(2).lower()]

    pending = b""
    for chunk in chunks:
        pending += chunk
        if len(pending) <= hold:
            continue
        # A match starting before safe is whole in pending; one after it
        # may not be yet.
        safe = len(pending) - hold
        out: list[bytes] = []
        done = 0
        for match in pattern.finditer(pending):
            if match.start() >= safe:
                break
            out += [pending[done : match.start()], link(match)]
            done = match.end()
        cut = max(done, safe)
        out.append(pending[done:cut])
        pending = pending[cut:]
        yield b"".join(out)
    if pending:
        yield pattern.sub(link, pending)


@implementer(IPullProducer)
class ChunkProducer:
    """
    Writes a file's chunks to a request as the client takes them: a
    50 MB attachment never sits in memory.
    """

    def __init__(
        self, request: server.Request, f: IO[bytes], chunks: Iterator[bytes]
    ) -> None:
        self.request = request
        self.file = f
        self.chunks = chunks
        request.notifyFinish().addErrback(lambda _: self.stopProducing())

    def start(self) -> None:
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.file.closed:
            return
        for chunk in self.chunks:
            if chunk:
                self.request.write(chunk)
                return
        self.file.close()
        self.request.unregisterProducer()
        self.request.finish()

    def stopProducing(self) -> None:
        self.file.close()


def streamBody(
    request: server.Request,
    path: str,
    part: Part,
    links: Mapping[str, str] | None = None,
) -> int:
    """
    Send C{part} of the message at C{path}, decoded, as the rest of the
    answer; with C{links}, its C{cid:} references rewritten (L{linkInline}).
    """
    f = open(path, "rb")
    chunks: Iterator[bytes] = decodedChunks(f, part)
    if links:
        chunks = linkInline(chunks, links)
    ChunkProducer(request, f, chunks).start()
    return server.NOT_DONE_YET


def streamPart(
    request: server.Request, path: str, part: Part | None, size: int | None = None
) -> int | bytes:
    """
    C{/part/{PartID}}: the part with its Content-Type and file name,
    sandboxed; for a C{HEAD}, those headers and its decoded C{size}.
    """
    if part is None:
        raise APIError(404, "part not found")
    contentType = part.contentType
    if contentType.startswith("text/"):
        contentType += f"; charset={part.charset}"
    request.setHeader(b"content-type", contentType.encode("ascii", "replace"))
    request.setHeader(b"content-security-policy", PART_CSP.encode())
    name = part.fileName.replace('"', "").replace("\\", "")
    disposition = "attachment" if part.contentType in ACTIVE else "inline"
    if name:
        disposition += f'; filename="{name}"'
    request.setHeader(b"content-disposition", disposition.encode("utf-8", "replace"))
    if request.method == b"HEAD":
        if size is not None:
            request.setHeader(b"content-length", b"%d" % size)
        return b""
    return streamBody(request, path, part)
