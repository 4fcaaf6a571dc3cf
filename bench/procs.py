"""Start, watch and stop benchmark processes, each by its own PID and group."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
ROOT = Path(__file__).resolve().parent.parent


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that is free right now (the kernel picks it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: int | None, cmd: Sequence[str]) -> list[str]:
    """
    C{cmd} run on one CPU with taskset, or as it is when C{cpu} is L{None}.
    """
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + list(cmd)


def smtpSinkCommand(port: int) -> list[str]:
    """
    Postfix's C{smtp-sink} on 127.0.0.1:PORT; as root it needs C{-u nobody}.
    """
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return [SMTP_SINK, *user, f"{HOST}:{port}", "256"]


def smtpSourceCommand(args: Sequence[str], port: int) -> list[str]:
    """
    Postfix's C{smtp-source} with the bench envelope, loading 127.0.0.1:PORT.
    """
    envelope = ["-f", "sender@bench.test", "-t", "rcpt@bench.test", "-M", "bench.test"]
    return [SMTP_SOURCE, *envelope, *args, f"{HOST}:{port}"]


@dataclass
class Server:
    """
    A server started under C{timeout} in its own process group.

    @ivar pid: the server itself (the child of C{timeout}), for /proc readings.
    """

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    stderrPath: Path
    pid: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def stderrTail(self, size: int = 600) -> str:
        """
        The end of what the server wrote to stderr, on one line.
        """
        try:
            text = self.stderrPath.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""
        return " ".join(text.split())


def startServer(
    name: str,
    cmd: Sequence[str],
    port: int,
    workdir: Path,
    cpu: int | None,
    env: Mapping[str, str] | None = None,
    limit: int = 300,
) -> Server:
    """
    Start C{cmd} pinned to C{cpu}, under C{timeout LIMIT}, stdout to /dev/null.
    """
    stderrPath = workdir / f"{name}-{port}.stderr"
    full = pinned(cpu, ["timeout", "-k", "5", str(limit), *cmd])
    with open(stderrPath, "wb") as err:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Server(name, port, proc, stderrPath)


def waitReady(server: Server, seconds: float = 20.0) -> None:
    """
    Poll until the server greets with 220 (bounded), then find its real PID.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}: "
                f"{server.stderrTail()}"
            )
        if _greets(server.port):
            server.pid = childPid(server.proc.pid)
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} did not answer on port {server.port} in {seconds:g} s"
    )


def _greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.settimeout(3)
            banner = s.recv(512)
            s.sendall(b"QUIT\r\n")
            try:
                s.recv(512)
            except OSError:
                pass
            return banner.startswith(b"220")
    except OSError:
        return False


def childPid(pid: int) -> int:
    """
    The first child of C{pid} (C{timeout} forks the real server), or C{pid}.
    """
    for _ in range(50):
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    return pid


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU seconds used so far by C{pid}.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def statusKiB(pid: int, key: str) -> int | None:
    """
    A C{/proc/PID/status} figure in KiB, such as C{VmHWM} (peak RSS) or C{VmRSS}.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def stopServer(server: Server) -> None:
    """
    SIGTERM the server's own process group, then SIGKILL it if it lingers.
    """
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Timed:
    """
    One bounded child run: exit status, wall seconds, its CPU seconds, stderr.
    """

    returncode: int
    wall: float
    cpu: float
    maxrssKiB: int
    stdout: str
    stderr: str


def runTimed(
    cmd: Sequence[str],
    limit: float,
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Timed:
    """
    Run C{cmd} under C{timeout LIMIT}; wall time, and CPU and peak RSS from wait4.
    """
    full = ["timeout", "-k", "5", f"{limit:g}", *cmd]
    outPath, errPath = workdir / "child.stdout", workdir / "child.stderr"
    with open(outPath, "wb") as out, open(errPath, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            # Bounded: timeout(1) ends the child at LIMIT, and SIGKILLs it 5 s later.
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Stopped from outside (SIGTERM, ^C): take the child's group with us.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Timed(
        proc.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        outPath.read_text("utf-8", "replace"),
        errPath.read_text("utf-8", "replace"),
    )


class Medians:
    """
    The medians of a measurement's runs: C{n} messages a run, each run's
    wall and CPU seconds.
    """

    n: int
    walls: list[float]
    cpus: list[float]
    errors: list[str]

    def mark(self) -> tuple[int, int]:
        """
        Where the next run's wall time and errors will be (for L{report}).
        """
        return len(self.walls), len(self.errors)

    def report(
        self, what: str, count: int, mark: tuple[int, int], log: list[str]
    ) -> None:
        """
        Log and print the line of the run started at C{mark}: C{count}
        messages, its rate, and its errors.
        """
        walls, errors = mark
        wall = self.walls[-1] if len(self.walls) > walls else float("nan")
        line = (
            f"{what}: {count} msgs in {wall:.2f} s = {count / wall:.0f} msg/s "
            + " ".join(self.errors[errors:])
        )
        log.append(line)
        print(line, flush=True)

    @property
    def rate(self) -> float:
        """
        Messages per second at the median wall time (0 when nothing ran).
        """
        return self.n / statistics.median(self.walls) if self.walls else 0.0

    @property
    def cpuMsPerMessage(self) -> float:
        """
        The median CPU milliseconds per message of the measured process.
        """
        return (
            statistics.median(self.cpus) * 1000 / self.n if self.cpus else float("nan")
        )
