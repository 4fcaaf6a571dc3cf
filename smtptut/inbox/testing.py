"""An in-process sink with its inbox for tests: free ports, a Maildir of its own, assertions on what came."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task

from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.release import Releaser
from smtptut.inbox.service import InboxService, makeInboxService
from smtptut.inbox.shapes import summary
from smtptut.testing import Sink, startSink


class NoMessage(Exception):
    """
    No message matched within the time given.
    """


@dataclass
class InboxSink:
    """
    A running sink: send to C{127.0.0.1:smtpPort}, look at C{url}.
    """

    reactor: Any
    sink: Sink
    inbox: InboxService
    httpPort: int

    @property
    def smtpPort(self) -> int:
        return self.sink.port

    @property
    def maildir(self) -> str:
        return self.sink.maildir

    @property
    def index(self) -> MaildirIndex:
        return self.inbox.index

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpPort}/"

    def messages(self, query: str = "") -> list[dict[str, Any]]:
        """
        Mailpit message summaries, newest first (matching C{query}, Mailpit's search syntax).
        """
        return [summary(r) for r in self.index.page(query, 0, 10000).rows]

    def waitForMessage(
        self, query: str = "", timeout: float = 5.0
    ) -> defer.Deferred[dict[str, Any]]:
        """
        Fires with the newest message matching C{query} once there is one,
        or fails with L{NoMessage} after C{timeout} seconds.
        """
        clock = self.reactor
        deadline = clock.seconds() + timeout

        async def poll() -> dict[str, Any]:
            while True:
                await self.index.rescan()
                found = self.messages(query)
                if found:
                    return found[0]
                if clock.seconds() >= deadline:
                    raise NoMessage(f"no message matching {query!r} in {timeout}s")
                await task.deferLater(clock, 0.05, lambda: None)

        return defer.ensureDeferred(poll())

    def clear(self) -> None:
        """
        Delete every message (from the Maildir and the index).
        """
        self.index.delete(None)

    def stop(self) -> defer.Deferred[None]:
        """
        Stop both listeners and remove the Maildir made for the test.
        """

        async def stopping() -> None:
            try:
                await defer.maybeDeferred(self.inbox.stopService)
            finally:
                await self.sink.stop()

        return defer.ensureDeferred(stopping())


async def startInboxSink(
    reactor: Any, releaser: Releaser | None = None, **settings: Any
) -> InboxSink:
    """
    Start L{smtptut.testing.startSink}'s sink (everyone's mail, a Maildir of
    its own unless C{maildir} is given) and its inbox on free loopback ports.

    @param settings: L{ServerSettings} fields to change, as for C{startSink}
        (C{httpUsers=path} for a login).
    @param releaser: how release sends (tests give one resolving on a
        loopback nameserver); by default, none is allowed.
    """
    settings = {"http": "tcp:0:interface=127.0.0.1", **settings}
    sink = startSink(reactor, **settings)
    try:
        maildir = sink.factory.delivery.maildir
        assert maildir is not None
        inbox = makeInboxService(
            sink.settings,
            maildir,
            reactor,
            program="smtptut.testing",
            releaser=releaser,
        )
        inbox.startService()
        await inbox.index.rescan()
    except BaseException:
        await sink.stop()
        raise
    assert inbox.port is not None
    http = inbox.port.getHost().port  # type: ignore[attr-defined]
    return InboxSink(reactor, sink, inbox, http)


class BlockingInboxSink:
    """
    An L{InboxSink} for code that runs outside the reactor (a pytest test):
    each call waits for its answer from the reactor's thread.
    """

    def __init__(self, sink: InboxSink) -> None:
        self.sink = sink
        self.smtpPort = sink.smtpPort
        self.httpPort = sink.httpPort
        self.url = sink.url
        self.maildir = sink.maildir

    def messages(self, query: str = "") -> list[dict[str, Any]]:
        return _blocking(self.sink.reactor, lambda: self.sink.messages(query))

    def waitForMessage(self, query: str = "", timeout: float = 5.0) -> dict[str, Any]:
        return _blocking(
            self.sink.reactor, lambda: self.sink.waitForMessage(query, timeout)
        )

    def clear(self) -> None:
        _blocking(self.sink.reactor, self.sink.clear)


def _blocking(reactor: Any, f: Any) -> Any:
    from twisted.internet.threads import blockingCallFromThread

    return blockingCallFromThread(reactor, lambda: defer.maybeDeferred(f))


_reactorThread: list[Any] = []


@contextlib.contextmanager
def inboxSinkInThread() -> Iterator[BlockingInboxSink]:
    """
    A sink with its inbox for tests that run no reactor (pytest): the
    global reactor runs in a daemon thread, started once per process.
    """
    from twisted.internet import reactor

    if not _reactorThread:
        thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            daemon=True,
            name="smtptut-reactor",
        )
        thread.start()
        _reactorThread.append(thread)
    sink = _blocking(reactor, lambda: defer.ensureDeferred(startInboxSink(reactor)))
    try:
        yield BlockingInboxSink(sink)
    finally:
        _blocking(reactor, sink.stop)
