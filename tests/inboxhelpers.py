"""Fixtures for the inbox tests: HTTP requests from a thread, messages sent with smtplib."""

from __future__ import annotations

import base64
import http.client
import json
import smtplib
import struct
import zlib
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


def png(width: int, height: int) -> bytes:
    """
    A valid PNG image of C{width} by C{height} grey pixels.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


#: The images and the document of L{relatedMessage}.
LOGO = png(3, 2)
PHOTO = png(5, 4)
TERMS = b"%PDF-1.4 not really a PDF"


def _base64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")


def relatedMessage(subject: str, html: str = "", attachment: bool = True) -> bytes:
    """
    An HTML message with two images in a C{multipart/related} by Content-ID
    (the logo with no Content-Disposition, the photo C{inline} with a file
    name, referred to in its %-encoded form), a text footer marked C{inline},
    and with C{attachment} a PDF with a Content-ID marked C{attachment}.

    Part numbers: 1.1.1 text, 1.1.2 HTML, 1.2 logo, 1.3 photo, 2 the PDF
    (or the footer), 3 the footer.
    """
    markup = (
        '<p>Logo: <img id="logo" src="cid:logo@smtptut.test" alt="logo"></p>'
        "<p>Photo: <img id=\"photo\" src='cid:photo%40smtptut.test'></p>" + html
    )
    related = (
        "Content-Type: multipart/related; boundary=related\r\n\r\n"
        "--related\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "The logo is inline.\r\n"
        f"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{markup}\r\n"
        "--alt--\r\n"
        "--related\r\nContent-Type: image/png\r\nContent-ID: <logo@smtptut.test>\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{_base64(LOGO)}"
        '--related\r\nContent-Type: image/png; name="photo.png"\r\n'
        "Content-ID: <photo@smtptut.test>\r\n"
        'Content-Disposition: inline; filename="photo.png"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{_base64(PHOTO)}"
        "--related--\r\n"
    )
    parts = [related]
    if attachment:
        parts.append(
            'Content-Type: application/pdf; name="terms.pdf"\r\n'
            "Content-ID: <terms@smtptut.test>\r\n"
            'Content-Disposition: attachment; filename="terms.pdf"\r\n\r\n'
            + TERMS.decode()
            + "\r\n"
        )
    parts.append(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\n\r\n"
        "A footer, part of the text.\r\n"
    )
    body = "".join(f"--mixed\r\n{p}" for p in parts) + "--mixed--\r\n"
    return (
        "From: Ada <ada@example.com>\r\nTo: bob@example.net\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=mixed\r\n\r\n" + body
    ).encode()


def _sendRaw(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("ada@example.com", ["bob@example.net"], data)


def sendRaw(port: int, data: bytes) -> Any:
    """
    Send the message C{data} as it is with smtplib (in a thread).
    """
    return threads.deferToThread(_sendRaw, port, data)
