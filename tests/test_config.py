"""Tests for smtptut.config: settings from the environment and their errors."""

from twisted.trial.unittest import SynchronousTestCase

from smtptut.config import (
    AcceptPolicy,
    ClientSettings,
    ConfigError,
    ServerSettings,
    isLoopbackAddress,
    parseAddress,
    parseHostPort,
    parseNameserver,
)


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
        e = self.assertRaises(ConfigError, parseAddress, "console", "SMTPTUT_TO")
        self.assertIn("SMTPTUT_TO", str(e))
        self.assertIn("'console'", str(e))

    def test_badLiteral(self) -> None:
        self.assertRaises(ConfigError, parseAddress, "a@[not.an.ip]")

    def test_badDomain(self) -> None:
        self.assertRaises(ConfigError, parseAddress, "a@example..test")

    def test_twoAts(self) -> None:
        """
        An unquoted local part holds no C{@}: C{a@b@c} is refused, not taken
        as the mailbox C{a@b} at C{c}.
        """
        for text in ["a@b@c.test", "<a@b@c.test>", "@a@c.test"]:
            e = self.assertRaises(ConfigError, parseAddress, text, "SMTPTUT_TO")
            self.assertEqual(str(e), f"SMTPTUT_TO: {text!r} has more than one @")

    def test_quotedAt(self) -> None:
        address = parseAddress('"a@b"@c.test')
        self.assertEqual((address.local, address.domain), ('"a@b"', "c.test"))


class NameserverTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        self.assertEqual(parseNameserver("127.0.0.1", "X"), ("127.0.0.1", 53))
        self.assertEqual(parseNameserver("127.0.0.1:5353", "X"), ("127.0.0.1", 5353))
        self.assertEqual(parseNameserver("[::1]:5353", "X"), ("::1", 5353))
        self.assertEqual(parseNameserver("::1", "X"), ("::1", 53))

    def test_nameRefused(self) -> None:
        """
        A DNS server is given by address: a name is a one-line setting error,
        found without any lookup.
        """
        for text, host in [
            ("bad.invalid", "bad.invalid"),
            ("localhost:53", "localhost"),
            ("bad:host:x", "bad:host:x"),
        ]:
            e = self.assertRaises(
                ConfigError,
                ClientSettings.fromEnvironment,
                {"SMTPTUT_NAMESERVER": text},
            )
            self.assertEqual(
                str(e),
                f"SMTPTUT_NAMESERVER: {host!r} is not an IP address (give the DNS"
                " server's address, not its name)",
            )


class LoopbackTests(SynchronousTestCase):
    def test_isLoopbackAddress(self) -> None:
        for host in ["127.0.0.1", "127.9.9.9", "::1", "::1%lo"]:
            self.assertTrue(isLoopbackAddress(host), host)
        for host in ["192.0.2.25", "::", "2001:db8::1", "localhost", "", "x"]:
            self.assertFalse(isLoopbackAddress(host), host)


class HostPortTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parseHostPort("127.0.0.1", 53, "X"), ("127.0.0.1", 53))
        self.assertEqual(parseHostPort("127.0.0.1:5353", 53, "X"), ("127.0.0.1", 5353))
        self.assertEqual(parseHostPort("[::1]:5353", 53, "X"), ("::1", 5353))
        self.assertEqual(parseHostPort("::1", 53, "X"), ("::1", 53))

    def test_badPort(self) -> None:
        e = self.assertRaises(
            ConfigError, parseHostPort, "h:99999", 53, "SMTPTUT_RELAY"
        )
        self.assertIn("SMTPTUT_RELAY", str(e))


class ClientSettingsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        settings = ClientSettings.fromEnvironment({})
        self.assertEqual(settings.sender, "tutorial_sender@example.com")
        self.assertEqual(
            [str(r) for r in settings.recipients], ["tutorial_recipient@example.net"]
        )
        self.assertEqual(settings.port, 25)
        self.assertEqual(settings.nameservers, ())

    def test_everything(self) -> None:
        settings = ClientSettings.fromEnvironment(
            {
                "SMTPTUT_FROM": "me@here.test",
                "SMTPTUT_TO": "a@x.test, b@y.test,c@X.test",
                "SMTPTUT_PORT": "2525",
                "SMTPTUT_NAMESERVER": "127.0.0.1:5353,127.0.0.2",
                "SMTPTUT_HELO": "client.test",
            }
        )
        self.assertEqual(settings.port, 2525)
        self.assertEqual(settings.nameservers, (("127.0.0.1", 5353), ("127.0.0.2", 53)))
        self.assertEqual(settings.helo, "client.test")
        self.assertEqual(
            {d: [str(r) for r in rs] for d, rs in settings.domains().items()},
            {"x.test": ["a@x.test", "c@X.test"], "y.test": ["b@y.test"]},
        )

    def test_errorsNameTheSetting(self) -> None:
        for name, value in [
            ("SMTPTUT_TO", "nobody"),
            ("SMTPTUT_TO", " , "),
            ("SMTPTUT_FROM", "x"),
            ("SMTPTUT_PORT", "smtp"),
            ("SMTPTUT_PORT", "0"),
            ("SMTPTUT_NAMESERVER", "127.0.0.1:x"),
            ("SMTPTUT_NAMESERVER", "bad.invalid"),
            ("SMTPTUT_TO", "a@b@c.test"),
            ("SMTPTUT_TLS", "sometimes"),
            ("SMTPTUT_TIMEOUT", "-1"),
        ]:
            e = self.assertRaises(
                ConfigError, ClientSettings.fromEnvironment, {name: value}
            )
            self.assertTrue(str(e).startswith(name + ":"), str(e))
            self.assertNotIn("\n", str(e))

    def test_passwordNotInRepr(self) -> None:
        settings = ClientSettings.fromEnvironment({"SMTPTUT_PASSWORD": "s3cret"})
        self.assertNotIn("s3cret", repr(settings))


class AcceptPolicyTests(SynchronousTestCase):
    def test_tutorialRule(self) -> None:
        policy = AcceptPolicy()
        self.assertTrue(policy.accepts("console", "anything.test"))
        self.assertTrue(policy.accepts("Console", "x.test"))
        self.assertFalse(policy.accepts("someone", "x.test"))

    def test_patterns(self) -> None:
        policy = AcceptPolicy.parse("console, bob@b.test, @c.test")
        self.assertTrue(policy.accepts("bob", "B.test"))
        self.assertFalse(policy.accepts("bob", "c.tes"))
        self.assertTrue(policy.accepts("anyone", "c.test"))
        self.assertFalse(policy.accepts("anyone", "sub.c.test"))
        self.assertTrue(AcceptPolicy.parse("*").accepts("x", "y"))

    def test_badPatterns(self) -> None:
        self.assertRaises(ConfigError, AcceptPolicy.parse, "")
        self.assertRaises(ConfigError, AcceptPolicy.parse, "@")
        self.assertRaises(ConfigError, AcceptPolicy.parse, "a@")

    def test_serverDefaults(self) -> None:
        settings = ServerSettings.fromEnvironment({})
        self.assertEqual(settings.listen, "tcp:2525:interface=127.0.0.1")
        self.assertEqual(settings.accept, AcceptPolicy(("console",)))
