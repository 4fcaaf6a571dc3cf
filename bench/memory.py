"""Section (c): peak resident memory of servers receiving, and clients sending, 100 MiB."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import (
    HOST,
    freePort,
    pinned,
    runTimed,
    smtpSinkCommand,
    smtpSourceCommand,
    startServer,
    statusKiB,
    stopServer,
    waitReady,
)
from bench.send import RECIPIENT, SENDER, writeBenchMessage
from bench.servers import BIN, KINDS, Unavailable, launch, maildirOf
from bench.throughput import Pins

BIG = 100 * 2**20
#: The project's server refuses more than 25 MiB by default (SIZE); raise it.
BIG_SERVER_ENV = {"SMTPTUT_MAX_SIZE": str(4 * BIG)}


@dataclass
class Peak:
    """
    One process moving the big message: RSS before it, the peak, and the outcome.
    """

    side: str
    name: str
    idleKiB: int | None = None
    peakKiB: int | None = None
    seconds: float = float("nan")
    error: str = ""


def _serverPeak(name: str, workdir: Path, pins: Pins) -> Peak:
    peak = Peak("server", name)
    try:
        server = launch(KINDS[name], freePort(), workdir, pins.server, BIG_SERVER_ENV)
    except Unavailable as e:
        peak.error = f"not run: {e}"
        return peak
    except (RuntimeError, OSError) as e:
        peak.error = f"did not start: {e}"
        return peak
    try:
        peak.idleKiB = statusKiB(server.pid, "VmHWM")
        args = ["-s", "1", "-m", "1", "-l", str(BIG)]
        cmd = pinned(pins.load, smtpSourceCommand(args, server.port))
        run = runTimed(cmd, 120, workdir)
        peak.seconds = run.wall
        peak.peakKiB = statusKiB(server.pid, "VmHWM")
        if run.returncode != 0 or run.stderr.strip():
            peak.error = (
                f"smtp-source exit {run.returncode}: "
                + " ".join(run.stderr.split())[-300:]
            )
        maildir = maildirOf(server)
        if maildir is not None:
            stored = max(
                (p.stat().st_size for p in (maildir / "new").iterdir()), default=0
            )
            # Stored with LF line ends: 80-octet CRLF lines shrink by 1/80.
            if stored < BIG * 0.95:
                peak.error += f" the largest Maildir file is only {stored} octets"
                peak.error = peak.error.strip()
            shutil.rmtree(maildir, ignore_errors=True)
    finally:
        stopServer(server)
    return peak


def _clientPeak(impl: str, path: Path, port: int, workdir: Path, pins: Pins) -> Peak:
    peak = Peak("client", impl)
    cmd = [sys.executable, "-m", "bench.send", "--impl", impl, "--port", str(port)]
    cmd += ["--n", "1", "--data", str(path), "--deadline", "100"]
    run = runTimed(pinned(pins.load, cmd), 120, workdir)
    peak.seconds = run.wall
    try:
        report = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        peak.error = f"exit {run.returncode}: " + " ".join(run.stderr.split())[-300:]
        return peak
    peak.idleKiB = report["idle_maxrss_kib"]
    peak.peakKiB = report["maxrss_kib"]
    peak.seconds = report["wall_s"]
    if report["sent"] != 1:
        peak.error = "the message was not accepted"
    return peak


#: The C{smtptut} commands measured moving the big message (section (c)).
CLI_SEND = "smtptut send (CLI)"
CLI_DKIM = "smtptut send --dkim-key (CLI, RSA 2048)"
CLI_QUEUE = "smtptut send --queue --queue-only (CLI)"
CLI_RUN = "smtptut queue run --once (CLI)"


def _cliPeak(
    name: str,
    args: list[str],
    workdir: Path,
    pins: Pins,
    env: dict[str, str] | None = None,
) -> Peak:
    """
    One of the project's own commands, C{smtptut ARGS}, through GNU time
    (C{%M}: the peak RSS of the command alone; a fork of this Python would
    inherit ours).
    """
    peak = Peak("client", name)
    cmd = ["/usr/bin/time", "-f", "%M", str(BIN / "smtptut"), *args]
    run = runTimed(pinned(pins.load, cmd), 120, workdir, env)
    peak.seconds = run.wall
    lines = run.stderr.strip().splitlines()
    if lines and lines[-1].isdigit():
        peak.peakKiB = int(lines[-1])
    if run.returncode != 0:
        peak.error = f"exit {run.returncode}: " + " ".join(run.stderr.split())[-300:]
    return peak


def _cliPeaks(path: Path, port: int, workdir: Path, pins: Pins) -> list[Peak]:
    """
    C{smtptut send} of the big message: as it is, DKIM-signed, queued
    (C{--queue-only}), and the queue runner delivering it (C{queue run
    --once}); all to smtp-sink through C{--relay} (an address: no lookup).
    """
    from smtptut.client.dkimkeys import KeyType, generateKey, writePrivateKey

    relay = ["--relay", f"{HOST}:{port}", "--tls", "off"]
    message = ["--from", SENDER, "--to", RECIPIENT, "--data", str(path)]
    key = workdir / "dkim-memory.pem"
    writePrivateKey(str(key), generateKey(KeyType.RSA, 2048))
    dkim = ["--dkim-key", str(key), "--dkim-selector", "bench"]
    queue = workdir / "big-queue"
    peaks = [
        _cliPeak(CLI_SEND, ["send", *relay, *message], workdir, pins),
        _cliPeak(CLI_DKIM, ["send", *relay, *message, *dkim], workdir, pins),
        _cliPeak(
            CLI_QUEUE,
            ["send", *message, "--queue", str(queue), "--queue-only"],
            workdir,
            pins,
        ),
    ]
    env = {"SMTPTUT_RELAY": f"{HOST}:{port}", "SMTPTUT_TLS": "off"}
    run = _cliPeak(
        CLI_RUN, ["queue", "run", "--once", "--queue", str(queue)], workdir, pins, env
    )
    left = os.listdir(queue / "entries") if (queue / "entries").is_dir() else None
    if left is None or left:
        run.error = (
            run.error + " the message was not delivered from the queue"
        ).strip()
    peaks.append(run)
    shutil.rmtree(queue, ignore_errors=True)
    key.unlink(missing_ok=True)
    return peaks


def runAll(workdir: Path, pins: Pins, log: list[str]) -> list[Peak]:
    """
    Each server receiving one 100 MiB message from smtp-source, then each client
    sending one 100 MiB message file to smtp-sink.
    """
    peaks = [_serverPeak(k.name, workdir, pins) for k in KINDS.values() if k.memory]
    path = workdir / "big-message.eml"
    writeBenchMessage(path, BIG)
    port = freePort()
    sink = startServer("smtp-sink", smtpSinkCommand(port), port, workdir, pins.server)
    try:
        waitReady(sink)
        peaks += [
            _clientPeak(impl, path, port, workdir, pins)
            for impl in ("smtptut", "smtplib", "aiosmtplib")
        ]
        peaks += _cliPeaks(path, port, workdir, pins)
    finally:
        stopServer(sink)
        path.unlink(missing_ok=True)
    for peak in peaks:
        line = (
            f"memory {peak.side} {peak.name:16} idle {peak.idleKiB} KiB, "
            f"peak {peak.peakKiB} KiB, {peak.seconds:.2f} s {peak.error}"
        )
        log.append(line)
        print(line, flush=True)
    return peaks
