"""Exit statuses (sysexits.h) and one-line reports of a user's mistakes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from smtptut.config import ConfigError
from smtptut.message import MessageError
from smtptut.settings import ConfigError as SettingError  # DKIM wiring (issue 12)

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_TEMPFAIL = 75

T = TypeVar("T")


def exitStatusFor(error: Exception) -> int:
    """
    The sysexits status for a bad setting or a bad message.
    """
    if isinstance(error, MessageError):
        return EX_NOINPUT if error.missing else EX_DATAERR
    # DKIM wiring (issue 12): a key file that cannot be read is 66
    # (smtptut.dkim.KeyFileError).
    return int(getattr(error, "exitStatus", EX_USAGE))


def exitOnBadInput(program: str, load: Callable[[], T]) -> T:
    """
    Call C{load}; on a bad setting or message, print one line naming what is
    wrong to standard error and exit with the matching status, no traceback.
    """
    try:
        return load()
    except (ConfigError, SettingError, MessageError) as e:  # DKIM wiring: SettingError
        print(f"{program}: {e}", file=sys.stderr)
        raise SystemExit(exitStatusFor(e)) from None
