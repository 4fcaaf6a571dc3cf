"""The charts of RESULTS.md (PNG beside it), drawn with matplotlib's Agg backend.

matplotlib is the project's `bench` extra (bench/setup.sh installs it);
without it the charts are left out and RESULTS.md says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.clients import IMPLS, REFERENCE, ClientCell
from bench.memory import BIG, Peak
from bench.servers import KINDS
from bench.throughput import SCENARIOS, Cell

SERVERS_PNG = "chart-servers.png"
CLIENTS_PNG = "chart-clients.png"
MEMORY_PNG = "chart-memory.png"

LIMIT_MIB = 64


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def available() -> str | None:
    """
    Why the charts cannot be drawn, or L{None} when they can.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "not drawn: matplotlib is missing (bash bench/setup.sh installs it)"
    return None


def _label(ax: Any, bars: Any, values: Sequence[float], fmt: str = "{:.0f}") -> None:
    for bar, value in zip(bars, values, strict=True):
        if value > 0:
            ax.annotate(
                fmt.format(value),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
            )


def serverChart(cells: Sequence[Cell], path: Path) -> None:
    """
    msg/s of every server in every scenario, the servers side by side in each
    scenario's group; a log scale, since smtp-sink and aiosmtpd's Mailbox
    handler are two orders of magnitude apart.
    """
    plt = _pyplot()
    byKey = {(c.scenario, c.server): c.rate for c in cells}
    kinds = [k for k in KINDS.values() if any(c.server == k.name for c in cells)]
    scenarios = [s.name for s in SCENARIOS if any(c.scenario == s.name for c in cells)]
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    width = 0.8 / max(len(kinds), 1)
    for i, kind in enumerate(kinds):
        values = [byKey.get((s, kind.name), 0.0) for s in scenarios]
        xs = [j + (i - (len(kinds) - 1) / 2) * width for j in range(len(scenarios))]
        bars = ax.bar(xs, values, width, label=kind.label)
        _label(ax, bars, values)
    ax.set_yscale("log")
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("messages per second (median, log scale)")
    ax.set_title("Servers under smtp-source load (more is better)")
    ax.legend(fontsize=7, loc="upper right", ncols=2)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.set_ylim(top=ax.get_ylim()[1] * 4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def clientChart(cells: Sequence[ClientCell], path: Path) -> None:
    """
    msg/s of each client into smtp-sink, over one connection and over 20.
    """
    plt = _pyplot()
    byKey = {(c.impl, c.conns): c.rate for c in cells}
    impls = [i for i in (*IMPLS, REFERENCE) if any(c.impl == i for c in cells)]
    groups = sorted({c.conns for c in cells})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    width = 0.8 / max(len(impls), 1)
    for i, impl in enumerate(impls):
        values = [byKey.get((impl, g), 0.0) for g in groups]
        xs = [j + (i - (len(impls) - 1) / 2) * width for j in range(len(groups))]
        bars = ax.bar(xs, values, width, label=impl)
        _label(ax, bars, values)
    ax.set_xticks(
        range(len(groups)), [f"{g} connection{'s' if g > 1 else ''}" for g in groups]
    )
    ax.set_ylabel("messages per second (median)")
    ax.set_title("Clients sending 1 KiB messages to smtp-sink (more is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.15)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def memoryChart(peaks: Sequence[Peak], path: Path) -> None:
    """
    Peak RSS of each process moving the big message, against the 64 MiB line.
    """
    plt = _pyplot()
    shown = [p for p in peaks if p.peakKiB]
    labels = [
        f"{p.side}: {KINDS[p.name].label if p.side == 'server' else p.name}"
        for p in shown
    ]
    values = [(p.peakKiB or 0) / 1024 for p in shown]
    colours = [
        "tab:blue" if p.name.startswith("smtptut") else "tab:gray" for p in shown
    ]
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.38 * len(shown)), dpi=110)
    bars = ax.barh(range(len(shown)), values, color=colours)
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(LIMIT_MIB, color="tab:red", linestyle="--", linewidth=1)
    ax.annotate(
        f"{LIMIT_MIB} MiB target",
        (LIMIT_MIB, 0),
        xytext=(3, 0),
        textcoords="offset points",
        color="tab:red",
        fontsize=7,
        va="center",
    )
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(
            f"{value:.0f}",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.set_xlabel("peak RSS, MiB (smtptut in blue)")
    ax.set_title(f"Peak memory moving one {BIG // 2**20} MiB message (less is better)")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def drawAll(
    directory: Path,
    servers: Sequence[Cell],
    clients: Sequence[ClientCell],
    peaks: Sequence[Peak],
) -> dict[str, str]:
    """
    Draw the charts there is data for; what RESULTS.md embeds for each
    section (C{servers}, C{clients}, C{memory}): an image line, or why not.
    """
    why = available()
    sections = {"servers": servers, "clients": clients, "memory": peaks}
    if why is not None:
        return {name: why for name, data in sections.items() if data}
    embeds = {}
    if servers:
        serverChart(servers, directory / SERVERS_PNG)
        embeds["servers"] = f"![msg/s per server and scenario]({SERVERS_PNG})"
    if clients:
        clientChart(clients, directory / CLIENTS_PNG)
        embeds["clients"] = f"![client msg/s against its peers]({CLIENTS_PNG})"
    if peaks:
        memoryChart(peaks, directory / MEMORY_PNG)
        embeds["memory"] = f"![peak RSS moving {BIG // 2**20} MiB]({MEMORY_PNG})"
    return embeds
