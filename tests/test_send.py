"""``smtptut send`` as a user runs it: a subprocess, its output and its exit status."""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut import cli
from smtptut.addresses import localFQDN
from smtptut.client import send
from smtptut.client.message import TUTORIAL_MESSAGE
from smtptut.client.model import RecipientOutcome, Status
from smtptut.client.settings import ClientSettings
from smtptut.settings import ConfigError

from .helpers import (
    SMTPTUT,
    Behaviour,
    Exchanges,
    Process,
    ProcessResult,
    RecordingFactory,
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


class _OpenStdin(protocol.ProcessProtocol):
    """
    A child whose standard input stays open after C{data}, as a writer that
    has more to come.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.err = b""
        self.ended: Deferred[int | None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)  # type: ignore[union-attr]

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))


class SendCommandTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.server = startConsoleServer(reactor)
        self.addCleanup(self.server.stop)
        self.tutorial = os.path.abspath(self.mktemp())
        with open(self.tutorial, "wb") as f:
            f.write(TUTORIAL_MESSAGE)

    def smtptut(self, *args: str, stdin: bytes | None = None, **env: str) -> Any:
        if args[:1] == ("send",) and stdin is None and "--data" not in args:
            # The test's standard input is a pipe, not a terminal, so
            # "smtptut send" would not send the tutorial's message by
            # default (test_tutorialMessageOnATerminal): name it as a file.
            args = (*args, "--data", self.tutorial)
        return runProcess(reactor, [SMTPTUT, *args], env, stdin=stdin)

    def recorder(self, **behaviour: Any) -> tuple[int, RecordingFactory]:
        """
        A recording server on 127.0.0.2: its port and its record.
        """
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": Behaviour(**behaviour)})
        self.addCleanup(servers.stop)
        return servers.port, servers.factories["127.0.0.2"]

    def assertNoTraceback(self, result: ProcessResult) -> None:
        self.assertNotIn("Traceback", result.out + result.err)

    def assertTutorialDelivered(self, result: ProcessResult) -> None:
        """
        C{result} is README's first example's: one line saying the
        tutorial's message was delivered to the console server, which has it.
        """
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

    async def test_toTheConsoleServerInOneLine(self) -> None:
        result = await self.smtptut(
            "send", "--to", "console@localhost", "--port", str(self.server.port)
        )
        self.assertTutorialDelivered(result)

    async def test_tutorialMessageOnATerminal(self) -> None:
        """
        README's first example, typed at a terminal: no --data, the
        tutorial's message.
        """
        result = await runProcess(
            reactor,
            [
                SMTPTUT,
                "send",
                "--to",
                "console@localhost",
                "--port",
                str(self.server.port),
            ],
            usePTY=True,
        )
        self.assertTutorialDelivered(result)

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
            "from smtptut.client import send\n"
            "def broken(*args, **kwargs):\n"
            "    raise RuntimeError('resolver exploded')\n"
            "send.makeResolver = broken\n"
            "sys.exit(cli.main(sys.argv[1:]))\n"
        )
        result = await runProcess(
            reactor,
            [sys.executable, "-c", script, "send", "--to", "x@example.test"]
            + ["--data", self.tutorial],
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
            "send",
            "--to",
            "console@localhost",
            "--relay",
            "127.0.0.1",
            "--user",
            "guest",
            stdin=b"",
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
            "someone@example.test",
            "--relay",
            f"127.0.0.2:{servers.port}",
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

    # Issue 9: credentials, the EHLO name, message input.

    async def test_userWithoutRelayIs64(self) -> None:
        """
        A login without --relay would go to the recipient's MX (which may
        offer AUTH, unverified): refused before anything is sent.
        """
        port, server = self.recorder(auth=(b"PLAIN",), users={b"me": b"pw"})
        result = await self.smtptut(
            "send",
            "--to",
            "someone@[127.0.0.2]",
            "--port",
            str(port),
            "--user",
            "me",
            SMTPTUT_PASSWORD="pw",
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err,
            "smtptut send: --user: a login is only for a relay: set SMTPTUT_RELAY"
            " to the submission server (the password never goes to a recipient's"
            " MX)\n",
        )
        self.assertEqual((server.connections, server.authLines), (0, []))

    async def test_loginNeedsAVerifiedRelay(self) -> None:
        """
        With --tls may or encrypt, a relay that is not on loopback is refused
        for a login: a man in the middle would get the password.
        """
        # Refused before any lookup; were it not, the loopback DNS server
        # would be asked, never the system's.
        dns = startDNSServer(reactor, "example.test", exampleZone())
        self.addCleanup(dns.stop)
        for tls in ("may", "encrypt", "off"):
            result = await self.smtptut(
                "send",
                "--nameserver",
                dns.nameserver,
                "--timeout",
                "5",
                "--to",
                "someone@example.test",
                "--relay",
                "smtp.example.test:587",
                "--tls",
                tls,
                "--user",
                "me",
                SMTPTUT_PASSWORD="pw",
            )
            self.assertEqual(result.code, 64, result.out + result.err)
            self.assertEqual(
                result.err,
                f"smtptut send: --user: a login needs --tls verify, not {tls}"
                " (or --tls encrypt with SMTPTUT_INSECURE_AUTH=1 to send the"
                " password to any certificate)\n",
            )

    async def test_noAuthOfferedIsSaid(self) -> None:
        """
        A relay that offers no AUTH gets the message without a login, as
        Postfix's client does it, and the outcome line says so.
        """
        port, server = self.recorder()
        result = await self.smtptut(
            "send",
            "--to",
            "someone@example.test",
            "--relay",
            f"127.0.0.2:{port}",
            "--user",
            "me",
            SMTPTUT_PASSWORD="pw",
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn(
            "someone@example.test: delivered (not authenticated: the server offers"
            " no AUTH) via 127.0.0.2: 250 2.0.0 queued\n",
            result.out,
        )
        [message] = server.messages
        self.assertIsNone(message.user)

    async def test_defaultEhloName(self) -> None:
        """
        Without --helo, EHLO gives the machine's fully qualified name, or,
        when it has none, the address literal of the connection's own end,
        which servers with Postfix's reject_non_fqdn_helo_hostname take.
        """
        port, server = self.recorder(fqdnHelo=True)
        result = await self.smtptut(
            "send", "--to", "someone@[127.0.0.2]", "--port", str(port)
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        [ehlo] = [c for c in server.commands if c.startswith(b"EHLO ")]
        name = ehlo[5:].decode()
        if localFQDN() is not None:
            self.assertEqual(name, localFQDN())
        else:
            self.assertRegex(name, r"^\[127\.\d+\.\d+\.\d+\]$")

    async def test_heloLocalhostRefusedByPostfix(self) -> None:
        """
        What the default used to be: a server that wants a fully qualified
        name refuses it for good.
        """
        port, server = self.recorder(fqdnHelo=True)
        result = await self.smtptut(
            "send",
            "--to",
            "someone@[127.0.0.2]",
            "--port",
            str(port),
            "--helo",
            "localhost",
        )
        self.assertEqual(result.code, 69, result.out + result.err)
        self.assertIn("504 5.5.2 <localhost>: Helo command rejected", result.out)
        self.assertEqual(server.messages, [])

    async def test_heloInjectionGoesNowhere(self) -> None:
        """
        A CR LF in --helo (or SMTPTUT_HELO) would start commands of its own:
        the project's own server stored a second message chosen by whoever
        wrote the name.  Now nothing is sent at all.
        """
        evil = (
            "evil.test\r\nMAIL FROM:<inj@x.test>\r\nRCPT TO:<console@localhost>"
            "\r\nDATA\r\nSubject: injected\r\n\r\nhi\r\n.\r\n"
        )
        port, recorder = self.recorder()
        cases: list[tuple[tuple[str, ...], dict[str, str], str]] = [
            (("--helo", evil), {}, "--helo"),
            ((), {"SMTPTUT_HELO": evil}, "SMTPTUT_HELO"),
            (("--helo", "bad name"), {}, "--helo"),
        ]
        for args, env, name in cases:
            for target in (
                ("--to", "console@localhost", "--port", str(self.server.port)),
                ("--to", "console@[127.0.0.2]", "--port", str(port)),
            ):
                result = await runProcess(
                    reactor,
                    [SMTPTUT, "send", *target, *args, "--data", self.tutorial],
                    env,
                )
                self.assertEqual(result.code, 64, result.out + result.err)
                [line] = result.err.splitlines()
                self.assertTrue(line.startswith(f"smtptut send: {name}: "), line)
                self.assertIn("is not a host name", line)
        self.assertEqual(self.server.messages(), [])
        self.assertEqual(recorder.connections, 0)

    async def test_fifoIsRefusedAtOnce(self) -> None:
        """
        A FIFO as --data used to block in open() for ever, deaf to SIGTERM.
        """
        path = os.path.abspath(self.mktemp())
        os.mkfifo(path)
        result = await runProcess(
            reactor,
            [
                SMTPTUT,
                "send",
                "--to",
                "console@localhost",
                "--port",
                str(self.server.port),
                "--data",
                path,
            ],
            timeout=20,
        )
        self.assertEqual(result.code, 66, result.out + result.err)
        self.assertEqual(
            result.err,
            f"smtptut send: message file {path}: not a regular file (a FIFO,"
            " device or socket is never read)\n",
        )
        self.assertEqual(self.server.messages(), [])

    async def test_pipedWithoutDataIsRefused(self) -> None:
        """
        Piped input without --data - used to be ignored, and the tutorial's
        message sent to the recipients in its place.
        """
        result = await self.smtptut(
            "send",
            "--to",
            "console@localhost",
            "--port",
            str(self.server.port),
            stdin=b"Subject: mine\n\nthe real message\n",
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err,
            "smtptut send: --data: not given, and standard input is not a"
            " terminal: give --data - to send standard input, or --data FILE\n",
        )
        self.assertEqual(self.server.messages(), [])

    async def test_emptyMessageIs65(self) -> None:
        for stdin in (b"", b"\n\n"):
            result = await self.smtptut(
                "send",
                "--to",
                "console@localhost",
                "--port",
                str(self.server.port),
                "--data",
                "-",
                stdin=stdin,
            )
            self.assertEqual(result.code, 65, result.out + result.err)
            self.assertEqual(
                result.err, "smtptut send: standard input: the message is empty\n"
            )
        path = os.path.abspath(self.mktemp())
        open(path, "wb").close()
        result = await self.smtptut("send", "--to", "console@localhost", "--data", path)
        self.assertEqual(result.code, 65, result.out + result.err)
        self.assertEqual(self.server.messages(), [])

    async def test_standardInputStopsAtTheFirstBadLine(self) -> None:
        """
        Standard input is checked as it is copied: a first line of 2,000
        octets ends the run while the writer is still writing (it used to
        copy everything, /dev/zero until the disk was full).
        """
        proto = _OpenStdin(b"x" * 2000)
        transport = reactor.spawnProcess(
            proto,
            SMTPTUT,
            [SMTPTUT, "send", "--to", "console@localhost", "--data", "-"],
            env=childEnvironment({}),
        )
        killer = reactor.callLater(20, transport.signalProcess, "KILL")
        self.addCleanup(lambda: killer.active() and killer.cancel())
        code = await proto.ended
        self.assertEqual(code, 65, proto.err)
        self.assertEqual(
            proto.err.decode(),
            "smtptut send: standard input: line 1 is longer than 998 octets\n",
        )

    async def test_noCopyLeftAfterSIGTERM(self) -> None:
        """
        SIGTERM while standard input is being read leaves no copy of it in
        the temporary directory (it used to stay there for good).
        """
        tmp = os.path.abspath(self.mktemp())
        os.mkdir(tmp)
        proto = _OpenStdin(b"Subject: half a message\n\nsecret text\n")
        transport = reactor.spawnProcess(
            proto,
            SMTPTUT,
            [SMTPTUT, "send", "--to", "console@localhost", "--data", "-"],
            env=childEnvironment({"TMPDIR": tmp}),
        )
        killer = reactor.callLater(30, transport.signalProcess, "KILL")
        self.addCleanup(lambda: killer.active() and killer.cancel())
        # Wait (bounded) until the copy is open: a descriptor into tmp.
        fds = f"/proc/{transport.pid}/fd"
        for _ in range(200):
            try:
                targets = [os.readlink(os.path.join(fds, n)) for n in os.listdir(fds)]
            except OSError:
                targets = []
            if any(t.startswith(tmp + "/") for t in targets):
                break
            await deferLater(reactor, 0.1)
        else:
            self.fail(f"the copy of standard input was never opened: {proto.err!r}")
        transport.signalProcess("TERM")
        await proto.ended
        self.assertEqual(os.listdir(tmp), [])

    async def test_bccNotSent(self) -> None:
        data = (
            b"From: me@client.test\nTo: console@localhost\n"
            b"Bcc: console@localhost, hidden@elsewhere.test\nSubject: blind\n\nbody\n"
        )
        result = await self.smtptut(
            "send",
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
        self.assertIn("Subject: blind\n\nbody", message)
        self.assertNotIn("Bcc", message)
        self.assertNotIn("hidden@", message)

    async def test_duplicateRecipientsOnce(self) -> None:
        port, server = self.recorder()
        result = await self.smtptut(
            "send",
            "--to",
            "a@Example.test,a@example.TEST",
            "--to",
            "A@example.test",
            "--to",
            "a@example.test",
            "--relay",
            f"127.0.0.2:{port}",
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        rcpts = [c for c in server.commands if c.startswith(b"RCPT")]
        # The domain is compared without case, the local part as it is.
        self.assertEqual(
            rcpts, [b"RCPT TO:<a@Example.test>", b"RCPT TO:<A@example.test>"]
        )
        self.assertIn("Sent 2 messages", result.out)
        self.assertEqual(len(result.out.splitlines()), 3)

    async def test_optionErrorsNameTheOption(self) -> None:
        """
        An address the settings took but the wire cannot carry is reported
        under the name the user gave: --to on the command line.
        """
        bad = "a@" + "\u00fc" * 70 + ".test"
        result = await self.smtptut("send", "--to", bad)
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertTrue(
            result.err.startswith(f"smtptut send: --to: {bad}: "), result.err
        )
        result = await self.smtptut("send", SMTPTUT_TO=bad)
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertTrue(
            result.err.startswith(f"smtptut send: SMTPTUT_TO: {bad}: "), result.err
        )


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


def assertInterruptedCleanly(
    test: TestCase, result: ProcessResult, servers: Exchanges
) -> None:
    """
    After L{interruptedMidTransaction}: both recipients deferred as
    interrupted, no traceback, and no new connection after the signal (the
    second exchange is never tried).
    """
    everything = result.out + result.err
    for recipient in ("a@stall.test", "b@stall.test"):
        test.assertIn(f"{recipient}: deferred (interrupted)", result.out)
    for bad in ("Traceback", "Unhandled", "ReactorNotRunning"):
        test.assertNotIn(bad, everything)
    test.assertEqual(servers.factories["127.0.0.3"].connections, 0)
    test.assertIn("Connecting to mx1.stall.test", everything)
    test.assertNotIn("Connecting to mx2.stall.test", everything)


class InterruptTests(TestCase):
    """
    SIGTERM or Ctrl-C (SIGINT) while a transaction waits for its reply.
    """

    timeout = 120

    async def test_signalMidTransaction(self) -> None:
        message = os.path.abspath(self.mktemp())
        with open(message, "wb") as f:
            f.write(TUTORIAL_MESSAGE)
        for sig in (signal.SIGTERM, signal.SIGINT):
            result, servers = await interruptedMidTransaction(
                self, [SMTPTUT, "send", "-v", "--data", message], {}, sig
            )
            self.assertEqual(result.code, 75, result.out + result.err)
            self.assertIn("Sent 0 messages", result.out)
            assertInterruptedCleanly(self, result, servers)
            await servers.stop()


class StatusTests(SynchronousTestCase):
    def outcomes(self, *statuses: Status) -> list[RecipientOutcome]:
        return [RecipientOutcome(f"r{i}@x", s, 0, "") for i, s in enumerate(statuses)]

    def test_statuses(self) -> None:
        self.assertEqual(
            send.outcomeStatus(self.outcomes(Status.DELIVERED, Status.DELIVERED)), 0
        )
        self.assertEqual(
            send.outcomeStatus(self.outcomes(Status.DELIVERED, Status.DEFERRED)), 75
        )
        self.assertEqual(
            send.outcomeStatus(self.outcomes(Status.BOUNCED, Status.DEFERRED)), 75
        )
        self.assertEqual(
            send.outcomeStatus(self.outcomes(Status.DELIVERED, Status.BOUNCED)), 69
        )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class PasswordTests(SynchronousTestCase):
    def test_prompt(self) -> None:
        prompts: list[str] = []

        def prompt(text: str) -> str:
            prompts.append(text)
            return "typed"

        settings = send.askPassword(ClientSettings(user="me"), FakeTerminal(), prompt)
        self.assertEqual(settings.password, "typed")
        self.assertEqual(prompts, ["Password for me: "])

    def test_fromEnvironmentNoPrompt(self) -> None:
        settings = ClientSettings(user="me", password="env")
        self.assertIs(send.askPassword(settings, io.StringIO(), input), settings)

    def test_noTerminal(self) -> None:
        self.assertRaises(
            ConfigError, send.askPassword, ClientSettings(user="me"), io.StringIO()
        )


class PasswdWiringTests(SynchronousTestCase):
    def test_passwdGoesToTheServerModule(self) -> None:
        from smtptut.server import passwords

        calls: list[list[str]] = []

        def passwdMain(argv: list[str]) -> int:
            calls.append(argv)
            return 3

        self.patch(passwords, "passwdMain", passwdMain)
        self.assertEqual(cli.main(["passwd", "add", "guest"]), 3)
        self.assertEqual(calls, [["add", "guest"]])
