"""Routing (RFC 5321 §5.1, RFC 7505) over real loopback sockets and a real DNS server."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from twisted.trial.unittest import TestCase

from smtptut.addresses import parseAddress
from smtptut.client.delivery import deliverAll, envelopesByDomain
from smtptut.client.exchange import MailExchange, getMailExchange, makeResolver
from smtptut.client.eyeballs import CONNECT_DELAY
from smtptut.client.message import tutorialMessage
from smtptut.client.model import Envelope, RecipientOutcome, Status, TLSPolicy
from smtptut.client.routing import deliverToExchanges
from smtptut.client.settings import ClientSettings

from .helpers import (
    Behaviour,
    Exchanges,
    Zone,
    a,
    cname,
    listenOnLoopbacks,
    mx,
    reactor,
    startDNSServer,
    startFailingDNSServer,
)

TUTORIAL = tutorialMessage()

#: Three exchanges of example.test, on 127.0.0.2, .3 and .4.
ZONE: Zone = {
    "example.test": [mx(10, "first.example.test"), mx(20, "second.example.test")],
    "first.example.test": [a("127.0.0.2")],
    "second.example.test": [a("127.0.0.3")],
    "two.example.test": [mx(10, "multi.example.test"), mx(20, "third.example.test")],
    "multi.example.test": [a("127.0.0.2"), a("127.0.0.3")],
    "third.example.test": [a("127.0.0.4")],
    "equal.example.test": [mx(10, "first.example.test"), mx(10, "second.example.test")],
    "implicit.example.test": [a("127.0.0.3")],
    "null.example.test": [mx(0, "")],
    "alias.example.test": [cname("example.test")],
    "other.example.test": [mx(5, "third.example.test")],
    "xn--bcher-kva.example.test": [mx(10, "second.example.test")],
    "broken.example.test": [mx(10, "first.example.test")],
    "relay.example.test": [a("127.0.0.3")],
    # Seven exchanges, in this order, on 127.0.0.2 to 127.0.0.8.
    "many.example.test": [mx(10 * i, f"h{i}.example.test") for i in range(2, 9)],
    **{f"h{i}.example.test": [a(f"127.0.0.{i}")] for i in range(2, 9)},
}


class RoutingTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dns = startFailingDNSServer(
            reactor, "example.test", ZONE, servfail=["broken.example.test"]
        )
        self.addCleanup(self.dns.stop)
        self.resolver = makeResolver([("127.0.0.1", self.dns.port)], lifetime=5)

    def serve(self, behaviours: Mapping[str, Behaviour | None]) -> Exchanges:
        exchanges = listenOnLoopbacks(reactor, behaviours)
        self.addCleanup(exchanges.stop)
        return exchanges

    async def send(
        self, port: int, *recipients: str, **settings: Any
    ) -> list[RecipientOutcome]:
        options: dict[str, Any] = {"tlsPolicy": TLSPolicy.OFF, "timeout": 5}
        options.update(settings)
        clientSettings = ClientSettings(
            sender="sender@client.test",
            recipients=tuple(parseAddress(r) for r in recipients),
            port=port,
            nameservers=(("127.0.0.1", self.dns.port),),
            **options,
        )
        envelopes = envelopesByDomain(clientSettings, tutorialMessage())
        self.lines: list[str] = []
        outcomes: list[RecipientOutcome] = await deliverAll(
            reactor, clientSettings, envelopes, self.resolver, self.lines.append
        )
        return outcomes

    async def test_preferenceOrder(self) -> None:
        servers = self.serve({"127.0.0.2": Behaviour(), "127.0.0.3": Behaviour()})
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange, outcome.address),
            (Status.DELIVERED, "first.example.test", "127.0.0.2"),
        )
        self.assertEqual(len(servers.factories["127.0.0.2"].messages), 1)
        self.assertEqual(servers.factories["127.0.0.3"].connections, 0)
        self.assertEqual(
            self.lines,
            [
                "user@example.test: delivered via first.example.test [127.0.0.2]:"
                " 250 2.0.0 queued",
                "Sent 1 messages",
            ],
        )

    async def test_refusedConnectionFallsBack(self) -> None:
        # Nothing listens on 127.0.0.2: the second exchange takes the mail.
        servers = self.serve({"127.0.0.2": None, "127.0.0.3": Behaviour()})
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange),
            (Status.DELIVERED, "second.example.test"),
        )

    async def test_everyAddressBeforeTheNextExchange(self) -> None:
        servers = self.serve(
            {"127.0.0.2": None, "127.0.0.3": Behaviour(), "127.0.0.4": Behaviour()}
        )
        [outcome] = await self.send(servers.port, "user@two.example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange, outcome.address),
            (Status.DELIVERED, "multi.example.test", "127.0.0.3"),
        )
        self.assertEqual(servers.factories["127.0.0.4"].connections, 0)

    async def test_equalPreferencesInRandomOrder(self) -> None:
        seen = set()
        for _ in range(30):
            exchanges = await getMailExchange(
                reactor, "equal.example.test", self.resolver
            )
            seen.add(tuple(e.host for e in exchanges))
        self.assertEqual(
            seen,
            {
                ("first.example.test", "second.example.test"),
                ("second.example.test", "first.example.test"),
            },
        )

    async def test_421GreetingFallsBack(self) -> None:
        busy = Behaviour(greeting=b"421 4.3.2 too busy, try later")
        servers = self.serve({"127.0.0.2": busy, "127.0.0.3": Behaviour()})
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange),
            (Status.DELIVERED, "second.example.test"),
        )
        self.assertEqual(servers.factories["127.0.0.2"].connections, 1)

    async def test_421Everywhere(self) -> None:
        busy = Behaviour(greeting=b"421 4.3.2 too busy, try later")
        servers = self.serve({"127.0.0.2": busy, "127.0.0.3": busy})
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertEqual(outcome.code, 421)
        self.assertIn("too busy", str(outcome))
        self.assertIn("second.example.test [127.0.0.3]", str(outcome))

    async def test_droppedInDataFallsBack(self) -> None:
        servers = self.serve(
            {"127.0.0.2": Behaviour(dropInData=True), "127.0.0.3": Behaviour()}
        )
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange),
            (Status.DELIVERED, "second.example.test"),
        )
        self.assertEqual(servers.factories["127.0.0.2"].messages, [])
        self.assertEqual(len(servers.factories["127.0.0.3"].messages), 1)

    async def test_droppedInDataIsDeferred(self) -> None:
        servers = self.serve({"127.0.0.4": Behaviour(dropInData=True)})
        [outcome] = await self.send(servers.port, "user@other.example.test")
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertIn("closed", outcome.reply)

    async def test_silentServerTimesOutAndFallsBack(self) -> None:
        servers = self.serve(
            {"127.0.0.2": Behaviour(silent=True), "127.0.0.3": Behaviour()}
        )
        [outcome] = await self.send(servers.port, "user@example.test", timeout=1)
        self.assertEqual(
            (outcome.status, outcome.exchange),
            (Status.DELIVERED, "second.example.test"),
        )

    async def test_silentServerIsDeferred(self) -> None:
        servers = self.serve({"127.0.0.4": Behaviour(silent=True)})
        [outcome] = await self.send(servers.port, "user@other.example.test", timeout=1)
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertEqual(outcome.reply, "no reply from the server in 1 s")

    async def test_permanentRefusalIsNotRetriedElsewhere(self) -> None:
        servers = self.serve({"127.0.0.2": Behaviour(), "127.0.0.3": Behaviour()})
        outcomes = await self.send(
            servers.port, "bad@example.test", "good@example.test"
        )
        self.assertEqual(
            [(o.recipient, o.status, o.code) for o in outcomes],
            [
                ("bad@example.test", Status.BOUNCED, 550),
                ("good@example.test", Status.DELIVERED, 250),
            ],
        )
        self.assertEqual(servers.factories["127.0.0.3"].connections, 0)

    async def test_temporaryMailRefusalFallsBack(self) -> None:
        # A greylisting first exchange (451 to MAIL, as Postfix's postscreen
        # or a policy server answers): Postfix tries the next MX, so do we.
        greylist = Behaviour(mailReply=b"451 4.7.1 greylisted, try again later")
        servers = self.serve({"127.0.0.2": greylist, "127.0.0.3": Behaviour()})
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange),
            (Status.DELIVERED, "second.example.test"),
        )
        self.assertEqual(servers.factories["127.0.0.2"].messages, [])
        self.assertEqual(len(servers.factories["127.0.0.3"].messages), 1)

    async def test_temporaryMailRefusalEverywhere(self) -> None:
        greylist = Behaviour(mailReply=b"451 4.7.1 greylisted, try again later")
        servers = self.serve({"127.0.0.2": greylist, "127.0.0.3": greylist})
        [outcome] = await self.send(servers.port, "user@example.test")
        self.assertEqual(servers.factories["127.0.0.2"].connections, 1)
        self.assertEqual(servers.factories["127.0.0.3"].connections, 1)
        self.assertEqual(
            str(outcome),
            "user@example.test: deferred via second.example.test [127.0.0.3]:"
            " 451 4.7.1 greylisted, try again later",
        )

    async def test_everyRecipientDeferredFallsBack(self) -> None:
        busy = Behaviour(deferRecipients=("a", "b"))
        servers = self.serve({"127.0.0.2": busy, "127.0.0.3": Behaviour()})
        outcomes = await self.send(servers.port, "a@example.test", "b@example.test")
        self.assertEqual(
            [(o.recipient, o.status, o.exchange) for o in outcomes],
            [
                ("a@example.test", Status.DELIVERED, "second.example.test"),
                ("b@example.test", Status.DELIVERED, "second.example.test"),
            ],
        )
        self.assertEqual(servers.factories["127.0.0.2"].messages, [])
        [received] = servers.factories["127.0.0.3"].messages
        self.assertEqual(received.recipients, [b"a@example.test", b"b@example.test"])

    async def test_someRecipientsDeferredStayDeferred(self) -> None:
        # One recipient deferred, one taken: the message went, and only the
        # deferred one waits (it is not sent to the next exchange).
        busy = Behaviour(deferRecipients=("a",))
        servers = self.serve({"127.0.0.2": busy, "127.0.0.3": Behaviour()})
        outcomes = await self.send(servers.port, "a@example.test", "b@example.test")
        self.assertEqual(
            [(o.recipient, o.status, o.code, o.exchange) for o in outcomes],
            [
                ("a@example.test", Status.DEFERRED, 450, "first.example.test"),
                ("b@example.test", Status.DELIVERED, 250, "first.example.test"),
            ],
        )
        self.assertEqual(servers.factories["127.0.0.3"].connections, 0)

    async def test_implicitMX(self) -> None:
        servers = self.serve({"127.0.0.3": Behaviour()})
        [outcome] = await self.send(servers.port, "user@implicit.example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange),
            (Status.DELIVERED, "implicit.example.test"),
        )

    async def test_cname(self) -> None:
        servers = self.serve({"127.0.0.2": Behaviour()})
        [outcome] = await self.send(servers.port, "user@alias.example.test")
        self.assertEqual(
            (outcome.status, outcome.exchange), (Status.DELIVERED, "first.example.test")
        )

    async def test_nullMX(self) -> None:
        [outcome] = await self.send(1, "user@null.example.test")
        self.assertEqual(outcome.status, Status.BOUNCED)
        self.assertEqual(
            str(outcome),
            "user@null.example.test: bounced: null.example.test: the domain accepts"
            " no mail (null MX, RFC 7505)",
        )

    async def test_nxdomain(self) -> None:
        [outcome] = await self.send(1, "user@missing.example.test")
        self.assertEqual(outcome.status, Status.BOUNCED)
        self.assertIn("does not exist (NXDOMAIN)", outcome.reply)

    async def test_servfail(self) -> None:
        [outcome] = await self.send(1, "user@broken.example.test")
        self.assertEqual(outcome.status, Status.DEFERRED)
        self.assertIn("SERVFAIL", outcome.reply)

    async def test_internationalizedDomain(self) -> None:
        servers = self.serve({"127.0.0.3": Behaviour()})
        [outcome] = await self.send(servers.port, "user@b\u00fccher.example.test")
        self.assertEqual(outcome.status, Status.DELIVERED)
        [message] = servers.factories["127.0.0.3"].messages
        self.assertEqual(message.recipients, [b"user@xn--bcher-kva.example.test"])

    async def test_severalDomains(self) -> None:
        servers = self.serve({"127.0.0.2": Behaviour(), "127.0.0.4": Behaviour()})
        outcomes = await self.send(
            servers.port,
            "a@example.test",
            "b@other.example.test",
            "c@EXAMPLE.test",
            "d@null.example.test",
        )
        self.assertEqual(
            sorted((o.recipient, o.status) for o in outcomes),
            [
                ("a@example.test", Status.DELIVERED),
                ("b@other.example.test", Status.DELIVERED),
                ("c@EXAMPLE.test", Status.DELIVERED),
                ("d@null.example.test", Status.BOUNCED),
            ],
        )
        # One transaction per domain: a and c together.
        [first] = servers.factories["127.0.0.2"].messages
        self.assertEqual(first.recipients, [b"a@example.test", b"c@EXAMPLE.test"])
        self.assertEqual(len(servers.factories["127.0.0.4"].messages), 1)
        self.assertEqual(self.lines[-1], "Sent 3 messages")

    async def test_concurrencyBound(self) -> None:
        servers = self.serve({"127.0.0.3": Behaviour()})
        recipients = [f"user@d{i}.test" for i in range(4)]
        # Address literals would bypass DNS; a relay would make one envelope.
        # Every domain here is implicit-MX'd to 127.0.0.3 through the zone.
        zone: Zone = {f"d{i}.test": [a("127.0.0.3")] for i in range(4)}
        dns = startDNSServer(reactor, "test", zone)
        self.addCleanup(dns.stop)
        self.resolver = makeResolver([("127.0.0.1", dns.port)], lifetime=5)
        outcomes = await self.send(servers.port, *recipients, concurrency=1)
        self.assertEqual({o.status for o in outcomes}, {Status.DELIVERED})
        self.assertEqual(servers.factories["127.0.0.3"].connections, 4)
        self.assertEqual(servers.factories["127.0.0.3"].mostOpen, 1)

    async def test_relay(self) -> None:
        servers = self.serve({"127.0.0.3": Behaviour()})
        outcomes = await self.send(
            1,
            "a@nowhere.invalid",
            "b@null.example.test",
            relay=("127.0.0.3", servers.port),
        )
        self.assertEqual({o.status for o in outcomes}, {Status.DELIVERED})
        # No MX lookup, one transaction for everyone.
        [message] = servers.factories["127.0.0.3"].messages
        self.assertEqual(
            message.recipients, [b"a@nowhere.invalid", b"b@null.example.test"]
        )
        self.assertEqual(outcomes[0].exchange, "127.0.0.3")

    async def test_relayByNameThroughTheNameserver(self) -> None:
        # Only the loopback DNS server knows relay.example.test: its A record
        # is looked up there, not with the system's resolver.
        servers = self.serve({"127.0.0.3": Behaviour()})
        outcomes = await self.send(
            1, "a@nowhere.invalid", relay=("relay.example.test", servers.port)
        )
        self.assertEqual(
            [(o.status, o.exchange, o.address) for o in outcomes],
            [(Status.DELIVERED, "relay.example.test", "127.0.0.3")],
        )
        self.assertEqual(len(servers.factories["127.0.0.3"].messages), 1)

    async def test_addressLimit(self) -> None:
        # Postfix's smtp_mx_address_limit=5: the first four refuse the
        # connection, the fifth answers 421, the sixth and seventh are not tried.
        busy = Behaviour(greeting=b"421 4.3.2 busy")
        servers = self.serve(
            {f"127.0.0.{i}": busy if i >= 6 else None for i in range(2, 9)}
        )
        [outcome] = await self.send(servers.port, "user@many.example.test")
        self.assertEqual(
            (outcome.status, outcome.address), (Status.DEFERRED, "127.0.0.6")
        )
        self.assertEqual(
            [servers.factories[f"127.0.0.{i}"].connections for i in (6, 7, 8)],
            [1, 0, 0],
        )

    async def test_sessionLimit(self) -> None:
        # Postfix's smtp_mx_session_limit=2: two servers that answered 421,
        # and the third is not tried.
        busy = Behaviour(greeting=b"421 4.3.2 busy")
        servers = self.serve({f"127.0.0.{i}": busy for i in range(2, 9)})
        [outcome] = await self.send(servers.port, "user@many.example.test")
        self.assertEqual((outcome.status, outcome.code), (Status.DEFERRED, 421))
        self.assertEqual(
            [servers.factories[f"127.0.0.{i}"].connections for i in range(2, 9)],
            [1, 1, 0, 0, 0, 0, 0],
        )


class DeferredCauseTests(TestCase):
    """
    A deferred recipient's line names the cause that tells most, and the
    exchange and address it came from, not merely the last attempt's.
    """

    timeout = 60

    async def deliver(
        self,
        behaviours: Mapping[str, Behaviour | None],
        tls: TLSPolicy = TLSPolicy.OFF,
    ) -> tuple[RecipientOutcome, Exchanges]:
        servers = listenOnLoopbacks(reactor, behaviours)
        self.addCleanup(servers.stop)
        exchanges = [
            MailExchange(10, "first.example.test", ("127.0.0.2", "127.0.0.3")),
            MailExchange(20, "second.example.test", ("127.0.0.4",)),
        ]
        envelope = Envelope("s@client.test", ("user@example.test",), tutorialMessage())
        settings = ClientSettings(port=servers.port, timeout=5, tlsPolicy=tls)
        [outcome] = await deliverToExchanges(reactor, exchanges, envelope, settings)
        return outcome, servers

    async def test_noSTARTTLSOutranksARefusedConnection(self) -> None:
        """
        As C{smtptut send --tls encrypt} to localhost: 127.0.0.1 offers no
        STARTTLS, then ::1 refuses the connection.
        """
        outcome, servers = await self.deliver(
            {"127.0.0.2": Behaviour(), "127.0.0.3": None, "127.0.0.4": None},
            tls=TLSPolicy.ENCRYPT,
        )
        self.assertEqual(
            (outcome.status, outcome.code, outcome.exchange, outcome.address),
            (Status.DEFERRED, 0, "first.example.test", "127.0.0.2"),
        )
        self.assertIn("offers no STARTTLS", outcome.reply)
        self.assertEqual(servers.factories["127.0.0.2"].messages, [])

    async def test_replyOutranksLaterRefusals(self) -> None:
        busy = Behaviour(greeting=b"421 4.3.2 too busy, try later")
        outcome, servers = await self.deliver(
            {"127.0.0.2": None, "127.0.0.3": busy, "127.0.0.4": None}
        )
        self.assertEqual(
            str(outcome),
            "user@example.test: deferred via first.example.test [127.0.0.3]:"
            " 421 4.3.2 too busy, try later",
        )

    async def test_latestOfEquals(self) -> None:
        busy = Behaviour(greeting=b"421 4.3.2 too busy, try later")
        later = Behaviour(greeting=b"452 4.3.1 out of space")
        outcome, servers = await self.deliver(
            {"127.0.0.2": busy, "127.0.0.3": None, "127.0.0.4": later}
        )
        self.assertEqual(
            (outcome.status, outcome.code, outcome.exchange, outcome.address),
            (Status.DEFERRED, 452, "second.example.test", "127.0.0.4"),
        )

    async def test_onlyRefusals(self) -> None:
        outcome, servers = await self.deliver(
            {"127.0.0.2": None, "127.0.0.3": None, "127.0.0.4": None}
        )
        self.assertEqual(
            (outcome.status, outcome.exchange, outcome.address),
            (Status.DEFERRED, "second.example.test", "127.0.0.4"),
        )
        self.assertIn("cannot connect", outcome.reply)


def blackHole(host: str, port: int) -> list[socket.socket]:
    """
    A TCP address on loopback that never answers a connection: a listener
    with a backlog of 0 that never accepts, its queue filled, so Linux drops
    every further SYN (as a firewall or a broken IPv6 route would).  The
    sockets are returned to be closed.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(0)
    held = [listener]
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((host, port))
        held.append(filler)
    return held


class HappyEyeballsTests(TestCase):
    timeout = 60

    async def test_blackHoledAddressCostsTheConnectDelay(self) -> None:
        servers = listenOnLoopbacks(reactor, {"127.0.0.2": Behaviour()})
        self.addCleanup(servers.stop)
        held = blackHole("127.0.0.5", servers.port)
        for s in held:
            self.addCleanup(s.close)
        # The hole is one: a plain connect to it times out.
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.settimeout(0.5)
        self.assertRaises(OSError, probe.connect, ("127.0.0.5", servers.port))
        exchange = MailExchange(10, "dual.example.test", ("127.0.0.5", "127.0.0.2"))
        settings = ClientSettings(
            sender="sender@client.test",
            recipients=(parseAddress("user@example.test"),),
            port=servers.port,
            tlsPolicy=TLSPolicy.OFF,
            timeout=20,
        )
        envelope = Envelope("sender@client.test", ("user@example.test",), TUTORIAL)
        start = reactor.seconds()
        [outcome] = await deliverToExchanges(reactor, [exchange], envelope, settings)
        elapsed = reactor.seconds() - start
        self.assertEqual(
            (outcome.status, outcome.address), (Status.DELIVERED, "127.0.0.2")
        )
        # CONNECT_DELAY (0.25 s) and a session, not the 20 s connect timeout.
        self.assertLess(elapsed, 4 * CONNECT_DELAY + 2)
        self.assertEqual(len(servers.factories["127.0.0.2"].messages), 1)
