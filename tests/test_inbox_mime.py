"""The one-pass MIME scanner agrees with the email package on every part, and stays bounded."""

from __future__ import annotations

import email
import email.policy
import io
import os
import threading
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

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

    def makeMaildir(self) -> str:
        maildir = self.mktemp()
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        return maildir

    async def test_storedMessageWrittenOnceOffTheReactor(self) -> None:
        """
        A message the sink stored is read once, even when a rescan comes
        before it is indexed, and written to the index in a thread, not in
        the reactor's (where the SMTP sessions run).
        """
        maildir = self.makeMaildir()
        clock = task.Clock()
        index = MaildirIndex(maildir, reactor, clock, interval=30)
        self.addCleanup(index.stop)
        await index.start()
        read: list[str] = []
        original = index._read

        def counting(paths: Sequence[str]) -> Any:
            read.extend(paths)
            return original(paths)

        index._read = counting  # type: ignore[method-assign]
        writers: list[threading.Thread] = []
        addAll = index._writer.addAll

        def recording(*args: Any) -> Any:
            writers.append(threading.current_thread())
            return addAll(*args)

        index._writer.addAll = recording  # type: ignore[method-assign,assignment]
        path = os.path.join(maildir, "new", "1.M1P1Q1.sink")
        with open(path, "wb") as f:
            f.write(b"Subject: stored\n\njust now\n")
        stored = index.messageStored(path)
        await index.rescan()
        clock.advance(indexModule.COALESCE)
        await stored
        self.assertEqual(read, ["new/1.M1P1Q1.sink"])
        self.assertEqual([r["subject"] for r in index.page().rows], ["stored"])
        self.assertEqual(len(writers), 1)
        self.assertIsNot(writers[0], threading.main_thread())

    async def test_storedAfterStopLeftToTheNextStart(self) -> None:
        """
        Messages the sink stores while the inbox stops (SIGTERM's grace) are
        left for the next start to index: the hooks fire, nothing stays
        scheduled.
        """
        maildir = self.makeMaildir()
        clock = task.Clock()
        index = MaildirIndex(maildir, reactor, clock, interval=30)
        await index.start()
        await index.stop()
        for i in range(2):
            stored = index.messageStored(os.path.join(maildir, "new", f"{i}.M1P1Q1.x"))
            clock.advance(indexModule.COALESCE)
            await stored
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_bigMaildirLookedAtLessOften(self) -> None:
        """
        While deliveries keep changing new/, the timer's looks at the whole
        Maildir take at most RESCAN_SHARE of the reactor's time: a look that
        took 0.2 s is not repeated at the next tick, but a few later.
        """
        maildir = self.makeMaildir()
        clock = task.Clock()
        index = MaildirIndex(maildir, reactor, clock, interval=2)
        self.addCleanup(index.stop)
        looks: list[float] = []
        original = index._listing

        def slow() -> dict[str, str]:
            looks.append(clock.seconds())
            time.sleep(0.2)
            return original()

        index._listing = slow  # type: ignore[method-assign]
        await index.start()
        for second in range(2, 12, 2):
            with open(os.path.join(maildir, "new", f"{second}.M1P1Q1.x"), "wb") as f:
                f.write(b"Subject: x\n\nx\n")
            clock.advance(2)
            while index._scanning is not None:
                await task.deferLater(reactor, 0.01, lambda: None)
        # 0.2 s at 5%: 4 s between looks at least, so not at 2, 6, 10.
        self.assertEqual(looks[0], 0)
        self.assertTrue(
            all(b - a >= 4 for a, b in zip(looks, looks[1:], strict=False)), looks
        )
        self.assertGreaterEqual(len(looks), 3)


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
