"""The client against the console server over real loopback sockets."""

from __future__ import annotations

import io
import socket
from typing import Any

from hypothesis import given, settings
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.client import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    AttemptResult,
    Envelope,
    SMTPClientFactory,
    Timeouts,
)
from smtptut.config import ClientSettings
from smtptut.delivery import deliverToExchanges
from smtptut.exchange import MailExchange, getMailExchange, makeResolver
from smtptut.message import (
    TUTORIAL_MESSAGE,
    MessageSource,
    checkMessage,
    tutorialMessage,
)

from .helpers import (
    Behaviour,
    RecordingFactory,
    aaaa,
    exampleZone,
    listenOnLoopbacks,
    mx,
    reactor,
    startConsoleServer,
    startDNSServer,
)
from .strategies import lineEnds, messageLines


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
        # No EHLO name set: the literal of the client's end of the connection.
        self.assertTrue(message.startswith("Received: from [127.0.0.1] ([127.0.0.1])"))
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

    async def test_throughIPv6(self) -> None:
        # An exchange with only an AAAA record, served on ::1.
        server6 = startConsoleServer(reactor, interface="::1")
        self.addCleanup(server6.stop)
        dns = startDNSServer(
            reactor,
            "example.test",
            {
                "example.test": [mx(10, "mx6.example.test")],
                "mx6.example.test": [aaaa("::1")],
            },
        )
        self.addCleanup(dns.stop)
        resolver = makeResolver([("127.0.0.1", dns.port)], lifetime=5)
        exchanges = await getMailExchange(reactor, "example.test", resolver)
        settings = ClientSettings(port=server6.port, timeout=10)
        [outcome] = await deliverToExchanges(
            reactor, exchanges, self.envelope("console@example.test"), settings
        )
        self.assertEqual(
            (outcome.status, outcome.exchange, outcome.address),
            (DELIVERED, "mx6.example.test", "::1"),
        )
        [message] = server6.messages()
        self.assertTrue(
            message.startswith("Received: from [IPv6:::1] ([::1])"), message
        )


def source(data: bytes) -> MessageSource:
    return checkMessage("test", lambda: io.BytesIO(data))


def filler(size: int) -> bytes:
    """
    C{size} octets of 80-column lines.
    """
    full, rest = divmod(size, 80)
    return (b"a" * 79 + b"\n") * full + (b"b" * (rest - 1) + b"\n" if rest else b"")


class ConnectionTests(TestCase):
    """
    Many envelopes over one connection, as the benchmark drives it.
    """

    timeout = 60

    def serve(self, **behaviour: Any) -> RecordingFactory:
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": Behaviour(**behaviour)})
        self.addCleanup(servers.stop)
        self.port = servers.port
        return servers.factories["127.0.0.2"]

    async def sendOver(
        self, envelopes: list[Envelope], **options: Any
    ) -> AttemptResult:
        factory = SMTPClientFactory(envelopes, "client.test", timeout=10, **options)
        endpoint = HostnameEndpoint(reactor, "127.0.0.2", self.port)
        client: Any = await endpoint.connect(factory)
        handle = client.transport.getHandle()
        self.noDelay = handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        result: AttemptResult = await factory.finished
        return result

    async def test_pipelinedWithoutRSET(self) -> None:
        server = self.serve()
        envelopes = [
            Envelope("s@client.test", (f"r{i}@x.test", "r@y.test"), tutorialMessage())
            for i in range(3)
        ]
        result = await self.sendOver(envelopes)
        self.assertEqual([o.status for o in result.outcomes], [DELIVERED] * 6)
        self.assertEqual((server.connections, len(server.messages)), (1, 3))
        self.assertNotIn(b"RSET", server.commands)
        # MAIL, both RCPTs and DATA went out together (RFC 2920).
        self.assertTrue(
            any(
                c.startswith(b"MAIL FROM:<s@client.test>")
                and c.endswith(b"RCPT TO:<r@y.test>\r\nDATA\r\n")
                for c in server.chunks
            ),
            server.chunks,
        )
        self.assertEqual(self.noDelay, 1)
        self.assertEqual(server.commands[-1], b"QUIT")

    async def test_oneCommandAtATime(self) -> None:
        server = self.serve(extensions=(b"8BITMIME",))
        envelopes = [
            Envelope("s@client.test", ("a@x.test", "b@x.test"), tutorialMessage())
        ] * 2
        result = await self.sendOver(envelopes)
        self.assertEqual([o.status for o in result.outcomes], [DELIVERED] * 4)
        self.assertEqual(len(server.messages), 2)
        self.assertFalse(any(c.count(b"\r\n") > 1 for c in server.chunks))

    async def test_everyRecipientRefusedThenTheNext(self) -> None:
        for pipelining in (True, False):
            extensions = (b"PIPELINING",) if pipelining else ()
            server = self.serve(extensions=extensions)
            envelopes = [
                Envelope("s@client.test", ("bad@x.test",), tutorialMessage()),
                Envelope("s@client.test", ("good@x.test",), tutorialMessage()),
            ]
            result = await self.sendOver(envelopes)
            self.assertEqual(
                [(o.recipient, o.status, o.code) for o in result.outcomes],
                [("bad@x.test", BOUNCED, 550), ("good@x.test", DELIVERED, 250)],
            )
            # The open transaction is reset before the next MAIL, and only then.
            self.assertEqual(server.commands.count(b"RSET"), 1)
            self.assertEqual(len(server.messages), 1)
            self.assertEqual(result.unsettled, [])

    async def test_mailParameters(self) -> None:
        server = self.serve()
        eight = source(b"Subject: x\n\ncaf\xc3\xa9\n")
        seven = source(b"Subject: x\n\ncafe\n")
        await self.sendOver(
            [
                Envelope("s@client.test", ("a@x.test",), eight),
                Envelope("s@client.test", ("a@x.test",), seven),
            ]
        )
        self.assertEqual(
            [m.mailLine for m in server.messages],
            [
                b"FROM:<s@client.test> SIZE=%d BODY=8BITMIME" % eight.size,
                b"FROM:<s@client.test> SIZE=%d" % seven.size,
            ],
        )

    async def test_no8BITMIMEOffered(self) -> None:
        """
        8-bit data goes only to a server that offers 8BITMIME (RFC 6152): to
        another, the message bounces with a line saying why, before MAIL,
        and the next (7-bit) message on the connection still goes.
        """
        server = self.serve(extensions=(b"PIPELINING",))
        result = await self.sendOver(
            [
                Envelope("s@client.test", ("a@x.test",), source(b"\n\xc3\xa9\n")),
                Envelope("s@client.test", ("b@x.test",), source(b"\nplain\n")),
            ]
        )
        [eight, seven] = result.outcomes
        self.assertEqual(
            str(eight),
            "a@x.test: bounced: the message has 8-bit data and the server does"
            " not offer 8BITMIME (RFC 6152): not sent",
        )
        self.assertEqual((seven.recipient, seven.status), ("b@x.test", DELIVERED))
        [message] = server.messages
        self.assertEqual(message.recipients, [b"b@x.test"])
        self.assertEqual(
            [c for c in server.commands if c.startswith(b"MAIL")],
            [b"MAIL FROM:<s@client.test>"],
        )

    async def test_bccFieldsNotSent(self) -> None:
        server = self.serve()
        data = b"To: a@x.test\nBcc: b@x.test,\n\tc@x.test\nSubject: s\n\nbody\n"
        result = await self.sendOver(
            [Envelope("s@client.test", ("a@x.test", "b@x.test"), source(data))]
        )
        self.assertEqual([o.status for o in result.outcomes], [DELIVERED] * 2)
        [message] = server.messages
        self.assertNotIn(b"Bcc", message.data)
        self.assertNotIn(b"c@x.test", message.data)
        self.assertTrue(
            message.data.endswith(b"To: a@x.test\r\nSubject: s\r\n\r\nbody\r\n")
        )
        # The SIZE announced is the size sent.
        self.assertIn(b"SIZE=%d" % len(message.data), message.mailLine)

    async def test_exactMessageAtEveryChunkBoundary(self) -> None:
        server = self.serve()
        headers = b"Date: now\r\nMessage-ID: <x@y>\r\n\r\n"
        bodies = [
            filler(offset - len(headers)) + b".x\n.\n..\nend\n"
            for offset in [*range(16378, 16390), *range(65530, 65542)]
        ]
        bodies.append(b".first line\r\nCRLF\r\nLF\nmixed\r\n.\r\n\xe2\x82\xac\n")
        envelopes = [
            Envelope("s@client.test", ("a@x.test",), source(headers + body))
            for body in bodies
        ]
        result = await self.sendOver(envelopes)
        self.assertEqual({o.status for o in result.outcomes}, {DELIVERED})
        self.assertEqual(len(server.messages), len(bodies))
        for body, received in zip(bodies, server.messages, strict=True):
            expected = headers + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            self.assertEqual(received.data, expected)


class TimeoutTests(SynchronousTestCase):
    """
    RFC 5321 §4.5.3.2's waits, on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = SMTPClientFactory(
            [Envelope("s@client.test", ("a@x.test",), tutorialMessage())],
            clock=self.clock,
        )
        self.client = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)

    def reply(self, line: bytes) -> None:
        self.transport.clear()
        self.client.dataReceived(line + b"\r\n")

    def assertTimesOutAfter(self, seconds: float) -> None:
        self.clock.advance(seconds - 1)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.client.connectionLost()
        result = self.successResultOf(self.factory.finished)
        self.assertEqual(result.error, f"no reply from the server in {seconds:g} s")
        self.assertEqual(len(result.unsettled), 1)

    def test_greeting(self) -> None:
        self.assertTimesOutAfter(300)

    def test_data(self) -> None:
        self.reply(b"220 hi")
        self.reply(b"250 hi")
        self.reply(b"250 sender ok")
        self.reply(b"250 recipient ok")
        self.assertEqual(self.transport.value(), b"DATA\r\n")
        self.assertTimesOutAfter(120)

    def test_finalDot(self) -> None:
        self.reply(b"220 hi")
        self.reply(b"250 hi")
        self.reply(b"250 sender ok")
        self.reply(b"250 recipient ok")
        self.reply(b"354 go ahead")
        producer = self.transport.producer
        assert producer is not None
        while self.transport.producer is not None:
            producer.resumeProducing()
        self.assertTrue(self.transport.value().endswith(b"\r\n.\r\n"))
        self.assertTimesOutAfter(600)

    def test_settingOverridesAll(self) -> None:
        factory = SMTPClientFactory([], timeout=7, clock=self.clock)
        self.assertEqual(factory.timeouts, Timeouts.uniform(7))


class SessionTests(SynchronousTestCase):
    """
    The client's side of a session, reply by reply.
    """

    def connect(self, *envelopes: Envelope) -> None:
        self.factory = SMTPClientFactory(list(envelopes), "client.test", clock=Clock())
        self.client = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)

    def reply(self, line: bytes) -> bytes:
        """
        Answer with C{line}; return what the client sends back.
        """
        self.transport.clear()
        self.client.dataReceived(line + b"\r\n")
        return self.transport.value()

    def test_heloFallback(self) -> None:
        self.connect(Envelope("s@client.test", ("a@x.test",), tutorialMessage()))
        self.assertEqual(self.reply(b"220 old server"), b"EHLO client.test\r\n")
        self.assertEqual(self.reply(b"500 what?"), b"HELO client.test\r\n")
        self.assertEqual(self.reply(b"250 hello"), b"MAIL FROM:<s@client.test>\r\n")
        self.assertEqual(self.reply(b"250 ok"), b"RCPT TO:<a@x.test>\r\n")
        self.assertEqual(self.reply(b"250 ok"), b"DATA\r\n")

    def test_manyEightBitMessagesBounceWithoutRecursion(self) -> None:
        eight = source(b"Subject: x\n\ncaf\xc3\xa9\n")
        self.connect(
            *[Envelope("s@client.test", (f"r{i}@x.test",), eight) for i in range(3000)]
        )
        self.reply(b"220 hi")
        self.assertEqual(self.reply(b"250 hi"), b"QUIT\r\n")
        self.assertEqual(len(self.client.outcomes), 3000)
        self.assertEqual({o.status for o in self.client.outcomes}, {BOUNCED})

    def test_421MidSessionLeavesTheEnvelopeUnsettled(self) -> None:
        envelope = Envelope("s@client.test", ("a@x.test",), tutorialMessage())
        self.connect(envelope)
        self.reply(b"220 hi")
        self.reply(b"250 hi")
        self.reply(b"250 ok")
        self.reply(b"421 4.4.2 shutting down")
        self.assertTrue(self.transport.disconnecting)
        self.client.connectionLost()
        result = self.successResultOf(self.factory.finished)
        self.assertEqual(result.outcomes, [])
        self.assertEqual(result.unsettled, [envelope])
        self.assertEqual((result.error, result.errorCode), ("4.4.2 shutting down", 421))

    def test_temporaryRecipientFailure(self) -> None:
        self.connect(
            Envelope("s@client.test", ("a@x.test", "b@x.test"), tutorialMessage())
        )
        self.reply(b"220 hi")
        self.reply(b"250-hi\r\n250 PIPELINING")
        self.transport.clear()
        # MAIL, RCPT, RCPT and DATA went together; now their replies.
        self.client.dataReceived(
            b"250 ok\r\n452 4.2.2 mailbox full\r\n250 ok\r\n354 go ahead\r\n"
        )
        producer = self.transport.producer
        assert producer is not None
        while self.transport.producer is not None:
            producer.resumeProducing()
        self.client.dataReceived(b"250 2.0.0 queued\r\n")
        self.assertEqual(
            [(o.recipient, o.status, o.code) for o in self.client.outcomes],
            [("a@x.test", DEFERRED, 452), ("b@x.test", DELIVERED, 250)],
        )


class WireProperties(SynchronousTestCase):
    """
    Whatever the message, the server gets it exactly (after unstuffing).
    """

    @settings(max_examples=100, deadline=None)
    @given(lines=messageLines(), end=lineEnds)
    def test_dataSection(self, lines: list[bytes], end: bytes) -> None:
        data = b"Date: x\nMessage-ID: <x@y>\n\n" + b"".join(
            line + end for line in lines
        )
        session = SessionTests()
        session.connect(Envelope("s@client.test", ("a@x.test",), source(data)))
        session.reply(b"220 hi")
        session.reply(b"250-hi\r\n250-8BITMIME\r\n250 PIPELINING")
        session.transport.clear()
        session.client.dataReceived(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        producer = session.transport.producer
        assert producer is not None
        while session.transport.producer is not None:
            producer.resumeProducing()
        wire = session.transport.value()
        self.assertTrue(wire.endswith(b"\r\n.\r\n") or wire == b".\r\n")
        received = [
            line[1:] if line.startswith(b".") else line
            for line in wire[:-3].split(b"\r\n")[:-1]
        ]
        expected = data.replace(b"\r\n", b"\n").split(b"\n")[:-1]
        self.assertEqual(received, expected)
