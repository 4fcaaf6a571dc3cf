"""Mailpit's search syntax: a table of queries and the messages they find, and any text is safe SQL."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from smtptut.inbox import search
from smtptut.inbox.index import MaildirIndex
from tests.helpers import reactor

#: (file name in the Maildir, message): three messages to search.
MESSAGES = {
    "invoice": (
        "cur/1700000000.M1P1Q1.test:2,S",
        "From: Alice <alice@example.com>\nTo: bob@example.net\n"
        "Subject: Invoice 42\nMessage-ID: <inv42@example.com>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
        "--b1\nContent-Type: text/plain\n\nplease pay the invoice\n"
        "--b1\nContent-Type: application/pdf\n"
        'Content-Disposition: attachment; filename="report.pdf"\n'
        "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b1--\n",
    ),
    "hello": (
        "new/1750000000.M1P1Q2.test",
        "From: carol@example.org\nTo: dave@example.org\nCc: erin@example.org\n"
        "Subject: Hello world\nMessage-ID: <hw@example.org>\n\n"
        "short hi note\n" + "filler line\n" * 500,
    ),
    "reply": (
        "new/1760000000.M1P1Q3.test",
        "From: Zed <zed@example.com>\nTo: bob@example.net\nSubject: Re: Hello\n"
        "Message-ID: <abc123@example.com>\n\nquoted: exact phrase here\n",
    ),
}

#: Query -> the messages found, newest first.
TABLE = [
    ("", ["reply", "hello", "invoice"]),
    ("invoice", ["invoice"]),
    ("INVOICE", ["invoice"]),
    ("hi", ["hello"]),
    ('"exact phrase"', ["reply"]),
    ('"phrase exact"', []),
    ("from:alice", ["invoice"]),
    ("from:Alice@Example.com", ["invoice"]),
    ("to:bob", ["reply", "invoice"]),
    ("cc:erin", ["hello"]),
    ("subject:hello", ["reply", "hello"]),
    ('subject:"Re: Hello"', ["reply"]),
    ("-subject:hello", ["invoice"]),
    ("!from:alice", ["reply", "hello"]),
    ("message-id:abc123", ["reply"]),
    ("message-id:<abc123@example.com>", ["reply"]),
    ("is:read", ["invoice"]),
    ("is:unread", ["reply", "hello"]),
    ("-is:unread", ["invoice"]),
    ("has:attachment", ["invoice"]),
    ("-has:attachment", ["reply", "hello"]),
    ("report.pdf", ["invoice"]),
    ("before:2024-01-01", ["invoice"]),
    ("after:2025-01-01", ["reply", "hello"]),
    ("after:2025-01-01 before:2025-07-01", ["hello"]),
    ("before:notadate", ["reply", "hello", "invoice"]),
    ("larger:4k", ["hello"]),
    ("smaller:4kb", ["reply", "invoice"]),
    ("to:bob -invoice", ["reply"]),
    ("from:nobody", []),
    ("- ! -- ", ["reply", "hello", "invoice"]),
    ("100%", []),
    ("o_e", []),
]


class SearchTableTests(TestCase):
    def setUp(self) -> Any:
        self.maildir = tempfile.mkdtemp(dir=".")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub))
        self.names = {}
        for key, (path, text) in MESSAGES.items():
            with open(os.path.join(self.maildir, path), "w") as f:
                f.write(text)
            self.names[os.path.basename(path).partition(":")[0]] = key
        self.index = MaildirIndex(self.maildir, reactor, reactor)
        self.addCleanup(self.index.stop)
        return self.index.rescan()

    def found(self, query: str) -> list[str]:
        return [self.names[r["name"]] for r in self.index.page(query).rows]

    def test_table(self) -> None:
        """
        Each query of Mailpit's syntax finds the messages Mailpit would, newest first.
        """
        for query, expected in TABLE:
            self.assertEqual(self.found(query), expected, query)

    def test_counts(self) -> None:
        """
        A page says how many matched and how many there are, past its limit.
        """
        page = self.index.page("to:bob", start=0, limit=1)
        self.assertEqual(
            (len(page.rows), page.matched, page.total, page.unread), (1, 2, 3, 2)
        )
        self.assertEqual(
            [self.names[r["name"]] for r in self.index.page("", 1, 1).rows], ["hello"]
        )


class ParserTests(TestCase):
    def test_terms(self) -> None:
        self.assertEqual(
            search.parse('from:a -"two words" is:READ larger:1m'),
            [
                search.Term(search.Field.FROM, "a"),
                search.Term(search.Field.TEXT, "two words", negated=True),
                search.Term(search.Field.IS_READ),
                search.Term(search.Field.LARGER, "1m"),
            ],
        )

    def test_sizes(self) -> None:
        self.assertEqual(search.sizeInOctets("2kb"), 2048)
        self.assertEqual(search.sizeInOctets("1.5M"), 1572864)
        self.assertEqual(search.sizeInOctets("10"), 10)
        self.assertIsNone(search.sizeInOctets("10gb"))
        self.assertIsNone(search.sizeInOctets("lots"))

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=80))
    def test_anyTextIsOnlyAParameter(self, query: str) -> None:
        """
        Whatever the query, the SQL holds none of its text: every value is a
        parameter, and the statement runs.
        """
        where, params = search.toSQL(search.parse(query))
        self.assertEqual(where.count("?"), len(params))
        # Only the fixed fragments of toSQL are left once parameters are gone.
        self.assertNotIn("'", where.replace("ESCAPE '\\'", ""))
        db = sqlite3.connect(":memory:")
        db.executescript(
            "CREATE TABLE messages (id, sender, recipients, cc, bcc, replyTo,"
            " subject, messageId, read, attachments, inline, created, size);"
            "CREATE VIRTUAL TABLE fts USING fts5(subject, text, tokenize='trigram');"
        )
        db.execute(f"SELECT id FROM messages m WHERE {where}", params).fetchall()
