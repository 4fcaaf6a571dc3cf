"""The queue's settings table (C{SMTPTUT_QUEUE*}) and L{QueueSettings}."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smtptut.queue.schedule import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_RETRY,
    DEFAULT_RETRY,
    Schedule,
)
from smtptut.settings import (
    ConfigError,
    Setting,
    labels,
    parsePositiveInt,
    readSettings,
)

#: Transactions in flight at once, over all domains.
DEFAULT_CONCURRENCY = 8

#: Transactions in flight at once to one domain (Postfix starts at 5 and
#: grows; two are polite to a greylisting or rate-limiting receiver).
DEFAULT_DOMAIN_CONCURRENCY = 2

#: The longest retry wait or maximum age taken: a year.
MAX_DURATION = 365 * 86400.0

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)", re.IGNORECASE)


def parseDuration(text: str) -> float:
    """
    A positive duration in seconds: C{300}, C{300s}, C{5m}, C{1h} or C{5d}
    (as Postfix writes its queue times), at most a year.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration (seconds, or a number with s, m, h or d)"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not seconds > 0:
        raise ValueError(f"{text!r} is not more than 0 seconds")
    if seconds > MAX_DURATION:
        raise ValueError(f"{text!r} is more than a year")
    return seconds


def parseQueueDirectory(text: str) -> str:
    """
    The queue's directory (made when missing): not an existing file.
    """
    path = os.path.abspath(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{text}: not a directory")
    return path


_count = functools.partial(parsePositiveInt, maximum=1000)

#: Every queue setting, for C{smtptut send --queue}, C{smtptut queue} and
#: C{twistd smtptut-queue} (and README's table).
QUEUE_SETTINGS: tuple[Setting[Any], ...] = (
    Setting(
        "directory",
        "SMTPTUT_QUEUE",
        parseQueueDirectory,
        None,
        "the queue directory (made when missing)",
        metavar="DIR",
    ),
    Setting(
        "retry",
        "SMTPTUT_QUEUE_RETRY",
        parseDuration,
        DEFAULT_RETRY,
        "the wait before the first retry of a deferred recipient; doubled"
        " after each failure",
        "5m",
        "DURATION",
    ),
    Setting(
        "maxRetry",
        "SMTPTUT_QUEUE_MAX_RETRY",
        parseDuration,
        DEFAULT_MAX_RETRY,
        "the longest wait between two retries",
        "1h",
        "DURATION",
    ),
    Setting(
        "maxAge",
        "SMTPTUT_QUEUE_MAX_AGE",
        parseDuration,
        DEFAULT_MAX_AGE,
        "how long a message is retried before the sender gets a failure notice (DSN)",
        "5d",
        "DURATION",
    ),
    Setting(
        "concurrency",
        "SMTPTUT_QUEUE_CONCURRENCY",
        _count,
        DEFAULT_CONCURRENCY,
        "transactions in flight at once, over all domains",
        str(DEFAULT_CONCURRENCY),
        "N",
    ),
    Setting(
        "domainConcurrency",
        "SMTPTUT_QUEUE_DOMAIN_CONCURRENCY",
        _count,
        DEFAULT_DOMAIN_CONCURRENCY,
        "transactions in flight at once to one recipient domain",
        str(DEFAULT_DOMAIN_CONCURRENCY),
        "N",
    ),
)


@dataclass(frozen=True)
class QueueSettings:
    """
    Where the queue is, its retry schedule and how much is delivered at once.

    @ivar directory: the queue's directory, or L{None} when none was given.
    """

    directory: str | None = None
    retry: float = DEFAULT_RETRY
    maxRetry: float = DEFAULT_MAX_RETRY
    maxAge: float = DEFAULT_MAX_AGE
    concurrency: int = DEFAULT_CONCURRENCY
    domainConcurrency: int = DEFAULT_DOMAIN_CONCURRENCY

    @property
    def schedule(self) -> Schedule:
        """
        The retry schedule these settings ask for.
        """
        return Schedule(self.retry, self.maxRetry, self.maxAge)

    def requireDirectory(self, setting: str = "SMTPTUT_QUEUE") -> str:
        """
        The queue directory; a L{ConfigError} naming C{setting} when none.
        """
        if self.directory is None:
            raise ConfigError(setting, "no queue directory given")
        return self.directory


def readQueueSettings(
    environ: Mapping[str, str], options: Mapping[str, str] | None = None
) -> QueueSettings:
    """
    The queue settings from C{options} (text by variable), else C{environ}.

    @raise ConfigError: naming the option or variable that is wrong.
    """
    settings = QueueSettings(**readSettings(QUEUE_SETTINGS, environ, options))
    named = labels(QUEUE_SETTINGS, options)
    if settings.retry > settings.maxRetry:
        raise ConfigError(
            named["SMTPTUT_QUEUE_RETRY"],
            f"{settings.retry:g} seconds is more than"
            f" {named['SMTPTUT_QUEUE_MAX_RETRY']} ({settings.maxRetry:g} seconds)",
        )
    return settings
