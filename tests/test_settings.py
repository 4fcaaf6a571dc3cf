"""Tests for smtptut.settings: one table drives the environment, argparse and twistd."""

import argparse
import contextlib
import functools
import io
import os

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
    parseAs,
    parseEndpoint,
    parseFlag,
    parseHostPort,
    parseNameserver,
    parsePort,
    parsePositiveInt,
    parseReadableFile,
    parseSeconds,
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


class ParserTests(SynchronousTestCase):
    """
    The value parsers: text in, value out, or a ValueError whose text is the
    reason without a setting's name.
    """

    def assertReason(self, reason: str, parse: object, text: str) -> None:
        e = self.assertRaises(ValueError, parse, text)
        self.assertNotIsInstance(e, ConfigError)
        self.assertEqual(str(e), reason)

    def test_nameserver(self) -> None:
        self.assertEqual(parseNameserver("127.0.0.1"), ("127.0.0.1", 53))
        self.assertEqual(parseNameserver("127.0.0.1:5353"), ("127.0.0.1", 5353))
        self.assertEqual(parseNameserver("[::1]:5353"), ("::1", 5353))
        self.assertEqual(parseNameserver("::1"), ("::1", 53))
        self.assertReason(
            "'localhost' is not an IP address (give the DNS server's address,"
            " not its name)",
            parseNameserver,
            "localhost:53",
        )

    def test_hostPort(self) -> None:
        self.assertEqual(parseHostPort("127.0.0.1", 53), ("127.0.0.1", 53))
        self.assertEqual(parseHostPort("127.0.0.1:5353", 53), ("127.0.0.1", 5353))
        self.assertEqual(parseHostPort("[::1]:5353", 53), ("::1", 5353))
        self.assertEqual(parseHostPort("::1", 53), ("::1", 53))
        self.assertReason(
            "':25' has no host", functools.partial(parseHostPort, defaultPort=25), ":25"
        )
        self.assertReason(
            "'[::1]x' is not HOST[:PORT]",
            functools.partial(parseHostPort, defaultPort=25),
            "[::1]x",
        )

    def test_badPort(self) -> None:
        relay = functools.partial(parseHostPort, defaultPort=53)
        e = self.assertRaises(ConfigError, parseAs, "SMTPTUT_RELAY", relay, "h:99999")
        self.assertEqual(str(e), "SMTPTUT_RELAY: port 99999 is out of range 1-65535")
        self.assertEqual(parsePort("2525"), 2525)
        self.assertReason("'smtp' is not a port number", parsePort, "smtp")
        self.assertReason("port 0 is out of range 1-65535", parsePort, "0")

    def test_seconds(self) -> None:
        self.assertEqual(parseSeconds("2.5"), 2.5)
        self.assertEqual(parseSeconds("86400", 86400), 86400.0)
        self.assertReason("'soon' is not a number of seconds", parseSeconds, "soon")
        self.assertReason("the timeout must be more than 0 seconds", parseSeconds, "0")
        self.assertReason(
            "the timeout must be more than 0 seconds", parseSeconds, "nan"
        )
        day = functools.partial(parseSeconds, maximum=86400.0)
        self.assertReason("'inf' is more than 86400 seconds", day, "inf")

    def test_positiveInt(self) -> None:
        self.assertEqual(parsePositiveInt("7"), 7)
        self.assertReason("'many' is not a whole number", parsePositiveInt, "many")
        self.assertReason("0 is not at least 1", parsePositiveInt, "0")
        ten = functools.partial(parsePositiveInt, maximum=10)
        self.assertReason("11 is more than 10", ten, "11")

    def test_flag(self) -> None:
        for text in ["1", "yes", "TRUE", "on"]:
            self.assertIs(parseFlag(text), True)
        for text in ["0", "no", "False", "off"]:
            self.assertIs(parseFlag(text), False)
        self.assertReason("'maybe' is not 1 or 0", parseFlag, "Maybe")

    def test_readableFile(self) -> None:
        path = self.mktemp()
        self.assertReason(f"{path}: no such file", parseReadableFile, path)
        with open(path, "w") as f:
            f.write("x")
        self.assertEqual(parseReadableFile(path), path)
        if os.getuid() != 0:
            os.chmod(path, 0)
            self.assertReason(f"{path}: not readable", parseReadableFile, path)

    def test_endpoint(self) -> None:
        self.assertEqual(
            parseEndpoint("tcp:2525:interface=127.0.0.1"),
            "tcp:2525:interface=127.0.0.1",
        )
        self.assertReason(
            "'tcp:70000' is not a server endpoint (port 70000 is out of range 0-65535)",
            parseEndpoint,
            "tcp:70000",
        )
        e = self.assertRaises(ValueError, parseEndpoint, "nonsense:1")
        self.assertTrue(str(e).startswith("'nonsense:1' is not a server endpoint ("))
