"""A bounded ESMTPClient: replies capped in lines and octets, and timed from command to whole reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.mail import smtp

from smtptut.client.model import NO_REPLY, Timeouts

#: The longest reply line taken, CRLF included (RFC 5321 §4.5.3.1.5).
MAX_REPLY_LINE = 512

#: The most lines one reply may have: an EHLO reply has a dozen or two.
MAX_REPLY_LINES = 100


class BoundedESMTPClient(smtp.ESMTPClient):
    """
    Twisted's C{ESMTPClient}, with replies bounded in size and time, and
    the first reason a session failed kept in L{failure}.

    @ivar clock: what times the waits (set before the connection is made:
        Twisted's C{TimeoutMixin} would use the global reactor).
    @ivar timeouts: how long to wait for what (RFC 5321 §4.5.3.2).
    """

    clock: IReactorTime
    timeouts = Timeouts()
    failure: tuple[str, int] | None = None

    # Longer lines are refused (lineLengthExceeded), not kept.
    MAX_LENGTH = MAX_REPLY_LINE - 2

    def lineReceived(self, line: bytes) -> None:
        # Twisted's SMTPClient.lineReceived keeps every continuation line of
        # a reply and restarts the timer on each (no Twisted ticket found):
        # a server sending "250-..." forever, or one line every few seconds,
        # would grow the client without end and hold it for ever.  Here a
        # reply has at most MAX_REPLY_LINES lines, and the timer runs from
        # the command to the end of its reply: only a whole reply restarts it.
        if line[3:4] == b"-" and line[:3].isdigit():
            if len(self.resp) >= MAX_REPLY_LINES - 1:
                self._giveUp(
                    f"the server's reply is longer than {MAX_REPLY_LINES} lines"
                )
                return None
            self.resp.append(line[4:])
            return None
        super().lineReceived(line)
        return None

    def lineLengthExceeded(self, line: bytes) -> None:
        self._giveUp(
            f"the server's reply has a line longer than {MAX_REPLY_LINE} octets"
        )

    def _giveUp(self, reason: str) -> None:
        """
        Stop at a reply that breaks the protocol: drop what is buffered and
        abort the connection; what is not settled is deferred with C{reason}.
        """
        self._setFailure(reason, NO_REPLY)
        self.resp = []
        self.clearLineBuffer()
        cast(ITCPTransport, self.transport).abortConnection()

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        # TimeoutMixin would use the global reactor; use the clock given.
        return self.clock.callLater(period, func)

    def sendLine(self, line: bytes) -> None:
        self._commandSent(line)
        super().sendLine(line)

    def _commandSent(self, line: bytes) -> None:
        """
        Time the reply to the command C{line}.
        """
        wait = self.timeouts.dataCommand if line == b"DATA" else self.timeouts.command
        if self.timeOut != wait:
            self.setTimeout(wait)

    def timeoutConnection(self) -> None:
        self._setFailure(f"no reply from the server in {self.timeOut:g} s", NO_REPLY)
        cast(ITCPTransport, self.transport).abortConnection()

    def _setFailure(self, reason: str, code: int) -> None:
        """
        Note why the session failed, unless it failed already.
        """
        if self.failure is None:
            self.failure = (reason, code)
