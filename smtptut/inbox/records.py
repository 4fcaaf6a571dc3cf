"""What the index keeps of one Maildir file: read in one bounded pass, off the reactor thread."""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from smtptut.inbox.mime import Structure, decodedHeader, decodedText, scan

#: Encoded octets of each text body that are indexed for search.
TEXT_LIMIT = 64 * 1024
#: Mailpit's snippet length.
SNIPPET_LENGTH = 250

_maildirTime = re.compile(r"(\d+)\.(?:M(\d+))?")
_tags = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.S | re.I)


def messageId(uniqueName: str) -> str:
    """
    The API's ID of a message: its Maildir unique name, base64url without padding.
    """
    return base64.urlsafe_b64encode(uniqueName.encode("utf-8")).decode().rstrip("=")


def uniqueNameOf(identifier: str) -> str | None:
    """
    The Maildir unique name an ID stands for, or L{None} if it is not one.
    """
    try:
        name = base64.urlsafe_b64decode(identifier + "=" * (-len(identifier) % 4))
        text = name.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not text or "/" in text or ":" in text or "\0" in text or text.startswith("."):
        return None
    return text


def splitName(fileName: str) -> tuple[str, str]:
    """
    A Maildir file name's unique part and its flags (C{"X:2,FS"} -> C{("X", "FS")}).
    """
    unique, _, info = fileName.partition(":")
    flags = info[2:] if info.startswith("2,") else ""
    return unique, flags


def _addresses(headers: Message, name: str) -> list[dict[str, str]]:
    values = [str(v) for v in headers.get_all(name, [])]
    pairs = getaddresses(values)
    return [{"Name": decodedHeader(n), "Address": a} for n, a in pairs if a or n]


def _text(headers: Message, name: str) -> str:
    return decodedHeader(headers.get(name, ""))


def plainFromHTML(markup: str) -> str:
    """
    Readable text from HTML, for snippets and search (no tags, no scripts).
    """
    return html.unescape(_tags.sub(" ", markup))


@dataclass(frozen=True)
class Record:
    """
    One message as the index keeps it.
    """

    id: str
    name: str
    path: str
    created: float
    size: int
    read: bool
    subject: str
    messageId: str
    sender: str
    to: str
    cc: str
    bcc: str
    replyTo: str
    returnPath: str
    date: str
    attachments: int
    inline: int
    snippet: str
    text: str


def created(uniqueName: str, mtime: float) -> float:
    """
    When the message arrived: the time its Maildir name starts with, else the file's.
    """
    match = _maildirTime.match(uniqueName)
    if match is None:
        return mtime
    return int(match.group(1)) + int(match.group(2) or 0) / 1e6


def readRecord(maildir: str, path: str) -> Record:
    """
    Read the message at C{path} (relative to C{maildir}): headers, the
    first L{TEXT_LIMIT} octets of its text bodies, its parts' names.
    """
    full = os.path.join(maildir, path)
    unique, flags = splitName(os.path.basename(path))
    with open(full, "rb") as f:
        stat = os.fstat(f.fileno())
        structure: Structure = scan(f)
        headers = structure.headers
        plain = structure.body("text/plain")
        markup = structure.body("text/html")
        body = decodedText(f, plain, TEXT_LIMIT) if plain else ""
        htmlText = plainFromHTML(decodedText(f, markup, TEXT_LIMIT)) if markup else ""
    attached, inline = structure.attachments()
    sender = _addresses(headers, "From")
    to = _addresses(headers, "To")
    cc = _addresses(headers, "Cc")
    bcc = _addresses(headers, "Bcc")
    replyTo = _addresses(headers, "Reply-To")
    subject = _text(headers, "Subject")
    snippetSource = " ".join((body or htmlText).split())
    date = ""
    try:
        parsed = parsedate_to_datetime(_text(headers, "Date"))
        date = parsed.isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    searchable = " ".join(
        [subject, json.dumps(sender + to + cc + bcc + replyTo, ensure_ascii=False)]
        + [body, htmlText]
        + [p.fileName for p in attached + inline]
    )
    return Record(
        id=messageId(unique),
        name=unique,
        path=path,
        created=created(unique, stat.st_mtime),
        size=stat.st_size,
        read="S" in flags,
        subject=subject,
        messageId=_text(headers, "Message-ID").strip().strip("<>"),
        sender=json.dumps(
            sender[0] if sender else {"Name": "", "Address": ""}, ensure_ascii=False
        ),
        to=json.dumps(to, ensure_ascii=False),
        cc=json.dumps(cc, ensure_ascii=False),
        bcc=json.dumps(bcc, ensure_ascii=False),
        replyTo=json.dumps(replyTo, ensure_ascii=False),
        returnPath=_text(headers, "Return-Path").strip().strip("<>"),
        date=date,
        attachments=len(attached),
        inline=len(inline),
        snippet=snippetSource[:SNIPPET_LENGTH],
        text=searchable,
    )
