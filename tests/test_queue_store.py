"""The queue on disk: durable writes in the right order, the lock, the envelope file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from smtptut.queue import store
from smtptut.queue.store import Entry, Queue, QueueError, RecipientState


def _fdPath(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.path = os.path.abspath(self.mktemp())
        self.queue = Queue(self.path, self.clock)

    def record(self) -> list[tuple[str, str]]:
        """
        Record every fsync and rename, in order, with the paths they touch.
        """
        calls: list[tuple[str, str]] = []
        fsync: Callable[[int], None] = os.fsync
        rename: Callable[[Any, Any], None] = os.rename

        def recordFsync(fd: int) -> None:
            calls.append(("fsync", os.path.relpath(_fdPath(fd), self.path)))
            fsync(fd)

        def recordRename(a: str, b: str) -> None:
            calls.append(
                (
                    "rename",
                    f"{os.path.relpath(a, self.path)} {os.path.relpath(b, self.path)}",
                )
            )
            rename(a, b)

        self.patch(os, "fsync", recordFsync)
        self.patch(os, "rename", recordRename)
        return calls

    def test_enqueueIsDurable(self) -> None:
        """
        Every file of the entry is fsync'd, then its directory, before it is
        renamed into entries/ in one step, and entries/ is fsync'd before
        enqueue returns: a crash at any point leaves the whole entry or none.
        """
        calls = self.record()
        entry = self.queue.enqueue(
            "me@sender.test",
            ["a@example.test", "b@example.test"],
            [b"Subj", b"ect: x\r\n\r\nhi\r\n"],
        )
        i = entry.id
        self.assertEqual(
            calls,
            [
                ("fsync", f"tmp/{i}/message.eml"),
                ("fsync", f"tmp/{i}/envelope.json"),
                ("fsync", f"tmp/{i}/lock"),
                ("fsync", f"tmp/{i}"),
                ("rename", f"tmp/{i} entries/{i}"),
                ("fsync", "entries"),
                ("fsync", "tmp"),
            ],
        )
        with open(os.path.join(self.path, "entries", i, "message.eml"), "rb") as f:
            self.assertEqual(f.read(), b"Subject: x\r\n\r\nhi\r\n")
        with open(os.path.join(self.path, "entries", i, "envelope.json")) as f:
            data = json.load(f)
        self.assertEqual(data["sender"], "me@sender.test")
        self.assertEqual(
            [(r["address"], r["state"], r["attempts"]) for r in data["recipients"]],
            [("a@example.test", "pending", 0), ("b@example.test", "pending", 0)],
        )
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), [])

    def test_saveIsDurable(self) -> None:
        """
        A state update is a new file, fsync'd, renamed over the old one, and
        the directory fsync'd: the old state or the new, whole.
        """
        entry = self.queue.enqueue("", ["a@example.test"], [b"x\r\n"])
        lock = self.queue.lock(entry.id)
        assert lock is not None
        calls = self.record()
        [a] = entry.recipients
        lock.save(entry.updated([replace(a, state=RecipientState.DELIVERED)]))
        i = entry.id
        self.assertEqual(
            calls,
            [
                ("fsync", f"entries/{i}/envelope.json.new"),
                ("rename", f"entries/{i}/envelope.json.new entries/{i}/envelope.json"),
                ("fsync", f"entries/{i}"),
            ],
        )
        lock.release()
        loaded = self.queue.load(i)
        assert loaded is not None
        self.assertEqual(loaded.recipients[0].state, RecipientState.DELIVERED)

    def test_failedEnqueueLeavesNothing(self) -> None:
        def broken() -> Any:
            yield b"Subject: x\r\n"
            raise OSError(28, "No space left on device")

        self.assertRaises(OSError, self.queue.enqueue, "", ["a@example.test"], broken())
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), [])

    def test_lockIsExclusive(self) -> None:
        """
        One holder at a time, even in one process (flock locks belong to the
        open file); released, it can be taken again; a removed entry cannot.
        """
        entry = self.queue.enqueue("", ["a@example.test"], [b"x\r\n"])
        first = self.queue.lock(entry.id)
        assert first is not None
        self.assertIsNone(self.queue.lock(entry.id))
        first.release()
        second = self.queue.lock(entry.id)
        assert second is not None
        second.remove()
        self.assertIsNone(self.queue.lock(entry.id))
        self.assertEqual(self.queue.ids(), [])
        self.assertIsNone(self.queue.lock("../../etc"))

    def test_roundTrip(self) -> None:
        entry = self.queue.enqueue("me@sender.test", ["a@example.test"], [b"x\r\n"])
        [a] = entry.recipients
        changed = replace(
            entry.updated(
                [replace(a, attempts=3, lastReply="4.7.1 later", lastCode=451)]
            ),
            notices=1,
        )
        self.assertEqual(Entry.fromJSON(changed.toJSON()), changed)
        self.assertEqual(entry.due(self.clock.seconds()), [a])
        self.assertEqual(entry.due(self.clock.seconds() - 1), [])

    def test_damagedEnvelope(self) -> None:
        """
        An envelope file smtptut did not write is one line naming the entry.
        """
        entry = self.queue.enqueue("", ["a@example.test"], [b"x\r\n"])
        with open(
            os.path.join(self.path, "entries", entry.id, "envelope.json"), "w"
        ) as f:
            f.write("{")
        e = self.assertRaises(QueueError, self.queue.load, entry.id)
        self.assertTrue(
            str(e).startswith(f"queue entry {entry.id}: damaged envelope file ("),
            str(e),
        )

    def test_staleTmpCleaned(self) -> None:
        """
        What a crash left in tmp/ goes once it is older than 36 hours.
        """
        stale = os.path.join(self.path, "tmp", "1.dead")
        fresh = os.path.join(self.path, "tmp", "2.busy")
        os.mkdir(stale)
        os.mkdir(fresh)
        now = os.stat(fresh).st_mtime
        os.utime(stale, (now - store.STALE_TMP - 1, now - store.STALE_TMP - 1))
        self.queue.cleanTmp(now)
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), ["2.busy"])
