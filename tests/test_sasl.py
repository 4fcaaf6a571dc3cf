"""AUTH PLAIN and LOGIN exchanges on Twisted's challengers, sans-IO; the throttle's delay."""

from __future__ import annotations

import base64

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from smtptut.server.commands import Replies
from smtptut.server.sasl import AuthExchange, AuthThrottle, Challenge, Credentials


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class AuthExchangeTests(SynchronousTestCase):
    def test_plainWithInitialResponse(self) -> None:
        step = AuthExchange(b"PLAIN").start(b64(b"\0guest\0password"))
        assert isinstance(step, Credentials)
        self.assertEqual(step.username, b"guest")
        self.assertEqual(step.credentials.password, b"password")

    def test_plainAfterAnEmptyChallenge(self) -> None:
        # RFC 4954 §4: "334 " with nothing, then the response.
        exchange = AuthExchange(b"PLAIN")
        self.assertEqual(exchange.start(b""), Challenge(b""))
        step = exchange.respond(b64(b"\0guest\0password"))
        assert isinstance(step, Credentials)
        self.assertTrue(step.credentials.checkPassword(b"password"))

    def test_login(self) -> None:
        # The prompts every client expects, in Twisted's order.
        exchange = AuthExchange(b"LOGIN")
        self.assertEqual(exchange.start(b""), Challenge(b64(b"Username:")))
        self.assertEqual(exchange.respond(b64(b"guest")), Challenge(b64(b"Password:")))
        step = exchange.respond(b64(b"password"))
        assert isinstance(step, Credentials)
        self.assertEqual(
            (step.username, step.credentials.password), (b"guest", b"password")
        )

    def test_loginWithInitialResponse(self) -> None:
        exchange = AuthExchange(b"LOGIN")
        self.assertEqual(exchange.start(b64(b"guest")), Challenge(b64(b"Password:")))
        step = exchange.respond(b"=")
        assert isinstance(step, Credentials)
        self.assertEqual(step.credentials.password, b"")

    def test_refusals(self) -> None:
        self.assertEqual(AuthExchange(b"LOGIN").start(b"*"), Replies.AUTH_CANCELLED)
        self.assertEqual(
            AuthExchange(b"LOGIN").start(b"not base64!"), Replies.AUTH_UNDECODABLE
        )
        self.assertEqual(
            AuthExchange(b"PLAIN").start(b64(b"guest\0password")),
            Replies.AUTH_BAD_PLAIN,
        )
        self.assertRaises(KeyError, AuthExchange, b"CRAM-MD5")


class AuthThrottleTests(SynchronousTestCase):
    def test_delayDoublesWithTheAddressFailures(self) -> None:
        clock = task.Clock()
        throttle = AuthThrottle(clock, baseDelay=2.0)
        self.assertEqual(throttle.delay("p", 1), 2.0)
        for _ in range(4):
            throttle.attempt("p")
        self.assertEqual(throttle.delay("p", 1), 2.0 * 2**3)
        self.assertEqual(throttle.delay("q", 3), 6.0)
        for _ in range(10):
            throttle.attempt("p")
        self.assertEqual(throttle.delay("p", 1), 2.0 * 32)
        clock.advance(throttle.window)
        self.assertEqual(throttle.failures("p"), 0)
