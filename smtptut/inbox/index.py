"""The index of a Maildir: built from it, caught up with it, never the truth."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from typing import Any

from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IDelayedCall, IReactorThreads, IReactorTime
from twisted.logger import Logger

from smtptut.inbox.database import IndexDatabase, Page
from smtptut.inbox.records import Record, readRecord, splitName

log = Logger()

#: The index file, in the Maildir's top directory (where Dovecot keeps its own).
INDEX_NAME = ".smtptut-index.sqlite3"
#: Seconds between looks for changes other programs made.
RESCAN_INTERVAL = 2.0
#: Seconds within which a directory's mtime is not trusted (see L{MaildirIndex.rescan}).
RACY = 2.0
#: More new files than this in one scan are announced as one "prune".
QUIET_LIMIT = 20
#: Seconds a stored message waits for others to be indexed with.
COALESCE = 0.05
#: Files read per thread job while catching up.
BATCH = 200
#: The most of the reactor's time the timer's looks at the Maildir take.
#: Each delivery changes new/'s mtime, so while mail comes every tick lists
#: the whole Maildir and every indexed name: at 20,000 messages one look
#: took 80 to 200 ms here, which would then come every 2 to 4 seconds.
RESCAN_SHARE = 0.05


class MaildirIndex:
    """
    The messages of one Maildir, for listing and searching.

    The Maildir is the truth: the index is built from it at L{start},
    told of new messages by L{messageStored}, and catches up every
    C{interval} seconds with what other programs did (L{rescan}): files
    added or removed, the C{S} flag set or cleared.

    @ivar observers: called with C{(event, data)} for Mailpit's websocket
        events: C{"new"} with the row, C{"delete"} with an ID,
        C{"update"} with C{(ID, read)}, C{"truncate"} with L{None}, and
        C{"prune"} with L{None} when many messages came at once.
    """

    def __init__(
        self,
        maildir: str,
        reactor: IReactorThreads,
        clock: IReactorTime,
        interval: float = RESCAN_INTERVAL,
        database: str | None = None,
    ) -> None:
        self.maildir = os.path.abspath(maildir)
        self.reactor = reactor
        self.clock = clock
        self.interval = interval
        self.database = database or os.path.join(self.maildir, INDEX_NAME)
        self.observers: list[Callable[[str, Any], object]] = []
        self.db = IndexDatabase(self.database)
        # The messages the sink stores are written through a connection of
        # their own, in a thread: their FTS5 insert is most of what indexing
        # costs, and SQLite lets go of the GIL while it runs, so the reactor
        # (the SMTP sessions) goes on meanwhile.
        self._writer = IndexDatabase(self.database, anyThread=True)
        self._writing: defer.Deferred[None] | None = None
        #: Unique names told of by the sink and not written yet.
        self._inFlight: set[str] = set()
        self._seen: tuple[int, int] | None = None
        #: When the timer may look next (the clock's seconds), by RESCAN_SHARE.
        self._nextLook = 0.0
        self._scanning: defer.Deferred[None] | None = None
        self._again = False
        self._loop: task.LoopingCall | None = None
        self._stopped = False
        self._pending: list[str] = []
        self._waiting: list[defer.Deferred[None]] = []
        self._flush: IDelayedCall | None = None

    # ------------------------------------------------------------ life

    def start(self) -> defer.Deferred[None]:
        """
        Catch up with the Maildir, then keep catching up on a timer.
        """
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)
        return self.rescan()

    def _tick(self) -> None:
        if self.clock.seconds() < self._nextLook:
            return
        self.rescan().addErrback(lambda f: log.failure("Maildir rescan failed", f))

    def stop(self) -> defer.Deferred[None]:
        """
        Stop the timer; fires once a scan or a write under way is done.
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._stopped = True
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        busy = [d for d in (self._scanning, self._writing) if d is not None]

        def close(_: object) -> None:
            self.db.close()
            self._writer.close()

        # DeferredList leaves each one's result alone (no consumeErrors).
        waited: defer.Deferred[Any] = defer.DeferredList(busy)
        return waited.addCallback(close)

    # ------------------------------------------------------------ catching up

    def _directoryTimes(self) -> tuple[int, int]:
        return (
            os.stat(os.path.join(self.maildir, "new")).st_mtime_ns,
            os.stat(os.path.join(self.maildir, "cur")).st_mtime_ns,
        )

    def _listing(self) -> dict[str, str]:
        # listdir and partition (splitName's unique part): half the time of
        # scandir and splitName, on what every look at the Maildir costs.
        names: dict[str, str] = {}
        for sub in ("new", "cur"):
            prefix = sub + "/"
            for name in os.listdir(os.path.join(self.maildir, sub)):
                if not name.startswith("."):
                    names[name.partition(":")[0]] = prefix + name
        return names

    def rescan(self) -> defer.Deferred[None]:
        """
        Catch up with the Maildir; cheap when its directories did not change.
        """
        if self._scanning is not None:
            self._again = True
            d: defer.Deferred[None] = defer.Deferred()
            self._scanning.addBoth(lambda _: d.callback(None))
            return d
        if self._stopped:
            return defer.succeed(None)
        self._scanning = defer.ensureDeferred(self._rescan())

        def done(result: object) -> object:
            self._scanning = None
            if self._again:
                self._again = False
                self._seen = None
                return self.rescan()
            return result

        return self._scanning.addBoth(done)

    async def _rescan(self) -> None:
        times = self._directoryTimes()
        if times == self._seen:
            return
        # Noted first: a change made while this scan runs is seen next time.
        # A directory changed within RACY seconds is listed again next time
        # whatever its time says: the kernel's clock for mtimes is coarse, so
        # a second change in the same tick would leave the time unchanged.
        racy = time.time_ns() - int(RACY * 1e9)
        self._seen = times if max(times) < racy else None
        looking = time.perf_counter()
        listing = self._listing()
        known = self.db.known()
        for name in [name for name in known if name not in listing]:
            self._forget(name)
        for name, path in listing.items():
            if known.get(name, path) != path:
                self._moved(name, path)
        # What the sink just stored is being indexed already (messageStored).
        fresh = [
            path
            for name, path in listing.items()
            if name not in known and name not in self._inFlight
        ]
        cost = time.perf_counter() - looking
        # Half an interval early: the tick due then is not skipped for a jitter.
        self._nextLook = self.clock.seconds() + cost / RESCAN_SHARE - self.interval / 2
        # Many at once (a start, another program's bulk copy): one "prune"
        # (Mailpit's "reload the list") instead of a "new" for each.
        quiet = len(fresh) > QUIET_LIMIT
        for i in range(0, len(fresh), BATCH):
            records = await threads.deferToThreadPool(
                self.reactor,
                self.reactor.getThreadPool(),
                self._read,
                fresh[i : i + BATCH],
            )
            with self.db.transaction():
                for record in records:
                    self._add(record, quiet)
        if quiet:
            self._notify("prune", None)

    def _read(self, paths: Sequence[str]) -> list[Record]:
        records = []
        for path in paths:
            try:
                records.append(readRecord(self.maildir, path))
            except FileNotFoundError:
                continue  # moved or removed meanwhile: the next scan sees where
            except Exception:
                log.failure("Cannot index {path}", path=path)
        return records

    def messageStored(self, path: str) -> defer.Deferred[None]:
        """
        Index a message just committed to C{path} (the server's hook); fires
        once it is.  Messages stored within L{COALESCE} seconds of each other
        are read and written in one thread job, in one transaction.
        """
        # "new/NAME" (not os.path.relpath, which asks for the working
        # directory each time): the sink stores into new/.
        head, name = os.path.split(path)
        self._pending.append(f"{os.path.basename(head)}/{name}")
        self._inFlight.add(splitName(name)[0])
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        # One job at a time: while one runs, these go with the next, which
        # starts when it ends.
        if self._flush is None and self._writing is None:
            self._flush = self.clock.callLater(COALESCE, self._indexPending)
        return d

    def _indexPending(self) -> None:
        self._flush = None
        paths, self._pending = self._pending, []
        waiting, self._waiting = self._waiting, []
        names = [splitName(os.path.basename(p))[0] for p in paths]
        if self._stopped:
            # Stopped meanwhile (SIGTERM's grace): the next start indexes
            # them from the Maildir.
            d: defer.Deferred[Any] = defer.succeed([])
        else:
            d = threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), self._readAndWrite, paths
            )

        def announce(rows: list[sqlite3.Row]) -> None:
            if self._stopped:
                return
            for row in rows:
                self._notify("new", row)

        def done(_: object) -> None:
            self._writing = None
            self._inFlight.difference_update(names)
            for waiter in waiting:
                waiter.callback(None)
            if self._pending:
                # Those stored meanwhile (once stopped, just answered).
                self._indexPending()

        # Set before the callbacks: done() clears it, at once if d has fired.
        self._writing = d
        d.addCallback(announce)
        d.addErrback(lambda f: log.failure("Indexing new messages failed", f))
        d.addBoth(done)

    def _readAndWrite(self, paths: Sequence[str]) -> list[sqlite3.Row]:
        """
        In a thread: read the messages at C{paths} and add them through the
        writer connection; the new rows.
        """
        records = self._read(paths)
        if not records:
            return []
        # A file deleted through the API (which runs in the reactor's
        # thread) while this job read it must not come back.
        return self._writer.addAll(
            records, lambda r: os.path.exists(os.path.join(self.maildir, r.path))
        )

    # ------------------------------------------------------------ changes

    def _add(self, record: Record, quiet: bool = False) -> None:
        # Read in a thread, added here: a file deleted through the API
        # meanwhile (DELETE runs in this thread) must not come back.
        if not os.path.exists(os.path.join(self.maildir, record.path)):
            return
        row = self.db.add(record)
        if row is not None and not quiet:
            self._notify("new", row)

    def _forget(self, name: str) -> None:
        row = self.db.byName(name)
        if row is not None:
            self.db.remove(row)
            self._notify("delete", row["id"])

    def _moved(self, name: str, path: str) -> None:
        read = "S" in splitName(os.path.basename(path))[1]
        row = self.db.byName(name)
        self.db.move(name, path, read)
        if row is not None and bool(row["read"]) != read:
            self._notify("update", (row["id"], read))

    def _notify(self, event: str, data: object) -> None:
        for observer in list(self.observers):
            try:
                observer(event, data)
            except Exception:
                log.failure("An inbox observer failed")

    # ------------------------------------------------------------ questions

    def get(self, identifier: str) -> sqlite3.Row | None:
        """
        The message with this API ID, or the newest for C{latest}.
        """
        return self.db.get(identifier)

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
        return self.db.page(query, start, limit, zone)

    def ids(self, query: str, zone: tzinfo | None = None) -> list[str]:
        return self.db.ids(query, zone)

    def totals(self) -> tuple[int, int]:
        return self.db.totals()

    def fullPath(self, row: sqlite3.Row) -> str:
        return os.path.join(self.maildir, row["path"])

    # ------------------------------------------------------------ the Maildir

    def setRead(self, ids: Iterable[str] | None, read: bool) -> None:
        """
        Set or clear the Maildir C{S} flag (moving a message from new/ to cur/).
        """
        for row in self.db.rows(ids):
            if bool(row["read"]) == read and row["path"].startswith("cur/"):
                continue
            flags = set(splitName(os.path.basename(row["path"]))[1])
            flags = flags | {"S"} if read else flags - {"S"}
            path = f"cur/{row['name']}:2,{''.join(sorted(flags))}"
            try:
                os.rename(self.fullPath(row), os.path.join(self.maildir, path))
            except FileNotFoundError:
                continue  # gone meanwhile: the next scan forgets it
            self._moved(row["name"], path)

    def delete(self, ids: Iterable[str] | None) -> int:
        """
        Remove messages from the Maildir (all of them for L{None}); how many went.
        """
        rows = self.db.rows(ids)
        for row in rows:
            try:
                os.unlink(self.fullPath(row))
            except FileNotFoundError:
                pass
            self.db.remove(row)
            if ids is not None:
                self._notify("delete", row["id"])
        if ids is None and rows:
            self._notify("truncate", None)
        return len(rows)
