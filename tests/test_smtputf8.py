"""SMTPUTF8 (RFC 6531, RFC 6532): non-ASCII addresses and header fields, to aiosmtpd (which offers it) and to smtptut's own sink (which does not)."""

from __future__ import annotations

import io

from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.addresses import parseAddress
from smtptut.client.delivery import envelopesByDomain
from smtptut.client.exchange import MailExchange
from smtptut.client.message import checkMessage, tutorialMessage
from smtptut.client.model import Envelope, RecipientOutcome, Status, TLSPolicy
from smtptut.client.planner import UTF8_ADDRESS_REFUSED, UTF8_MESSAGE_REFUSED
from smtptut.client.routing import deliverToExchanges
from smtptut.client.settings import ClientSettings

from .helpers import reactor, startAiosmtpd, startSink

WIDE = "jöran@example.test"
PLAIN = "console@example.test"
UTF8_SUBJECT = checkMessage(
    "utf-8 subject",
    lambda: io.BytesIO("Subject: Grüße\nFrom: a@client.test\n\nhej\n".encode()),
)


class SMTPUTF8Tests(TestCase):
    timeout = 60

    async def deliver(self, port: int, envelope: Envelope) -> list[RecipientOutcome]:
        exchanges = [MailExchange(0, "example.test", ("127.0.0.1",))]
        settings = ClientSettings(port=port, timeout=10, tlsPolicy=TLSPolicy.OFF)
        outcomes: list[RecipientOutcome] = await deliverToExchanges(
            reactor, exchanges, envelope, settings
        )
        return outcomes

    async def test_utf8LocalPartToAiosmtpd(self) -> None:
        controller, received, port = startAiosmtpd(self.mktemp(), enable_SMTPUTF8=True)
        self.addCleanup(controller.stop)
        envelope = Envelope("sender@client.test", (WIDE, PLAIN), tutorialMessage())
        outcomes = await self.deliver(port, envelope)
        self.assertEqual(
            [(o.recipient, o.status) for o in outcomes],
            [(WIDE, Status.DELIVERED), (PLAIN, Status.DELIVERED)],
        )
        [got] = received
        self.assertEqual(got.rcpt_tos, [WIDE, PLAIN])
        self.assertIn("SMTPUTF8", got.mail_options)

    async def test_utf8HeaderToAiosmtpd(self) -> None:
        controller, received, port = startAiosmtpd(self.mktemp(), enable_SMTPUTF8=True)
        self.addCleanup(controller.stop)
        envelope = Envelope("sender@client.test", (PLAIN,), UTF8_SUBJECT)
        [outcome] = await self.deliver(port, envelope)
        self.assertEqual(outcome.status, Status.DELIVERED)
        [got] = received
        self.assertIn("SMTPUTF8", got.mail_options)
        self.assertIn("Subject: Grüße".encode(), got.content)

    async def test_asciiNeedsNoSMTPUTF8(self) -> None:
        controller, received, port = startAiosmtpd(self.mktemp(), enable_SMTPUTF8=True)
        self.addCleanup(controller.stop)
        envelope = Envelope("sender@client.test", (PLAIN,), tutorialMessage())
        await self.deliver(port, envelope)
        [got] = received
        self.assertNotIn("SMTPUTF8", got.mail_options)

    async def test_sinkWithoutSMTPUTF8BouncesTheWideRecipient(self) -> None:
        # smtptut's own sink offers no SMTPUTF8: the non-ASCII recipient
        # bounces with a line saying why; the other gets the message.
        sink = startSink(reactor, accept="*")
        self.addCleanup(sink.stop)
        envelope = Envelope("sender@client.test", (WIDE, PLAIN), tutorialMessage())
        outcomes = await self.deliver(sink.port, envelope)
        self.assertEqual(
            [str(o) for o in outcomes][0],
            f"{WIDE}: bounced via example.test [127.0.0.1]: {UTF8_ADDRESS_REFUSED}",
        )
        self.assertEqual(
            [(o.recipient, o.status) for o in outcomes],
            [(WIDE, Status.BOUNCED), (PLAIN, Status.DELIVERED)],
        )
        self.assertEqual(len(sink.messages()), 1)

    async def test_sinkWithoutSMTPUTF8BouncesAUTF8Header(self) -> None:
        sink = startSink(reactor, accept="*")
        self.addCleanup(sink.stop)
        envelope = Envelope("sender@client.test", (PLAIN,), UTF8_SUBJECT)
        [outcome] = await self.deliver(sink.port, envelope)
        self.assertEqual(
            (outcome.status, outcome.reply), (Status.BOUNCED, UTF8_MESSAGE_REFUSED)
        )
        self.assertEqual(sink.messages(), [])


class SettingsTests(SynchronousTestCase):
    def test_utf8LocalPartAccepted(self) -> None:
        """
        A non-ASCII local part is no longer refused at settings time: each
        server is asked; its domain goes as A-labels.
        """
        settings = ClientSettings.fromEnvironment(
            {"SMTPTUT_TO": "jöran@bücher.test", "SMTPTUT_FROM": "sender@client.test"}
        )
        self.assertEqual(settings.recipients, (parseAddress("jöran@bücher.test"),))
        [envelope] = envelopesByDomain(settings, tutorialMessage()).values()
        self.assertEqual(envelope.recipients, ("jöran@xn--bcher-kva.test",))
