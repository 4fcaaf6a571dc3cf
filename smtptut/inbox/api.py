"""Mailpit's API v1 over the index and the Maildir, as twisted.web resources."""

from __future__ import annotations

import json
import os
import resource as rlimit
import time
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import tzinfo
from typing import IO, Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from twisted.web import resource, server, static
from zope.interface import implementer

from smtptut.inbox import shapes
from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.mime import Part, Structure, decodedChunks, decodedText, scan
from smtptut.inbox.release import Releaser, ReleaseRefused
from smtptut.inbox.safety import MESSAGE_CSP, MESSAGE_CSP_REMOTE, PART_CSP, jsonError

log = Logger()

#: Encoded octets of a text or HTML body put in a message's JSON.
BODY_LIMIT = 4 * 1024 * 1024
#: The most messages one page may hold.
MAX_LIMIT = 10000
VERSION = "smtptut"
#: Types a browser would render (and run) if opened directly.
_ACTIVE = (
    "text/html",
    "image/svg+xml",
    "application/xhtml+xml",
    "text/xml",
    "application/xml",
)


class APIError(Exception):
    """
    A request the API refuses: its status and a one-line reason.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _scanFile(path: str) -> Structure:
    with open(path, "rb") as f:
        return scan(f)


def _readMessage(path: str) -> tuple[Structure, str, str]:
    with open(path, "rb") as f:
        structure = scan(f)
        plain = structure.body("text/plain")
        markup = structure.body("text/html")
        text = decodedText(f, plain, BODY_LIMIT) if plain else ""
        html = decodedText(f, markup, BODY_LIMIT) if markup else ""
    return structure, text, html


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


class InboxAPI(resource.Resource):
    """
    C{/api/v1/...}: paths, methods, fields and statuses as Mailpit's OpenAPI document has them.
    """

    isLeaf = True

    def __init__(self, index: MaildirIndex, releaser: Releaser, reactor: Any) -> None:
        super().__init__()
        self.index = index
        self.releaser = releaser
        self.reactor = reactor
        self.started = time.time()
        self.deleted = 0

    # ------------------------------------------------------------ plumbing

    def render(self, request: server.Request) -> bytes | int:
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        while path and path[-1] == "":
            path.pop()
        method = request.method.decode("ascii", "replace")
        try:
            result = self.route(method, path, request)
        except APIError as e:
            return jsonError(request, e.code, e.message)
        except Exception:
            log.failure(
                "The inbox API failed on {method} {path}", method=method, path=path
            )
            return jsonError(request, 500, "internal error (see the server's log)")
        if isinstance(result, defer.Deferred):
            result.addCallbacks(
                lambda body: self._finish(request, body),
                lambda f: self._failed(request, f),
            )
            return server.NOT_DONE_YET
        return result

    def _finish(self, request: server.Request, body: bytes | int) -> None:
        if body is server.NOT_DONE_YET or request.finished:
            return
        assert isinstance(body, bytes)
        request.write(body)
        request.finish()

    def _failed(self, request: server.Request, failure: Any) -> None:
        if isinstance(failure.value, APIError):
            body = jsonError(request, failure.value.code, failure.value.message)
        elif isinstance(failure.value, FileNotFoundError):
            self.index.rescan()
            body = jsonError(request, 404, "message not found")
        else:
            log.failure("The inbox API failed", failure)
            body = jsonError(request, 500, "internal error (see the server's log)")
        if not request.finished:
            request.write(body)
            request.finish()

    def inThread(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), f, *args
        )

    @staticmethod
    def json(request: server.Request, value: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(value).encode()

    @staticmethod
    def ok(request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok"

    @staticmethod
    def body(request: server.Request) -> dict[str, Any]:
        """
        The request's JSON object (an empty one for no body).
        """
        assert request.content is not None
        data = request.content.read()
        if not data.strip():
            return {}
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the body is not JSON") from None
        if not isinstance(value, dict):
            raise APIError(400, "the body is not a JSON object")
        return value

    @staticmethod
    def number(request: server.Request, name: str, default: int, maximum: int) -> int:
        values = request.args.get(name.encode(), [])
        if not values or not values[0].strip():
            return default
        text = values[0].decode("latin-1")
        if not text.isdigit() or int(text) > maximum:
            raise APIError(400, f"{name}: {text!r} is not a number from 0 to {maximum}")
        return int(text)

    @staticmethod
    def text(request: server.Request, name: str) -> str | None:
        values = request.args.get(name.encode())
        return values[0].decode("utf-8", "replace") if values else None

    def zone(self, request: server.Request) -> tzinfo | None:
        name = self.text(request, "tz")
        if not name:
            return None
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return None  # Mailpit ignores a time zone it does not know

    def ids(self, body: dict[str, Any]) -> list[str] | None:
        ids = body.get("IDs")
        if ids is None or ids == []:
            return None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise APIError(400, "IDs: not an array of strings")
        return ids

    def row(self, identifier: str) -> Any:
        row = self.index.get(identifier)
        if row is None:
            raise APIError(404, "message not found")
        return row

    # ------------------------------------------------------------ routes

    def route(self, method: str, path: list[str], request: server.Request) -> Any:
        if not path:
            raise APIError(404, "no such API path")
        head, rest = path[0], path[1:]
        if head == "info" and not rest and method == "GET":
            return self.info(request)
        if head == "webui" and not rest and method == "GET":
            return self.json(request, self.webui())
        if head == "messages" and not rest:
            if method == "GET":
                return self.listing(request, "")
            if method == "PUT":
                return self.setRead(request)
            if method == "DELETE":
                return self.delete(request)
        if head == "search" and not rest:
            query = self.text(request, "query")
            if query is None or not query.strip():
                raise APIError(400, "no search query")
            if method == "GET":
                return self.listing(request, query)
            if method == "DELETE":
                ids = self.index.ids(query, self.zone(request))
                self.deleted += self.index.delete(ids)
                return self.ok(request)
        if head == "message" and rest:
            return self.message(method, rest[0], rest[1:], request)
        if head == "tags" and method == "GET" and not rest:
            return self.json(request, [])
        if head in ("tags", "chaos", "send"):
            raise APIError(400, f"{head} is not available in smtptut (disabled)")
        if head in ("messages", "search", "info", "webui"):
            raise APIError(405, f"{method} is not allowed here")
        raise APIError(404, "no such API path")

    def message(
        self, method: str, identifier: str, rest: list[str], request: server.Request
    ) -> Any:
        row = self.row(identifier)
        path = self.index.fullPath(row)
        what = rest[0] if rest else ""
        if method == "POST" and what == "release" and len(rest) == 1:
            return self.release(row, request)
        if method != "GET":
            raise APIError(405, f"{method} is not allowed here")
        if not rest:
            d = self.inThread(_readMessage, path)

            def answer(result: tuple[Structure, str, str]) -> bytes:
                self.index.setRead([row["id"]], True)
                return self.json(request, shapes.message(row, *result))

            return d.addCallback(answer)
        if what == "headers" and len(rest) == 1:
            return self.inThread(_scanFile, path).addCallback(
                lambda s: self.json(request, shapes.headers(s))
            )
        if what == "raw" and len(rest) == 1:
            raw = static.File(path)
            raw.type, raw.encoding = "text/plain; charset=utf-8", None
            request.setHeader(b"content-security-policy", PART_CSP.encode())
            return raw.render_GET(request)
        if what == "part" and len(rest) in (2, 3):
            if len(rest) == 3:
                raise APIError(
                    400, "thumbnails are not available in smtptut (disabled)"
                )
            return self.inThread(_scanFile, path).addCallback(
                lambda s: self.part(request, path, s.part(rest[1]))
            )
        if what in ("html-check", "link-check", "sa-check") and len(rest) == 1:
            raise APIError(400, f"{what} is not available in smtptut (disabled)")
        raise APIError(404, "no such API path")

    # ------------------------------------------------------------ answers

    def info(self, request: server.Request) -> bytes:
        total, unread = self.index.totals()
        try:
            size = os.stat(self.index.database).st_size
        except OSError:
            size = 0
        memory = rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss * 1024
        return self.json(
            request,
            {
                "Version": VERSION,
                "LatestVersion": "",
                "Database": self.index.database,
                "DatabaseSize": size,
                "Messages": total,
                "Unread": unread,
                "Tags": {},
                "RuntimeStats": {
                    "Uptime": int(time.time() - self.started),
                    "Memory": memory,
                    "MessagesDeleted": self.deleted,
                    "SMTPAccepted": 0,
                    "SMTPAcceptedSize": 0,
                    "SMTPRejected": 0,
                    "SMTPIgnored": 0,
                },
            },
        )

    def webui(self) -> dict[str, Any]:
        policy = self.releaser.policy
        relay = self.releaser.client.relay
        return {
            "Label": "smtptut",
            "MessageRelay": {
                "Enabled": self.releaser.enabled,
                "SMTPServer": f"{relay[0]}:{relay[1]}" if relay else "",
                "ReturnPath": "",
                "AllowedRecipients": ",".join(policy.patterns) if policy else "",
                "BlockedRecipients": "",
                "OverrideFrom": "",
                "PreserveMessageIDs": False,
            },
            "SpamAssassin": False,
            "ChaosEnabled": False,
            "DuplicatesIgnored": False,
            "HideDeleteAllButton": False,
        }

    def listing(self, request: server.Request, query: str) -> bytes:
        start = self.number(request, "start", 0, 2**31)
        limit = self.number(request, "limit", 50, MAX_LIMIT)
        page = self.index.page(query, start, limit, self.zone(request))
        return self.json(
            request,
            {
                "total": page.total,
                "unread": page.unread,
                "count": len(page.rows),
                "messages_count": page.matched,
                "messages_unread": page.unread,
                "start": start,
                "tags": [],
                "messages": [shapes.summary(r) for r in page.rows],
            },
        )

    def setRead(self, request: server.Request) -> bytes:
        body = self.body(request)
        read = body.get("Read", False)
        if not isinstance(read, bool):
            raise APIError(400, "Read: not true or false")
        ids = self.ids(body)
        search = body.get("Search")
        if ids is None and isinstance(search, str) and search.strip():
            ids = self.index.ids(search, self.zone(request))
        self.index.setRead(ids, read)
        return self.ok(request)

    def delete(self, request: server.Request) -> bytes:
        self.deleted += self.index.delete(self.ids(self.body(request)))
        return self.ok(request)

    def part(self, request: server.Request, path: str, part: Part | None) -> int:
        if part is None:
            raise APIError(404, "part not found")
        f = open(path, "rb")
        contentType = part.contentType
        if contentType.startswith("text/"):
            contentType += f"; charset={part.charset}"
        request.setHeader(b"content-type", contentType.encode("ascii", "replace"))
        request.setHeader(b"content-security-policy", PART_CSP.encode())
        name = part.fileName.replace('"', "").replace("\\", "")
        disposition = "attachment" if part.contentType in _ACTIVE else "inline"
        if name:
            disposition += f'; filename="{name}"'
        request.setHeader(
            b"content-disposition", disposition.encode("utf-8", "replace")
        )
        ChunkProducer(request, f, decodedChunks(f, part)).start()
        return server.NOT_DONE_YET

    def release(self, row: Any, request: server.Request) -> Any:
        body = self.body(request)
        to = body.get("To")
        if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
            raise APIError(400, "To: not an array of addresses")
        sender = row["returnPath"] or json.loads(row["sender"]).get("Address", "")
        try:
            d = self.releaser.release(self.index.fullPath(row), sender, to)
        except ReleaseRefused as e:
            raise APIError(400, str(e)) from None

        def refused(failure: Any) -> Any:
            failure.trap(ReleaseRefused)
            raise APIError(400, str(failure.value))

        return d.addCallbacks(lambda _: self.ok(request), refused)


class MessageView(resource.Resource):
    """
    C{/view/{ID}.html} and C{/view/{ID}.txt}: one body of a message, the
    HTML under a sandboxing Content-Security-Policy.
    """

    isLeaf = True

    def __init__(self, index: MaildirIndex, reactor: Any) -> None:
        super().__init__()
        self.index = index
        self.reactor = reactor

    def render_GET(self, request: server.Request) -> bytes | int:
        name = b"/".join(request.postpath or []).decode("utf-8", "replace")
        identifier, dot, kind = name.rpartition(".")
        if not dot or kind not in ("html", "txt"):
            return jsonError(request, 404, "no such view")
        row = self.index.get(identifier)
        if row is None:
            return jsonError(request, 404, "message not found")
        path = self.index.fullPath(row)
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _scanFile, path
        )
        remote = request.args.get(b"remote") == [b"1"]

        def show(structure: Structure) -> None:
            part = structure.body("text/html" if kind == "html" else "text/plain")
            if part is None:
                request.write(
                    jsonError(request, 404, f"the message has no {kind} part")
                )
                request.finish()
                return
            contentType = "text/html" if kind == "html" else "text/plain"
            request.setHeader(
                b"content-type", f"{contentType}; charset={part.charset}".encode()
            )
            csp = MESSAGE_CSP_REMOTE if remote else MESSAGE_CSP
            request.setHeader(b"content-security-policy", csp.encode())
            f = open(path, "rb")
            ChunkProducer(request, f, decodedChunks(f, part)).start()

        def failed(failure: Any) -> None:
            log.failure("The inbox view failed", failure)
            request.write(jsonError(request, 404, "message not found"))
            request.finish()

        d.addCallbacks(show, failed)
        return server.NOT_DONE_YET
