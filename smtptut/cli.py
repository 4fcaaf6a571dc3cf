"""The ``smtptut`` console script: ``smtptut send`` and ``smtptut passwd``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, BinaryIO, NoReturn, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from smtptut.client import DEFERRED, DELIVERED, Envelope, RecipientOutcome
from smtptut.config import TLS_MODES, ClientSettings
from smtptut.delivery import deliverAll, stopReactor
from smtptut.errors import (
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    exitStatusFor,
)
from smtptut.exchange import makeResolver
from smtptut.message import MessageError, spooledMessage
from smtptut.sending import (
    checkAuthRoute,
    checkTrust,
    envelopesByDomain,
    loadMessage,
    messageIdDomain,
)
from smtptut.settings import ConfigError

log = Logger()

TOP_HELP = """\
usage: smtptut COMMAND [OPTIONS]

commands:
  send     send a message straight to the recipients' mail exchangers
           (or through a relay); "smtptut send --help" tells more
  passwd   manage the console server's password file (see "smtptut passwd --help")
  queue    list, flush, delete or deliver queued mail (see "smtptut queue --help")
"""

SEND_EPILOG = """\
Every option can also be set in the environment with the SMTPTUT_* variable
of the same name (SMTPTUT_FROM, SMTPTUT_TO, SMTPTUT_DATA, SMTPTUT_HELO,
SMTPTUT_PORT, SMTPTUT_NAMESERVER, SMTPTUT_RELAY, SMTPTUT_TLS, SMTPTUT_CA,
SMTPTUT_USER, SMTPTUT_TIMEOUT; --insecure-auth is SMTPTUT_INSECURE_AUTH=1); an
option wins over its variable.  The password is read only from
SMTPTUT_PASSWORD, or asked for on the terminal.  A login (--user) goes only to
the --relay, with --tls verify (or a loopback relay, or --tls encrypt
--insecure-auth).

Without --data, the tutorial's message is sent when standard input is a
terminal; otherwise smtptut send stops with status 64 (use --data - to send
standard input, which may hold at most 100 MiB).  Bcc: fields are removed.

One line per recipient says what happened to it: "delivered", "deferred" (a
4xx reply, a timeout, an unreachable server or DNS trouble: try again later)
or "bounced" (a 5xx reply, a domain that does not exist or takes no mail),
with the reply or cause and the exchange and address used.

exit status:
  0   every recipient was delivered
  75  at least one recipient was deferred (EX_TEMPFAIL)
  69  every failure is permanent: bounced (EX_UNAVAILABLE)
  64  bad usage or setting (EX_USAGE)
  65  the message cannot be sent as it is, or is empty (EX_DATAERR)
  66  the message file does not exist or is not a regular file (EX_NOINPUT)
  70  smtptut itself failed: a bug, please report it (EX_SOFTWARE)

examples:
  smtptut send --to console@localhost --port 2525
  smtptut send --from me@example.org --to you@example.net --data message.eml
  printf 'Subject: hi\\n\\nhello\\n' | smtptut send --to you@example.net --data -
  SMTPTUT_PASSWORD=... smtptut send --relay smtp.example.org:587 --tls verify \\
      --user me --to you@example.net --data message.eml
"""

#: Each option of C{smtptut send}, and the variable it stands for.
OPTIONS = {
    "--from": "SMTPTUT_FROM",
    "--to": "SMTPTUT_TO",
    "--data": "SMTPTUT_DATA",
    "--helo": "SMTPTUT_HELO",
    "--port": "SMTPTUT_PORT",
    "--nameserver": "SMTPTUT_NAMESERVER",
    "--relay": "SMTPTUT_RELAY",
    "--tls": "SMTPTUT_TLS",
    "--ca": "SMTPTUT_CA",
    "--user": "SMTPTUT_USER",
    "--timeout": "SMTPTUT_TIMEOUT",
    "--insecure-auth": "SMTPTUT_INSECURE_AUTH",
}


class UsageError(Exception):
    """
    The command line is wrong; the text says how.
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def sendParser() -> argparse.ArgumentParser:
    """
    The options of C{smtptut send}.
    """
    parser = _Parser(
        prog="smtptut send",
        description=(
            "Send one message to its recipients: each recipient domain's mail\n"
            "exchangers are looked up in DNS and tried in preference order\n"
            "(RFC 5321 section 5.1), or everything goes through --relay."
        ),
        epilog=SEND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--from", dest="sender", metavar="ADDRESS", help="envelope sender; <> for none")
    add(
        "--to",
        action="append",
        metavar="ADDRESS",
        help="a recipient (repeat, or separate with commas)",
    )
    add(
        "--data",
        metavar="FILE",
        help="the RFC 5322 message to send, LF or CRLF lines; - reads standard"
        " input (default: the tutorial's message)",
    )
    add(
        "--helo",
        metavar="NAME",
        help="the name to greet with: a host name or an address literal such as"
        " [192.0.2.1] (default: this machine's fully qualified name, else the"
        " address literal of the connection's local end)",
    )
    add("--port", metavar="PORT", help="the exchangers' port (default: 25)")
    add(
        "--nameserver",
        action="append",
        metavar="IP[:PORT]",
        help="the IP address of a DNS server to ask, [IPv6]:PORT with a port"
        " (repeat; default: the system's)",
    )
    add(
        "--relay",
        metavar="HOST[:PORT]",
        help="send everything through this smarthost, no MX lookup (port 25 unless given)",
    )
    add(
        "--tls",
        choices=TLS_MODES,
        help="may: STARTTLS when offered, no certificate check (default);"
        " encrypt: STARTTLS required; verify: the certificate must also be"
        " valid for the exchange's name; off: never",
    )
    add("--ca", metavar="FILE", help="CA certificates (PEM) for --tls verify")
    add(
        "--user",
        metavar="NAME",
        help="log in to the --relay with AUTH PLAIN, LOGIN or CRAM-MD5 (needs"
        " --tls verify unless the relay is on loopback); the password comes"
        " from SMTPTUT_PASSWORD or a prompt",
    )
    add(
        "--insecure-auth",
        action="store_const",
        const="1",
        help="with --tls encrypt, log in over TLS whatever the relay's"
        " certificate (a man in the middle could take the password)",
    )
    add(
        "--timeout",
        metavar="SECONDS",
        help="the longest wait for a connection or a reply (default: RFC 5321's,"
        " 5 to 10 minutes)",
    )
    add("-v", "--verbose", action="store_true", help="log each connection attempt")
    # -- queue wiring (issue 12): --queue DIR, --queue-only
    from smtptut.queue.command import addQueueArguments

    addQueueArguments(parser)
    # -- end queue wiring
    return parser


def settingsFrom(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> ClientSettings:
    """
    The settings: the environment's C{SMTPTUT_*}, overridden by the options.
    A bad one is reported by the name the user gave it.
    """
    env = dict(environ)
    given: dict[str, str] = {}
    values: dict[str, str | list[str] | None] = {
        "--from": args.sender,
        "--to": args.to,
        "--data": args.data,
        "--helo": args.helo,
        "--port": args.port,
        "--nameserver": args.nameserver,
        "--relay": args.relay,
        "--tls": args.tls,
        "--ca": args.ca,
        "--user": args.user,
        "--timeout": args.timeout,
        "--insecure-auth": args.insecure_auth,
    }
    for option, value in values.items():
        if value is None:
            continue
        variable = OPTIONS[option]
        env[variable] = ",".join(value) if isinstance(value, list) else value
        given[variable] = option
    if "SMTPTUT_TO" not in env:
        raise ConfigError("--to", "no recipient given")
    if env.get("SMTPTUT_DATA") == "-":
        del env["SMTPTUT_DATA"]
    with namedAsGiven(given):
        settings = ClientSettings.fromEnvironment(env)
        checkTrust(settings)
        checkAuthRoute(settings)
        return settings


def optionsGiven(args: argparse.Namespace) -> dict[str, str]:
    """
    The variables the user set with an option, and that option.
    """
    given = {}
    for option, variable in OPTIONS.items():
        dest = "sender" if option == "--from" else option[2:].replace("-", "_")
        if getattr(args, dest) is not None:
            given[variable] = option
    return given


class namedAsGiven:
    """
    A context manager that renames the variable at the start of a
    L{ConfigError} to the option the user typed for it, if any: the user
    reads C{--to: ...} for C{--to}, C{SMTPTUT_TO: ...} for the environment.
    """

    def __init__(self, given: Mapping[str, str]) -> None:
        self.given = given

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if isinstance(value, ConfigError) and value.setting in self.given:
            reason = value.reason
            # "SMTPTUT_TLS=verify" in the reason reads "--tls verify" too.
            for name, option in self.given.items():
                reason = reason.replace(f"{name}=", f"{option} ")
            raise ConfigError(self.given[value.setting], reason) from None


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
    if all(o.status == DELIVERED for o in outcomes):
        return EX_OK
    if any(o.status == DEFERRED for o in outcomes):
        return EX_TEMPFAIL
    return EX_UNAVAILABLE


def send(
    reactor: Any,
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
    stdin: Any = None,
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
        with namedAsGiven(optionsGiven(args)):
            settings = askPassword(settingsFrom(args, environ), stdin)
            # -- queue wiring (issue 12): with --queue, run queues first
            from smtptut.queue.command import queueSending

            run = queueSending(args, environ, _run)
            # -- end queue wiring
            dataSetting = args.data or environ.get("SMTPTUT_DATA")
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
                    # A bad address fails here, before the reactor runs.
                    envelopes = envelopesByDomain(settings, message)
                    return run(settings, envelopes, args.verbose)
            envelopes = envelopesByDomain(settings, loadMessage(settings))
        return run(settings, envelopes, args.verbose)
    except (ConfigError, MessageError) as e:
        print(f"smtptut send: {e}", file=sys.stderr)
        return exitStatusFor(e)
    except KeyboardInterrupt:
        return EX_TEMPFAIL


def _isTerminal(stdin: Any) -> bool:
    try:
        return bool(stdin is not None and stdin.isatty())
    except ValueError:  # closed
        return False


def _run(
    settings: ClientSettings, envelopes: Mapping[str, Envelope], verbose: bool
) -> int:
    from twisted.internet import reactor

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


def internalError(failure: Failure) -> int:
    """
    A bug in the send path: log it, say so in one line, exit with
    C{EX_SOFTWARE} (the reactor is stopped all the same).
    """
    log.failure("smtptut send failed unexpectedly", failure)
    reason = " ".join(failure.getErrorMessage().split()) or repr(failure.value)
    print(f"smtptut send: internal error: {reason}", file=sys.stderr, flush=True)
    return EX_SOFTWARE


def passwdMain(argv: list[str]) -> int:
    """
    C{smtptut passwd}: the console server's command, from its own module.
    """
    # Imported here: "smtptut send" needs none of the server's modules.
    from smtptut.passwords import passwdMain as serverPasswdMain

    return serverPasswdMain(argv)


# -- queue wiring (issue 12): "smtptut queue", all in smtptut/queue/command.py
def queueMain(argv: list[str]) -> int:
    from smtptut.queue.command import queueMain as run

    return run(argv)


# -- end queue wiring


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "send": sendMain,
    "passwd": passwdMain,
    "queue": queueMain,  # queue wiring (issue 12)
}


def main(argv: list[str] | None = None) -> int:
    """
    The console script: C{smtptut COMMAND [OPTIONS]}.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(TOP_HELP, end="")
        return EX_OK if argv else EX_USAGE
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"smtptut: no command {argv[0]!r}\n\n{TOP_HELP}", end="", file=sys.stderr)
        return EX_USAGE
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
