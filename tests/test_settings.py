"""Tests for smtptut.settings: one table drives the environment, argparse and twistd."""

import argparse
import contextlib
import io

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from smtptut.settings import (
    NO_OPTION,
    ConfigError,
    Setting,
    addArguments,
    givenOptions,
    labels,
    optParameters,
    readSettings,
)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not at least 1")
    return value


def _upper(text: str) -> str:
    if " " in text:
        raise ConfigError("ignored", f"{text!r} contains spaces")
    return text.upper()


TABLE = (
    Setting("count", "SMTPTUT_COUNT", _count, 3, "how many", "3", "N"),
    Setting("names", "SMTPTUT_NAMES", _upper, "", "names", multiple=True),
    Setting("secret", "SMTPTUT_SECRET", str, None, "a secret", option=NO_OPTION),
    Setting("port", "SMTPTUT_PORT", int, 25, "the port", option="--server-port"),
)


class ReadTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        A setting not given, or given empty or blank, has its default.
        """
        self.assertEqual(
            readSettings(TABLE, {"SMTPTUT_COUNT": "  "}),
            {"count": 3, "names": "", "secret": None, "port": 25},
        )

    def test_optionWinsOverVariable(self) -> None:
        values = readSettings(
            TABLE, {"SMTPTUT_COUNT": "5", "SMTPTUT_NAMES": "a"}, {"SMTPTUT_COUNT": "7"}
        )
        self.assertEqual((values["count"], values["names"]), (7, "A"))

    def test_errorNamesTheVariable(self) -> None:
        e = self.assertRaises(ConfigError, readSettings, TABLE, {"SMTPTUT_COUNT": "0"})
        self.assertEqual(str(e), "SMTPTUT_COUNT: 0 is not at least 1")
        self.assertEqual(
            (e.setting, e.reason), ("SMTPTUT_COUNT", "0 is not at least 1")
        )

    def test_errorNamesTheOption(self) -> None:
        """
        A bad value given as an option is reported by the option's name, a
        L{ConfigError} from a parser included: no text is split to rename it.
        """
        e = self.assertRaises(
            ConfigError, readSettings, TABLE, {}, {"SMTPTUT_NAMES": "a b"}
        )
        self.assertEqual(str(e), "--names: 'a b' contains spaces")
        e = self.assertRaises(
            ConfigError, readSettings, TABLE, {}, {"SMTPTUT_PORT": "x"}
        )
        self.assertTrue(str(e).startswith("--server-port: "), str(e))

    def test_labels(self) -> None:
        self.assertEqual(
            labels(TABLE, {"SMTPTUT_PORT": "1"}),
            {
                "SMTPTUT_COUNT": "SMTPTUT_COUNT",
                "SMTPTUT_NAMES": "SMTPTUT_NAMES",
                "SMTPTUT_SECRET": "SMTPTUT_SECRET",
                "SMTPTUT_PORT": "--server-port",
            },
        )


class GeneratedOptionsTests(SynchronousTestCase):
    def test_argparse(self) -> None:
        """
        argparse gets one option per setting that has one; repeated options
        are joined as the variable would hold them; a secret has none.
        """
        parser = argparse.ArgumentParser()
        addArguments(parser, TABLE)
        args = parser.parse_args(["--names", "a", "--names", "b", "--count", "2"])
        self.assertEqual(
            givenOptions(args, TABLE), {"SMTPTUT_NAMES": "a,b", "SMTPTUT_COUNT": "2"}
        )
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertRaises(SystemExit, parser.parse_args, ["--secret", "x"])
        self.assertIn("[SMTPTUT_COUNT; default: 3]", parser.format_help())

    def test_twistdOptions(self) -> None:
        class Options(usage.Options):
            optParameters = optParameters(TABLE)

        options = Options()
        options.parseOptions(["--server-port", "2525"])
        self.assertEqual((options["server-port"], options["count"]), ("2525", None))
        self.assertRaises(usage.UsageError, options.parseOptions, ["--secret", "x"])
