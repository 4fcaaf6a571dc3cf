"""The Maildir sink: byte-exact storage, durability, nothing left behind."""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from twisted.internet import task, threads
from twisted.trial.unittest import TestCase

from smtptut.maildir import Maildir

from .helpers import Sink, reactor, smtpReplies, startSink
from .strategies import messageLines

ENVELOPE = b"EHLO client.test\r\nMAIL FROM:<app@client.test>\r\nRCPT TO:<console@s>\r\nDATA\r\n"


def wire(lines: list[bytes]) -> bytes:
    """
    Message lines as sent in DATA: dot-stuffed, CRLF, then the end.
    """
    return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines)


def withoutTrace(stored: bytes) -> bytes:
    """
    The stored file after its C{Return-Path:} and C{Received:} fields.
    """
    lines = stored.split(b"\n")
    assert lines[0].startswith(b"Return-Path: <"), lines[0]
    assert lines[1].startswith(b"Received: from "), lines[1]
    i = 2
    while lines[i].startswith(b"\t"):
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

    async def test_traceFields(self) -> None:
        await self.send(b"Subject: x\r\n\r\nbody\r\n")
        [stored] = self.sink.stored()
        first, second, third = stored.split(b"\n")[:3]
        self.assertEqual(first, b"Return-Path: <app@client.test>")
        self.assertEqual(second, b"Received: from client.test ([127.0.0.1])")
        self.assertEqual(third, b"\tby localhost (smtptut) with ESMTP")

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
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)


class MaildirUnitTests(TestCase):
    timeout = 10

    def test_createdWithItsDirectories(self) -> None:
        path = os.path.join(self.mktemp(), "deep", "box")
        Maildir(path)
        self.assertEqual(sorted(os.listdir(path)), ["cur", "new", "tmp"])

    def test_uniqueNames(self) -> None:
        box = Maildir(self.mktemp())
        names = {box.uniqueName() for _ in range(1000)}
        self.assertEqual(len(names), 1000)
