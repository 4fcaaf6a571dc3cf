"""Release: a stored message sent on with smtptut's client, only to SMTPTUT_RELEASE_TO; and the events websocket."""

from __future__ import annotations

import json
from typing import Any, cast

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from twisted.web.websocket import WebSocketClientEndpoint

from smtptut.client.exchange import makeResolver
from smtptut.client.settings import ClientSettings
from smtptut.inbox.release import Releaser
from smtptut.inbox.testing import InboxSink, startInboxSink
from smtptut.server.settings import AcceptPolicy
from tests.helpers import (
    Behaviour,
    RecordingFactory,
    exampleZone,
    reactor,
    startDNSServer,
)
from tests.inboxhelpers import fetch, message, send


class ReleaseTests(TestCase):
    async def setUpRelease(
        self, patterns: tuple[str, ...] | None, relay: bool
    ) -> tuple[InboxSink, RecordingFactory]:
        # Every name resolves on this loopback nameserver: nothing reaches
        # the system's resolver, even for the relay or an address literal.
        dns = startDNSServer(reactor, "example.test", exampleZone("127.0.0.1"))
        self.addCleanup(dns.stop)
        capture = RecordingFactory(Behaviour())
        listener = reactor.listenTCP(0, capture, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        port = listener.getHost().port
        resolver = makeResolver([("127.0.0.1", dns.port)], lifetime=5)
        releaser = Releaser(
            reactor,
            AcceptPolicy(patterns) if patterns else None,
            resolver,
            ("127.0.0.1", port) if relay else None,
            # Direct to MX: the exchanges of example.test listen on this port.
            ClientSettings(port=port, helo="sink.example.test", timeout=10),
        )
        sink = await startInboxSink(reactor, releaser)
        self.addCleanup(sink.stop)
        await send(sink.smtpPort, message("to release", to="qa@example.test"))
        await sink.waitForMessage("subject:release")
        return sink, capture

    async def test_releaseThroughRelay(self) -> None:
        """
        POST .../release sends the stored message through SMTPTUT_RELEASE_RELAY
        to the allowed recipient, without the sink's Return-Path.
        """
        sink, capture = await self.setUpRelease(("@example.test",), relay=True)
        r = await fetch(
            sink.httpPort,
            "POST",
            "/api/v1/message/latest/release",
            {"To": ["dev@example.test"]},
        )
        self.assertEqual((r.status, r.body), (200, b"ok"))
        [received] = capture.messages
        self.assertEqual(received.recipients, [b"dev@example.test"])
        self.assertEqual(received.sender, b"alice@example.com")
        self.assertIn(b"Subject: to release", received.data)
        self.assertNotIn(b"Return-Path:", received.data)

    async def test_releaseToMX(self) -> None:
        """
        Without a relay, release goes to the recipient domain's MX (found on
        the loopback nameserver).
        """
        sink, capture = await self.setUpRelease(("dev@example.test",), relay=False)
        r = await fetch(
            sink.httpPort,
            "POST",
            "/api/v1/message/latest/release",
            {"To": ["dev@example.test"]},
        )
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(
            [m.recipients for m in capture.messages], [[b"dev@example.test"]]
        )

    async def test_refusedOutsidePatterns(self) -> None:
        """
        A recipient SMTPTUT_RELEASE_TO does not match refuses the whole
        release (Mailpit's 400 and error text): nothing is sent to anyone.
        """
        sink, capture = await self.setUpRelease(("@example.test",), relay=True)
        for to in (
            ["dev@example.test", "victim@example.org"],
            ["victim@example.org"],
            [],
            "x@example.test",
            ["not an address"],
        ):
            r = await fetch(
                sink.httpPort, "POST", "/api/v1/message/latest/release", {"To": to}
            )
            self.assertEqual(r.status, 400, to)
            self.assertIn("Error", r.json())
        self.assertEqual(capture.messages, [])
        self.assertEqual(capture.connections, 0)

    async def test_refusedWithoutSetting(self) -> None:
        """
        Without SMTPTUT_RELEASE_TO, release is disabled, as Mailpit's is without a relay.
        """
        sink, capture = await self.setUpRelease(None, relay=True)
        r = await fetch(
            sink.httpPort,
            "POST",
            "/api/v1/message/latest/release",
            {"To": ["dev@example.test"]},
        )
        self.assertEqual(r.status, 400)
        self.assertIn("disabled", r.json()["Error"])
        self.assertEqual(capture.connections, 0)
        webui = (await fetch(sink.httpPort, "GET", "/api/v1/webui")).json()
        self.assertFalse(webui["MessageRelay"]["Enabled"])


class Listener:
    """
    A websocket client that keeps what it is told.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.waiting: list[tuple[str, defer.Deferred[dict[str, Any]]]] = []
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def textMessageReceived(self, text: str) -> None:
        event = json.loads(text)
        self.events.append(event)
        for kind, d in list(self.waiting):
            if event["Type"] == kind:
                self.waiting.remove((kind, d))
                d.callback(event)

    def connectionLost(self, reason: Any) -> None:
        pass

    def next(self, kind: str) -> defer.Deferred[dict[str, Any]]:
        for event in self.events:
            if event["Type"] == kind:
                self.events.remove(event)
                return defer.succeed(event)
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.waiting.append((kind, d))
        return d.addTimeout(10, reactor)


class ListenerFactory:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def buildProtocol(self, url: str) -> Listener:
        return self.listener


class EventTests(TestCase):
    async def test_newUpdateDelete(self) -> None:
        """
        /api/events announces a new message (its summary), a read flag and
        a deletion, with Mailpit's {"Type", "Data"} shape.
        """
        sink = await startInboxSink(reactor)
        self.addCleanup(sink.stop)
        listener = Listener()
        endpoint = WebSocketClientEndpoint.new(
            reactor, f"ws://127.0.0.1:{sink.httpPort}/api/events"
        )
        await endpoint.connect(cast(Any, ListenerFactory(listener)))
        self.addCleanup(lambda: listener.transport.loseConnection())
        await send(sink.smtpPort, message("announced"))
        new = await listener.next("new")
        self.assertEqual(new["Data"]["Subject"], "announced")
        self.assertEqual(new["Data"]["Read"], False)
        stats = await listener.next("stats")
        self.assertEqual(stats["Data"]["Total"], 1)
        await fetch(sink.httpPort, "GET", f"/api/v1/message/{new['Data']['ID']}")
        update = await listener.next("update")
        self.assertEqual(update["Data"], {"ID": new["Data"]["ID"], "Read": True})
        await fetch(
            sink.httpPort, "DELETE", "/api/v1/messages", {"IDs": [new["Data"]["ID"]]}
        )
        deleted = await listener.next("delete")
        self.assertEqual(deleted["Data"], {"ID": new["Data"]["ID"]})
