"""The client against the console server over real loopback sockets."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from smtptut.client import BOUNCED, DEFERRED, DELIVERED, Envelope
from smtptut.config import ClientSettings
from smtptut.delivery import deliverToExchanges
from smtptut.exchange import MailExchange, getMailExchange, makeResolver
from smtptut.message import TUTORIAL_MESSAGE, tutorialMessage

from .helpers import exampleZone, reactor, startConsoleServer, startDNSServer


class DeliveryTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.server = startConsoleServer(reactor, accept="console, @accepted.test")
        self.addCleanup(self.server.stop)
        self.settings = ClientSettings(port=self.server.port, timeout=10)

    def envelope(self, *recipients: str) -> Envelope:
        return Envelope("sender@example.test", recipients, tutorialMessage())

    async def test_exactMessageArrives(self) -> None:
        exchanges = [MailExchange(0, "localhost", ("127.0.0.1",))]
        [outcome] = await deliverToExchanges(
            reactor, exchanges, self.envelope("console@localhost"), self.settings
        )
        self.assertEqual(outcome.status, DELIVERED)
        self.assertEqual(outcome.code, 250)
        [message] = self.server.messages()
        # The trace header and the Message-ID come first, then the message as sent.
        self.assertTrue(message.startswith("Received: from localhost ([127.0.0.1])"))
        self.assertTrue(
            message.endswith(TUTORIAL_MESSAGE.decode().rstrip("\n")), message
        )

    async def test_refusedRecipient(self) -> None:
        exchanges = [MailExchange(0, "localhost", ("127.0.0.1",))]
        outcomes = await deliverToExchanges(
            reactor,
            exchanges,
            self.envelope("console@localhost", "nobody@localhost"),
            self.settings,
        )
        self.assertEqual(
            [(o.recipient, o.status, o.code) for o in outcomes],
            [("console@localhost", DELIVERED, 250), ("nobody@localhost", BOUNCED, 550)],
        )
        self.assertIn("not accepted", outcomes[1].reply)
        self.assertEqual(len(self.server.messages()), 1)

    async def test_nextExchangeWhenRefused(self) -> None:
        # Nothing listens on 127.0.0.2 at that port: the connection is refused.
        exchanges = [
            MailExchange(10, "down.test", ("127.0.0.2",)),
            MailExchange(20, "up.test", ("127.0.0.1",)),
        ]
        [outcome] = await deliverToExchanges(
            reactor, exchanges, self.envelope("console@x.test"), self.settings
        )
        self.assertEqual((outcome.status, outcome.exchange), (DELIVERED, "up.test"))

    async def test_nobodyListening(self) -> None:
        exchanges = [MailExchange(10, "down.test", ("127.0.0.2",))]
        [outcome] = await deliverToExchanges(
            reactor, exchanges, self.envelope("console@x.test"), self.settings
        )
        self.assertEqual(outcome.status, DEFERRED)
        self.assertIn("cannot connect", outcome.reply)

    async def test_throughMX(self) -> None:
        dns = startDNSServer(reactor, "example.test", exampleZone())
        self.addCleanup(dns.stop)
        resolver = makeResolver([("127.0.0.1", dns.port)], lifetime=5)
        exchanges = await getMailExchange(reactor, "example.test", resolver)
        [outcome] = await deliverToExchanges(
            reactor, exchanges, self.envelope("console@example.test"), self.settings
        )
        self.assertEqual(
            (outcome.status, outcome.exchange), (DELIVERED, "mx.example.test")
        )
        self.assertEqual(len(self.server.messages()), 1)
