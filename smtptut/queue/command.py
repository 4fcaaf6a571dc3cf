"""``smtptut queue run|list|flush|delete`` and the queue's part of ``smtptut send``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import (
    Logger,
)

from smtptut.errors import (
    EX_CANTCREAT,
    EX_NOINPUT,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)
from smtptut.queue.outbound import (
    ClientSettings,
    CommandParser,
    Envelope,
    RecipientOutcome,
    UsageError,
    clientSettings,
    internalError,
    messageChunks,
    startLogging,
    stopReactor,
)
from smtptut.queue.runner import QueueService, clientRunner, formatTime
from smtptut.queue.settings import QUEUE_SETTINGS, QueueSettings, readQueueSettings
from smtptut.queue.store import Entry, Queue, QueueError, RecipientState
from smtptut.settings import ConfigError, addArguments, givenOptions

log = Logger()

QUEUE_EPILOG = """\
The queue's settings can also be set in the environment (SMTPTUT_QUEUE,
SMTPTUT_QUEUE_RETRY, SMTPTUT_QUEUE_MAX_RETRY, SMTPTUT_QUEUE_MAX_AGE,
SMTPTUT_QUEUE_CONCURRENCY, SMTPTUT_QUEUE_DOMAIN_CONCURRENCY); "run" and
"flush" deliver as "smtptut send" does, with its SMTPTUT_* settings from the
environment (SMTPTUT_PORT, SMTPTUT_RELAY, SMTPTUT_TLS, SMTPTUT_NAMESERVER...).

exit status:
  0   done (for run and flush: every due message was tried)
  64  bad usage or setting (EX_USAGE)
  66  delete: no such queued message (EX_NOINPUT)
  75  delete: the message is being delivered right now (EX_TEMPFAIL)
"""


def queueParser() -> argparse.ArgumentParser:
    """
    The options of C{smtptut queue}.
    """
    parser = CommandParser(
        prog="smtptut queue",
        description="Look at and deliver the messages queued by smtptut send --queue.",
        epilog=QUEUE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(name: str, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, description=help)
        addArguments(p, QUEUE_SETTINGS)
        p.add_argument(
            "-v", "--verbose", action="store_true", help="log each connection attempt"
        )
        return p

    run = sub("run", "deliver queued messages as they come due, until stopped")
    run.add_argument(
        "--once", action="store_true", help="try what is due now once, then exit"
    )
    sub("list", "show each queued message: recipients, attempts, next try, last reply")
    sub("flush", "try every queued recipient now, then exit")
    delete = sub("delete", "remove a queued message (no DSN is sent)")
    delete.add_argument("id", metavar="ID", help="the queued message's ID")
    return parser


def queueMain(
    argv: list[str],
    environ: Mapping[str, str] | None = None,
    write: Callable[[str], object] = print,
) -> int:
    """
    C{smtptut queue COMMAND}.
    """
    environ = os.environ if environ is None else environ
    try:
        args = queueParser().parse_args(argv)
    except UsageError as e:
        print(f"smtptut queue: {e}", file=sys.stderr)
        print('Try "smtptut queue --help".', file=sys.stderr)
        return EX_USAGE
    try:
        settings = readQueueSettings(environ, givenOptions(args, QUEUE_SETTINGS))
        named = "--queue" if args.SMTPTUT_QUEUE is not None else "SMTPTUT_QUEUE"
        directory = settings.requireDirectory(named)
        if args.command in ("run", "flush"):
            client = clientSettings(environ)
        reactor = _globalReactor()
        queue = Queue(directory, IReactorTime(reactor))
        if args.command == "list":
            return listQueue(queue, IReactorTime(reactor).seconds(), write)
        if args.command == "delete":
            return deleteEntry(queue, args.id, write)
        if args.command == "flush":
            flushQueue(queue, IReactorTime(reactor).seconds(), write)
            return _runOnce(reactor, queue, settings, client, args.verbose, write)
        if args.once:
            return _runOnce(reactor, queue, settings, client, args.verbose, write)
        return _runForever(reactor, queue, settings, client, args.verbose, write)
    except ConfigError as e:
        print(f"smtptut queue: {e}", file=sys.stderr)
        return EX_USAGE
    except (OSError, QueueError) as e:
        print(f"smtptut queue: {_oneLine(e)}", file=sys.stderr)
        return EX_CANTCREAT


def _oneLine(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}"
    return " ".join(str(e).split()) or e.__class__.__name__


def describeEntry(entry: Entry) -> list[str]:
    """
    The lines C{smtptut queue list} shows for one queued message.
    """
    sender = entry.sender or "<>"
    lines = [
        f"{entry.id}  {entry.size} octets  queued {formatTime(entry.created)}"
        f"  from {sender}"
    ]
    for r in entry.recipients:
        text = f"  {r.address}: {r.state}, {r.attempts} attempts"
        if r.state is RecipientState.PENDING:
            text += f", next try {formatTime(r.nextTry)}"
        if r.lastReply or r.lastCode:
            last = f"{r.lastCode} {r.lastReply}" if r.lastCode else r.lastReply
            via = f" from {r.exchange}" if r.exchange else ""
            text += f", last reply{via}: {last}"
        lines.append(text)
    return lines


def listQueue(queue: Queue, now: float, write: Callable[[str], object]) -> int:
    """
    C{smtptut queue list}: every queued message, then a count.
    """
    messages = pending = 0
    for entryId in queue.ids():
        try:
            entry = queue.load(entryId)
        except QueueError as e:
            write(str(e))
            continue
        if entry is None:
            continue
        messages += 1
        pending += len(entry.pending)
        for line in describeEntry(entry):
            write(line)
    if messages:
        write(f"{messages} messages, {pending} recipients pending")
    else:
        write("The queue is empty.")
    return EX_OK


def deleteEntry(queue: Queue, entryId: str, write: Callable[[str], object]) -> int:
    """
    C{smtptut queue delete ID}: the message leaves the queue, no DSN sent.
    """
    lock = queue.lock(entryId)
    if lock is None:
        if entryId in queue.ids():
            write(f"queue entry {entryId} is being delivered; try again later")
            return EX_TEMPFAIL
        print(f"smtptut queue: no queued message {entryId!r}", file=sys.stderr)
        return EX_NOINPUT
    lock.remove()
    write(f"deleted {entryId}")
    return EX_OK


def flushQueue(queue: Queue, now: float, write: Callable[[str], object]) -> None:
    """
    Make every pending recipient due now (what a runner holds is left).
    """
    for entryId in queue.ids():
        lock = queue.lock(entryId)
        if lock is None:
            continue
        with lock:
            entry = lock.entry
            lock.save(entry.updated(replace(r, nextTry=now) for r in entry.pending))


def _runOnce(
    reactor: IReactorCore,
    queue: Queue,
    settings: QueueSettings,
    client: ClientSettings,
    verbose: bool,
    write: Callable[[str], object],
    ids: Sequence[str] | None = None,
) -> int:
    """
    One pass over the queue (or the entries C{ids}) with the global reactor.
    """
    startLogging(verbose)
    runner = clientRunner(reactor, queue, settings, client, write)
    status = [EX_SOFTWARE]

    def stopping() -> None:
        runner.stopping = True

    def start() -> None:
        d: Deferred[list[RecipientOutcome]] = runner.runOnce(ids)
        d.addCallbacks(
            lambda _: status.__setitem__(0, EX_OK),
            lambda f: internalError(f, "smtptut queue"),
        )
        d.addBoth(lambda _: stopReactor(reactor))

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]


def _runForever(
    reactor: IReactorCore,
    queue: Queue,
    settings: QueueSettings,
    client: ClientSettings,
    verbose: bool,
    write: Callable[[str], object],
) -> int:
    startLogging(verbose)
    queueService = QueueService(
        clientRunner(reactor, queue, settings, client, write), IReactorTime(reactor)
    )
    reactor.callWhenRunning(queueService.startService)
    reactor.addSystemEventTrigger("before", "shutdown", queueService.stopService)
    reactor.run()
    return EX_OK


def _globalReactor() -> IReactorCore:
    from twisted.internet import reactor

    return cast(IReactorCore, reactor)


# The queue's part of "smtptut send" (wired into smtptut/client/send.py).


def addQueueArguments(parser: argparse.ArgumentParser) -> None:
    """
    C{--queue DIR} and C{--queue-only} for C{smtptut send}.
    """
    addArguments(parser, QUEUE_SETTINGS[:1])
    parser.add_argument(
        "--queue-only",
        action="store_true",
        help="with --queue: only queue the message, make no connection (a"
        " runner delivers it: smtptut queue run, twistd smtptut-queue); with"
        " --queue the exit status is 0 once the message is queued, 73 when it"
        " cannot be",
    )


#: What C{smtptut send} runs once the envelopes are made: C{_run} in
#: smtptut/client/send.py.
SendRun = Callable[[ClientSettings, Mapping[str, Envelope], bool], int]


def queueSending(
    args: argparse.Namespace, environ: Mapping[str, str], run: SendRun
) -> SendRun:
    """
    C{run} itself without C{--queue} or C{SMTPTUT_QUEUE}; with it, a run
    that queues the message durably (exit 0 only once it is), then unless
    C{--queue-only} tries it at once through the queue runner.
    """
    given = {"SMTPTUT_QUEUE": args.SMTPTUT_QUEUE} if args.SMTPTUT_QUEUE else {}
    settings = readQueueSettings(environ, given)
    if settings.directory is None:
        if args.queue_only:
            raise ConfigError("--queue-only", "needs --queue DIR (or SMTPTUT_QUEUE)")
        return run
    directory = settings.directory

    def viaQueue(
        client: ClientSettings, envelopes: Mapping[str, Envelope], verbose: bool
    ) -> int:
        reactor = _globalReactor()
        [first, *_] = envelopes.values()
        recipients = [r for e in envelopes.values() for r in e.recipients]
        try:
            queue = Queue(directory, IReactorTime(reactor))
            entry = queue.enqueue(
                first.sender, recipients, messageChunks(first.message)
            )
        except OSError as e:
            print(
                f"smtptut send: cannot queue the message: {_oneLine(e)}",
                file=sys.stderr,
            )
            return EX_CANTCREAT
        # With --json, standard output holds only the JSON objects.
        print(
            f"queued as {entry.id}",
            flush=True,
            file=sys.stderr if client.json else sys.stdout,
        )
        if args.queue_only:
            return EX_OK
        _runOnce(
            reactor,
            queue,
            settings,
            client,
            verbose,
            lambda line: print(line, flush=True),
            [entry.id],
        )
        # Queued is what the exit status says: the runner retries the rest.
        return EX_OK

    return viaQueue
