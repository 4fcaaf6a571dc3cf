"""For operators: ``smtptut send --json`` and ``--debug``, run as a user runs them, against real loopback servers."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.client.jsonreport import enhancedCode
from smtptut.client.message import TUTORIAL_MESSAGE
from smtptut.client.transcript import Transcript
from smtptut.server.passwords import passwdMain

from .helpers import (
    SMTPTUT,
    Behaviour,
    ProcessResult,
    exampleZone,
    listenOnLoopbacks,
    makeCertificates,
    reactor,
    runProcess,
    startDNSServer,
    startSink,
)
from .test_tls_client import secretForms

PASSWORD = "Tr4nscript-s3cret"


class OperatorTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.certificates = makeCertificates(os.path.abspath(self.mktemp()))
        self.dns = startDNSServer(reactor, "example.test", exampleZone())
        self.addCleanup(self.dns.stop)
        self.tutorial = os.path.abspath(self.mktemp())
        with open(self.tutorial, "wb") as f:
            f.write(TUTORIAL_MESSAGE)

    def sink(self, **settings: Any) -> Any:
        settings.setdefault("accept", "console")
        settings.setdefault("tlsCert", self.certificates.serverCert)
        settings.setdefault("tlsKey", self.certificates.serverKey)
        sink = startSink(reactor, **settings)
        self.addCleanup(sink.stop)
        return sink

    def usersFile(self, user: str, password: str) -> str:
        path = os.path.abspath(self.mktemp())
        os.environ["SMTPTUT_PASSWORD"] = password
        try:
            self.assertEqual(passwdMain(["-f", path, "add", user]), 0)
        finally:
            del os.environ["SMTPTUT_PASSWORD"]
        return path

    def send(self, *args: str, **env: str) -> Any:
        argv = [SMTPTUT, "send", "--data", self.tutorial, *args]
        return runProcess(reactor, argv, env)

    def assertNoSecret(self, result: ProcessResult) -> None:
        for secret in secretForms(PASSWORD):
            self.assertNotIn(secret, result.out + result.err)

    async def test_jsonOfAVerifiedSession(self) -> None:
        sink = self.sink()
        result = await self.send(
            "--json",
            "--to",
            "console@example.test",
            "--nameserver",
            self.dns.nameserver,
            "--port",
            str(sink.port),
            "--tls",
            "verify",
            "--ca",
            self.certificates.caCert,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        # Only JSON on standard output: one object per recipient.
        [record] = [json.loads(line) for line in result.out.splitlines()]
        self.assertEqual(
            {k: record[k] for k in record if k not in ("reply", "enhanced", "tls")},
            {
                "recipient": "console@example.test",
                "status": "delivered",
                "code": 250,
                "notes": [],
                "mx": "mx.example.test",
                "address": "127.0.0.1",
                "tls_verified": True,
                "dkim": [],
                "queue_id": None,
                "attempts": 1,
            },
        )
        self.assertIn(record["tls"], ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(record["enhanced"], enhancedCode(record["reply"]))
        self.assertTrue(record["enhanced"].startswith("2."), record)
        [message] = sink.messages()
        self.assertIn("Subject: Tutorate!", message)

    async def test_jsonPerRecipient(self) -> None:
        # One recipient refused (550), one deferred (450), one taken, in
        # plaintext: each object says which.
        servers = listenOnLoopbacks(
            reactor, {"127.0.0.2": Behaviour(deferRecipients=("later",))}
        )
        self.addCleanup(servers.stop)
        result = await self.send(
            "--json",
            "--to",
            "bad@example.test,later@example.test,good@example.test",
            "--relay",
            f"127.0.0.2:{servers.port}",
            "--tls",
            "off",
        )
        self.assertEqual(result.code, 75, result.out + result.err)
        records = [json.loads(line) for line in result.out.splitlines()]
        self.assertEqual(
            [
                (r["recipient"], r["status"], r["code"], r["enhanced"], r["tls"])
                for r in records
            ],
            [
                ("bad@example.test", "bounced", 550, "5.1.1", None),
                ("later@example.test", "deferred", 450, "4.2.0", None),
                ("good@example.test", "delivered", 250, "2.0.0", None),
            ],
        )
        self.assertEqual(records[0]["reply"], "5.1.1 no such user here")
        self.assertEqual({r["mx"] for r in records}, {"127.0.0.2"})
        self.assertEqual({r["tls_verified"] for r in records}, {False})

    async def test_jsonOfAQueuedMessage(self) -> None:
        servers = listenOnLoopbacks(
            reactor, {"127.0.0.2": Behaviour(deferRecipients=("later",))}
        )
        self.addCleanup(servers.stop)
        queue = os.path.abspath(self.mktemp())
        result = await self.send(
            "--json",
            "--queue",
            queue,
            "--to",
            "later@example.test,good@example.test",
            "--relay",
            f"127.0.0.2:{servers.port}",
            "--tls",
            "off",
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        records = [json.loads(line) for line in result.out.splitlines()]
        [queued] = [line for line in result.err.splitlines() if "queued as" in line]
        queueId = queued.split()[-1]
        self.assertEqual(
            [
                (r["recipient"], r["status"], r["queue_id"], r["attempts"])
                for r in records
            ],
            [
                ("later@example.test", "deferred", queueId, 1),
                ("good@example.test", "delivered", queueId, 1),
            ],
        )

    async def test_debugTranscriptHidesPlainAuth(self) -> None:
        sink = self.sink(
            users=self.usersFile("me", PASSWORD), tlsCert=None, tlsKey=None
        )
        result = await self.send(
            "--debug",
            "--to",
            "console@example.test",
            "--relay",
            f"127.0.0.1:{sink.port}",
            "--tls",
            "off",
            "--user",
            "me",
            SMTPTUT_PASSWORD=PASSWORD,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        lines = result.err.splitlines()
        self.assertIn("-> AUTH PLAIN ***", lines)
        self.assertTrue(any(line.startswith("<- 235") for line in lines), lines)
        self.assertTrue(any(line.startswith("-> EHLO ") for line in lines), lines)
        self.assertTrue(any(line.startswith("<- 220") for line in lines), lines)
        self.assertIn("-> MAIL FROM:<tutorial_sender@example.com>", result.err)
        self.assertIn("-> QUIT", lines)
        self.assertNoSecret(result)
        self.assertEqual(len(sink.messages()), 1)

    async def test_debugTranscriptHidesLoginAuth(self) -> None:
        # The project's recording server offering LOGIN alone: the user name
        # and the password each go as a base64 line after a 334.
        servers = listenOnLoopbacks(
            reactor,
            {
                "127.0.0.2": Behaviour(
                    auth=(b"LOGIN",), users={b"me": PASSWORD.encode()}
                )
            },
        )
        self.addCleanup(servers.stop)
        result = await self.send(
            "-vv",
            "--to",
            "someone@example.test",
            "--relay",
            f"127.0.0.2:{servers.port}",
            "--tls",
            "off",
            "--user",
            "me",
            SMTPTUT_PASSWORD=PASSWORD,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        factory = servers.factories["127.0.0.2"]
        self.assertEqual(factory.messages[0].user, b"me")
        lines = result.err.splitlines()
        start = lines.index("-> AUTH LOGIN")
        self.assertEqual(
            [line[:6] for line in lines[start : start + 6]],
            ["-> AUT", "<- 334", "-> ***", "<- 334", "-> ***", "<- 235"],
        )
        self.assertNoSecret(result)

    async def test_noTranscriptWithoutDebug(self) -> None:
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": Behaviour()})
        self.addCleanup(servers.stop)
        result = await self.send(
            "-v",
            "--to",
            "someone@example.test",
            "--relay",
            f"127.0.0.2:{servers.port}",
            "--tls",
            "off",
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertNotIn("-> EHLO", result.err)


class TranscriptTests(SynchronousTestCase):
    def test_passwordHiddenAnywhere(self) -> None:
        """
        Outside AUTH too, the password and its base64 never show.
        """
        lines: list[str] = []
        transcript = Transcript(lines.append, b"pw-XYZ")
        transcript.sent(b"NOOP pw-XYZ")
        transcript.received(b"250 cHctWFla")
        self.assertEqual(lines, ["-> NOOP ***", "<- 250 ***"])

    def test_authEndsAtTheReplyThatIsNot334(self) -> None:
        lines: list[str] = []
        transcript = Transcript(lines.append, b"secret")
        transcript.sent(b"AUTH CRAM-MD5")
        transcript.received(b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+")
        transcript.sent(b"bWUgZjRjYzY4NTk2MjE2")
        transcript.received(b"235 2.7.0 ok")
        transcript.sent(b"MAIL FROM:<a@b.test>")
        self.assertEqual(
            lines,
            [
                "-> AUTH CRAM-MD5",
                "<- 334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+",
                "-> ***",
                "<- 235 2.7.0 ok",
                "-> MAIL FROM:<a@b.test>",
            ],
        )


class EnhancedCodeTests(SynchronousTestCase):
    def test_codes(self) -> None:
        self.assertEqual(enhancedCode("5.1.1 no such user"), "5.1.1")
        self.assertEqual(enhancedCode("2.0.0"), "2.0.0")
        self.assertIsNone(enhancedCode("queued as 5.1.1"))
        self.assertIsNone(enhancedCode("3.1.1 not a class"))
