"""The client against the console server over real loopback sockets."""

from __future__ import annotations

import io
import socket
from typing import Any

from hypothesis import given, settings
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.client.exchange import MailExchange, getMailExchange, makeResolver
from smtptut.client.message import (
    CHUNK_SIZE,
    TUTORIAL_MESSAGE,
    MessageSource,
    checkMessage,
    tutorialMessage,
)
from smtptut.client.model import AttemptResult, Envelope, Status, Timeouts, TLSPolicy
from smtptut.client.protocol import SMTPClientFactory, SMTPTutorialClient
from smtptut.client.replies import MAX_REPLY_LINES
from smtptut.client.routing import deliverToExchanges
from smtptut.client.settings import ClientSettings

from .helpers import (
    Behaviour,
    RecordingFactory,
    aaaa,
    exampleZone,
    listenOnLoopbacks,
    mx,
    reactor,
    startAiosmtpd,
    startConsoleServer,
    startDNSServer,
    startSink,
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
        self.assertEqual(outcome.status, Status.DELIVERED)
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
            [
                ("console@localhost", Status.DELIVERED, 250),
                ("nobody@localhost", Status.BOUNCED, 550),
            ],
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
        self.assertEqual(
            (outcome.status, outcome.exchange), (Status.DELIVERED, "up.test")
        )

    async def test_nobodyListening(self) -> None:
        exchanges = [MailExchange(10, "down.test", ("127.0.0.2",))]
        [outcome] = await deliverToExchanges(
            reactor, exchanges, self.envelope("console@x.test"), self.settings
        )
        self.assertEqual(outcome.status, Status.DEFERRED)
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
            (outcome.status, outcome.exchange), (Status.DELIVERED, "mx.example.test")
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
            (Status.DELIVERED, "mx6.example.test", "::1"),
        )
        [message] = server6.messages()
        self.assertTrue(
            message.startswith("Received: from [IPv6:::1] ([IPv6:::1])"), message
        )


def source(data: bytes) -> MessageSource:
    return checkMessage("test", lambda: io.BytesIO(data))


def filler(size: int) -> bytes:
    """
    C{size} octets of 80-column lines.
    """
    full, rest = divmod(size, 80)
    return (b"a" * 79 + b"\n") * full + (b"b" * (rest - 1) + b"\n" if rest else b"")


class QueueWatchingClient(SMTPTutorialClient):
    """
    Notes, after each batch of the planner's steps, how many octets the
    transport still holds for a later reactor turn.
    """

    def _perform(self, steps: list[Any]) -> None:
        super()._perform(steps)
        transport: Any = self.transport
        if steps and transport.connected and not transport.disconnecting:
            queued = len(transport.dataBuffer) + transport._tempDataLen
            self.factory.queued.append(queued)  # type: ignore[attr-defined]


class SendingNowTests(TestCase):
    """
    Over a real loopback connection, the client's commands and a one-chunk
    message leave in the write that makes them, not a reactor turn later.
    """

    timeout = 30

    def setUp(self) -> None:
        self.server = startConsoleServer(reactor, accept="*")
        self.addCleanup(self.server.stop)

    async def send(self, *messages: MessageSource) -> tuple[AttemptResult, list[int]]:
        envelopes = [Envelope("s@client.test", ("a@x.test",), m) for m in messages]
        factory = SMTPClientFactory(envelopes, "client.test", timeout=10, clock=reactor)
        factory.protocol = QueueWatchingClient
        factory.queued = []  # type: ignore[attr-defined]
        reactor.connectTCP("127.0.0.1", self.server.port, factory)
        result = await factory.finished
        return result, factory.queued  # type: ignore[attr-defined]

    async def test_nothingWaitsForTheNextTurn(self) -> None:
        result, queued = await self.send(*[source(filler(1024))] * 3)
        self.assertEqual([o.status for o in result.outcomes], [Status.DELIVERED] * 3)
        self.assertEqual(len(self.server.messages()), 3)
        # MAIL/RCPT/DATA of each message, each message, QUIT: sent at once.
        self.assertGreaterEqual(len(queued), 6)
        self.assertEqual(set(queued), {0})

    async def test_messageOfManyChunksArrivesWhole(self) -> None:
        # Over one chunk, the producer stays registered and the transport
        # asks it for the rest as its buffer drains: nothing stalls.
        body = filler(5 * CHUNK_SIZE + 123)
        result, _ = await self.send(source(b"Subject: big\n\n" + body))
        [outcome] = result.outcomes
        self.assertEqual(outcome.status, Status.DELIVERED)
        [message] = self.server.messages()
        self.assertTrue(message.rstrip("\n").endswith(body.decode().rstrip("\n")))


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
        factory = SMTPClientFactory(
            envelopes, "client.test", timeout=10, clock=reactor, **options
        )
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
        self.assertEqual([o.status for o in result.outcomes], [Status.DELIVERED] * 6)
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
        self.assertEqual([o.status for o in result.outcomes], [Status.DELIVERED] * 4)
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
                [
                    ("bad@x.test", Status.BOUNCED, 550),
                    ("good@x.test", Status.DELIVERED, 250),
                ],
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
        self.assertEqual(
            (seven.recipient, seven.status), ("b@x.test", Status.DELIVERED)
        )
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
        self.assertEqual([o.status for o in result.outcomes], [Status.DELIVERED] * 2)
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
        self.assertEqual({o.status for o in result.outcomes}, {Status.DELIVERED})
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

    def test_pipelinedCommandsInOneWrite(self) -> None:
        self.connect(
            Envelope("s@client.test", ("a@x.test", "b@x.test"), tutorialMessage())
        )
        self.reply(b"220 hi")
        writes: list[bytes] = []
        self.transport.write = writes.append  # type: ignore[method-assign]
        self.client.dataReceived(b"250-hi\r\n250 PIPELINING\r\n")
        self.assertEqual(
            writes,
            [
                b"MAIL FROM:<s@client.test>\r\nRCPT TO:<a@x.test>\r\n"
                b"RCPT TO:<b@x.test>\r\nDATA\r\n"
            ],
        )

    def test_manyEightBitMessagesBounceWithoutRecursion(self) -> None:
        eight = source(b"Subject: x\n\ncaf\xc3\xa9\n")
        self.connect(
            *[Envelope("s@client.test", (f"r{i}@x.test",), eight) for i in range(3000)]
        )
        self.reply(b"220 hi")
        self.assertEqual(self.reply(b"250 hi"), b"QUIT\r\n")
        self.assertEqual(len(self.client.outcomes), 3000)
        self.assertEqual({o.status for o in self.client.outcomes}, {Status.BOUNCED})

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
            [("a@x.test", Status.DEFERRED, 452), ("b@x.test", Status.DELIVERED, 250)],
        )

    def pipelinedTransaction(self, *replies: bytes) -> bytes:
        """
        Answer a pipelined MAIL, RCPTs and DATA with C{replies} and, after a
        354, take the message and say 250; what the client sends next.
        """
        self.transport.clear()
        self.client.dataReceived(b"".join(r + b"\r\n" for r in replies))
        producer = self.transport.producer
        if producer is not None:
            while self.transport.producer is not None:
                producer.resumeProducing()
            self.assertTrue(self.transport.value().endswith(b"\r\n.\r\n"))
            return self.reply(b"250 2.0.0 queued")
        return self.transport.value()

    def test_recipientLimitSendsTheRestNext(self) -> None:
        self.connect(
            Envelope("s@client.test", ("a@x.test", "b@x.test"), tutorialMessage()),
        )
        self.reply(b"220 hi")
        sent = self.reply(b"250-hi\r\n250 PIPELINING")
        self.assertEqual(sent.count(b"RCPT"), 2)
        sent = self.pipelinedTransaction(
            b"250 ok", b"250 ok", b"452 4.5.3 Error: too many recipients", b"354 go"
        )
        # Another transaction for b at once, on the same connection.
        self.assertEqual(
            sent, b"MAIL FROM:<s@client.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
        )
        sent = self.pipelinedTransaction(b"250 ok", b"250 ok", b"354 go")
        self.assertEqual(sent, b"QUIT\r\n")
        self.assertEqual(
            [(o.recipient, o.status) for o in self.client.outcomes],
            [("a@x.test", Status.DELIVERED), ("b@x.test", Status.DELIVERED)],
        )

    def test_recipientLimitWithNothingTaken(self) -> None:
        # No recipient taken at all: no endless round of transactions.
        self.connect(Envelope("s@client.test", ("a@x.test",), tutorialMessage()))
        self.reply(b"220 hi")
        self.reply(b"250-hi\r\n250 PIPELINING")
        sent = self.pipelinedTransaction(
            b"250 ok", b"452 4.5.3 too many recipients", b"554 no valid recipients"
        )
        self.assertEqual(sent, b"RSET\r\n")
        self.assertEqual(self.reply(b"250 reset"), b"QUIT\r\n")
        # Every RCPT deferred: the recipient is left for the next exchange
        # (issue 12), deferred with the 452 if none takes it.
        self.reply(b"221 bye")
        self.client.connectionLost()
        result = self.successResultOf(self.factory.finished)
        self.assertEqual(result.outcomes, [])
        self.assertEqual([e.recipients for e in result.unsettled], [("a@x.test",)])
        self.assertEqual(
            (result.errorCode, result.error), (452, "4.5.3 too many recipients")
        )

    def test_replyBeforeTheFinalDot(self) -> None:
        self.connect(Envelope("s@client.test", ("a@x.test",), tutorialMessage()))
        self.reply(b"220 hi")
        self.reply(b"250-hi\r\n250 PIPELINING")
        self.transport.clear()
        self.client.dataReceived(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        self.assertIsNotNone(self.transport.producer)
        self.client.dataReceived(b"250 2.0.0 queued too early\r\n")
        self.assertNotIn(b"QUIT", self.transport.value())
        self.assertTrue(self.transport.disconnecting)
        self.client.connectionLost()
        result = self.successResultOf(self.factory.finished)
        self.assertEqual(result.outcomes, [])
        self.assertEqual(
            result.error,
            "the server replied before the end of the message:"
            " 250 2.0.0 queued too early",
        )

    def test_refusalBeforeTheFinalDot(self) -> None:
        self.connect(Envelope("s@client.test", ("a@x.test",), tutorialMessage()))
        self.reply(b"220 hi")
        self.reply(b"250-hi\r\n250 PIPELINING")
        self.transport.clear()
        self.client.dataReceived(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        self.client.dataReceived(b"552 5.3.4 message too big\r\n")
        self.assertNotIn(b"QUIT", self.transport.value())
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(
            [(o.status, o.code) for o in self.client.outcomes], [(Status.BOUNCED, 552)]
        )

    def test_closeAfterRefusedRecipient(self) -> None:
        # Exim's ACL drop at RCPT, pipelined: a refused, b never answered.
        envelope = Envelope(
            "s@client.test", ("a@x.test", "b@x.test"), tutorialMessage()
        )
        self.connect(envelope)
        self.reply(b"220 hi")
        self.reply(b"250-hi\r\n250 PIPELINING")
        self.client.dataReceived(b"250 ok\r\n550 Administrative prohibition\r\n")
        self.client.connectionLost()
        result = self.successResultOf(self.factory.finished)
        self.assertEqual(
            [(o.recipient, o.status, o.code) for o in result.outcomes],
            [("a@x.test", Status.BOUNCED, 550)],
        )
        self.assertEqual([e.recipients for e in result.unsettled], [("b@x.test",)])


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


class RecipientLimitTests(TestCase):
    """
    Servers with a recipient limit (RFC 5321 §4.5.3.1.10): the recipients
    past it go in further transactions on the same connection.
    """

    timeout = 60

    def envelope(self, count: int) -> Envelope:
        recipients = tuple(f"r{i}@limit.test" for i in range(count))
        return Envelope("s@client.test", recipients, tutorialMessage())

    async def test_postfixRecipientLimit(self) -> None:
        # aiosmtpd answering as Postfix does with smtpd_recipient_limit=10.
        controller, received, port = startAiosmtpd(self.mktemp(), recipientLimit=10)
        self.addCleanup(controller.stop)
        exchanges = [MailExchange(0, "limit.test", ("127.0.0.1",))]
        envelope = self.envelope(25)
        outcomes = await deliverToExchanges(
            reactor, exchanges, envelope, ClientSettings(port=port, timeout=10)
        )
        self.assertEqual(
            sorted((o.recipient, o.status) for o in outcomes),
            sorted((r, Status.DELIVERED) for r in envelope.recipients),
        )
        self.assertEqual([len(e.rcpt_tos) for e in received], [10, 10, 5])
        self.assertEqual(
            sorted(r for e in received for r in e.rcpt_tos),
            sorted(envelope.recipients),
        )

    async def test_ownServerRecipientLimit(self) -> None:
        # The project's own server with SMTPTUT_MAX_RECIPIENTS=5, as Exim's
        # recipients_max=5, and 8 recipients: one connection, two messages.
        sink = startSink(reactor, maxRecipients=5, accept="*")
        self.addCleanup(sink.stop)
        exchanges = [MailExchange(0, "limit.test", ("127.0.0.1",))]
        outcomes = await deliverToExchanges(
            reactor,
            exchanges,
            self.envelope(8),
            ClientSettings(port=sink.port, timeout=10),
        )
        self.assertEqual([o.status for o in outcomes], [Status.DELIVERED] * 8)
        self.assertEqual(len(sink.messages()), 2)


class HostileSMTP(LineReceiver):
    """
    A server on loopback that breaks the protocol in one of several ways
    (C{factory.mode}), reproducing what real servers or attackers do.
    """

    factory: HostileFactory
    MAX_LENGTH = 100000

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.sent = 0
        self.inData = False
        self.sendLine(b"220 hostile.test ESMTP")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.factory.pending is not None and self.factory.pending.active():
            self.factory.pending.cancel()
        self.factory.lost.append(reason)
        if not self.factory.gone.called:
            self.factory.gone.callback(None)

    def lineReceived(self, line: bytes) -> None:
        mode = self.factory.mode
        self.factory.lines.append(line)
        if self.inData:
            if mode == "early250" and not self.sent:
                # Answers in the middle of the message, before the final dot.
                self.sent = 1
                self.sendLine(b"250 2.0.0 queued early")
            elif line == b".":
                self.inData = False
                self.sendLine(b"250 2.0.0 queued")
            return
        verb = line[:4].upper()
        if verb == b"EHLO":
            if mode == "endless":
                self.endless()
            elif mode == "trickle":
                self.trickle()
            else:
                self.sendLine(b"250-hostile.test\r\n250 PIPELINING")
        elif verb == b"MAIL":
            if mode == "dropAtMail":
                # Exim's ACL "drop" in acl_smtp_mail: a 550, then the close.
                self.sendLine(b"550 Administrative prohibition")
                self.transport.loseConnection()  # type: ignore[union-attr]
            else:
                self.sendLine(b"250 OK")
        elif verb == b"RCPT":
            if mode == "dropAtRcpt":
                # The same in acl_smtp_rcpt.
                self.sendLine(b"550 Administrative prohibition")
                self.transport.loseConnection()  # type: ignore[union-attr]
            else:
                self.sendLine(b"250 Accepted")
        elif verb == b"DATA":
            self.inData = True
            self.sendLine(b"354 Enter message")
        elif verb == b"QUIT":
            self.sendLine(b"221 bye")
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.sendLine(b"500 what")

    def endless(self) -> None:
        # "250-" and 500 octets, for ever: 2000 lines at most here, written
        # 100 at a time while the client is still there.
        if self.transport.disconnecting or self.sent >= 2000:  # type: ignore[union-attr]
            return
        self.transport.write(b"250-" + b"x" * 500 + b"\r\n")  # type: ignore[union-attr]
        self.sent += 1
        if self.sent % 100:
            self.endless()
        else:
            self.factory.pending = self.factory.clock.callLater(0.01, self.endless)

    def trickle(self) -> None:
        # One continuation line every 0.2 s, 100 at most.
        if self.transport.disconnecting or self.sent >= 100:  # type: ignore[union-attr]
            return
        self.transport.write(b"250-still here\r\n")  # type: ignore[union-attr]
        self.sent += 1
        self.factory.pending = self.factory.clock.callLater(0.2, self.trickle)


class HostileFactory(protocol.Factory):
    protocol = HostileSMTP  # type: ignore[assignment]
    noisy = False

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.clock: Any = reactor
        self.connections = 0
        self.lines: list[bytes] = []
        self.lost: list[Failure] = []
        self.pending: Any = None
        self.gone: Deferred[None] = Deferred()


class HostileServerTests(TestCase):
    """
    Servers that close after a reply, answer too early or too much, over
    real loopback sockets.
    """

    timeout = 60

    def serve(self, mode: str) -> HostileFactory:
        factory = HostileFactory(mode)
        listener = reactor.listenTCP(0, factory, interface="127.0.0.2")
        self.addCleanup(listener.stopListening)
        self.port = listener.getHost().port
        return factory

    async def send(
        self, *recipients: str, timeout: float = 10, message: Any = None
    ) -> list[Any]:
        exchanges = [MailExchange(0, "hostile.test", ("127.0.0.2",))]
        envelope = Envelope("s@client.test", recipients, message or tutorialMessage())
        outcomes: list[Any] = await deliverToExchanges(
            reactor,
            exchanges,
            envelope,
            ClientSettings(port=self.port, timeout=timeout),
        )
        return outcomes

    async def test_replyBeforeTheCloseAtMail(self) -> None:
        self.serve("dropAtMail")
        outcomes = await self.send("a@x.test", "b@x.test")
        self.assertEqual(
            [(o.status, o.code, o.reply) for o in outcomes],
            [(Status.BOUNCED, 550, "Administrative prohibition")] * 2,
        )

    async def test_replyBeforeTheCloseAtRcpt(self) -> None:
        self.serve("dropAtRcpt")
        [outcome] = await self.send("a@x.test")
        self.assertEqual(
            (outcome.status, outcome.code, outcome.reply),
            (Status.BOUNCED, 550, "Administrative prohibition"),
        )

    async def test_replyBeforeTheFinalDot(self) -> None:
        server = self.serve("early250")
        # Big enough that the client is still sending when the reply comes.
        big = source(b"Subject: big\n\n" + filler(8 * 2**20))
        [outcome] = await self.send("a@x.test", message=big)
        # Not delivered (the message was not taken whole), and no QUIT was
        # written into the message.
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertIn("replied before the end of the message", outcome.reply)
        self.assertNotIn(b"QUIT", server.lines)

    async def test_endlessReply(self) -> None:
        server = self.serve("endless")
        started = reactor.seconds()
        [outcome] = await self.send("a@x.test")
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertEqual(
            outcome.reply,
            f"the server's reply is longer than {MAX_REPLY_LINES} lines",
        )
        # The client gave up long before the server's 2000 lines.
        self.assertLess(reactor.seconds() - started, 5)
        await server.gone
        self.assertEqual(server.connections, 1)

    async def test_tricklingReplyTimesOut(self) -> None:
        # One line every 0.2 s restarted Twisted's timer for ever; the
        # reply's one deadline of 1 s ends it after 5 lines.
        server = self.serve("trickle")
        started = reactor.seconds()
        [outcome] = await self.send("a@x.test", timeout=1)
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertEqual(outcome.reply, "no reply from the server in 1 s")
        self.assertLess(reactor.seconds() - started, 5)
        await server.gone
        self.assertEqual(server.connections, 1)


class ReplyBoundTests(SynchronousTestCase):
    """
    A reply's size and time are bounded, reply by reply.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = SMTPClientFactory(
            [Envelope("s@client.test", ("a@x.test",), tutorialMessage())],
            "client.test",
            clock=self.clock,
        )
        self.client = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)

    def result(self) -> AttemptResult:
        self.assertTrue(self.transport.disconnecting)
        self.client.connectionLost()
        result: AttemptResult = self.successResultOf(self.factory.finished)
        return result

    def test_tooManyLines(self) -> None:
        self.client.dataReceived(b"220-hi\r\n" * (MAX_REPLY_LINES - 1))
        self.assertFalse(self.transport.disconnecting)
        self.client.dataReceived(b"220-one too many\r\n" + b"220-more\r\n" * 50)
        self.assertEqual(self.client.resp, [])
        self.assertEqual(
            self.result().error,
            f"the server's reply is longer than {MAX_REPLY_LINES} lines",
        )

    def test_longestLinesTaken(self) -> None:
        line = b"220 " + b"x" * 506 + b"\r\n"
        self.client.dataReceived(line)
        self.assertEqual(self.transport.value(), b"EHLO client.test\r\n")

    def test_tooLongLine(self) -> None:
        self.client.dataReceived(b"220 " + b"x" * 507 + b"\r\n")
        self.assertEqual(
            self.result().error,
            "the server's reply has a line longer than 512 octets",
        )

    def test_endlessLineWithoutEnd(self) -> None:
        self.client.dataReceived(b"220-" + b"x" * 1000)
        self.assertIn("longer than 512 octets", self.result().error or "")

    def test_oneDeadlinePerReply(self) -> None:
        # Continuation lines do not restart the 300 s of the greeting.
        for _ in range(5):
            self.clock.advance(59)
            self.client.dataReceived(b"220-still greeting\r\n")
        self.clock.advance(5)
        self.assertEqual(self.result().error, "no reply from the server in 300 s")

    def test_wholeRepliesRestartTheTimer(self) -> None:
        self.clock.advance(299)
        self.client.dataReceived(b"220 hi\r\n")
        self.clock.advance(299)
        self.assertFalse(self.transport.disconnecting)


class FactoryTests(SynchronousTestCase):
    """
    The factory of smtpclient.tac's cbMailExchange is the pattern for the
    factory of each connection attempt.
    """

    def test_forAttempt(self) -> None:
        class Custom(SMTPTutorialClient):
            pass

        clock = Clock()
        template = SMTPClientFactory(
            [], "client.test", secret=b"pw", timeout=7, username=b"me", clock=clock
        )
        template.protocol = Custom
        envelope = Envelope("s@client.test", ("a@x.test",), tutorialMessage())
        toMX = template.forAttempt(
            [envelope], "mx.test", "127.0.0.2", TLSPolicy.OFF, None, login=False
        )
        self.assertEqual(
            (toMX.envelopes, toMX.identity, toMX.timeouts, toMX.clock),
            ([envelope], "client.test", Timeouts.uniform(7), clock),
        )
        self.assertEqual((toMX.exchange, toMX.address), ("mx.test", "127.0.0.2"))
        self.assertIsInstance(toMX.buildProtocol(None), Custom)
        # The credentials go only where the router says they may.
        self.assertEqual((toMX.secret, toMX.username), (None, None))
        toRelay = template.forAttempt(
            [envelope], "relay.test", "127.0.0.3", TLSPolicy.OFF, None, login=True
        )
        self.assertEqual((toRelay.secret, toRelay.username), (b"pw", b"me"))
