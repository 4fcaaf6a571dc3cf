"""The console server's protocol: pipelining, SIZE, limits, smuggling, relaying, a fuzz run."""

from __future__ import annotations

import base64
import io
import os
import smtplib
import socket
import threading
import time
from email.message import EmailMessage
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from smtptut.client.message import TUTORIAL_MESSAGE
from smtptut.server import transaction
from smtptut.server.commands import printable
from smtptut.server.sasl import AuthThrottle
from smtptut.server.service import makeFactory
from smtptut.server.settings import ServerSettings

from .helpers import (
    SMTPTUT,
    MemorySink,
    Sink,
    reactor,
    runProcess,
    smtpReplies,
    startMemorySink,
    startSink,
)
from .strategies import fuzzSettings, smtpStreams

MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"


def codes(replies: list[bytes]) -> list[bytes]:
    return [r[:3] for r in replies]


class SinkTestCase(TestCase):
    timeout = 30

    def sink(self, **settings: Any) -> Sink:
        settings.setdefault("accept", "console")
        sink = startSink(reactor, **settings)
        self.addCleanup(sink.stop)
        return sink

    def memorySink(self, **settings: Any) -> MemorySink:
        """
        A sink on StringTransport and a Clock, for protocol detail.
        """
        settings.setdefault("accept", "console")
        return startMemorySink(**settings)

    def replies(self, sink: Sink, script: bytes, n: int, **kw: Any) -> Any:
        if isinstance(sink, MemorySink):
            return defer.succeed(sink.replies(script, n, **kw))
        return threads.deferToThread(smtpReplies, sink.port, script, n, **kw)

    def logEvents(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    async def settle(self, sink: Sink) -> None:
        """
        Wait until the server has seen every connection end.
        """
        for _ in range(200):
            if not sink.factory.protocols:
                return
            await task.deferLater(reactor, 0.01)
        self.fail("connections still open")


class ProtocolTests(SinkTestCase):
    async def test_ehloExtensions(self) -> None:
        sink = self.sink()

        def ehlo() -> dict[str, str]:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                s.ehlo("client.test")
                return dict(s.esmtp_features)

        features = await threads.deferToThread(ehlo)
        self.assertEqual(features["size"], str(25 * 1024 * 1024))
        for keyword in ("pipelining", "8bitmime", "enhancedstatuscodes"):
            self.assertIn(keyword, features)
        self.assertEqual(features["auth"].split(), ["PLAIN", "LOGIN"])
        # No certificate, no STARTTLS.
        self.assertNotIn("starttls", features)

    async def test_pipelinedTransactionInOneWrite(self) -> None:
        sink = self.sink(maildir=self.mktemp())
        script = (
            b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n"
            b"RCPT TO:<console@sink.test>\r\nRCPT TO:<other@sink.test>\r\n"
            b"DATA\r\n" + MESSAGE + b".\r\n"
            b"MAIL FROM:<b@client.test>\r\nRCPT TO:<console@sink.test>\r\n"
            b"DATA\r\n" + MESSAGE + b".\r\nQUIT\r\n"
        )
        replies = await self.replies(sink, script, 11)
        self.assertEqual(
            codes(replies),
            [b"220", b"250", b"250", b"250", b"550", b"354", b"250"]
            + [b"250", b"250", b"354", b"250", b"221"],
        )
        self.assertEqual(replies[4], b"550 5.7.1 Recipient not accepted here")
        self.assertEqual(len(sink.messages()), 2)
        self.assertEqual(len(sink.stored()), 2)

    async def test_pipelinedOneOctetAtATime(self) -> None:
        sink = self.sink()
        script = (
            b"HELO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + MESSAGE
            + b".\r\nQUIT\r\n"
        )
        replies = await self.replies(sink, script, 6, chunk=1)
        self.assertEqual(
            codes(replies), [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
        )
        [message] = sink.messages()
        self.assertTrue(message.endswith("Subject: hello\n\nbody"), message)

    async def test_clientThatHalfCloses(self) -> None:
        # printf '...' | nc: everything sent, then EOF, before any reply.
        sink = self.sink()
        script = (
            b"HELO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + MESSAGE
            + b".\r\nQUIT\r\n"
        )

        def send() -> bytes:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
                # The greeting first, so that no write is pending when the
                # script and the end of input arrive together.
                received = s.recv(1000)
                s.sendall(script)
                s.shutdown(socket.SHUT_WR)
                while more := s.recv(65536):
                    received += more
                return received

        received = await threads.deferToThread(send)
        self.assertEqual(
            [line[:3] for line in received.splitlines()],
            [b"220", b"250", b"250", b"250", b"354", b"250", b"221"],
        )
        self.assertEqual(len(sink.messages()), 1)

    async def test_concurrentMessagesPrintedWhole(self) -> None:
        # Two clients' messages arrive interleaved; each is printed in one piece.
        sink = self.sink()

        def interleave() -> None:
            clients = [
                socket.create_connection(("127.0.0.1", sink.port), timeout=10)
                for _ in range(2)
            ]
            readers = [c.makefile("rb") for c in clients]
            for c, r in zip(clients, readers, strict=True):
                c.sendall(
                    b"HELO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
                )
                finals = 0
                while finals < 5:
                    finals += r.readline()[3:4] == b" "
            for i in range(50):
                for n, c in enumerate(clients):
                    c.sendall(b"client %d line %d\r\n" % (n, i))
            for c, r in zip(clients, readers, strict=True):
                c.sendall(b".\r\nQUIT\r\n")
                assert r.readline().startswith(b"250")
                r.close()
                c.close()

        await threads.deferToThread(interleave)
        messages = sink.messages()
        self.assertEqual(len(messages), 2)
        for message in messages:
            lines = [x for x in message.splitlines() if x.startswith("client ")]
            self.assertEqual(len(lines), 50, message)
            self.assertEqual(len({x.split()[1] for x in lines}), 1)

    async def test_sizeInMailCommand(self) -> None:
        sink = self.memorySink(maxSize=1000)
        replies = await self.replies(
            sink,
            b"EHLO c\r\nMAIL FROM:<a@c> SIZE=1001\r\nMAIL FROM:<a@c> SIZE=1000\r\n",
            3,
        )
        self.assertEqual(
            replies[2], b"552 5.3.4 Message size exceeds fixed maximum message size"
        )
        self.assertEqual(replies[3][:3], b"250")

    async def test_sizeWhileReceiving(self) -> None:
        sink = self.memorySink(maxSize=1000, maildir=self.mktemp())
        big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + big * 20
            + b".\r\nNOOP\r\n"
        )
        replies = await self.replies(sink, script, 6)
        self.assertEqual(
            replies[5], b"552 5.3.4 Message size exceeds fixed maximum message size"
        )
        self.assertEqual(replies[6][:3], b"250")
        self.assertEqual(sink.messages(), [])
        self.assertEqual(sink.stored(), [])
        self.assertEqual(sink.tmpFiles(), [])

    async def test_longCommandLine(self) -> None:
        sink = self.memorySink()
        long = b"NOOP " + b"x" * 600 + b"\r\n"
        replies = await self.replies(sink, b"EHLO c\r\n" + long + b"NOOP\r\n", 3)
        self.assertEqual(codes(replies), [b"220", b"250", b"500", b"250"])
        self.assertEqual(replies[2], b"500 5.5.2 Line too long")

    async def test_endlessCommandLine(self) -> None:
        # 200 kB without a line end, in pieces: one 500, then service as usual.
        sink = self.memorySink()
        script = b"x" * 200_000 + b"\r\nNOOP\r\n"
        replies = await self.replies(sink, script, 2, chunk=4096)
        self.assertEqual(codes(replies), [b"220", b"500", b"250"])

    async def test_longTextLine(self) -> None:
        sink = self.memorySink(maildir=self.mktemp())
        line = b"y" * 999 + b"\r\n"  # 1001 octets with its CRLF
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + b"Subject: long\r\n\r\n"
            + line
            + b".\r\nNOOP\r\n"
        )
        replies = await self.replies(sink, script, 6)
        self.assertEqual(replies[5], b"500 5.5.2 Line too long")
        self.assertEqual(replies[6][:3], b"250")
        self.assertEqual(sink.stored(), [])
        self.assertEqual(sink.messages(), [])

    async def test_longestLegalLine(self) -> None:
        sink = self.memorySink(maildir=self.mktemp(), printMessages=False)
        line = b"z" * 998
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + line
            + b"\r\n.\r\n"
        )
        replies = await self.replies(sink, script, 5, chunk=100)
        self.assertEqual(replies[5][:3], b"250")
        [stored] = sink.stored()
        self.assertTrue(stored.endswith(b"\n" + line + b"\n"))

    async def test_noSmugglingWithBareLineEnds(self) -> None:
        sink = self.memorySink(maildir=self.mktemp())
        body = (
            b"Subject: one message\r\n\r\nfirst\n.\r\n"
            b"MAIL FROM:<evil@c>\r\nRCPT TO:<console@s>\r\nDATA\r\nsmuggled\r.\r\n"
            b"still the same message\r\n.\n"
            b"and this\r\n"
        )
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + body
            + b".\r\nQUIT\r\n"
        )
        replies = await self.replies(sink, script, 6)
        self.assertEqual(
            codes(replies), [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
        )
        [message] = sink.messages()
        # The console shows the bare CR; the Maildir keeps it.
        self.assertIn("smuggled\\x0d.\n", message)
        self.assertIn("and this", message)
        [stored] = sink.stored()
        self.assertIn(b"smuggled\r.\n", stored)

    async def test_tooManyRecipients(self) -> None:
        sink = self.memorySink(maxRecipients=3, accept="*")
        rcpts = b"".join(b"RCPT TO:<r%d@s>\r\n" % i for i in range(4))
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\n" + rcpts + b"DATA\r\n" + MESSAGE + b".\r\n"
        )
        replies = await self.replies(sink, script, 8)
        self.assertEqual(
            replies[6], b"452 4.5.3 Too many recipients (at most 3 a message)"
        )
        self.assertEqual(codes(replies)[7:], [b"354", b"250"])
        [message] = sink.messages()
        self.assertNotIn("r3@s", message)

    async def test_recipientsOverLimitAreNoErrors(self) -> None:
        # Issue 9: 120 recipients made 20 "452 4.5.3", counted as errors:
        # 421 and the 100 accepted recipients lost the message too.
        sink = self.sink(accept="*", maildir=self.mktemp(), printMessages=False)
        recipients = [f"r{i}@sink.test" for i in range(130)]

        def send() -> dict[str, Any]:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                refused = s.sendmail("a@c.test", recipients, MESSAGE)
                # The rest, in a second transaction on the same connection.
                s.sendmail("a@c.test", list(refused), MESSAGE)
                return refused

        refused = await threads.deferToThread(send)
        self.assertEqual(sorted(refused), sorted(recipients[100:]))
        self.assertEqual(
            set(refused.values()),
            {(452, b"4.5.3 Too many recipients (at most 100 a message)")},
        )
        first, second = sink.stored()
        self.assertEqual(first.count(b"\nDelivered-To: "), 100)
        self.assertIn(b"\nDelivered-To: r99@sink.test\n", first)
        self.assertEqual(second.count(b"\nDelivered-To: "), 30)

    async def test_recipientOvershootIsBounded(self) -> None:
        # Past Postfix's smtpd_recipient_overshoot_limit each one is an error.
        self.patch(transaction, "RECIPIENT_OVERSHOOT_LIMIT", 5)
        sink = self.memorySink(accept="*", maxRecipients=1, maxErrors=3)
        rcpts = b"".join(b"RCPT TO:<r%d@s>\r\n" % i for i in range(10))
        replies = await self.replies(sink, b"EHLO c\r\nMAIL FROM:<a@c>\r\n" + rcpts, 12)
        self.assertEqual(
            codes(replies)[1:], [b"250", b"250", b"250"] + [b"452"] * 8 + [b"421"]
        )

    async def test_tooManyErrors(self) -> None:
        sink = self.memorySink(maxErrors=3)
        replies = await self.replies(sink, b"BAD\r\nWORSE\r\nWORST\r\nNOOP\r\n", 5)
        self.assertEqual(
            replies,
            [
                replies[0],
                b"500 5.5.2 Command not recognized",
                b"500 5.5.2 Command not recognized",
                b"500 5.5.2 Command not recognized",
                b"421 4.7.0 Too many errors, closing connection",
            ],
        )

    async def test_tooManyConnections(self) -> None:
        sink = self.sink(maxConnections=1)

        def twoClients() -> bytes:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as one:
                one.recv(1000)
                with socket.create_connection(
                    ("127.0.0.1", sink.port), timeout=10
                ) as two:
                    refused = two.recv(1000)
                    self.assertEqual(two.recv(1000), b"")
            return refused

        refused = await threads.deferToThread(twoClients)
        self.assertEqual(
            refused, b"421 4.7.0 Too many connections, try again later\r\n"
        )
        await self.settle(sink)
        # Once the first has gone, a new client is served.
        replies = await self.replies(sink, b"NOOP\r\n", 1)
        self.assertEqual(replies[1][:3], b"250")

    async def test_idleTimeout(self) -> None:
        sink = self.sink(idleTimeout=0.3)
        start = time.monotonic()
        replies = await self.replies(sink, b"EHLO c\r\n", 3)
        self.assertEqual(
            replies[1:], [replies[1], b"421 4.4.2 Idle timeout, closing connection"]
        )
        self.assertGreater(time.monotonic() - start, 0.25)

    async def test_sequenceErrors(self) -> None:
        sink = self.memorySink()
        script = (
            b"MAIL FROM:<a@c>\r\nHELO c\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            b"MAIL FROM:<a@c>\r\nMAIL FROM:<a@c>\r\nDATA\r\nRCPT TO:<x y@s>\r\n"
            b"MAIL FROM:<a@c> FOO=BAR\r\n"
        )
        replies = await self.replies(sink, script, 9)
        self.assertEqual(
            codes(replies)[1:],
            [b"503", b"250", b"503", b"503", b"250", b"503", b"554", b"501", b"503"],
        )

    async def test_neverAnOpenRelay(self) -> None:
        # Authenticated or not, source-routed or percent-hacked: 550 5.7.1.
        sink = self.memorySink(accept="console@sink.test")
        plain = b"AUTH PLAIN AGd1ZXN0AHBhc3N3b3Jk\r\n"  # guest / password
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<victim@elsewhere.test>\r\n"
            b"RCPT TO:<@sink.test:victim@elsewhere.test>\r\n"
            b"RCPT TO:<victim%elsewhere.test@sink.test>\r\nRSET\r\n"
            + plain
            + b"MAIL FROM:<a@c>\r\nRCPT TO:<victim@elsewhere.test>\r\n"
            b"RCPT TO:<console@sink.test>\r\n"
        )
        replies = await self.replies(sink, script, 10)
        self.assertEqual(
            codes(replies)[1:],
            [b"250", b"250", b"550", b"550", b"550", b"250", b"235", b"250", b"550"]
            + [b"250"],
        )
        self.assertEqual(replies[9], b"550 5.7.1 Recipient not accepted here")

    async def test_nullSenderAndLog(self) -> None:
        events = self.logEvents()
        sink = self.sink(maildir=self.mktemp())
        script = (
            b"HELO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<console@s>\r\n"
            b"RCPT TO:<nobody@s>\r\n"
            b"DATA\r\n" + MESSAGE + b".\r\naHVudGVyMg==\r\nQUIT\r\n"
        )
        await self.replies(sink, script, 8)
        [stored] = sink.stored()
        self.assertTrue(
            stored.startswith(b"Return-Path: <>\nReceived: from client.test")
        )
        lines = [formatEvent(e) for e in events]
        [line] = [x for x in lines if x.startswith("message accepted")]
        self.assertIn("peer=127.0.0.1 helo=client.test from=<> to=console@s", line)
        self.assertIn("size=24", line)
        self.assertIn("file=" + os.path.abspath(sink.settings.maildir), line)
        self.assertIn(
            "refused (unrecognized) from 127.0.0.1: 500 5.5.2 Command not recognized",
            lines,
        )
        # A line that is no command may be a credential sent out of turn.
        self.assertNotIn("aHVudGVyMg", "\n".join(lines))
        self.assertIn(
            "refused RCPT <nobody@s> from 127.0.0.1: 550 5.7.1 Recipient not accepted here",
            lines,
        )


class SlowClientTests(SinkTestCase):
    """
    Issue 9: the idle timer restarts with every octet, so a client trickling
    one octet at a time held its slot forever.
    """

    def trickle(self, sink: Sink, data: bytes, pause: float) -> tuple[bytes, float]:
        """
        Blocking: send C{data} C{pause} seconds apart per element (bounded:
        at most len(data) sends), until the server says something; its
        reply and how long after the greeting it came.
        """
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
            s.recv(1000)
            start = time.monotonic()
            s.settimeout(pause)
            for i in range(len(data)):
                s.sendall(data[i : i + 1])
                try:
                    reply = s.recv(1000)
                except TimeoutError:
                    continue
                return reply, time.monotonic() - start
        return b"", time.monotonic() - start

    async def test_commandLineHasADeadline(self) -> None:
        events = self.logEvents()
        sink = self.sink(commandTimeout=0.5, idleTimeout=10)
        reply, elapsed = await threads.deferToThread(
            self.trickle, sink, b"NOOP " + b"x" * 60, 0.1
        )
        self.assertEqual(
            reply, b"421 4.4.2 Command line too slow, closing connection\r\n"
        )
        self.assertLess(elapsed, 3)
        self.assertIn(
            "refused (session) from 127.0.0.1: 421 4.4.2 Command line too slow,"
            " closing connection",
            [formatEvent(e) for e in events],
        )

    async def test_messageLineHasADeadline(self) -> None:
        sink = self.sink(commandTimeout=0.5, idleTimeout=10)
        script = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"

        def slowMessage() -> tuple[bytes, float]:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
                s.sendall(script)
                got = b""
                while b"354 " not in got:
                    got += s.recv(1000)
                start = time.monotonic()
                s.settimeout(0.1)
                # Whole lines, quickly, go on; then one that trickles.
                s.sendall(b"Subject: x\r\n\r\n" * 10)
                for octet in b"y" * 60:
                    s.sendall(bytes([octet]))
                    try:
                        return s.recv(1000), time.monotonic() - start
                    except TimeoutError:
                        continue
            return b"", 0.0

        reply, elapsed = await threads.deferToThread(slowMessage)
        self.assertEqual(
            reply, b"421 4.4.2 Command line too slow, closing connection\r\n"
        )
        self.assertLess(elapsed, 3)
        await self.settle(sink)
        self.assertEqual(sink.messages(), [])

    async def test_sessionHasADeadline(self) -> None:
        sink = self.sink(sessionTimeout=0.6, idleTimeout=10)

        def busyClient() -> tuple[list[bytes], float]:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
                start = time.monotonic()
                s.recv(1000)
                replies = []
                for _ in range(50):
                    s.sendall(b"NOOP\r\n")
                    reply = s.recv(1000)
                    replies.append(reply)
                    if not reply or reply.startswith(b"421"):
                        break
                    time.sleep(0.05)
                return replies, time.monotonic() - start

        replies, elapsed = await threads.deferToThread(busyClient)
        self.assertEqual(
            replies[-1], b"421 4.4.2 Session too long, closing connection\r\n"
        )
        self.assertGreater(len(replies), 3)
        self.assertTrue(0.5 < elapsed < 2.5, elapsed)


class PeerLimitTests(SinkTestCase):
    async def test_connectionsPerPeer(self) -> None:
        # Postfix's smtpd_client_connection_count_limit: one local process
        # took every slot.
        events = self.logEvents()
        sink = self.sink(maxPeerConnections=2, maxConnections=10)

        def clients() -> tuple[bytes, bytes]:
            def connect(source: str) -> socket.socket:
                s = socket.create_connection(
                    ("127.0.0.1", sink.port), timeout=10, source_address=(source, 0)
                )
                self.addCleanup(s.close)
                return s

            one, two = connect("127.0.0.1"), connect("127.0.0.1")
            one.recv(1000), two.recv(1000)
            third = connect("127.0.0.1")
            refused = third.recv(1000)
            other = connect("127.0.0.2").recv(1000)
            third.close()
            return refused, other

        refused, other = await threads.deferToThread(clients)
        self.assertEqual(
            refused,
            b"421 4.7.0 Too many connections from your address, try again later\r\n",
        )
        # Another address is served.
        self.assertEqual(other[:4], b"220 ")
        lines = [formatEvent(e) for e in events]
        [line] = [x for x in lines if x.startswith("refused a connection")]
        # An address, not "IPv4Address(type='TCP', ...)".
        self.assertRegex(
            line,
            r"^refused a connection from 127\.0\.0\.1:\d+: too many from 127\.0\.0\.1$",
        )

    async def test_slotsComeBack(self) -> None:
        sink = self.sink(maxPeerConnections=1)
        for _ in range(3):
            replies = await self.replies(sink, b"QUIT\r\n", 1)
            self.assertEqual(codes(replies), [b"220", b"221"])
            await self.settle(sink)
        self.assertEqual(sink.factory.peerConnections, {})


class AuthThrottleTests(SinkTestCase):
    BAD = b"AUTH PLAIN " + base64.b64encode(b"\0guest\0wrong") + b"\r\n"

    async def test_parallelGuessesFromOneAddressAreBounded(self) -> None:
        # Issue 9: 90 parallel connections made 270 guesses in 7 s.  The
        # window's clock is frozen, so "T seconds" is the whole test.
        sink = self.sink(maxErrors=50)
        clock = task.Clock()
        sink.factory.authThrottle = AuthThrottle(
            clock, limit=5, window=60, baseDelay=0.01
        )
        script = b"EHLO c\r\n" + self.BAD * 3 + b"QUIT\r\n"

        def session(source: str) -> list[bytes]:
            return smtpReplies(sink.port, script, 5, source=source)

        results = await defer.gatherResults(
            [threads.deferToThread(session, "127.0.0.1") for _ in range(6)]
        )
        everything = [c for replies in results for c in codes(replies)]
        self.assertEqual(everything.count(b"535"), 5, results)
        self.assertEqual(everything.count(b"454"), 6 * 3 - 5, results)
        self.assertIn(
            b"454 4.7.0 Too many authentication failures from your address,"
            b" try again later",
            [r for replies in results for r in replies],
        )
        # Even the right password waits out the window, from this address...
        good = b"AUTH PLAIN AGd1ZXN0AHBhc3N3b3Jk\r\n"
        replies = await self.replies(sink, b"EHLO c\r\n" + good, 2)
        self.assertEqual(codes(replies)[2], b"454")
        # ...but not from another one,
        replies = await threads.deferToThread(
            smtpReplies, sink.port, b"EHLO c\r\n" + self.BAD, 2, source="127.0.0.2"
        )
        self.assertEqual(codes(replies)[2], b"535")
        # and after the window, guesses are checked again.
        clock.advance(61)
        replies = await self.replies(sink, b"EHLO c\r\n" + good, 2)
        self.assertEqual(codes(replies)[2], b"235")

    def test_failuresFromTheAddressDelayExponentially(self) -> None:
        # Protocol detail: the delay of the 535, on a clock.
        clock = task.Clock()
        factory = makeFactory(ServerSettings(), reactor, clock, output=io.StringIO)
        for _ in range(4):
            factory.authThrottle.attempt("127.0.0.1")
        p = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        p.makeConnection(transport)
        p.dataReceived(b"EHLO c\r\n" + self.BAD)
        # The fifth failure from this address: 2**4 times the base delay (1 s).
        clock.advance(15.9)
        self.assertNotIn(b"535 ", transport.value())
        clock.advance(0.2)
        self.assertIn(b"535 5.7.8", transport.value())
        p.connectionLost(Failure(ConnectionDone()))


class AddressTests(SinkTestCase):
    async def test_addressLiterals(self) -> None:
        # RFC 5321 §4.1.3: Twisted's parser refused them with 501.
        sink = self.memorySink(accept="console", maildir=self.mktemp())
        script = (
            b"EHLO c\r\nMAIL FROM:<app@[127.0.0.1]>\r\n"
            b"RCPT TO:<console@[127.0.0.1]>\r\n"
            b"RCPT TO:<console@[IPv6:::1]>\r\n"
            b"RCPT TO:<Console@[ipv6:0:0::1]>\r\n"
            b"RCPT TO:<console@[127.0.0.256]>\r\n"
            b"RCPT TO:<console@[1.2.3]>\r\n"
            b"RCPT TO:<console@[IPv6:bogus]>\r\n"
            b"RCPT TO:<console@[::1]>\r\n"
            b"RCPT TO:<console@[IPv6:fe80::1%eth0]>\r\n"
            b"RCPT TO:<@[127.0.0.1]>\r\n"
            b"RCPT TO:<other@[127.0.0.1]>\r\n"
            b"DATA\r\n" + MESSAGE + b".\r\n"
        )
        replies = await self.replies(sink, script, 14)
        self.assertEqual(
            codes(replies)[1:],
            [b"250"] * 5 + [b"501"] * 6 + [b"550", b"354", b"250"],
        )
        self.assertEqual(replies[6], b"501 5.1.3 Bad recipient address syntax")
        [stored] = sink.stored()
        self.assertTrue(stored.startswith(b"Return-Path: <app@[127.0.0.1]>\n"))

    async def test_literalPatterns(self) -> None:
        sink = self.memorySink(accept="@[127.0.0.1], @[IPv6:0::1]")
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\n"
            b"RCPT TO:<anyone@[127.0.0.1]>\r\n"
            b"RCPT TO:<anyone@[IPv6:::1]>\r\n"
            b"RCPT TO:<anyone@[127.0.0.2]>\r\n"
            b"RCPT TO:<console@localhost>\r\n"
        )
        replies = await self.replies(sink, script, 6)
        self.assertEqual(
            codes(replies)[1:], [b"250", b"250", b"250", b"250", b"550", b"550"]
        )

    async def test_recipientWithoutDomain(self) -> None:
        # Only Postmaster may come without a domain (RFC 5321 §4.1.1.3);
        # Twisted filled in this host's name for anything.
        sink = self.memorySink(accept="console, postmaster")
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console>\r\n"
            b"RCPT TO:console\r\nRCPT TO:<PostMaster>\r\n"
            b"RCPT TO:<console@s.test>\r\n"
        )
        replies = await self.replies(sink, script, 6)
        self.assertEqual(
            replies[3:],
            [
                b"501 5.1.3 Bad recipient address syntax",
                b"501 5.1.3 Bad recipient address syntax",
                b"250 2.1.5 Recipient ok",
                b"250 2.1.5 Recipient ok",
            ],
        )

    async def test_postmasterWhateverAcceptSays(self) -> None:
        # RFC 5321 §4.5.1: postmaster is taken for every domain served here
        # (one SMTPTUT_ACCEPT names, the sink's name, the literal of the
        # address connected to), not for any other domain.
        sink = self.memorySink(
            accept="app@sink.test, @other.test", maildir=self.mktemp()
        )
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\n"
            b"RCPT TO:<postmaster>\r\n"
            b"RCPT TO:<Postmaster>\r\n"
            b"RCPT TO:<postmaster@sink.test>\r\n"
            b"RCPT TO:<POSTMASTER@Other.Test>\r\n"
            b"RCPT TO:<postmaster@localhost>\r\n"
            b"RCPT TO:<postmaster@[127.0.0.1]>\r\n"
            b"RCPT TO:<postmaster@elsewhere.test>\r\n"
            b"RCPT TO:<postmaster@[127.0.0.9]>\r\n"
            b"RCPT TO:<root@sink.test>\r\n"
            b"DATA\r\n" + MESSAGE + b".\r\n"
        )
        replies = await self.replies(sink, script, 13)
        self.assertEqual(
            codes(replies)[1:],
            [b"250", b"250"] + [b"250"] * 6 + [b"550"] * 3 + [b"354", b"250"],
        )
        [stored] = sink.stored()
        self.assertIn(b"\nDelivered-To: postmaster@localhost\n", stored)
        self.assertIn(b"\nDelivered-To: postmaster@[127.0.0.1]\n", stored)

    async def test_postmasterWithConsolePattern(self) -> None:
        # A bare local part (the default "console") takes that name at every
        # domain, so every domain is one served: postmaster@ any of them.
        sink = self.memorySink(accept="console")
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<postmaster@any.test>\r\n"
            b"RCPT TO:<postmaster>\r\nRCPT TO:<other@any.test>\r\n"
        )
        replies = await self.replies(sink, script, 5)
        self.assertEqual(codes(replies)[1:], [b"250", b"250", b"250", b"250", b"550"])

    async def test_sendToLiteralEndToEnd(self) -> None:
        # Issue 2's promise: smtptut send --to 'console@[127.0.0.1]'.
        sink = self.sink()
        # The tutorial's message on standard input (not a terminal here).
        result = await runProcess(
            reactor,
            [SMTPTUT, "send", "--to", "console@[127.0.0.1]", "--port", str(sink.port)]
            + ["--data", "-"],
            stdin=TUTORIAL_MESSAGE,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("console@[127.0.0.1]: delivered", result.out)
        [message] = sink.messages()
        self.assertIn("for <console@[127.0.0.1]>", message)
        self.assertIn("Subject: Tutorate!", message)


class ConsoleEscapeTests(SinkTestCase):
    async def test_controlCharactersShownNotSent(self) -> None:
        # A client must not drive the terminal the console prints on (title
        # changes, colours, cursor moves); the Maildir copy stays exact.
        sink = self.memorySink(maildir=self.mktemp())
        body = (
            "Subject: \x1b]0;pwned\x07hi\r\n\r\n\x1b[31mred\x1b[0m\tTAB"
            " caf\u00e9 \x9b2J\x00\x08bare\rCR\x7f\r\n"
        ).encode()
        script = (
            b"EHLO c\x1b[2J\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\n"
            b"DATA\r\n" + body + b".\r\n"
        )
        replies = await self.replies(sink, script, 5)
        self.assertEqual(codes(replies)[-1:], [b"250"])
        [message] = sink.messages()
        self.assertIn(
            "Subject: \\x1b]0;pwned\\x07hi\n\n\\x1b[31mred\\x1b[0m\tTAB"
            " caf\u00e9 \\x9b2J\\x00\\x08bare\\x0dCR\\x7f",
            message,
        )
        self.assertIn("Received: from c\\x1b[2J", message)
        printed = sink.output.getvalue()
        self.assertEqual(
            [c for c in printed if not c.isprintable() and c not in "\t\n"], []
        )
        [stored] = sink.stored()
        self.assertTrue(stored.endswith(body.replace(b"\r\n", b"\n")))


class ConsoleMIMETests(SinkTestCase):
    """
    Issue 9: the console showed raw MIME (encoded words, pages of base64).
    """

    def mimeMessage(self) -> EmailMessage:
        message = EmailMessage()
        message["From"] = "App <app@client.test>"
        message["To"] = "console@sink.test"
        message["Subject"] = "Gr\u00fc\u00dfe aus K\u00f6ln \u2603"
        message.set_content(
            "Hall\u00f6 Welt, a long line " + "\u00e9" * 80 + "\n",
            cte="quoted-printable",
        )
        message.add_alternative(b"<p>in HTML</p>\n", "text", "html", cte="base64")
        message.add_attachment(
            bytes(range(256)) * 200,
            maintype="application",
            subtype="pdf",
            filename="report.pdf",
        )
        return message

    async def test_decodedForAPerson(self) -> None:
        sink = self.sink(maildir=self.mktemp())
        message = self.mimeMessage()
        wire = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        self.assertIn(b"=?utf-8?", wire)

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                s.sendmail("app@client.test", ["console@sink.test"], wire)

        await threads.deferToThread(send)
        [printed] = sink.messages()
        self.assertIn("\nSubject: Gr\u00fc\u00dfe aus K\u00f6ln \u2603\n", printed)
        self.assertIn("Hall\u00f6 Welt, a long line " + "\u00e9" * 80 + "\n", printed)
        self.assertIn("<p>in HTML</p>\n", printed)
        self.assertIn(
            "\n[attachment: report.pdf, application/pdf, 51200 octets]", printed
        )
        # No base64 of the attachment, no quoted-printable soft breaks.
        self.assertNotIn("AAECAwQF", printed)
        self.assertNotIn("=C3=A9", printed)
        self.assertLess(len(printed), 3000)
        # The Maildir copy is the message as received, byte for byte.
        [stored] = sink.stored()
        self.assertTrue(stored.endswith(wire.replace(b"\r\n", b"\n")))

    async def test_decodingDoesNotPassControls(self) -> None:
        # An encoded word or a base64 text part may hold escape sequences:
        # decoded, they are still shown as \\xNN.
        sink = self.memorySink()
        evil = base64.b64encode(b"\x1b]0;pwned\x07").decode()
        body = base64.b64encode(b"text \x1b[2J here\n").decode()
        data = (
            f"Subject: =?utf-8?b?{evil}?=\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n"
        ).encode()
        script = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
        await self.replies(sink, script + data + b".\r\n", 5)
        [printed] = sink.messages()
        self.assertIn("Subject: \\x1b]0;pwned\\x07\n", printed)
        self.assertTrue(printed.endswith("\n\ntext \\x1b[2J here"), printed)
        self.assertEqual(
            [
                c
                for c in sink.output.getvalue()
                if not c.isprintable() and c not in "\t\n"
            ],
            [],
        )

    async def test_nestedAndMalformed(self) -> None:
        # A message inside a multipart, a part with no header, a boundary
        # that never closes, an unknown charset: shown, no traceback.
        sink = self.memorySink()
        data = (
            b"Subject: nested\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
            b"preamble not shown\r\n--outer\r\n"
            b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
            b"--inner\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n"
            b"plain one\r\n--inner--\r\nepilogue not shown\r\n--outer\r\n"
            b"\r\nno header part\r\n--outer\r\n"
            b"Content-Type: image/png; name=dot.png\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\nGgo=\r\n"
        )
        script = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
        replies = await self.replies(sink, script + data + b".\r\n", 5)
        self.assertEqual(codes(replies)[-1], b"250")
        [printed] = sink.messages()
        self.assertIn("plain one\n", printed)
        self.assertIn("no header part\n", printed)
        self.assertIn("[attachment: dot.png, image/png, 8 octets]", printed)
        self.assertNotIn("preamble", printed)
        self.assertNotIn("epilogue", printed)

    async def test_plainMessagesAsTheyCame(self) -> None:
        # No MIME: printed exactly as before (the tutorial's format).
        sink = self.memorySink()
        script = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
        await self.replies(sink, script + b"Subject: hi\r\n\r\nbody =41\r\n.\r\n", 5)
        [printed] = sink.messages()
        self.assertTrue(printed.endswith("Subject: hi\n\nbody =41"), printed)


class SmtplibTests(SinkTestCase):
    async def test_sendmailAndVRFY(self) -> None:
        sink = self.sink(maildir=self.mktemp())

        def send() -> Any:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                refused = s.sendmail(
                    "a@client.test",
                    ["console@sink.test", "nobody@sink.test"],
                    "Subject: 8 bit\r\n\r\ncaf\u00e9\r\n".encode(),
                    mail_options=["BODY=8BITMIME"],
                )
                return refused, s.verify("console"), len(sink.stored())

        refused, verify, storedAfter250 = await threads.deferToThread(send)
        self.assertEqual(list(refused), ["nobody@sink.test"])
        self.assertEqual(verify[0], 252)
        # The file was in new/ by the time the client had its 250.
        self.assertEqual(storedAfter250, 1)
        [message] = sink.messages()
        self.assertIn("caf\u00e9", message)


class SinkFuzzTests(SinkTestCase):
    timeout = 240

    async def test_randomCommandStreams(self) -> None:
        sink = self.sink(
            accept="*", maildir=self.mktemp(), maxSize=5000, maxErrors=10**6
        )
        port = sink.port

        # A short run over real sockets (the many examples run on
        # StringTransport: test_protocol.ProtocolFuzzTests).
        @fuzzSettings(25)
        @given(smtpStreams, st.integers(min_value=1, max_value=64))
        def run(data: bytes, chunk: int) -> None:
            # After the stream: end any message, cancel any AUTH, then NOOP.
            trailer = b"\r\n.\r\n*\r\nRSET\r\nNOOP\r\n"
            received: bytes | None = b""
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                try:
                    for i in range(0, len(data), chunk * 17):
                        s.sendall(data[i : i + chunk * 17])
                    s.sendall(trailer)
                    s.shutdown(socket.SHUT_WR)
                    while more := s.recv(65536):
                        received = (received or b"") + more
                except OSError:
                    # The server closed first (three AUTH failures) with
                    # input unread: the kernel resets the connection and
                    # drops what had not been read yet.
                    received = None
            if received is not None:
                finals = [x for x in received.split(b"\r\n") if x[3:4] == b" "]
                # The same connection still answers NOOP, unless it was
                # closed for AUTH failures.
                assert finals[-1] == b"250 2.0.0 OK" or finals[-1].startswith(
                    b"421 "
                ), finals
            replies = smtpReplies(port, b"NOOP\r\n", 1)
            assert replies[1] == b"250 2.0.0 OK", replies

        await threads.deferToThread(run)
        await self.settle(sink)
        self.assertEqual(sink.tmpFiles(), [])
        # trial fails the test if the server logged an unhandled error.


class FactoryTests(TestCase):
    timeout = 10

    def test_noGuestOffLoopback(self) -> None:
        # Listening beyond loopback without SMTPTUT_USERS: nobody can log in.
        settings = ServerSettings(listen="tcp:2525:interface=0.0.0.0")
        self.assertIsNone(makeFactory(settings, reactor, reactor).portal)
        self.assertIsNotNone(makeFactory(ServerSettings(), reactor, reactor).portal)

    def test_clientTextInLogsIsPrintable(self) -> None:
        self.assertEqual(printable(b"helo\r\x1b[2Jname"), "helo\\x0d\\x1b[2Jname")
        self.assertEqual(printable(b"x" * 300), "x" * 200 + "...")

    def test_shutdownWithNothingOpen(self) -> None:
        d = makeFactory(ServerSettings(), reactor, reactor).shutdown(1.0)
        self.assertIsNone(self.successResultOf(d))


class FlowControlTests(SinkTestCase):
    """
    Issue 9 item 19(b): a client that pipelines commands but never reads
    the replies used to grow the server without bound (3.5 GB for HELP x
    10,000 per write); now it stops reading until the replies drain.
    """

    timeout = 60

    def heldOctets(self, sink: Sink) -> int:
        """
        What the server holds for its clients: unread input, unsent replies
        (the TCP transport's queue is Twisted's: abstract.FileDescriptor).
        """
        total = 0
        for p in sink.factory.protocols:
            t = p.transport
            total += p.framer.buffered + sum(map(len, p._replies))
            total += len(t.dataBuffer) + t._tempDataLen
        return total

    async def test_clientThatDoesNotReadItsReplies(self) -> None:
        sink = self.sink()
        held: list[int] = []
        sampler = task.LoopingCall(lambda: held.append(self.heldOctets(sink)))
        sampler.start(0.01)

        def stopSampling() -> None:
            if sampler.running:
                sampler.stop()

        self.addCleanup(stopSampling)
        line = b"HELP\r\n"
        data = line * (8 * 1024 * 1024 // len(line))

        def client() -> tuple[int, int, bytes]:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
                s.recv(100)
                # Write for as long as the server takes it (at most 8 MiB).
                s.settimeout(1.0)
                sent = 0
                while sent < len(data):
                    try:
                        sent += s.send(data[sent : sent + 60000])
                    except TimeoutError:
                        break
                s.settimeout(10)
                helps = sent // len(line) + (1 if sent % len(line) else 0)
                replies: list[int] = []
                last: list[bytes] = []

                def read() -> None:
                    reader = s.makefile("rb")
                    count = 0
                    while reply := reader.readline():
                        if reply.startswith(b"214 "):
                            count += 1
                        else:
                            last.append(reply)
                            break
                    replies.append(count)

                reader = threading.Thread(target=read)
                reader.start()
                # Now reading: finish the last line, then QUIT.
                s.sendall(data[sent : helps * len(line)] + b"QUIT\r\n")
                reader.join(30)
                return sent, replies[0], last[0]

        sent, answered, last = await threads.deferToThread(client)
        stopSampling()
        # The client got more in than the server would hold: it was
        # stopped by the server reading no more, not by running out.
        self.assertGreater(sent, 1024 * 1024)
        self.assertLess(max(held), 512 * 1024, f"held up to {max(held)} octets")
        # And every command was answered once it read again.
        self.assertEqual(answered, (sent + len(line) - 1) // len(line))
        self.assertEqual(last, b"221 2.0.0 Bye\r\n")
