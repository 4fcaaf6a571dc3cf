"""The Maildir sink: byte-exact storage, durability, nothing left behind."""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from twisted.internet import task, threads
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from smtptut.server.maildir import Maildir
from smtptut.server.service import makeFactory
from smtptut.server.settings import ServerSettings
from smtptut.settings import ConfigError

from .helpers import (
    Sink,
    mountTmpfs,
    reactor,
    remountReadOnly,
    smtpReplies,
    startSink,
)
from .strategies import messageLines

ENVELOPE = b"EHLO client.test\r\nMAIL FROM:<app@client.test>\r\nRCPT TO:<console@s>\r\nDATA\r\n"


def wire(lines: list[bytes]) -> bytes:
    """
    Message lines as sent in DATA: dot-stuffed, CRLF, then the end.
    """
    return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines)


def withoutTrace(stored: bytes, recipients: int = 1) -> bytes:
    """
    The stored file after its trace: C{Return-Path:}, C{Received:} (with its
    C{for} clause when there is one recipient) and one C{Delivered-To:} per
    recipient, exactly; the message's own lines (a TAB line, a
    C{Delivered-To:} field) are left to it.
    """
    lines = stored.split(b"\n")
    assert lines[0].startswith(b"Return-Path: <"), lines[0]
    assert lines[1].startswith(b"Received: from "), lines[1]
    assert lines[2].startswith(b"\tby "), lines[2]
    i = 3
    if recipients == 1:
        assert lines[i].startswith(b"\tfor <"), lines[i]
        i += 1
    assert b"; " in lines[i - 1], lines[i - 1]
    for _ in range(recipients):
        assert lines[i].startswith(b"Delivered-To: "), lines[i]
        i += 1
    return b"\n".join(lines[i:])


class MaildirTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.sink = self.startSink()

    def startSink(self, **kw: Any) -> Sink:
        sink = startSink(reactor, maildir=self.mktemp(), **kw)
        self.addCleanup(sink.stop)
        return sink

    async def send(self, data: bytes, n: int = 5) -> list[bytes]:
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies, self.sink.port, ENVELOPE + data + b".\r\nQUIT\r\n", n + 1
        )
        return replies

    async def test_trickyMessagesByteExact(self) -> None:
        cases = [
            [b".leading dot", b"..two dots", b".", b"..", b"end"],
            ["Subject: caf\u00e9".encode(), b"", "\u00fcber 8-bit \xff".encode()],
            [b"Subject: long", b"", b"L" * 998, b"M" * 997],
            [b"Subject: empty body", b""],
            [],
            [b"no header at all, a body line"],
            [b"bare\rcr and bare\nlf inside lines"],
        ]
        for lines in cases:
            replies = await self.send(wire(lines))
            self.assertEqual(replies[5][:3], b"250", (lines, replies))
        stored = [withoutTrace(s) for s in self.sink.stored()]
        expected = [b"".join(x + b"\n" for x in lines) for lines in cases]
        self.assertEqual(stored, expected)
        # The printed copy is the same text.
        self.assertIn("..two dots\n.\n..\nend", self.sink.messages()[0])

    async def test_traceLookalikesByteExact(self) -> None:
        """
        A message whose first lines look like trace (a TAB continuation, a
        C{Delivered-To:} of its own) is stored as sent, after the trace.
        """
        cases = [
            [b"\tjust a tab line"],
            [b"\t", b"x"],
            [b"Delivered-To: someone@else.test", b"", b"body"],
        ]
        for lines in cases:
            replies = await self.send(wire(lines))
            self.assertEqual(replies[5][:3], b"250", (lines, replies))
        stored = [withoutTrace(s) for s in self.sink.stored()]
        expected = [b"".join(x + b"\n" for x in lines) for lines in cases]
        self.assertEqual(stored, expected)

    async def test_traceFields(self) -> None:
        await self.send(b"Subject: x\r\n\r\nbody\r\n")
        [stored] = self.sink.stored()
        first, second, third, fourth, fifth = stored.split(b"\n")[:5]
        self.assertEqual(first, b"Return-Path: <app@client.test>")
        self.assertEqual(second, b"Received: from client.test ([127.0.0.1])")
        self.assertEqual(third, b"\tby localhost (smtptut) with ESMTP")
        self.assertTrue(fourth.startswith(b"\tfor <console@s>; "), fourth)
        # Issue 9: the envelope recipient, for a Bcc recipient to see it.
        self.assertEqual(fifth, b"Delivered-To: console@s")

    async def test_oneDeliveredToPerRecipient(self) -> None:
        script = (
            b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\n"
            b"RCPT TO:<Console@t.test>\r\nDATA\r\nTo: console@s\r\n\r\n.\r\n"
        )
        await threads.deferToThread(smtpReplies, self.sink.port, script, 6)
        [stored] = self.sink.stored()
        self.assertIn(
            b"\nDelivered-To: console@s\nDelivered-To: Console@t.test\nTo: console@s",
            stored,
        )
        # The console shows them too, under Received:.
        [printed] = self.sink.messages()
        self.assertTrue(printed.startswith("Received: from c "), printed)
        self.assertIn("\nDelivered-To: Console@t.test\nTo: console@s\n", printed)

    async def test_randomMessagesByteExact(self) -> None:
        port = self.sink.port
        new = os.path.join(self.sink.settings.maildir, "new")

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(messageLines())
        def roundTrip(lines: list[bytes]) -> None:
            before = set(os.listdir(new))
            replies = smtpReplies(port, ENVELOPE + wire(lines) + b".\r\nQUIT\r\n", 6)
            assert replies[5][:3] == b"250", replies
            # The file is in new/ by the time the 250 has come.
            [name] = set(os.listdir(new)) - before
            with open(os.path.join(new, name), "rb") as f:
                stored = withoutTrace(f.read())
            assert stored == b"".join(x + b"\n" for x in lines), (stored, lines)

        await threads.deferToThread(roundTrip)

    async def test_printOff(self) -> None:
        self.sink = self.startSink(printMessages=False)
        await self.send(b"Subject: stored only\r\n\r\nx\r\n")
        self.assertEqual(self.sink.output.getvalue(), "")
        self.assertEqual(len(self.sink.stored()), 1)

    async def abandonMidData(self, reset: bool) -> None:
        port = self.sink.port
        tmp = os.path.join(self.sink.settings.maildir, "tmp")

        def client() -> list[str]:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            reader = s.makefile("rb")
            s.sendall(ENVELOPE + b"Subject: half\r\n\r\n" + b"x" * 500 + b"\r\n")
            replies = 0
            while replies < 5:
                if reader.readline()[3:4] == b" ":
                    replies += 1
            s.sendall(b"more of it\r\n" * 1000)
            # Wait until the server has started writing the file.
            for _ in range(500):
                if os.listdir(tmp):
                    break
                time.sleep(0.01)
            during = os.listdir(tmp)
            if reset:
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            reader.close()
            s.close()
            return during

        during = await threads.deferToThread(client)
        self.assertEqual(len(during), 1, "the message streams into tmp/")
        for _ in range(300):
            if not self.sink.factory.protocols:
                break
            await task.deferLater(reactor, 0.01)
        self.assertEqual(self.sink.tmpFiles(), [])
        self.assertEqual(self.sink.stored(), [])
        self.assertEqual(self.sink.messages(), [])

    async def test_clientGoneMidData(self) -> None:
        await self.abandonMidData(reset=False)

    async def test_connectionResetMidData(self) -> None:
        await self.abandonMidData(reset=True)

    async def test_manyMessagesEachWithItsFile(self) -> None:
        script = b"EHLO c\r\n" + b"".join(
            b"MAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\nSubject: %d\r\n\r\n.\r\n"
            % i
            for i in range(25)
        )
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies, self.sink.port, script + b"QUIT\r\n", 1 + 25 * 4 + 1
        )
        self.assertEqual(replies.count(b"250 2.0.0 Delivery in progress"), 25)
        stored = self.sink.stored()
        self.assertEqual(
            sorted(withoutTrace(s) for s in stored),
            sorted(b"Subject: %d\n\n" % i for i in range(25)),
        )

    async def test_observersSeeEachStoredMessage(self) -> None:
        # The seam for what shows stored mail (the inbox): told each file in
        # new/ once it is there, before the client's 250; an observer's
        # exception loses no message.
        maildir = self.sink.factory.delivery.maildir
        seen: list[tuple[str, bool]] = []

        def broken(path: str) -> None:
            raise RuntimeError("an observer's bug")

        maildir.observers += [broken, lambda p: seen.append((p, os.path.exists(p)))]
        script = b"EHLO c\r\n" + b"".join(
            b"MAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n%d\r\n.\r\n" % i
            for i in range(2)
        )
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies, self.sink.port, script + b"QUIT\r\n", 1 + 2 * 4 + 1
        )
        self.assertEqual(replies.count(b"250 2.0.0 Delivery in progress"), 2)
        new = os.path.join(maildir.path, "new")
        self.assertEqual(
            sorted(seen), sorted((os.path.join(new, n), True) for n in os.listdir(new))
        )
        self.assertEqual(len(seen), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class MaildirFailureTests(TestCase):
    timeout = 30

    async def test_storeFailureIs451AndLeavesNothing(self) -> None:
        sink = startSink(reactor, maildir=self.mktemp(), printMessages=False)
        self.addCleanup(sink.stop)
        # new/ gone: the rename into it fails.
        os.rmdir(os.path.join(sink.settings.maildir, "new"))
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies,
            sink.port,
            ENVELOPE + b"Subject: x\r\n\r\n.\r\nNOOP\r\n",
            6,
        )
        self.assertEqual(
            replies[5], b"451 4.3.0 Could not store the message, try again later"
        )
        self.assertEqual(replies[6][:3], b"250")
        self.assertEqual(sink.tmpFiles(), [])
        [line] = [x for x in self.lines if x.startswith("cannot store")]
        self.assertIn("No such file or directory", line)

    def setUp(self) -> None:
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.events = events

    @property
    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def assertOneStorageLine(self, reason: str) -> None:
        """
        One log line said why, and no traceback was logged (trial would fail
        the test for a logged failure; say it for the reader).
        """
        stored = [x for x in self.lines if x.startswith("cannot store a message")]
        self.assertEqual(len(stored), 1, stored)
        self.assertIn(reason, stored[0])
        self.assertFalse([e for e in self.events if e.get("log_failure")])

    async def test_diskFullWhileStreaming(self) -> None:
        # Issue 9: a 5 MB message into a Maildir on a 2 MiB tmpfs got no
        # reply at all, and "Unhandled Error ... [Errno 28]" in the log.
        disk = mountTmpfs(self, "2m")
        sink = startSink(
            reactor, maildir=os.path.join(disk, "box"), printMessages=False
        )
        self.addCleanup(sink.stop)
        free = os.statvfs(disk).f_bfree
        big = b"Subject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 70000
        small = b"Subject: small\r\n\r\nfits\r\n"
        script = (
            ENVELOPE
            + big
            + b".\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + small
            + b".\r\nQUIT\r\n"
        )
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies, sink.port, script, 10, timeout=30
        )
        self.assertEqual(replies[5], b"452 4.3.1 Insufficient system storage")
        # The session goes on: the next message fits, and is stored.
        self.assertEqual(
            [r[:3] for r in replies[6:]], [b"250", b"250", b"354", b"250", b"221"]
        )
        self.assertEqual(sink.tmpFiles(), [])
        [stored] = sink.stored()
        self.assertTrue(stored.endswith(b"Subject: small\n\nfits\n"), stored)
        self.assertOneStorageLine("No space left on device")
        self.assertGreaterEqual(os.statvfs(disk).f_bfree, free - 8)

    async def test_consoleSpoolFull(self) -> None:
        # The console's copy is spooled to a temporary file past 1 MiB: the
        # same when its directory (TMPDIR) fills.
        disk = mountTmpfs(self, "2m")
        sink = startSink(reactor)
        self.addCleanup(sink.stop)
        sink.factory.delivery.spoolDirectory = disk
        free = os.statvfs(disk).f_bfree
        big = b"Subject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 70000
        script = (
            ENVELOPE
            + big
            + b".\r\nMAIL FROM:<a@c>\r\nRCPT TO:<console@s>\r\nDATA\r\n"
            + b"Subject: small\r\n\r\n.\r\nQUIT\r\n"
        )
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies, sink.port, script, 10, timeout=30
        )
        self.assertEqual(replies[5], b"452 4.3.1 Insufficient system storage")
        self.assertEqual(
            [r[:3] for r in replies[6:]], [b"250", b"250", b"354", b"250", b"221"]
        )
        [printed] = sink.messages()
        self.assertIn("Subject: small", printed)
        self.assertOneStorageLine("No space left on device")
        # The spool file is gone, its space given back.
        self.assertEqual(os.listdir(disk), [])
        self.assertEqual(os.statvfs(disk).f_bfree, free)

    async def test_readOnlyMaildirPerMessage(self) -> None:
        # Issue 9: a critical traceback per message; now 451 and one line.
        disk = mountTmpfs(self, "2m")
        sink = startSink(
            reactor, maildir=os.path.join(disk, "box"), printMessages=False
        )
        self.addCleanup(sink.stop)
        remountReadOnly(self, disk)
        replies: list[bytes] = await threads.deferToThread(
            smtpReplies, sink.port, ENVELOPE + b"NOOP\r\n", 5
        )
        self.assertEqual(
            replies[4], b"451 4.3.0 Could not store the message, try again later"
        )
        self.assertEqual(replies[5][:3], b"250")
        self.assertOneStorageLine("Read-only file system")

    def test_readOnlyMaildirRefusedAtStart(self) -> None:
        disk = mountTmpfs(self, "2m")
        box = os.path.join(disk, "box")
        Maildir(box)
        remountReadOnly(self, disk)
        settings = ServerSettings(maildir=box)
        e = self.assertRaises(ConfigError, makeFactory, settings, reactor, reactor)
        self.assertEqual(str(e), f"SMTPTUT_MAILDIR: {box}: Read-only file system")


class MaildirUnitTests(TestCase):
    timeout = 10

    def test_createdWithItsDirectories(self) -> None:
        path = os.path.join(self.mktemp(), "deep", "box")
        Maildir(path)
        self.assertEqual(sorted(os.listdir(path)), ["cur", "new", "tmp"])

    def test_uniqueNames(self) -> None:
        box = Maildir(self.mktemp())
        names = {box.uniqueName(time.time()) for _ in range(1000)}
        self.assertEqual(len(names), 1000)
