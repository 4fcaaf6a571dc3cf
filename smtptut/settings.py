"""One table of settings per side: variable, option, default, parser and help, read one way."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from twisted.internet.endpoints import serverFromString

T = TypeVar("T")
S = TypeVar("S")


class ConfigError(ValueError):
    """
    A setting is wrong: C{str(error)} is one line, C{"SETTING: reason"}, naming
    the setting as the user gave it (C{--to} on a command line, C{SMTPTUT_TO}
    in the environment).

    @ivar missing: C{True} when a file the setting names cannot be read at
        all (exit 66, as for a message file; a DKIM key file).
    """

    def __init__(self, setting: str, reason: str, missing: bool = False) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason
        self.missing = missing

    def renamed(self, setting: str) -> ConfigError:
        """
        The same error, naming C{setting} instead.
        """
        return ConfigError(setting, self.reason, self.missing)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """
    One row of a settings table.

    @ivar name: the field of the settings object it fills.
    @ivar variable: its C{SMTPTUT_*} environment variable.
    @ivar parse: turns the (stripped, non-empty) text into the value, or
        raises L{ValueError} whose text is the reason (a L{ConfigError} is
        renamed to the setting as given).
    @ivar default: the value when the setting is not given, or given empty.
    @ivar defaultText: the default as README and C{--help} show it.
    @ivar option: the long option, C{--max-size} for C{SMTPTUT_MAX_SIZE}
        unless named here; L{None} in L{NO_OPTION} for a secret.
    @ivar multiple: the option may be repeated; its values are joined with
        commas, as the variable holds them.
    @ivar flag: the option takes no value: given, it stands for C{1}.
    @ivar strip: the text is stripped before it is parsed; C{False} where
        spaces are part of the value (a password) or must be refused (an
        EHLO name), not hidden.
    """

    name: str
    variable: str
    parse: Callable[[str], T]
    default: T
    help: str
    defaultText: str = "none"
    metavar: str = "VALUE"
    option: str = ""
    multiple: bool = False
    flag: bool = False
    strip: bool = True

    @property
    def optionName(self) -> str:
        """
        The long option without its dashes (C{max-size}), or C{""} for none.
        """
        if self.option == NO_OPTION:
            return ""
        if self.option:
            return self.option.removeprefix("--")
        return self.variable.removeprefix("SMTPTUT_").lower().replace("_", "-")


#: L{Setting.option} for a setting that is never an option (a password).
NO_OPTION = "-"


def readSettings(
    table: Sequence[Setting[Any]],
    environ: Mapping[str, str],
    options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """
    The value of every setting in C{table}, by L{Setting.name}: from
    C{options} (text by variable, as given on a command line), else from
    C{environ}, else the default.

    @raise ConfigError: naming the option or the variable the bad text came
        from.
    """
    options = options or {}
    values: dict[str, Any] = {}
    for setting in table:
        if setting.variable in options:
            text, label = options[setting.variable], "--" + setting.optionName
        else:
            text, label = environ.get(setting.variable, ""), setting.variable
        if setting.strip:
            text = text.strip()
        if not text:
            values[setting.name] = setting.default
            continue
        values[setting.name] = parseAs(label, setting.parse, text)
    return values


def parseAs(setting: str, parse: Callable[[S], T], text: S) -> T:
    """
    C{parse(text)}, its L{ValueError} (a L{ConfigError} included) raised as
    a L{ConfigError} naming C{setting}.
    """
    try:
        return parse(text)
    except ConfigError as e:
        raise e.renamed(setting) from None
    except ValueError as e:
        raise ConfigError(setting, str(e)) from None


def labels(
    table: Sequence[Setting[Any]], options: Mapping[str, str] | None = None
) -> dict[str, str]:
    """
    For checks across settings: each variable's name as the user gave it.
    """
    options = options or {}
    return {
        s.variable: ("--" + s.optionName) if s.variable in options else s.variable
        for s in table
    }


def addArguments(
    parser: argparse.ArgumentParser, table: Iterable[Setting[Any]]
) -> None:
    """
    An argparse option for every setting that has one (C{dest} is the variable).
    """
    for setting in table:
        if not setting.optionName:
            continue
        if setting.flag:
            parser.add_argument(
                "--" + setting.optionName,
                dest=setting.variable,
                action="store_const",
                const="1",
                help=f"{setting.help} [{setting.variable}=1]",
            )
            continue
        parser.add_argument(
            "--" + setting.optionName,
            dest=setting.variable,
            metavar=setting.metavar,
            action="append" if setting.multiple else "store",
            help=f"{setting.help} [{setting.variable}; default: {setting.defaultText}]",
        )


def givenOptions(
    namespace: argparse.Namespace, table: Iterable[Setting[Any]]
) -> dict[str, str]:
    """
    The options given on a command line parsed by L{addArguments}, as text by
    variable (repeated ones joined with commas).
    """
    given: dict[str, str] = {}
    for setting in table:
        value = getattr(namespace, setting.variable, None)
        if value is not None:
            given[setting.variable] = ",".join(value) if setting.multiple else value
    return given


def optParameters(table: Iterable[Setting[Any]]) -> list[list[Any]]:
    """
    C{usage.Options.optParameters} for a table: one option per setting,
    no default (so that an option not given leaves the variable in force).
    """
    return [
        [
            setting.optionName,
            None,
            None,
            f"{setting.help} [{setting.variable}, default: {setting.defaultText}]",
        ]
        for setting in table
        if setting.optionName
    ]


# The value parsers: each takes the text of a setting and returns its value,
# or raises ValueError whose text is the reason (the setting is named by
# readSettings or parseAs).


def parsePort(text: str) -> int:
    """
    A TCP port number, 1 to 65535.
    """
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def parseHostPort(text: str, defaultPort: int) -> tuple[str, int]:
    """
    C{HOST}, C{HOST:PORT}, C{[V6]} or C{[V6]:PORT}, with C{defaultPort} when
    none is given (C{functools.partial(parseHostPort, defaultPort=25)} for a
    table).
    """
    text = text.strip()
    if not text:
        raise ValueError("empty host")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        portText = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not HOST[:PORT]")
    elif text.count(":") == 1:
        host, _, portText = text.partition(":")
    else:
        # A bare IPv6 address has several colons and no port.
        host, portText = text, ""
    port = parsePort(portText) if portText else defaultPort
    if not host:
        raise ValueError(f"{text!r} has no host")
    return host, port


def parseNameserver(text: str) -> tuple[str, int]:
    """
    C{IP}, C{IP:PORT}, C{[IPV6]} or C{[IPV6]:PORT}: a DNS server is given by
    address (as in resolv.conf), since finding it by name would need DNS
    already.
    """
    host, port = parseHostPort(text, 53)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IP address (give the DNS server's address,"
            " not its name)"
        ) from None
    return str(address), port


def parseSeconds(text: str, maximum: float | None = None) -> float:
    """
    A positive number of seconds, at most C{maximum} when given.
    """
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError("the timeout must be more than 0 seconds")
    if maximum is not None and not seconds <= maximum:
        # inf included: a timer that never fires holds a slot forever.
        raise ValueError(f"{text!r} is more than {maximum:g} seconds")
    return seconds


def parsePositiveInt(text: str, maximum: int | None = None) -> int:
    """
    A whole number, at least 1 and at most C{maximum} when given.
    """
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{value} is not at least 1")
    if maximum is not None and value > maximum:
        raise ValueError(f"{text} is more than {maximum}")
    return value


def parseFlag(text: str) -> bool:
    """
    C{1}, C{yes}, C{true}, C{on} or C{0}, C{no}, C{false}, C{off}.
    """
    text = text.strip().lower()
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"{text!r} is not 1 or 0")


def parseReadableFile(text: str) -> str:
    """
    The path of a file this process can read.
    """
    if not os.path.isfile(text):
        raise ValueError(f"{text}: no such file")
    if not os.access(text, os.R_OK):
        raise ValueError(f"{text}: not readable")
    return text


def parseEndpoint(text: str) -> str:
    """
    A Twisted server endpoint string that Twisted can parse (its port
    number, files and so on included), as given.
    """
    try:
        # Parsing builds the endpoint without listening: no reactor needed yet.
        endpoint = serverFromString(None, text)
    except Exception as e:
        reason = " ".join(str(e).split()) or e.__class__.__name__
        raise ValueError(f"{text!r} is not a server endpoint ({reason})") from None
    # Twisted takes any integer as a TCP port and fails only when listening
    # (an OSError, exit 71): a port out of range is the user's mistake.
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ValueError(
            f"{text!r} is not a server endpoint (port {port} is out of range 0-65535)"
        )
    return text
