"""Tests for smtptut.config: settings from the environment and their errors."""

from twisted.trial.unittest import SynchronousTestCase

from smtptut.config import ClientSettings
from smtptut.sending import checkCredentials
from smtptut.settings import ConfigError


class NameserverTests(SynchronousTestCase):
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
