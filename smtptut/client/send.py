"""``smtptut send``: options generated from CLIENT_SETTINGS, one run, an exit status."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, BinaryIO, NoReturn, TextIO, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from smtptut.client.delivery import (
    deliverAll,
    envelopesByDomain,
    loadMessage,
    messageIdDomain,
    stopReactor,
)
from smtptut.client.dkim import signMessage
from smtptut.client.exchange import makeResolver
from smtptut.client.message import spooledMessage
from smtptut.client.model import Envelope, RecipientOutcome, Status
from smtptut.client.settings import (
    CLIENT_SETTINGS,
    ClientSettings,
    checkAuthRoute,
    checkTrust,
)
from smtptut.errors import (
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    MessageError,
    exitStatusFor,
)
from smtptut.settings import ConfigError, addArguments, givenOptions

log = Logger()

SEND_EPILOG = """\
Every option can also be set in the environment with the SMTPTUT_* variable
shown with it; an option wins over its variable.  The password is read only from
SMTPTUT_PASSWORD, or asked for on the terminal.  A login (--user) goes only to
the --relay, with --tls verify (or a loopback relay, or --tls encrypt
--insecure-auth).

Without --data, the tutorial's message is sent when standard input is a
terminal; otherwise smtptut send stops with status 64 (use --data - to send
standard input, which may hold at most 100 MiB).  Bcc: fields are removed.

One line per recipient says what happened to it: "delivered", "deferred" (a
4xx reply, a timeout, an unreachable server or DNS trouble: try again later)
or "bounced" (a 5xx reply, a domain that does not exist or takes no mail),
with the reply or cause and the exchange and address used.  With --json, one
JSON object per recipient instead (recipient, status, code, enhanced, reply,
notes, mx, address, tls, tls_verified, dkim, queue_id, attempts); with
--debug (or -vv), the SMTP session on standard error, AUTH hidden as ***.

exit status:
  0   every recipient was delivered
  75  at least one recipient was deferred (EX_TEMPFAIL)
  69  every failure is permanent: bounced (EX_UNAVAILABLE)
  64  bad usage or setting (EX_USAGE)
  65  the message cannot be sent as it is, or is empty (EX_DATAERR)
  66  the message file (or a DKIM key file) does not exist or is not a
      regular file (EX_NOINPUT)
  70  smtptut itself failed: a bug, please report it (EX_SOFTWARE)

examples:
  smtptut send --to console@localhost --port 2525
  smtptut send --from me@example.org --to you@example.net --data message.eml
  printf 'Subject: hi\\n\\nhello\\n' | smtptut send --to you@example.net --data -
  SMTPTUT_PASSWORD=... smtptut send --relay smtp.example.org:587 --tls verify \\
      --user me --to you@example.net --data message.eml
"""


class UsageError(Exception):
    """
    The command line is wrong; the text says how.
    """


class CommandParser(argparse.ArgumentParser):
    """
    An argument parser that raises L{UsageError} instead of exiting.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def sendParser() -> argparse.ArgumentParser:
    """
    The options of C{smtptut send}: one per row of L{CLIENT_SETTINGS}, and
    C{--verbose}.
    """
    parser = CommandParser(
        prog="smtptut send",
        description=(
            "Send one message to its recipients: each recipient domain's mail\n"
            "exchangers are looked up in DNS and tried in preference order\n"
            "(RFC 5321 section 5.1), or everything goes through --relay."
        ),
        epilog=SEND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    addArguments(parser, CLIENT_SETTINGS)
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log each connection attempt; twice (-vv), as --debug too",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the SMTP transcript on standard error (-> client, <- server;"
        " AUTH payloads and the password as ***)",
    )
    # -- queue wiring (issue 12): --queue DIR, --queue-only.  Imported here:
    # the queue builds on the client, not the other way round.
    from smtptut.queue.command import addQueueArguments

    addQueueArguments(parser)
    return parser


def settingsFrom(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> ClientSettings:
    """
    The settings: the environment's C{SMTPTUT_*}, overridden by the options;
    a bad one is reported by the name the user gave it.
    """
    options = givenOptions(args, CLIENT_SETTINGS)
    if "SMTPTUT_TO" not in options and not environ.get("SMTPTUT_TO", "").strip():
        # The tutorial's recipient is for the .tac: a command sends nowhere
        # it was not told to.
        raise ConfigError("--to", "no recipient given")
    if options.get("SMTPTUT_DATA", environ.get("SMTPTUT_DATA")) == "-":
        options["SMTPTUT_DATA"] = ""
    settings = ClientSettings.fromEnvironment(environ, options)
    checkTrust(settings)
    checkAuthRoute(settings)
    return settings


def askPassword(
    settings: ClientSettings,
    stdin: IO[str],
    prompt: Callable[[str], str] = getpass.getpass,
) -> ClientSettings:
    """
    With a user name and no password, ask for it on the terminal; refuse
    when there is no terminal to ask on.
    """
    if not settings.user:
        if settings.password:
            raise ConfigError("--user", "SMTPTUT_PASSWORD is set, but no user name")
        return settings
    if settings.password:
        return settings
    if not _isTerminal(stdin):
        raise ConfigError(
            "--user",
            "no password: set SMTPTUT_PASSWORD (standard input is not"
            " a terminal, so smtptut cannot ask for it)",
        )
    password = prompt(f"Password for {settings.user}: ")
    if not password:
        raise ConfigError("--user", "empty password")
    return replace(settings, password=password)


def outcomeStatus(outcomes: Sequence[RecipientOutcome]) -> int:
    """
    The exit status for a run: 0 when all were delivered, 75 when any was
    deferred, 69 when every failure is permanent.
    """
    if all(o.status is Status.DELIVERED for o in outcomes):
        return EX_OK
    if any(o.status is Status.DEFERRED for o in outcomes):
        return EX_TEMPFAIL
    return EX_UNAVAILABLE


def send(
    reactor: IReactorCore,
    settings: ClientSettings,
    envelopes: Mapping[str, Envelope],
    write: Callable[[str], object] = print,
) -> Deferred[int]:
    """
    Deliver C{envelopes} (see L{envelopesByDomain}), writing a line per
    recipient and the tutorial's C{Sent N messages}; fires with the exit
    status.
    """
    resolver = makeResolver(settings.nameservers, lifetime=settings.dnsLifetime)
    return deliverAll(reactor, settings, envelopes, resolver, write).addCallback(
        outcomeStatus
    )


def sendMain(
    argv: list[str],
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
) -> int:
    """
    C{smtptut send}: parse, check, deliver with the global reactor.
    """
    environ = os.environ if environ is None else environ
    stdin = sys.stdin if stdin is None else stdin
    try:
        args = sendParser().parse_args(argv)
    except UsageError as e:
        print(f"smtptut send: {e}", file=sys.stderr)
        print('Try "smtptut send --help".', file=sys.stderr)
        return EX_USAGE
    try:
        settings = askPassword(settingsFrom(args, environ), stdin)
        if args.debug or args.verbose >= 2:
            settings = replace(settings, debug=True)
        # -- queue wiring (issue 12): with --queue, the (signed) message is
        # queued first and the runner delivers it.
        from smtptut.queue.command import queueSending

        run = queueSending(args, environ, _run)
        dataSetting = args.SMTPTUT_DATA or environ.get("SMTPTUT_DATA")
        if dataSetting is None and not _isTerminal(stdin):
            # Piped input would otherwise be ignored, and the tutorial's
            # message sent in its place to real recipients.
            raise ConfigError(
                "--data",
                "not given, and standard input is not a terminal:"
                " give --data - to send standard input, or --data FILE",
            )
        if dataSetting == "-":
            if getattr(stdin, "buffer", None) is None:
                raise ConfigError("--data", "standard input is closed")
            stdinBytes = cast(BinaryIO, stdin.buffer)
            idDomain = messageIdDomain(settings)
            with spooledMessage("standard input", stdinBytes, idDomain) as message:
                # A bad address fails here, before the reactor runs; the
                # message is signed (read once more, streaming) before.
                signed = signMessage(message, settings.dkim, _clock())
                envelopes = envelopesByDomain(settings, signed)
                return run(settings, envelopes, args.verbose)
        signed = signMessage(loadMessage(settings), settings.dkim, _clock())
        envelopes = envelopesByDomain(settings, signed)
        return run(settings, envelopes, args.verbose)
    except (ConfigError, MessageError) as e:
        print(f"smtptut send: {e}", file=sys.stderr)
        return exitStatusFor(e)
    except KeyboardInterrupt:
        return EX_TEMPFAIL


def _clock() -> IReactorTime:
    """
    The reactor that will send the message: its time is the DKIM C{t=}.
    """
    from twisted.internet import reactor

    return IReactorTime(reactor)


def _isTerminal(stdin: IO[str] | None) -> bool:
    try:
        return bool(stdin is not None and stdin.isatty())
    except ValueError:  # closed
        return False


def _run(
    settings: ClientSettings, envelopes: Mapping[str, Envelope], verbose: bool
) -> int:
    from twisted.internet import reactor as globalReactor

    reactor = cast(IReactorCore, globalReactor)
    startLogging(verbose)
    status = [EX_SOFTWARE]

    def finished(result: int) -> None:
        status[0] = result

    def start() -> None:
        done = maybeDeferred(
            send, reactor, settings, envelopes, lambda line: print(line, flush=True)
        )
        done.addCallbacks(finished, internalError)
        done.addBoth(lambda _: stopReactor(reactor))

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]


def startLogging(verbose: bool) -> None:
    """
    Log to standard error: warnings and errors, and with C{verbose} each
    connection attempt too.
    """
    level = LogLevel.info if verbose else LogLevel.warn
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=level)],
            )
        ],
        redirectStandardIO=False,
    )


def internalError(failure: Failure, command: str = "smtptut send") -> int:
    """
    A bug in C{command}'s path: log it, say so in one line, exit with
    C{EX_SOFTWARE} (the reactor is stopped all the same).
    """
    log.failure("{command} failed unexpectedly", failure, command=command)
    reason = " ".join(failure.getErrorMessage().split()) or repr(failure.value)
    print(f"{command}: internal error: {reason}", file=sys.stderr, flush=True)
    return EX_SOFTWARE
