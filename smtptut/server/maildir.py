"""A Maildir that messages are streamed into: tmp/, fsync, rename into new/."""

from __future__ import annotations

import errno
import itertools
import os
import socket
from collections.abc import Callable
from typing import IO

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

_counter = itertools.count()


class Maildir:
    """
    A Maildir directory (C{tmp}, C{new}, C{cur}), created if missing.

    @ivar observers: called with the path in C{new/} of each message once it
        is stored (durably): the seam for whatever shows or indexes them.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.observers: list[Callable[[str], object]] = []
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

    def _commit(self) -> str:
        assert self.file is not None
        f, self.file = self.file, None
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        os.rename(self.tmpPath, self.newPath)
        # The rename is durable only once the directory is synced too; a
        # message left in tmp/ by a crash would be cleaned up by readers.
        self.maildir.syncNew()
        return self.newPath

    def commit(self) -> defer.Deferred[str]:
        """
        Flush, fsync and rename into C{new/} (in a thread: fsync blocks);
        fires with the path in C{new/}.  On failure the C{tmp/} file is removed.
        """
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self._commit
        )

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
