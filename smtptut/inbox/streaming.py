"""A message's parts sent as the client takes them, decoded a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

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


def streamBody(request: server.Request, path: str, part: Part) -> int:
    """
    Send C{part} of the message at C{path}, decoded, as the rest of the answer.
    """
    f = open(path, "rb")
    ChunkProducer(request, f, decodedChunks(f, part)).start()
    return server.NOT_DONE_YET


def streamPart(request: server.Request, path: str, part: Part | None) -> int:
    """
    C{/part/{PartID}}: the part with its Content-Type and file name, sandboxed.
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
    return streamBody(request, path, part)
