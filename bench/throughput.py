"""Section (a): server throughput under smtp-source load, all servers side by side."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import (
    Server,
    cpuSeconds,
    freePort,
    pinned,
    runTimed,
    smtpSourceCommand,
    statusKiB,
    stopServer,
)
from bench.servers import KINDS, ServerKind, Unavailable, launch


@dataclass(frozen=True)
class Scenario:
    """
    One smtp-source load: its options (without C{-m}) and a message-count range.
    """

    name: str
    args: tuple[str, ...]
    description: str
    warmup: int
    low: int
    high: int
    oneKiB: bool


SCENARIOS = [
    Scenario(
        "newconn-1k-s20",
        ("-s", "20", "-l", "1024"),
        "20 sessions, a new connection per 1 KiB message",
        100,
        1000,
        8000,
        True,
    ),
    Scenario(
        "reuse-1k-s20",
        ("-d", "-s", "20", "-l", "1024"),
        "20 sessions, connections reused, 1 KiB messages",
        100,
        1000,
        40000,
        True,
    ),
    Scenario(
        "reuse-1k-s1",
        ("-d", "-s", "1", "-l", "1024"),
        "one session, connection reused, 1 KiB messages (latency bound)",
        100,
        500,
        8000,
        True,
    ),
    Scenario(
        "reuse-100k-s20",
        ("-d", "-s", "20", "-l", "102400"),
        "20 sessions, connections reused, 100 KiB messages",
        20,
        100,
        3000,
        False,
    ),
]


@dataclass
class Cell:
    """
    One server in one scenario: per-rep wall and server CPU seconds.
    """

    scenario: str
    server: str
    count: int = 0
    walls: list[float] = field(default_factory=list)
    serverCpu: list[float] = field(default_factory=list)
    loadCpu: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peakKiB: int | None = None
    unavailable: str = ""

    @property
    def rate(self) -> float:
        """
        Messages per second at the median wall time (0 when nothing ran).
        """
        return self.count / statistics.median(self.walls) if self.walls else 0.0

    @property
    def loadBusy(self) -> float:
        """
        The load generator's median CPU seconds per wall second (1.0: it was
        the bottleneck on its one CPU).
        """
        if not self.walls:
            return float("nan")
        return statistics.median(
            c / w for c, w in zip(self.loadCpu, self.walls, strict=True)
        )

    @property
    def cpuMsPerMessage(self) -> float:
        """
        The server's median CPU milliseconds per message.
        """
        if not self.serverCpu or not self.count:
            return float("nan")
        return statistics.median(self.serverCpu) * 1000 / self.count


@dataclass
class Pins:
    """
    Which CPU the servers and the load generator run on (None: not pinned).
    """

    server: int | None
    load: int | None


def _niceCount(value: float, low: int, high: int) -> int:
    value = min(max(value, low), high)
    step = 10 ** max(len(str(int(value))) - 2, 0)
    return int(round(value / step) * step)


def _source(
    scenario: Scenario, count: int, server: Server, workdir: Path, pins: Pins
) -> tuple[float, float, float, str]:
    """
    One smtp-source run: wall seconds, server and smtp-source CPU seconds, and
    any error text.
    """
    args = [*scenario.args, "-m", str(count)]
    before = cpuSeconds(server.pid)
    limit = 60.0
    run = runTimed(
        pinned(pins.load, smtpSourceCommand(args, server.port)), limit, workdir
    )
    cpu = cpuSeconds(server.pid) - before
    error = ""
    if run.returncode != 0:
        error = (
            f"smtp-source exit {run.returncode}: {' '.join(run.stderr.split())[-300:]}"
        )
    elif run.stderr.strip():
        error = " ".join(run.stderr.split())[-300:]
    return run.wall, cpu, run.cpu, error


def _calibrate(
    scenario: Scenario, seconds: float, server: Server, workdir: Path, pins: Pins
) -> int:
    """
    Warm the server up, then find the message count that takes about C{seconds}
    (a short warm-up underrates fast servers, so a second run refines it).
    """
    count = scenario.warmup
    for share in (seconds / 4, seconds):
        wall, _, _, error = _source(scenario, count, server, workdir, pins)
        if error:
            raise RuntimeError(f"warm-up: {error}")
        count = _niceCount(count / max(wall, 0.01) * share, scenario.low, scenario.high)
    return count


def _say(log: list[str], line: str) -> None:
    log.append(line)
    print(line, flush=True)


def runScenario(
    scenario: Scenario,
    kinds: list[ServerKind],
    reps: int,
    seconds: float,
    workdir: Path,
    pins: Pins,
    log: list[str],
) -> list[Cell]:
    """
    Start every server, size each one's run to about C{seconds} from a warm-up,
    then run C{reps} rounds, the servers taking turns within each round.
    """
    cells = {kind.name: Cell(scenario.name, kind.name) for kind in kinds}
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            try:
                server = launch(kind, freePort(), workdir, pins.server)
            except Unavailable as e:
                cells[kind.name].unavailable = str(e)
                _say(log, f"{scenario.name} {kind.name}: not run: {e}")
                continue
            except (RuntimeError, OSError) as e:
                cells[kind.name].errors.append(f"not run: {e}")
                _say(log, f"{scenario.name} {kind.name}: not run: {e}")
                continue
            servers[kind.name] = server
            try:
                cells[kind.name].count = _calibrate(
                    scenario, seconds, server, workdir, pins
                )
            except RuntimeError as e:
                cells[kind.name].errors.append(str(e))
                _say(log, f"{scenario.name} {kind.name}: {e}")
                stopServer(servers.pop(kind.name))
        order = list(servers)
        for rep in range(reps):
            turn = order[rep % len(order) :] + order[: rep % len(order)]
            for name in turn:
                cell = cells[name]
                wall, cpu, loadCpu, error = _source(
                    scenario, cell.count, servers[name], workdir, pins
                )
                if error:
                    cell.errors.append(error)
                else:
                    cell.walls.append(wall)
                    cell.serverCpu.append(cpu)
                    cell.loadCpu.append(loadCpu)
                _say(
                    log,
                    f"{scenario.name:15} {name:16} rep {rep + 1}: {cell.count} msgs "
                    f"in {wall:.2f} s = {cell.count / wall:.0f} msg/s {error}",
                )
        for name, server in servers.items():
            cells[name].peakKiB = statusKiB(server.pid, "VmHWM")
    finally:
        for server in servers.values():
            stopServer(server)
    return [cells[kind.name] for kind in kinds]


def runAll(
    reps: int,
    seconds: float,
    workdir: Path,
    pins: Pins,
    log: list[str],
    cells: list[Cell] | None = None,
) -> list[Cell]:
    """
    Every scenario against every server kind.

    @param cells: where each scenario's results go once it is done (kept
        if the section is stopped).
    """
    cells = [] if cells is None else cells
    kinds = list(KINDS.values())
    missing: dict[str, str] = {}
    for scenario in SCENARIOS:
        scenarioDir = workdir / scenario.name
        scenarioDir.mkdir(parents=True, exist_ok=True)
        found = runScenario(scenario, kinds, reps, seconds, scenarioDir, pins, log)
        # A server that lacks a feature is tried once, then carried as "not run".
        cells += found + [
            Cell(scenario.name, n, unavailable=u) for n, u in missing.items()
        ]
        missing.update({c.server: c.unavailable for c in found if c.unavailable})
        kinds = [k for k in kinds if k.name not in missing]
    return cells
