"""Installing smtptut's log observer under twistd, where twistd's own options say."""

from __future__ import annotations

import getopt
import signal
import sys
from collections.abc import Mapping
from types import FrameType
from typing import IO, Any, cast

from twisted.application import service
from twisted.logger import ILogObserver
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

from smtptut.logs import BufferedLogObserver, LogFormat, LogReactor

__all__ = ["LoggedService", "installLogObserver", "twistdLogStream"]


def _twistdCommandLine(argv: list[str]) -> dict[str, Any] | None:
    """
    The log options on twistd's command line C{argv} (a .tac is not told
    them): C{logfile}, C{logger}, C{syslog}, C{nodaemon}; L{None} when
    C{argv} is not twistd's running a .tac (C{-y}).
    """
    from twisted.scripts.twistd import ServerOptions

    # Its option tables, read the way it reads them; parsing with it would
    # run its handlers again (--reactor installs a reactor).
    options = ServerOptions()
    try:
        pairs, _ = getopt.getopt(argv, options.shortOpt, options.longOpt)
    except getopt.GetoptError:
        return None
    found: dict[str, Any] = {}
    tac = False
    for flag, value in pairs:
        name = flag.lstrip("-")
        name = options.synonyms.get(name, name)
        if name in ("logfile", "logger"):
            found[name] = value
        elif name in ("syslog", "nodaemon"):
            found[name] = True
        tac = tac or name == "python"
    return found if tac else None


def twistdLogStream(config: Mapping[str, Any]) -> IO[str] | LogFile | None:
    """
    Where twistd would write its log for its options C{config} (C{-l FILE},
    C{-l -}, standard output with C{-n}, else C{twistd.log}), or L{None}
    when the user chose another observer (C{--logger}, C{--syslog}) or a
    combination twistd refuses (a daemon logging to standard output).
    """
    logfile = config.get("logfile") or ""
    nodaemon = bool(config.get("nodaemon"))
    if config.get("logger") or config.get("syslog"):
        return None
    if logfile == "-":
        return sys.stdout if nodaemon else None
    if not logfile and nodaemon:
        return sys.stdout
    logFile = LogFile.fromFullPath(logfile or "twistd.log")
    # As twistd does for its own log file: SIGUSR1 rotates it, unless the
    # application handles the signal.
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: FrameType | None) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(logFile.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return logFile


def installLogObserver(
    application: Componentized,
    logFormat: LogFormat = LogFormat.TEXT,
    config: Mapping[str, Any] | None = None,
    reactor: LogReactor | None = None,
) -> BufferedLogObserver | None:
    """
    Make a L{BufferedLogObserver} twistd's log observer for C{application}
    (its L{ILogObserver} component), writing where twistd's options
    C{config} say (by default, twistd's command line); none when the
    user chose another observer, or the application has one.
    """
    if application.getComponent(ILogObserver, None) is not None:
        return None
    if config is None:
        # Not under twistd (a .tac loaded by a test): standard output.
        config = _twistdCommandLine(sys.argv[1:]) or {"nodaemon": True}
    stream = twistdLogStream(config)
    if stream is None:
        return None
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = cast(LogReactor, globalReactor)
    observer = BufferedLogObserver(stream, reactor, logFormat)
    application.setComponent(ILogObserver, observer)
    return observer


class LoggedService(service.MultiService):
    """
    A plugin's service that, when twistd puts it under its application,
    makes a L{BufferedLogObserver} the log observer (see
    L{installLogObserver}): a plugin's C{makeService} gets no application.
    """

    def __init__(
        self, config: Mapping[str, Any] | None, logFormat: LogFormat = LogFormat.TEXT
    ) -> None:
        super().__init__()
        self.config = config
        self.logFormat = logFormat

    def setServiceParent(self, parent: Any) -> None:
        if self.config is not None and isinstance(parent, Componentized):
            installLogObserver(parent, self.logFormat, self.config)
        super().setServiceParent(parent)
