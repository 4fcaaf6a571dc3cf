"""ConsoleESMTP reply by reply on StringTransport and Clock: commands, subclasses, timers, a fuzz."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from smtptut.server.factory import ConsoleSMTPFactory
from smtptut.server.protocol import ConsoleESMTP
from smtptut.server.service import makeFactory
from smtptut.server.session import State
from smtptut.server.settings import AcceptPolicy, ServerSettings

from .helpers import reactor
from .strategies import fuzzSettings, smtpStreams

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
SERVER = IPv4Address("TCP", "127.0.0.1", 2525)


class Connection:
    """
    One client on a StringTransport, the server's timers on a Clock.
    """

    def __init__(self, factory: ConsoleSMTPFactory) -> None:
        self.factory = factory
        self.protocol = cast(ConsoleESMTP, factory.buildProtocol(CLIENT))
        self.transport = StringTransport(hostAddress=SERVER, peerAddress=CLIENT)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> list[bytes]:
        """
        Send C{data}; the replies' lines it brought.
        """
        before = len(self.transport.value())
        self.protocol.dataReceived(data)
        return self.transport.value()[before:].split(b"\r\n")[:-1]

    def close(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


def factoryOn(clock: task.Clock, **settings: Any) -> ConsoleSMTPFactory:
    config = replace(ServerSettings(), **settings)
    output = io.StringIO()
    return makeFactory(config, reactor, clock, output=lambda: output)


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.connection = Connection(factoryOn(self.clock))
        self.addCleanup(self.connection.close)

    def test_greetingAndTransaction(self) -> None:
        c = self.connection
        self.assertEqual(c.transport.value(), b"220 localhost ESMTP smtptut ready\r\n")
        replies = c.send(
            b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<console@x.test>\r\nDATA\r\n"
        )
        self.assertEqual(
            replies,
            [
                b"250 localhost Hello c [127.0.0.1]",
                b"250 2.1.0 Sender ok",
                b"250 2.1.5 Recipient ok",
                b"354 End data with <CR><LF>.<CR><LF>",
            ],
        )
        self.assertIs(c.protocol.session.state, State.DATA)
        self.assertEqual(
            c.send(b"Subject: x\r\n\r\n..hi\r\n.\r\n"),
            [b"250 2.0.0 Delivery in progress"],
        )
        self.assertIs(c.protocol.session.state, State.COMMAND)
        self.assertIsNone(c.protocol.session.transaction.sender)

    def test_receivedNamesTheProtocol(self) -> None:
        # RFC 3848: the Received: field says ESMTPA after AUTH; the protocol
        # tells the delivery (it no longer reaches into the protocol).
        output = io.StringIO()
        factory = makeFactory(
            ServerSettings(), reactor, self.clock, output=lambda: output
        )
        c = Connection(factory)
        self.addCleanup(c.close)
        plain = base64.b64encode(b"\0guest\0password")
        c.send(b"EHLO c\r\nAUTH PLAIN " + plain + b"\r\n")
        c.send(
            b"MAIL FROM:<a@b.test>\r\nRCPT TO:<console@x.test>\r\nDATA\r\nhi\r\n.\r\n"
        )
        self.assertIn("\tby localhost (smtptut) with ESMTPA\n", output.getvalue())

    def test_subclassCommandsAreFound(self) -> None:
        # A subclass's do_VERB is a command (the old table, frozen from the
        # class's own vars(), missed it).
        class WithXHELLO(ConsoleESMTP):
            def do_XHELLO(self, rest: bytes) -> None:
                self._reply(250, b"2.0.0 hello " + rest)

        factory = factoryOn(self.clock)
        factory.protocol = WithXHELLO
        c = Connection(factory)
        self.addCleanup(c.close)
        self.assertEqual(c.send(b"xhello you\r\n"), [b"250 2.0.0 hello you"])

    def test_onlyVerbsAreCommands(self) -> None:
        # No attribute but a do_VERB is reachable from the wire.
        self.assertEqual(
            self.connection.send(b"_RSET\r\nRSET()\r\n"),
            [b"500 5.5.2 Command not recognized"] * 2,
        )

    def test_localLiteralIsPostmastersDomain(self) -> None:
        # The address the client connected to comes from the transport, given
        # to the delivery (RFC 5321 §4.5.1).
        c = Connection(factoryOn(self.clock, accept=AcceptPolicy.parse("@a.test")))
        self.addCleanup(c.close)
        replies = c.send(
            b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@[127.0.0.1]>\r\n"
            b"RCPT TO:<postmaster@[127.0.0.2]>\r\n"
        )
        self.assertEqual(replies[2], b"250 2.1.5 Recipient ok")
        self.assertEqual(replies[3], b"550 5.7.1 Recipient not accepted here")

    def test_localAddressAskedOnce(self) -> None:
        # Every RCPT needs the address the client connected to; Twisted's
        # getHost makes a new one each time, and it cannot change.
        c = Connection(factoryOn(self.clock, accept=AcceptPolicy.parse("@a.test")))
        self.addCleanup(c.close)
        asked: list[object] = []
        getHost = c.transport.getHost

        def counting() -> object:
            asked.append(None)
            return getHost()

        c.transport.getHost = counting  # type: ignore[method-assign]
        replies = c.send(
            b"HELO c\r\nMAIL FROM:<>\r\n"
            + b"RCPT TO:<postmaster@[127.0.0.1]>\r\n" * 3
            + b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@[127.0.0.1]>\r\n"
        )
        self.assertEqual(replies[2:5], [b"250 2.1.5 Recipient ok"] * 3)
        self.assertEqual(replies[-1], b"250 2.1.5 Recipient ok")
        self.assertEqual(len(asked), 1)


class TimerTests(SynchronousTestCase):
    def test_idleTimeoutOnTheClock(self) -> None:
        clock = task.Clock()
        c = Connection(factoryOn(clock, idleTimeout=30.0))
        self.addCleanup(c.close)
        clock.advance(29)
        self.assertFalse(c.transport.disconnecting)
        clock.advance(1)
        self.assertTrue(
            c.transport.value().endswith(
                b"421 4.4.2 Idle timeout, closing connection\r\n"
            )
        )
        self.assertTrue(c.transport.disconnecting)

    def test_sessionDeadlineOnTheClock(self) -> None:
        clock = task.Clock()
        c = Connection(factoryOn(clock, sessionTimeout=60.0, idleTimeout=50.0))
        self.addCleanup(c.close)
        for _ in range(5):
            clock.advance(11)
            c.send(b"NOOP\r\n")
        clock.advance(5)
        self.assertTrue(
            c.transport.value().endswith(
                b"421 4.4.2 Session too long, closing connection\r\n"
            )
        )

    def test_commandLineDeadline(self) -> None:
        # One octet every few seconds keeps the idle timer going, not the line's.
        clock = task.Clock()
        c = Connection(factoryOn(clock, commandTimeout=10.0))
        self.addCleanup(c.close)
        for octet in b"NOOP":
            c.send(bytes([octet]))
            clock.advance(3)
        self.assertIn(b"421 4.4.2 Command line too slow", c.transport.value())


class ProtocolFuzzTests(SynchronousTestCase):
    @fuzzSettings(400)
    @given(smtpStreams, st.integers(min_value=1, max_value=64))
    def test_randomCommandStreams(self, data: bytes, chunk: int) -> None:
        # What the socket fuzz proves, by the hundred: whatever a client
        # sends, however cut, the session still answers (or has closed with
        # 421), and nothing is left behind (trial fails on a logged error).
        clock = task.Clock()
        factory = factoryOn(
            clock, accept=AcceptPolicy.parse("*"), maxSize=5000, maxErrors=10**6
        )
        c = Connection(factory)
        for i in range(0, len(data), chunk * 17):
            c.send(data[i : i + chunk * 17])
        # After the stream: end any message, cancel any AUTH, then NOOP;
        # AUTH failures answer after their delay.
        c.send(b"\r\n.\r\n*\r\nRSET\r\nNOOP\r\n")
        for _ in range(4):
            clock.advance(40)
        finals = [
            line for line in c.transport.value().split(b"\r\n") if line[3:4] == b" "
        ]
        self.assertTrue(
            finals[-1] == b"250 2.0.0 OK" or finals[-1].startswith(b"421 "), finals
        )
        c.close()
        self.assertEqual(factory.protocols, set())
        self.assertEqual(factory.peerConnections, {})
