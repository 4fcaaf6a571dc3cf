"""An existing Mailpit client, the npm mailpit-api package, run unchanged against smtptut's inbox."""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import TestCase

from smtptut.client.exchange import makeResolver
from smtptut.client.settings import ClientSettings
from smtptut.inbox.release import Releaser
from smtptut.inbox.testing import startInboxSink
from smtptut.server.settings import AcceptPolicy
from tests.helpers import (
    TOP,
    Behaviour,
    Process,
    RecordingFactory,
    childEnvironment,
    exampleZone,
    reactor,
    runProcess,
    startDNSServer,
)
from tests.inboxhelpers import message, send

JS = os.path.join(TOP, "tests", "js")
NODE = shutil.which("node") or "node"
NPM = shutil.which("npm") or "npm"


class MailpitClientTests(TestCase):
    timeout = 180

    async def installClient(self) -> None:
        """
        The locked mailpit-api in tests/js/node_modules (C{make venv} runs
        the same C{npm ci}; the registry is the only place it reaches).
        """
        if os.path.isdir(os.path.join(JS, "node_modules", "mailpit-api")):
            return
        result = await runProcess(
            reactor, [NPM, "ci", "--no-audit", "--no-fund"], timeout=150, path=JS
        )
        self.assertEqual(result.code, 0, result.out + result.err)

    async def test_mailpitApiPackage(self) -> None:
        """
        List, summary, headers, raw, attachment, search, waitForMessage,
        release (and its refusal), read status and delete, as the package's
        users call them.
        """
        await self.installClient()
        dns = startDNSServer(reactor, "example.test", exampleZone("127.0.0.1"))
        self.addCleanup(dns.stop)
        capture = RecordingFactory(Behaviour())
        listener = reactor.listenTCP(0, capture, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        # Release through the capture server, resolving on loopback only.
        releaser = Releaser(
            reactor,
            AcceptPolicy(("@example.test",)),
            makeResolver([("127.0.0.1", dns.port)], lifetime=5),
            ("127.0.0.1", listener.getHost().port),
            ClientSettings(helo="sink.example.test", timeout=10),
        )
        sink = await startInboxSink(reactor, releaser)
        self.addCleanup(sink.stop)
        await send(
            sink.smtpPort, message("first from python", attachment=os.urandom(3000))
        )
        await sink.waitForMessage("subject:first")
        node = Process(
            reactor,
            [NODE, "mailpit-client.mjs", sink.url],
            childEnvironment({}),
            timeout=120,
            path=JS,
        )
        self.addCleanup(node.stop)
        await node.waitFor("READY", timeout=60)
        await send(sink.smtpPort, message("second from python"))
        result = await node.ended
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("ALL OK", result.out)
        [released] = capture.messages
        self.assertEqual(released.recipients, [b"dev@example.test"])
        self.assertIn(b"Subject: first from python", released.data)
