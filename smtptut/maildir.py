"""A Maildir that messages are streamed into: tmp/, fsync, rename into new/."""

from __future__ import annotations

import errno
import itertools
import os
import socket
import time
from collections.abc import Callable
from typing import IO, Any

from twisted.internet import defer, threads

_counter = itertools.count()


class Maildir:
    """
    A Maildir directory (C{tmp}, C{new}, C{cur}), created if missing.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.path, sub), mode=0o700, exist_ok=True)
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        #: Inbox hook (issue 11): called with each message's path in new/
        #: once it is committed (the inbox indexes it).
        self.onStored: Callable[[str], object] | None = None

    def checkWritable(self) -> None:
        """
        Raise L{OSError} unless messages can be written into C{tmp/} and
        moved into C{new/} (a read-only mount, a full disk, wrong owner).
        """
        probe = os.path.join(self.path, "tmp", self.uniqueName() + ".probe")
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

    def uniqueName(self) -> str:
        """
        A file name no other delivery uses (the Maildir convention).
        """
        now = time.time()
        seconds = int(now)
        micro = int((now - seconds) * 1e6)
        return f"{seconds}.M{micro}P{os.getpid()}Q{next(_counter)}.{self.host}"

    def newMessage(self, reactor: Any) -> MaildirMessage:
        """
        Start a message in C{tmp/}.
        """
        return MaildirMessage(self, self.uniqueName(), reactor)


class MaildirMessage:
    """
    One message being written into C{tmp/}; L{commit} moves it to C{new/}.
    """

    def __init__(self, maildir: Maildir, name: str, reactor: Any) -> None:
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

        def failed(failure: Any) -> Any:
            self.abort()
            return failure

        d.addErrback(failed)
        d.addCallback(self._stored)  # inbox hook (issue 11)
        return d

    def _stored(self, path: str) -> str:
        # Inbox hook (issue 11): the index is told; its trouble is not the sender's.
        if self.maildir.onStored is not None:
            try:
                self.maildir.onStored(path)
            except Exception:
                pass
        return path

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
