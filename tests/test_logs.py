"""smtptut.logs's observer: twistd's lines (or JSON), one write a reactor turn, nothing lost."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    textFileLogObserver,
)
from twisted.python import threadable
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase

from smtptut import logs, twistdlog
from smtptut.logs import BufferedLogObserver, LogFormat
from smtptut.server.settings import ServerSettings
from smtptut.settings import ConfigError
from smtptut.twistdlog import installLogObserver, twistdLogStream

#: The transaction line's event as ConsoleESMTP._logTransaction makes it.
FIELDS: dict[str, Any] = {
    "result": "accepted",
    "peer": "127.0.0.1",
    "helo": "c",
    "sender": "a@b.test",
    "recipients": "console@s",
    "size": 1234,
    "user": "-",
    "tls": False,
    "file": "-",
}
LINE = (
    "message accepted: peer=127.0.0.1 helo=c from=<a@b.test> to=console@s"
    " size=1234 user=- tls=False file=-"
)


class Stream:
    """
    A log file that records each write and each flush.
    """

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, data: str) -> None:
        self.writes.append(data)

    def flush(self) -> None:
        self.flushes += 1

    def text(self) -> str:
        return "".join(self.writes)


class ObserverTestCase(SynchronousTestCase):
    logFormat = LogFormat.TEXT

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.running = True
        # This thread is the reactor's, as twistd's main thread is.
        self.patch(threadable, "ioThread", threading.get_ident())
        self.stream = Stream()
        self.observer = BufferedLogObserver(self.stream, self.reactor, self.logFormat)
        self.publisher = LogPublisher(self.observer)
        self.log = Logger(namespace="smtptut.test", observer=self.publisher)

    def logTransaction(self) -> None:
        self.log.info("{transaction}", transaction=LINE, **FIELDS)


class BufferTests(ObserverTestCase):
    def test_oneWriteATurn(self) -> None:
        """
        Lines logged in one reactor turn go out in one write and one flush
        when the turn ends, in their order.
        """
        for i in range(3):
            self.log.info("line {i}", i=i)
        self.assertEqual(self.stream.writes, [])
        self.reactor.advance(0)
        self.assertEqual(len(self.stream.writes), 1)
        self.assertEqual(self.stream.flushes, 1)
        self.assertEqual(
            [line.split("] ", 1)[1] for line in self.stream.text().splitlines()],
            ["line 0", "line 1", "line 2"],
        )
        # One call scheduled a turn, however many lines.
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.log.info("next turn")
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(0)
        self.assertEqual(len(self.stream.writes), 2)

    def test_failureAtOnce(self) -> None:
        """
        A failure and its traceback are written at once, after the lines
        logged before it.
        """
        self.log.info("before")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            self.log.failure("it broke")
        text = self.stream.text()
        self.assertIn("] before\n", text)
        self.assertIn("] it broke\n\tTraceback (most recent call last):", text)
        self.assertIn("\tbuiltins.ZeroDivisionError: division by zero", text)
        self.assertLess(text.index("before"), text.index("it broke"))

    def test_notRunningAtOnce(self) -> None:
        """
        Before the reactor runs and after it stopped (twistd's first and
        last lines), nothing waits for a turn that will not come.
        """
        self.log.info("buffered")
        self.reactor.running = False
        self.log.info("Server Shut Down.")
        self.assertEqual(len(self.stream.writes), 1)
        lines = self.stream.text().splitlines()
        self.assertTrue(lines[0].endswith("] buffered"))
        self.assertTrue(lines[1].endswith("] Server Shut Down."))

    def test_flushedAfterShutdown(self) -> None:
        """
        The reactor's C{after shutdown} trigger writes what is left: a
        line logged by the last service to stop is not lost.
        """
        [(flush, args, kwargs)] = self.reactor.triggers["after"]["shutdown"]
        self.logTransaction()
        flush(*args, **kwargs)
        self.assertIn(LINE, self.stream.text())

    def test_otherThreadAtOnce(self) -> None:
        """
        An event from another thread is written at once (the reactor's
        clock is not for other threads), behind the buffered lines.
        """
        self.log.info("first")
        thread = threading.Thread(target=self.log.info, args=("from a thread",))
        thread.start()
        thread.join(10)
        lines = self.stream.text().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[1].endswith("] from a thread"))

    def test_manyThreadsWholeLines(self) -> None:
        """
        Lines logged from several threads at once are never split or mixed.
        """

        def many() -> None:
            for _ in range(200):
                self.logTransaction()

        workers = [threading.Thread(target=many) for _ in range(4)]
        for worker in workers:
            worker.start()
        many()
        for worker in workers:
            worker.join(30)
        self.reactor.advance(0)
        lines = self.stream.text().splitlines()
        self.assertEqual(len(lines), 1000)
        for line in lines:
            self.assertTrue(line.endswith("#info] " + LINE), line)

    def test_writeErrorSaid(self) -> None:
        """
        A log that cannot be written (a full disk) is said on standard error;
        the lines are dropped, the server goes on.
        """

        class Full(Stream):
            def write(self, data: str) -> None:
                raise OSError(28, "No space left on device")

        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        observer = BufferedLogObserver(Full(), self.reactor)
        observer({"log_format": "x", "log_time": 1.0})
        self.reactor.advance(0)
        self.assertEqual(
            stderr.getvalue(),
            "cannot write the log: [Errno 28] No space left on device\n",
        )


class TextTests(ObserverTestCase):
    def twistds(self, event: dict[str, Any]) -> str:
        out = io.StringIO()
        textFileLogObserver(out)(event)
        return out.getvalue()

    def test_twistdsLines(self) -> None:
        """
        Each line is the one twistd's text observer writes for the event:
        the transaction line, other formats, several lines, a system, a
        failure.
        """
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            from twisted.python.failure import Failure

            failure = Failure()
        base = {"log_level": LogLevel.info, "log_namespace": "smtptut.x"}
        events: list[dict[str, Any]] = [
            {**base, "log_format": "{transaction}", "transaction": LINE, **FIELDS},
            {**base, "log_format": "{a} and {b!r}", "a": 1, "b": "two"},
            {**base, "log_format": "{text}", "text": "two\nlines"},
            {**base, "log_format": "{text}", "text": 7},
            {"log_format": "legacy", "log_system": "ConsoleESMTP,3,127.0.0.1"},
            {**base, "log_format": "{why}", "why": "broke", "log_failure": failure},
            {**base, "log_format": "{missing}"},
        ]
        for when in (1796163120.25, 1796163120.75, None):
            for event in events:
                event = dict(event, log_time=when)
                self.observer(event)
                self.reactor.advance(0)
                self.assertEqual(self.stream.writes.pop(), self.twistds(event))

    def test_emptyIsNoLine(self) -> None:
        # As twistd's: an event with no text writes nothing.
        self.log.info("{text}", text="")
        self.log.info("{transaction}", transaction="")
        self.reactor.advance(0)
        self.assertEqual(self.stream.writes, [])

    def test_timestampOnceASecond(self) -> None:
        """
        The timestamp is formatted once for each whole second, not once a
        line.
        """
        calls: list[float] = []
        real = logs.formatTime

        def counting(when: float, fmt: str | None) -> str:
            calls.append(when)
            return real(when, fmt)

        self.patch(logs, "formatTime", counting)
        for when in (100.0, 100.1, 100.9, 101.0, 101.5, 102.99):
            self.observer({"log_format": "x", "log_time": when})
        self.reactor.advance(0)
        self.assertEqual(calls, [100, 101, 102])
        lines = self.stream.text().splitlines()
        self.assertEqual(len(lines), 6)
        self.assertEqual(lines[0].split()[0], lines[2].split()[0])
        self.assertNotEqual(lines[2].split()[0], lines[3].split()[0])


class JSONTests(ObserverTestCase):
    logFormat = LogFormat.JSON

    def test_transaction(self) -> None:
        """
        One flat object a line: time (UTC, milliseconds), level, namespace,
        the text, and the transaction's fields with their types.
        """
        self.log.info("{transaction}", transaction=LINE, **FIELDS)
        self.reactor.advance(0)
        [line] = self.stream.text().splitlines()
        record = json.loads(line)
        self.assertRegex(
            record.pop("time"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
        )
        self.assertEqual(
            record,
            {"level": "info", "namespace": "smtptut.test", "text": LINE, **FIELDS},
        )

    def test_timeInUTC(self) -> None:
        self.observer({"log_format": "x", "log_time": 1796163120.25})
        self.observer({"log_format": "x", "log_time": 1796163120.999})
        self.reactor.advance(0)
        times = [json.loads(x)["time"] for x in self.stream.text().splitlines()]
        self.assertEqual(
            times, ["2026-12-01T22:12:00.250Z", "2026-12-01T22:12:00.999Z"]
        )

    def test_failureHasItsTraceback(self) -> None:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            self.log.failure("while storing a message from {peer}", peer="127.0.0.1")
        [line] = self.stream.text().splitlines()
        record = json.loads(line)
        self.assertEqual(record["text"], "while storing a message from 127.0.0.1")
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["peer"], "127.0.0.1")
        self.assertIn("ZeroDivisionError: division by zero", record["traceback"])

    def test_newlinesStayInTheLine(self) -> None:
        # Whatever the text holds, one line (JSON escapes it); objects that
        # are not plain values are left out of the fields, not lost from
        # the text.
        self.log.info("{a}\n{b}", a="x\ny", b=object)
        self.reactor.advance(0)
        [line] = self.stream.text().splitlines()
        record = json.loads(line)
        self.assertEqual(record["text"], f"x\ny\n{object}")
        self.assertEqual(record["a"], "x\ny")
        self.assertNotIn("b", record)


class SettingTests(SynchronousTestCase):
    def test_setting(self) -> None:
        self.assertIs(ServerSettings().logFormat, LogFormat.TEXT)
        settings = ServerSettings.fromEnvironment({"SMTPTUT_LOGFORMAT": "JSON"})
        self.assertIs(settings.logFormat, LogFormat.JSON)

    def test_badSettingIsOneLine(self) -> None:
        e = self.assertRaises(
            ConfigError,
            ServerSettings.fromEnvironment,
            {},
            {"SMTPTUT_LOGFORMAT": "xml"},
        )
        self.assertEqual(str(e), "--logformat: 'xml' is not text or json")


class TwistdOptionsTests(SynchronousTestCase):
    """
    Where the observer writes: where twistd's own would, and nowhere when
    the user chose another observer.
    """

    def test_commandLine(self) -> None:
        # A .tac is not told twistd's options: read from its command line,
        # with twistd's own option tables (abbreviations, -ny, -l FILE).
        read = twistdlog._twistdCommandLine
        self.assertEqual(
            read(["-n", "--pidfile=", "-ny", "emailserver.tac"]), {"nodaemon": True}
        )
        self.assertEqual(
            read(["-n", "-l", "x.log", "-y", "emailserver.tac"]),
            {"nodaemon": True, "logfile": "x.log"},
        )
        self.assertEqual(
            read(["--nodaemon", "--logf=x.log", "--syslog", "-y", "e.tac"]),
            {"nodaemon": True, "logfile": "x.log", "syslog": True},
        )
        self.assertEqual(
            read(["-n", "--logger", "my.observer", "-y", "e.tac", "-l", "x"]),
            {"nodaemon": True, "logger": "my.observer", "logfile": "x"},
        )
        # Not twistd running a .tac: nothing read.
        self.assertIsNone(read(["--no-such-option"]))
        self.assertIsNone(read(["-n", "smtptut-server", "-l", "x"]))
        self.assertIsNone(read(["tests.test_logs"]))

    def test_streams(self) -> None:
        self.assertIs(twistdLogStream({"nodaemon": True}), sys.stdout)
        self.assertIs(twistdLogStream({"nodaemon": True, "logfile": "-"}), sys.stdout)
        # twistd refuses a daemon logging to standard output: let it.
        self.assertIsNone(twistdLogStream({"logfile": "-"}))
        self.assertIsNone(twistdLogStream({"nodaemon": True, "logger": object()}))
        self.assertIsNone(twistdLogStream({"nodaemon": True, "syslog": True}))
        path = self.mktemp()
        stream = twistdLogStream({"nodaemon": True, "logfile": path})
        self.assertIsInstance(stream, LogFile)
        assert isinstance(stream, LogFile)
        self.addCleanup(stream.close)
        self.assertEqual(stream.path, os.path.abspath(path))

    def test_installedOnce(self) -> None:
        """
        The observer becomes the application's component, unless it has one.
        """
        application = Componentized()
        reactor = MemoryReactorClock()
        observer = installLogObserver(
            application, LogFormat.JSON, {"nodaemon": True}, reactor
        )
        self.assertIsInstance(observer, BufferedLogObserver)
        self.assertIs(application.getComponent(ILogObserver), observer)
        self.assertIsNone(installLogObserver(application, config={"nodaemon": True}))
        self.assertIs(application.getComponent(ILogObserver), observer)

    def test_notInstalledForTheUsersObserver(self) -> None:
        application = Componentized()
        installLogObserver(
            application, config={"logger": object()}, reactor=MemoryReactorClock()
        )
        self.assertIsNone(application.getComponent(ILogObserver))


class InstalledTests(SynchronousTestCase):
    """
    Which observer twistd runs: smtptut's, set by emailserver.tac and the
    plugin on their application, unless the user named another.
    """

    def test_tac(self) -> None:
        from twisted.persisted import sob

        self.patch(
            sys, "argv", ["twistd", "-n", "--pidfile=", "-ny", "emailserver.tac"]
        )
        self.patch(os, "environ", {"SMTPTUT_LOGFORMAT": "json"})
        tac = os.path.join(
            os.path.dirname(os.path.dirname(__file__)), "emailserver.tac"
        )
        application = sob.loadValueFromFile(tac, "application")
        observer = application.getComponent(ILogObserver)
        self.assertIsInstance(observer, BufferedLogObserver)
        self.assertEqual(observer._format, observer._json)
        self.assertIs(observer._stream, sys.stdout)

    def test_plugin(self) -> None:
        from twisted.application import service
        from twisted.scripts.twistd import ServerOptions

        from smtptut.server import tap

        for argv, expected in (
            (["-n", "smtptut-server", "--logformat", "json"], BufferedLogObserver),
            (["-n", "--syslog", "smtptut-server"], type(None)),
        ):
            self.patch(os, "environ", {"SMTPTUT_HTTP": "off"})
            config = ServerOptions()
            config.parseOptions(argv)
            self.assertIsInstance(config.subOptions, tap.Options)
            application = service.Application("smtptut-server")
            tap.makeService(config.subOptions).setServiceParent(application)
            observer = application.getComponent(ILogObserver, None)
            self.assertIsInstance(observer, expected, argv)
