"""README's example of smtptut.testing in a trial test, verbatim (tests.test_testing checks)."""

from smtplib import SMTP

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from smtptut.testing import startSink


def sendWelcome(host: str, port: int) -> None:
    # The code under test; here it sends with smtplib.
    with SMTP(host, port, timeout=10) as smtp:
        smtp.sendmail(
            "app@example.test",
            ["new.user@example.test"],
            b"Subject: Welcome\r\n\r\nHello!\r\n",
        )


class WelcomeMailTests(TestCase):
    async def test_welcome(self) -> None:
        sink = startSink(reactor)
        self.addCleanup(sink.stop)
        await deferToThread(sendWelcome, sink.host, sink.port)
        [message] = await sink.waitForMessages(1, timeout=10)
        self.assertEqual(message["Subject"], "Welcome")
        self.assertEqual(message["Delivered-To"], "new.user@example.test")
        self.assertEqual(message.get_content(), "Hello!\n")
