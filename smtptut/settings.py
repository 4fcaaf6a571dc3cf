"""One table of settings per side: variable, option, default, parser and help, read one way."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """
    A setting is wrong: C{str(error)} is one line, C{"SETTING: reason"}, naming
    the setting as the user gave it (C{--to} on a command line, C{SMTPTUT_TO}
    in the environment).
    """

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason

    def renamed(self, setting: str) -> ConfigError:
        """
        The same error, naming C{setting} instead.
        """
        return ConfigError(setting, self.reason)


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
        text = text.strip()
        if not text:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(text)
        except ConfigError as e:
            raise e.renamed(label) from None
        except ValueError as e:
            raise ConfigError(label, str(e)) from None
    return values


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
