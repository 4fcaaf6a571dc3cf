"""The console server's STARTTLS and AUTH: smtplib, aiosmtplib, the project's client, raw injection."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import smtplib
import socket
import ssl
import threading
import time
from typing import Any, cast

from twisted.internet import endpoints, task, threads
from twisted.internet.ssl import CertificateOptions
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from smtptut.client.message import TUTORIAL_MESSAGE
from smtptut.server.passwords import passwdMain
from smtptut.server.protocol import ConsoleESMTP
from smtptut.server.sasl import AuthThrottle
from smtptut.server.service import SinkService, makeFactory
from smtptut.server.settings import AcceptPolicy, ServerSettings
from smtptut.server.tls import ServerTLS, sinkTLSEndpoint

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


class RemoteClientESMTP(ConsoleESMTP):
    """
    The sink as it serves a client that is not on loopback (every test
    client is).
    """

    def trustsPeer(self, peer: object) -> bool:
        return False


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
            settings,
            makeFactory(settings, reactor, reactor, output=lambda: output),
            reactor,
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
        factory = makeFactory(settings, reactor, reactor, output=lambda: output)
        factory.protocol = RemoteClientESMTP
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
        sink.factory.authThrottle = AuthThrottle(reactor, baseDelay=0.2)
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


def readReply(reader: Any) -> bytes:
    """
    One whole reply from C{reader} (a file from C{makefile("rb")}): its last
    line, or C{b""} at the end of the stream.
    """
    while True:
        line = reader.readline()
        if not line or line[3:4] != b"-":
            return bytes(line)


def startTLSSocket(
    port: int, context: ssl.SSLContext, helo: bytes = b"EHLO c\r\n"
) -> ssl.SSLSocket:
    """
    Blocking: connect, EHLO, STARTTLS and the handshake; the EHLO after it
    answered.
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = raw.makefile("rb")
    assert readReply(reader).startswith(b"220")
    raw.sendall(helo + b"STARTTLS\r\n")
    assert readReply(reader).startswith(b"250")
    assert readReply(reader).startswith(b"220")
    tls = context.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(helo)
    assert readReply(tls.makefile("rb")).startswith(b"250")
    return tls


class ListenerTestCase(TLSTestCase):
    def sslSink(self, **settings: Any) -> tuple[int, io.StringIO]:
        """
        A sink on an C{ssl:} endpoint (implicit TLS); its port and console.
        """
        certificates = self.certificates
        listen = (
            "ssl:0:interface=127.0.0.1"
            f":certKey={certificates.serverCert}:privateKey={certificates.serverKey}"
        )
        config = ServerSettings(listen=listen, **settings)
        output = io.StringIO()
        self.factory = makeFactory(config, reactor, reactor, output=lambda: output)
        service = SinkService(config, self.factory, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        assert service.port is not None
        return service.port.getHost().port, output  # type: ignore[attr-defined]

    async def settle(self, factory: Any, seconds: float = 5.0) -> None:
        """
        Wait (at most C{seconds}) until C{factory} has no connection left.
        """
        for _ in range(int(seconds / 0.05)):
            if not factory.protocols:
                return
            await task.deferLater(reactor, 0.05)
        self.fail(f"{len(factory.protocols)} connections still open")


class ALPNTests(ListenerTestCase):
    """
    Issue 9 item 16: a client that offers ALPN (openssl s_client -alpn, Go,
    Android) used to get alert 80 (internal error) from Twisted's ALPN
    callback; the sink now ignores ALPN, as SMTP negotiates none.
    """

    def alpnContext(self) -> ssl.SSLContext:
        context = clientContext(self.certificates)
        context.set_alpn_protocols(["smtp", "h2"])
        return context

    async def test_startTLSWithALPN(self) -> None:
        sink = self.sink()
        context = self.alpnContext()

        def session() -> str | None:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                s.starttls(context=context)
                s.sendmail("a@c.test", ["console@s.test"], MESSAGE)
                return cast(ssl.SSLSocket, s.sock).selected_alpn_protocol()

        self.assertIsNone(await threads.deferToThread(session))
        [message] = sink.messages()
        self.assertIn("with ESMTPS", message)

    async def test_sslListenerWithALPN(self) -> None:
        port, output = self.sslSink()
        context = self.alpnContext()

        def session() -> None:
            with smtplib.SMTP_SSL("localhost", port, context=context, timeout=10) as s:
                s.sendmail("a@c.test", ["console@s.test"], MESSAGE)

        await threads.deferToThread(session)
        self.assertIn("secret body", output.getvalue())

    def test_sslEndpointKeepsItsContextWhereTheSwapLooks(self) -> None:
        # The one private attribute swapped at run time (sinkTLSEndpoint, for
        # the ALPN bug): if Twisted renames or changes it, this fails first.
        certificates = self.certificates
        endpoint = endpoints.serverFromString(
            reactor,
            "ssl:0:interface=127.0.0.1"
            f":certKey={certificates.serverCert}:privateKey={certificates.serverKey}",
        )
        self.assertIsInstance(endpoint, endpoints.SSL4ServerEndpoint)
        options = endpoint._sslContextFactory
        self.assertIsInstance(options, CertificateOptions)
        self.assertIsNotNone(options.privateKey)
        self.assertIsNotNone(options.certificate)
        self.assertIs(sinkTLSEndpoint(endpoint), endpoint)
        tls = endpoint._sslContextFactory
        self.assertIsInstance(tls, ServerTLS)
        self.assertEqual(tls.options.certificate, options.certificate)
        # Any other endpoint is left as it is.
        tcp = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        self.assertIs(sinkTLSEndpoint(tcp), tcp)

    async def opensslSession(self, *argv: str) -> Any:
        return await runProcess(
            reactor,
            [
                "openssl",
                "s_client",
                *argv,
                "-CAfile",
                self.certificates.caCert,
                "-verify_return_error",
                "-alpn",
                "smtp",
                "-ign_eof",
            ],
            stdin=b"EHLO openssl.test\r\nQUIT\r\n",
            timeout=20,
        )

    async def test_opensslStartTLSWithALPN(self) -> None:
        sink = self.sink()
        result = await self.opensslSession(
            "-starttls", "smtp", "-connect", f"127.0.0.1:{sink.port}"
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("No ALPN negotiated", result.out)
        self.assertIn("250-ENHANCEDSTATUSCODES", result.out)
        self.assertIn("221 2.0.0 Bye", result.out)

    async def test_opensslSSLListenerWithALPN(self) -> None:
        port, _ = self.sslSink()
        result = await self.opensslSession("-connect", f"127.0.0.1:{port}")
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("220 localhost ESMTP smtptut ready", result.out)
        self.assertIn("221 2.0.0 Bye", result.out)


class CipherTests(ListenerTestCase):
    """
    Issue 9 item 17: Mozilla's "intermediate" profile, as testssl.sh checks
    it: TLS 1.2 with ECDHE and AEAD ciphers, TLS 1.3; no CBC (LUCKY13), no
    static RSA key exchange (no forward secrecy).  An RSA certificate, so
    that static RSA key exchange is possible at all.
    """

    def setUp(self) -> None:
        super().setUp()
        import trustme

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ca = trustme.CA(key_type=trustme.KeyType.RSA)
        issued = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
        self.certificates = Certificates(
            directory,
            os.path.join(directory, "server.pem"),
            os.path.join(directory, "server.key"),
            os.path.join(directory, "ca.pem"),
        )
        issued.cert_chain_pems[0].write_to_path(self.certificates.serverCert)
        issued.private_key_pem.write_to_path(self.certificates.serverKey)
        ca.cert_pem.write_to_path(self.certificates.caCert)

    def handshake(
        self, port: int, ciphers: str | None, version: ssl.TLSVersion
    ) -> tuple[str, str]:
        """
        Blocking: STARTTLS with a client limited to C{ciphers} (TLS 1.2 and
        below) and C{version}; the cipher and protocol agreed.
        """
        context = clientContext(self.certificates)
        context.maximum_version = version
        if ciphers is not None:
            context.set_ciphers(ciphers)
        with startTLSSocket(port, context) as tls:
            cipher = tls.cipher()
            assert cipher is not None
            tls.sendall(b"QUIT\r\n")
            return cipher[0], cipher[1]

    async def test_refusedCiphers(self) -> None:
        sink = self.sink()
        for refused in [
            "AES128-GCM-SHA256",  # static RSA key exchange, AEAD
            "AES256-SHA",  # static RSA, CBC
            "ECDHE-RSA-AES128-SHA",  # ECDHE, CBC
            "ECDHE-RSA-AES256-SHA384",  # ECDHE, CBC
        ]:
            with self.assertRaises(ssl.SSLError, msg=refused):
                await threads.deferToThread(
                    self.handshake, sink.port, refused, ssl.TLSVersion.TLSv1_2
                )
        self.assertIn(
            "TLS handshake with 127.0.0.1 failed: no shared cipher", self.logText()
        )

    async def test_acceptedCiphers(self) -> None:
        sink = self.sink()
        tls12 = await threads.deferToThread(
            self.handshake,
            sink.port,
            "ECDHE-RSA-AES128-GCM-SHA256",
            ssl.TLSVersion.TLSv1_2,
        )
        self.assertEqual(tls12, ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2"))
        tls13 = await threads.deferToThread(
            self.handshake, sink.port, None, ssl.TLSVersion.TLSv1_3
        )
        self.assertEqual(tls13[1], "TLSv1.3")

    async def test_sslListenerRefusesCBC(self) -> None:
        port, _ = self.sslSink()
        context = clientContext(self.certificates)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256")

        def connect() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                context.wrap_socket(raw, server_hostname="localhost").close()

        with self.assertRaises(ssl.SSLError):
            await threads.deferToThread(connect)


class ChainTests(ListenerTestCase):
    """
    Issue 10 item 7: a certificate file with the leaf and its intermediate
    (a fullchain.pem) sends both, so that a client trusting only the root
    verifies the server.
    """

    def setUp(self) -> None:
        super().setUp()
        import trustme

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        root = trustme.CA()
        intermediate = root.create_child_ca()
        leaf = intermediate.issue_cert("localhost", "127.0.0.1")
        self.rootPath = os.path.join(directory, "root.pem")
        self.chainPath = os.path.join(directory, "fullchain.pem")
        self.keyPath = os.path.join(directory, "key.pem")
        root.cert_pem.write_to_path(self.rootPath)
        # Leaf first, then the intermediate, as CAs hand them out.
        leaf.cert_chain_pems[0].write_to_path(self.chainPath)
        intermediate.cert_pem.write_to_path(self.chainPath, append=True)
        leaf.private_key_pem.write_to_path(self.keyPath)

    async def test_opensslVerifiesTheChain(self) -> None:
        sink = self.sink(tlsCert=self.chainPath, tlsKey=self.keyPath)
        result = await runProcess(
            reactor,
            [
                "openssl",
                "s_client",
                "-starttls",
                "smtp",
                "-connect",
                f"127.0.0.1:{sink.port}",
                "-CAfile",
                self.rootPath,
                "-verify_return_error",
                "-showcerts",
                "-ign_eof",
            ],
            stdin=b"QUIT\r\n",
            timeout=20,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("Verify return code: 0 (ok)", result.out)
        self.assertIn(" 1 s:", result.out)  # depth 1: the intermediate

    async def test_smtplibTrustingOnlyTheRoot(self) -> None:
        sink = self.sink(tlsCert=self.chainPath, tlsKey=self.keyPath)
        context = ssl.create_default_context(cafile=self.rootPath)

        def session() -> None:
            with smtplib.SMTP("localhost", sink.port, timeout=10) as s:
                s.starttls(context=context)
                s.sendmail("a@c.test", ["console@s.test"], MESSAGE)

        await threads.deferToThread(session)
        self.assertEqual(len(sink.messages()), 1)

    async def test_keyInTheCertificateFile(self) -> None:
        # SMTPTUT_TLS_KEY defaults to the certificate file: key and chain in one.
        combined = self.chainPath + ".combined"
        with open(combined, "wb") as out:
            for path in (self.chainPath, self.keyPath):
                with open(path, "rb") as f:
                    out.write(f.read())
        sink = self.sink(tlsCert=combined, tlsKey=combined)
        context = ssl.create_default_context(cafile=self.rootPath)

        def session() -> None:
            with smtplib.SMTP("localhost", sink.port, timeout=10) as s:
                s.starttls(context=context)
                s.noop()

        await threads.deferToThread(session)


class SlotTests(ListenerTestCase):
    """
    Issue 9 items 13 and 19(a): every TLS session ends and frees its slot,
    whatever the client does after QUIT or instead of the handshake.
    """

    async def test_pipelinedQuitThenCleanTLSClose(self) -> None:
        # Reading stayed paused after a pipelined QUIT closed the session
        # while the Maildir stored the message, so the client's close_notify
        # and FIN were never read: CLOSE-WAIT for ever, one slot gone each.
        sink = self.sink(maildir=self.mktemp(), maxConnections=2)
        context = clientContext(self.certificates)

        def session() -> list[bytes]:
            tls = startTLSSocket(sink.port, context)
            reader = tls.makefile("rb")
            tls.sendall(b"MAIL FROM:<a@c.test>\r\nRCPT TO:<console@s.test>\r\nDATA\r\n")
            replies = [readReply(reader) for _ in range(3)]
            tls.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            replies += [readReply(reader), readReply(reader)]
            try:
                tls.unwrap().close()
            except (OSError, ssl.SSLError):
                tls.close()
            return replies

        for _ in range(5):
            replies = await threads.deferToThread(session)
            self.assertEqual(
                [r[:3] for r in replies], [b"250", b"250", b"354", b"250", b"221"]
            )
        # Well before the close timeout (deadlines.CLOSE_TIMEOUT) could cut them.
        await self.settle(sink.factory, 3.0)
        self.assertEqual(len(sink.stored()), 5)
        greeting = await threads.deferToThread(
            lambda: socket.create_connection(("127.0.0.1", sink.port), 10).recv(100)
        )
        self.assertTrue(greeting.startswith(b"220 "), greeting)

    async def test_opensslScriptedSessions(self) -> None:
        sink = self.sink(maildir=self.mktemp(), maxConnections=2)
        script = (
            b"EHLO openssl.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<console@s.test>\r\n"
            b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
        )
        for _ in range(3):
            result = await runProcess(
                reactor,
                [
                    "openssl",
                    "s_client",
                    "-starttls",
                    "smtp",
                    "-quiet",
                    "-connect",
                    f"127.0.0.1:{sink.port}",
                    "-CAfile",
                    self.certificates.caCert,
                ],
                stdin=script,
                timeout=20,
            )
            self.assertIn("221 2.0.0 Bye", result.out, result.out + result.err)
        await self.settle(sink.factory, 3.0)
        self.assertEqual(len(sink.stored()), 3)

    async def test_sslListenerPipelinedQuit(self) -> None:
        port, output = self.sslSink(
            maildir=os.path.abspath(self.mktemp()), maxConnections=2
        )
        context = clientContext(self.certificates)

        def session() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                tls = context.wrap_socket(raw, server_hostname="localhost")
                reader = tls.makefile("rb")
                readReply(reader)
                tls.sendall(
                    b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<console@s.test>\r\n"
                    b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
                )
                last = b""
                for _ in range(6):
                    last = readReply(reader)
                try:
                    tls.unwrap()
                except (OSError, ssl.SSLError):
                    pass
                return last

        for _ in range(4):
            self.assertTrue((await threads.deferToThread(session)).startswith(b"221"))
        await self.settle(self.factory, 3.0)

    async def idleClient(self, port: int, startTLS: bool) -> float:
        """
        Connect, maybe ask for STARTTLS, then send nothing (no TLS handshake
        either) until the server closes; how long that took.
        """

        def idle() -> float:
            start = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
                if startTLS:
                    reader = raw.makefile("rb")
                    readReply(reader)
                    raw.sendall(b"STARTTLS\r\n")
                    readReply(reader)
                try:
                    while raw.recv(4096):
                        pass
                except OSError:
                    pass
                return time.monotonic() - start

        return cast(float, await threads.deferToThread(idle))

    async def silentAfterHandshake(
        self, factory: Any, port: int, startTLS: bool
    ) -> None:
        """
        A client that completes the TLS handshake, then sends nothing and
        reads nothing (the server's 421 and close_notify stay unread) and
        keeps its socket open: the server must still end the connection.
        """
        handshakeDone = threading.Event()
        release = threading.Event()

        def silent() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
                if startTLS:
                    reader = raw.makefile("rb")
                    readReply(reader)
                    raw.sendall(b"STARTTLS\r\n")
                    readReply(reader)
                tls = clientContext(self.certificates).wrap_socket(
                    raw, server_hostname="localhost"
                )
                handshakeDone.set()
                release.wait(10)
                tls.close()

        client = threads.deferToThread(silent)
        try:
            for _ in range(100):
                if handshakeDone.is_set():
                    break
                await task.deferLater(reactor, 0.05)
            self.assertTrue(handshakeDone.is_set())
            # 1 s idle, then at most 1 s for the close.
            await self.settle(factory, 3.0)
        finally:
            release.set()
            await client

    async def test_idleBeforeStartTLSHandshake(self) -> None:
        sink = self.sink(idleTimeout=1.0)
        elapsed = await self.idleClient(sink.port, startTLS=True)
        self.assertLess(elapsed, 5)
        await self.settle(sink.factory)
        self.assertIn("TLS handshake not done in 1.0 s", self.logText())

    async def test_idleSSLListenerWithoutHandshake(self) -> None:
        port, _ = self.sslSink(idleTimeout=1.0)
        elapsed = await self.idleClient(port, startTLS=False)
        self.assertLess(elapsed, 5)
        await self.settle(self.factory)

    async def test_idleAfterHandshakeNotReading(self) -> None:
        sink = self.sink(idleTimeout=1.0)
        await self.silentAfterHandshake(sink.factory, sink.port, startTLS=True)
        self.assertIn("did not finish closing", self.logText())

    async def test_sslListenerIdleAfterHandshake(self) -> None:
        port, _ = self.sslSink(idleTimeout=1.0)
        await self.silentAfterHandshake(self.factory, port, startTLS=False)
        self.assertIn("did not finish closing", self.logText())
