"""The queue runner on a fake clock, delivering over real loopback sockets with smtptut's client."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import TestCase

from smtptut.queue.outbound import (
    DEFERRED,
    DELIVERED,
    ClientSettings,
    Envelope,
    RecipientOutcome,
    clientDelivery,
)
from smtptut.queue.runner import QueueRunner, QueueService
from smtptut.queue.schedule import Schedule
from smtptut.queue.store import Entry, EntryLock, Queue, RecipientState

from .helpers import Behaviour, RecordingFactory, reactor
from .queuefixtures import (
    RECIPIENT_MX,
    SENDER_MX,
    GreylistingFactory,
    listenAll,
    message,
    parse,
    parts,
    startQueueDNS,
)

#: A day in the fake clock's seconds, well after the epoch.
START = 1_800_000_000.0


class RunnerTestsMixin:
    """
    A queue on a fake clock, and a runner that delivers with smtptut's
    client to the servers of L{startServers}, over loopback with the test's
    nameserver.
    """

    schedule = Schedule(retry=300, maxRetry=3600, maxAge=2 * 3600)

    def setUpQueue(self: Any) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.dns = startQueueDNS()
        self.addCleanup(self.dns.stop)
        self.queue = Queue(os.path.abspath(self.mktemp()), self.clock)
        self.lines: list[str] = []

    def startServers(self: Any, factories: dict[str, RecordingFactory]) -> None:
        servers = listenAll(factories)
        self.addCleanup(servers.stop)
        client = ClientSettings(
            port=servers.port,
            nameservers=(("127.0.0.1", self.dns.port),),
            helo="client.test",
            timeout=10.0,
        )
        self.runner = QueueRunner(
            self.queue,
            clientDelivery(reactor, client),
            self.clock,
            self.schedule,
            "client.test",
            write=self.lines.append,
        )

    def at(self: Any, when: float) -> None:
        self.clock.advance(START + when - self.clock.seconds())


class GreylistingTests(RunnerTestsMixin, TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.setUpQueue()
        self.greylist = GreylistingFactory()
        self.startServers({RECIPIENT_MX: self.greylist})

    async def test_retriedOnTheSchedule(self) -> None:
        """
        A greylisting receiver's 451 defers the recipient to the schedule's
        first retry, 300 s later; nothing is tried before then, and at that
        time the message goes.  A recipient the receiver took the first time
        is never sent again.
        """
        self.greylist.seen.add((b"me@sender.test", b"known@example.test"))
        entry = self.queue.enqueue(
            "me@sender.test", ["known@example.test", "new@example.test"], [message(1)]
        )
        service = QueueService(self.runner, self.clock, pollInterval=3600)
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(0)
        assert service.current is not None
        await service.current
        state = self.queue.load(entry.id)
        assert state is not None
        known, new = state.recipients
        self.assertEqual(known.state, RecipientState.DELIVERED)
        self.assertEqual((new.state, new.attempts), (RecipientState.PENDING, 1))
        self.assertEqual(new.nextTry, START + 300)
        self.assertEqual(new.lastCode, 451)
        self.assertIn("Greylisted", new.lastReply)
        # The service wakes when the recipient is due, not before.
        [wake] = self.clock.getDelayedCalls()
        self.assertEqual(wake.getTime(), START + 300)
        self.assertEqual(len(self.greylist.messages), 1)
        self.assertEqual(self.greylist.messages[0].recipients, [b"known@example.test"])

        connections = self.greylist.connections
        outcomes = await self.runner.runOnce()
        self.assertEqual((outcomes, self.greylist.connections), ([], connections))

        self.clock.advance(300)
        assert service.current is not None
        outcomes = await service.current
        self.assertEqual([o.status for o in outcomes], [DELIVERED])
        self.assertEqual(len(self.greylist.messages), 2)
        self.assertEqual(self.greylist.messages[1].recipients, [b"new@example.test"])
        self.assertEqual(self.queue.ids(), [])
        self.assertIn("new@example.test: deferred", self.lines[1])
        self.assertIn(
            f"[queue {entry.id}, next try 2027-01-15 08:05:00 UTC]", self.lines[1]
        )


class FailureNoticeTests(RunnerTestsMixin, TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.setUpQueue()
        self.senderMX = RecordingFactory(Behaviour(refuse=("bad", "gone")))

    async def test_mxDownPastTheMaximumAge(self) -> None:
        """
        With the recipient's only MX down, the recipient is tried on the
        schedule (0, 5, 15, 35 and 75 minutes, then at the maximum age of two
        hours), then given up: the sender gets exactly one DSN, from the null
        sender, an RFC 3464 report the stdlib's email package reads.
        """
        self.startServers({SENDER_MX: self.senderMX})
        entry = self.queue.enqueue("me@sender.test", ["you@example.test"], [message(1)])
        self.assertEqual(self.schedule.attemptTimes(0), [0, 300, 900, 2100, 4500, 7200])
        for when in self.schedule.attemptTimes(0):
            if when:
                self.at(when - 1)
                self.assertEqual(await self.runner.runOnce(), [])
            self.at(when)
            outcomes = await self.runner.runOnce()
            self.assertEqual([o.recipient for o in outcomes][:1], ["you@example.test"])
            state = self.queue.load(entry.id)
            if state is not None:
                [you] = state.recipients
                self.assertEqual(you.lastAttempt, START + when)
        self.assertEqual(self.queue.ids(), [])
        for later in (8000, 20000, 100000):
            self.at(later)
            await self.runner.runOnce()
        [notice] = self.senderMX.messages
        self.assertEqual((notice.sender, notice.recipients), (b"", [b"me@sender.test"]))

        dsn = parse(notice.data)
        self.assertEqual(dsn.get_content_type(), "multipart/report")
        self.assertEqual(dsn.get_param("report-type"), "delivery-status")
        self.assertEqual(str(dsn["To"]), "me@sender.test")
        self.assertEqual(str(dsn["Auto-Submitted"]), "auto-replied")
        text, status, headers = parts(dsn)
        self.assertEqual(text.get_content_type(), "text/plain")
        self.assertIn(
            "<you@example.test>: gave up after 6 attempts", text.get_content()
        )
        self.assertEqual(status.get_content_type(), "message/delivery-status")
        perMessage, perRecipient = parts(status)
        self.assertEqual(perMessage["Reporting-MTA"], "dns; client.test")
        self.assertEqual(perMessage["X-Smtptut-Queue-ID"], entry.id)
        self.assertEqual(perRecipient["Final-Recipient"], "rfc822; you@example.test")
        self.assertEqual(perRecipient["Action"], "failed")
        self.assertEqual(perRecipient["Status"], "4.4.7")
        self.assertEqual(perRecipient["Remote-MTA"], "dns; mx.example.test")
        self.assertTrue(
            perRecipient["Diagnostic-Code"].startswith("X-Smtptut; cannot connect"),
            perRecipient["Diagnostic-Code"],
        )
        self.assertIn(
            perRecipient["Last-Attempt-Date"], ["Fri, 15 Jan 2027 10:00:00 -0000"]
        )
        self.assertEqual(headers.get_content_type(), "text/rfc822-headers")
        original = headers.get_content().splitlines()
        self.assertIn("Subject: queued 1", original)
        self.assertIn("Message-ID: <queued-1@sender.test>", original)

    async def test_permanentFailureAtOnce(self) -> None:
        """
        A 550 bounces the recipient at once and the sender is told then, in
        a DSN that names only that recipient, with the server's reply; the
        recipient delivered in the same transaction is not in it.
        """
        recipientMX = RecordingFactory()
        self.startServers({RECIPIENT_MX: recipientMX, SENDER_MX: self.senderMX})
        self.queue.enqueue(
            "me@sender.test", ["bad@example.test", "good@example.test"], [message(2)]
        )
        outcomes = await self.runner.runOnce()
        self.assertEqual(
            sorted((o.recipient, str(o.status)) for o in outcomes),
            [
                ("bad@example.test", "bounced"),
                ("good@example.test", "delivered"),
                ("me@sender.test", "delivered"),
            ],
        )
        [notice] = self.senderMX.messages
        _, status, _ = parts(parse(notice.data))
        [_, bad] = parts(status)
        self.assertEqual(bad["Final-Recipient"], "rfc822; bad@example.test")
        self.assertEqual(bad["Status"], "5.1.1")
        self.assertEqual(bad["Diagnostic-Code"], "smtp; 550 5.1.1 no such user here")
        self.assertEqual(self.queue.ids(), [])

    async def test_nullSenderGetsNone(self) -> None:
        """
        A message from the null sender (a DSN itself) that fails gets no
        DSN; nor does a DSN that bounces: no bounce ever answers a bounce.
        """
        recipientMX = RecordingFactory()
        self.startServers({RECIPIENT_MX: recipientMX, SENDER_MX: self.senderMX})
        self.queue.enqueue("", ["bad@example.test"], [message(3, "<>")])
        self.queue.enqueue("gone@sender.test", ["bad@example.test"], [message(4)])
        outcomes = await self.runner.runOnce()
        self.assertEqual(
            sorted((o.recipient, str(o.status)) for o in outcomes),
            [
                ("bad@example.test", "bounced"),
                ("bad@example.test", "bounced"),
                ("gone@sender.test", "bounced"),
            ],
        )
        self.assertEqual((recipientMX.messages, self.senderMX.messages), ([], []))
        # The DSN to gone@ was tried from <> and refused; nothing is left.
        [dsnAttempt] = [c for c in self.senderMX.commands if c.startswith(b"MAIL")]
        self.assertTrue(dsnAttempt.startswith(b"MAIL FROM:<> "), dsnAttempt)
        self.assertEqual(self.queue.ids(), [])


class CrashSafetyTests(RunnerTestsMixin, TestCase):
    def setUp(self) -> None:
        self.setUpQueue()

    def test_savedBeforeTheNextTransaction(self) -> None:
        """
        A message for two domains is two transactions, one after the other;
        when the second starts, the first's outcome is on disk already, so
        a crash then never sends the first again.
        """
        entry = self.queue.enqueue(
            "me@sender.test", ["a@one.test", "b@two.test"], [message(5)]
        )
        seen: list[tuple[str, list[str]]] = []

        def deliver(envelope: Envelope) -> Deferred[list[RecipientOutcome]]:
            state = self.queue.load(entry.id)
            assert state is not None
            seen.append(
                (envelope.recipients[0], [str(r.state) for r in state.recipients])
            )
            return succeed(
                [RecipientOutcome(r, DELIVERED, 250, "ok") for r in envelope.recipients]
            )

        runner = QueueRunner(self.queue, deliver, self.clock, self.schedule, "x.test")
        self.successResultOf(runner.runOnce())
        self.assertEqual(
            seen,
            [
                ("a@one.test", ["pending", "pending"]),
                ("b@two.test", ["delivered", "pending"]),
            ],
        )
        self.assertEqual(self.queue.ids(), [])

    def test_lockedEntryLeftAlone(self) -> None:
        """
        An entry another runner holds is not delivered.
        """
        entry = self.queue.enqueue("me@sender.test", ["a@one.test"], [message(6)])
        calls: list[Envelope] = []

        def deliver(envelope: Envelope) -> Deferred[list[RecipientOutcome]]:
            calls.append(envelope)
            return succeed([])

        runner = QueueRunner(self.queue, deliver, self.clock, self.schedule, "x.test")
        lock = self.queue.lock(entry.id)
        assert lock is not None
        self.successResultOf(runner.runOnce())
        self.assertEqual(calls, [])
        lock.release()
        self.successResultOf(runner.runOnce())
        self.assertEqual(len(calls), 1)


def heldDelivery() -> tuple[
    Callable[[Envelope], Deferred[list[RecipientOutcome]]],
    list[tuple[Envelope, Deferred[list[RecipientOutcome]]]],
]:
    """
    A delivery that holds each envelope until the test fires its Deferred,
    and the list of those in flight.
    """
    inFlight: list[tuple[Envelope, Deferred[list[RecipientOutcome]]]] = []

    def deliver(envelope: Envelope) -> Deferred[list[RecipientOutcome]]:
        d: Deferred[list[RecipientOutcome]] = Deferred()
        inFlight.append((envelope, d))
        return d

    return deliver, inFlight


class ConcurrencyTests(RunnerTestsMixin, TestCase):
    def setUp(self) -> None:
        self.setUpQueue()

    def test_perDomainAndGlobalBounds(self) -> None:
        """
        At most C{domainConcurrency} transactions to one domain and
        C{concurrency} in all are in flight; a busy domain does not hold
        back another one's messages.
        """
        # IDs in this order: the busy domain's messages come first.
        for n in range(5):
            self.queue.enqueue(
                "me@sender.test", [f"r{n}@busy.test"], [message(n)], f"1.a{n}"
            )
        for n in range(2):
            self.queue.enqueue(
                "me@sender.test", [f"r{n}@other.test"], [message(n)], f"1.b{n}"
            )
        deliver, inFlight = heldDelivery()

        runner = QueueRunner(
            self.queue,
            deliver,
            self.clock,
            self.schedule,
            "x.test",
            concurrency=3,
            domainConcurrency=2,
        )
        done = runner.runOnce()
        most: dict[str, int] = {}
        total = 0
        while inFlight:
            domains = [e.recipients[0].rpartition("@")[2] for e, _ in inFlight]
            for domain in set(domains):
                most[domain] = max(most.get(domain, 0), domains.count(domain))
            if not total:
                # At first: the busy domain's two, and one for the other.
                self.assertEqual(
                    sorted(domains), ["busy.test", "busy.test", "other.test"]
                )
            total = max(total, len(inFlight))
            envelope, d = inFlight.pop(0)
            d.callback(
                [RecipientOutcome(r, DELIVERED, 250, "ok") for r in envelope.recipients]
            )
        self.assertEqual(len(self.successResultOf(done)), 7)
        self.assertEqual((most["busy.test"], max(most.values()), total), (2, 2, 3))
        self.assertEqual(self.queue.ids(), [])

    def test_longQueueHoldsFewDeferreds(self) -> None:
        """
        A pass over a long queue takes the entries a few at a time: nothing
        waits for a slot per entry (memory that would grow with the queue),
        and every message is still delivered once.
        """
        for n in range(60):
            self.queue.enqueue(
                "me@sender.test", [f"r{n}@many.test"], [message(n)], f"1.c{n:02d}"
            )
        deliver, inFlight = heldDelivery()

        runner = QueueRunner(
            self.queue, deliver, self.clock, self.schedule, "x.test", concurrency=2
        )
        done = runner.runOnce()
        delivered: list[str] = []
        for _ in range(200):
            if not inFlight:
                break
            self.assertEqual(runner._entries.waiting, [])
            envelope, d = inFlight.pop(0)
            delivered.extend(envelope.recipients)
            d.callback(
                [RecipientOutcome(r, DELIVERED, 250, "ok") for r in envelope.recipients]
            )
        self.assertEqual(len(self.successResultOf(done)), 60)
        self.assertEqual(
            sorted(delivered), sorted(f"r{n}@many.test" for n in range(60))
        )


class LeftoverTests(RunnerTestsMixin, TestCase):
    def setUp(self) -> None:
        self.setUpQueue()

    def test_finishedEntryRemoved(self) -> None:
        """
        An entry whose recipients are all settled, left by a runner killed
        before it removed it, is removed by the next pass (not listed
        forever), and nothing is sent again.
        """
        entry = self.queue.enqueue("me@sender.test", ["a@one.test"], [message(7)])
        lock = self.queue.lock(entry.id)
        assert lock is not None
        [a] = entry.recipients
        lock.save(entry.updated([replace(a, state=RecipientState.DELIVERED)]))
        lock.release()
        calls: list[Envelope] = []

        def deliver(envelope: Envelope) -> Deferred[list[RecipientOutcome]]:
            calls.append(envelope)
            return succeed([])

        runner = QueueRunner(self.queue, deliver, self.clock, self.schedule, "x.test")
        self.successResultOf(runner.runOnce())
        self.assertEqual((calls, self.queue.ids()), ([], []))


class RemovalTests(RunnerTestsMixin, TestCase):
    """
    How a delivered entry leaves the queue: without its state file written
    again, in the background, its lock held until it is gone.
    """

    def setUp(self) -> None:
        self.setUpQueue()

    def delivered(self, envelope: Envelope) -> Deferred[list[RecipientOutcome]]:
        return succeed(
            [RecipientOutcome(r, DELIVERED, 250, "ok") for r in envelope.recipients]
        )

    def test_deliveredEntryNotSavedFirst(self) -> None:
        """
        An entry whose every recipient is delivered is removed without its
        envelope file being rewritten first (two fsyncs a message for
        nothing); one with a recipient still pending is saved, as before.
        """
        done = self.queue.enqueue("me@sender.test", ["a@one.test"], [message(1)])
        later = self.queue.enqueue("me@sender.test", ["b@two.test"], [message(2)])
        saved: list[str] = []
        save = EntryLock.save

        def recording(lock: EntryLock, entry: Entry) -> None:
            saved.append(entry.id)
            save(lock, entry)

        self.patch(EntryLock, "save", recording)

        def deliver(envelope: Envelope) -> Deferred[list[RecipientOutcome]]:
            if envelope.recipients == ("b@two.test",):
                return succeed(
                    [RecipientOutcome("b@two.test", DEFERRED, 451, "try later")]
                )
            return self.delivered(envelope)

        runner = QueueRunner(self.queue, deliver, self.clock, self.schedule, "x.test")
        self.successResultOf(runner.runOnce())
        self.assertEqual(saved, [later.id])
        self.assertEqual(self.queue.ids(), [later.id])
        self.assertNotIn(done.id, os.listdir(os.path.join(self.queue.path, "tmp")))

    def test_removalsShareOneSweep(self) -> None:
        """
        Removals run in the background: the entries finished while one
        removal is under way go together in the next (one fsync of
        C{entries/} for all); until its removal is done, an entry stays
        locked (another runner cannot send it again), and the pass fires
        only once every removal is done.
        """
        ids = [f"1.a{n}" for n in range(3)]
        for n, entryId in enumerate(ids):
            self.queue.enqueue(
                "me@sender.test", [f"r{n}@one.test"], [message(n)], entryId
            )
        calls: list[tuple[list[str], Deferred[None]]] = []

        def background(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[None] = Deferred()
            calls.append(([lock.id for lock in args[0]], d))
            return d.addCallback(lambda _: f(*args))

        runner = QueueRunner(
            self.queue,
            self.delivered,
            self.clock,
            self.schedule,
            "x.test",
            background=background,
        )
        done = runner.runOnce()
        # The first entry's removal started at once; the other two waited.
        self.assertEqual([batch for batch, _ in calls], [[ids[0]]])
        self.assertNoResult(done)
        self.assertIsNone(self.queue.lock(ids[1]))
        calls[0][1].callback(None)
        self.assertEqual([batch for batch, _ in calls], [[ids[0]], ids[1:]])
        self.assertEqual(self.queue.ids(), ids[1:])
        self.assertNoResult(done)
        calls[1][1].callback(None)
        self.assertEqual(len(self.successResultOf(done)), 3)
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(os.listdir(os.path.join(self.queue.path, "tmp")), [])
