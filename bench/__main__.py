"""Run every section of the benchmark and write bench/RESULTS.md (`make bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from bench import charts, clients, inbox, machine, memory, queued, report, throughput
from bench.procs import ROOT
from bench.throughput import SCENARIOS, Pins

T = TypeVar("T")

#: Each section's own time limit in seconds (the harness's whole limit, in
#: bench/run, is their sum and a margin).
LIMITS = {
    "servers": 720,
    "clients": 180,
    "memory": 300,
    "inbox": 300,
    "queue": 840,
    "dkim": 240,
}


class SectionTimeout(Exception):
    """
    A section ran past its limit in L{LIMITS}.
    """


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise SectionTimeout()


def section(name: str, run: Callable[[], T], empty: T, log: list[str]) -> T:
    """
    C{run()}, stopped (its processes too, by their own C{finally}) after its
    limit; then C{empty}, and the log says so.
    """
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMITS[name])
    started = time.monotonic()
    try:
        return run()
    except SectionTimeout:
        line = f"section {name}: stopped at its limit of {LIMITS[name]} s"
        log.append(line)
        print(line, flush=True)
        return empty
    finally:
        signal.alarm(0)
        line = f"section {name}: {time.monotonic() - started:.0f} s"
        log.append(line)
        print(line, flush=True)


HERE = Path(__file__).resolve().parent


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM (from an outer timeout) into SystemExit so that every
    # `finally` stops the servers this run started.
    raise SystemExit(f"bench: stopped by signal {signum}")


def _profileNotes() -> list[str]:
    """
    The hand-written profile notes (bench/PROFILE.md): what a profile shows
    stands in the way of each target, kept beside the numbers.
    """
    notes = HERE / "PROFILE.md"
    if not notes.exists():
        return []
    return [notes.read_text().rstrip(), ""]


#: Hand-written, beside the numbers: what stands in the way of the targets
#: of the new paths (bench/PROFILE.md, above, has the server and client).
NOTES = HERE / "NOTES.md"


def _notes() -> list[str]:
    return [NOTES.read_text().rstrip(), ""] if NOTES.exists() else []


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def inboxSection(path: Path = HERE / "INBOX.md") -> list[str]:
    """
    Section (d): the inbox at scale (issue 11), as C{python -m bench.inbox}
    (run by bench/run before this harness) last wrote it in C{path}.
    """
    if not path.exists():
        return ["## (d) The inbox at scale (issue 11)", "", "Not measured.", ""]
    lines = path.read_text().splitlines()
    title, *rest = lines
    return [
        "## (d) " + title.removeprefix("# "),
        "",
        f"(Copied from bench/{path.name}.)",
        *("#" + line if line.startswith("## ") else line for line in rest),
        "",
    ]


def _method(args: argparse.Namespace, pins: Pins) -> list[str]:
    pin = (
        f"servers pinned to CPU {pins.server}, load generators and clients to CPU "
        f"{pins.load} (taskset)"
        if pins.server is not None
        else "no CPU pinning (fewer than 2 CPUs)"
    )
    scenarios = "; ".join(
        f"`{s.name}` = smtp-source `{' '.join(s.args)} -m N` ({s.description})"
        for s in SCENARIOS
    )
    return [
        "## How it was measured",
        "",
        f"- Loopback only (127.0.0.1, ports picked by the kernel); {pin}.",
        "- Every process runs under `timeout` in its own process group and is "
        "stopped by its own PID at the end.",
        f"- (a) Servers: {scenarios}. Every smtp-source run also has "
        "`-f sender@bench.test -t rcpt@bench.test -M bench.test`. Per scenario all "
        "servers are started fresh, each is warmed up and its message count N is "
        f"sized to about {args.seconds:g} s per run; then {args.reps} rounds in which "
        "the servers take turns (rotating order). msg/s = N / median wall time; "
        "ratios are between medians of the same run. The project's server is "
        "`twistd -n --pidfile= -l - -y emailserver.tac` with "
        "`SMTPTUT_LISTEN=tcp:PORT:interface=127.0.0.1 SMTPTUT_ACCEPT='*'` and "
        "stdout to /dev/null; Maildir mode adds `SMTPTUT_MAILDIR` (a directory under "
        "bench/results/) and `SMTPTUT_PRINT=0`. aiosmtpd is its own command line "
        "with the discarding `aiosmtpd.handlers.Sink`; smtp-sink is "
        "`smtp-sink -u nobody 127.0.0.1:PORT 256`.",
        f"- (b) Clients: {args.n} messages (1 KiB body, 5 headers) to one smtp-sink, "
        "over one connection and over 20 connections (N/20 each, in parallel: "
        "threads for smtplib, tasks for aiosmtplib, Twisted connections for "
        f"smtptut's `SMTPClientFactory`). {args.reps} rounds, configurations taking "
        "turns. Timing covers the first connect to the last reply (interpreter "
        "start and imports excluded); CPU is the client process's own. smtp-source "
        "(`-d -s 1|20`) is the C reference.",
        f"- (c) Memory: one {memory.BIG // 2**20} MiB message (80-column lines). "
        "Servers: peak RSS = VmHWM of the server process after smtp-source "
        "delivered it (the project's server gets `SMTPTUT_MAX_SIZE` raised for this). "
        "Clients: ru_maxrss of the client process, sending the message file to "
        "smtp-sink (smtptut streams the file; smtplib and aiosmtplib take bytes, "
        "so they read it whole).",
        "- (e) Inbox on vs off: `twistd smtptut-server --maildir DIR --print 0` "
        "with `--http off`, or with the inbox and its index on a loopback port; "
        f"{args.ingest_n} messages of 2 KiB over one smtplib connection to a fresh "
        f"server each run, {args.reps} rounds taking turns; msg/s from the first "
        "connect to the last reply.",
        f"- (f) Queue: see the section's own text. {args.queue_reps} rounds, "
        "taking turns.",
        f"- (g) DKIM: the client of (b) over one connection to smtp-sink, "
        "every message checked on its own (as `smtptut send` does) and, "
        "signed, DKIM-signed with a new 2048-bit RSA key (`d=bench.test; "
        f"s=bench`); {args.dkim_n} unsigned and {max(args.dkim_n // 4, 1)} "
        f"signed messages a run, {args.reps} rounds taking turns; timing covers "
        "checking and signing as well as sending.",
        "- Absolute numbers move by up to 2x between runs on this shared VM (and "
        "anything else running on its 2 CPUs shows in the load average above); "
        "compare ratios within a run.",
        "",
    ]


QUEUE_TEXT = """\
What is compared, and why: a user with 10,000 messages to hand to one
domain either runs `smtptut send` for each, or queues each
(`smtptut send --queue DIR --queue-only`) and lets the runner deliver them
(`smtptut queue run --once`, or `twistd smtptut-queue`).  The target asks
whether the queue's bookkeeping (lock, state file, removal, all durable)
costs at most a fifth of the delivery itself, so both sides deliver with the
same code, one transaction and one connection per message as `smtptut send`
makes, and the same parallelism:

- **queue runner**: the queue is filled first, untimed, by the queue's own
  `Queue.enqueue` as `smtptut send --queue-only` calls it (in one process,
  16 threads: 10,000 separate commands would spend an hour starting
  Python), copied afresh for each round; then the timed `smtptut queue run
  --once` (its `queueMain`, in a child process, imports before the clock)
  with its defaults: 8 transactions at once, at most 2 to one domain.
- **`smtptut send`**: one child process doing for each message what
  `smtptut send` does once its options are parsed (check the message, make
  its envelope, `smtptut.client.send.send`: MX lookup, connection, one
  transaction, the outcome line), 2 at a time, as the runner to one domain;
  one process, so that 10,000 interpreter starts do not swamp what is
  compared.

Both look up `bench.test`'s MX (`mx.bench.test`, 127.0.0.1) for every
message through the bench's own loopback DNS server (bench/dns.py,
twisted.names, `SMTPTUT_NAMESERVER`: nothing asks the system's resolver) and
deliver to one smtp-sink (`SMTPTUT_PORT`, `SMTPTUT_TLS=off`).  A client
reusing one connection for all of them (section (b)) is much faster than
either; neither `smtptut send` nor the runner reuses connections across
messages yet."""


def render(
    args: argparse.Namespace,
    pins: Pins,
    facts: dict[str, str],
    servers: list[throughput.Cell],
    clientCells: list[clients.ClientCell],
    peaks: list[memory.Peak],
    seconds: float,
    ingest: dict[str, Any] | None = None,
    queueCells: list[queued.QueueCell] | None = None,
    dkimCells: list[clients.ClientCell] | None = None,
    embeds: dict[str, str] | None = None,
) -> str:
    """
    The whole RESULTS.md.
    """
    queueCells = queueCells or []
    dkimCells = dkimCells or []
    embeds = embeds or {}

    def chart(name: str) -> list[str]:
        return [embeds[name], ""] if name in embeds else []

    targets = (
        report.serverTargets(servers)
        + report.inboxTargets(ingest)
        + report.clientTargets(clientCells)
        + report.queueTargets(queueCells)
        + report.dkimTargets(dkimCells)
        + report.memoryTargets(peaks)
    )
    met = sum(1 for t in targets if t.met)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bash bench/run) on {facts['date']}, "
        f"in {seconds / 60:.1f} minutes.",
        *(
            [
                "",
                f"Put together from two runs of the harness: {facts['reused']}; "
                "the others from a second run afterwards (the same smtptut "
                "code; the first run's server section had stopped at its time "
                "limit). Every ratio is still between measurements of one run.",
            ]
            if facts.get("reused")
            else []
        ),
        "",
        "| machine | |",
        "|---|---|",
        f"| CPUs (nproc) | {facts['nproc']} x {facts['cpu']} |",
        f"| memory | {facts['memory']} |",
        f"| file system of the Maildirs | {facts['disk']} |",
        f"| system | {facts['os']} |",
        f"| load average at start, at end | {facts['loadavg']}; {_loadavg()} |",
        f"| Python | {facts['python']} |",
        f"| Twisted / dnspython | {facts['twisted']} / {facts['dnspython']} |",
        f"| aiosmtpd / aiosmtplib | {facts['aiosmtpd']} / {facts['aiosmtplib']} |",
        f"| Postfix | {facts['postfix']} |",
        f"| smtptut | commit {facts['commit']} |",
        "",
        f"## Targets (issue 13): {met} of {len(targets)} met",
        "",
        *report.targetTable(targets),
        "",
        *_profileNotes(),
        *_notes(),
        "## (a) Server throughput, smtp-source load",
        "",
        *chart("servers"),
        *report.serverTable(servers),
        "",
        "## (b) Client throughput into smtp-sink",
        "",
        *chart("clients"),
        *report.clientTable(clientCells),
        "",
        f"## (c) Peak memory moving one {memory.BIG // 2**20} MiB message",
        "",
        *chart("memory"),
        *report.memoryTable(peaks),
        "",
        *inboxSection(),
        "## (e) Inbox on vs off: SMTP ingestion into the Maildir",
        "",
        *report.inboxTable(ingest),
        "",
        f"## (f) The queue runner against `smtptut send`, "
        f"{queueCells[0].n if queueCells else args.queue_n} messages",
        "",
        QUEUE_TEXT,
        "",
        *report.queueTable(queueCells),
        "",
        "## (g) DKIM-signed against unsigned sending, 1 KiB messages",
        "",
        *report.dkimTable(dkimCells),
        "",
        *_method(args, pins),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    Parse the options, run the sections asked for, write the results.
    """
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="rounds per measurement")
    parser.add_argument("--seconds", type=float, default=1.5, help="per server run")
    parser.add_argument("--n", type=int, default=2000, help="messages per client run")
    parser.add_argument("--sections", default="servers,clients,memory,inbox,queue,dkim")
    parser.add_argument("--ingest-n", type=int, default=1000, help="(e) messages")
    parser.add_argument("--queue-n", type=int, default=queued.COUNT, help="(f)")
    parser.add_argument("--queue-reps", type=int, default=3, help="(f) rounds")
    parser.add_argument("--dkim-n", type=int, default=1000, help="(g) unsigned")
    parser.add_argument(
        "--raw",
        default=str(ROOT / "bench" / "results" / "last.json"),
        help="where the raw measurements go (JSON)",
    )
    parser.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="JSON",
        help="take the sections not run now from an earlier run's --raw file"
        " (repeat; RESULTS.md says which sections came from which run)",
    )
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.reps <= 20 or not 0.2 <= args.seconds <= 10:
        parser.error("--reps must be 1..20 and --seconds 0.2..10")
    signal.signal(signal.SIGTERM, _terminate)
    sections = set(args.sections.split(","))
    pins = (
        Pins(0, 1)
        if (os.cpu_count() or 1) >= 2 and not args.no_pin
        else Pins(None, None)
    )
    facts = machine.describe()
    workdir = ROOT / "bench" / "results" / time.strftime("work-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True)
    log: list[str] = []
    start = time.monotonic()

    def wanted(name: str, run: Callable[[], T], empty: T) -> T:
        return section(name, run, empty, log) if name in sections else empty

    try:
        # Filled scenario by scenario: what was measured stays if stopped.
        servers: list[throughput.Cell] = []
        wanted(
            "servers",
            lambda: throughput.runAll(
                args.reps, args.seconds, workdir, pins, log, servers
            ),
            servers,
        )
        clientCells: list[clients.ClientCell] = wanted(
            "clients", lambda: clients.runAll(args.n, args.reps, workdir, pins, log), []
        )
        peaks: list[memory.Peak] = wanted(
            "memory", lambda: memory.runAll(workdir, pins, log), []
        )
        ingest: dict[str, Any] | None = wanted(
            "inbox",
            lambda: inbox.ingestion(str(workdir), args.ingest_n, args.reps),
            None,
        )
        # Filled as the rounds go: what was measured stays if it is stopped.
        queueCells: list[queued.QueueCell] = []
        wanted(
            "queue",
            lambda: queued.runAll(
                args.queue_reps,
                workdir,
                pins,
                log,
                args.queue_n,
                budget=LIMITS["queue"] - 120,
                cells=queueCells,
            ),
            queueCells,
        )
        dkimCells: list[clients.ClientCell] = wanted(
            "dkim",
            lambda: clients.runDkim(args.dkim_n, args.reps, workdir, pins, log),
            [],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - start
    reused: list[str] = []
    for path in args.reuse:
        old = json.loads(Path(path).read_text())
        taken = []
        if not servers and old.get("servers"):
            servers = [throughput.Cell(**c) for c in old["servers"]]
            taken.append("(a)")
        if not clientCells and old.get("clients"):
            clientCells = [clients.ClientCell(**c) for c in old["clients"]]
            taken.append("(b)")
        if not peaks and old.get("memory"):
            peaks = [memory.Peak(**p) for p in old["memory"]]
            taken.append("(c)")
        if ingest is None and old.get("inbox"):
            ingest = old["inbox"]
            taken.append("(e)")
        if not queueCells and old.get("queue"):
            queueCells = [queued.QueueCell(**c) for c in old["queue"]]
            taken.append("(f)")
        if not dkimCells and old.get("dkim"):
            dkimCells = [clients.ClientCell(**c) for c in old["dkim"]]
            taken.append("(g)")
        if taken:
            facts = old.get("facts", facts)
            seconds += old.get("seconds", 0.0)
            log = old.get("log", []) + log
            if not facts.get("reused"):  # not itself put together already
                reused.append(
                    f"sections {', '.join(taken)} from the run of "
                    f"{old['facts']['date']}"
                )
    if not sections & set(LIMITS):
        # Nothing run now (--sections ''): RESULTS.md drawn and written again.
        reused = []
    if reused:
        facts = {**facts, "reused": "; ".join(reused)}
    outDir = Path(args.out).resolve().parent
    embeds = charts.drawAll(outDir, servers, clientCells, peaks)
    text = render(
        args,
        pins,
        facts,
        servers,
        clientCells,
        peaks,
        seconds,
        ingest,
        queueCells,
        dkimCells,
        embeds,
    )
    Path(args.out).write_text(text + "\n")
    raw = {
        "facts": facts,
        "servers": [dataclasses.asdict(c) for c in servers],
        "clients": [dataclasses.asdict(c) for c in clientCells],
        "memory": [dataclasses.asdict(p) for p in peaks],
        "inbox": ingest,
        "queue": [dataclasses.asdict(c) for c in queueCells],
        "dkim": [dataclasses.asdict(c) for c in dkimCells],
        "seconds": seconds,
        "log": log,
    }
    Path(args.raw).write_text(json.dumps(raw, indent=1))
    print("\n" + text)
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
