"""smtptut.inbox.testing as README shows it: in a trial test, and in a test that runs no reactor (pytest)."""

from __future__ import annotations

import os
import smtplib
import sys

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from smtptut.inbox.testing import startInboxSink
from tests.helpers import reactor, runProcess

PYTEST_STYLE = """
import smtplib
from smtptut.inbox.testing import inboxSinkInThread

def test_signupMail():
    with inboxSinkInThread() as sink:
        with smtplib.SMTP("127.0.0.1", sink.smtpPort) as client:
            client.sendmail(
                "app@example.com",
                ["new.user@example.com"],
                b"To: new.user@example.com\\r\\nSubject: Welcome\\r\\n\\r\\nConfirm: https://app.test/c/1\\r\\n",
            )
        message = sink.waitForMessage("subject:Welcome to:new.user")
        assert message["To"][0]["Address"] == "new.user@example.com"
        sink.clear()
        assert sink.messages() == []

test_signupMail()
test_signupMail()
print("both passed")
"""


def sendWelcome(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail(
            "app@example.com",
            ["new.user@example.com"],
            b"To: new.user@example.com\r\nSubject: Welcome\r\n\r\n"
            b"Confirm: https://app.test/c/123\r\n",
        )


class TestingHelperTests(TestCase):
    async def test_trialExample(self) -> None:
        """
        README's trial example: start, send, wait for the message, clear.
        """
        sink = await startInboxSink(reactor)
        self.addCleanup(sink.stop)
        await threads.deferToThread(sendWelcome, sink.smtpPort)
        message = await sink.waitForMessage("subject:Welcome", timeout=5)
        self.assertEqual(message["To"][0]["Address"], "new.user@example.com")
        self.assertIn("https://app.test/c/123", message["Snippet"])
        sink.clear()
        self.assertEqual(sink.messages(), [])

    def test_inSmtptutTesting(self) -> None:
        """
        smtptut.testing offers the sink with its inbox beside its plain sink,
        and the inbox's sink is that sink (one Maildir, one listener).
        """
        import smtptut.testing

        self.assertIs(smtptut.testing.startInboxSink, startInboxSink)
        self.assertIn("startInboxSink", smtptut.testing.__all__)
        self.assertIn("inboxSinkInThread", smtptut.testing.__all__)

    async def test_withoutAReactor(self) -> None:
        """
        README's pytest example, run as pytest would run it: no reactor of
        its own, twice in one process.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        script = os.path.join(directory, "test_signup.py")
        with open(script, "w") as f:
            f.write(PYTEST_STYLE)
        result = await runProcess(reactor, [sys.executable, script], timeout=60)
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.out.strip(), "both passed")
