"""Flame graphs of the server and the client under load, and msg/s before and after a change.

`python -m bench.profile record --label before` runs each scenario under
py-spy and writes, per scenario, a flame graph (SVG) and a table of the top
costs (shares of the profiled process's CPU samples) under bench/profiles/:

- server-reuse-1k-s1, server-reuse-1k-s20: the console server (twistd,
  emailserver.tac, stdout to /dev/null, as `make bench` runs it) loaded by
  `smtp-source -d -s 1|20 -l 1024 -m N`;
- client-c1, client-c20: the project's client (bench/send.py) sending 1 KiB
  messages to Postfix's smtp-sink over 1 or 20 connections.

`python -m bench.profile compare --before REV` measures, without a
profiler, the server and the client of this tree's commit (HEAD) against
those of commit REV, both exported with git archive and run alike, in the
same run, the configurations taking turns, with smtp-sink and smtplib as
the references: medians and ratios.

py-spy needs the bench extra (`pip install -e '.[bench]'`) and, to attach
to a running server, root or ptrace rights.  Servers run on CPU 0, load,
clients and py-spy on CPU 1 (taskset), as in `make bench`; every process
is bounded in time and stopped by its own PID.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.clients import ClientCell
from bench.procs import (
    ROOT,
    freePort,
    pinned,
    runTimed,
    smtpSinkCommand,
    smtpSourceCommand,
    startServer,
    stopServer,
    waitReady,
)
from bench.servers import BIN, KINDS, SMTP_SINK, SMTPTUT, ServerKind, launch
from bench.throughput import (
    SCENARIOS,
    Cell,
    Pins,
    Scenario,
    _calibrate,
    _source,
)

PROFILES = ROOT / "bench" / "profiles"
RESULTS = ROOT / "bench" / "results" / "profile"
SERVER_SCENARIOS = ("reuse-1k-s1", "reuse-1k-s20")
CLIENT_CONNS = (1, 20)
#: Samples a second: enough for shares of a few per cent in a few seconds.
RATE = 500
#: What one table lists.
TOP = 30


def _pySpy() -> str:
    spy = BIN / "py-spy"
    if not spy.exists():
        raise SystemExit(
            "bench.profile: py-spy is missing: pip install -e '.[bench]' in the venv"
        )
    return str(spy)


def _pins() -> Pins:
    return Pins(0, 1) if (os.cpu_count() or 1) >= 2 else Pins(None, None)


def _scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def _spyCommand(fmt: str, out: Path, seconds: float) -> list[str]:
    # --nonblocking: the profiled process is not stopped for each sample, so
    # the profile costs it (almost) nothing; --nolineno: one frame a function.
    return [
        _pySpy(),
        "record",
        "--nonblocking",
        "--nolineno",
        "--rate",
        str(RATE),
        "--format",
        fmt,
        "--output",
        str(out),
        "--duration",
        str(int(seconds) + 1),
    ]


def _endSpy(spy: subprocess.Popen[bytes]) -> None:
    """
    Stop py-spy as Ctrl-C does (it writes its file then), bounded.
    """
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(10)


def _recordServer(
    scenario: Scenario, out: Path, fmt: str, seconds: float, workdir: Path, pins: Pins
) -> str:
    server = launch(KINDS[SMTPTUT], freePort(), workdir, pins.server)
    try:
        count = _calibrate(scenario, seconds, server, workdir, pins)
        spy = subprocess.Popen(
            pinned(
                pins.load,
                [*_spyCommand(fmt, out, seconds * 3), "--pid", str(server.pid)],
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # py-spy finds the interpreter in the process
            wall, cpu, _, error = _source(scenario, count, server, workdir, pins)
        finally:
            _endSpy(spy)
    finally:
        stopServer(server)
    return (
        f"{scenario.name}: {count} msgs in {wall:.2f} s = {count / wall:.0f} msg/s"
        f" under py-spy, server CPU {cpu * 1000 / count:.3f} ms/msg {error}"
    )


def _recordClient(
    conns: int, out: Path, fmt: str, seconds: float, workdir: Path, pins: Pins
) -> str:
    port = freePort()
    sink = startServer("smtp-sink", smtpSinkCommand(port), port, workdir, pins.server)
    try:
        waitReady(sink)
        send = [sys.executable, str(ROOT / "bench" / "send.py"), "--impl", "smtptut"]
        send += ["--port", str(port), "--conns", str(conns), "--deadline", "60"]
        # A short run first sizes the profiled one to about `seconds`.
        probe = runTimed(pinned(pins.load, [*send, "--n", "2000"]), 60, workdir)
        rate = 2000 / max(probe.wall, 0.01)
        n = int(min(max(rate * seconds, 2000), 100_000)) // 100 * 100
        spy = _spyCommand(fmt, out, seconds * 4)
        run = runTimed(
            pinned(pins.load, [*spy, "--", *send, "--n", str(n)]), 120, workdir
        )
    finally:
        stopServer(sink)
    return f"client-c{conns}: {n} msgs, exit {run.returncode}, {run.wall:.2f} s with py-spy"


def _frameName(frame: str) -> str:
    # py-spy's raw frames read "function (path/to/module.py)".
    name, _, path = frame.rpartition(" (")
    path = path.rstrip(")")
    for marker in ("site-packages/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if str(ROOT) in path:
        path = path.split(str(ROOT) + "/", 1)[1]
    return f"{name} ({path})"


#: Where a sample is the process waiting, not working: py-spy's
#: --nonblocking cannot see that a thread sleeps in epoll_wait.
IDLE_LEAF = "EPollReactor.doPoll "
#: The frames from the interpreter's start down to the reactor's loop: on
#: every stack, so left out of the tables.
PLUMBING = ("twisted/application/", "twisted/scripts/", "ReactorBase.", "main (")


def summarize(raw: Path, within: str = "", top: int = TOP) -> list[str]:
    """
    The top functions of a py-spy raw (collapsed stacks) file, in Markdown:
    each one's inclusive share (samples with it anywhere on the stack) and
    self share (samples in it, not in what it calls), of the busy samples
    (not waiting in epoll) that have C{within} on their stack.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first frame is the thread
        if not frames or (within and not any(within in f for f in frames)):
            continue
        samples = int(count)
        if frames[-1].startswith(IDLE_LEAF):
            idle += samples
            continue
        total += samples
        names = [_frameName(f) for f in frames]
        for name in set(names):
            if not any(p in name for p in PLUMBING):
                inclusive[name] += samples
        own[names[-1]] += samples
    if not total:
        return ["(no samples)"]
    where = f" under `{within}`" if within else ""
    lines = [
        f"{total} busy samples{where} at {RATE}/s, shares of them below;"
        f" {idle} more waiting in epoll_wait (left out).",
        "",
        "| inclusive | function |",
        "|---:|---|",
    ]
    lines += [
        f"| {100 * n / total:.1f}% | `{name}` |"
        for name, n in inclusive.most_common(top)
    ]
    lines += ["", "| self | function |", "|---:|---|"]
    lines += [
        f"| {100 * n / total:.1f}% | `{name}` |" for name, n in own.most_common(top)
    ]
    return lines


def writeTable(name: str, label: str) -> Path:
    """
    bench/profiles/NAME-LABEL.md from the raw stacks of that profile.
    """
    raw = RESULTS / f"{name}-{label}.txt"
    # The client's own imports and start are not what is measured.
    within = "runSmtptut" if name.startswith("client") else ""
    table = PROFILES / f"{name}-{label}.md"
    table.write_text(
        "\n".join([f"# {name} ({label})", "", *summarize(raw, within), ""])
    )
    return table


def record(label: str, seconds: float, only: Sequence[str]) -> None:
    """
    Profile every scenario (or those named in C{only}): SVG, raw stacks and
    a table of shares, named by scenario and C{label}.
    """
    pins = _pins()
    PROFILES.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        workdir = Path(tmp)
        jobs: list[tuple[str, str | int]] = [
            (f"server-{s}", s) for s in SERVER_SCENARIOS
        ]
        jobs += [(f"client-c{c}", c) for c in CLIENT_CONNS]
        for name, what in jobs:
            if only and name not in only:
                continue
            svg = PROFILES / f"{name}-{label}.svg"
            raw = RESULTS / f"{name}-{label}.txt"
            # Two runs: py-spy writes one format a run.
            for fmt, out in (("flamegraph", svg), ("raw", raw)):
                if isinstance(what, str):
                    said = _recordServer(
                        _scenario(what), out, fmt, seconds, workdir, pins
                    )
                else:
                    said = _recordClient(what, out, fmt, seconds, workdir, pins)
                print(f"{fmt:10} {said}", flush=True)
            table = writeTable(name, label)
            print(f"wrote {svg.relative_to(ROOT)} and {table.relative_to(ROOT)}")


# -- before and after, measured in one run


def _exportTree(rev: str, into: Path) -> Path:
    tree = into / f"tree-{rev}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(
        ["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=60
    )
    return tree


def _serverOf(tree: Path, rev: str) -> ServerKind:
    """
    The console server as `make bench` runs it, with the code of C{tree}.
    """

    def command(port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        cmd, env = KINDS[SMTPTUT].command(port, workdir)
        cmd = [
            str(tree / "emailserver.tac") if c == "emailserver.tac" else c for c in cmd
        ]
        # PYTHONPATH comes before the editable install's path to this tree.
        return cmd, {**env, "PYTHONPATH": str(tree)}

    return ServerKind(f"smtptut@{rev}", f"smtptut at {rev}", command)


def _runClient(
    cell: ClientCell,
    port: int,
    workdir: Path,
    pins: Pins,
    tree: Path | None,
    env: Mapping[str, str] | None,
) -> None:
    if cell.impl == "smtp-source (C)":
        args = ["-d", "-s", str(cell.conns), "-m", str(cell.n), "-l", "1024"]
        run = runTimed(pinned(pins.load, smtpSourceCommand(args, port)), 60, workdir)
        if run.returncode == 0:
            cell.walls.append(run.wall)
            cell.cpus.append(run.cpu)
        else:
            cell.errors.append(f"exit {run.returncode}")
        return
    impl = "smtplib" if cell.impl == "smtplib" else "smtptut"
    # The script by its path: python -m would put this tree first on sys.path.
    script = (tree or ROOT) / "bench" / "send.py"
    cmd = [sys.executable, str(script), "--impl", impl, "--port", str(port)]
    cmd += ["--n", str(cell.n), "--conns", str(cell.conns), "--deadline", "30"]
    run = runTimed(pinned(pins.load, cmd), 60, workdir, env)
    try:
        report = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        cell.errors.append(f"exit {run.returncode}: {run.stderr[-300:]}")
        return
    if report["sent"] != cell.n:
        cell.errors.append(f"sent {report['sent']} of {cell.n}")
        return
    cell.walls.append(report["wall_s"])
    cell.cpus.append(report["cpu_s"])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _compareServers(
    scenario: Scenario,
    kinds: list[ServerKind],
    reps: int,
    seconds: float,
    workdir: Path,
    pins: Pins,
    log: list[str],
) -> list[Cell]:
    """
    The servers of C{kinds} and smtp-sink in one scenario, taking turns.

    Unlike L{runScenario}, the project's servers all get the same message
    count (sized on the last of them): a run's fixed costs (20 connections
    and their EHLO) weigh more in a shorter run, and sizing each server
    apart made whichever warmed up worse look worse still.
    """
    allKinds = [*kinds, KINDS[SMTP_SINK]]
    cells = [Cell(scenario.name, k.name) for k in allKinds]
    servers = []
    try:
        for kind in allKinds:
            servers.append(launch(kind, freePort(), workdir, pins.server))
        count = _calibrate(scenario, seconds, servers[-2], workdir, pins)
        for cell in cells[:-1]:
            cell.count = count
        cells[-1].count = _calibrate(scenario, seconds, servers[-1], workdir, pins)
        for server in servers[:-2]:
            _calibrate(scenario, seconds, server, workdir, pins)  # warm-up only
        pairs = list(zip(cells, servers, strict=True))
        for rep in range(reps):
            for cell, server in pairs[rep % len(pairs) :] + pairs[: rep % len(pairs)]:
                wall, cpu, loadCpu, error = _source(
                    scenario, cell.count, server, workdir, pins
                )
                if error:
                    cell.errors.append(error)
                else:
                    cell.walls.append(wall)
                    cell.serverCpu.append(cpu)
                    cell.loadCpu.append(loadCpu)
                line = (
                    f"{scenario.name} {cell.server} rep {rep + 1}: {cell.count} msgs"
                    f" in {wall:.2f} s = {cell.count / wall:.0f} msg/s {error}"
                )
                log.append(line)
                print(line, flush=True)
    finally:
        for server in servers:
            stopServer(server)
    return cells


def _pool(cell: Cell, more: Cell) -> None:
    """
    Add C{more}'s runs to C{cell}'s, scaled to C{cell}'s message count.
    """
    scale = cell.count / more.count if more.count else 1.0
    cell.walls += [w * scale for w in more.walls]
    cell.serverCpu += [c * scale for c in more.serverCpu]
    cell.loadCpu += [c * scale for c in more.loadCpu]
    cell.errors += more.errors


def compare(rev: str, reps: int, seconds: float, clientN: int) -> list[str]:
    """
    Server and client of this tree against those of C{rev}, in one run:
    Markdown lines of medians and ratios.
    """
    pins = _pins()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [
        f"Measured by `python -m bench.profile compare --before {rev}` on"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {reps} rounds"
        f" (configurations taking turns), load average at start {load}.",
        "",
        f"| scenario | this tree msg/s | {rev} msg/s | after/before"
        " | this tree x ref | before x ref | CPU ms/msg this tree / before"
        " | ref msg/s | this tree, each run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def row(name: str, count: int, new: Any, old: Any, ref: Any, refName: str) -> str:
        runs = " / ".join(f"{count / w:.0f}" for w in new.walls)
        return (
            f"| {name} | {new.rate:.0f} | {old.rate:.0f} | {_ratio(new.rate, old.rate)}"
            f" | {_ratio(new.rate, ref.rate)} | {_ratio(old.rate, ref.rate)}"
            f" | {new.cpuMsPerMessage:.3f} / {old.cpuMsPerMessage:.3f}"
            f" | {refName} {ref.rate:.0f} | {runs} |"
        )

    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        workdir = Path(tmp)
        tree = _exportTree(rev, workdir)
        before = _serverOf(tree, rev)
        # Both trees exported and run alike (PYTHONPATH), this one as HEAD's
        # commit plus nothing uncommitted.
        head = _exportTree("HEAD", workdir)
        after = _serverOf(head, "HEAD")
        for name in SERVER_SCENARIOS:
            # Half the rounds with each tree started first: the order the
            # servers start in showed in their rates.
            scenario = _scenario(name)
            new, old, ref = _compareServers(
                scenario, [after, before], (reps + 1) // 2, seconds, workdir, pins, log
            )
            old2, new2, ref2 = _compareServers(
                scenario, [before, after], reps // 2, seconds, workdir, pins, log
            )
            for pooled, more in ((new, new2), (old, old2), (ref, ref2)):
                _pool(pooled, more)
            lines.append(row(f"server {name}", new.count, new, old, ref, "smtp-sink"))
        port = freePort()
        sink = startServer(
            "smtp-sink", smtpSinkCommand(port), port, workdir, pins.server
        )
        beforeEnv = {"PYTHONPATH": str(tree)}
        headEnv = {"PYTHONPATH": str(head)}
        try:
            waitReady(sink)
            for conns in CLIENT_CONNS:
                cells2 = [
                    (ClientCell("smtptut", conns, clientN), head, headEnv),
                    (ClientCell("smtptut@" + rev, conns, clientN), tree, beforeEnv),
                    (ClientCell("smtplib", conns, clientN), None, None),
                    (ClientCell("smtp-source (C)", conns, clientN), None, None),
                ]
                for rep in range(reps):
                    turn = cells2[rep % 4 :] + cells2[: rep % 4]
                    for cell, cellTree, env in turn:
                        _runClient(cell, port, workdir, pins, cellTree, env)
                        said = (
                            f"{cell.n / cell.walls[-1]:.0f} msg/s"
                            if cell.walls
                            else " ".join(cell.errors)
                        )
                        print(f"client {cell.impl} c{conns} rep {rep + 1}: {said}")
                mine, theirs, lib, c = (cell for cell, _, _ in cells2)
                plural = "s" if conns > 1 else ""
                name = f"client, {conns} connection{plural}"
                lines.append(row(name, clientN, mine, theirs, lib, "smtplib"))
                lines.append(
                    f"| (smtp-source, {conns} connection{plural}) | {c.rate:.0f} | |"
                    f" | {_ratio(c.rate, lib.rate)} | | {c.cpuMsPerMessage:.3f} | | |"
                )
        finally:
            stopServer(sink)
    (RESULTS / "compare.log").write_text("\n".join(log) + "\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__
    )
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("record", help="flame graphs and tables under bench/profiles/")
    rec.add_argument("--label", required=True, help="before, after, ...")
    rec.add_argument("--seconds", type=float, default=6.0)
    rec.add_argument("--only", nargs="*", default=[], help="e.g. server-reuse-1k-s1")
    cmp = sub.add_parser("compare", help="msg/s of this tree and of REV, one run")
    cmp.add_argument("--before", required=True, metavar="REV")
    cmp.add_argument("--reps", type=int, default=5)
    cmp.add_argument("--seconds", type=float, default=1.5)
    cmp.add_argument("--client-n", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.what == "record":
        if not 1 <= args.seconds <= 60:
            parser.error("--seconds must be 1..60")
        record(args.label, args.seconds, args.only)
    else:
        if not 1 <= args.reps <= 21:
            parser.error("--reps must be 1..21")
        lines = compare(args.before, args.reps, args.seconds, args.client_n)
        out = RESULTS / "compare.md"
        out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
