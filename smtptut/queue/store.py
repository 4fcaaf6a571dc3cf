"""The queue on disk: one directory per message, written and updated durably, locked per message."""

from __future__ import annotations

import enum
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime

#: The subdirectories of a queue: entries being written (or removed), and
#: the queued entries, one directory each.
TMP = "tmp"
ENTRIES = "entries"

#: The files of an entry.
MESSAGE = "message.eml"
ENVELOPE = "envelope.json"
LOCK = "lock"

#: The envelope file's format.
VERSION = 1

#: What is left in tmp/ by a crash is removed after this many seconds (the
#: Maildir rule, 36 hours: long enough for any writer still at work).
STALE_TMP = 36 * 3600.0

_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z.-]{0,99}")


class QueueError(Exception):
    """
    The queue cannot do what was asked; the text is one line saying why.
    """


class RecipientState(enum.StrEnum):
    """
    Where a recipient of a queued message stands.
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    BOUNCED = "bounced"


@dataclass(frozen=True)
class Recipient:
    """
    One recipient of a queued message and its delivery so far.

    @ivar nextTry: when it is due (seconds since the epoch).
    @ivar lastReply: the last outcome's reply or cause, as the outcome line says it.
    @ivar lastCode: the SMTP code of that reply, 0 for none.
    @ivar exchange: the exchange that gave it, if any.
    @ivar lastAttempt: when it was last tried, L{None} before the first try.
    @ivar notified: whether the sender was sent a DSN for its failure.
    @ivar expired: whether it bounced because the message passed its
        maximum age (rather than a permanent refusal).
    """

    address: str
    state: RecipientState = RecipientState.PENDING
    attempts: int = 0
    nextTry: float = 0.0
    lastReply: str = ""
    lastCode: int = 0
    exchange: str | None = None
    lastAttempt: float | None = None
    notified: bool = False
    expired: bool = False


@dataclass(frozen=True)
class Entry:
    """
    A queued message's envelope and state, as its envelope file holds them.

    @ivar sender: the envelope sender, C{""} for the null sender C{<>}.
    @ivar created: when it was queued (seconds since the epoch).
    @ivar notices: how many DSNs were made for it (each one's ID derives
        from the count, so a DSN made again after a crash is not queued twice).
    """

    id: str
    sender: str
    created: float
    recipients: tuple[Recipient, ...]
    size: int = 0
    notices: int = 0

    def due(self, now: float) -> list[Recipient]:
        """
        The pending recipients whose next try has come.
        """
        return [
            r
            for r in self.recipients
            if r.state is RecipientState.PENDING and r.nextTry <= now
        ]

    @property
    def pending(self) -> list[Recipient]:
        """
        The recipients not delivered or bounced yet.
        """
        return [r for r in self.recipients if r.state is RecipientState.PENDING]

    @property
    def unnotified(self) -> list[Recipient]:
        """
        The recipients that bounced and whose sender was not told yet.
        """
        return [
            r
            for r in self.recipients
            if r.state is RecipientState.BOUNCED and not r.notified
        ]

    @property
    def finished(self) -> bool:
        """
        Whether no recipient is pending any more.
        """
        return not self.pending

    def updated(self, recipients: Iterable[Recipient]) -> Entry:
        """
        This entry with C{recipients} replacing those of the same address.
        """
        new = {r.address: r for r in recipients}
        return replace(
            self,
            recipients=tuple(new.get(r.address, r) for r in self.recipients),
        )

    def toJSON(self) -> bytes:
        """
        The envelope file's text.
        """
        data: dict[str, Any] = {"version": VERSION, **asdict(self)}
        return json.dumps(data, indent=1).encode("ascii") + b"\n"

    @classmethod
    def fromJSON(cls, text: bytes) -> Entry:
        """
        An entry from its envelope file's text.

        @raise ValueError: the text is not an envelope file.
        """
        data = json.loads(text)
        if data.pop("version", None) != VERSION:
            raise ValueError("unknown envelope file version")
        recipients = tuple(
            Recipient(**{**r, "state": RecipientState(r["state"])})
            for r in data.pop("recipients")
        )
        return cls(recipients=recipients, **data)


def fsyncDirectory(path: str) -> None:
    """
    Make the entries of the directory C{path} durable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writeFile(path: str, chunks: Iterable[bytes]) -> int:
    """
    Write a new file and fsync it; the number of octets written.
    """
    size = 0
    with open(path, "xb") as f:
        for chunk in chunks:
            f.write(chunk)
            size += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return size


def replaceDurably(path: str, data: bytes) -> None:
    """
    Replace the file C{path} with C{data} so that a crash at any moment
    leaves the old file or the new one, whole: a new file, fsync'd,
    renamed over the old one, and the directory fsync'd.
    """
    tmp = path + ".new"
    try:
        os.unlink(tmp)  # left by a crash
    except FileNotFoundError:
        pass
    _writeFile(tmp, [data])
    os.rename(tmp, path)
    fsyncDirectory(os.path.dirname(path))


@dataclass
class Queue:
    """
    A queue directory: C{tmp/} and C{entries/ID/} with the message, its
    envelope file and its lock file.

    @ivar clock: gives the time stamps (queued at, next try).
    """

    path: str
    clock: IReactorTime

    def __post_init__(self) -> None:
        self.path = os.path.abspath(self.path)
        for sub in (TMP, ENTRIES):
            os.makedirs(os.path.join(self.path, sub), mode=0o700, exist_ok=True)

    def entryPath(self, entryId: str, name: str = "") -> str:
        """
        The directory of an entry, or the file C{name} in it.
        """
        return os.path.join(self.path, ENTRIES, entryId, name)

    def messagePath(self, entryId: str) -> str:
        """
        The message file of an entry.
        """
        return self.entryPath(entryId, MESSAGE)

    def newId(self) -> str:
        """
        A new entry's ID: the time it was queued, then random (IDs sort in
        the order messages came).
        """
        return f"{int(self.clock.seconds())}.{secrets.token_hex(5)}"

    def enqueue(
        self,
        sender: str,
        recipients: Sequence[str],
        message: Iterable[bytes],
        entryId: str | None = None,
    ) -> Entry:
        """
        Queue a message for C{recipients}: when this returns, the message and
        its envelope are on disk for good (each file fsync'd, the entry's
        directory renamed into C{entries/}, both directories fsync'd); until
        then, no runner sees any of it.

        @param entryId: the ID to use; an entry of that ID already queued is
            returned as it is.
        @raise OSError: the queue cannot be written (nothing is left in it).
        """
        entryId = entryId or self.newId()
        final = self.entryPath(entryId)
        if os.path.isdir(final):
            existing = self.load(entryId)
            if existing is not None:
                return existing
        staging = os.path.join(self.path, TMP, entryId)
        os.mkdir(staging, 0o700)
        try:
            size = _writeFile(os.path.join(staging, MESSAGE), message)
            now = self.clock.seconds()
            entry = Entry(
                entryId,
                sender,
                now,
                tuple(Recipient(r, nextTry=now) for r in dict.fromkeys(recipients)),
                size,
            )
            _writeFile(os.path.join(staging, ENVELOPE), [entry.toJSON()])
            _writeFile(os.path.join(staging, LOCK), [])
            fsyncDirectory(staging)
            os.rename(staging, final.rstrip(os.sep))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsyncDirectory(os.path.join(self.path, ENTRIES))
        fsyncDirectory(os.path.join(self.path, TMP))
        return entry

    def ids(self) -> list[str]:
        """
        The IDs of the queued entries, oldest first.
        """
        try:
            names = os.listdir(os.path.join(self.path, ENTRIES))
        except FileNotFoundError:
            return []
        return sorted((n for n in names if _ID.fullmatch(n)), key=_idOrder)

    def load(self, entryId: str) -> Entry | None:
        """
        The entry C{entryId} as its envelope file says, or L{None} when it is
        not (or no longer) queued.

        @raise QueueError: its envelope file is not one smtptut wrote.
        """
        try:
            with open(self.entryPath(entryId, ENVELOPE), "rb") as f:
                text = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return Entry.fromJSON(text)
        except (ValueError, KeyError, TypeError) as e:
            raise QueueError(
                f"queue entry {entryId}: damaged envelope file ({e})"
            ) from None

    def entries(self) -> list[Entry]:
        """
        Every queued entry, oldest first.
        """
        return [e for e in (self.load(i) for i in self.ids()) if e is not None]

    def lock(self, entryId: str) -> EntryLock | None:
        """
        Take the entry's lock without waiting: L{None} when another runner
        (or command) holds it, or the entry is not queued.
        """
        if not _ID.fullmatch(entryId):
            return None
        try:
            fd = os.open(self.entryPath(entryId, LOCK), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # Read only now: the holder before may have updated or removed it.
        entry = self.load(entryId)
        if entry is None:
            os.close(fd)
            return None
        return EntryLock(self, entry, fd)

    def removeEntries(self, locks: Sequence[EntryLock]) -> list[OSError]:
        """
        Take the locked entries out of the queue for good: each moved into
        C{tmp/} (no runner sees it any more), one fsync of C{entries/} for
        all of them, the locks released, then what they left deleted.
        Blocking (closing a lock file that is then deleted waits on the
        file system too), and safe in a thread when no one else uses the
        locks: it touches nothing else.

        @return: why each entry that could not be moved was not, each one
            still queued (and so sent again later, never lost).
        @raise OSError: the removals could not be made durable.
        """
        moved, failed = [], []
        for lock in locks:
            gone = os.path.join(self.path, TMP, lock.id + ".removed")
            try:
                os.rename(self.entryPath(lock.id).rstrip(os.sep), gone)
            except OSError as e:
                failed.append(e)
                continue
            moved.append(gone)
        try:
            if moved:
                fsyncDirectory(os.path.join(self.path, ENTRIES))
        finally:
            for lock in locks:
                lock.release()
        for path in moved:
            shutil.rmtree(path, ignore_errors=True)
        return failed

    def cleanTmp(self, now: float | None = None) -> None:
        """
        Remove what crashes left in C{tmp/} (entries never queued, entries
        removed halfway) once it is older than L{STALE_TMP}.
        """
        now = time.time() if now is None else now
        tmp = os.path.join(self.path, TMP)
        for name in os.listdir(tmp):
            path = os.path.join(tmp, name)
            try:
                if now - os.lstat(path).st_mtime > STALE_TMP:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:
                pass


def _idOrder(entryId: str) -> tuple[int, str]:
    head = entryId.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, entryId)


class EntryLock:
    """
    A queued entry, locked: only its holder delivers, updates or removes it.
    The lock goes with the process (SIGKILL included), as C{flock} locks do.

    @ivar entry: the entry as last saved.
    """

    def __init__(self, queue: Queue, entry: Entry, fd: int) -> None:
        self.queue = queue
        self.entry = entry
        self._fd: int | None = fd

    @property
    def id(self) -> str:
        """
        The entry's ID.
        """
        return self.entry.id

    def save(self, entry: Entry) -> None:
        """
        Record C{entry} durably (see L{replaceDurably}).
        """
        assert self._fd is not None, "saved after release"
        replaceDurably(self.queue.entryPath(entry.id, ENVELOPE), entry.toJSON())
        self.entry = entry

    def openMessage(self) -> IO[bytes]:
        """
        The queued message, to read.
        """
        return open(self.queue.messagePath(self.id), "rb")

    def remove(self) -> None:
        """
        Take the entry out of the queue for good (moved into C{tmp/} at once,
        then deleted), and release the lock.
        """
        failed = self.queue.removeEntries([self])
        if failed:
            raise failed[0]

    def release(self) -> None:
        """
        Let another runner have the entry (again and again: idempotent).
        """
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> EntryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
