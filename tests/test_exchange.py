"""Tests for smtptut.exchange against a real DNS server on loopback."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.exchange import (
    ExchangeLookupError,
    MailExchange,
    getMailExchange,
    lookupExchanges,
    makeResolver,
)

from .helpers import a, aaaa, cname, mx, reactor, startDNSServer


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
