"""Flow control for ConsoleESMTP: answer no faster than the client reads, read no more meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtptut.server.framing import Framer
from smtptut.server.session import Session
from smtptut.server.settings import ServerSettings

#: Input held, in octets, while the client leaves its replies unread: then
#: reading stops too.
MAX_HELD_INPUT = 65536


class FlowControl:
    """
    L{ConsoleESMTP} as its transport's push producer (for the write buffer)
    and as a reader that holds input while a reply is awaited (an AUTH
    check, a message being stored).  What it uses of the protocol is
    declared here.
    """

    log: Logger
    transport: ITransport | None
    settings: ServerSettings
    session: Session
    framer: Framer
    _waiting: bool
    _repliesBlocked: bool
    _readingPaused: bool
    _eof: bool
    _process: Callable[[], None]
    _flush: Callable[[], None]
    _close: Callable[[], None]
    _afterTransaction: Callable[[], None]
    _watchLine: Callable[[bool], None]
    setTimeout: Callable[[float | None], object]

    def pauseProducing(self) -> None:
        """
        The client leaves its replies unread (or TLS holds them until its
        handshake is done): answer no more commands until they drain, and
        read no more than L{MAX_HELD_INPUT}, so that a client that pipelines
        without reading cannot grow the server.
        """
        self._repliesBlocked = True
        self._updateReading()

    def resumeProducing(self) -> None:
        self._repliesBlocked = False
        self._continue()
        self._updateReading()

    def stopProducing(self) -> None:
        self._producing = False

    def _updateReading(self) -> None:
        """
        Read from the client unless a reply is awaited (an AUTH check, a
        message being stored) or the client is not reading its replies and
        has sent enough meanwhile.  Reading must go on while only TLS holds
        replies back: the TLS handshake needs it.  A session that is over
        reads always, so that the client's close (or its TLS close_notify,
        which Twisted's TLS close waits for) is seen.
        """
        pause = not self.session.closed and (
            self._waiting
            or (self._repliesBlocked and self.framer.buffered >= MAX_HELD_INPUT)
        )
        if self.transport is None or pause == self._readingPaused:
            return
        self._readingPaused = pause
        if pause:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _continue(self) -> None:
        """
        Go on with the input received so far, unless something holds it;
        after the client's end of input, close once all of it is answered.
        """
        if self.session.closed or self._waiting or self._repliesBlocked:
            return
        self._process()
        self._flush()
        if self._eof and not self._waiting and not self._repliesBlocked:
            self._close()

    def _wait(self, d: defer.Deferred[None]) -> None:
        """
        Hold further input until C{d} (which sends the reply) has fired; when
        it has fired already (the console, an AUTH check in memory) the
        caller's loop simply goes on.
        """
        self._waiting = True
        paused = False

        def resume(result: None) -> None:
            self._waiting = False
            if not self.session.closed:
                self._afterTransaction()
            if not paused:
                return
            if not self.session.closed:
                self.setTimeout(self.settings.idleTimeout)
            # Whatever came meanwhile (a pipelined QUIT may close the
            # session); reading goes on in every case, closed or not.
            self._continue()
            self._watchLine(True)
            self._updateReading()

        def failed(failure: Failure) -> None:
            self.log.failure("while answering", failure)
            resume(None)

        # One addCallbacks, not an addErrback and an addCallback: each runs
        # the Deferred's callback loop again when it has fired already.
        d.addCallbacks(resume, failed)
        if self._waiting:
            paused = True
            self.setTimeout(None)
            self._watchLine(False)
            self._updateReading()
