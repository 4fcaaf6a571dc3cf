"""Happy Eyeballs' race (RFC 8305 §5) on a Clock: when each attempt starts, who wins, what is cancelled."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from smtptut.client.eyeballs import CONNECT_DELAY, Race, raceConnections


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
