"""The log as users get it: ``twistd smtptut-server`` and emailserver.tac, many messages, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import sys
import threading

from twisted.internet import task, threads
from twisted.trial.unittest import TestCase

from .helpers import TOP, TWISTD, Process, childEnvironment, reactor

#: 200 messages over 8 connections at once.
CONNECTIONS = 8
PER_CONNECTION = 25
MESSAGE = b"Subject: log\r\n\r\nA line.\r\n"

#: The transaction line as twistd's text observer writes it.
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"
    r" \[smtptut\.server\.protocol\.ConsoleESMTP#info\]"
    r" message accepted: peer=127\.0\.0\.1 helo=\S+ from=<(s\d+m\d+@c\.test)>"
    r" to=console@s size=\d+ user=- tls=False file=-"
)
#: Any line twistd's text observer starts (a traceback's lines go on
#: after a tab).
ANY_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[[^\]]+\] |\t")

#: A .tac whose delivery has a bug (a user's own, as the tutorial invites):
#: every DATA fails with a traceback in the log.
BUGGY_TAC = """\
from twisted.application import service
from twisted.internet import reactor

from smtptut.twistdlog import installLogObserver
from smtptut.server.service import SinkService, makeFactory
from smtptut.server.settings import ServerSettings

settings = ServerSettings.fromEnvironment()
application = service.Application("buggy")
installLogObserver(application, settings.logFormat)
factory = makeFactory(settings, reactor, reactor)


def validateRecipient(user, localHost):
    def makeMessage():
        raise RuntimeError("a bug in the delivery")

    return makeMessage


factory.delivery.validateRecipient = validateRecipient
SinkService(settings, factory, reactor).setServiceParent(application)
"""


def sendMany(port: int) -> set[str]:
    """
    Send L{CONNECTIONS} x L{PER_CONNECTION} messages at once with smtplib;
    the senders of those the server took.
    """
    sent: set[str] = set()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def connection(c: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                for m in range(PER_CONNECTION):
                    sender = f"s{c}m{m}@c.test"
                    client.sendmail(sender, ["console@s"], MESSAGE)
                    with lock:
                        sent.add(sender)
        except BaseException as e:
            errors.append(e)

    workers = [
        threading.Thread(target=connection, args=(c,)) for c in range(CONNECTIONS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    if errors:
        raise errors[0]
    return sent


class TwistdLogTests(TestCase):
    timeout = 180

    async def start(
        self, argv: list[str], env: dict[str, str], log: str | None = None
    ) -> tuple[Process, int]:
        """
        Start C{argv} on a free port, read from its standard output or from
        the log file C{log}.
        """
        env = {"SMTPTUT_LISTEN": "tcp:0:interface=127.0.0.1", **env}
        process = Process(reactor, argv, childEnvironment(env), timeout=150)
        self.addCleanup(process.stop)
        if log is None:
            match = await process.waitFor(r"starting on (\d+)", timeout=60)
            return process, int(match.group(1))
        for _ in range(3000):
            await task.deferLater(reactor, 0.02)
            if os.path.exists(log):
                with open(log) as f:
                    found = re.search(r"starting on (\d+)", f.read())
                if found:
                    return process, int(found.group(1))
            self.assertFalse(process.ended.called, process.output())
        self.fail(f"the server did not start: {process.output()}")

    async def sendThenStop(self, process: Process, port: int) -> tuple[set[str], str]:
        """
        Send the messages, SIGTERM at once (lines of the last turn still
        buffered), and wait for a clean exit: the senders, and its stdout.
        """
        sent = await threads.deferToThread(sendMany, port)
        self.assertEqual(len(sent), CONNECTIONS * PER_CONNECTION)
        result = await process.stop()
        self.assertEqual(result.signal, signal.SIGTERM, result.err)
        return sent, result.out

    def assertTextLog(self, text: str, sent: set[str]) -> None:
        """
        C{text} holds one whole transaction line for each of C{sent}, and
        only whole lines; it ends with twistd's last one.
        """
        lines = text.splitlines()
        senders = []
        for line in lines:
            self.assertRegex(line, ANY_LINE)
            if "message accepted" in line:
                match = TEXT_LINE.fullmatch(line)
                self.assertIsNotNone(match, line)
                assert match is not None
                senders.append(match.group(1))
        self.assertEqual(sorted(senders), sorted(sent))
        self.assertTrue(lines[-1].endswith("] Server Shut Down."), lines[-3:])

    async def test_pluginEveryLineAfterSIGTERM(self) -> None:
        """
        C{twistd -n smtptut-server}: 200 messages on 8 connections at once,
        SIGTERM: every transaction line is on standard output, whole, once.
        """
        argv = [TWISTD, "-n", "--pidfile=", "smtptut-server", "--print", "0"]
        process, port = await self.start(argv, {})
        sent, out = await self.sendThenStop(process, port)
        self.assertTextLog(out, sent)

    async def test_tacJSONLines(self) -> None:
        """
        C{twistd -ny emailserver.tac} with C{SMTPTUT_LOGFORMAT=json}: every
        line of the log is a JSON object, one per transaction with its
        fields.
        """
        argv = [TWISTD, "-n", "--pidfile=", "-y", os.path.join(TOP, "emailserver.tac")]
        env = {"SMTPTUT_LOGFORMAT": "json", "SMTPTUT_PRINT": "0"}
        process, port = await self.start(argv, env)
        sent, out = await self.sendThenStop(process, port)
        records = [json.loads(line) for line in out.splitlines()]
        accepted = [r for r in records if r.get("result") == "accepted"]
        self.assertEqual(sorted(r["sender"] for r in accepted), sorted(sent))
        for record in accepted:
            self.assertEqual(
                record["namespace"], "smtptut.server.protocol.ConsoleESMTP"
            )
            self.assertEqual(record["level"], "info")
            self.assertEqual(
                (record["peer"], record["recipients"], record["tls"], record["file"]),
                ("127.0.0.1", "console@s", False, "-"),
            )
            self.assertEqual(record["size"], len(MESSAGE))
            self.assertTrue(record["text"].startswith("message accepted: peer="))
        self.assertEqual(records[-1]["text"], "Server Shut Down.")

    async def test_pluginLogfile(self) -> None:
        """
        twistd's C{-l FILE} is where the log goes, every line of it.
        """
        log = os.path.abspath(self.mktemp())
        argv = [TWISTD, "-n", "--pidfile=", "-l", log, "smtptut-server", "--print=0"]
        process, port = await self.start(argv, {}, log)
        sent, out = await self.sendThenStop(process, port)
        self.assertNotIn("message accepted", out)
        with open(log) as f:
            self.assertTextLog(f.read(), sent)

    async def test_tacLogfile(self) -> None:
        log = os.path.abspath(self.mktemp())
        argv = [TWISTD, "-n", "--pidfile=", "-l", log, "-y", "emailserver.tac"]
        env = {"SMTPTUT_PRINT": "0", "SMTPTUT_LOGFORMAT": "text"}
        process, port = await self.start(argv, env, log)
        sent, out = await self.sendThenStop(process, port)
        with open(log) as f:
            self.assertTextLog(f.read(), sent)

    async def test_usersLoggerWins(self) -> None:
        """
        With C{--logger}, twistd runs the user's observer, not smtptut's.
        """
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        log = os.path.join(directory, "mine.json")
        with open(os.path.join(directory, "myobserver.py"), "w") as f:
            f.write(
                "from twisted.logger import jsonFileLogObserver\n"
                f"def observer():\n    return jsonFileLogObserver(open({log!r}, 'a'))\n"
            )
        argv = [TWISTD, "-n", "--pidfile=", "--logger=myobserver.observer"]
        argv += ["smtptut-server", "--print", "0"]
        env = {"PYTHONPATH": os.pathsep.join([directory, *sys.path])}
        process = Process(
            reactor,
            argv,
            childEnvironment(env | {"SMTPTUT_LISTEN": "tcp:0:interface=127.0.0.1"}),
            timeout=150,
        )
        self.addCleanup(process.stop)
        port = 0
        for _ in range(3000):
            await task.deferLater(reactor, 0.02)
            if os.path.exists(log):
                with open(log) as f:
                    found = re.search(r"starting on (\d+)", f.read())
                if found:
                    port = int(found.group(1))
                    break
        self.assertTrue(port, process.output())
        await threads.deferToThread(
            lambda: smtplib.SMTP("127.0.0.1", port).sendmail(
                "a@c.test", "console@s", MESSAGE
            )
        )
        result = await process.stop()
        self.assertNotIn("message accepted", result.out)
        with open(log) as f:
            events = [json.loads(x) for x in f.read().split("\x1e") if x.strip()]
        # Twisted's own eventAsJSON: every log_ key kept.
        [event] = [e for e in events if e.get("result") == "accepted"]
        self.assertEqual(event["log_format"], "{transaction}")

    async def test_failureTraceback(self) -> None:
        """
        A failure in the server is in the log with its traceback, text
        (continuation lines after a tab) or JSON.
        """
        tac = os.path.abspath(self.mktemp() + ".tac")
        with open(tac, "w") as f:
            f.write(BUGGY_TAC)
        for logFormat in ("text", "json"):
            argv = [TWISTD, "-n", "--pidfile=", "-y", tac]
            env = {"SMTPTUT_LOGFORMAT": logFormat, "SMTPTUT_PRINT": "0"}
            process, port = await self.start(argv, env)

            def send(port: int = port) -> tuple[int, bytes]:
                with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                    client.ehlo()
                    client.mail("a@c.test")
                    client.rcpt("console@s")
                    return client.docmd("DATA")

            code, _ = await threads.deferToThread(send)
            self.assertEqual(code, 451)
            result = await process.stop()
            if logFormat == "text":
                self.assertIn(
                    "#critical] while starting a message\n\tTraceback", result.out
                )
                self.assertIn(
                    "\tbuiltins.RuntimeError: a bug in the delivery\n", result.out
                )
            else:
                records = [json.loads(line) for line in result.out.splitlines()]
                [failure] = [r for r in records if "traceback" in r]
                self.assertEqual(failure["text"], "while starting a message")
                self.assertIn(
                    "RuntimeError: a bug in the delivery", failure["traceback"]
                )
