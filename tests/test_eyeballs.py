"""Happy Eyeballs (RFC 8305): the order of an exchange's addresses, and the race on a Clock (when each attempt starts, who wins, what is cancelled) and on loopback."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.abstract import isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError as Refused
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from smtptut.addresses import parseAddress
from smtptut.client.exchange import MailExchange, getMailExchange, makeResolver
from smtptut.client.eyeballs import (
    CONNECT_DELAY,
    Race,
    interleaveFamilies,
    raceConnections,
)
from smtptut.client.message import tutorialMessage
from smtptut.client.model import Envelope, RecipientOutcome, Status, TLSPolicy
from smtptut.client.routing import deliverToExchanges
from smtptut.client.settings import ClientSettings

from .helpers import (
    Behaviour,
    Zone,
    a,
    aaaa,
    listenOnLoopbacks,
    mx,
    reactor,
    startDNSServer,
)


class RaceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.attempts: list[Deferred[Any]] = []
        self.startedAt: list[float] = []
        self.cancelled: list[int] = []

    def connector(self, index: int) -> Any:
        def connect() -> Deferred[Any]:
            d: Deferred[Any] = Deferred(lambda _: self.cancelled.append(index))
            self.attempts.append(d)
            self.startedAt.append(self.clock.seconds())
            return d

        return connect

    def race(self, count: int) -> Deferred[Race]:
        return raceConnections(self.clock, [self.connector(i) for i in range(count)])

    def test_nextAfterTheDelayFirstToConnectWins(self) -> None:
        done = self.race(3)
        self.assertEqual(len(self.attempts), 1)
        self.clock.advance(CONNECT_DELAY)
        self.assertEqual(len(self.attempts), 2)
        self.attempts[1].callback("connected")
        race = self.successResultOf(done)
        self.assertEqual((race.winner, race.failures, race.cancelled), (1, [], [0]))
        self.assertEqual(self.cancelled, [0])
        self.clock.advance(10)
        # The third address was never started.
        self.assertEqual(self.startedAt, [0, CONNECT_DELAY])

    def test_failureStartsTheNextAtOnce(self) -> None:
        done = self.race(2)
        self.clock.advance(0.1)
        self.attempts[0].errback(ConnectionRefusedError("refused"))
        self.assertEqual(self.startedAt, [0, 0.1])
        self.attempts[1].callback("connected")
        race = self.successResultOf(done)
        self.assertEqual(race.winner, 1)
        self.assertEqual([i for i, _ in race.failures], [0])

    def test_allFail(self) -> None:
        done = self.race(2)
        self.clock.advance(CONNECT_DELAY)
        self.attempts[1].errback(ConnectionRefusedError("b"))
        self.assertNoResult(done)
        self.attempts[0].errback(TimeoutError("a"))
        race = self.successResultOf(done)
        self.assertIsNone(race.winner)
        self.assertEqual(sorted(i for i, _ in race.failures), [0, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class InterleaveTests(SynchronousTestCase):
    def test_ipv6FirstThenAlternating(self) -> None:
        """
        RFC 8305 §4: IPv6 first, then one of each family in turn, each
        family in its own order; the longer family's rest comes last.
        """
        self.assertEqual(
            interleaveFamilies(
                ["127.0.0.2", "127.0.0.3", "127.0.0.4", "2001:db8::1", "2001:db8::2"]
            ),
            ["2001:db8::1", "127.0.0.2", "2001:db8::2", "127.0.0.3", "127.0.0.4"],
        )
        self.assertEqual(
            interleaveFamilies(["127.0.0.2", "::1", "2001:db8::1", "2001:db8::2"]),
            ["::1", "127.0.0.2", "2001:db8::1", "2001:db8::2"],
        )

    def test_oneFamilyUnchanged(self) -> None:
        self.assertEqual(
            interleaveFamilies(["127.0.0.3", "127.0.0.2"]), ["127.0.0.3", "127.0.0.2"]
        )
        self.assertEqual(interleaveFamilies(["::1"]), ["::1"])
        self.assertEqual(interleaveFamilies([]), [])


def settingsFor(port: int, timeout: float = 20) -> ClientSettings:
    return ClientSettings(
        sender="sender@client.test",
        recipients=(parseAddress("user@example.test"),),
        port=port,
        tlsPolicy=TLSPolicy.OFF,
        timeout=timeout,
    )


ENVELOPE = Envelope("sender@client.test", ("user@example.test",), tutorialMessage())


@implementer(IHostnameResolver)
class LiteralResolver:
    """
    Resolves an IP address literal to itself, at once (a MemoryReactor's own
    resolver makes every name 127.0.0.1); routing only ever gives literals.
    """

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = HostResolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        kind = IPv6Address if isIPv6Address(hostName) else IPv4Address
        resolutionReceiver.addressResolved(kind("TCP", hostName, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IHostResolution)
@dataclass
class HostResolution:
    name: str

    def cancel(self) -> None:
        pass


class AttemptOrderTests(SynchronousTestCase):
    """
    The connection attempts of one delivery, on a MemoryReactorClock: it
    records every C{connectTCP} and connects nothing (so the addresses of
    2001:db8::/32, the documentation prefix, are never reached).
    """

    def test_interleavedAndStaggered(self) -> None:
        """
        The addresses as DNS gives them (A records, then AAAA) are tried
        IPv6 first, families alternating, one more every CONNECT_DELAY
        while none has connected; when all are refused the recipient is
        deferred, offered on each.
        """
        clock = MemoryReactorClock()
        clock.installNameResolver(LiteralResolver())
        exchange = MailExchange(
            10,
            "dual.example.test",
            ("127.0.0.2", "127.0.0.3", "127.0.0.4", "2001:db8::1", "2001:db8::2"),
        )
        done = deliverToExchanges(clock, [exchange], ENVELOPE, settingsFor(2525))
        startedAt: dict[str, float] = {}
        for _ in range(10):
            for host, port, *_ in clock.tcpClients:
                self.assertEqual(port, 2525)
                startedAt.setdefault(host, clock.seconds())
            clock.advance(CONNECT_DELAY)
        self.assertEqual(
            list(startedAt),
            ["2001:db8::1", "127.0.0.2", "2001:db8::2", "127.0.0.3", "127.0.0.4"],
        )
        self.assertEqual(
            list(startedAt.values()), [i * CONNECT_DELAY for i in range(5)]
        )
        self.assertNoResult(done)
        for (_, _, factory, *_), connector in zip(
            clock.tcpClients, clock.connectors, strict=True
        ):
            # What a reactor does with a refused connection attempt.
            factory.clientConnectionFailed(connector, Failure(Refused()))
        [outcome] = self.successResultOf(done)
        self.assertEqual((outcome.status, outcome.attempts), (Status.DEFERRED, 5))
        self.assertIn("cannot connect to port 2525", outcome.reply)


def blackHole6(port: int) -> list[socket.socket]:
    """
    A TCP port on ::1 that never answers (as a broken IPv6 route): a
    listener with a backlog of 0 that never accepts, its queue filled, so
    every further SYN is dropped.  The sockets are returned to be closed.
    """
    listener = socket.socket(socket.AF_INET6)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::1", port))
    listener.listen(0)
    held = [listener]
    for _ in range(3):
        filler = socket.socket(socket.AF_INET6)
        filler.setblocking(False)
        filler.connect_ex(("::1", port))
        held.append(filler)
    return held


class DualStackTests(TestCase):
    """
    An exchange with an A record (127.0.0.2) and an AAAA record (::1),
    from the test's loopback DNS, delivered to on loopback.
    """

    timeout = 60

    def setUp(self) -> None:
        zone: Zone = {
            "example.test": [mx(10, "dual.example.test")],
            "dual.example.test": [a("127.0.0.2"), aaaa("::1")],
        }
        dns = startDNSServer(reactor, "example.test", zone)
        self.addCleanup(dns.stop)
        self.resolver = makeResolver([("127.0.0.1", dns.port)], lifetime=5)

    async def deliver(self, port: int) -> tuple[RecipientOutcome, float]:
        [exchange] = await getMailExchange(reactor, "example.test", self.resolver)
        # dnspython gives the A records first: the order is routing's doing.
        self.assertEqual(exchange.addresses, ("127.0.0.2", "::1"))
        start = reactor.seconds()
        [outcome] = await deliverToExchanges(
            reactor, [exchange], ENVELOPE, settingsFor(port)
        )
        return outcome, reactor.seconds() - start

    async def test_ipv6First(self) -> None:
        """
        With both addresses answering, the message goes over IPv6 and the
        IPv4 address is never connected to.
        """
        servers = listenOnLoopbacks(
            reactor, {"::1": Behaviour(), "127.0.0.2": Behaviour()}
        )
        self.addCleanup(servers.stop)
        outcome, _ = await self.deliver(servers.port)
        self.assertEqual((outcome.status, outcome.address), (Status.DELIVERED, "::1"))
        self.assertEqual(len(servers.factories["::1"].messages), 1)
        self.assertEqual(servers.factories["127.0.0.2"].connections, 0)

    async def test_blackHoledIPv6CostsTheConnectDelay(self) -> None:
        """
        An IPv6 address that never answers (tried first) beside a working
        IPv4 one: delivered over IPv4 within a small multiple of
        CONNECT_DELAY, not the 20 s connect timeout -- and no sooner than
        CONNECT_DELAY, since IPv6 was tried first.
        """
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": Behaviour()})
        self.addCleanup(servers.stop)
        for s in blackHole6(servers.port):
            self.addCleanup(s.close)
        outcome, elapsed = await self.deliver(servers.port)
        self.assertEqual(
            (outcome.status, outcome.address), (Status.DELIVERED, "127.0.0.2")
        )
        self.assertGreaterEqual(elapsed, CONNECT_DELAY)
        self.assertLess(elapsed, 4 * CONNECT_DELAY + 2)
        self.assertEqual(len(servers.factories["127.0.0.2"].messages), 1)
