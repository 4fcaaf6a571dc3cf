"""Section (b): client throughput into smtp-sink, the project's client against its peers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import (
    Medians,
    freePort,
    pinned,
    runTimed,
    smtpSinkCommand,
    smtpSourceCommand,
    startServer,
    stopServer,
    waitReady,
)
from bench.throughput import Pins

IMPLS = ("smtptut", "smtplib", "aiosmtplib")
REFERENCE = "smtp-source (C)"


@dataclass
class ClientCell(Medians):
    """
    One client over one or several connections: per-rep wall and CPU seconds.
    """

    impl: str
    conns: int
    n: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    maxrssKiB: int = 0
    errors: list[str] = field(default_factory=list)
    #: More options for C{python -m bench.send}, and how the tables call it.
    args: tuple[str, ...] = ()
    label: str = ""


def _runPython(cell: ClientCell, port: int, workdir: Path, pins: Pins) -> None:
    cmd = [sys.executable, "-m", "bench.send", "--impl", cell.impl, "--port", str(port)]
    cmd += ["--n", str(cell.n), "--conns", str(cell.conns), "--deadline", "60"]
    cmd += cell.args
    run = runTimed(pinned(pins.load, cmd), 90, workdir)
    try:
        report = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        cell.errors.append(
            f"exit {run.returncode}: {' '.join(run.stderr.split())[-300:]}"
        )
        return
    if report["sent"] != cell.n:
        # A partial run (deadline, refused messages) still gives a rate.
        cell.errors.append(f"sent {report['sent']} of {cell.n}")
    cell.walls.append(report["wall_s"] * cell.n / max(report["sent"], 1))
    cell.cpus.append(report["cpu_s"] * cell.n / max(report["sent"], 1))
    cell.maxrssKiB = max(cell.maxrssKiB, report["maxrss_kib"])


def _runReference(cell: ClientCell, port: int, workdir: Path, pins: Pins) -> None:
    args = ["-d", "-s", str(cell.conns), "-m", str(cell.n), "-l", "1024"]
    run = runTimed(pinned(pins.load, smtpSourceCommand(args, port)), 60, workdir)
    if run.returncode != 0:
        cell.errors.append(
            f"exit {run.returncode}: {' '.join(run.stderr.split())[-300:]}"
        )
        return
    cell.walls.append(run.wall)
    cell.cpus.append(run.cpu)
    cell.maxrssKiB = max(cell.maxrssKiB, run.maxrssKiB)


def runAll(
    n: int, reps: int, workdir: Path, pins: Pins, log: list[str]
) -> list[ClientCell]:
    """
    Every client over one connection and over 20, the configurations taking
    turns within each of C{reps} rounds, all against one smtp-sink.
    """
    cells = [ClientCell(impl, conns, n) for conns in (1, 20) for impl in IMPLS]
    cells += [ClientCell(REFERENCE, conns, n) for conns in (1, 20)]
    port = freePort()
    sink = startServer("smtp-sink", smtpSinkCommand(port), port, workdir, pins.server)
    try:
        waitReady(sink)
        for rep in range(reps):
            turn = cells[rep % len(cells) :] + cells[: rep % len(cells)]
            for cell in turn:
                mark = cell.mark()
                if cell.impl == REFERENCE:
                    _runReference(cell, port, workdir, pins)
                else:
                    _runPython(cell, port, workdir, pins)
                what = f"client {cell.impl:16} conns={cell.conns:<2} rep {rep + 1}"
                cell.report(what, cell.n, mark, log)
    finally:
        stopServer(sink)
    return cells


UNSIGNED = "unsigned"
SIGNED = "DKIM-signed (RSA 2048, rsa-sha256)"


def runDkim(
    n: int, reps: int, workdir: Path, pins: Pins, log: list[str]
) -> list[ClientCell]:
    """
    The project's client over one connection to smtp-sink, each 1 KiB
    message checked on its own, unsigned and DKIM-signed in turns: what
    signing costs per message.  Signing is slow (a few ms a message), so the
    signed runs send a quarter as many.
    """
    from smtptut.client.dkimkeys import KeyType, generateKey, writePrivateKey

    key = workdir / "dkim-bench.pem"
    writePrivateKey(str(key), generateKey(KeyType.RSA, 2048))
    cells = [
        ClientCell("smtptut", 1, n, args=("--each",), label=UNSIGNED),
        ClientCell(
            "smtptut", 1, max(n // 4, 1), args=("--dkim-key", str(key)), label=SIGNED
        ),
    ]
    port = freePort()
    sink = startServer("smtp-sink", smtpSinkCommand(port), port, workdir, pins.server)
    try:
        waitReady(sink)
        for rep in range(reps):
            for cell in cells if rep % 2 == 0 else cells[::-1]:
                mark = cell.mark()
                _runPython(cell, port, workdir, pins)
                cell.report(f"dkim {cell.label:36} rep {rep + 1}", cell.n, mark, log)
    finally:
        stopServer(sink)
        key.unlink(missing_ok=True)
    return cells
