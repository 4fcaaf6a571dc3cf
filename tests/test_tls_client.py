"""STARTTLS under each SMTPTUT_TLS mode, and AUTH, against loopback servers and aiosmtpd."""

from __future__ import annotations

import base64
import io
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.client.exchange import MailExchange
from smtptut.client.message import checkMessage, tutorialMessage
from smtptut.client.model import (
    AttemptResult,
    Envelope,
    RecipientOutcome,
    Status,
    TLSPolicy,
)
from smtptut.client.protocol import SMTPClientFactory
from smtptut.client.routing import deliverToExchanges
from smtptut.client.settings import ClientSettings

from .helpers import (
    Behaviour,
    Exchanges,
    listenOnLoopbacks,
    makeCertificates,
    makeCommonNameOnlyCertificate,
    reactor,
    serverTLS,
    startAiosmtpd,
)

PASSWORD = "s3cret-Pa55"


def envelope(*recipients: str) -> Envelope:
    return Envelope(
        "sender@client.test", recipients or ("user@example.test",), tutorialMessage()
    )


class TLSModeTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certificates = makeCertificates(self.mktemp())
        self.tls = serverTLS(self.certificates)

    def serve(self, behaviour: Behaviour) -> Exchanges:
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": behaviour})
        self.addCleanup(servers.stop)
        self.server = servers.factories["127.0.0.2"]
        return servers

    async def send(
        self, servers: Exchanges, host: str = "mx.example.test", **options: Any
    ) -> RecipientOutcome:
        settings = ClientSettings(port=servers.port, timeout=10, **options)
        [outcome] = await deliverToExchanges(
            reactor, [MailExchange(10, host, ("127.0.0.2",))], envelope(), settings
        )
        return outcome

    async def test_mayUsesTLS(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(tls=self.tls)), tlsPolicy=TLSPolicy.MAY
        )
        self.assertEqual(outcome.status, Status.DELIVERED)
        [message] = self.server.messages
        self.assertTrue(message.tls)

    async def test_mayWithoutSTARTTLS(self) -> None:
        outcome = await self.send(self.serve(Behaviour()), tlsPolicy=TLSPolicy.MAY)
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertFalse(self.server.messages[0].tls)

    async def test_mayRetriesInPlaintext(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(brokenTLS=True)), tlsPolicy=TLSPolicy.MAY
        )
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertEqual(self.server.connections, 2)
        self.assertFalse(self.server.messages[0].tls)

    async def test_plaintextRetryIsSaid(self) -> None:
        """
        The outcome line says the message went unencrypted, and why.
        """
        outcome = await self.send(
            self.serve(Behaviour(brokenTLS=True)), tlsPolicy=TLSPolicy.MAY
        )
        self.assertTrue(
            str(outcome).startswith(
                "user@example.test: delivered (unencrypted: TLS handshake failed: "
            ),
            str(outcome),
        )
        self.assertTrue(str(outcome).endswith(": 250 2.0.0 queued"), str(outcome))

    async def test_encryptNeedsSTARTTLS(self) -> None:
        outcome = await self.send(self.serve(Behaviour()), tlsPolicy=TLSPolicy.ENCRYPT)
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertIn("offers no STARTTLS", outcome.reply)
        self.assertEqual(self.server.messages, [])
        self.assertNotIn(b"MAIL", b" ".join(self.server.commands))

    async def test_encryptTakesAnyCertificate(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(tls=self.tls)), tlsPolicy=TLSPolicy.ENCRYPT
        )
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertTrue(self.server.messages[0].tls)

    async def test_encryptHandshakeFailureIsTemporary(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(brokenTLS=True)), tlsPolicy=TLSPolicy.ENCRYPT
        )
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertIn("TLS handshake failed", outcome.reply)
        self.assertEqual(self.server.connections, 1)
        self.assertEqual(self.server.messages, [])

    async def test_verifyWithCA(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(tls=self.tls)),
            tlsPolicy=TLSPolicy.VERIFY,
            ca=self.certificates.caCert,
        )
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertTrue(self.server.messages[0].tls)

    async def test_verifyUntrusted(self) -> None:
        # The system's CAs do not know this test's CA.
        outcome = await self.send(
            self.serve(Behaviour(tls=self.tls)), tlsPolicy=TLSPolicy.VERIFY
        )
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertIn("TLS handshake failed", outcome.reply)
        self.assertEqual(self.server.messages, [])

    async def test_verifyWrongName(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(tls=self.tls)),
            host="other.example.test",
            tlsPolicy=TLSPolicy.VERIFY,
            ca=self.certificates.caCert,
        )
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertEqual(self.server.messages, [])
        # In words, not service_identity's VerificationError(errors=[...]) repr.
        self.assertIn(
            "the certificate is not valid for other.example.test: it is for"
            " localhost, mx.example.test, 127.0.0.1 only",
            outcome.reply,
        )
        self.assertNotIn("Error(", outcome.reply)

    async def test_verifyCommonNameOnly(self) -> None:
        """
        A certificate without subjectAltName fails C{verify}, whatever its
        CN, and the password is never sent: service_identity raises
        C{CertificateError} for it, which Twisted's own check logs and lets
        through.
        """
        for commonName in ("evil.example", "mx.example.test"):
            certificate = makeCommonNameOnlyCertificate(self.mktemp(), commonName)
            behaviour = Behaviour(
                tls=serverTLS(certificate),
                auth=(b"PLAIN", b"LOGIN"),
                users={b"me": PASSWORD.encode()},
            )
            servers = self.serve(behaviour)
            outcome = await self.send(
                servers,
                tlsPolicy=TLSPolicy.VERIFY,
                ca=certificate.caCert,
                user="me",
                password=PASSWORD,
                relay=("mx.example.test", servers.port),
            )
            self.assertEqual(outcome.status, Status.DEFERRED, commonName)
            self.assertIn("TLS handshake failed", outcome.reply)
            self.assertIn("not valid for mx.example.test", outcome.reply)
            self.assertIn("subjectAltName", outcome.reply)
            self.assertEqual(self.server.messages, [])
            self.assertEqual(self.server.authLines, [])
            commands = b" ".join(self.server.commands)
            self.assertNotIn(b"AUTH", commands)
            self.assertNotIn(b"MAIL", commands)

    async def test_off(self) -> None:
        outcome = await self.send(
            self.serve(Behaviour(tls=self.tls)), tlsPolicy=TLSPolicy.OFF
        )
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertNotIn(b"STARTTLS", self.server.commands)
        self.assertFalse(self.server.messages[0].tls)


class AuthTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certificates = makeCertificates(self.mktemp())
        self.tls = serverTLS(self.certificates)
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    async def send(
        self, mechanisms: tuple[bytes, ...], password: str = PASSWORD, tls: Any = None
    ) -> RecipientOutcome:
        behaviour = Behaviour(
            tls=tls, auth=mechanisms, users={b"me": PASSWORD.encode()}
        )
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": behaviour})
        self.addCleanup(servers.stop)
        self.server = servers.factories["127.0.0.2"]
        # The relay is where the login goes (and only there).
        settings = ClientSettings(
            port=servers.port,
            timeout=10,
            tlsPolicy=TLSPolicy.MAY,
            user="me",
            password=password,
            relay=("mx.example.test", servers.port),
        )
        [outcome] = await deliverToExchanges(
            reactor,
            [MailExchange(10, "mx.example.test", ("127.0.0.2",))],
            envelope(),
            settings,
        )
        return outcome

    async def test_plainOverTLS(self) -> None:
        outcome = await self.send((b"PLAIN",), tls=self.tls)
        self.assertEqual(outcome.status, Status.DELIVERED)
        [message] = self.server.messages
        self.assertEqual((message.user, message.tls), (b"me", True))

    async def test_loginOverTLS(self) -> None:
        outcome = await self.send((b"LOGIN",), tls=self.tls)
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertEqual(self.server.messages[0].user, b"me")

    async def test_cramMD5OnLoopbackPlaintext(self) -> None:
        # Loopback is the one place a password may go without TLS.
        outcome = await self.send((b"CRAM-MD5",))
        self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertEqual(
            (self.server.messages[0].user, self.server.messages[0].tls), (b"me", False)
        )

    async def test_onlyTheRelayGetsTheLogin(self) -> None:
        """
        Whatever the settings let through, the credentials go to the relay
        only: an exchange that is not it (a recipient's MX) offering AUTH
        over TLS gets the message without a login.
        """
        behaviour = Behaviour(
            tls=self.tls, auth=(b"PLAIN",), users={b"me": PASSWORD.encode()}
        )
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": behaviour})
        self.addCleanup(servers.stop)
        server = servers.factories["127.0.0.2"]
        for relay in (None, ("relay.example.test", servers.port)):
            settings = ClientSettings(
                port=servers.port,
                timeout=10,
                user="me",
                password=PASSWORD,
                relay=relay,
            )
            [outcome] = await deliverToExchanges(
                reactor,
                [MailExchange(10, "mx.example.test", ("127.0.0.2",))],
                envelope(),
                settings,
            )
            self.assertEqual(outcome.status, Status.DELIVERED)
        self.assertEqual(server.authLines, [])
        self.assertEqual([m.user for m in server.messages], [None, None])
        self.assertNotIn(b"AUTH", b" ".join(server.commands))

    async def test_wrongPasswordNeverShown(self) -> None:
        wrong = "Wr0ng-passw0rd"
        outcome = await self.send((b"PLAIN", b"LOGIN"), password=wrong, tls=self.tls)
        self.assertEqual(outcome.status, Status.BOUNCED)
        self.assertEqual(outcome.code, 535)
        self.assertEqual(self.server.messages, [])
        shown = str(outcome) + repr(outcome) + repr(self.events)
        for secret in secretForms(wrong):
            self.assertNotIn(secret, shown)


def secretForms(password: str) -> list[str]:
    """
    The password as it could leak: plain, or inside a base64 AUTH response.
    """
    raw = password.encode()
    forms = [password, base64.b64encode(raw).decode()]
    for prefix in (b"\0me\0", b"me\0me\0"):
        forms.append(base64.b64encode(prefix + raw).decode())
    return forms


class PlaintextAuthTests(SynchronousTestCase):
    """
    The password is not sent over plaintext to a server that is not on loopback.
    """

    def connect(self, peer: str) -> tuple[StringTransport, SMTPClientFactory]:
        factory = SMTPClientFactory(
            [envelope()],
            secret=PASSWORD.encode(),
            username=b"me",
            tlsPolicy=TLSPolicy.MAY,
            timeout=30,
            clock=Clock(),
            contextFactory=None,
        )
        client = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 25))
        client.makeConnection(transport)
        client.dataReceived(b"220 mx.example.test ESMTP\r\n")
        # No name given: the literal of the local end (StringTransport's).
        self.assertEqual(transport.value(), b"EHLO [10.0.0.1]\r\n")
        transport.clear()
        client.dataReceived(b"250-mx.example.test\r\n250 AUTH PLAIN LOGIN\r\n")
        self.client = client
        return transport, factory

    def test_notOverTheInternet(self) -> None:
        transport, factory = self.connect("192.0.2.25")
        self.assertEqual(transport.value(), b"QUIT\r\n")
        self.client.connectionLost()
        result: AttemptResult = self.successResultOf(factory.finished)
        self.assertEqual(result.unsettled[0].recipients, ("user@example.test",))
        assert result.error is not None
        self.assertIn("unencrypted", result.error)

    def test_onLoopback(self) -> None:
        transport, factory = self.connect("127.0.0.1")
        self.assertTrue(transport.value().startswith(b"AUTH PLAIN "))


class AiosmtpdTests(TestCase):
    """
    A real third-party server: aiosmtpd, with STARTTLS required and AUTH.
    """

    timeout = 60

    def setUp(self) -> None:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.certificates = makeCertificates(self.mktemp())

        def authenticator(
            server: Any, session: Any, env: Any, mechanism: str, data: Any
        ) -> Any:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                b"me",
                PASSWORD.encode(),
            )
            return AuthResult(success=ok)

        self.controller, self.received, self.port = startAiosmtpd(
            self.mktemp(),
            self.certificates,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
        )
        self.addCleanup(self.controller.stop)

    async def test_verifiedTLSAndAuth(self) -> None:
        data = (
            b"Subject: caf\xc3\xa9\r\n\r\n.starts with a dot\n"
            b"..two dots\r\n\xc3\xa9t\xc3\xa9\n.\n"
        )
        message = checkMessage("test", lambda: io.BytesIO(data))
        settings = ClientSettings(
            port=self.port,
            timeout=10,
            tlsPolicy=TLSPolicy.VERIFY,
            ca=self.certificates.caCert,
            user="me",
            password=PASSWORD,
            relay=("localhost", self.port),
        )
        [outcome] = await deliverToExchanges(
            reactor,
            [MailExchange(0, "localhost", ("127.0.0.1",))],
            Envelope("sender@client.test", ("rcpt@example.test",), message),
            settings,
        )
        self.assertEqual(outcome.status, Status.DELIVERED, str(outcome))
        self.assertIn("aiosmtpd", outcome.reply)
        [received] = self.received
        self.assertTrue(received.tls)
        self.assertIn("BODY=8BITMIME", received.mail_options)
        expected = message.extraHeaders + data.replace(b"\r\n", b"\n").replace(
            b"\n", b"\r\n"
        )
        self.assertEqual(received.original_content, expected)
