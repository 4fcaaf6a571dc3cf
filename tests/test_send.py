"""``smtptut send`` as a user runs it: a subprocess, its output and its exit status."""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut import cli
from smtptut.client import BOUNCED, DEFERRED, DELIVERED, RecipientOutcome
from smtptut.config import ClientSettings, ConfigError

from .helpers import (
    SMTPTUT,
    Behaviour,
    Exchanges,
    Process,
    ProcessResult,
    Zone,
    a,
    childEnvironment,
    exampleZone,
    listenOnLoopbacks,
    mx,
    reactor,
    runProcess,
    startConsoleServer,
    startDNSServer,
)
from .test_tls_client import secretForms


class SendCommandTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.server = startConsoleServer(reactor)
        self.addCleanup(self.server.stop)

    def smtptut(self, *args: str, stdin: bytes | None = None, **env: str) -> Any:
        return runProcess(reactor, [SMTPTUT, *args], env, stdin=stdin)

    def assertNoTraceback(self, result: ProcessResult) -> None:
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_toTheConsoleServerInOneLine(self) -> None:
        result = await self.smtptut(
            "send", "--to", "console@localhost", "--port", str(self.server.port)
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        [line, sent] = result.out.splitlines()
        self.assertTrue(
            line.startswith(
                "console@localhost: delivered via localhost [127.0.0.1]: 250 "
            ),
            line,
        )
        self.assertEqual(sent, "Sent 1 messages")
        [message] = self.server.messages()
        self.assertIn("Subject: Tutorate!", message)

    async def test_messageFromStandardInput(self) -> None:
        data = b"Subject: from stdin\r\n\r\n.a dot\nline two\n"
        result = await self.smtptut(
            "send",
            "--from",
            "me@client.test",
            "--to",
            "console@localhost",
            "--port",
            str(self.server.port),
            "--data",
            "-",
            stdin=data,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        [message] = self.server.messages()
        self.assertIn("Subject: from stdin\n\n.a dot\nline two", message)
        self.assertIn("Message-ID: <", message)

    async def test_throughMXWithFlags(self) -> None:
        dns = startDNSServer(reactor, "example.test", exampleZone())
        self.addCleanup(dns.stop)
        result = await self.smtptut(
            "send",
            "--to",
            "console@example.test",
            "--nameserver",
            dns.nameserver,
            "--port",
            str(self.server.port),
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("console@example.test: delivered via mx.example.test", result.out)

    async def test_relayFromTheEnvironment(self) -> None:
        result = await self.smtptut(
            "send",
            SMTPTUT_TO="console@nowhere.invalid",
            SMTPTUT_RELAY=f"127.0.0.1:{self.server.port}",
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("console@nowhere.invalid: delivered via 127.0.0.1", result.out)

    async def test_allBouncedIs69(self) -> None:
        result = await self.smtptut(
            "send", "--to", "nobody@localhost", "--port", str(self.server.port)
        )
        self.assertEqual(result.code, 69)
        self.assertIn(
            "nobody@localhost: bounced via localhost [127.0.0.1]: 550", result.out
        )

    async def test_anyDeferredIs75(self) -> None:
        port = str(self.server.port)
        # 127.0.0.2 has nothing on that port: deferred, whatever else happened.
        result = await self.smtptut(
            "send",
            "--to",
            "console@localhost",
            "--to",
            "nobody@localhost,console@[127.0.0.2]",
            "--port",
            port,
            "--timeout",
            "5",
        )
        self.assertEqual(result.code, 75, result.out + result.err)
        self.assertIn("console@[127.0.0.2]: deferred", result.out)
        self.assertIn("Sent 1 messages", result.out)
        self.assertNoTraceback(result)

    async def test_badOptionIs64(self) -> None:
        result = await self.smtptut(
            "send", "--to", "console@localhost", "--port", "smtp"
        )
        self.assertEqual(result.code, 64)
        self.assertEqual(
            result.err.strip(), "smtptut send: --port: 'smtp' is not a port number"
        )

    async def test_nameserverByNameIs64(self) -> None:
        """
        A nameserver given by name is a usage error at once (it used to hang
        forever, the reactor never stopped).
        """
        result = await runProcess(
            reactor,
            [SMTPTUT, "send", "--to", "x@example.test", "--nameserver", "bad.invalid"],
            timeout=20,
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err.strip(),
            "smtptut send: --nameserver: 'bad.invalid' is not an IP address (give"
            " the DNS server's address, not its name)",
        )

    async def test_twoAtsIs64(self) -> None:
        result = await self.smtptut("send", "--to", "a@b@c", "--port", "1")
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err.strip(), "smtptut send: --to: 'a@b@c' has more than one @"
        )
        self.assertEqual(self.server.messages(), [])

    async def test_internalErrorIs70(self) -> None:
        """
        An exception in the send path stops the reactor: one line, exit 70,
        the traceback logged, never a hang.
        """
        script = (
            "import sys\n"
            "from smtptut import cli\n"
            "def broken(*args, **kwargs):\n"
            "    raise RuntimeError('resolver exploded')\n"
            "cli.makeResolver = broken\n"
            "sys.exit(cli.main(sys.argv[1:]))\n"
        )
        result = await runProcess(
            reactor,
            [sys.executable, "-c", script, "send", "--to", "x@example.test"],
            timeout=20,
        )
        self.assertEqual(result.code, 70, result.out + result.err)
        self.assertIn("smtptut send: internal error: resolver exploded\n", result.err)
        self.assertIn("RuntimeError: resolver exploded", result.err)
        self.assertEqual(result.out, "")

    async def test_unknownOptionIs64(self) -> None:
        result = await self.smtptut("send", "--color")
        self.assertEqual(result.code, 64)
        self.assertIn("--color", result.err)
        self.assertNoTraceback(result)

    async def test_noRecipientIs64(self) -> None:
        result = await self.smtptut("send")
        self.assertEqual(result.code, 64)
        self.assertIn("--to: no recipient given", result.err)

    async def test_noPasswordWithoutATerminal(self) -> None:
        result = await self.smtptut(
            "send", "--to", "console@localhost", "--user", "guest", stdin=b""
        )
        self.assertEqual(result.code, 64)
        self.assertIn("SMTPTUT_PASSWORD", result.err)
        self.assertIn("not a terminal", result.err)

    async def test_badMessageIs65(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"Subject: x\n\nbare\rCR\n")
        result = await self.smtptut("send", "--to", "console@localhost", "--data", path)
        self.assertEqual(result.code, 65)
        self.assertIn("line 3 contains a bare CR", result.err)
        self.assertEqual(self.server.messages(), [])

    async def test_missingFileIs66(self) -> None:
        result = await self.smtptut(
            "send", "--to", "console@localhost", "--data", "/nonexistent/m.eml"
        )
        self.assertEqual(result.code, 66)
        self.assertIn("/nonexistent/m.eml", result.err)
        self.assertNoTraceback(result)

    async def test_help(self) -> None:
        result = await self.smtptut("send", "--help")
        self.assertEqual(result.code, 0)
        for text in ["--relay", "SMTPTUT_PASSWORD", "exit status", "75", "69", "66"]:
            self.assertIn(text, result.out)

    async def test_passwordNeverPrinted(self) -> None:
        wrong = "Wr0ng-passw0rd"
        servers = listenOnLoopbacks(
            reactor, {"127.0.0.2": Behaviour(auth=(b"PLAIN",), users={b"me": b"x"})}
        )
        self.addCleanup(servers.stop)
        result = await self.smtptut(
            "send",
            "-v",
            "--to",
            "someone@[127.0.0.2]",
            "--port",
            str(servers.port),
            "--user",
            "me",
            SMTPTUT_PASSWORD=wrong,
        )
        self.assertEqual(result.code, 69, result.out + result.err)
        self.assertIn("535 5.7.8", result.out)
        for secret in secretForms(wrong):
            self.assertNotIn(secret, result.out + result.err)

    async def test_usage(self) -> None:
        result = await self.smtptut()
        self.assertEqual(result.code, 64)
        self.assertIn("send", result.out)
        result = await self.smtptut("frobnicate")
        self.assertEqual(result.code, 64)
        self.assertIn("no command 'frobnicate'", result.err)


#: Two exchanges: the first takes the message and never answers the dot.
STALL_ZONE: Zone = {
    "stall.test": [mx(10, "mx1.stall.test"), mx(20, "mx2.stall.test")],
    "mx1.stall.test": [a("127.0.0.2")],
    "mx2.stall.test": [a("127.0.0.3")],
}


async def interruptedMidTransaction(
    test: TestCase, argv: list[str], env: dict[str, str], sig: int
) -> tuple[ProcessResult, Exchanges]:
    """
    Run C{argv} against the stalling exchange of L{STALL_ZONE}, send it
    C{sig} once the message is in, and wait for its end.
    """
    servers = listenOnLoopbacks(
        reactor, {"127.0.0.2": Behaviour(stallAtDot=True), "127.0.0.3": Behaviour()}
    )
    test.addCleanup(servers.stop)
    dns = startDNSServer(reactor, "stall.test", STALL_ZONE)
    test.addCleanup(dns.stop)
    env = {
        "SMTPTUT_TO": "a@stall.test,b@stall.test",
        "SMTPTUT_NAMESERVER": dns.nameserver,
        "SMTPTUT_PORT": str(servers.port),
        "SMTPTUT_TIMEOUT": "60",
        **env,
    }
    process = Process(reactor, argv, childEnvironment(env))
    test.addCleanup(process.stop)
    stalled = servers.factories["127.0.0.2"]
    for _ in range(300):
        if stalled.messages or process.ended.called:
            break
        await deferLater(reactor, 0.05)
    test.assertEqual(len(stalled.messages), 1, process.output())
    process.kill(sig)
    result: ProcessResult = await process.ended
    return result, servers


class InterruptTests(TestCase):
    """
    SIGTERM or Ctrl-C (SIGINT) while a transaction waits for its reply.
    """

    timeout = 120

    async def test_signalMidTransaction(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            result, servers = await interruptedMidTransaction(
                self, [SMTPTUT, "send", "-v"], {}, sig
            )
            everything = result.out + result.err
            self.assertEqual(result.code, 75, everything)
            for recipient in ("a@stall.test", "b@stall.test"):
                self.assertIn(f"{recipient}: deferred (interrupted)", result.out)
            self.assertIn("Sent 0 messages", result.out)
            for bad in ("Traceback", "Unhandled", "ReactorNotRunning"):
                self.assertNotIn(bad, everything)
            # No new connection after the signal: the second exchange is
            # never tried.
            self.assertEqual(servers.factories["127.0.0.3"].connections, 0)
            self.assertIn("Connecting to mx1.stall.test", everything)
            self.assertNotIn("Connecting to mx2.stall.test", everything)
            await servers.stop()


class StatusTests(SynchronousTestCase):
    def outcomes(self, *statuses: str) -> list[RecipientOutcome]:
        return [RecipientOutcome(f"r{i}@x", s, 0, "") for i, s in enumerate(statuses)]

    def test_statuses(self) -> None:
        self.assertEqual(cli.outcomeStatus(self.outcomes(DELIVERED, DELIVERED)), 0)
        self.assertEqual(cli.outcomeStatus(self.outcomes(DELIVERED, DEFERRED)), 75)
        self.assertEqual(cli.outcomeStatus(self.outcomes(BOUNCED, DEFERRED)), 75)
        self.assertEqual(cli.outcomeStatus(self.outcomes(DELIVERED, BOUNCED)), 69)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class PasswordTests(SynchronousTestCase):
    def test_prompt(self) -> None:
        prompts: list[str] = []

        def prompt(text: str) -> str:
            prompts.append(text)
            return "typed"

        settings = cli.askPassword(ClientSettings(user="me"), FakeTerminal(), prompt)
        self.assertEqual(settings.password, "typed")
        self.assertEqual(prompts, ["Password for me: "])

    def test_fromEnvironmentNoPrompt(self) -> None:
        settings = ClientSettings(user="me", password="env")
        self.assertIs(cli.askPassword(settings, io.StringIO(), input), settings)

    def test_noTerminal(self) -> None:
        self.assertRaises(
            ConfigError, cli.askPassword, ClientSettings(user="me"), io.StringIO()
        )


class PasswdWiringTests(SynchronousTestCase):
    def test_passwdGoesToTheServerModule(self) -> None:
        from smtptut import passwords

        calls: list[list[str]] = []

        def passwdMain(argv: list[str]) -> int:
            calls.append(argv)
            return 3

        self.patch(passwords, "passwdMain", passwdMain)
        self.assertEqual(cli.main(["passwd", "add", "guest"]), 3)
        self.assertEqual(calls, [["add", "guest"]])
