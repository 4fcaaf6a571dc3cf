"""smtptut.testing, the public test doubles: the README's example and every helper."""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import textwrap
from typing import Any

from dns import message as dnsMessage
from dns import query as dnsQuery
from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.names import client, dns, error
from twisted.trial.unittest import TestCase

from smtptut import testing
from smtptut.testing import (
    Behaviour,
    RecordingFactory,
    freePort,
    listenOnLoopbacks,
    startDNSServer,
    startSink,
)

from .helpers import TOP, pythonOutput, reactor


class ReadmeExampleTests(TestCase):
    def test_readmeShowsThisExample(self) -> None:
        """
        README's trial example is L{tests.test_testing_example}, which
        trial runs.
        """
        with open(os.path.join(TOP, "tests", "test_testing_example.py")) as f:
            example = f.read().split('"""\n\n', 1)[1]
        with open(os.path.join(TOP, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertIn("```python\n" + example + "```\n", readme)

    def test_publicAndDocumented(self) -> None:
        """
        Every name in C{smtptut.testing.__all__} is there, with a docstring.
        """
        for name in testing.__all__:
            value = getattr(testing, name)
            if name == "Zone":
                continue  # a type alias
            doc = value.__doc__ or ""
            self.assertTrue(doc.strip(), name)
            self.assertFalse(doc.startswith(name + "("), f"{name}: no docstring")

    def test_runtimeDependenciesOnly(self) -> None:
        """
        Importing smtptut.testing needs no development dependency.
        """
        code = textwrap.dedent(
            """
            import sys
            import smtptut.testing
            print(sorted(m for m in ("trustme", "aiosmtpd", "hypothesis",
                "aiosmtplib") if m in sys.modules))
            """
        )
        self.assertEqual(pythonOutput(code), "[]\n")


# ----------------------------------------------------------------- the sink


def send(port: int, message: bytes, to: str = "a@b.test", host: str = "127.0.0.1"):
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        return smtp.sendmail("from@app.test", [to], message)


class SinkTests(TestCase):
    timeout = 60

    def sink(self, **settings: Any) -> testing.Sink:
        sink = startSink(reactor, **settings)
        self.addCleanup(sink.stop)
        return sink

    async def test_storedAndParsed(self) -> None:
        """
        Messages are kept in arrival order, as bytes (trace on top, then the
        message with LF line ends) and as email objects.
        """
        sink = self.sink()
        await deferToThread(send, sink.port, b"Subject: one\r\n\r\nfirst\r\n")
        await deferToThread(send, sink.port, b"Subject: two\r\n\r\nsecond\r\n", "c@d")
        messages = await sink.waitForMessages(2, timeout=10)
        self.assertEqual([m["Subject"] for m in messages], ["one", "two"])
        self.assertEqual(messages[1]["Delivered-To"], "c@d")
        self.assertEqual(messages[1]["Return-Path"], "<from@app.test>")
        first, second = sink.stored()
        self.assertTrue(first.startswith(b"Return-Path: <from@app.test>\n"))
        self.assertTrue(first.endswith(b"\nSubject: one\n\nfirst\n"), first)
        self.assertTrue(second.endswith(b"\nSubject: two\n\nsecond\n"), second)

    async def test_waitTimesOut(self) -> None:
        """
        Waiting for more messages than come fails after the timeout.
        """
        sink = self.sink()
        await deferToThread(send, sink.port, b"Subject: one\r\n\r\n")
        with self.assertRaises(defer.TimeoutError):
            await sink.waitForMessages(2, timeout=0.2)
        self.assertEqual(len(sink.messages()), 1)

    async def test_settings(self) -> None:
        """
        Settings are the server's: here the accepted recipients (as text)
        and the largest message.
        """
        sink = self.sink(accept="console", maxSize=100)
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            await deferToThread(send, sink.port, b"\r\n", "other@b.test")
        with self.assertRaises(smtplib.SMTPException):
            await deferToThread(send, sink.port, b"x" * 200 + b"\r\n", "console@b")
        self.assertEqual(sink.messages(), [])
        self.assertEqual(sink.settings.maxSize, 100)

    async def test_stopRemovesItsMaildir(self) -> None:
        """
        Stopping closes the port and removes the Maildir the sink made.
        """
        sink = startSink(reactor)
        await deferToThread(send, sink.port, b"Subject: x\r\n\r\n")
        await sink.waitForMessages(1)
        await sink.stop()
        self.assertFalse(os.path.exists(sink.maildir))
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((sink.host, sink.port), timeout=5).close()

    async def test_givenMaildirKept(self) -> None:
        """
        A Maildir the caller gives is used and kept.
        """
        path = self.mktemp()
        sink = startSink(reactor, maildir=path)
        await deferToThread(send, sink.port, b"Subject: x\r\n\r\n")
        await sink.waitForMessages(1)
        await sink.stop()
        self.assertEqual(len(os.listdir(os.path.join(path, "new"))), 1)


# --------------------------------------------------- the recording server


class RecordingServerTests(TestCase):
    timeout = 60

    def serve(self, **behaviour: object) -> RecordingFactory:
        exchanges = listenOnLoopbacks(
            reactor,
            {"127.0.0.1": Behaviour(**behaviour)},  # type: ignore[arg-type]
        )
        self.addCleanup(exchanges.stop)
        self.port = exchanges.port
        return exchanges.factories["127.0.0.1"]

    async def test_records(self) -> None:
        """
        Commands, the message (dot-unstuffed) and its envelope are recorded;
        the local parts in C{refuse} get 550.
        """
        factory = self.serve()

        def session() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
                return smtp.sendmail(
                    "s@c.test", ["r@d.test", "bad@d.test"], b"..dot\r\nend\r\n"
                )

        refused = await deferToThread(session)
        self.assertEqual(refused, {"bad@d.test": (550, b"5.1.1 no such user here")})
        [received] = factory.messages
        self.assertEqual(received.sender, b"s@c.test")
        self.assertEqual(received.recipients, [b"r@d.test"])
        self.assertEqual(received.data, b"..dot\r\nend\r\n")
        self.assertEqual(received.address, "127.0.0.1")
        self.assertFalse(received.tls)
        self.assertIn(b"mail FROM:<s@c.test> size=12", factory.commands)
        self.assertEqual((factory.connections, factory.open), (1, 0))

    async def test_greeting(self) -> None:
        """
        A 4xx greeting is sent, then the connection closed.
        """
        self.serve(greeting=b"421 4.3.2 busy")
        with self.assertRaises(smtplib.SMTPConnectError) as caught:
            await deferToThread(smtplib.SMTP, "127.0.0.1", self.port, timeout=10)
        self.assertEqual(caught.exception.smtp_code, 421)

    async def test_dropInData(self) -> None:
        """
        C{dropInData} closes the connection in the message.
        """
        factory = self.serve(dropInData=True)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            await deferToThread(send, self.port, b"Subject: x\r\n\r\n")
        self.assertEqual(factory.messages, [])

    async def test_stallAtDot(self) -> None:
        """
        C{stallAtDot} takes the message and never answers the dot.
        """

        def session() -> None:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
                smtp.sock.settimeout(0.5)  # type: ignore[union-attr]
                smtp.sendmail("s@c", ["r@d"], b"x\r\n")

        factory = self.serve(stallAtDot=True)
        with self.assertRaises((TimeoutError, smtplib.SMTPServerDisconnected)):
            await deferToThread(session)
        self.assertEqual(len(factory.messages), 1)

    async def test_silent(self) -> None:
        """
        A C{silent} server accepts the connection and says nothing.
        """
        self.serve(silent=True)

        def greeting() -> bytes:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.settimeout(0.3)
                try:
                    return s.recv(100)
                except TimeoutError:
                    return b"(nothing)"

        self.assertEqual(await deferToThread(greeting), b"(nothing)")

    async def test_auth(self) -> None:
        """
        AUTH PLAIN and LOGIN check the C{users}; the answers are recorded.
        """
        factory = self.serve(auth=(b"PLAIN", b"LOGIN"), users={b"u": b"pw"})

        def login(mechanism: str, password: str) -> tuple[int, bytes | str]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
                smtp.ehlo()
                smtp.user, smtp.password = "u", password
                authobject = getattr(smtp, "auth_" + mechanism.lower())
                try:
                    # RecordingSMTP's LOGIN takes no initial response.
                    return smtp.auth(mechanism, authobject, initial_response_ok=False)
                except smtplib.SMTPAuthenticationError as e:
                    return (e.smtp_code, e.smtp_error)

        self.assertEqual((await deferToThread(login, "PLAIN", "pw"))[0], 235)
        self.assertEqual((await deferToThread(login, "LOGIN", "pw"))[0], 235)
        self.assertEqual((await deferToThread(login, "PLAIN", "no"))[0], 535)
        self.assertIn(base64.b64encode(b"\0u\0pw"), factory.authLines)

    async def test_loopbacks(self) -> None:
        """
        One port on several loopback addresses, one record each; an address
        mapped to None refuses connections.
        """
        exchanges = listenOnLoopbacks(
            reactor, {"127.0.0.2": Behaviour(), "127.0.0.3": None}
        )
        self.addCleanup(exchanges.stop)
        await deferToThread(
            send, exchanges.port, b"Subject: x\r\n\r\n", host="127.0.0.2"
        )
        self.assertEqual(list(exchanges.factories), ["127.0.0.2"])
        self.assertEqual(
            exchanges.factories["127.0.0.2"].messages[0].address, "127.0.0.2"
        )
        with self.assertRaises(ConnectionRefusedError):
            await deferToThread(send, exchanges.port, b"x\r\n", host="127.0.0.3")

    def test_freePort(self) -> None:
        """
        Nothing listens on the port L{freePort} gives.
        """
        port = freePort("127.0.0.2")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()


# ------------------------------------------------------------ the DNS double


class DNSServerTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        server = startDNSServer(
            reactor,
            "example.test",
            {
                "example.test": [
                    testing.mx(10, "mx.example.test"),
                    testing.txt("v=spf1 -all"),
                ],
                "mx.example.test": [testing.a("127.0.0.2"), testing.aaaa("::1")],
                "www.example.test": [testing.cname("mx.example.test")],
            },
        )
        self.addCleanup(server.stop)
        self.port = server.port
        self.assertEqual(server.nameserver, f"127.0.0.1:{server.port}")
        self.resolver = client.Resolver(
            servers=[("127.0.0.1", server.port)], reactor=reactor
        )

    async def test_records(self) -> None:
        """
        Each record helper's record is served, over UDP.
        """
        t = (2,)
        [mx], _, _ = await self.resolver.lookupMailExchange("example.test", t)
        self.assertEqual(
            (mx.payload.preference, str(mx.payload.name)), (10, "mx.example.test")
        )
        [txt], _, _ = await self.resolver.lookupText("example.test", t)
        self.assertEqual(txt.payload.data, [b"v=spf1 -all"])
        [a], _, _ = await self.resolver.lookupAddress("mx.example.test", t)
        self.assertEqual(a.payload.dottedQuad(), "127.0.0.2")
        [aaaa], _, _ = await self.resolver.lookupIPV6Address("mx.example.test", t)
        self.assertEqual(socket.inet_ntop(socket.AF_INET6, aaaa.payload.address), "::1")
        answers, _, _ = await self.resolver.lookupCanonicalName("www.example.test", t)
        self.assertEqual(answers[0].type, dns.CNAME)
        self.assertEqual(str(answers[0].payload.name), "mx.example.test")

    async def test_tcp(self) -> None:
        """
        The same port serves TCP (for answers too big for UDP).
        """
        query = dnsMessage.make_query("example.test", "MX")
        answer = await deferToThread(
            dnsQuery.tcp, query, "127.0.0.1", timeout=5, port=self.port
        )
        self.assertEqual(answer.answer[0][0].preference, 10)

    async def test_missingNames(self) -> None:
        """
        A name in the zone but not listed is NXDOMAIN, and so is a name
        outside it: nothing is asked of any other server.
        """
        with self.assertRaises(error.DNSNameError):
            await self.resolver.lookupAddress("nowhere.example.test", (2,))
        with self.assertRaises(error.DNSNameError):
            await self.resolver.lookupAddress("example.org", (2,))
