"""Happy Eyeballs (RFC 8305 §4, §5) across an exchange's resolved addresses: families interleaved, staggered connections, the first to connect wins."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain, zip_longest
from typing import Any

from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

#: How long one connection attempt has before the next address is tried
#: beside it (RFC 8305 §5's recommended "Connection Attempt Delay", and
#: Twisted's HostnameEndpoint's for names).
CONNECT_DELAY = 0.25


def interleaveFamilies(addresses: Sequence[str]) -> list[str]:
    """
    C{addresses} in the order to try them (RFC 8305 §4): IPv6 first, then
    the families in turn (IPv6, IPv4, IPv6, IPv4, ...), each family's
    addresses in the order given (DNS gives the A records, then the AAAA
    records); what is left of one family when the other runs out comes
    last.  With the staggered start of L{raceConnections}, a broken route
    of one family then costs one L{CONNECT_DELAY} before the other family
    is tried, not one per address of the broken family.
    """
    ipv6 = [a for a in addresses if isIPv6Address(a)]
    ipv4 = [a for a in addresses if not isIPv6Address(a)]
    pairs = chain.from_iterable(zip_longest(ipv6, ipv4))
    return [a for a in pairs if a is not None]


@dataclass
class Race:
    """
    How a race of connection attempts ended.

    @ivar winner: the index of the address that connected, if any.
    @ivar failures: the index and the reason of each attempt that failed.
    @ivar cancelled: the indexes of attempts started, then given up for the
        winner (they may be tried again later).
    """

    winner: int | None = None
    failures: list[tuple[int, BaseException]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)


def raceConnections(
    clock: IReactorTime,
    connectors: Sequence[Callable[[], Deferred[Any]]],
    delay: float = CONNECT_DELAY,
) -> Deferred[Race]:
    """
    Start C{connectors[0]}; whenever the latest attempt has not connected
    after C{delay} seconds, or fails, start the next one beside those under
    way.  The first to connect wins and the others are cancelled; addresses
    not reached are left unstarted.  Twisted's C{HostnameEndpoint} does this
    for a name it resolves itself; an exchange's addresses come resolved.

    @return: a L{Deferred} firing with the L{Race}, never failing.
    """
    race = Race()
    done: Deferred[Race] = Deferred()
    underWay: dict[int, Deferred[Any]] = {}
    timer: list[IDelayedCall] = []
    started = [0]

    def stopTimer() -> None:
        if timer and timer[0].active():
            timer[0].cancel()
        timer.clear()

    def startNext() -> None:
        stopTimer()
        index = started[0]
        if index >= len(connectors) or done.called:
            return
        started[0] += 1
        attempt = connectors[index]()
        underWay[index] = attempt
        attempt.addCallbacks(
            connected, failed, callbackArgs=(index,), errbackArgs=(index,)
        )
        if not done.called and started[0] < len(connectors) and index in underWay:
            timer.append(clock.callLater(delay, startNext))

    def connected(result: object, index: int) -> None:
        underWay.pop(index, None)
        if done.called:
            return
        race.winner = index
        stopTimer()
        losers = [(other, underWay.pop(other)) for other in list(underWay)]
        # Fired first: the losers' cancellation errbacks see the race is over.
        done.callback(race)
        for other, attempt in losers:
            race.cancelled.append(other)
            attempt.cancel()

    def failed(reason: Failure, index: int) -> None:
        underWay.pop(index, None)
        if done.called:
            # Cancelled for the winner (CancelledError): nothing to report.
            return
        race.failures.append((index, reason.value or Exception(str(reason))))
        if started[0] < len(connectors):
            # RFC 8305 §5: a failure starts the next attempt at once.
            startNext()
        elif not underWay:
            stopTimer()
            done.callback(race)

    startNext()
    return done
