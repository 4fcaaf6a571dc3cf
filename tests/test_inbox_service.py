"""The inbox in the sink process: twistd smtptut-server and emailserver.tac, as users run them."""

from __future__ import annotations

import os
import socket

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.helpers import (
    TWISTD,
    Process,
    childEnvironment,
    reactor,
    runProcess,
    smtpReplies,
    twistdArgv,
)
from tests.inboxhelpers import fetch

MESSAGE = (
    b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
    b"Subject: through twistd\r\n\r\nbody\r\n.\r\nQUIT\r\n"
)


def pluginArgv(*options: str) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "smtptut-server", *options]


class ProcessTests(TestCase):
    async def startServer(
        self, argv: list[str], settings: dict[str, str]
    ) -> tuple[Process, int, int]:
        process = Process(reactor, argv, childEnvironment(settings), timeout=60)
        self.addCleanup(process.stop)
        smtp = await process.waitFor(r"starting on (\d+)")
        http = await process.waitFor(r"The inbox is at http://127\.0\.0\.1:(\d+)/")
        return process, int(smtp.group(1)), int(http.group(1))

    async def test_pluginTemporaryMaildir(self) -> None:
        """
        The plugin with --http and no Maildir stores into a temporary one,
        says where, shows its messages through the API, and removes it at exit.
        """
        process, smtp, http = await self.startServer(
            pluginArgv(
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--http",
                "tcp:0:interface=127.0.0.1",
                "--print",
                "0",
            ),
            {},
        )
        where = await process.waitFor(r"temporary Maildir (\S+),")
        maildir = where.group(1)
        self.assertTrue(os.path.isdir(os.path.join(maildir, "new")))
        await threads.deferToThread(smtpReplies, smtp, MESSAGE, 6)
        for _ in range(100):
            r = await fetch(http, "GET", "/api/v1/search?query=subject:twistd")
            if r.json()["messages_count"]:
                break
        self.assertEqual(r.json()["messages"][0]["Subject"], "through twistd")
        home = await fetch(http, "GET", "/")
        self.assertEqual(home.status, 200)
        result = await process.stop()
        self.assertNotIn("Traceback", result.out + result.err)
        self.assertFalse(os.path.exists(maildir))

    async def test_tacWithHTTP(self) -> None:
        """
        emailserver.tac serves the inbox once SMTPTUT_HTTP is set.
        """
        maildir = os.path.abspath(self.mktemp())
        process, smtp, http = await self.startServer(
            twistdArgv("emailserver.tac"),
            {
                "SMTPTUT_LISTEN": "tcp:0:interface=127.0.0.1",
                "SMTPTUT_HTTP": "tcp:0:interface=127.0.0.1",
                "SMTPTUT_MAILDIR": maildir,
            },
        )
        await threads.deferToThread(smtpReplies, smtp, MESSAGE, 6)
        for _ in range(100):
            r = await fetch(http, "GET", "/api/v1/messages")
            if r.json()["total"]:
                break
        self.assertEqual(r.json()["total"], 1)
        await process.stop()
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 1)

    async def test_tacConsoleOnlyByDefault(self) -> None:
        """
        emailserver.tac stays the tutorial's console server: no inbox unless asked.
        """
        process = Process(
            reactor,
            twistdArgv("emailserver.tac"),
            {
                k: v
                for k, v in childEnvironment(
                    {"SMTPTUT_LISTEN": "tcp:0:interface=127.0.0.1"}
                ).items()
                if k != "SMTPTUT_HTTP"
            },
            timeout=60,
        )
        self.addCleanup(process.stop)
        await process.waitFor(r"starting on (\d+)")
        await process.stop()
        self.assertNotIn("The inbox is at", process.output())

    async def test_nonLoopbackWithoutUsersRefused(self) -> None:
        """
        Bound off loopback without SMTPTUT_HTTP_USERS, neither starts: one
        line naming the setting, exit status 64.
        """
        result = await runProcess(
            reactor, twistdArgv("emailserver.tac"), {"SMTPTUT_HTTP": "tcp:0"}
        )
        self.assertEqual(result.code, 64)
        self.assertEqual(len(result.err.strip().splitlines()), 1)
        self.assertIn("SMTPTUT_HTTP: 'tcp:0' is not loopback-only", result.err)
        result = await runProcess(
            reactor, pluginArgv("--http", "tcp:0:interface=0.0.0.0")
        )
        self.assertNotEqual(result.code, 0)
        self.assertIn(
            "--http: 'tcp:0:interface=0.0.0.0' is not loopback-only",
            result.out + result.err,
        )
        self.assertIn("SMTPTUT_HTTP_USERS", result.out + result.err)

    async def test_httpPortInUse(self) -> None:
        """
        An HTTP port that is taken is said in one line, exit status 71, as
        for the SMTP port.
        """
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        http = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        result = await runProcess(
            reactor,
            pluginArgv("--listen", "tcp:0:interface=127.0.0.1", "--http", http),
        )
        self.assertEqual(result.code, 71, result.out + result.err)
        self.assertIn(
            f"smtptut-server: cannot listen on {http} (SMTPTUT_HTTP):"
            " Address already in use",
            result.err,
        )
        self.assertNotIn("Traceback", result.out + result.err)
