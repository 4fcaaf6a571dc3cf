"""Turn the three sections' measurements into RESULTS.md: tables, ratios, targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.clients import IMPLS, REFERENCE, ClientCell
from bench.memory import BIG, Peak
from bench.servers import AIOSMTPD, KINDS, SMTP_SINK, SMTPTUT
from bench.throughput import SCENARIOS, Cell

LIMIT_KIB = 64 * 1024


@dataclass(frozen=True)
class Target:
    """
    One of issue 6's targets: what it asks, what was measured, and whether met.
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


def serverTargets(cells: Sequence[Cell]) -> list[Target]:
    """
    The console server against aiosmtpd (2x) and smtp-sink (0.5x), 1 KiB scenarios.
    """
    byKey = {(c.scenario, c.server): c for c in cells}
    targets = []
    for scenario in (s for s in SCENARIOS if s.oneKiB):
        ours = byKey.get((scenario.name, SMTPTUT))
        for peer, want in ((AIOSMTPD, 2.0), (SMTP_SINK, 0.5)):
            other = byKey.get((scenario.name, peer))
            r = _ratio(ours.rate, other.rate) if ours and other else None
            targets.append(
                Target(
                    f"server {scenario.name}: >= {want:g}x {peer}",
                    _fmtRatio(r),
                    None if r is None else r >= want,
                )
            )
    return targets


def clientTargets(cells: Sequence[ClientCell]) -> list[Target]:
    """
    The project's client: 1x smtplib on one connection, 1.5x aiosmtplib on 20.
    """
    byKey = {(c.impl, c.conns): c for c in cells}
    targets = []
    for conns, peer, want in ((1, "smtplib", 1.0), (20, "aiosmtplib", 1.5)):
        ours, other = byKey.get(("smtptut", conns)), byKey.get((peer, conns))
        r = _ratio(ours.rate, other.rate) if ours and other else None
        what = (
            f"client, {conns} connection{'s' if conns > 1 else ''}: >= {want:g}x {peer}"
        )
        targets.append(Target(what, _fmtRatio(r), None if r is None else r >= want))
    return targets


def memoryTargets(peaks: Sequence[Peak]) -> list[Target]:
    """
    Peak RSS under 64 MiB for the project's server (each mode) and client.
    """
    targets = []
    for peak in peaks:
        if not peak.name.startswith("smtptut"):
            continue
        ok = peak.peakKiB is not None and not peak.error
        targets.append(
            Target(
                f"{peak.side} {peak.name} moving {BIG // 2**20} MiB: peak RSS < 64 MiB",
                f"{_mib(peak.peakKiB)} MiB" if ok else peak.error or "-",
                (peak.peakKiB or 0) < LIMIT_KIB if ok else None,
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
            runs = " / ".join(f"{cell.n / w:.0f}" for w in cell.walls)
            if cell.errors:
                runs += " (" + "; ".join(cell.errors)[:200] + ")"
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
