"""Mailpit's JSON shapes for what the index holds."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smtptut.inbox.mime import Part, Structure, decodedHeader

if TYPE_CHECKING:
    from smtptut.inbox.index import MaildirIndex
    from smtptut.inbox.release import Releaser

VERSION = "smtptut"


def timestamp(seconds: float) -> str:
    """
    RFC 3339 time with milliseconds in UTC, as Mailpit's Go encoder writes it.
    """
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def summary(row: sqlite3.Row) -> dict[str, Any]:
    """
    A C{MessageSummary}: what lists and searches show of a message.
    """
    return {
        "ID": row["id"],
        "MessageID": row["messageId"] or "",
        "Read": bool(row["read"]),
        "From": json.loads(row["sender"]),
        "To": json.loads(row["recipients"]),
        "Cc": json.loads(row["cc"]),
        "Bcc": json.loads(row["bcc"]),
        "ReplyTo": json.loads(row["replyTo"]),
        "Subject": row["subject"] or "",
        "Created": timestamp(row["created"]),
        "Tags": [],
        "Size": row["size"],
        "Attachments": row["attachments"],
        "Snippet": row["snippet"] or "",
    }


def attachment(part: Part) -> dict[str, Any]:
    """
    An C{Attachment}: one part other than the message's text.
    """
    return {
        "PartID": part.partId,
        # Mailpit names a part without a file name by its Content-ID.
        "FileName": part.fileName or part.contentId,
        "ContentType": part.contentType,
        "ContentID": part.contentId,
        "Size": part.size,
    }


def message(
    row: sqlite3.Row, structure: Structure, text: str, html: str
) -> dict[str, Any]:
    """
    A C{Message}: the summary's fields with the bodies and the parts.
    """
    attached, inline = structure.attachments()
    return {
        "ID": row["id"],
        "MessageID": row["messageId"] or "",
        "From": json.loads(row["sender"]),
        "To": json.loads(row["recipients"]),
        "Cc": json.loads(row["cc"]),
        "Bcc": json.loads(row["bcc"]),
        "ReplyTo": json.loads(row["replyTo"]),
        "ReturnPath": row["returnPath"] or "",
        "Subject": row["subject"] or "",
        "ListUnsubscribe": {"Header": "", "Links": [], "Errors": "", "HeaderPost": ""},
        "Date": row["date"] or timestamp(row["created"]),
        "Tags": [],
        "Username": "",
        "Text": text,
        "HTML": html,
        "Size": row["size"],
        "Inline": [attachment(p) for p in inline],
        "Attachments": [attachment(p) for p in attached],
    }


def headers(structure: Structure) -> dict[str, list[str]]:
    """
    C{MessageHeadersResponse}: every header field's values, by name, names sorted.
    """
    fields: dict[str, list[str]] = {}
    for name, value in structure.headers.raw_items():
        key = "-".join(w.capitalize() for w in name.split("-"))
        fields.setdefault(key, []).append(decodedHeader(value))
    return dict(sorted(fields.items()))


def info(index: MaildirIndex, started: float, deleted: int) -> dict[str, Any]:
    """
    C{AppInformation}: totals, the index's file and size, this process's figures.
    """
    total, unread = index.totals()
    try:
        size = os.stat(index.database).st_size
    except OSError:
        size = 0
    return {
        "Version": VERSION,
        "LatestVersion": "",
        "Database": index.database,
        "DatabaseSize": size,
        "Messages": total,
        "Unread": unread,
        "Tags": {},
        "RuntimeStats": {
            "Uptime": int(time.time() - started),
            "Memory": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "MessagesDeleted": deleted,
            "SMTPAccepted": 0,
            "SMTPAcceptedSize": 0,
            "SMTPRejected": 0,
            "SMTPIgnored": 0,
        },
    }


def webui(releaser: Releaser) -> dict[str, Any]:
    """
    C{WebUIConfiguration}: what is on (release) and what smtptut has not (the rest).
    """
    policy = releaser.policy
    relay = releaser.client.relay
    return {
        "Label": "smtptut",
        "MessageRelay": {
            "Enabled": releaser.enabled,
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
