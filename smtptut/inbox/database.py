"""The index's SQLite file: one table of messages, one FTS5 (trigram) table of their text."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import tzinfo

from smtptut.inbox import search
from smtptut.inbox.records import Record, uniqueNameOf

#: Bump when the schema changes: an index of another version is rebuilt.
SCHEMA_VERSION = 5

_COLUMNS = (
    "id, name, path, created, size, read, subject, messageId, sender, recipients,"
    " cc, bcc, replyTo, returnPath, date, attachments, inline, snippet"
)
#: The record's fields stored in the messages table (all but the text).
_FIELDS = tuple(f.name for f in fields(Record))[:-1]
_SELECT = "SELECT rowid, " + _COLUMNS + " FROM messages"
_SELECT_M = (
    "SELECT m.rowid, "
    + ", ".join("m." + c.strip() for c in _COLUMNS.split(","))
    + " FROM messages m"
)

_SCHEMA = f"""
CREATE TABLE messages (
    id TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
    created REAL NOT NULL, size INTEGER NOT NULL, read INTEGER NOT NULL,
    subject TEXT, messageId TEXT, sender TEXT, recipients TEXT, cc TEXT,
    bcc TEXT, replyTo TEXT, returnPath TEXT, date TEXT,
    attachments INTEGER NOT NULL, inline INTEGER NOT NULL, snippet TEXT
);
CREATE INDEX byCreated ON messages (created DESC);
CREATE INDEX byRead ON messages (read);
CREATE VIRTUAL TABLE fts USING fts5(subject, text, tokenize='trigram');
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass(frozen=True)
class Page:
    """
    Some messages (newest first), how many matched, and the mailbox's totals.
    """

    rows: list[sqlite3.Row]
    matched: int
    total: int
    unread: int


class IndexDatabase:
    """
    The rows the index keeps, in a file that may be deleted at any time
    (a damaged or old one is started again).
    """

    def __init__(self, path: str, anyThread: bool = False) -> None:
        """
        @param anyThread: the connection is used from threads other than
            the one opening it (one at a time).
        """
        self.path = path
        self.anyThread = anyThread
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError:
            self._removeFiles()
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # Two connections write (see MaildirIndex): each waits for the other's
        # transaction (5 seconds at most, sqlite3's default).
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=not self.anyThread
        )
        db.row_factory = sqlite3.Row
        # Derived data: a crash loses nothing that the next start cannot rebuild.
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA journal_mode = WAL")
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.execute("DROP TABLE IF EXISTS messages")
            db.execute("DROP TABLE IF EXISTS fts")
            db.executescript(_SCHEMA)
        return db

    def _removeFiles(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """
        Many changes in one commit (a batch of a catch-up).
        """
        # IMMEDIATE: the write lock is taken now, so that another
        # connection's commit can never make this transaction's snapshot stale.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ changes

    def add(self, record: Record) -> sqlite3.Row | None:
        """
        Keep C{record}; its row, or L{None} if its name was known already.
        """
        cursor = self._db.execute(
            f"INSERT OR IGNORE INTO messages ({_COLUMNS})"
            f" VALUES ({', '.join('?' * 18)})",
            # Not dataclasses.astuple: it deep-copies every field.
            tuple(getattr(record, name) for name in _FIELDS),
        )
        if not cursor.rowcount:
            return None
        self._db.execute(
            "INSERT INTO fts (rowid, subject, text) VALUES (?, ?, ?)",
            (cursor.lastrowid, record.subject, record.text),
        )
        return self.byName(record.name)

    def addAll(
        self, records: Iterable[Record], wanted: Callable[[Record], bool]
    ) -> list[sqlite3.Row]:
        """
        Keep those of C{records} still C{wanted}, in one transaction; the
        new rows.  C{wanted} is asked under the write lock: a file removed
        (and its row) by another connection is then either gone already or
        removed after this commit.
        """
        rows = []
        with self.transaction():
            for record in records:
                if wanted(record):
                    row = self.add(record)
                    if row is not None:
                        rows.append(row)
        return rows

    def remove(self, row: sqlite3.Row) -> None:
        self._db.execute("DELETE FROM fts WHERE rowid = ?", (row["rowid"],))
        self._db.execute("DELETE FROM messages WHERE rowid = ?", (row["rowid"],))

    def move(self, name: str, path: str, read: bool) -> None:
        self._db.execute(
            "UPDATE messages SET path = ?, read = ? WHERE name = ?", (path, read, name)
        )

    # ------------------------------------------------------------ questions

    def known(self) -> dict[str, str]:
        """
        Every message's path, by Maildir unique name.
        """
        return {r[0]: r[1] for r in self._db.execute("SELECT name, path FROM messages")}

    def byName(self, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            _SELECT + " WHERE name = ?", (name,)
        ).fetchone()
        return row

    def get(self, identifier: str) -> sqlite3.Row | None:
        """
        The message with this API ID, or the newest for C{latest}.
        """
        if identifier == "latest":
            row: sqlite3.Row | None = self._db.execute(
                _SELECT + " ORDER BY created DESC, rowid DESC LIMIT 1"
            ).fetchone()
            return row
        name = uniqueNameOf(identifier)
        return self.byName(name) if name else None

    def rows(self, ids: Iterable[str] | None) -> list[sqlite3.Row]:
        """
        The rows of these IDs (those that exist), or all of them for L{None}.
        """
        if ids is None:
            return list(self._db.execute(_SELECT))
        found = [self.get(i) for i in ids]
        return [r for r in found if r is not None]

    def totals(self) -> tuple[int, int]:
        """
        How many messages there are, and how many unread.
        """
        # Two counts, each from an index, rather than one pass over the rows.
        (total,) = self._db.execute("SELECT count(*) FROM messages").fetchone()
        (unread,) = self._db.execute(
            "SELECT count(*) FROM messages WHERE read = 0"
        ).fetchone()
        return int(total), int(unread)

    def page(
        self,
        query: str = "",
        start: int = 0,
        limit: int = 50,
        zone: tzinfo | None = None,
    ) -> Page:
        """
        Messages matching the Mailpit search C{query}, newest first.
        """
        where, params = search.toSQL(search.parse(query), zone)
        rows = self._db.execute(
            f"{_SELECT_M} WHERE {where}"
            " ORDER BY m.created DESC, m.rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, start],
        ).fetchall()
        total, unread = self.totals()
        matched = total
        if where != "1":
            matched = self._db.execute(
                f"SELECT count(*) FROM messages m WHERE {where}", params
            ).fetchone()[0]
        return Page(rows, int(matched), total, unread)

    def ids(self, query: str, zone: tzinfo | None = None) -> list[str]:
        """
        The IDs of every message matching C{query}.
        """
        where, params = search.toSQL(search.parse(query), zone)
        cursor = self._db.execute(f"SELECT m.id FROM messages m WHERE {where}", params)
        return [r[0] for r in cursor]
