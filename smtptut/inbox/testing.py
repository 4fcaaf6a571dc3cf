"""An in-process sink with its inbox for tests: free ports, a Maildir of its own, assertions on what came."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.application import service
from twisted.internet import defer, task

from smtptut.config import AcceptPolicy, ServerSettings
from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.service import InboxService, makeSinkWithInbox
from smtptut.inbox.settings import InboxSettings
from smtptut.inbox.shapes import summary


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
    services: service.MultiService
    inbox: InboxService
    smtpPort: int
    httpPort: int
    maildir: str
    _owned: list[str] = field(default_factory=list)

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
            await defer.maybeDeferred(self.services.stopService)
            for path in self._owned:
                shutil.rmtree(path, ignore_errors=True)

        return defer.ensureDeferred(stopping())


async def startInboxSink(
    reactor: Any,
    settings: ServerSettings | None = None,
    inbox: InboxSettings | None = None,
) -> InboxSink:
    """
    Start a sink taking mail for everyone, and its inbox, on free loopback
    ports, storing into a Maildir of its own unless C{settings} names one.
    """
    owned = []
    if settings is None:
        maildir = tempfile.mkdtemp(prefix="smtptut-test-")
        owned.append(maildir)
        settings = ServerSettings(
            listen="tcp:0:interface=127.0.0.1",
            accept=AcceptPolicy(("*",)),
            printMessages=False,
            maildir=maildir,
        )
    inbox = inbox or InboxSettings(http="tcp:0:interface=127.0.0.1")
    services = makeSinkWithInbox(settings, inbox, reactor, program="smtptut.testing")
    assert isinstance(services, service.MultiService)
    services.startService()
    sink, inboxService = list(services)
    assert isinstance(inboxService, InboxService)
    await inboxService.index.rescan()
    smtp = sink.port.getHost().port
    assert inboxService.port is not None
    http = inboxService.port.getHost().port  # type: ignore[attr-defined]
    return InboxSink(
        reactor, services, inboxService, smtp, http, inboxService.maildir, owned
    )


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
