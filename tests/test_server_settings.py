"""The server's settings: SERVER_SETTINGS, ServerSettings, AcceptPolicy, and README's table of them."""

from twisted.trial.unittest import SynchronousTestCase

from smtptut.server.settings import SERVER_SETTINGS, AcceptPolicy, ServerSettings
from smtptut.settings import ConfigError

from .helpers import readmeSettingsTable


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


class ServerSettingsTests(SynchronousTestCase):
    def test_optionsNameTheOption(self) -> None:
        e = self.assertRaises(
            ConfigError,
            ServerSettings.fromEnvironment,
            {"SMTPTUT_MAX_SIZE": "1"},
            {"SMTPTUT_MAX_ERRORS": "none"},
        )
        self.assertEqual(str(e), "--max-errors: 'none' is not a whole number")

    def test_keyWithoutCertificate(self) -> None:
        key = __file__
        e = self.assertRaises(
            ConfigError, ServerSettings.fromEnvironment, {"SMTPTUT_TLS_KEY": key}
        )
        self.assertEqual(str(e), "SMTPTUT_TLS_KEY: given without SMTPTUT_TLS_CERT")
        e = self.assertRaises(
            ConfigError, ServerSettings.fromEnvironment, {}, {"SMTPTUT_TLS_KEY": key}
        )
        self.assertEqual(str(e), "--tls-key: given without SMTPTUT_TLS_CERT")

    def test_keyDefaultsToTheCertificate(self) -> None:
        settings = ServerSettings.fromEnvironment({"SMTPTUT_TLS_CERT": __file__})
        self.assertEqual(settings.tlsKey, __file__)

    def test_tableFillsEveryField(self) -> None:
        # One row per field of ServerSettings, and its default the field's.
        fields = ServerSettings.__dataclass_fields__
        self.assertEqual(sorted(s.name for s in SERVER_SETTINGS), sorted(fields))
        defaults = ServerSettings()
        for setting in SERVER_SETTINGS:
            self.assertEqual(getattr(defaults, setting.name), setting.default)


class ReadmeTableTests(SynchronousTestCase):
    def test_readmeServerTableIsTheTable(self) -> None:
        # README's server table lists every setting, in the table's order,
        # with its option and default as --help shows them.
        rows = readmeSettingsTable("Server (")
        self.assertEqual(
            [row["variable"] for row in rows], [s.variable for s in SERVER_SETTINGS]
        )
        for row, setting in zip(rows, SERVER_SETTINGS, strict=True):
            self.assertEqual(row["option"], "--" + setting.optionName, row)
            self.assertEqual(row["default"], setting.defaultText, row)
