"""Mailpit's search syntax, parsed without I/O, as a parameterised SQL condition."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

#: A term is searched for only if it has a letter or digit (as Mailpit does).
_meaningful = re.compile(r"[A-Za-z0-9]")
_size = re.compile(r"(\d+)(\.\d+)?\s?([a-z]{1,2})?\Z")
#: The shortest text the full-text index (trigrams) can look up.
TRIGRAM = 3


class Field(enum.StrEnum):
    """
    What a search term looks at.
    """

    TEXT = "text"
    FROM = "from:"
    TO = "to:"
    CC = "cc:"
    BCC = "bcc:"
    REPLY_TO = "reply-to:"
    ADDRESSED = "addressed:"
    SUBJECT = "subject:"
    MESSAGE_ID = "message-id:"
    AFTER = "after:"
    BEFORE = "before:"
    LARGER = "larger:"
    SMALLER = "smaller:"
    IS_READ = "is:read"
    IS_UNREAD = "is:unread"
    HAS_ATTACHMENT = "has:attachment"
    HAS_INLINE = "has:inline"


_PREFIXES = [f for f in Field if f.value.endswith(":") and f is not Field.TEXT]
_WORDS = {
    "is:read": Field.IS_READ,
    "is:unread": Field.IS_UNREAD,
    "has:attachment": Field.HAS_ATTACHMENT,
    "has:attachments": Field.HAS_ATTACHMENT,
    "has:inline": Field.HAS_INLINE,
    "has:inlines": Field.HAS_INLINE,
}
#: The index's column (JSON text of addresses) for each address field.
_ADDRESS_COLUMNS = {
    Field.FROM: ("sender",),
    Field.TO: ("recipients",),
    Field.CC: ("cc",),
    Field.BCC: ("bcc",),
    Field.REPLY_TO: ("replyTo",),
    Field.ADDRESSED: ("sender", "recipients", "cc", "bcc", "replyTo"),
}


@dataclass(frozen=True)
class Term:
    """
    One search term: what it looks at, for what, and whether it excludes.
    """

    field: Field
    value: str = ""
    negated: bool = False


def split(query: str) -> list[str]:
    """
    Words of C{query}; double quotes group words into one and are removed.
    """
    words: list[str] = []
    current: list[str] = []
    quoted = False
    for c in query:
        if c == '"':
            quoted = not quoted
        elif c.isspace() and not quoted:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(c)
    if current:
        words.append("".join(current))
    return words


def parse(query: str) -> list[Term]:
    """
    The terms of a Mailpit search; a term without a letter or digit is ignored.
    """
    terms = []
    for word in split(query):
        negated = len(word) > 1 and word[0] in "-!"
        if negated:
            word = word[1:]
        if not _meaningful.search(word):
            continue
        lower = word.lower()
        if lower in _WORDS:
            terms.append(Term(_WORDS[lower], "", negated))
            continue
        for prefix in _PREFIXES:
            if lower.startswith(prefix.value) and len(word) > len(prefix.value):
                terms.append(Term(prefix, word[len(prefix.value) :].strip(), negated))
                break
        else:
            terms.append(Term(Field.TEXT, word, negated))
    return terms


def sizeInOctets(text: str) -> int | None:
    """
    C{2kb}, C{4MB}, C{1.5m} or a plain number of octets, as Mailpit reads them.
    """
    match = _size.match(text.strip().lower())
    if match is None:
        return None
    value = float(match.group(1) + (match.group(2) or ""))
    unit = match.group(3) or ""
    factor = {"": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}.get(unit)
    if factor is None:
        return None
    return int(value * factor) or None


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d",
    "%d %b %Y",
    "%b %d %Y",
)


def parseDate(text: str, zone: tzinfo | None = None) -> float | None:
    """
    A date (and time) as seconds since the epoch, in C{zone} (local time by
    default); L{None} when it is not one (Mailpit ignores such terms).
    """
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        for form in _DATE_FORMATS:
            try:
                moment = datetime.strptime(text, form)
                break
            except ValueError:
                continue
        else:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone) if zone else moment.astimezone()
    return moment.timestamp()


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _ftsPhrase(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _condition(term: Term, zone: tzinfo | None) -> tuple[str, list[object]] | None:
    """
    SQL for one term (columns of the C{messages} table as C{m}), or L{None}
    for a term that selects nothing (an unreadable date or size).
    """
    f, value = term.field, term.value
    if f is Field.TEXT:
        # FTS5 ends a query string at a NUL ("unterminated string").
        value = value.replace("\0", "")
        if len(value) >= TRIGRAM:
            return "m.rowid IN (SELECT rowid FROM fts WHERE fts MATCH ?)", [
                _ftsPhrase(value)
            ]
        return "m.rowid IN (SELECT rowid FROM fts WHERE text LIKE ? ESCAPE '\\')", [
            _like(value)
        ]
    if f in _ADDRESS_COLUMNS:
        columns = _ADDRESS_COLUMNS[f]
        sql = " OR ".join(f"m.{c} LIKE ? ESCAPE '\\'" for c in columns)
        return f"({sql})", [_like(value)] * len(columns)
    if f is Field.SUBJECT:
        value = value.replace("\0", "")
        if len(value) >= TRIGRAM:
            # The trigram index's subject column: no pass over every row.
            return "m.rowid IN (SELECT rowid FROM fts WHERE fts MATCH ?)", [
                "subject : " + _ftsPhrase(value)
            ]
        return "m.subject LIKE ? ESCAPE '\\'", [_like(value)]
    if f is Field.MESSAGE_ID:
        return "m.messageId LIKE ? ESCAPE '\\'", [_like(value.strip("<>"))]
    if f is Field.IS_READ:
        return "m.read = 1", []
    if f is Field.IS_UNREAD:
        return "m.read = 0", []
    if f is Field.HAS_ATTACHMENT:
        return "m.attachments > 0", []
    if f is Field.HAS_INLINE:
        return "m.inline > 0", []
    if f in (Field.AFTER, Field.BEFORE):
        moment = parseDate(value, zone)
        if moment is None:
            return None
        return ("m.created >= ?" if f is Field.AFTER else "m.created <= ?"), [moment]
    octets = sizeInOctets(value)
    if octets is None:
        return None
    return ("m.size > ?" if f is Field.LARGER else "m.size < ?"), [octets]


def toSQL(terms: list[Term], zone: tzinfo | None = None) -> tuple[str, list[object]]:
    """
    A condition every term holds for (C{"1"} for none), and its parameters:
    user text is only ever a parameter, never part of the SQL.
    """
    parts: list[str] = []
    params: list[object] = []
    for term in terms:
        condition = _condition(term, zone)
        if condition is None:
            continue
        sql, values = condition
        parts.append(f"NOT ({sql})" if term.negated else sql)
        params.extend(values)
    return (" AND ".join(parts) or "1"), params
