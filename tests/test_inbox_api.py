"""The inbox's Mailpit API v1 over real sockets: every endpoint, read flags, outside changes."""

from __future__ import annotations

import base64
import mailbox
import os
import threading
import time
from typing import Any

from twisted.trial.unittest import TestCase

from smtptut.inbox.testing import InboxSink, NoMessage, startInboxSink
from tests.helpers import reactor
from tests.inboxhelpers import (
    LOGO,
    PHOTO,
    TERMS,
    fetch,
    message,
    relatedMessage,
    send,
    sendRaw,
)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class InboxTestCase(TestCase):
    async def startSink(self) -> InboxSink:
        sink = await startInboxSink(reactor)
        self.addCleanup(sink.stop)
        return sink

    async def sendAndWait(
        self, sink: InboxSink, subject: str, **kw: Any
    ) -> dict[str, Any]:
        await send(sink.smtpPort, message(subject, **kw))
        return await sink.waitForMessage(f'subject:"{subject}"')


class ListTests(InboxTestCase):
    async def test_listNewestFirst(self) -> None:
        """
        GET /api/v1/messages lists newest first, with Mailpit's fields, and
        pages with start and limit.
        """
        sink = await self.startSink()
        for subject in ("one", "two", "three"):
            await self.sendAndWait(sink, subject)
        r = await fetch(sink.httpPort, "GET", "/api/v1/messages")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "application/json")
        listing = r.json()
        self.assertEqual(
            [m["Subject"] for m in listing["messages"]], ["three", "two", "one"]
        )
        self.assertEqual(
            (listing["total"], listing["unread"], listing["messages_count"]), (3, 3, 3)
        )
        first = listing["messages"][0]
        self.assertEqual(
            first["From"], {"Name": "Alice", "Address": "alice@example.com"}
        )
        self.assertEqual(first["To"], [{"Name": "", "Address": "bob@example.net"}])
        self.assertEqual(first["Read"], False)
        self.assertEqual(first["Attachments"], 0)
        self.assertIn("plain words", first["Snippet"])
        self.assertRegex(first["Created"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        r = await fetch(sink.httpPort, "GET", "/api/v1/messages?start=1&limit=1")
        page = r.json()
        self.assertEqual([m["Subject"] for m in page["messages"]], ["two"])
        self.assertEqual((page["start"], page["messages_count"]), (1, 3))

    async def test_badNumbers(self) -> None:
        """
        A start or limit that is not a number gets a 400 with a one-line JSON error.
        """
        sink = await self.startSink()
        r = await fetch(sink.httpPort, "GET", "/api/v1/messages?limit=many")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.body.count(b"\n"), 1)
        self.assertIn("limit", r.json()["Error"])

    async def test_unknownPaths(self) -> None:
        """
        A path the API does not have, or a method it does not take there, is
        a JSON 404 or 405.
        """
        sink = await self.startSink()
        for method, path, code in [
            ("GET", "/api/v2/messages", 404),
            ("GET", "/api/v1/nothing", 404),
            ("GET", "/api/v1/message/latest/nothing", 404),
            ("PATCH", "/api/v1/messages", 405),
        ]:
            r = await fetch(sink.httpPort, method, path)
            self.assertEqual(r.status, code, path)
            self.assertIn("Error", r.json())

    async def test_info(self) -> None:
        sink = await self.startSink()
        await self.sendAndWait(sink, "counted")
        info = (await fetch(sink.httpPort, "GET", "/api/v1/info")).json()
        self.assertEqual((info["Messages"], info["Unread"]), (1, 1))
        self.assertIn("RuntimeStats", info)


class MessageTests(InboxTestCase):
    async def test_summaryMarksRead(self) -> None:
        """
        GET /api/v1/message/{ID} gives the message and marks it read: the
        Maildir S flag, as mutt or mailbox.Maildir see it.
        """
        sink = await self.startSink()
        summary = await self.sendAndWait(
            sink, "readme", html="<p>markup</p>", attachment=b"\x00\x01" * 10
        )
        r = await fetch(sink.httpPort, "GET", f"/api/v1/message/{summary['ID']}")
        self.assertEqual(r.status, 200)
        full = r.json()
        self.assertEqual(full["Subject"], "readme")
        self.assertEqual(full["Text"], "plain words\n")
        self.assertEqual(full["HTML"], "<p>markup</p>\n")
        self.assertEqual(full["ReturnPath"], "alice@example.com")
        [attachment] = full["Attachments"]
        self.assertEqual(
            (attachment["FileName"], attachment["ContentType"]),
            ("data.bin", "application/octet-stream"),
        )
        [(key, stored)] = mailbox.Maildir(sink.maildir, create=False).items()
        self.assertEqual(stored.get_subdir(), "cur")
        self.assertIn("S", stored.get_flags())
        listed = (await fetch(sink.httpPort, "GET", "/api/v1/messages")).json()
        self.assertTrue(listed["messages"][0]["Read"])

    async def test_encodedWords(self) -> None:
        """
        RFC 2047 encoded words in the subject and names are shown decoded,
        and searched for decoded.
        """
        sink = await self.startSink()
        await send(
            sink.smtpPort,
            message("Grüße aus Köln", sender="Jürgen Groß <jg@example.com>"),
        )
        found = await sink.waitForMessage("subject:Köln")
        self.assertEqual(found["Subject"], "Grüße aus Köln")
        self.assertEqual(
            found["From"], {"Name": "Jürgen Groß", "Address": "jg@example.com"}
        )
        headers = (
            await fetch(sink.httpPort, "GET", "/api/v1/message/latest/headers")
        ).json()
        self.assertEqual(headers["Subject"], ["Grüße aus Köln"])
        self.assertEqual(len(sink.messages("from:Jürgen")), 1)

    async def test_setReadStatus(self) -> None:
        """
        PUT /api/v1/messages sets or clears the S flag of the given messages, or of all.
        """
        sink = await self.startSink()
        a = await self.sendAndWait(sink, "first")
        await self.sendAndWait(sink, "second")
        r = await fetch(
            sink.httpPort, "PUT", "/api/v1/messages", {"IDs": [a["ID"]], "Read": True}
        )
        self.assertEqual((r.status, r.body), (200, b"ok"))
        flags = {
            m["Subject"]: "S" in m.get_flags()
            for m in mailbox.Maildir(sink.maildir).values()
        }
        self.assertEqual(flags, {"first": True, "second": False})
        await fetch(sink.httpPort, "PUT", "/api/v1/messages", {"Read": True})
        self.assertTrue(
            all("S" in m.get_flags() for m in mailbox.Maildir(sink.maildir).values())
        )
        await fetch(sink.httpPort, "PUT", "/api/v1/messages", {"Read": False})
        self.assertFalse(
            any("S" in m.get_flags() for m in mailbox.Maildir(sink.maildir).values())
        )
        self.assertEqual(sink.index.totals(), (2, 2))

    async def test_latestHeadersRawPart(self) -> None:
        """
        C{latest} names the newest message; /headers, /raw (the stored octets
        exactly) and /part/{PartID} (with its Content-Type) answer for it.
        """
        sink = await self.startSink()
        payload = os.urandom(3000)
        await self.sendAndWait(sink, "older")
        newest = await self.sendAndWait(sink, "parts", attachment=payload)
        r = await fetch(sink.httpPort, "GET", "/api/v1/message/latest")
        self.assertEqual(r.json()["ID"], newest["ID"])
        headers = (
            await fetch(sink.httpPort, "GET", "/api/v1/message/latest/headers")
        ).json()
        self.assertEqual(headers["Subject"], ["parts"])
        self.assertEqual(list(headers), sorted(headers))
        raw = await fetch(sink.httpPort, "GET", f"/api/v1/message/{newest['ID']}/raw")
        row = sink.index.get(newest["ID"])
        assert row is not None
        with open(sink.index.fullPath(row), "rb") as f:
            self.assertEqual(raw.body, f.read())
        self.assertTrue(raw.headers["content-type"].startswith("text/plain"))
        [attachment] = r.json()["Attachments"]
        part = await fetch(
            sink.httpPort, "GET", f"/api/v1/message/latest/part/{attachment['PartID']}"
        )
        self.assertEqual(part.status, 200)
        self.assertEqual(part.body, payload)
        self.assertEqual(part.headers["content-type"], "application/octet-stream")
        self.assertIn("sandbox", part.headers["content-security-policy"])
        missing = await fetch(sink.httpPort, "GET", "/api/v1/message/latest/part/9")
        self.assertEqual(missing.status, 404)

    async def test_unknownMessage(self) -> None:
        """
        An ID that is not a message, or not an ID at all, is a 404 in JSON.
        """
        sink = await self.startSink()
        for identifier in ("latest", "nope", "Li4vLi4vZXRj", "%2e%2e"):
            r = await fetch(sink.httpPort, "GET", f"/api/v1/message/{identifier}")
            self.assertEqual(r.status, 404, identifier)
            self.assertEqual(r.json(), {"Error": "message not found"})

    async def test_views(self) -> None:
        """
        /view/{ID}.html is the HTML part under a sandboxing CSP; /view/{ID}.txt the text.
        """
        sink = await self.startSink()
        await self.sendAndWait(
            sink, "viewed", html="<p>hi<script>alert(1)</script></p>"
        )
        page = await fetch(sink.httpPort, "GET", "/view/latest.html")
        self.assertEqual(page.status, 200)
        self.assertEqual(page.body, b"<p>hi<script>alert(1)</script></p>\n")
        csp = page.headers["content-security-policy"]
        self.assertTrue(csp.startswith("sandbox;"))
        self.assertIn("default-src 'none'", csp)
        self.assertNotIn("allow-scripts", csp)
        text = await fetch(sink.httpPort, "GET", "/view/latest.txt")
        self.assertEqual((text.status, text.body), (200, b"plain words\n"))
        await self.sendAndWait(sink, "textonly")
        none = await fetch(sink.httpPort, "GET", "/view/latest.html")
        self.assertEqual(none.status, 404)

    async def test_disabledFeatures(self) -> None:
        """
        What smtptut lacks answers as Mailpit does with a feature disabled:
        a 4xx with an error, never a traceback; tags are none.
        """
        sink = await self.startSink()
        await self.sendAndWait(sink, "checks")
        for method, path in [
            ("GET", "/api/v1/message/latest/html-check"),
            ("GET", "/api/v1/message/latest/link-check"),
            ("GET", "/api/v1/message/latest/sa-check"),
            ("GET", "/api/v1/message/latest/part/1/thumb"),
            ("GET", "/api/v1/chaos"),
            ("PUT", "/api/v1/tags"),
            ("POST", "/api/v1/send"),
        ]:
            r = await fetch(sink.httpPort, method, path, {})
            self.assertEqual(r.status, 400, path)
            self.assertIn("disabled", r.json()["Error"])
        tags = await fetch(sink.httpPort, "GET", "/api/v1/tags")
        self.assertEqual(tags.json(), [])
        webui = (await fetch(sink.httpPort, "GET", "/api/v1/webui")).json()
        self.assertFalse(webui["MessageRelay"]["Enabled"])
        bad = await fetch(
            sink.httpPort,
            "PUT",
            "/api/v1/messages",
            b"{not json",
            {"Content-Type": "application/json"},
        )
        self.assertEqual(bad.status, 400)
        self.assertEqual(bad.json(), {"Error": "the body is not JSON"})


class SearchAndDeleteTests(InboxTestCase):
    async def test_searchAndDeleteSearch(self) -> None:
        """
        GET /api/v1/search finds with Mailpit's syntax; DELETE /api/v1/search
        removes what it finds, from the Maildir too.
        """
        sink = await self.startSink()
        await self.sendAndWait(sink, "keep this", text="nothing special")
        await self.sendAndWait(sink, "drop this", text="a unique zebra word")
        r = await fetch(sink.httpPort, "GET", "/api/v1/search?query=zebra")
        self.assertEqual([m["Subject"] for m in r.json()["messages"]], ["drop this"])
        self.assertEqual(r.json()["total"], 2)
        r = await fetch(sink.httpPort, "DELETE", "/api/v1/search?query=subject%3Adrop")
        self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(
            [m["subject"] for m in mailbox.Maildir(sink.maildir)], ["keep this"]
        )
        r = await fetch(sink.httpPort, "GET", "/api/v1/search")
        self.assertEqual(r.status, 400)

    async def test_deleteByIdsAndAll(self) -> None:
        sink = await self.startSink()
        a = await self.sendAndWait(sink, "a")
        await self.sendAndWait(sink, "b")
        await self.sendAndWait(sink, "c")
        r = await fetch(sink.httpPort, "DELETE", "/api/v1/messages", {"IDs": [a["ID"]]})
        self.assertEqual(r.status, 200)
        self.assertEqual(
            sorted(m["subject"] for m in mailbox.Maildir(sink.maildir)), ["b", "c"]
        )
        r = await fetch(sink.httpPort, "DELETE", "/api/v1/messages")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(mailbox.Maildir(sink.maildir)), 0)
        self.assertEqual(sink.messages(), [])


class OutsideChangeTests(InboxTestCase):
    async def test_otherProgramsChanges(self) -> None:
        """
        Files another program adds, flags or removes are caught up with.
        """
        sink = await self.startSink()
        box = mailbox.Maildir(sink.maildir, create=False)
        key = box.add(b"From: x@example.com\nSubject: from mutt\n\nhand made\n")
        found = await sink.waitForMessage("subject:mutt")
        self.assertFalse(found["Read"])
        stored = box[key]
        stored.set_subdir("cur")
        stored.add_flag("S")
        box[key] = stored
        await sink.index.rescan()
        self.assertEqual([m["Read"] for m in sink.messages()], [True])
        box.remove(key)
        # Within the same tick of the directory's mtime as the flag change.
        await sink.index.rescan()
        self.assertEqual(sink.messages(), [])

    async def test_indexDeletedLosesNothing(self) -> None:
        """
        The index is derived: removed, it is built again from the Maildir.
        """
        maildir = self.mktemp()
        sink = await startInboxSink(reactor, maildir=maildir)
        await self.sendAndWait(sink, "survivor")
        await sink.stop()
        database = sink.index.database
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(database + suffix):
                os.unlink(database + suffix)
        again = await startInboxSink(reactor, maildir=maildir)
        self.addCleanup(again.stop)
        self.assertEqual([m["Subject"] for m in again.messages()], ["survivor"])
        self.assertTrue(os.path.exists(database))

    async def test_waitTimesOut(self) -> None:
        sink = await self.startSink()
        started = time.monotonic()
        with self.assertRaises(NoMessage):
            await sink.waitForMessage("subject:never", timeout=0.3)
        self.assertLess(time.monotonic() - started, 5)


class LargeAttachmentTests(InboxTestCase):
    async def test_50MBPartStreamed(self) -> None:
        """
        A 50 MB attachment goes out through /part/ without the process
        growing by more than 16 MiB.
        """
        sink = await self.startSink()
        chunk = os.urandom(57 * 1024)
        count = 50 * 1024 * 1024 // len(chunk) + 1
        name = "1800000000.M1P1Q1.big"
        with open(os.path.join(sink.maildir, "new", name), "wb") as f:
            f.write(
                b"From: big@example.com\nSubject: big\nMIME-Version: 1.0\n"
                b'Content-Type: multipart/mixed; boundary="BB"\n\n--BB\n'
                b"Content-Type: text/plain\n\nsee attached\n--BB\n"
                b"Content-Type: application/octet-stream\n"
                b'Content-Disposition: attachment; filename="big.bin"\n'
                b"Content-Transfer-Encoding: base64\n\n"
            )
            for _ in range(count):
                encoded = base64.encodebytes(chunk)
                f.write(encoded)
            f.write(b"--BB--\n")
        summary = await sink.waitForMessage("subject:big", timeout=30)
        self.assertEqual(summary["Attachments"], 1)
        baseline = rss()
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            size = await self._download(
                sink.httpPort, f"/api/v1/message/{summary['ID']}/part/2"
            )
        finally:
            done.set()
            sampler.join()
        self.assertEqual(size, count * len(chunk))
        self.assertLess(peak[0] - baseline, 16 * 1024 * 1024)

    def _download(self, port: int, path: str) -> Any:
        import http.client

        from twisted.internet import threads

        def get() -> int:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", path)
            r = c.getresponse()
            total = 0
            while data := r.read(65536):
                total += len(data)
            c.close()
            return total

        return threads.deferToThread(get)


class InlinePartTests(InboxTestCase):
    async def sendRelated(
        self, sink: InboxSink, subject: str, attachment: bool = True
    ) -> dict[str, Any]:
        await sendRaw(sink.smtpPort, relatedMessage(subject, attachment=attachment))
        return await sink.waitForMessage(f'subject:"{subject}"')

    async def test_inlineAndAttachedParts(self) -> None:
        """
        Parts are sorted as Mailpit sorts them: images with a Content-ID in
        a multipart/related (no disposition, or inline) are C{Inline}; a
        part marked attachment is an attachment even with a Content-ID; a
        text footer marked inline is neither.  C{has:attachment} and the
        summary's count follow (the inline images are not attachments).
        """
        sink = await self.startSink()
        mixed = await self.sendRelated(sink, "with terms")
        related = await self.sendRelated(sink, "images only", attachment=False)
        self.assertEqual((mixed["Attachments"], related["Attachments"]), (1, 0))
        full = (
            await fetch(sink.httpPort, "GET", f"/api/v1/message/{mixed['ID']}")
        ).json()
        self.assertEqual(
            [
                (p["PartID"], p["FileName"], p["ContentType"], p["ContentID"])
                for p in full["Inline"]
            ],
            [
                ("1.2", "logo@smtptut.test", "image/png", "logo@smtptut.test"),
                ("1.3", "photo.png", "image/png", "photo@smtptut.test"),
            ],
        )
        self.assertEqual(
            [(p["PartID"], p["FileName"], p["ContentID"]) for p in full["Attachments"]],
            [("2", "terms.pdf", "terms@smtptut.test")],
        )
        self.assertEqual(full["Text"], "The logo is inline.")
        imagesOnly = (
            await fetch(sink.httpPort, "GET", f"/api/v1/message/{related['ID']}")
        ).json()
        self.assertEqual([p["PartID"] for p in imagesOnly["Inline"]], ["1.2", "1.3"])
        self.assertEqual(imagesOnly["Attachments"], [])
        for query, expected in [
            ("has:attachment", ["with terms"]),
            ("-has:attachment", ["images only"]),
            ("has:inline", ["images only", "with terms"]),
        ]:
            found = sorted(m["Subject"] for m in sink.messages(query))
            self.assertEqual(found, expected, query)
        part = await fetch(
            sink.httpPort, "GET", f"/api/v1/message/{mixed['ID']}/part/1.2"
        )
        self.assertEqual((part.headers["content-type"], part.body), ("image/png", LOGO))

    async def test_cidLinkedInView(self) -> None:
        """
        /view/{ID}.html refers to the inline images by their /part/ URLs
        (the raw and the %-encoded Content-ID both), as Mailpit's view does,
        and its CSP lets images come from the inbox itself, and from no
        other server unless asked.
        """
        sink = await self.startSink()
        summary = await self.sendRelated(sink, "linked")
        page = await fetch(sink.httpPort, "GET", "/view/latest.html")
        self.assertEqual(page.status, 200)
        html = page.body.decode()
        base = f"/api/v1/message/{summary['ID']}/part/"
        self.assertIn(f'id="logo" src="{base}1.2"', html)
        self.assertIn(f"id=\"photo\" src='{base}1.3'", html)
        self.assertNotIn("cid:", html)
        csp = page.headers["content-security-policy"]
        self.assertIn("img-src 'self' data:;", csp)
        self.assertTrue(csp.startswith("sandbox;"))
        remote = await fetch(sink.httpPort, "GET", "/view/latest.html?remote=1")
        self.assertIn(
            "img-src * 'self' data:;", remote.headers["content-security-policy"]
        )
        photo = await fetch(sink.httpPort, "GET", base + "1.3")
        self.assertEqual(
            (photo.headers["content-type"], photo.body), ("image/png", PHOTO)
        )
        # The JSON keeps the HTML as sent, as Mailpit's does.
        full = (
            await fetch(sink.httpPort, "GET", f"/api/v1/message/{summary['ID']}")
        ).json()
        self.assertIn('src="cid:logo@smtptut.test"', full["HTML"])

    async def test_headPartAndRaw(self) -> None:
        """
        HEAD on /part/{PartID} and /raw answers with the part's (or the
        source's) Content-Type and Content-Length, and no body.
        """
        sink = await self.startSink()
        summary = await self.sendRelated(sink, "headed")
        base = f"/api/v1/message/{summary['ID']}"
        for partId, contentType, data in [
            ("1.2", "image/png", LOGO),
            ("2", "application/pdf", TERMS),
        ]:
            r = await fetch(sink.httpPort, "HEAD", f"{base}/part/{partId}")
            self.assertEqual(r.status, 200, partId)
            self.assertEqual(r.headers["content-type"], contentType)
            self.assertEqual(r.headers["content-length"], str(len(data)))
            self.assertIn("sandbox", r.headers["content-security-policy"])
            self.assertEqual(r.body, b"")
        row = sink.index.get(summary["ID"])
        assert row is not None
        raw = await fetch(sink.httpPort, "HEAD", f"{base}/raw")
        self.assertEqual(raw.status, 200)
        self.assertTrue(raw.headers["content-type"].startswith("text/plain"))
        self.assertEqual(
            raw.headers["content-length"],
            str(os.path.getsize(sink.index.fullPath(row))),
        )
        missing = await fetch(sink.httpPort, "HEAD", f"{base}/part/9")
        self.assertEqual(missing.status, 404)
        # A HEAD on the summary is refused: a GET of it marks the message read.
        summaryHead = await fetch(sink.httpPort, "HEAD", base)
        self.assertEqual(summaryHead.status, 405)
        self.assertEqual(sink.index.totals(), (1, 1))
