"""Tests for smtptut.config: the server's settings from the environment and their errors."""

from twisted.trial.unittest import SynchronousTestCase

from smtptut.config import AcceptPolicy, ServerSettings
from smtptut.settings import ConfigError


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
