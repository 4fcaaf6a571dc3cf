"""Exit statuses (sysexits.h) and one-line reports of a user's mistakes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from smtptut.settings import ConfigError

# The names the project uses, as the os module gives them (POSIX only,
# as Twisted's process handling is here).
EX_OK = os.EX_OK
EX_USAGE = os.EX_USAGE
EX_DATAERR = os.EX_DATAERR
EX_NOINPUT = os.EX_NOINPUT
EX_NOUSER = os.EX_NOUSER
EX_UNAVAILABLE = os.EX_UNAVAILABLE
EX_SOFTWARE = os.EX_SOFTWARE
EX_OSERR = os.EX_OSERR
EX_CANTCREAT = os.EX_CANTCREAT
EX_TEMPFAIL = os.EX_TEMPFAIL

T = TypeVar("T")


class MessageError(Exception):
    """
    The message cannot be sent as it is; the text is one line saying why.

    @ivar missing: C{True} when the message file could not be opened at all.
    """

    def __init__(self, text: str, missing: bool = False) -> None:
        super().__init__(text)
        self.missing = missing


def exitStatusFor(error: Exception) -> int:
    """
    The sysexits status for a bad setting or a bad message.
    """
    if isinstance(error, MessageError):
        return EX_NOINPUT if error.missing else EX_DATAERR
    if isinstance(error, ConfigError) and error.missing:
        return EX_NOINPUT
    return EX_USAGE


def exitOnBadInput(program: str, load: Callable[[], T]) -> T:
    """
    Call C{load}; on a bad setting or message, print one line naming what is
    wrong to standard error and exit with the matching status, no traceback.
    """
    try:
        return load()
    except (ConfigError, MessageError) as e:
        print(f"{program}: {e}", file=sys.stderr)
        raise SystemExit(exitStatusFor(e)) from None
