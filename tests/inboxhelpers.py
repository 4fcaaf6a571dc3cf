"""Fixtures for the inbox tests: HTTP requests from a thread, messages sent with smtplib."""

from __future__ import annotations

import http.client
import json
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from twisted.internet import threads


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _fetch(
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    host: str,
) -> Response:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host="Host" in headers)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return Response(
            response.status, {k.lower(): v for k, v in response.getheaders()}, data
        )
    finally:
        connection.close()


def fetch(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Any:
    """
    One HTTP request (in a thread); a dict or list C{body} is sent as JSON.
    """
    headers = dict(headers or {})
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    return threads.deferToThread(_fetch, port, method, path, body, headers, host)


def message(
    subject: str = "Hello",
    text: str = "plain words",
    html: str | None = None,
    attachment: bytes | None = None,
    sender: str = "Alice <alice@example.com>",
    to: str = "bob@example.net",
) -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m.set_content(text)
    if html is not None:
        m.add_alternative(html, subtype="html")
    if attachment is not None:
        m.add_attachment(
            attachment,
            maintype="application",
            subtype="octet-stream",
            filename="data.bin",
        )
    return m


def _send(port: int, m: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(m)


def send(port: int, m: EmailMessage) -> Any:
    """
    Send C{m} with smtplib (in a thread) to the sink on C{port}.
    """
    return threads.deferToThread(_send, port, m)
