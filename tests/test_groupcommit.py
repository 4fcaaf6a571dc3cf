"""Group commit for the Maildir: messages finishing together share their fsyncs."""

from __future__ import annotations

import errno
import os
import signal
import smtplib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from twisted.internet import defer, task, threads
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.server.maildir import GroupCommitter, Maildir, MaildirMessage

from .helpers import reactor, smtpReplies, startSink, startTwistdServer

_T = TypeVar("_T")


def _fdPath(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


class HeldThreads:
    """
    A L{ThreadRunner} that runs each call only when the test says so (in
    the test's thread), so that a test decides what happens while a batch
    is "in its thread".
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, f: Callable[[], _T]) -> defer.Deferred[_T]:
        d: defer.Deferred[_T] = defer.Deferred()
        self.calls.append((f, d))
        return d

    def runNext(self) -> None:
        f, d = self.calls.pop(0)
        try:
            result = f()
        except BaseException as e:
            d.errback(e)
        else:
            d.callback(result)


class FsyncLog:
    """
    Every fsync, as the path it synced relative to the Maildir (C{new} for
    the directory, C{tmp/NAME} for a message); C{fail} maps a message's
    subject to the error its file's fsync raises.
    """

    def __init__(self, testCase: SynchronousTestCase, box: str) -> None:
        self.box = box
        self.calls: list[str] = []
        self.fail: dict[bytes, OSError] = {}
        self.failNew: OSError | None = None
        fsync = os.fsync

        def recordFsync(fd: int) -> None:
            path = os.path.relpath(_fdPath(fd), box)
            self.calls.append(path)
            if path == "new" and self.failNew is not None:
                raise self.failNew
            if path.startswith("tmp/"):
                with open(os.path.join(box, path), "rb") as f:
                    text = f.read()
                for subject, e in self.fail.items():
                    if b"Subject: " + subject + b"\n" in text:
                        raise e
            fsync(fd)

        testCase.patch(os, "fsync", recordFsync)

    def newSyncs(self) -> int:
        return self.calls.count("new")


class GroupCommitterTests(SynchronousTestCase):
    """
    The batching, on a real Maildir, with the worker thread held by the test.
    """

    def setUp(self) -> None:
        self.box = Maildir(self.mktemp())
        self.threads = HeldThreads()
        self.box.committer = GroupCommitter(self.box, self.threads)
        self.fsyncs = FsyncLog(self, self.box.path)
        # What each message's Deferred fired with, and how many fsyncs of
        # new/ had been done by then.
        self.results: dict[bytes, tuple[object, int]] = {}

    def message(self, subject: bytes) -> MaildirMessage:
        message = self.box.newMessage(reactor, time.time())
        message.write(b"Subject: " + subject + b"\n\nbody of " + subject + b"\n")
        return message

    def commit(self, subject: bytes) -> MaildirMessage:
        message = self.message(subject)
        d = message.commit()

        def done(result: object) -> None:
            if not isinstance(result, str):
                result = result.value  # type: ignore[attr-defined]
            self.results[subject] = (result, self.fsyncs.newSyncs())

        d.addBoth(done)
        return message

    def new(self) -> list[bytes]:
        new = os.path.join(self.box.path, "new")
        texts = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                texts.append(f.read())
        return sorted(texts)

    def test_loneMessageStartsAtOnce(self) -> None:
        """
        A message alone waits for nothing: its batch is in its thread at
        once, and done when that has synced its file and new/.
        """
        message = self.commit(b"alone")
        self.assertEqual(len(self.threads.calls), 1)
        self.assertEqual(self.results, {})
        self.threads.runNext()
        self.assertEqual(self.results, {b"alone": (message.newPath, 1)})
        self.assertEqual(self.fsyncs.calls, ["tmp/" + message.name, "new"])
        self.assertEqual(self.new(), [b"Subject: alone\n\nbody of alone\n"])
        self.assertEqual(os.listdir(os.path.join(self.box.path, "tmp")), [])

    def test_messagesDuringABatchGoInTheNext(self) -> None:
        """
        Messages finishing while a batch is in its thread wait, and then go
        together: their files each fsync'd, renamed, then one fsync of new/
        for them all; none is acknowledged before its batch is durable.
        """
        first = self.commit(b"first")
        others = [self.commit(b"m%d" % i) for i in range(5)]
        self.assertEqual(len(self.threads.calls), 1, "one batch at a time")
        self.threads.runNext()
        self.assertEqual(self.results, {b"first": (first.newPath, 1)})
        # The next batch started by itself, and is in its thread.
        self.assertEqual(len(self.threads.calls), 1)
        self.threads.runNext()
        self.assertEqual(self.threads.calls, [])
        self.assertEqual(
            self.results,
            {b"first": (first.newPath, 1)}
            | {b"m%d" % i: (m.newPath, 2) for i, m in enumerate(others)},
        )
        self.assertEqual(
            self.fsyncs.calls,
            ["tmp/" + first.name, "new"] + ["tmp/" + m.name for m in others] + ["new"],
        )
        self.assertEqual(len(self.new()), 6)

    def test_renameAfterDataIsDurable(self) -> None:
        """
        No file is in new/ before its data is fsync'd: a crash between the
        two would otherwise leave an empty message in new/.
        """
        seen: list[tuple[str, list[str]]] = []
        rename = os.rename

        def recordRename(a: str, b: str) -> None:
            seen.append((os.path.basename(a), list(self.fsyncs.calls)))
            rename(a, b)

        self.patch(os, "rename", recordRename)
        self.commit(b"first")
        messages = [self.commit(b"m%d" % i) for i in range(3)]
        self.threads.runNext()
        self.threads.runNext()
        for message in messages:
            [fsyncsBefore] = [c for name, c in seen if name == message.name]
            self.assertIn("tmp/" + message.name, fsyncsBefore)

    def test_oneFileFailsAlone(self) -> None:
        """
        A message whose file cannot be synced (EIO, a full disk) fails, and
        leaves nothing behind; the others of its batch are stored.
        """
        self.commit(b"first")
        eio = OSError(errno.EIO, os.strerror(errno.EIO))
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.fsyncs.fail = {b"bad": eio, b"full": full}
        good1 = self.commit(b"good1")
        bad = self.commit(b"bad")
        fullMessage = self.commit(b"full")
        good2 = self.commit(b"good2")
        self.threads.runNext()
        self.threads.runNext()
        self.assertIs(self.results[b"bad"][0], eio)
        self.assertIs(self.results[b"full"][0], full)
        self.assertEqual(self.results[b"good1"], (good1.newPath, 2))
        self.assertEqual(self.results[b"good2"], (good2.newPath, 2))
        self.assertEqual(
            self.new(),
            sorted(
                b"Subject: %s\n\nbody of %s\n" % (s, s)
                for s in (b"first", b"good1", b"good2")
            ),
        )
        self.assertFalse(os.path.exists(bad.tmpPath))
        self.assertFalse(os.path.exists(fullMessage.tmpPath))
        self.assertEqual(os.listdir(os.path.join(self.box.path, "tmp")), [])
        self.assertEqual(self.fsyncs.newSyncs(), 2)

    def test_newSyncFailureFailsTheWholeBatch(self) -> None:
        """
        When new/ cannot be synced, no message of the batch is acknowledged
        and none is left in new/ (a retry makes no duplicate); the next
        batch is stored again.
        """
        self.commit(b"first")
        messages = [self.commit(b"m%d" % i) for i in range(3)]
        self.threads.runNext()
        eio = OSError(errno.EIO, os.strerror(errno.EIO))
        self.fsyncs.failNew = eio
        self.threads.runNext()
        for i in range(3):
            self.assertIs(self.results[b"m%d" % i][0], eio)
        self.assertEqual(self.new(), [b"Subject: first\n\nbody of first\n"])
        for message in messages:
            self.assertFalse(os.path.exists(message.tmpPath))
        self.fsyncs.failNew = None
        after = self.commit(b"after")
        self.threads.runNext()
        self.assertEqual(self.results[b"after"][0], after.newPath)
        self.assertEqual(len(self.new()), 2)

    def test_observersAfterDurability(self) -> None:
        """
        The Maildir's observers hear of each message once its batch is
        durable, as its client does.
        """
        told: list[tuple[str, int]] = []
        self.box.observers.append(lambda p: told.append((p, self.fsyncs.newSyncs())))
        first = self.commit(b"first")
        second = self.commit(b"second")
        self.threads.runNext()
        self.assertEqual(told, [(first.newPath, 1)])
        self.threads.runNext()
        self.assertEqual(told, [(first.newPath, 1), (second.newPath, 2)])


ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"


class GroupCommitServerTests(TestCase):
    """
    The sink over real sockets: what each client of a batch is told.
    """

    timeout = 60

    def setUp(self) -> None:
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.events = events

    async def test_eachClientOfABatchGetsItsReply(self) -> None:
        """
        Four clients whose messages are in one batch: the ones whose file
        fails get the 4xx they would alone (452 for a full disk, 451 for
        EIO), the others their 250, and each only once the batch is done.
        """
        sink = startSink(reactor, maildir=self.mktemp(), printMessages=False)
        self.addCleanup(sink.stop)
        box = sink.factory.delivery.maildir
        held = HeldThreads()
        box.committer = GroupCommitter(box, held)
        fsyncs = FsyncLog(self, box.path)
        fsyncs.fail = {
            b"eio": OSError(errno.EIO, os.strerror(errno.EIO)),
            b"full": OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        }

        def send(subject: bytes) -> defer.Deferred[list[bytes]]:
            script = ENVELOPE + b"Subject: " + subject + b"\r\n\r\nx\r\n.\r\nQUIT\r\n"
            return threads.deferToThread(smtpReplies, sink.port, script, 6)

        first = send(b"first")
        for _ in range(1000):
            if held.calls:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        # While the first is in its thread, the others finish DATA.
        others = {s: send(s) for s in (b"ok1", b"eio", b"full", b"ok2")}
        committer = box.committer
        for _ in range(1000):
            if len(committer._waiting) == 4:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(committer._waiting), 4)
        self.assertFalse(any(d.called for d in others.values()))
        held.runNext()
        self.assertEqual((await first)[5][:3], b"250")
        self.assertFalse(any(d.called for d in others.values()))
        held.runNext()
        replies = {s: (await d)[5] for s, d in others.items()}
        self.assertEqual(
            replies,
            {
                b"ok1": b"250 2.0.0 Delivery in progress",
                b"ok2": b"250 2.0.0 Delivery in progress",
                b"eio": b"451 4.3.0 Could not store the message, try again later",
                b"full": b"452 4.3.1 Insufficient system storage",
            },
        )
        self.assertEqual(fsyncs.newSyncs(), 2)
        self.assertEqual(len(sink.stored()), 3)
        self.assertEqual(sink.tmpFiles(), [])
        lines = [formatEvent(e) for e in self.events]
        stored = [x for x in lines if x.startswith("cannot store a message")]
        self.assertEqual(len(stored), 2, stored)

    async def test_concurrentClientsShareFsyncs(self) -> None:
        """
        Twenty clients at once over the reactor's real thread pool: every
        one is stored, with fewer fsyncs of new/ than messages (a slow disk,
        here the first fsync held 0.3 s, lets the others gather).
        """
        sink = startSink(reactor, maildir=self.mktemp(), printMessages=False)
        self.addCleanup(sink.stop)
        box = sink.factory.delivery.maildir
        newSyncs: list[float] = []
        fsync = os.fsync
        lock = threading.Lock()

        def slowFsync(fd: int) -> None:
            if os.path.basename(_fdPath(fd)) == "new":
                with lock:
                    newSyncs.append(time.monotonic())
                    if len(newSyncs) == 1:
                        time.sleep(0.3)
            fsync(fd)

        self.patch(os, "fsync", slowFsync)

        def send(i: int) -> list[bytes]:
            script = ENVELOPE + b"Subject: %d\r\n\r\nx\r\n.\r\nQUIT\r\n" % i
            return smtpReplies(sink.port, script, 6, timeout=30)

        # The clients' threads are their own: in the reactor's pool they
        # would take the threads the Maildir's commits need.
        pool = ThreadPool(minthreads=0, maxthreads=20, name="clients")
        pool.start()
        self.addCleanup(pool.stop)
        results = await defer.gatherResults(
            [threads.deferToThreadPool(reactor, pool, send, i) for i in range(20)]
        )
        self.assertEqual([r[5][:3] for r in results], [b"250"] * 20)
        self.assertEqual(len(sink.stored()), 20)
        self.assertLess(len(newSyncs), 20)
        self.assertEqual(sink.tmpFiles(), [])
        self.assertIsInstance(box.committer, GroupCommitter)


class GroupCommitCrashTests(TestCase):
    """
    The server killed (SIGKILL) while twenty clients send: every 250 a
    client saw is a whole file in new/.
    """

    timeout = 180

    async def test_sigkillDuringBatches(self) -> None:
        box = os.path.abspath(self.mktemp())
        process, port = await startTwistdServer(
            reactor,
            {
                "SMTPTUT_MAILDIR": box,
                "SMTPTUT_PRINT": "0",
                "SMTPTUT_ACCEPT": "*",
            },
        )
        self.addCleanup(process.stop)
        acknowledged: list[str] = []
        interrupted: list[str] = []
        stop = threading.Event()
        deadline = time.monotonic() + 60

        def body(mid: str, n: int) -> str:
            # Sizes from a few hundred octets to about 40 KiB, so that some
            # files are still being written when the kill comes.
            filler = "".join(f"{mid} line {k:05d} {'x' * 60}\n" for k in range(n))
            return (
                f"Message-ID: <{mid}@crash.test>\nSubject: {mid}\n\n{filler}END {mid}\n"
            )

        def client(c: int) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
                    for i in range(500):
                        if stop.is_set() or time.monotonic() > deadline:
                            return
                        mid = f"c{c:02d}.m{i:03d}"
                        text = body(mid, (c * 7 + i * 13) % 500)
                        try:
                            smtp.sendmail("a@c.test", ["b@s.test"], text)
                        except (smtplib.SMTPException, OSError):
                            interrupted.append(mid)
                            return
                        acknowledged.append(mid)
            except (smtplib.SMTPException, OSError):
                return

        clients = [threading.Thread(target=client, args=(c,)) for c in range(20)]
        for t in clients:
            t.start()

        def joinAll() -> None:
            stop.set()
            for t in clients:
                t.join(max(0.1, deadline + 30 - time.monotonic()))

        try:
            for _ in range(3000):
                if len(acknowledged) >= 150 or time.monotonic() > deadline:
                    break
                await task.deferLater(reactor, 0.01, lambda: None)
            self.assertGreaterEqual(len(acknowledged), 150, process.output()[-2000:])
            process.kill(signal.SIGKILL)
            ended = await process.ended
        finally:
            await threads.deferToThread(joinAll)
        self.assertEqual(ended.signal, signal.SIGKILL)
        self.assertFalse([t for t in clients if t.is_alive()])
        # Some transactions were open when the server died.
        self.assertTrue(interrupted)

        new = os.path.join(box, "new")
        stored: dict[str, str] = {}
        for name in os.listdir(new):
            with open(os.path.join(new, name), encoding="ascii") as f:
                text = f.read()
            mid = text.split("Message-ID: <", 1)[1].split("@", 1)[0]
            c, i = int(mid[1:3]), int(mid[5:8])
            # Whole: the message exactly as sent, after the trace fields.
            self.assertTrue(
                text.endswith(body(mid, (c * 7 + i * 13) % 500)), (name, text[-200:])
            )
            stored[mid] = name
        missing = sorted(set(acknowledged) - set(stored))
        self.assertEqual(missing, [], "acknowledged but not in new/")
        # Each message is there once, and nothing that was not sent is.
        self.assertEqual(len(stored), len(os.listdir(new)))
        self.assertLessEqual(set(stored), set(acknowledged) | set(interrupted))
