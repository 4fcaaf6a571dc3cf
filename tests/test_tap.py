"""The server run as users run it: emailserver.tac and ``twistd smtptut-server``, SIGTERM, memory."""

from __future__ import annotations

import os
import re
import signal
import socket

from twisted.internet import task, threads
from twisted.python import usage
from twisted.trial.unittest import TestCase

from smtptut.server import tap
from smtptut.server.maildir import Maildir
from smtptut.server.settings import SERVER_SETTINGS, ServerSettings
from smtptut.settings import ConfigError

from .helpers import (
    TWISTD,
    Process,
    childEnvironment,
    mountTmpfs,
    reactor,
    remountReadOnly,
    runProcess,
    smtpReplies,
    startTwistdServer,
    twistdArgv,
)

ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"


def pluginArgv(*options: str) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "smtptut-server", *options]


def vmKiB(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class OptionsTests(TestCase):
    timeout = 10

    def test_everySettingIsAnOption(self) -> None:
        options = tap.Options()
        text = str(options)
        for setting in SERVER_SETTINGS:
            variable = setting.variable
            flag = "--" + variable.removeprefix("SMTPTUT_").lower().replace("_", "-")
            self.assertIn(flag + "=", text)
            self.assertIn(variable, text)

    def test_optionsWinOverEnvironment(self) -> None:
        self.patch(os, "environ", {"SMTPTUT_ACCEPT": "env", "SMTPTUT_MAX_SIZE": "9"})
        options = tap.Options()
        options.parseOptions(["--accept", "@a.test, *", "--print", "0"])
        settings: ServerSettings = options["settings"]
        self.assertEqual(settings.accept.patterns, ("@a.test", "*"))
        self.assertFalse(settings.printMessages)
        self.assertEqual(settings.maxSize, 9)

    def test_badOptionIsUsageError(self) -> None:
        options = tap.Options()
        e = self.assertRaises(
            usage.UsageError, options.parseOptions, ["--max-size", "lots"]
        )
        self.assertEqual(str(e), "--max-size: 'lots' is not a whole number")

    def test_serviceErrorsNameTheOption(self) -> None:
        # Found when the service is made (the file is no certificate): named
        # as given, the option here, the variable from the environment.
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate\n")
        options = tap.Options()
        options.parseOptions(["--tls-cert", path])
        e = self.assertRaises(usage.UsageError, tap.makeService, options)
        self.assertTrue(str(e).startswith(f"--tls-cert: cannot load {path}"), str(e))
        self.patch(os, "environ", {"SMTPTUT_TLS_CERT": path})
        options = tap.Options()
        options.parseOptions([])
        e = self.assertRaises(usage.UsageError, tap.makeService, options)
        self.assertTrue(
            str(e).startswith(f"SMTPTUT_TLS_CERT: cannot load {path}"), str(e)
        )

    def test_badListenNamesTheOption(self) -> None:
        e = self.assertRaises(
            usage.UsageError, tap.Options().parseOptions, ["--listen", "bogus"]
        )
        self.assertEqual(
            str(e),
            "--listen: 'bogus' is not a server endpoint"
            " (Unknown endpoint type: 'bogus')",
        )


class SettingsTests(TestCase):
    timeout = 10

    def test_defaults(self) -> None:
        s = ServerSettings.fromEnvironment({})
        self.assertEqual(
            (s.maxSize, s.maxRecipients, s.idleTimeout, s.printMessages, s.maildir),
            (25 * 1024 * 1024, 100, 300.0, True, None),
        )
        self.assertTrue(s.loopback)

    def test_badValues(self) -> None:
        for env, message in [
            ({"SMTPTUT_PRINT": "maybe"}, "SMTPTUT_PRINT: 'maybe' is not 1 or 0"),
            (
                {"SMTPTUT_MAX_RECIPIENTS": "0"},
                "SMTPTUT_MAX_RECIPIENTS: 0 is not at least 1",
            ),
            (
                {"SMTPTUT_TLS_CERT": "/nonexistent.pem"},
                "SMTPTUT_TLS_CERT: /nonexistent.pem: no such file",
            ),
            (
                {"SMTPTUT_USERS": "/nonexistent"},
                "SMTPTUT_USERS: /nonexistent: no such file",
            ),
            (
                {"SMTPTUT_LISTEN": "tcp:notaport"},
                "SMTPTUT_LISTEN: 'tcp:notaport' is not a server endpoint"
                " (invalid literal for int() with base 10: 'notaport')",
            ),
            (
                {"SMTPTUT_IDLE_TIMEOUT": "-1"},
                "SMTPTUT_IDLE_TIMEOUT: the timeout must be more than 0 seconds",
            ),
            # Issue 9: these were taken, and listening failed later (exit 71)
            # or the sink had no bound at all.
            (
                {"SMTPTUT_LISTEN": "tcp:99999"},
                "SMTPTUT_LISTEN: 'tcp:99999' is not a server endpoint"
                " (port 99999 is out of range 0-65535)",
            ),
            (
                {"SMTPTUT_MAX_SIZE": str(10**26)},
                f"SMTPTUT_MAX_SIZE: {10**26} is more than {2**40}",
            ),
            (
                {"SMTPTUT_IDLE_TIMEOUT": "inf"},
                "SMTPTUT_IDLE_TIMEOUT: 'inf' is more than 86400 seconds",
            ),
            (
                {"SMTPTUT_COMMAND_TIMEOUT": "1e9"},
                "SMTPTUT_COMMAND_TIMEOUT: '1e9' is more than 86400 seconds",
            ),
            (
                {"SMTPTUT_SESSION_TIMEOUT": "nan"},
                "SMTPTUT_SESSION_TIMEOUT: the timeout must be more than 0 seconds",
            ),
            (
                {"SMTPTUT_MAX_PEER_CONNECTIONS": "0"},
                "SMTPTUT_MAX_PEER_CONNECTIONS: 0 is not at least 1",
            ),
        ]:
            e = self.assertRaises(ConfigError, ServerSettings.fromEnvironment, env)
            self.assertEqual(str(e), message)

    def test_hostnameMustBeADomainOrLiteral(self) -> None:
        # Issue 9 item 7: the name goes into the greeting and the EHLO reply;
        # a CR LF in it was sent as lines of their own, "a..b" a traceback.
        for bad in [
            "evil.test\r\n250-AUTH PLAIN",
            "a..b",
            "bad name",
            "-a.test",
            "a_b",
        ]:
            e = self.assertRaises(
                ConfigError,
                ServerSettings.fromEnvironment,
                {"SMTPTUT_HOSTNAME": bad},
            )
            self.assertEqual(
                str(e),
                f"SMTPTUT_HOSTNAME: {bad!r} is not a host name (letters, digits,"
                " hyphens and dots) or an address literal",
            )
        e = self.assertRaises(
            ConfigError,
            ServerSettings.fromEnvironment,
            {"SMTPTUT_HOSTNAME": "[300.1.1.1]"},
        )
        self.assertEqual(
            str(e),
            "SMTPTUT_HOSTNAME: '[300.1.1.1]' is not an address literal such as"
            " [192.0.2.1] or [IPv6:2001:db8::1]",
        )
        for good in ["mx.example.test", "localhost", "[127.0.0.1]", "[IPv6:::1]"]:
            settings = ServerSettings.fromEnvironment({"SMTPTUT_HOSTNAME": good})
            self.assertEqual(settings.hostname, good)

    def test_loopbackListen(self) -> None:
        for listen, loopback in [
            ("tcp:2525:interface=127.0.0.1", True),
            ("tcp:2525:interface=127.0.0.9", True),
            ("tcp6:2525:interface=\\:\\:1", True),
            ("unix:/tmp/smtp.sock", True),
            ("tcp:2525", False),
            ("tcp:2525:interface=0.0.0.0", False),
            ("tcp:2525:interface=192.0.2.1", False),
        ]:
            self.assertEqual(ServerSettings(listen=listen).loopback, loopback, listen)


class ProcessTests(TestCase):
    timeout = 120

    async def startServer(self, **settings: str) -> tuple[Process, int]:
        process, port = await startTwistdServer(reactor, settings)
        self.addCleanup(process.stop)
        return process, port

    async def test_pluginHelpListsEverySetting(self) -> None:
        result = await runProcess(reactor, pluginArgv("--help"))
        self.assertEqual(result.code, 0, result.err)
        for setting in SERVER_SETTINGS:
            self.assertIn(setting.variable, result.out)

    async def test_pluginBadOption(self) -> None:
        result = await runProcess(reactor, pluginArgv("--accept", "@"))
        self.assertNotEqual(result.code, 0)
        self.assertIn("--accept: '@' names no domain", result.out + result.err)

    async def test_tacBadListenIsOneLine(self) -> None:
        result = await runProcess(
            reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_LISTEN": "bogus"}
        )
        self.assertEqual(result.code, 64)
        self.assertEqual(
            result.err.strip(),
            "emailserver.tac: SMTPTUT_LISTEN: 'bogus' is not a server endpoint"
            " (Unknown endpoint type: 'bogus')",
        )

    async def test_tacPortOutOfRangeIsUsageError(self) -> None:
        # It used to fail only when listening: exit 71, as for a port in use.
        result = await runProcess(
            reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_LISTEN": "tcp:99999"}
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err.strip(),
            "emailserver.tac: SMTPTUT_LISTEN: 'tcp:99999' is not a server endpoint"
            " (port 99999 is out of range 0-65535)",
        )

    async def test_pluginUnboundedSizeIsUsageError(self) -> None:
        result = await runProcess(reactor, pluginArgv("--max-size", str(10**26)))
        # twistd's own usage error status, as for every bad option.
        self.assertNotEqual(result.code, 0, result.out + result.err)
        self.assertIn(f"--max-size: {10**26} is more than", result.out + result.err)
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_tacReadOnlyMaildirIsOneLine(self) -> None:
        # Issue 9: it started, and logged a traceback for every message.
        disk = mountTmpfs(self, "1m")
        box = os.path.join(disk, "box")
        Maildir(box)
        remountReadOnly(self, disk)
        result = await runProcess(
            reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_MAILDIR": box}
        )
        self.assertEqual(result.code, 64, result.out + result.err)
        self.assertEqual(
            result.err.strip(),
            f"emailserver.tac: SMTPTUT_MAILDIR: {box}: Read-only file system",
        )

    async def test_tacBadCertificateIsOneLine(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("not a certificate\n")
        result = await runProcess(
            reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_TLS_CERT": path}
        )
        self.assertEqual(result.code, 64)
        self.assertEqual(len(result.err.strip().splitlines()), 1, result.err)
        self.assertIn(
            f"emailserver.tac: SMTPTUT_TLS_CERT: cannot load {path}", result.err
        )
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_badHostnameIsOneLine(self) -> None:
        for name in ["a..b", "evil.test\r\n250 injected"]:
            result = await runProcess(
                reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_HOSTNAME": name}
            )
            self.assertEqual(result.code, 64, result.out + result.err)
            self.assertEqual(
                result.err.strip(),
                f"emailserver.tac: SMTPTUT_HOSTNAME: {name!r}"
                " is not a host name (letters, digits, hyphens and dots) or an"
                " address literal",
            )
            self.assertNotIn("Traceback", result.out + result.err)
        # The plugin says it as a usage error (twistd's exit status for one).
        result = await runProcess(reactor, pluginArgv("--hostname", "a..b"))
        self.assertNotEqual(result.code, 0)
        self.assertIn(
            "--hostname: 'a..b' is not a host name (letters, digits, hyphens and"
            " dots) or an address literal",
            result.out + result.err,
        )
        self.assertNotIn("Traceback", result.out + result.err)

    def occupiedPort(self) -> int:
        """
        A loopback port something else listens on.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return int(taken.getsockname()[1])

    async def assertCannotListen(
        self, argv: list[str], settings: dict[str, str], line: str
    ) -> None:
        """
        The server started with C{argv} exits at once (it used to hang with
        the reactor running and nothing listening), with C{line} as its only
        output on standard error and no traceback.
        """
        started = reactor.seconds()
        result = await runProcess(reactor, argv, settings, timeout=20)
        self.assertLess(reactor.seconds() - started, 15)
        self.assertEqual(result.code, 71, result.out + result.err)
        self.assertEqual(result.err.strip(), line)
        self.assertNotIn("Traceback", result.out + result.err)

    async def test_tacPortInUse(self) -> None:
        port = self.occupiedPort()
        listen = f"tcp:{port}:interface=127.0.0.1"
        await self.assertCannotListen(
            twistdArgv("emailserver.tac"),
            {"SMTPTUT_LISTEN": listen},
            f"emailserver.tac: cannot listen on {listen}: Address already in use",
        )

    async def test_pluginPortInUse(self) -> None:
        port = self.occupiedPort()
        listen = f"tcp:{port}:interface=127.0.0.1"
        await self.assertCannotListen(
            pluginArgv("--listen", listen),
            {},
            f"smtptut-server: cannot listen on {listen}: Address already in use",
        )

    async def test_tacBadUnixPath(self) -> None:
        listen = "unix:" + os.path.abspath(self.mktemp()) + "/missing/sock"
        await self.assertCannotListen(
            twistdArgv("emailserver.tac"),
            {"SMTPTUT_LISTEN": listen},
            f"emailserver.tac: cannot listen on {listen}: No such file or directory",
        )

    async def test_pluginStoresMail(self) -> None:
        maildir = os.path.abspath(self.mktemp())
        process = Process(
            reactor,
            pluginArgv(
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--maildir",
                maildir,
                "--accept",
                "@sink.test",
                "--print",
                "0",
            ),
            childEnvironment({}),
            timeout=60,
        )
        self.addCleanup(process.stop)
        match = await process.waitFor(r"starting on (\d+)")
        port = int(match.group(1))
        replies = await threads.deferToThread(
            smtpReplies,
            port,
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<x@sink.test>\r\n"
            b"RCPT TO:<console@other.test>\r\nDATA\r\nSubject: plugin\r\n\r\n.\r\nQUIT\r\n",
            7,
        )
        self.assertEqual(
            [r[:3] for r in replies],
            [b"220", b"250", b"250", b"250", b"550", b"354", b"250", b"221"],
        )
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 1)
        await process.waitFor(r"message accepted: peer=127\.0\.0\.1")
        self.assertNotIn("New message received", process.output())

    async def test_tacMaildirOnly(self) -> None:
        maildir = os.path.abspath(self.mktemp())
        process, port = await self.startServer(
            SMTPTUT_MAILDIR=maildir, SMTPTUT_PRINT="0", SMTPTUT_ACCEPT="*"
        )
        await threads.deferToThread(
            smtpReplies, port, ENVELOPE + b"Subject: tac\r\n\r\n.\r\nQUIT\r\n", 6
        )
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 1)
        self.assertNotIn("New message received", process.output())

    async def test_sigtermFinishesTransactionInFlight(self) -> None:
        maildir = os.path.abspath(self.mktemp())
        process, port = await self.startServer(SMTPTUT_MAILDIR=maildir)
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(idle.close)
        self.addCleanup(busy.close)

        def start() -> None:
            idle.recv(1000)
            reader = busy.makefile("rb")
            busy.sendall(ENVELOPE + b"Subject: in flight\r\n\r\nfirst half\r\n")
            replies = 0
            while replies < 5:
                if reader.readline()[3:4] == b" ":
                    replies += 1

        await threads.deferToThread(start)
        process.kill(signal.SIGTERM)
        await process.waitFor("Received SIGTERM")
        await task.deferLater(reactor, 0.3)

        def finish() -> tuple[bytes, bytes]:
            busy.sendall(b"second half\r\n.\r\n")
            return recvAll(busy), recvAll(idle)

        def recvAll(s: socket.socket) -> bytes:
            data = b""
            while chunk := s.recv(1000):
                data += chunk
            return data

        busyReplies, idleReplies = await threads.deferToThread(finish)
        self.assertEqual(
            busyReplies,
            b"250 2.0.0 Delivery in progress\r\n"
            b"421 4.3.2 Service shutting down, closing connection\r\n",
        )
        self.assertEqual(
            idleReplies, b"421 4.3.2 Service shutting down, closing connection\r\n"
        )
        result = await process.ended
        self.assertEqual(result.signal, signal.SIGTERM, result.out + result.err)
        [name] = os.listdir(os.path.join(maildir, "new"))
        with open(os.path.join(maildir, "new", name), "rb") as f:
            self.assertTrue(f.read().endswith(b"\nfirst half\nsecond half\n"))

    async def test_sigtermGraceIsBounded(self) -> None:
        process, port = await self.startServer(SMTPTUT_SHUTDOWN_GRACE="0.5")
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(busy.close)
        await threads.deferToThread(busy.sendall, ENVELOPE + b"never ends\r\n")
        await task.deferLater(reactor, 0.3)
        start = reactor.seconds()
        result = await process.stop()
        self.assertLess(reactor.seconds() - start, 5)
        self.assertIn("still busy at shutdown", result.out + result.err)

    async def test_hundredMegabytesPrintedInLittleMemory(self) -> None:
        # The console copy spools to a temporary file, then is printed.
        size = 100 * 1024 * 1024
        log = os.path.abspath(self.mktemp())
        process, port = await self.startLoggingServer(log, "/dev/null", 2 * size)
        await self.measureBigMessage(process.transport.pid, port, size)
        with open(log) as f:
            self.assertIn("message accepted", f.read())

    async def test_hundredMegabyteAttachmentShownInLittleMemory(self) -> None:
        # Issue 9: the console decodes MIME for a person, still line by line
        # from the spool: a 100 MB attachment is one line, and little memory.
        size = 100 * 1024 * 1024
        log = os.path.abspath(self.mktemp())
        out = os.path.abspath(self.mktemp())
        process, port = await self.startLoggingServer(log, out, 2 * size)
        header = (
            b"Subject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=big.bin\r\n\r\n"
        )
        await self.measureBigMessage(
            process.transport.pid, port, size, header, b"--b--\r\n"
        )
        await process.stop()
        with open(out) as f:
            printed = f.read()
        self.assertLess(len(printed), 10000)
        self.assertRegex(
            printed,
            r"see attached\n\[attachment: big\.bin, application/octet-stream, \d{8,} octets\]",
        )

    async def startLoggingServer(
        self, log: str, out: str, maxSize: int
    ) -> tuple[Process, int]:
        """
        C{emailserver.tac} under twistd, logging into C{log}, printing into
        C{out}, on a free port (read from its log), taking C{maxSize} octets.
        """
        command = f"exec {TWISTD} -n --pidfile= -l {log} -y emailserver.tac >{out}"
        env = childEnvironment(
            {
                "SMTPTUT_LISTEN": "tcp:0:interface=127.0.0.1",
                "SMTPTUT_MAX_SIZE": str(maxSize),
            }
        )
        process = Process(reactor, ["/bin/sh", "-c", command], env, timeout=120)
        self.addCleanup(process.stop)
        port = 0
        for _ in range(500):
            await task.deferLater(reactor, 0.02)
            if os.path.exists(log):
                with open(log) as f:
                    found = re.search(r"starting on (\d+)", f.read())
                if found:
                    port = int(found.group(1))
                    break
        self.assertTrue(port, "the server did not start")
        return process, port

    async def measureBigMessage(
        self,
        pid: int,
        port: int,
        size: int,
        header: bytes = b"",
        trailer: bytes = b"",
    ) -> None:
        """
        Send a warm-up message, then one of C{size} octets (after C{header},
        before C{trailer}); the server's peak resident memory must not grow
        by more than 8 MiB.
        """
        await threads.deferToThread(
            smtpReplies, port, ENVELOPE + b"Subject: warm\r\n\r\n.\r\nQUIT\r\n", 6
        )
        before = vmKiB(pid, "VmRSS")
        line = b"x" * 998 + b"\r\n"
        blocks = size // len(line) // 256

        def sendBig() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                reader = s.makefile("rb")
                s.sendall(ENVELOPE)
                replies = 0
                while replies < 5:
                    if reader.readline()[3:4] == b" ":
                        replies += 1
                block = line * 256
                s.sendall(header)
                for _ in range(blocks):
                    s.sendall(block)
                s.sendall(trailer + b".\r\nQUIT\r\n")
                return [reader.readline(), reader.readline()]

        replies = await threads.deferToThread(sendBig)
        self.assertEqual(replies[0], b"250 2.0.0 Delivery in progress\r\n")
        grown = vmKiB(pid, "VmHWM") - before
        self.assertLess(grown, 8 * 1024, f"peak RSS grew by {grown} KiB")

    async def test_hundredMegabytesInLittleMemory(self) -> None:
        maildir = os.path.abspath(self.mktemp())
        size = 100 * 1024 * 1024
        process, port = await self.startServer(
            SMTPTUT_MAILDIR=maildir,
            SMTPTUT_PRINT="0",
            SMTPTUT_MAX_SIZE=str(2 * size),
        )
        await self.measureBigMessage(process.transport.pid, port, size)
        names = sorted(os.listdir(os.path.join(maildir, "new")))
        sizes = [os.path.getsize(os.path.join(maildir, "new", n)) for n in names]
        # measureBigMessage sends whole blocks of 256 lines of 998 octets;
        # stored with LF endings they are 999 each.
        self.assertGreater(max(sizes), size // 1000 // 256 * 256 * 999)
