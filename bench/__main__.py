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
from pathlib import Path
from types import FrameType

from bench import clients, machine, memory, report, throughput
from bench.procs import ROOT
from bench.throughput import SCENARIOS, Pins

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
        "- Absolute numbers move by up to 2x between runs on this shared VM (and "
        "anything else running on its 2 CPUs shows in the load average above); "
        "compare ratios within a run.",
        "",
    ]


def render(
    args: argparse.Namespace,
    pins: Pins,
    facts: dict[str, str],
    servers: list[throughput.Cell],
    clientCells: list[clients.ClientCell],
    peaks: list[memory.Peak],
    seconds: float,
) -> str:
    """
    The whole RESULTS.md.
    """
    targets = (
        report.serverTargets(servers)
        + report.clientTargets(clientCells)
        + report.memoryTargets(peaks)
    )
    met = sum(1 for t in targets if t.met)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bash bench/run) on {facts['date']}, "
        f"in {seconds / 60:.1f} minutes.",
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
        f"## Targets (issue 6): {met} of {len(targets)} met",
        "",
        *report.targetTable(targets),
        "",
        *_profileNotes(),
        "## (a) Server throughput, smtp-source load",
        "",
        *report.serverTable(servers),
        "",
        "## (b) Client throughput into smtp-sink",
        "",
        *report.clientTable(clientCells),
        "",
        f"## (c) Peak memory moving one {memory.BIG // 2**20} MiB message",
        "",
        *report.memoryTable(peaks),
        "",
        *inboxSection(),
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
    parser.add_argument("--sections", default="servers,clients,memory")
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
    try:
        servers = (
            throughput.runAll(args.reps, args.seconds, workdir, pins, log)
            if "servers" in sections
            else []
        )
        clientCells = (
            clients.runAll(args.n, args.reps, workdir, pins, log)
            if "clients" in sections
            else []
        )
        peaks = memory.runAll(workdir, pins, log) if "memory" in sections else []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = render(
        args, pins, facts, servers, clientCells, peaks, time.monotonic() - start
    )
    Path(args.out).write_text(text + "\n")
    raw = {
        "facts": facts,
        "servers": [dataclasses.asdict(c) for c in servers],
        "clients": [dataclasses.asdict(c) for c in clientCells],
        "memory": [dataclasses.asdict(p) for p in peaks],
        "log": log,
    }
    (workdir.parent / "last.json").write_text(json.dumps(raw, indent=1))
    print("\n" + text)
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
