"""A Maildir that messages are streamed into: tmp/, fsync, rename into new/, in batches."""

from __future__ import annotations

import errno
import itertools
import os
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import IO, Protocol, TypeVar

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

_counter = itertools.count()

_T = TypeVar("_T")


class ThreadRunner(Protocol):
    """
    Runs a blocking call in a worker thread; the Deferred fires with its
    result (or failure) in the reactor's thread.
    """

    def __call__(self, f: Callable[[], _T], /) -> defer.Deferred[_T]: ...


def inThreadPool(reactor: IReactorThreads) -> ThreadRunner:
    """
    A L{ThreadRunner} on C{reactor}'s thread pool.
    """

    def run(f: Callable[[], _T]) -> defer.Deferred[_T]:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f)

    return run


class Maildir:
    """
    A Maildir directory (C{tmp}, C{new}, C{cur}), created if missing.

    @ivar observers: called with the path in C{new/} of each message once it
        is stored (durably): the seam for whatever shows or indexes them.
    @ivar committer: moves finished messages into C{new/} in batches; made
        on the first commit, on its message's reactor's thread pool (a test
        may set its own before).
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.observers: list[Callable[[str], object]] = []
        self.committer: GroupCommitter | None = None
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.path, sub), mode=0o700, exist_ok=True)
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def checkWritable(self) -> None:
        """
        Raise L{OSError} unless messages can be written into C{tmp/} and
        moved into C{new/} (a read-only mount, a full disk, wrong owner).
        """
        # Any unique name will do: the probe's time is no message's.
        probe = os.path.join(self.path, "tmp", self.uniqueName(0.0) + ".probe")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
        new = os.path.join(self.path, "new")
        if not os.access(new, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), new)

    def syncNew(self) -> None:
        """
        Make the entries of C{new/} durable (fsync the directory).
        """
        fd = os.open(os.path.join(self.path, "new"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def store(self, messages: list[MaildirMessage]) -> list[OSError | None]:
        """
        Move C{messages}, written in C{tmp/}, into C{new/} durably, together:
        each flushed, each fsync'd and closed, each renamed into C{new/},
        then C{new/} fsync'd once for them all.  The data is durable before
        its rename, so a crash never leaves an empty or partial file in
        C{new/}.  Blocks: run it in a thread.

        @return: for each message, L{None} (stored) or why it is not (a full
            disk, EIO: that message alone fails).
        @raise OSError: C{new/} could not be synced: none of them is stored
            (they are taken out of C{new/} again, so that the client's retry
            makes no duplicate).
        """
        outcomes: list[OSError | None] = []
        for message in messages:
            try:
                message.flush()
            except OSError as e:
                outcomes.append(e)
            else:
                outcomes.append(None)
        moved = []
        for i, message in enumerate(messages):
            if outcomes[i] is not None:
                continue
            try:
                message.sync()
                os.rename(message.tmpPath, message.newPath)
            except OSError as e:
                outcomes[i] = e
            else:
                moved.append(message)
        if moved:
            try:
                self.syncNew()
            except OSError:
                for message in moved:
                    with suppress(OSError):
                        os.unlink(message.newPath)
                raise
        return outcomes

    def uniqueName(self, now: float) -> str:
        """
        A file name no other delivery uses (the Maildir convention), for a
        message received at C{now} (the clock's seconds).
        """
        seconds = int(now)
        micro = int((now - seconds) * 1e6)
        return f"{seconds}.M{micro}P{os.getpid()}Q{next(_counter)}.{self.host}"

    def newMessage(self, reactor: IReactorThreads, now: float) -> MaildirMessage:
        """
        Start a message received at C{now} in C{tmp/}; its commit runs in
        C{reactor}'s thread pool.
        """
        return MaildirMessage(self, self.uniqueName(now), reactor)


class MaildirMessage:
    """
    One message being written into C{tmp/}; L{commit} moves it to C{new/}.
    """

    def __init__(self, maildir: Maildir, name: str, reactor: IReactorThreads) -> None:
        self.maildir = maildir
        self.name = name
        self.reactor = reactor
        self.tmpPath = os.path.join(maildir.path, "tmp", name)
        self.newPath = os.path.join(maildir.path, "new", name)
        self.file: IO[bytes] | None = open(self.tmpPath, "xb", buffering=65536)

    def write(self, data: bytes) -> None:
        assert self.file is not None
        self.file.write(data)

    def flush(self) -> None:
        """
        Hand what is buffered to the kernel, and have it start writing the
        file out.  Blocks: run it in a thread.
        """
        assert self.file is not None
        self.file.flush()
        if hasattr(os, "posix_fadvise"):
            # Linux starts writing the file back at this advice (a hint
            # elsewhere).  A batch gives it for every file before the first
            # fsync, whose journal commit then takes all their block
            # allocations, so that the other fsyncs mostly find their file
            # on disk already (measured on ext4, a batch of 20 takes half
            # the time of plain fsyncs one after the other).  Durability
            # still comes from each fsync.
            os.posix_fadvise(self.file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def sync(self) -> None:
        """
        Make the flushed file durable (fsync), then close it.  Blocks: run
        it in a thread.
        """
        assert self.file is not None
        f, self.file = self.file, None
        try:
            # fsync, not fdatasync: a new file's size and blocks must be
            # journalled either way, so fdatasync would only skip the
            # timestamps, and readers order messages by their mtime.
            os.fsync(f.fileno())
        finally:
            f.close()

    def commit(self) -> defer.Deferred[str]:
        """
        Flush, fsync and rename into C{new/} (in a thread: fsync blocks),
        together with the messages finishing at the same time (see
        L{GroupCommitter}); fires with the path in C{new/} once it is
        durable.  On failure the C{tmp/} file is removed.
        """
        committer = self.maildir.committer
        if committer is None:
            committer = GroupCommitter(self.maildir, inThreadPool(self.reactor))
            self.maildir.committer = committer
        d = committer.commit(self)

        def stored(path: str) -> str:
            for observer in list(self.maildir.observers):
                try:
                    observer(path)
                except Exception:
                    # An observer's bug loses no message: it is stored.
                    log.failure(
                        "while telling {observer} of {path}",
                        observer=observer,
                        path=path,
                    )
            return path

        def failed(failure: Failure) -> Failure:
            self.abort()
            return failure

        d.addCallbacks(stored, failed)
        return d

    def abort(self) -> None:
        """
        Throw the message away: nothing is left in C{tmp/} or C{new/}.
        """
        if self.file is not None:
            f, self.file = self.file, None
            try:
                f.close()
            except OSError:
                pass
        try:
            os.unlink(self.tmpPath)
        except FileNotFoundError:
            pass


class GroupCommitter:
    """
    Group commit: the messages of a L{Maildir} that finish at the same time
    are stored together (L{Maildir.store}), in one worker thread, sharing
    the fsync of C{new/} and the journal commits of their files' fsyncs.

    One batch is in flight at a time.  A message that finishes while none is
    starts one at once (no timer, no added wait); those that finish while
    one is on its way gather, and go together as the next.  Each message's
    Deferred fires only once its batch is durable.
    """

    def __init__(self, maildir: Maildir, runInThread: ThreadRunner) -> None:
        self.maildir = maildir
        self._runInThread = runInThread
        self._waiting: list[tuple[MaildirMessage, defer.Deferred[str]]] = []
        self._busy = False

    def commit(self, message: MaildirMessage) -> defer.Deferred[str]:
        """
        Store C{message} with the next batch; fires with its path in C{new/}
        once that is durable.
        """
        d: defer.Deferred[str] = defer.Deferred()
        self._waiting.append((message, d))
        if not self._busy:
            self._startBatch()
        return d

    def _startBatch(self) -> None:
        batch, self._waiting = self._waiting, []
        self._busy = True
        messages = [message for message, _ in batch]

        def store() -> list[OSError | None]:
            return self.maildir.store(messages)

        d = self._runInThread(store)
        d.addCallbacks(
            self._stored,
            self._notDurable,
            callbackArgs=(batch,),
            errbackArgs=(batch,),
        )
        d.addBoth(self._batchDone, batch)

    def _stored(
        self,
        outcomes: list[OSError | None],
        batch: list[tuple[MaildirMessage, defer.Deferred[str]]],
    ) -> None:
        for (message, d), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                d.callback(message.newPath)
            else:
                d.errback(Failure(outcome))

    def _notDurable(
        self,
        failure: Failure,
        batch: list[tuple[MaildirMessage, defer.Deferred[str]]],
    ) -> None:
        # new/ could not be synced: no message of the batch is acknowledged.
        for _, d in batch:
            d.errback(failure)

    def _batchDone(
        self,
        result: object,
        batch: list[tuple[MaildirMessage, defer.Deferred[str]]],
    ) -> None:
        if isinstance(result, Failure):
            # A bug here must not leave a client waiting for ever.
            log.failure("while committing messages", result)
            for _, d in batch:
                if not d.called:
                    d.errback(result)
        self._busy = False
        if self._waiting:
            self._startBatch()
