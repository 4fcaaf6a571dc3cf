"""The two .tac files run as a user runs them: twistd -ny, as subprocesses."""

from __future__ import annotations

import os
import signal

from twisted.trial.unittest import TestCase

from .helpers import (
    exampleZone,
    reactor,
    runProcess,
    startDNSServer,
    startTwistdServer,
    twistdArgv,
)
from .test_send import assertInterruptedCleanly, interruptedMidTransaction

MESSAGE = b"""\
From: Someone <someone@example.test>
To: console@example.test
Subject: through the MX

.a line that starts with a dot
the end
"""


class TacTests(TestCase):
    timeout = 90

    async def startServer(self, **settings: str) -> int:
        process, port = await startTwistdServer(reactor, settings)
        self.server = process
        self.addCleanup(process.stop)
        return port

    async def test_signalMidTransaction(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            result, servers = await interruptedMidTransaction(
                self, twistdArgv("smtpclient.tac"), {}, sig
            )
            assertInterruptedCleanly(self, result, servers)
            await servers.stop()

    async def test_throughMX(self) -> None:
        port = await self.startServer()
        dns = startDNSServer(reactor, "example.test", exampleZone())
        self.addCleanup(dns.stop)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(MESSAGE)
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {
                "SMTPTUT_TO": "console@example.test",
                "SMTPTUT_NAMESERVER": dns.nameserver,
                "SMTPTUT_PORT": str(port),
                "SMTPTUT_DATA": os.path.abspath(path),
            },
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("Sent 1 messages", result.out)
        self.assertIn("console@example.test: delivered via mx.example.test", result.out)
        await self.server.waitFor("the end")
        printed = self.server.output()
        self.assertIn("New message received:", printed)
        self.assertIn(MESSAGE.decode(), printed.replace("\r\n", "\n"))

    async def test_refusedRecipient(self) -> None:
        port = await self.startServer()
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {"SMTPTUT_TO": "someone@localhost", "SMTPTUT_PORT": str(port)},
        )
        self.assertIn("Sent 0 messages", result.out)
        self.assertIn(
            "someone@localhost: bounced via localhost [127.0.0.1]: 550", result.out
        )
        self.assertNotIn("New message received", self.server.output())

    async def test_acceptSetting(self) -> None:
        port = await self.startServer(SMTPTUT_ACCEPT="@wide.test")
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {
                "SMTPTUT_TO": "anyone@[127.0.0.1], console@[127.0.0.1]",
                "SMTPTUT_PORT": str(port),
            },
        )
        # The literal's domain is not wide.test, and "console" is no longer accepted.
        self.assertIn("Sent 0 messages", result.out)

    async def test_badSettingIsOneLine(self) -> None:
        result = await runProcess(
            reactor, twistdArgv("smtpclient.tac"), {"SMTPTUT_TO": "nobody"}
        )
        self.assertEqual(result.code, 64)
        self.assertEqual(
            result.err.strip(),
            "smtpclient.tac: SMTPTUT_TO: 'nobody' is not an address of the form user@domain",
        )
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_nameserverNameIsOneLine(self) -> None:
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {"SMTPTUT_NAMESERVER": "bad:host:x"},
            timeout=20,
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err.strip(),
            "smtpclient.tac: SMTPTUT_NAMESERVER: 'bad:host:x' is not an IP address"
            " (give the DNS server's address, not its name)",
        )
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_missingMessageFile(self) -> None:
        result = await runProcess(
            reactor, twistdArgv("smtpclient.tac"), {"SMTPTUT_DATA": "/nonexistent.eml"}
        )
        self.assertEqual(result.code, 66)
        self.assertIn("/nonexistent.eml", result.err)
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_unreachableServer(self) -> None:
        # Nothing listens at 127.0.0.2 on this port.
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {"SMTPTUT_TO": "console@[127.0.0.2]", "SMTPTUT_PORT": "1"},
        )
        self.assertIn("console@[127.0.0.2]: deferred", result.out)
        self.assertIn("Sent 0 messages", result.out)
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_dnsTimeout(self) -> None:
        dns = startDNSServer(reactor, "example.test", exampleZone())
        await dns.stop()
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {
                "SMTPTUT_TO": "console@example.test",
                "SMTPTUT_NAMESERVER": dns.nameserver,
                "SMTPTUT_TIMEOUT": "2",
            },
        )
        self.assertIn(
            "console@example.test: deferred: example.test: DNS timeout", result.out
        )
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_serverBadSetting(self) -> None:
        result = await runProcess(
            reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_ACCEPT": "@"}
        )
        self.assertEqual(result.code, 64)
        self.assertIn("SMTPTUT_ACCEPT", result.err)
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_relay(self) -> None:
        port = await self.startServer()
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {
                "SMTPTUT_TO": "console@nowhere.invalid, console@elsewhere.invalid",
                "SMTPTUT_RELAY": f"127.0.0.1:{port}",
            },
        )
        self.assertIn("console@nowhere.invalid: delivered via 127.0.0.1", result.out)
        self.assertIn("console@elsewhere.invalid: delivered via 127.0.0.1", result.out)
        self.assertIn("Sent 2 messages", result.out)
        # No MX lookup: nowhere.invalid does not exist.  (test_routing shows
        # that both go in one transaction.)
        await self.server.waitFor("Hello, how are you, goodbye.")

    async def test_userWithoutPassword(self) -> None:
        result = await runProcess(
            reactor, twistdArgv("smtpclient.tac"), {"SMTPTUT_USER": "guest"}
        )
        self.assertEqual(result.code, 64)
        self.assertEqual(
            result.err.strip(),
            "smtpclient.tac: SMTPTUT_PASSWORD: not set, but SMTPTUT_USER is",
        )

    async def test_userWithoutRelay(self) -> None:
        """
        The password is for the submission server: without SMTPTUT_RELAY it
        would go to the recipient's MX.
        """
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {"SMTPTUT_USER": "guest", "SMTPTUT_PASSWORD": "password"},
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err.strip(),
            "smtpclient.tac: SMTPTUT_USER: a login is only for a relay: set"
            " SMTPTUT_RELAY to the submission server (the password never goes to"
            " a recipient's MX)",
        )

    async def test_heloInjectionRefused(self) -> None:
        """
        SMTPTUT_HELO with a CR LF in it: one line, status 64, and the
        project's own server never hears of it (it used to store a second,
        injected message).
        """
        port = await self.startServer()
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {
                "SMTPTUT_TO": "console@localhost",
                "SMTPTUT_PORT": str(port),
                "SMTPTUT_HELO": "evil.test\r\nMAIL FROM:<i@x.test>\r\n"
                "RCPT TO:<console@localhost>\r\nDATA\r\n\r\ninjected\r\n.",
            },
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        [line] = result.err.splitlines()
        self.assertTrue(line.startswith("smtpclient.tac: SMTPTUT_HELO: "), line)
        self.assertNotIn("New message received", self.server.output())
