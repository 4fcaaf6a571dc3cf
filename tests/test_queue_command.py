"""``smtptut send --queue``, ``smtptut queue`` and ``twistd smtptut-queue`` as a user runs them."""

from __future__ import annotations

import json
import os
import random
import re
import signal
from collections.abc import Mapping
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import TestCase

from smtptut.client.dkimkeys import KeyType, generateKey, txtRecord, writePrivateKey
from smtptut.queue.store import Queue

from .helpers import (
    SMTPTUT,
    TWISTD,
    Process,
    ProcessResult,
    RecordingFactory,
    childEnvironment,
    reactor,
    runProcess,
    txt,
)
from .queuefixtures import (
    RECIPIENT_MX,
    GreylistingFactory,
    SlowFactory,
    listenAll,
    message,
    messageIds,
    queueFiles,
    startQueueDNS,
)
from .test_dkim import VERIFIER  # Perl's Mail::DKIM: not dkimpy


class QueueCommandTestsMixin:
    def setUpCommands(
        self: Any,
        factory: RecordingFactory,
        zone: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self.dns = startQueueDNS(zone)
        self.addCleanup(self.dns.stop)
        self.factory = factory
        servers = listenAll({RECIPIENT_MX: factory})
        self.addCleanup(servers.stop)
        self.queueDir = os.path.abspath(self.mktemp())
        # Every run resolves with the test's loopback nameserver only.
        self.env = {
            "SMTPTUT_NAMESERVER": self.dns.nameserver,
            "SMTPTUT_PORT": str(servers.port),
            "SMTPTUT_HELO": "client.test",
            "SMTPTUT_TIMEOUT": "10",
        }
        self.data = os.path.abspath(self.mktemp())
        with open(self.data, "wb") as f:
            f.write(b"From: me@sender.test\nSubject: queued\n\nHello.\n")

    def smtptut(self: Any, *args: str, **env: str) -> Any:
        return runProcess(reactor, [SMTPTUT, *args], {**self.env, **env})

    def send(self: Any, *args: str, **env: str) -> Any:
        return self.smtptut(
            "send", "--from", "me@sender.test", "--data", self.data, *args, **env
        )

    def assertClean(self: Any, result: ProcessResult, code: int = 0) -> None:
        self.assertEqual(result.code, code, result.out + result.err)
        self.assertNotIn("Traceback", result.out + result.err)


class SendQueueTests(QueueCommandTestsMixin, TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.setUpCommands(RecordingFactory())

    async def test_queueOnly(self) -> None:
        """
        C{send --queue DIR --queue-only} exits 0 once the message and a
        complete envelope file are in the queue, and connects to nothing.
        """
        result = await self.send(
            "--queue",
            self.queueDir,
            "--queue-only",
            "--to",
            "you@example.test,b@example.test",
        )
        self.assertClean(result)
        [entryId] = queueFiles(self.queueDir)
        self.assertEqual(result.out, f"queued as {entryId}\n")
        entry = os.path.join(self.queueDir, "entries", entryId)
        self.assertEqual(
            sorted(os.listdir(entry)), ["envelope.json", "lock", "message.eml"]
        )
        with open(os.path.join(entry, "envelope.json")) as f:
            envelope = json.load(f)
        self.assertEqual(envelope["sender"], "me@sender.test")
        self.assertEqual(
            [(r["address"], r["state"], r["attempts"]) for r in envelope["recipients"]],
            [("you@example.test", "pending", 0), ("b@example.test", "pending", 0)],
        )
        with open(os.path.join(entry, "message.eml"), "rb") as f:
            stored = f.read()
        # Stored as it is sent: with the Date: and Message-ID: it lacked.
        self.assertIn(b"Subject: queued\n", stored)
        self.assertIn(b"Message-ID: <", stored)
        self.assertEqual(envelope["size"], len(stored))
        self.assertEqual(self.factory.connections, 0)

    async def test_queueThenDeliver(self) -> None:
        """
        With C{SMTPTUT_QUEUE} and no C{--queue-only}, the message is queued,
        then delivered at once by the queue runner, and leaves the queue.
        """
        result = await self.send(
            "--to", "you@example.test", SMTPTUT_QUEUE=self.queueDir
        )
        self.assertClean(result)
        queued, delivered = result.out.splitlines()
        entryId = queued.removeprefix("queued as ")
        self.assertEqual(
            delivered,
            "you@example.test: delivered via mx.example.test [127.0.0.2]:"
            f" 250 2.0.0 queued [queue {entryId}]",
        )
        self.assertEqual(queueFiles(self.queueDir), [])
        [received] = self.factory.messages
        self.assertIn(b"Subject: queued", received.data)

    async def test_queueOnlyNeedsAQueue(self) -> None:
        result = await self.send("--to", "you@example.test", "--queue-only")
        self.assertClean(result, 64)
        self.assertEqual(
            result.err,
            "smtptut send: --queue-only: needs --queue DIR (or SMTPTUT_QUEUE)\n",
        )

    async def test_queueUnwritable(self) -> None:
        """
        A queue that cannot be written is one line and exit 73, nothing sent.
        """
        with open(self.queueDir, "w"):
            pass
        result = await self.send("--to", "you@example.test", "--queue", self.queueDir)
        self.assertClean(result, 64)
        self.assertEqual(
            result.err, f"smtptut send: --queue: {self.queueDir}: not a directory\n"
        )
        os.unlink(self.queueDir)
        os.makedirs(os.path.join(self.queueDir, "entries"))
        os.chmod(self.queueDir, 0o500)
        self.addCleanup(os.chmod, self.queueDir, 0o700)
        if os.getuid() == 0:
            # Root writes anyway: a file where tmp/ belongs stops it all the same.
            os.chmod(self.queueDir, 0o700)
            with open(os.path.join(self.queueDir, "tmp"), "w"):
                pass
        result = await self.send("--to", "you@example.test", "--queue", self.queueDir)
        self.assertClean(result, 73)
        self.assertTrue(
            result.err.startswith("smtptut send: cannot queue the message: "),
            result.err,
        )
        self.assertEqual(len(result.err.splitlines()), 1, result.err)
        self.assertEqual(self.factory.connections, 0)


class SignedQueueTests(QueueCommandTestsMixin, TestCase):
    """
    A queued message is DKIM-signed once, when it is queued.
    """

    timeout = 240

    def setUp(self) -> None:
        key = generateKey(KeyType.RSA)
        self.keyFile = os.path.abspath(self.mktemp())
        writePrivateKey(self.keyFile, key)
        # The record as "smtptut dkim keygen" prints it, served on loopback.
        record = txtRecord("q2026", "sender.test", key)
        name = record.split()[0].rstrip(".")
        zone = {name: [txt(*re.findall(r'"([^"]*)"', record))]}
        self.setUpCommands(RecordingFactory(), zone)

    async def test_signedOnceWhenQueued(self) -> None:
        """
        With a DKIM key, C{send --queue} stores the signed message; the
        runner (C{queue run}, its environment holding the key as well) sends
        it as stored, with one C{DKIM-Signature} that Perl's Mail::DKIM
        verifies against the TXT record of the test's loopback DNS.
        """
        dkim = {"SMTPTUT_DKIM_KEY": self.keyFile, "SMTPTUT_DKIM_SELECTOR": "q2026"}
        result = await self.send(
            "--queue", self.queueDir, "--queue-only", "--to", "you@example.test", **dkim
        )
        self.assertClean(result)
        [entryId] = queueFiles(self.queueDir)
        with open(
            os.path.join(self.queueDir, "entries", entryId, "message.eml"), "rb"
        ) as f:
            stored = f.read()
        self.assertTrue(
            stored.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"), stored
        )
        self.assertIn(b" d=sender.test;", stored)
        self.assertEqual(self.factory.connections, 0)

        result = await self.smtptut(
            "queue", "run", "--once", "--queue", self.queueDir, **dkim
        )
        self.assertClean(result)
        self.assertEqual(queueFiles(self.queueDir), [])
        [received] = self.factory.messages
        self.assertEqual(received.data.count(b"DKIM-Signature:"), 1)
        verdict = await runProcess(
            reactor,
            ["perl", VERIFIER, str(self.dns.port)],
            stdin=received.data,
            timeout=120,
        )
        self.assertEqual(verdict.code, 0, verdict.err)
        self.assertEqual(
            verdict.out.splitlines(),
            ["SIGNATURE rsa-sha256 q2026 sender.test pass", "RESULT pass"],
        )


class QueueCommandTests(QueueCommandTestsMixin, TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.setUpCommands(GreylistingFactory())

    async def test_listFlushDelete(self) -> None:
        """
        A greylisted message stays queued: C{queue list} shows its
        recipient, attempts, next try and last reply; C{queue flush} tries
        it at once (and it goes); C{queue delete ID} takes one out unsent.
        """
        result = await self.send("--to", "you@example.test", "--queue", self.queueDir)
        self.assertClean(result)
        queued, deferred = result.out.splitlines()
        entryId = queued.removeprefix("queued as ")
        self.assertIn("you@example.test: deferred via mx.example.test", deferred)
        self.assertIn(f"[queue {entryId}, next try ", deferred)

        listed = await self.smtptut("queue", "list", "--queue", self.queueDir)
        self.assertClean(listed)
        head, line, count = listed.out.splitlines()
        self.assertTrue(head.startswith(f"{entryId}  "), head)
        self.assertTrue(head.endswith("  from me@sender.test"), head)
        self.assertRegex(
            line,
            r"^  you@example\.test: pending, 1 attempts, next try"
            r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, last reply from mx\.example\.test:"
            r" 451 4\.7\.1 Recipient address rejected: Greylisted$",
        )
        self.assertEqual(count, "1 messages, 1 recipients pending")

        flushed = await self.smtptut("queue", "flush", SMTPTUT_QUEUE=self.queueDir)
        self.assertClean(flushed)
        self.assertIn("you@example.test: delivered", flushed.out)
        self.assertEqual(len(self.factory.messages), 1)
        listed = await self.smtptut("queue", "list", "--queue", self.queueDir)
        self.assertEqual(listed.out, "The queue is empty.\n")

        queue = Queue(self.queueDir, reactor)
        entry = queue.enqueue("me@sender.test", ["x@example.test"], [message(1)])
        deleted = await self.smtptut(
            "queue", "delete", entry.id, "--queue", self.queueDir
        )
        self.assertClean(deleted)
        self.assertEqual(deleted.out, f"deleted {entry.id}\n")
        self.assertEqual(queueFiles(self.queueDir), [])
        again = await self.smtptut(
            "queue", "delete", entry.id, "--queue", self.queueDir
        )
        self.assertClean(again, 66)
        self.assertEqual(again.err, f"smtptut queue: no queued message {entry.id!r}\n")

    async def test_noQueueGiven(self) -> None:
        result = await self.smtptut("queue", "list")
        self.assertClean(result, 64)
        self.assertEqual(
            result.err, "smtptut queue: SMTPTUT_QUEUE: no queue directory given\n"
        )


def _enqueue(path: str, count: int) -> list[str]:
    """
    Queue C{count} messages, each with a Message-ID of its own.
    """
    queue = Queue(path, task.Clock())
    for n in range(count):
        queue.enqueue("me@sender.test", [f"r{n}@example.test"], [message(n)])
    return [f"<queued-{n}@sender.test>" for n in range(count)]


class CrashTests(QueueCommandTestsMixin, TestCase):
    timeout = 300

    factory: SlowFactory

    def setUp(self) -> None:
        self.setUpCommands(SlowFactory())

    def runner(self, **env: str) -> Process:
        return Process(
            reactor,
            [SMTPTUT, "queue", "run", "--once", "--queue", self.queueDir],
            childEnvironment({**self.env, **env}),
            timeout=60,
        )

    async def test_sigkillLosesNothing(self) -> None:
        """
        A runner killed with SIGKILL at random points, ten times over, loses
        no message: a last run delivers what is left, every message arrives
        at least once, and at most one more copy than kills (one transaction
        is in flight at a time here).
        """
        wanted = _enqueue(self.queueDir, 12)
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        kills = 0
        for _ in range(10):
            process = self.runner(SMTPTUT_QUEUE_CONCURRENCY="1")
            # Killed after a random number of deliveries (none: while it
            # starts), a random few milliseconds later: often mid-transaction.
            lines = rng.randrange(4)
            try:
                if lines:
                    await process.waitFor(r"(?s)" + r"delivered.*" * lines, timeout=30)
                await task.deferLater(reactor, rng.uniform(0, 0.08), lambda: None)
            except Exception:
                pass  # it ended first: nothing was left to deliver
            if not process.ended.called:
                kills += 1
                process.kill(signal.SIGKILL)
            ended = await process.ended
            self.assertNotIn("Traceback", process.output())
            self.assertIn(ended.signal, (None, signal.SIGKILL), process.output())
        final = await self.runner().ended
        self.assertEqual(final.code, 0, final.out + final.err)
        received = messageIds(self.factory)
        self.assertEqual(sorted(set(received)), sorted(wanted), f"seed {seed}")
        self.assertLessEqual(len(received) - len(wanted), kills, f"seed {seed}")
        self.assertEqual(queueFiles(self.queueDir), [])

    async def test_twoRunnersNeverDuplicate(self) -> None:
        """
        Two runners on one queue at once deliver each message exactly once
        (each message is locked by the runner that delivers it).
        """
        # 100 ms a message: the first runner is far from done when the
        # second one starts.
        self.factory.delay = 0.1
        wanted = _enqueue(self.queueDir, 30)
        first, second = self.runner(), self.runner()
        for process in (first, second):
            ended = await process.ended
            self.assertEqual(ended.code, 0, process.output())
        received = messageIds(self.factory)
        self.assertEqual(sorted(received), sorted(wanted))
        self.assertEqual(queueFiles(self.queueDir), [])
        # Both took part, or the test proves nothing about two runners.
        self.assertIn("delivered", first.output())
        self.assertIn("delivered", second.output())


class ServiceTests(QueueCommandTestsMixin, TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.setUpCommands(RecordingFactory())

    async def test_runsAsAService(self) -> None:
        """
        C{twistd -n smtptut-queue --queue DIR} delivers what is queued and
        stops cleanly on SIGTERM.
        """
        [wanted] = _enqueue(self.queueDir, 1)
        process = Process(
            reactor,
            [TWISTD, "-n", "--pidfile=", "smtptut-queue", "--queue", self.queueDir],
            childEnvironment(self.env),
            timeout=60,
        )
        self.addCleanup(process.stop)
        await process.waitFor(r"r0@example\.test: delivered", timeout=30)
        self.assertEqual(messageIds(self.factory), [wanted])
        ended = await process.stop()
        self.assertEqual(ended.signal, signal.SIGTERM, process.output())
        self.assertEqual(queueFiles(self.queueDir), [])

    async def test_queueRunUntilStopped(self) -> None:
        """
        C{smtptut queue run} (without C{--once}) delivers, keeps running,
        and exits 0 on SIGTERM.
        """
        [wanted] = _enqueue(self.queueDir, 1)
        process = Process(
            reactor,
            [SMTPTUT, "queue", "run", "--queue", self.queueDir],
            childEnvironment(self.env),
            timeout=60,
        )
        self.addCleanup(process.stop)
        await process.waitFor(r"r0@example\.test: delivered", timeout=30)
        self.assertFalse(process.ended.called)
        ended = await process.stop()
        self.assertEqual(ended.code, 0, process.output())
        self.assertEqual(messageIds(self.factory), [wanted])

    async def test_badOption(self) -> None:
        result = await runProcess(
            reactor,
            [TWISTD, "-n", "--pidfile=", "smtptut-queue", "--queue-max-age", "soon"],
            self.env,
        )
        self.assertNotEqual(result.code, 0)
        self.assertIn(
            "--queue-max-age: 'soon' is not a duration", result.out + result.err
        )
        self.assertNotIn("Traceback", result.out + result.err)
