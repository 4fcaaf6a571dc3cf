"""Tests for smtptut.addresses: mailboxes, literals, host names and A-labels."""

import socket

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from smtptut import addresses
from smtptut.addresses import (
    AddressError,
    MailAddress,
    checkHostName,
    isLoopbackAddress,
    localFQDN,
    normalLiteral,
    parseAddress,
    toALabel,
    wireAddress,
)
from smtptut.client.protocol import SMTPClientFactory
from smtptut.client.settings import ClientSettings
from smtptut.settings import ConfigError, parseAs


class AddressTests(SynchronousTestCase):
    def test_plain(self) -> None:
        address = parseAddress("console@example.test")
        self.assertEqual((address.local, address.domain), ("console", "example.test"))

    def test_angleBrackets(self) -> None:
        self.assertEqual(str(parseAddress("<a@b.test>")), "a@b.test")

    def test_literal(self) -> None:
        address = parseAddress("console@[127.0.0.1]")
        self.assertTrue(address.isLiteral)

    def test_noAt(self) -> None:
        e = self.assertRaises(AddressError, parseAddress, "console")
        self.assertEqual(str(e), "'console' is not an address of the form user@domain")
        e = self.assertRaises(
            ConfigError, parseAs, "SMTPTUT_TO", parseAddress, "console"
        )
        self.assertIn("SMTPTUT_TO", str(e))
        self.assertIn("'console'", str(e))

    def test_badLiteral(self) -> None:
        self.assertRaises(AddressError, parseAddress, "a@[not.an.ip]")

    def test_badDomain(self) -> None:
        self.assertRaises(AddressError, parseAddress, "a@example..test")

    def test_twoAts(self) -> None:
        """
        An unquoted local part holds no C{@}: C{a@b@c} is refused, not taken
        as the mailbox C{a@b} at C{c}.
        """
        for text in ["a@b@c.test", "<a@b@c.test>", "@a@c.test"]:
            e = self.assertRaises(
                ConfigError, parseAs, "SMTPTUT_TO", parseAddress, text
            )
            self.assertEqual(str(e), f"SMTPTUT_TO: {text!r} has more than one @")

    def test_quotedAt(self) -> None:
        address = parseAddress('"a@b"@c.test')
        self.assertEqual((address.local, address.domain), ('"a@b"', "c.test"))


class LoopbackTests(SynchronousTestCase):
    def test_isLoopbackAddress(self) -> None:
        for host in ["127.0.0.1", "127.9.9.9", "::1", "::1%lo"]:
            self.assertTrue(isLoopbackAddress(host), host)
        for host in ["192.0.2.25", "::", "2001:db8::1", "localhost", "", "x"]:
            self.assertFalse(isLoopbackAddress(host), host)


class EhloNameTests(SynchronousTestCase):
    """
    The EHLO name reaches the wire as it is: only a host name or an address
    literal is taken (issue 9: a CR LF in it injected commands).
    """

    def test_good(self) -> None:
        for text, sent in [
            ("mail.example.org", "mail.example.org"),
            ("localhost", "localhost"),
            ("a-b.c1.test", "a-b.c1.test"),
            ("[192.0.2.1]", "[192.0.2.1]"),
            ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
            ("b\u00fccher.test", "xn--bcher-kva.test"),
        ]:
            self.assertEqual(checkHostName(text), sent)
            settings = ClientSettings.fromEnvironment({"SMTPTUT_HELO": text})
            self.assertEqual(settings.helo, sent)

    def test_bad(self) -> None:
        for text in [
            "evil.test\r\nMAIL FROM:<x@y.test>",
            "evil.test\n",
            " evil.test",
            "bad name",
            "tab\there",
            "a..b",
            "-a.test",
            "a-.test",
            "a.test.",
            "under_score.test",
            "x" * 64 + ".test",
            "[192.0.2]",
            "[IPv6:192.0.2.1]",
            "[::1]",
            "[192.0.2.1",
            "nul\0.test",
            "[IPv6:fe80::1%eth0]",
            "[IPv6:fe80::1%x\r\nMAIL FROM:<a@b.test>]",
        ]:
            e = self.assertRaises(
                ConfigError, ClientSettings.fromEnvironment, {"SMTPTUT_HELO": text}
            )
            self.assertTrue(str(e).startswith("SMTPTUT_HELO: "), str(e))
            self.assertNotIn("\n", str(e).replace("\\n", ""))

    def test_identityCheckedByTheClientToo(self) -> None:
        self.assertRaises(
            ConfigError,
            SMTPClientFactory,
            [],
            identity="x.test\r\nRSET",
            clock=Clock(),
        )

    def test_localFQDN(self) -> None:
        """
        The host name if it has a dot, else its canonical name in the hosts
        file (never a DNS query), else none.
        """
        hosts = self.mktemp()
        with open(hosts, "w") as f:
            f.write(
                "127.0.0.1 localhost\n"
                "# 10.0.0.9 box.commented.example box\n"
                "10.0.0.1 Box.Example.org box  # the canonical name first\n"
                "10.0.0.2 loop.localhost loop\n"
                "10.0.0.3 plain\n"
            )
        self.patch(addresses, "HOSTS_FILE", hosts)
        self.patch(socket, "getfqdn", lambda *a: self.fail("getfqdn may ask DNS"))
        self.addCleanup(localFQDN.cache_clear)
        for hostname, expected in [
            ("mail.example.org", "mail.example.org"),
            ("box", "box.example.org"),
            ("plain", None),
            ("unknown", None),
            ("loop", None),
            ("localhost", None),
            ("bad_name.example.org", None),
        ]:
            localFQDN.cache_clear()
            self.patch(socket, "gethostname", lambda h=hostname: h)
            self.assertEqual(localFQDN(), expected, hostname)
        localFQDN.cache_clear()
        self.patch(socket, "gethostname", lambda: "mail.example.org")
        self.assertEqual(ClientSettings.fromEnvironment({}).helo, "mail.example.org")
        localFQDN.cache_clear()
        self.patch(socket, "gethostname", lambda: "plain")
        # No name: the client uses the literal of each connection's local end.
        self.assertIsNone(ClientSettings.fromEnvironment({}).helo)

    def test_noHostsFile(self) -> None:
        self.patch(addresses, "HOSTS_FILE", self.mktemp())
        self.patch(socket, "gethostname", lambda: "box")
        self.addCleanup(localFQDN.cache_clear)
        localFQDN.cache_clear()
        self.assertIsNone(localFQDN())


class LiteralTests(SynchronousTestCase):
    """
    One normal form of address literals, for the server's RCPT paths and
    SMTPTUT_ACCEPT patterns alike.
    """

    def test_normalForm(self) -> None:
        for text, normal in [
            ("[127.0.0.1]", "[127.0.0.1]"),
            ("[IPv6:::1]", "[IPv6:::1]"),
            ("[ipv6:0:0::1]", "[IPv6:::1]"),
            ("[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]"),
        ]:
            self.assertEqual(normalLiteral(text), normal)

    def test_notLiterals(self) -> None:
        for text in [
            "[127.0.0.256]",
            "[1.2.3]",
            "[IPv6:bogus]",
            "[::1]",
            "[IPv6:fe80::1%eth0]",
            "127.0.0.1",
            "[IPv6:192.0.2.1]",
        ]:
            e = self.assertRaises(AddressError, normalLiteral, text)
            self.assertEqual(str(e), f"{text!r} is not an address literal")


class ALabelTests(SynchronousTestCase):
    """
    One IDNA codec, the idna package's (UTS 46), for every domain that goes
    on the wire.
    """

    def test_aLabel(self) -> None:
        self.assertEqual(toALabel("b\u00fccher.test"), "xn--bcher-kva.test")
        self.assertEqual(toALabel("B\u00dcCHER.test."), "xn--bcher-kva.test")
        self.assertEqual(toALabel("Example.test."), "Example.test")

    def test_bad(self) -> None:
        for text in ["a..test", "x" * 64 + ".test", "\u2603\u0000.test", ""]:
            e = self.assertRaises(AddressError, toALabel, text)
            self.assertTrue(str(e).startswith("not a valid domain name ("), str(e))

    def test_wireAddress(self) -> None:
        self.assertEqual(
            wireAddress(MailAddress("u", "b\u00fccher.test")), "u@xn--bcher-kva.test"
        )
        self.assertEqual(wireAddress(MailAddress("u", "[127.0.0.1]")), "u@[127.0.0.1]")
        e = self.assertRaises(AddressError, wireAddress, MailAddress("u", "\u00fc..x"))
        self.assertTrue(str(e).startswith("u@\u00fc..x: not a valid domain name"))
