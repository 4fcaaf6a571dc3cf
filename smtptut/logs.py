"""A cheap log observer for twistd: text or JSON lines, buffered per reactor turn."""

from __future__ import annotations

import enum
import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from twisted.logger import (
    ILogObserver,
    LogEvent,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python import threadable
from zope.interface import implementer


class LogFormat(enum.Enum):
    """
    How each event is written: C{text}, twistd's own line (C{TIMESTAMP
    [NAMESPACE#LEVEL] TEXT}), or C{json}, one flat JSON object a line.
    """

    TEXT = "text"
    JSON = "json"

    @classmethod
    def parse(cls, text: str) -> LogFormat:
        """
        C{text} or C{json}, any case.
        """
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"{text!r} is not text or json") from None


class LogReactor(Protocol):
    """
    What the observer uses of a reactor (L{IReactorCore} and
    L{IReactorTime}'s C{callLater}).
    """

    running: bool

    def callLater(self, delay: float, f: Callable[..., object], /) -> object: ...

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., object], /
    ) -> object: ...


class _Stream(Protocol):
    def write(self, data: str, /) -> object: ...

    def flush(self) -> object: ...


@implementer(ILogObserver)
class BufferedLogObserver:
    """
    Formats each event as twistd's text observer does (or as a JSON object)
    and writes whole lines into a buffer that goes to C{stream} in one write
    once per reactor turn; timestamps are formatted once a second.

    Nothing waits when waiting could lose it: events before the reactor
    runs and after it stopped (twistd's last lines), failures (with their
    tracebacks) and events from other threads are written at once, after
    whatever the buffer holds, so lines keep their order; and the buffer is
    written when the reactor has shut down (after twistd's services have
    stopped, before twistd removes the observer).
    """

    def __init__(
        self,
        stream: _Stream,
        reactor: LogReactor,
        logFormat: LogFormat = LogFormat.TEXT,
    ) -> None:
        self._stream = stream
        self._reactor = reactor
        self._format = self._json if logFormat is LogFormat.JSON else self._text
        self._lines: list[str] = []
        # Reentrant: a write that fails may log, and that comes back here.
        self._lock = threading.RLock()
        self._scheduled = False
        #: The last whole second formatted, and its text: (second, text).
        self._stamp: tuple[int, str] = (-1, "")
        self._isoStamp: tuple[int, str] = (-1, "")
        reactor.addSystemEventTrigger("after", "shutdown", self.flush)

    def __call__(self, event: LogEvent) -> None:
        text = self._format(event)
        if text is None:
            return
        with self._lock:
            self._lines.append(text)
            if (
                self._reactor.running
                and "log_failure" not in event
                and threadable.isInIOThread()
            ):
                if not self._scheduled:
                    self._scheduled = True
                    self._reactor.callLater(0, self._turnEnded)
                return
            self._write()

    def flush(self) -> None:
        """
        Write what the buffer holds now.
        """
        with self._lock:
            self._write()

    def _turnEnded(self) -> None:
        with self._lock:
            self._scheduled = False
            self._write()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines = []
        try:
            self._stream.write(text)
            self._stream.flush()
        except OSError as e:
            # A full disk or a closed pipe: logging it would come back here.
            stderr = sys.__stderr__
            if stderr is not None:
                print(f"cannot write the log: {e}", file=stderr, flush=True)

    def _time(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when)
        cached, text = self._stamp
        if second != cached:
            # The format has no fraction: the second's text is every
            # instant's in it (and the local offset is read once a second).
            text = formatTime(second, timeFormatRFC3339)
            self._stamp = (second, text)
        return text

    def _text(self, event: LogEvent) -> str | None:
        if "log_failure" in event:
            # Twisted's own, traceback included.
            return formatEventAsClassicLogText(event, self._time)
        text = _wholeField(event)
        if text is None:
            text = formatEvent(event)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            namespace = event.get("log_namespace", "-")
            system = f"{namespace}#{level.name if level is not None else '-'}"
        stamp = self._time(event.get("log_time"))
        # As formatEventAsClassicLogText: continuation lines are indented.
        return f"{stamp} [{system}] {text}\n".replace("\n", "\n\t", text.count("\n"))

    def _isoTime(self, when: float) -> str:
        second = int(when)
        cached, text = self._isoStamp
        if second != cached:
            # UTC, whatever the local zone: what log shippers parse first.
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._isoStamp = (second, text)
        return f"{text}.{int((when - second) * 1000):03d}Z"

    def _json(self, event: LogEvent) -> str | None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": self._isoTime(event.get("log_time") or 0.0),
            "level": level.name if level is not None else "-",
            "namespace": event.get("log_namespace", "-"),
            "text": _wholeField(event) or formatEvent(event),
        }
        if "log_system" in event:
            record["system"] = str(event["log_system"])
        failure = event.get("log_failure")
        if failure is not None:
            try:
                record["traceback"] = failure.getTraceback()
            except Exception:
                record["traceback"] = "(UNABLE TO OBTAIN TRACEBACK FROM EVENT)"
        # The event's own fields, plain values only, but not one that is the
        # whole text again ("{transaction}"); the keys above win.
        format = event.get("log_format")
        whole = format[1:-1] if type(format) is str else None
        record.update(
            {
                key: value
                for key, value in event.items()
                if type(value) in _PLAIN
                and key[:4] != "log_"
                and key not in record
                and key != whole
            }
        )
        return json.dumps(record) + "\n"


_PLAIN = frozenset((str, int, float, bool, type(None)))


def _wholeField(event: LogEvent) -> str | None:
    """
    The event's text when its format is one field holding text, as the
    transaction line's C{"{transaction}"} (what C{formatEvent} would make
    of it, without a C{string.Formatter}); else L{None}.
    """
    format = event.get("log_format")
    if (
        type(format) is str
        and format.startswith("{")
        and format.endswith("}")
        and "log_flattened" not in event
    ):
        value = event.get(format[1:-1])
        if type(value) is str:
            return value
    return None
