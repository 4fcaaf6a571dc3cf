"""Tests for smtptut.exchange against a real DNS server on loopback."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.client.exchange import (
    ExchangeLookupError,
    MailExchange,
    getMailExchange,
    lookupExchanges,
    makeResolver,
)

from .helpers import (
    a,
    aaaa,
    cname,
    mx,
    reactor,
    startDNSServer,
    startFailingDNSServer,
)


def noShuffle(exchanges: list[MailExchange]) -> None:
    """
    Keep equal-preference exchanges in the server's order, for exact checks.
    """


class ExchangeLookupTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.dns = startDNSServer(
            reactor,
            "example.test",
            {
                "example.test": [
                    mx(20, "backup.example.test"),
                    mx(10, "mx.example.test"),
                ],
                "mx.example.test": [a("127.0.0.2"), aaaa("::1")],
                "backup.example.test": [a("127.0.0.3")],
                "implicit.example.test": [a("127.0.0.4")],
                "null.example.test": [mx(0, "")],
                "alias.example.test": [cname("example.test")],
                "nothing.example.test": [dns_txt()],
            },
        )
        self.addCleanup(self.dns.stop)
        self.resolver = makeResolver([("127.0.0.1", self.dns.port)], lifetime=5)

    def lookup(self, domain: str) -> Any:
        return getMailExchange(reactor, domain, self.resolver)

    async def test_preferenceOrder(self) -> None:
        exchanges = await self.lookup("example.test")
        self.assertEqual(
            [(e.preference, e.host, e.addresses) for e in exchanges],
            [
                (10, "mx.example.test", ("127.0.0.2", "::1")),
                (20, "backup.example.test", ("127.0.0.3",)),
            ],
        )

    async def test_implicitMX(self) -> None:
        [exchange] = await self.lookup("implicit.example.test")
        self.assertEqual(exchange.host, "implicit.example.test")
        self.assertEqual(exchange.addresses, ("127.0.0.4",))
        self.assertTrue(exchange.implicit)

    async def test_cnameFollowed(self) -> None:
        exchanges = await self.lookup("alias.example.test")
        self.assertEqual(exchanges[0].host, "mx.example.test")

    async def test_nullMX(self) -> None:
        with self.assertRaises(ExchangeLookupError) as caught:
            await self.lookup("null.example.test")
        self.assertTrue(caught.exception.permanent)
        self.assertIn("null MX", str(caught.exception))
        self.assertIn("null.example.test", str(caught.exception))

    async def test_nxdomain(self) -> None:
        with self.assertRaises(ExchangeLookupError) as caught:
            await self.lookup("missing.example.test")
        self.assertTrue(caught.exception.permanent)
        self.assertIn("NXDOMAIN", str(caught.exception))

    async def test_noAddressAtAll(self) -> None:
        with self.assertRaises(ExchangeLookupError) as caught:
            await self.lookup("nothing.example.test")
        self.assertTrue(caught.exception.permanent)

    async def test_localhostNeedsNoDNS(self) -> None:
        await self.dns.stop()
        [exchange] = await self.lookup("localhost")
        self.assertEqual(exchange.addresses, ("127.0.0.1", "::1"))

    async def test_literalNeedsNoDNS(self) -> None:
        await self.dns.stop()
        [exchange] = await self.lookup("[127.0.0.5]")
        self.assertEqual(exchange.addresses, ("127.0.0.5",))

    async def test_timeoutIsTemporary(self) -> None:
        # Nothing answers on this port once the server is gone.
        await self.dns.stop()
        resolver = makeResolver([("127.0.0.1", self.dns.port)], lifetime=1)
        with self.assertRaises(ExchangeLookupError) as caught:
            await getMailExchange(reactor, "example.test", resolver)
        self.assertFalse(caught.exception.permanent)
        self.assertIn("example.test", str(caught.exception))


class BrokenDNSTests(TestCase):
    """
    Servers that fail some questions, as broken or recursive ones do.
    """

    timeout = 30

    def setUp(self) -> None:
        self.dns = startFailingDNSServer(
            reactor,
            "example.test",
            {
                "example.test": [mx(10, "mx.example.test")],
                "mx.example.test": [a("127.0.0.2"), aaaa("::1")],
                "v6.example.test": [mx(10, "mx6.example.test")],
                "mx6.example.test": [aaaa("::1")],
                "loop.example.test": [cname("loop2.example.test")],
                "loop2.example.test": [cname("loop.example.test")],
                "rloop.example.test": [cname("rloop2.example.test")],
                "rloop2.example.test": [cname("rloop.example.test")],
                "relay.example.test": [a("127.0.0.3")],
            },
            servfail=[
                "mx.example.test AAAA",
                "mx6.example.test A",
                # A recursive resolver (unbound, dnsmasq) answers SERVFAIL for
                # anything but the CNAME itself of a name in a CNAME loop.
                *(
                    f"{name} {t}"
                    for name in ("rloop.example.test", "rloop2.example.test")
                    for t in ("MX", "A", "AAAA")
                ),
            ],
        )
        self.addCleanup(self.dns.stop)
        self.resolver = makeResolver([("127.0.0.1", self.dns.port)], lifetime=5)

    async def test_failedAAAAKeepsTheARecords(self) -> None:
        [exchange] = await getMailExchange(reactor, "example.test", self.resolver)
        self.assertEqual(exchange.addresses, ("127.0.0.2",))

    async def test_failedAKeepsTheAAAARecords(self) -> None:
        [exchange] = await getMailExchange(reactor, "v6.example.test", self.resolver)
        self.assertEqual(exchange.addresses, ("::1",))

    async def test_cnameLoop(self) -> None:
        # Both a server that answers with the alias alone and a recursive one.
        for domain, at in [
            ("loop.example.test", "loop.example.test"),
            ("rloop.example.test", "rloop.example.test"),
        ]:
            with self.assertRaises(ExchangeLookupError) as caught:
                await getMailExchange(reactor, domain, self.resolver)
            self.assertEqual(str(caught.exception), f"{domain}: CNAME loop at {at}")
            self.assertFalse(caught.exception.permanent)

    async def test_relayNameThroughTheNameserver(self) -> None:
        # A name only this loopback server knows: the system resolver is
        # never asked (it would say it does not exist, or ask the Internet).
        [exchange] = await getMailExchange(
            reactor, "any.test", self.resolver, relay=("relay.example.test", 2587)
        )
        self.assertEqual(
            (exchange.host, exchange.addresses, exchange.port),
            ("relay.example.test", ("127.0.0.3",), 2587),
        )

    async def test_relayNotFoundIsTemporary(self) -> None:
        with self.assertRaises(ExchangeLookupError) as caught:
            await getMailExchange(
                reactor, "any.test", self.resolver, relay=("gone.example.test", 25)
            )
        self.assertFalse(caught.exception.permanent)
        self.assertIn("gone.example.test", str(caught.exception))

    async def test_relayLiteralNeedsNoDNS(self) -> None:
        await self.dns.stop()
        [exchange] = await getMailExchange(
            reactor, "any.test", self.resolver, relay=("::1", 25)
        )
        self.assertEqual(exchange.addresses, ("::1",))


def dns_txt() -> Any:
    from twisted.names import dns

    return dns.Record_TXT(b"no mail here", ttl=1)


class NoSystemResolverTests(SynchronousTestCase):
    """
    A machine without /etc/resolv.conf can still send to localhost and
    literals, and says what is missing for anything else.
    """

    def setUp(self) -> None:
        self.resolver = makeResolver(resolvConf="/nonexistent/resolv.conf")

    def test_localhostAndLiterals(self) -> None:
        self.assertEqual(
            lookupExchanges("localhost", self.resolver)[0].addresses,
            ("127.0.0.1", "::1"),
        )
        self.assertEqual(
            lookupExchanges("[127.0.0.7]", self.resolver)[0].addresses,
            ("127.0.0.7",),
        )

    def test_otherDomainsSayWhy(self) -> None:
        e = self.assertRaises(
            ExchangeLookupError, lookupExchanges, "example.test", self.resolver
        )
        self.assertFalse(e.permanent)
        self.assertIn("no DNS server is configured", str(e))
        self.assertIn("SMTPTUT_NAMESERVER", str(e))
