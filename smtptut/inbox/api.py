"""Mailpit's API v1 over the index and the Maildir, as twisted.web resources."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.web import resource, server, static

from smtptut.inbox import shapes
from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.mime import Part, Structure, decodedChunks, decodedText, scan
from smtptut.inbox.release import Releaser, ReleaseRefused
from smtptut.inbox.safety import MESSAGE_CSP, MESSAGE_CSP_REMOTE, PART_CSP, jsonError
from smtptut.inbox.streaming import streamBody, streamPart
from smtptut.inbox.wire import (
    APIError,
    answerJSON,
    answerOK,
    argument,
    idsOf,
    jsonBody,
    number,
    zone,
)

log = Logger()

#: Encoded octets of a text or HTML body put in a message's JSON.
BODY_LIMIT = 4 * 1024 * 1024
#: The most messages one page may hold.
MAX_LIMIT = 10000


def _scanFile(path: str) -> Structure:
    with open(path, "rb") as f:
        return scan(f)


def _findPart(path: str, partId: str, head: bool) -> tuple[Part | None, int | None]:
    """
    The part C{partId} of the message at C{path}, and for a C{HEAD} its decoded length.
    """
    with open(path, "rb") as f:
        part = scan(f).part(partId)
        if part is None or not head:
            return part, None
        return part, sum(len(chunk) for chunk in decodedChunks(f, part))


def _readMessage(path: str) -> tuple[Structure, str, str]:
    with open(path, "rb") as f:
        structure = scan(f)
        plain = structure.body("text/plain")
        markup = structure.body("text/html")
        text = decodedText(f, plain, BODY_LIMIT) if plain else ""
        html = decodedText(f, markup, BODY_LIMIT) if markup else ""
    return structure, text, html


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
            return answerJSON(
                request, shapes.info(self.index, self.started, self.deleted)
            )
        if head == "webui" and not rest and method == "GET":
            return answerJSON(request, shapes.webui(self.releaser))
        if head == "messages" and not rest:
            if method == "GET":
                return self.listing(request, "")
            if method == "PUT":
                return self.setRead(request)
            if method == "DELETE":
                return self.delete(request)
        if head == "search" and not rest:
            query = argument(request, "query")
            if query is None or not query.strip():
                raise APIError(400, "no search query")
            if method == "GET":
                return self.listing(request, query)
            if method == "DELETE":
                ids = self.index.ids(query, zone(request))
                self.deleted += self.index.delete(ids)
                return answerOK(request)
        if head == "message" and rest:
            return self.message(method, rest[0], rest[1:], request)
        if head == "tags" and method == "GET" and not rest:
            return answerJSON(request, [])
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
        # HEAD only where it changes nothing (a summary marks the message read).
        if method != "GET" and not (method == "HEAD" and what in ("raw", "part")):
            raise APIError(405, f"{method} is not allowed here")
        if not rest:
            d = self.inThread(_readMessage, path)

            def answer(result: tuple[Structure, str, str]) -> bytes:
                self.index.setRead([row["id"]], True)
                return answerJSON(request, shapes.message(row, *result))

            return d.addCallback(answer)
        if what == "headers" and len(rest) == 1:
            return self.inThread(_scanFile, path).addCallback(
                lambda s: answerJSON(request, shapes.headers(s))
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
            return self.inThread(
                _findPart, path, rest[1], method == "HEAD"
            ).addCallback(lambda found: streamPart(request, path, *found))
        if what in ("html-check", "link-check", "sa-check") and len(rest) == 1:
            raise APIError(400, f"{what} is not available in smtptut (disabled)")
        raise APIError(404, "no such API path")

    # ------------------------------------------------------------ answers

    def listing(self, request: server.Request, query: str) -> bytes:
        start = number(request, "start", 0, 2**31)
        limit = number(request, "limit", 50, MAX_LIMIT)
        page = self.index.page(query, start, limit, zone(request))
        return answerJSON(
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
        body = jsonBody(request)
        read = body.get("Read", False)
        if not isinstance(read, bool):
            raise APIError(400, "Read: not true or false")
        ids = idsOf(body)
        search = body.get("Search")
        if ids is None and isinstance(search, str) and search.strip():
            ids = self.index.ids(search, zone(request))
        self.index.setRead(ids, read)
        return answerOK(request)

    def delete(self, request: server.Request) -> bytes:
        self.deleted += self.index.delete(idsOf(jsonBody(request)))
        return answerOK(request)

    def release(self, row: Any, request: server.Request) -> Any:
        body = jsonBody(request)
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

        return d.addCallbacks(lambda _: answerOK(request), refused)


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
            links: dict[str, str] = {}
            if kind == "html":
                attached, inline = structure.attachments()
                for p in inline + attached:
                    if p.contentId:
                        links.setdefault(
                            p.contentId,
                            f"/api/v1/message/{row['id']}/part/{p.partId}",
                        )
            streamBody(request, path, part, links)

        def failed(failure: Any) -> None:
            log.failure("The inbox view failed", failure)
            request.write(jsonError(request, 404, "message not found"))
            request.finish()

        d.addCallbacks(show, failed)
        return server.NOT_DONE_YET
