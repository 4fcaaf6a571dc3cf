"""The queue runner: deliver what is due, record each outcome, retry on schedule, report failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import replace
from typing import Any

from twisted.application import service
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorThreads,
    IReactorTime,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtptut.client.jsonreport import outcomeJSON
from smtptut.queue.dsn import makeNotice, originalHeaders, wantsNotice
from smtptut.queue.outbound import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    INTERRUPTED,
    NO_REPLY,
    ClientSettings,
    Deliver,
    Envelope,
    RecipientOutcome,
    clientDelivery,
    queuedMessage,
    reportingName,
)
from smtptut.queue.schedule import Schedule
from smtptut.queue.settings import QueueSettings
from smtptut.queue.store import (
    Entry,
    EntryLock,
    Queue,
    QueueError,
    Recipient,
    RecipientState,
)

log = Logger()

#: How often a running queue looks for messages queued by other processes.
POLL_INTERVAL = 60.0

#: How long stopping waits for the transactions in flight to end.
STOP_GRACE = 10.0

#: Entries locked at once per transaction slot: one waiting for each slot in
#: use, so that slots never wait for an entry to be read, while a runner holds
#: few entries that another runner on the same queue could deliver (and few
#: lock files' descriptors).
ENTRIES_PER_SLOT = 2

#: Runs a blocking call somewhere and fires with its result: in a worker
#: thread for the production runner, in the caller by default.
Background = Callable[..., "Deferred[Any]"]


def inline(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    The default L{Background}: C{f} called at once, here.
    """
    return maybeDeferred(f, *args)


def formatTime(when: float) -> str:
    """
    A time as C{queue list} and the outcome lines show it (UTC).
    """
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def domainOf(address: str) -> str:
    return address.rpartition("@")[2].lower()


class QueueRunner:
    """
    Delivers the due recipients of queued messages with C{deliver}, one
    transaction per recipient domain: at most C{concurrency} in flight, at
    most C{domainConcurrency} to any one domain, and one at a time per
    message, whose state is saved after each transaction's outcome and
    before the next, so that a crash repeats at most that transaction.

    @ivar stopping: set when the runner is to start nothing new.
    """

    def __init__(
        self,
        queue: Queue,
        deliver: Deliver,
        clock: IReactorTime,
        schedule: Schedule,
        reporter: str,
        concurrency: int = 8,
        domainConcurrency: int = 2,
        write: Callable[[str], object] = lambda line: None,
        jsonSelectors: Sequence[str] | None = None,
        background: Background = inline,
    ) -> None:
        self.queue = queue
        #: Where the removals' fsync and deletion run (see L{_sweepLater}).
        self.background = background
        self._toSweep: list[EntryLock] = []
        self._sweeping = False
        self._sweepWaiters: list[Deferred[None]] = []
        #: With C{--json}, the DKIM selectors its objects name (L{None}: text).
        self.jsonSelectors = jsonSelectors
        self.deliver = deliver
        self.clock = clock
        self.schedule = schedule
        self.reporter = reporter
        self.domainConcurrency = domainConcurrency
        self.write = write
        self.stopping = False
        self._slots = DeferredSemaphore(concurrency)
        self._entries = DeferredSemaphore(concurrency * ENTRIES_PER_SLOT)
        self._domains: dict[str, DeferredSemaphore] = {}

    def runOnce(
        self, ids: Iterable[str] | None = None
    ) -> Deferred[list[RecipientOutcome]]:
        """
        Deliver every due recipient of the entries C{ids} (default: the
        whole queue), and the DSNs this makes; fires with the outcomes.
        """
        try:
            self.queue.cleanTmp(self.clock.seconds())
        except OSError:
            log.failure("Cannot clean the queue's tmp/")
        pending = iter(self.queue.ids() if ids is None else list(ids))
        outcomes: list[RecipientOutcome] = []

        @inlineCallbacks
        def work() -> Generator[Deferred[Any], Any, None]:
            # As many of these as entries may be in hand at once, each taking
            # the next id: a pass over a queue of any length holds a few
            # Deferreds, not one for each entry.
            for entryId in pending:
                outcomes.extend((yield self._entries.run(self._process, entryId)))

        d = gatherResults(
            [work() for _ in range(self._entries.limit)], consumeErrors=True
        )
        return d.addCallback(lambda _: self._afterSweep(outcomes))

    def _sweepLater(self, lock: EntryLock) -> None:
        """
        Remove a finished entry in the background, its lock held until then:
        the entries finished meanwhile share one fsync of C{entries/}, and
        the reactor never waits on the disk for them (a removal only keeps a
        message from being sent twice; nothing waits for it but the end of
        the pass).
        """
        self._toSweep.append(lock)
        if not self._sweeping:
            self._sweeping = True
            self._sweepNext()

    def _sweepNext(self, result: object = None) -> None:
        if not self._toSweep:
            self._sweeping = False
            waiters, self._sweepWaiters = self._sweepWaiters, []
            for waiter in waiters:
                waiter.callback(None)
            return
        batch, self._toSweep = self._toSweep, []

        def removed(failed: list[OSError]) -> None:
            for error in failed:
                log.error("Cannot remove a queue entry: {error}", error=error)

        def failed(failure: Failure) -> None:
            log.failure(
                "Cannot remove {count} queue entries", failure, count=len(batch)
            )
            for lock in batch:
                lock.release()  # if the removal never ran

        d = self.background(self.queue.removeEntries, batch)
        d.addCallbacks(removed, failed)
        d.addCallback(self._sweepNext)

    def _afterSweep(
        self, outcomes: list[RecipientOutcome]
    ) -> Deferred[list[RecipientOutcome]]:
        """
        C{outcomes}, once every removal started so far is done (a pass ends
        with the queue as it says).
        """
        if not self._sweeping:
            return succeed(outcomes)
        waiter: Deferred[None] = Deferred()
        self._sweepWaiters.append(waiter)
        return waiter.addCallback(lambda _: outcomes)

    def nextWake(self) -> float | None:
        """
        When the earliest pending recipient of the queue is due, if any.
        """
        times: list[float] = []
        for entryId in self.queue.ids():
            try:
                entry = self.queue.load(entryId)
            except QueueError:
                continue
            if entry is not None:
                times.extend(r.nextTry for r in entry.pending)
        return min(times, default=None)

    def _due(self, entry: Entry) -> bool:
        """
        Whether there is work on C{entry}: recipients due, a DSN to make,
        or (after a crash) a finished entry still to remove.
        """
        return (
            entry.finished
            or bool(entry.unnotified)
            or bool(entry.due(self.clock.seconds()))
        )

    @inlineCallbacks
    def _process(
        self, entryId: str
    ) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
        outcomes: list[RecipientOutcome] = []
        if self.stopping:
            return outcomes
        try:
            # A look without the lock first: most entries are not due.
            entry = self.queue.load(entryId)
            if entry is None or not self._due(entry):
                return outcomes
            lock = self.queue.lock(entryId)
        except QueueError as e:
            log.error("{error}", error=str(e))
            return outcomes
        if lock is None:
            return outcomes  # another runner has it, or it is gone
        notice = None
        removing = False
        try:
            outcomes = yield self._deliverEntry(lock)
            notice = self._notify(lock)
            if lock.entry.finished:
                self._sweepLater(lock)
                removing = True
        except OSError:
            # A full disk, say: what was not saved is tried again later,
            # so it may be sent twice, never lost.
            log.failure("Cannot update queue entry {id}", id=entryId)
        finally:
            if not removing:
                lock.release()
        if notice is not None:
            more: list[RecipientOutcome] = yield self._process(notice)
            outcomes.extend(more)
        return outcomes

    @inlineCallbacks
    def _deliverEntry(
        self, lock: EntryLock
    ) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
        entry = lock.entry
        due = entry.due(self.clock.seconds())
        outcomes: list[RecipientOutcome] = []
        if not due:
            return outcomes
        try:
            message = queuedMessage(self.queue.messagePath(entry.id))
        except Exception as e:
            # Checked when it was queued: only a damaged file comes here.
            reason = f"the queued message cannot be sent: {e}"
            log.error("{id}: {reason}", id=entry.id, reason=reason)
            failed = [
                RecipientOutcome(r.address, BOUNCED, NO_REPLY, reason) for r in due
            ]
            lock.save(self._record(lock.entry, failed, due))
            return failed
        groups: dict[str, list[Recipient]] = {}
        for recipient in due:
            groups.setdefault(domainOf(recipient.address), []).append(recipient)
        for domain, recipients in groups.items():
            if self.stopping:
                break
            envelope = Envelope(
                entry.sender, tuple(r.address for r in recipients), message
            )
            result: list[RecipientOutcome] = yield self._transaction(domain, envelope)
            updated = self._record(lock.entry, result, recipients)
            if updated.finished and not updated.unnotified:
                # Nothing left to try or report: the entry's removal (in
                # _process, next) records this outcome, and saving it first
                # would cost two fsyncs a message for nothing.
                lock.entry = updated
            else:
                # Saved before the next transaction starts: a crash from
                # here on never sends these recipients again.
                lock.save(updated)
            self._report(lock.entry, result)
            outcomes.extend(result)
        return outcomes

    def _transaction(
        self, domain: str, envelope: Envelope
    ) -> Deferred[list[RecipientOutcome]]:
        perDomain = self._domains.get(domain)
        if perDomain is None:
            perDomain = self._domains[domain] = DeferredSemaphore(
                self.domainConcurrency
            )
        # The domain's slot first: waiting for a busy domain holds no slot
        # that another domain could use.
        d = perDomain.run(self._slots.run, self.deliver, envelope)

        def forget(result: object) -> object:
            # A semaphore per domain ever seen would grow without end.
            idle = perDomain.tokens == perDomain.limit and not perDomain.waiting
            if idle and self._domains.get(domain) is perDomain:
                del self._domains[domain]
            return result

        def failed(failure: Failure) -> list[RecipientOutcome]:
            log.failure("Queued delivery failed unexpectedly", failure)
            reason = f"internal error: {failure.getErrorMessage()}"
            return [
                RecipientOutcome(r, DEFERRED, NO_REPLY, reason)
                for r in envelope.recipients
            ]

        return d.addErrback(failed).addBoth(forget)

    def _record(
        self,
        entry: Entry,
        outcomes: Sequence[RecipientOutcome],
        tried: Sequence[Recipient],
    ) -> Entry:
        """
        C{entry} with the C{outcomes} of a transaction to C{tried} applied.
        """
        now = self.clock.seconds()
        byAddress = {o.recipient: o for o in outcomes}
        updated = []
        for recipient in tried:
            outcome = byAddress.get(recipient.address)
            if outcome is None:
                outcome = RecipientOutcome(
                    recipient.address, DEFERRED, NO_REPLY, "no outcome was given"
                )
            if outcome.status == DEFERRED and INTERRUPTED in outcome.notes:
                # Never tried (the runner was stopping): due again at once.
                continue
            attempts = recipient.attempts + 1
            new = replace(
                recipient,
                attempts=attempts,
                lastReply=outcome.reply,
                lastCode=outcome.code,
                exchange=outcome.exchange,
                lastAttempt=now,
            )
            if outcome.status == DELIVERED:
                new = replace(new, state=RecipientState.DELIVERED)
            elif outcome.status == BOUNCED:
                new = replace(new, state=RecipientState.BOUNCED)
            elif self.schedule.expired(entry.created, now):
                new = replace(new, state=RecipientState.BOUNCED, expired=True)
            else:
                next = self.schedule.nextTry(entry.created, now, attempts)
                new = replace(new, nextTry=next)
            updated.append(new)
        return entry.updated(updated)

    def _report(self, entry: Entry, outcomes: Sequence[RecipientOutcome]) -> None:
        states = {r.address: r for r in entry.recipients}
        for outcome in outcomes:
            recipient = states.get(outcome.recipient)
            where = f"queue {entry.id}"
            if recipient is not None and recipient.state is RecipientState.PENDING:
                where += f", next try {formatTime(recipient.nextTry)}"
            elif recipient is not None and recipient.expired:
                where += f", given up after {recipient.attempts} attempts"
            line = f"{outcome} [{where}]"
            if self.jsonSelectors is not None:
                attempts = recipient.attempts if recipient is not None else None
                line = outcomeJSON(outcome, self.jsonSelectors, entry.id, attempts)
            log.info("{line}", line=line)
            self.write(line)

    def _notify(self, lock: EntryLock) -> str | None:
        """
        Queue a DSN for the recipients that failed and were not reported
        yet (none for the null sender); the DSN's ID, if one was queued.

        The DSN is queued before the entry records it as sent: a crash in
        between makes the same DSN again, with the same ID, so it is not
        queued twice while it waits.
        """
        entry = lock.entry
        failed = entry.unnotified
        if not failed:
            return None
        noticeId = None
        notices = entry.notices
        if wantsNotice(entry.sender):
            notices += 1
            noticeId = f"{entry.id}.dsn{notices}"
            with lock.openMessage() as message:
                headers = originalHeaders(message)
            notice = makeNotice(
                entry, failed, headers, self.reporter, self.clock.seconds()
            )
            self.queue.enqueue("", [entry.sender], [notice], entryId=noticeId)
            log.info(
                "{id}: DSN {notice} queued for {sender}",
                id=entry.id,
                notice=noticeId,
                sender=entry.sender,
            )
        else:
            log.info("{id}: no DSN for the null sender", id=entry.id)
        notified = [replace(r, notified=True) for r in failed]
        lock.save(replace(entry.updated(notified), notices=notices))
        return noticeId


class QueueService(service.Service):
    """
    Runs a L{QueueRunner} while the service runs: a pass at start, then
    each time the earliest pending recipient is due, and at least every
    C{pollInterval} seconds for messages other processes queued.
    """

    name = "smtptut-queue"

    def __init__(
        self,
        runner: QueueRunner,
        clock: IReactorTime,
        pollInterval: float = POLL_INTERVAL,
        stopGrace: float = STOP_GRACE,
    ) -> None:
        self.runner = runner
        self.clock = clock
        self.pollInterval = pollInterval
        self.stopGrace = stopGrace
        self.current: Deferred[list[RecipientOutcome]] | None = None
        self._wake: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        self.runner.stopping = False
        self._wake = self.clock.callLater(0, self.runPass)

    def runPass(self) -> Deferred[list[RecipientOutcome]]:
        """
        A pass now (unless one is under way), then the next one scheduled.
        """
        self._cancelWake()
        if self.current is not None:
            return self.current
        current = self.current = self.runner.runOnce()

        def done(result: object) -> object:
            self.current = None
            if isinstance(result, Failure):
                log.failure("The queue pass failed", result)
            if self.running and not self.runner.stopping:
                self._scheduleNext()
            return result if not isinstance(result, Failure) else []

        return current.addBoth(done)

    def _scheduleNext(self) -> None:
        now = self.clock.seconds()
        delay = self.pollInterval
        wake = self.runner.nextWake()
        if wake is not None:
            delay = min(delay, max(0.0, wake - now))
        self._wake = self.clock.callLater(delay, self.runPass)

    def _cancelWake(self) -> None:
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        self._wake = None

    def stopService(self) -> Deferred[None]:
        """
        Start nothing new; wait (at most C{stopGrace} seconds) for the
        transactions in flight, whose outcomes are then saved.
        """
        super().stopService()
        self.runner.stopping = True
        self._cancelWake()
        stopped: Deferred[None] = Deferred()
        if self.current is None:
            stopped.callback(None)
            return stopped
        timer = self.clock.callLater(self.stopGrace, stopped.callback, None)

        def finished(result: object) -> object:
            if timer.active():
                timer.cancel()
                stopped.callback(None)
            return result

        self.current.addBoth(finished)
        return stopped


def clientRunner(
    reactor: IReactorCore,
    queue: Queue,
    settings: QueueSettings,
    client: ClientSettings,
    write: Callable[[str], object] = lambda line: None,
) -> QueueRunner:
    """
    The production runner: smtptut's client delivers (see
    L{smtptut.queue.outbound.clientDelivery}), on the reactor's clock.
    """
    runner: QueueRunner

    def interrupted() -> bool:
        return runner.stopping

    threads = IReactorThreads(reactor)

    def background(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, threads.getThreadPool(), f, *args)  # type: ignore[arg-type]

    runner = QueueRunner(
        queue,
        clientDelivery(reactor, client, interrupted),
        IReactorTime(reactor),
        settings.schedule,
        reportingName(client),
        settings.concurrency,
        settings.domainConcurrency,
        write,
        [key.selector for key in client.dkim.keys] if client.json else None,
        background,
    )
    return runner
