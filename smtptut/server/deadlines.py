"""A session's deadlines on a clock: the whole session, each line, the close."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from smtptut.server.commands import Replies, Reply
from smtptut.server.settings import ServerSettings

#: Longest wait, in seconds, for a closing connection to finish (the client
#: to read the last replies, TLS close_notify): then it is cut.
CLOSE_TIMEOUT = 10.0


class Deadlines:
    """
    The deadlines besides the idle timer (which restarts with every octet,
    so that a client trickling one a second would hold its slot forever
    without these): the whole session, one line from its first octet to its
    end, and a close the client does not finish.
    """

    def __init__(
        self,
        clock: IReactorTime,
        settings: ServerSettings,
        timedOut: Callable[[Reply], None],
        cut: Callable[[], None],
    ) -> None:
        """
        @param timedOut: called with the 421 to give when the session or a
            line takes too long.
        @param cut: called when a close takes too long.
        """
        self.clock = clock
        self.settings = settings
        self.timedOut = timedOut
        self.cut = cut
        self._session: IDelayedCall | None = clock.callLater(
            settings.sessionTimeout, timedOut, Replies.SESSION_TOO_LONG
        )
        self._line: IDelayedCall | None = None
        self._close: IDelayedCall | None = None

    def watchLine(self, pending: bool, lineEnded: bool) -> None:
        """
        Give a line begun (C{pending}) C{settings.commandTimeout} seconds
        from its first octet to its end, as Postfix's smtpd_timeout; a line
        ended and another begun (C{lineEnded}) starts again; nothing pending
        (or the server busy), no deadline.
        """
        timer = self._line
        if not pending:
            if timer is not None:
                if timer.active():
                    timer.cancel()
                self._line = None
            return
        if timer is None or not timer.active():
            self._line = self.clock.callLater(
                self.settings.commandTimeout, self.timedOut, Replies.LINE_TOO_SLOW
            )
        elif lineEnded:
            timer.reset(self.settings.commandTimeout)

    def closing(self) -> None:
        """
        The connection is closing: a client that reads no more, or never
        answers TLS close_notify, would hold it (and its slot) forever.
        """
        if self._close is None:
            self._close = self.clock.callLater(
                min(self.settings.idleTimeout, CLOSE_TIMEOUT), self.cut
            )

    def cancel(self) -> None:
        """
        The connection is gone: no deadline is left.
        """
        for timer in (self._session, self._line, self._close):
            if timer is not None and timer.active():
                timer.cancel()
        self._session = self._line = None
