"""Tests for smtptut.config: settings from the environment and their errors."""

import socket

from twisted.trial.unittest import SynchronousTestCase

from smtptut import config
from smtptut.client import SMTPClientFactory
from smtptut.config import (
    AcceptPolicy,
    ClientSettings,
    ConfigError,
    ServerSettings,
    checkHostName,
    isLoopbackAddress,
    localFQDN,
    parseAddress,
    parseHostPort,
    parseNameserver,
)
from smtptut.sending import checkCredentials


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
            self.assertEqual(checkHostName(text, "SMTPTUT_HELO"), sent)
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
        self.assertRaises(ConfigError, SMTPClientFactory, [], identity="x.test\r\nRSET")

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
        self.patch(config, "HOSTS_FILE", hosts)
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
        self.patch(config, "HOSTS_FILE", self.mktemp())
        self.patch(socket, "gethostname", lambda: "box")
        self.addCleanup(localFQDN.cache_clear)
        localFQDN.cache_clear()
        self.assertIsNone(localFQDN())


class AuthRouteTests(SynchronousTestCase):
    """
    Where a login may go (issue 9): to the relay only, over verified TLS
    unless the relay is on loopback or the user opts in.
    """

    def settings(self, **env: str) -> ClientSettings:
        base = {"SMTPTUT_USER": "me", "SMTPTUT_PASSWORD": "pw"}
        base.update(env)
        return ClientSettings.fromEnvironment(base)

    def test_allowed(self) -> None:
        for env in [
            {"SMTPTUT_RELAY": "smtp.example.org:587", "SMTPTUT_TLS": "verify"},
            {"SMTPTUT_RELAY": "127.0.0.1:2525"},
            {"SMTPTUT_RELAY": "[::1]:2525", "SMTPTUT_TLS": "off"},
            {"SMTPTUT_RELAY": "localhost"},
            {
                "SMTPTUT_RELAY": "smtp.example.org:587",
                "SMTPTUT_TLS": "encrypt",
                "SMTPTUT_INSECURE_AUTH": "1",
            },
        ]:
            checkCredentials(self.settings(**env))

    def test_refused(self) -> None:
        for env, start in [
            ({}, "SMTPTUT_USER: a login is only for a relay"),
            ({"SMTPTUT_RELAY": "smtp.example.org"}, "SMTPTUT_USER: a login needs"),
            (
                {"SMTPTUT_RELAY": "smtp.example.org", "SMTPTUT_TLS": "encrypt"},
                "SMTPTUT_USER: a login needs SMTPTUT_TLS=verify, not encrypt",
            ),
            (
                {"SMTPTUT_RELAY": "192.0.2.1", "SMTPTUT_INSECURE_AUTH": "1"},
                "SMTPTUT_INSECURE_AUTH: only with SMTPTUT_TLS=encrypt",
            ),
        ]:
            e = self.assertRaises(ConfigError, checkCredentials, self.settings(**env))
            self.assertTrue(str(e).startswith(start), str(e))

    def test_cliOptIn(self) -> None:
        from smtptut import cli

        args = cli.sendParser().parse_args(
            ["--to", "a@b.test", "--relay", "smtp.example.org:587", "--user", "me"]
            + ["--tls", "encrypt", "--insecure-auth"]
        )
        settings = cli.settingsFrom(args, {"SMTPTUT_PASSWORD": "pw"})
        self.assertTrue(settings.insecureAuth)
        args = cli.sendParser().parse_args(
            ["--to", "a@b.test", "--relay", "smtp.example.org:587", "--user", "me"]
        )
        e = self.assertRaises(
            ConfigError, cli.settingsFrom, args, {"SMTPTUT_PASSWORD": "pw"}
        )
        self.assertTrue(str(e).startswith("--user: a login needs"), str(e))


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
