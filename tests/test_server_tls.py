"""The console server's STARTTLS and AUTH: smtplib, aiosmtplib, the project's client, raw injection."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import smtplib
import socket
import ssl
from typing import Any, cast

from twisted.internet import threads
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from smtptut.config import AcceptPolicy, ServerSettings
from smtptut.message import TUTORIAL_MESSAGE
from smtptut.passwords import passwdMain
from smtptut.server import SinkService, makeFactory

from .helpers import (
    SMTPTUT,
    Certificates,
    Sink,
    makeCertificates,
    reactor,
    runProcess,
    startSink,
)

MESSAGE = b"Subject: over TLS\r\n\r\nsecret body\r\n"


def clientContext(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certificates.caCert)
    return context


class TLSTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certificates = makeCertificates(os.path.abspath(self.mktemp()))
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def sink(self, **settings: Any) -> Sink:
        settings.setdefault("accept", "console")
        settings.setdefault("tlsCert", self.certificates.serverCert)
        settings.setdefault("tlsKey", self.certificates.serverKey)
        sink = startSink(reactor, **settings)
        self.addCleanup(sink.stop)
        return sink

    def logText(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)

    def usersFile(self, user: str, password: str) -> str:
        path = os.path.abspath(self.mktemp())
        os.environ["SMTPTUT_PASSWORD"] = password
        try:
            self.assertEqual(passwdMain(["-f", path, "add", user]), 0)
        finally:
            del os.environ["SMTPTUT_PASSWORD"]
        return path


class StartTLSTests(TLSTestCase):
    async def test_smtplibStartTLSAndLogin(self) -> None:
        sink = self.sink(maildir=self.mktemp())
        context = clientContext(self.certificates)

        def session() -> Any:
            with smtplib.SMTP("localhost", sink.port, timeout=10) as s:
                s.ehlo("client.test")
                before = dict(s.esmtp_features)
                s.starttls(context=context)
                s.ehlo("client.test")
                after = dict(s.esmtp_features)
                s.login("guest", "password")
                s.sendmail("a@client.test", ["console@sink.test"], MESSAGE)
                return before, after

        before, after = await threads.deferToThread(session)
        self.assertIn("starttls", before)
        self.assertNotIn("starttls", after)
        [stored] = sink.stored()
        self.assertIn(b"with ESMTPSA", stored)
        self.assertTrue(stored.endswith(b"\nsecret body\n"))
        self.assertIn("user=guest tls=True", self.logText())

    async def test_plaintextPipelinedAfterStartTLSIsDiscarded(self) -> None:
        # CVE-2011-0411: commands sent in plaintext behind STARTTLS must not
        # run as if they had come over TLS.
        sink = self.sink()
        context = clientContext(self.certificates)

        def attack() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as raw:
                reader = raw.makefile("rb")
                reader.readline()
                raw.sendall(
                    b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@c>\r\n"
                    b"RCPT TO:<console@s>\r\n"
                )
                replies = []
                while True:
                    line = reader.readline()
                    if line[3:4] == b" ":
                        replies.append(line)
                        if line.startswith(b"220"):
                            break
                tls = context.wrap_socket(raw, server_hostname="localhost")
                # State is reset: the HELO, the MAIL and the RCPT are gone.
                tls.sendall(b"RCPT TO:<console@s>\r\nMAIL FROM:<a@c>\r\n")
                tlsReader = tls.makefile("rb")
                replies.append(tlsReader.readline())
                replies.append(tlsReader.readline())
                tls.sendall(b"QUIT\r\n")
                replies.append(tlsReader.readline())
                return replies

        replies = await threads.deferToThread(attack)
        self.assertEqual(
            [r[:3] for r in replies], [b"250", b"220", b"503", b"503", b"221"]
        )
        self.assertEqual(replies[2], b"503 5.5.1 Need MAIL before RCPT\r\n")
        self.assertEqual(replies[3], b"503 5.5.1 Send HELO or EHLO first\r\n")
        self.assertIn("pipelined after STARTTLS", self.logText())

    async def test_aiosmtplib(self) -> None:
        sink = self.sink()
        context = clientContext(self.certificates)

        async def send() -> Any:
            import aiosmtplib

            return await aiosmtplib.send(
                MESSAGE,
                sender="a@client.test",
                recipients=["console@sink.test"],
                hostname="localhost",
                port=sink.port,
                start_tls=True,
                tls_context=context,
                username="guest",
                password="password",
                timeout=10,
            )

        errors, response = await threads.deferToThread(asyncio.run, send())
        self.assertEqual(errors, {})
        self.assertIn("2.0.0", response)
        [message] = sink.messages()
        self.assertIn("with ESMTPSA", message)

    async def test_projectClientVerifiedTLSAndAuth(self) -> None:
        sink = self.sink()
        result = await runProcess(
            reactor,
            [
                SMTPTUT,
                "send",
                "--to",
                "console@localhost",
                # A login goes to a relay only (issue 9).
                "--relay",
                f"localhost:{sink.port}",
                "--tls",
                "verify",
                "--ca",
                self.certificates.caCert,
                "--user",
                "guest",
                "--timeout",
                "10",
                "--data",
                "-",
            ],
            {"SMTPTUT_PASSWORD": "password"},
            stdin=TUTORIAL_MESSAGE,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("console@localhost: delivered", result.out)
        [message] = sink.messages()
        self.assertIn("with ESMTPSA", message)
        self.assertIn("Subject: Tutorate!", message)


class ImplicitTLSTests(TLSTestCase):
    async def test_sslEndpoint(self) -> None:
        # SMTPTUT_LISTEN=ssl:...: TLS from the first octet (port 465 style).
        certificates = self.certificates
        listen = (
            "ssl:0:interface=127.0.0.1"
            f":certKey={certificates.serverCert}:privateKey={certificates.serverKey}"
        )
        settings = ServerSettings(listen=listen)
        output = io.StringIO()
        sink = SinkService(
            settings, makeFactory(settings, reactor, output=lambda: output), reactor
        )
        sink.startService()
        self.addCleanup(sink.stopService)
        assert sink.port is not None
        port = sink.port.getHost().port  # type: ignore[attr-defined]
        context = clientContext(certificates)

        def session() -> dict[str, str]:
            with smtplib.SMTP_SSL("localhost", port, context=context, timeout=10) as s:
                s.ehlo("c")
                features = dict(s.esmtp_features)
                s.login("guest", "password")
                s.sendmail("a@c.test", ["console@s.test"], MESSAGE)
                return features

        features = await threads.deferToThread(session)
        self.assertNotIn("starttls", features)
        self.assertIn("auth", features)
        self.assertIn("with ESMTPSA", output.getvalue())


class AuthTests(TLSTestCase):
    async def rawSession(self, sink: Sink, script: bytes, n: int) -> list[bytes]:
        from .helpers import smtpReplies

        return cast(
            list[bytes],
            await threads.deferToThread(smtpReplies, sink.port, script, n),
        )

    async def test_remotePlaintextGetsNoAuth(self) -> None:
        # A client that is not on loopback: AUTH only after STARTTLS.
        settings = ServerSettings(
            listen="tcp:0:interface=127.0.0.1",
            accept=AcceptPolicy.parse("console"),
            tlsCert=self.certificates.serverCert,
            tlsKey=self.certificates.serverKey,
        )
        output = io.StringIO()
        factory = makeFactory(
            settings, reactor, output=lambda: output, loopbackPeersTrusted=False
        )
        self.assertFalse(factory.loopbackPeersTrusted)
        listener = reactor.listenTCP(0, factory, interface="127.0.0.1")
        sink = Sink(listener.getHost().port, factory, listener, output, settings)
        self.addCleanup(sink.stop)
        plain = base64.b64encode(b"\0guest\0password")
        replies = await self.rawSession(
            sink, b"EHLO c\r\nAUTH PLAIN " + plain + b"\r\n", 2
        )
        self.assertEqual(
            replies[2],
            b"538 5.7.11 Encryption required for requested authentication mechanism",
        )
        context = clientContext(self.certificates)

        def overTLS() -> Any:
            with smtplib.SMTP("localhost", sink.port, timeout=10) as s:
                s.ehlo("c")
                plaintext = s.has_extn("auth")
                s.starttls(context=context)
                s.ehlo("c")
                offered = s.has_extn("auth")
                try:
                    s.login("guest", "wrong")
                except smtplib.SMTPAuthenticationError as e:
                    failed = e.smtp_code
                return plaintext, offered, failed, s.login("guest", "password")

        plaintext, overTLSOffered, failed, login = await threads.deferToThread(overTLS)
        self.assertFalse(plaintext)
        self.assertTrue(overTLSOffered)
        self.assertEqual(failed, 535)
        self.assertEqual(login[0], 235)

    async def test_usersFile(self) -> None:
        users = self.usersFile("app", "s3cret-pass")
        sink = self.sink(users=users)

        def logins() -> list[Any]:
            results = []
            for user, password in [("app", "s3cret-pass"), ("guest", "password")]:
                with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                    try:
                        results.append(s.login(user, password)[0])
                    except smtplib.SMTPAuthenticationError as e:
                        results.append(e.smtp_code)
            return results

        # The users file replaces the tutorial's guest.
        self.assertEqual(await threads.deferToThread(logins), [235, 535])

    async def test_repeatedFailuresSlowDownAndEndTheSession(self) -> None:
        sink = self.sink()
        sink.factory.authDelay = 0.2
        bad = base64.b64encode(b"\0guest\0not-the-password-XYZZY")
        login = (
            b"AUTH LOGIN\r\n"
            + base64.b64encode(b"guest")
            + b"\r\n"
            + base64.b64encode(b"hunter2-PASSWORD")
            + b"\r\n"
        )
        script = (
            b"EHLO c\r\nAUTH PLAIN " + bad + b"\r\n" + login + b"AUTH PLAIN\r\n" + bad
        )
        script += b"\r\nNOOP\r\n"
        start = reactor.seconds()
        replies = await self.rawSession(sink, script, 8)
        elapsed = reactor.seconds() - start
        self.assertEqual(
            [r[:3] for r in replies],
            [b"220", b"250", b"535", b"334", b"334", b"535", b"334", b"535", b"421"],
        )
        self.assertEqual(replies[-2], b"535 5.7.8 Authentication credentials invalid")
        # 0.2 + 0.4 + 0.6 seconds of waiting.
        self.assertGreater(elapsed, 1.1)
        log = self.logText()
        self.assertIn("refused AUTH from 127.0.0.1: 535", log)
        for secret in (b"not-the-password-XYZZY", b"hunter2-PASSWORD"):
            self.assertNotIn(secret.decode(), log)
            self.assertNotIn(base64.b64encode(secret).decode(), log)
        self.assertNotIn(bad.decode(), log)

    async def test_authCancelledAndGarbage(self) -> None:
        sink = self.sink()
        replies = await self.rawSession(
            sink,
            b"EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN !!!\r\nAUTH CRAM-MD5\r\n"
            b"AUTH PLAIN\r\n=\r\nNOOP\r\n",
            8,
        )
        self.assertEqual(
            [r[:3] for r in replies],
            [b"220", b"250", b"334", b"501", b"501", b"504", b"334", b"501", b"250"],
        )

    async def test_noStartTLSWithoutCertificate(self) -> None:
        sink = startSink(reactor)
        self.addCleanup(sink.stop)
        replies = await self.rawSession(sink, b"EHLO c\r\nSTARTTLS\r\n", 2)
        self.assertEqual(replies[2], b"502 5.5.1 TLS not available")
