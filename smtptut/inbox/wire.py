"""Reading the API's requests and writing its plain answers: JSON bodies, numbers, refusals."""

from __future__ import annotations

import json
import zoneinfo
from datetime import tzinfo
from typing import Any

from twisted.web import server


class APIError(Exception):
    """
    A request the API refuses: its status and a one-line reason.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def answerJSON(request: server.Request, value: Any) -> bytes:
    """
    C{value} as the JSON body of the answer.
    """
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value).encode()


def answerOK(request: server.Request) -> bytes:
    """
    Mailpit's plain C{ok}.
    """
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"ok"


def jsonBody(request: server.Request) -> dict[str, Any]:
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


def number(request: server.Request, name: str, default: int, maximum: int) -> int:
    """
    A whole-number query argument from 0 to C{maximum}, or C{default}.
    """
    values = request.args.get(name.encode(), [])
    if not values or not values[0].strip():
        return default
    text = values[0].decode("latin-1")
    if not text.isdigit() or int(text) > maximum:
        raise APIError(400, f"{name}: {text!r} is not a number from 0 to {maximum}")
    return int(text)


def argument(request: server.Request, name: str) -> str | None:
    """
    A query argument as text, or L{None}.
    """
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def zone(request: server.Request) -> tzinfo | None:
    """
    The C{tz} argument's time zone; one not known is ignored, as Mailpit does.
    """
    name = argument(request, "tz")
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def idsOf(body: dict[str, Any]) -> list[str] | None:
    """
    The body's C{IDs}, or L{None} for none (meaning every message).
    """
    ids = body.get("IDs")
    if ids is None or ids == []:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise APIError(400, "IDs: not an array of strings")
    return ids
