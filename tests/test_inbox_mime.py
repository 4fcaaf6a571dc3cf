"""The one-pass MIME scanner agrees with the email package on every part, and stays bounded."""

from __future__ import annotations

import email
import email.policy
import io
import os
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.inbox import index as indexModule
from smtptut.inbox import mime
from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.streaming import linkInline
from smtptut.inbox.testing import startInboxSink
from tests.helpers import reactor
from tests.inboxhelpers import message, send

payloads = st.binary(max_size=3000)
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=300)


def build(text: str, html: str | None, attachments: list[bytes], crlf: bool) -> bytes:
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["Subject"] = "generated"
    m.set_content(text)
    if html is not None:
        m.add_alternative(html, subtype="html")
    for i, data in enumerate(attachments):
        m.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=f"f{i}.bin"
        )
    data = m.as_bytes(
        policy=email.policy.default.clone(linesep="\r\n" if crlf else "\n")
    )
    return data


def leaves(data: bytes) -> list[bytes]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    found = []
    for p in parsed.walk():
        if not p.is_multipart():
            payload = p.get_payload(decode=True)
            found.append(payload if isinstance(payload, bytes) else b"")
    return found


class ScanTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(texts, st.none() | texts, st.lists(payloads, max_size=3), st.booleans())
    def test_partsAsTheEmailPackageDecodes(
        self, text: str, html: str | None, attachments: list[bytes], crlf: bool
    ) -> None:
        """
        Every leaf part, decoded chunk by chunk from its offsets, is what the
        email package decodes (LF or CRLF line ends, any payload).
        """
        data = build(text, html, attachments, crlf)
        f = io.BytesIO(data)
        structure = mime.scan(f)
        decoded = [b"".join(mime.decodedChunks(f, p)) for p in structure.parts]
        self.assertEqual(decoded, leaves(data))
        attached, inline = structure.attachments()
        self.assertEqual(
            [p.fileName for p in attached],
            [f"f{i}.bin" for i in range(len(attachments))],
        )
        self.assertEqual(inline, [])

    def test_partNumbers(self) -> None:
        """
        Parts are numbered as Mailpit numbers them: 1.1 and 1.2 inside the first part.
        """
        data = build("t", "<p>h</p>", [b"x"], False)
        structure = mime.scan(io.BytesIO(data))
        self.assertEqual([p.partId for p in structure.parts], ["1.1", "1.2", "2"])
        plain = mime.scan(io.BytesIO(b"Subject: s\n\nbody\n"))
        self.assertEqual([p.partId for p in plain.parts], ["1"])

    def test_lineWithoutEndIsReadInPieces(self) -> None:
        """
        A body with no line end at all is never read as one line.
        """
        f = io.BytesIO(b"Subject: s\n\n" + b"x" * (mime.LINE_LIMIT * 5))
        reads = []
        original = f.readline

        def readline(size: int | None = -1) -> bytes:
            assert size is not None
            reads.append(size)
            return original(size)

        f.readline = readline  # type: ignore[method-assign]
        structure = mime.scan(f)
        self.assertTrue(all(0 < size <= mime.LINE_LIMIT for size in reads))
        self.assertEqual(structure.parts[0].end, len(f.getvalue()))

    def test_bodyTextBounded(self) -> None:
        """
        Only the first octets of a text body are decoded for the index.
        """
        data = build("word " * 100000, None, [], False)
        f = io.BytesIO(data)
        part = mime.scan(f).parts[0]
        self.assertLessEqual(len(mime.decodedText(f, part, 1000)), 1000)


class IndexUpdateTests(TestCase):
    async def test_storedMessageIndexedAtOnce(self) -> None:
        """
        The server's hook puts a message in the index once committed, with
        no rescan.
        """
        sink = await startInboxSink(reactor)
        self.addCleanup(sink.stop)
        assert sink.index._loop is not None
        sink.index._loop.stop()
        await send(sink.smtpPort, message("hooked"))
        for _ in range(200):
            if sink.messages():
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual([m["Subject"] for m in sink.messages()], ["hooked"])

    async def test_rescanOnTheInjectedClock(self) -> None:
        """
        Files another program adds are found when the clock given says the
        interval has passed, not before.
        """
        maildir = self.mktemp()
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        clock = task.Clock()
        index = MaildirIndex(maildir, reactor, clock, interval=30)
        self.addCleanup(index.stop)
        await index.start()
        with open(os.path.join(maildir, "new", "1.M1P1Q1.other"), "wb") as f:
            f.write(b"Subject: dropped in\n\nby hand\n")
        clock.advance(29)
        self.assertEqual(index.totals(), (0, 0))
        clock.advance(1)
        for _ in range(200):
            if index.totals()[0]:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual([r["subject"] for r in index.page().rows], ["dropped in"])

    async def test_deletedWhileReadStaysDeleted(self) -> None:
        """
        A file removed (by a DELETE through the API) after a rescan read it
        in a thread, but before the record came back, is not indexed: it
        would be listed for ever, with no file behind it.
        """
        maildir = self.mktemp()
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        path = os.path.join(maildir, "new", "1.M1P1Q1.other")
        with open(path, "wb") as f:
            f.write(b"Subject: going\n\nsoon gone\n")

        def readThenDelete(reactor, pool, read, paths):
            records = read(paths)
            os.unlink(path)
            return defer.succeed(records)

        self.patch(indexModule.threads, "deferToThreadPool", readThenDelete)
        index = MaildirIndex(maildir, reactor, task.Clock(), interval=30)
        self.addCleanup(index.stop)
        await index.start()
        self.assertEqual(index.totals(), (0, 0))


class LinkInlineTests(SynchronousTestCase):
    HTML = (
        b'<img src="cid:logo@x.test"><img src=CID:LOGO@X.TEST>'
        b"<td style=\"background: url('cid:bg%40x.test')\">"
        b'<img src="cid:logo@x.test.evil"><p>cid:logo@x.test in text</p>'
    )
    LINKED = (
        b'<img src="/p/1"><img src=/p/1>'
        b"<td style=\"background: url('/p/2')\">"
        b'<img src="cid:logo@x.test.evil"><p>cid:logo@x.test in text</p>'
    )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, 200), max_size=8), st.integers(0, 3000))
    def test_cutAnywhere(self, cuts: list[int], padding: int) -> None:
        """
        C{cid:} references in attributes and CSS are rewritten wherever the
        chunks are cut; a longer Content-ID or a mention in text is not.
        """
        data = b"x" * padding + self.HTML
        points = sorted({min(c * 7, len(data)) for c in cuts})
        chunks = [
            data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)
        ]
        out = b"".join(
            linkInline(iter(chunks), {"logo@x.test": "/p/1", "bg@x.test": "/p/2"})
        )
        self.assertEqual(out, b"x" * padding + self.LINKED)

    def test_noLinks(self) -> None:
        """
        Without Content-IDs the chunks pass as they are.
        """
        self.assertEqual(list(linkInline(iter([b"a", b"b"]), {})), [b"a", b"b"])
