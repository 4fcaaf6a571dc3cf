"""Turn the sections' measurements into RESULTS.md: tables, ratios, targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.clients import IMPLS, REFERENCE, SIGNED, UNSIGNED, ClientCell
from bench.memory import BIG, Peak
from bench.procs import Medians
from bench.queued import DIRECT, RUNNER, QueueCell
from bench.servers import (
    AIOSMTPD,
    AIOSMTPD_MAILDIR,
    KINDS,
    SMTP_SINK,
    SMTPTUT,
    SMTPTUT_MAILDIR,
)
from bench.throughput import SCENARIOS, Cell

LIMIT_KIB = 64 * 1024


@dataclass(frozen=True)
class Target:
    """
    One of issue 13's targets: what it asks, what was measured, and whether met.
    """

    what: str
    measured: str
    met: bool | None  # None: could not be measured in this run


def _ratio(a: float, b: float) -> float | None:
    return a / b if a > 0 and b > 0 else None


def _fmtRatio(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None else "-"


def _mib(kib: int | None) -> str:
    return f"{max(kib, 0) / 1024:.1f}" if kib is not None else "-"


def _verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "not measured"}[met]


def _ratioTarget(
    what: str, ours: float | None, other: float | None, want: float
) -> Target:
    r = _ratio(ours, other) if ours and other else None
    return Target(what, _fmtRatio(r), None if r is None else r >= want)


def serverTargets(cells: Sequence[Cell]) -> list[Target]:
    """
    The console server (its transaction log line on) against smtp-sink
    (0.5x) and aiosmtpd (2x) in the 1 KiB scenarios; the Maildir server
    (fsync) against the console one with 20 sessions (0.7x) and against
    aiosmtpd's Mailbox handler in every scenario (2x).
    """
    rate = {(c.scenario, c.server): c.rate for c in cells}
    if not rate:
        return []
    targets = []
    for scenario in (s for s in SCENARIOS if s.oneKiB):
        name = scenario.name
        for peer, want in ((SMTP_SINK, 0.5), (AIOSMTPD, 2.0)):
            targets.append(
                _ratioTarget(
                    f"server console {name}: >= {want:g}x {peer}",
                    rate.get((name, SMTPTUT)),
                    rate.get((name, peer)),
                    want,
                )
            )
    for name in ("newconn-1k-s20", "reuse-1k-s20"):
        targets.append(
            _ratioTarget(
                f"server Maildir (fsync) {name}: >= 0.7x the console server",
                rate.get((name, SMTPTUT_MAILDIR)),
                rate.get((name, SMTPTUT)),
                0.7,
            )
        )
    for scenario in SCENARIOS:
        targets.append(
            _ratioTarget(
                f"server Maildir (fsync) {scenario.name}: >= 2x aiosmtpd Mailbox",
                rate.get((scenario.name, SMTPTUT_MAILDIR)),
                rate.get((scenario.name, AIOSMTPD_MAILDIR)),
                2.0,
            )
        )
    return targets


def clientTargets(cells: Sequence[ClientCell]) -> list[Target]:
    """
    The project's client: 1.5x smtplib on one connection and on 20.
    """
    byKey = {(c.impl, c.conns): c.rate for c in cells}
    if not byKey:
        return []
    return [
        _ratioTarget(
            f"client, {conns} connection{'s' if conns > 1 else ''}: >= 1.5x smtplib",
            byKey.get(("smtptut", conns)),
            byKey.get(("smtplib", conns)),
            1.5,
        )
        for conns in (1, 20)
    ]


def inboxTargets(ingest: dict[str, Any] | None) -> list[Target]:
    """
    Ingestion with the inbox and its index on: 0.8x with them off.
    """
    if not ingest:
        return []
    return [
        _ratioTarget(
            "inbox and index on: ingestion >= 0.8x with them off",
            ingest["on (msg/s)"],
            ingest["off (msg/s)"],
            0.8,
        )
    ]


def queueTargets(cells: Sequence[QueueCell]) -> list[Target]:
    """
    The queue runner: 0.8x `smtptut send` on the same messages.
    """
    rate = {c.name: c.rate for c in cells}
    if not rate:
        return []
    n = cells[0].n
    return [
        _ratioTarget(
            f"queue runner: >= 0.8x `smtptut send` on the same {n} messages",
            rate.get(RUNNER),
            rate.get(DIRECT),
            0.8,
        )
    ]


def dkimTargets(cells: Sequence[ClientCell]) -> list[Target]:
    """
    DKIM signing costs at most 25% of the unsigned rate (1 KiB messages).
    """
    rate = {c.label: c.rate for c in cells}
    if not rate:
        return []
    r = _ratio(rate.get(SIGNED, 0.0), rate.get(UNSIGNED, 0.0))
    return [
        Target(
            "DKIM signing (1 KiB messages): costs <= 25% of the unsigned rate",
            f"{1 - r:.0%} ({r:.2f}x)" if r is not None else "-",
            None if r is None else 1 - r <= 0.25,
        )
    ]


def memoryTargets(peaks: Sequence[Peak]) -> list[Target]:
    """
    Peak RSS at most 64 MiB for every process of the project moving the big
    message: the server (each mode), the client, and C{smtptut send} signed
    or not, queued or not, and the queue runner.
    """
    targets = []
    for peak in peaks:
        if not peak.name.startswith("smtptut"):
            continue
        ok = peak.peakKiB is not None and not peak.error
        targets.append(
            Target(
                f"{peak.side} {peak.name} moving {BIG // 2**20} MiB: peak RSS <= 64 MiB",
                f"{_mib(peak.peakKiB)} MiB" if ok else peak.error or "-",
                (peak.peakKiB or 0) <= LIMIT_KIB if ok else None,
            )
        )
    return targets


def serverTable(cells: Sequence[Cell]) -> list[str]:
    """
    One row per (scenario, server): median msg/s, the runs, CPU, ratios.
    """
    byKey = {(c.scenario, c.server): c for c in cells}
    rows = [
        "| scenario | server | msg/s (median) | msg/s of each run | msgs/run "
        "| server CPU ms/msg | smtp-source CPU busy | server peak RSS MiB "
        "| x aiosmtpd Sink | x aiosmtpd same job | x smtp-sink |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIOS:
        aio = byKey.get((scenario.name, AIOSMTPD))
        sink = byKey.get((scenario.name, SMTP_SINK))
        for kind in KINDS.values():
            cell = byKey.get((scenario.name, kind.name))
            if cell is None:
                continue
            if not cell.walls:
                why = cell.unavailable or "; ".join(cell.errors) or "no run"
                rows.append(
                    f"| {scenario.name} | {kind.label} | - | {why} | | | | | | | |"
                )
                continue
            runs = " / ".join(f"{cell.count / w:.0f}" for w in cell.walls)
            vsAio = _fmtRatio(_ratio(cell.rate, aio.rate)) if aio else "-"
            same = byKey.get((scenario.name, kind.sameJob or ""))
            vsSame = _fmtRatio(_ratio(cell.rate, same.rate)) if same else "-"
            vsSink = _fmtRatio(_ratio(cell.rate, sink.rate)) if sink else "-"
            rows.append(
                f"| {scenario.name} | {kind.label} | {cell.rate:.0f} | {runs} "
                f"| {cell.count} | {cell.cpuMsPerMessage:.3f} | {cell.loadBusy:.0%} "
                f"| {_mib(cell.peakKiB)} "
                f"| {vsAio} | {vsSame} | {vsSink} |"
            )
    return rows


def clientTable(cells: Sequence[ClientCell]) -> list[str]:
    """
    One row per (client, connections): median msg/s, the runs, CPU, ratios.
    """
    byKey = {(c.impl, c.conns): c for c in cells}
    rows = [
        "| client | connections | msg/s (median) | msg/s of each run "
        "| client CPU ms/msg | client peak RSS MiB | x smtplib | x aiosmtplib |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for conns in (1, 20):
        lib, aio = byKey.get(("smtplib", conns)), byKey.get(("aiosmtplib", conns))
        for impl in (*IMPLS, REFERENCE):
            cell = byKey.get((impl, conns))
            if cell is None:
                continue
            runs = _cellRuns(cell)
            rss = _mib(cell.maxrssKiB or None) if impl != REFERENCE else "-"
            rows.append(
                f"| {impl} | {conns} | {cell.rate:.0f} | {runs} "
                f"| {cell.cpuMsPerMessage:.3f} | {rss} "
                f"| {_fmtRatio(_ratio(cell.rate, lib.rate)) if lib else '-'} "
                f"| {_fmtRatio(_ratio(cell.rate, aio.rate)) if aio else '-'} |"
            )
    return rows


def memoryTable(peaks: Sequence[Peak]) -> list[str]:
    """
    One row per process moving the big message.
    """
    rows = [
        "| side | process | RSS high-water before, MiB | peak RSS, MiB | growth, MiB | seconds | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for p in peaks:
        label = KINDS[p.name].label if p.side == "server" else p.name
        growth = (
            _mib(p.peakKiB - p.idleKiB) if p.peakKiB and p.idleKiB is not None else "-"
        )
        rows.append(
            f"| {p.side} | {label} | {_mib(p.idleKiB)} | {_mib(p.peakKiB)} | {growth} "
            f"| {p.seconds:.2f} | {p.error} |"
        )
    return rows


def targetTable(targets: Sequence[Target]) -> list[str]:
    """
    Each target with what was measured and met / missed.
    """
    rows = ["| target | measured | verdict |", "|---|---:|---|"]
    rows += [f"| {t.what} | {t.measured} | {_verdict(t.met)} |" for t in targets]
    return rows


def _cellText(text: str, size: int = 200) -> str:
    """
    Error text for a table cell: one line, no column bars, at most C{size}.
    """
    return " ".join(text.split()).replace("|", "/")[:size]


def _runs(rates: Sequence[float]) -> str:
    return " / ".join(f"{r:.0f}" for r in rates)


def _cellRuns(cell: Medians) -> str:
    """
    Each run's msg/s, and the errors of the runs that failed.
    """
    runs = _runs([cell.n / w for w in cell.walls])
    if cell.errors:
        runs += " (" + _cellText("; ".join(cell.errors)) + ")"
    return runs


def inboxTable(ingest: dict[str, Any] | None) -> list[str]:
    """
    Ingestion into the Maildir, the inbox and index off and on.
    """
    if not ingest:
        return ["Not measured."]
    return [
        "| server | msg/s (median) | msg/s of each run | x inbox off |",
        "|---|---:|---|---:|",
        f"| inbox off (`--http off`) | {ingest['off (msg/s)']:.0f} "
        f"| {_runs(ingest['off runs'])} | 1.00x |",
        f"| inbox and index on | {ingest['on (msg/s)']:.0f} "
        f"| {_runs(ingest['on runs'])} | {ingest['ratio']:.2f}x |",
    ]


def queueTable(cells: Sequence[QueueCell]) -> list[str]:
    """
    The runner and the direct sender: msg/s, runs, CPU, RSS, ratio.
    """
    if not cells:
        return ["Not measured."]
    direct = next((c for c in cells if c.name == DIRECT), None)
    rows = [
        "| delivery | messages | msg/s (median) | msg/s of each run | CPU ms/msg "
        "| peak RSS MiB | x smtptut send |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for c in cells:
        runs = _cellRuns(c)
        vs = _fmtRatio(_ratio(c.rate, direct.rate)) if direct else "-"
        rows.append(
            f"| {c.name} | {c.n} | {c.rate:.0f} | {runs} | {c.cpuMsPerMessage:.2f} "
            f"| {_mib(c.maxrssKiB or None)} | {vs} |"
        )
    return rows


def dkimTable(cells: Sequence[ClientCell]) -> list[str]:
    """
    The client sending unsigned and DKIM-signed 1 KiB messages.
    """
    if not cells:
        return ["Not measured."]
    unsigned = next((c for c in cells if c.label == UNSIGNED), None)
    rows = [
        "| messages | per run | msg/s (median) | msg/s of each run | client CPU ms/msg "
        "| x unsigned |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for c in cells:
        runs = _cellRuns(c)
        vs = _fmtRatio(_ratio(c.rate, unsigned.rate)) if unsigned else "-"
        rows.append(
            f"| {c.label} | {c.n} | {c.rate:.0f} | {runs} | {c.cpuMsPerMessage:.3f} "
            f"| {vs} |"
        )
    return rows
