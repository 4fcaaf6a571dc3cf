"""Section (f): the queue runner against `smtptut send`'s delivery, the same 10,000 messages.

What is compared (see RESULTS.md's section for why): the same 10,000
distinct 1 KiB messages to rcpt@bench.test, whose MX (127.0.0.1) comes from
the bench's loopback DNS server (bench/dns.py), delivered to one smtp-sink:

- queue runner: the messages are queued first, untimed, with the queue's own
  C{Queue.enqueue} exactly as C{smtptut send --queue-only} calls it (in one
  process and in threads: 10,000 processes would take an hour of interpreter
  starts), then C{smtptut queue run --once} (its C{queueMain}, in a child
  process, imports before the clock) delivers them with its defaults;
- `smtptut send`: in one child process, for each message what C{smtptut send}
  does after parsing its options (check the message, make its envelope, call
  L{smtptut.client.send.send}: MX lookup, one connection, the outcome line),
  as many at a time as the runner may open to one domain (its
  C{SMTPTUT_QUEUE_DOMAIN_CONCURRENCY}, 2).

Run as C{python -m bench.queued runner|direct ...} for one timed child; the
harness calls L{runAll}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import (
    ROOT,
    Medians,
    freePort,
    pinned,
    runTimed,
    smtpSinkCommand,
    startServer,
    stopServer,
    waitReady,
)
from bench.send import SENDER, benchMessage
from bench.throughput import Pins

COUNT = 10_000
RECIPIENT = "rcpt@bench.test"
#: The runner's default per-domain limit (smtptut/queue/settings.py), which
#: the direct sender matches.
DOMAIN_CONCURRENCY = 2
#: One child run may take this long before it is stopped.
RUN_LIMIT = 600.0


def message(i: int) -> bytes:
    """
    The C{i}th message: 1 KiB of body, its own Subject and Message-ID.
    """
    base = benchMessage(1024)
    return base.replace(b"Subject: bench", b"Subject: bench %d" % i, 1).replace(
        b"<bench@bench.test>", b"<bench%d@bench.test>" % i, 1
    )


def fillQueue(directory: Path, count: int, threads: int = 16) -> None:
    """
    Queue C{count} messages as C{smtptut send --queue-only} does (each
    checked, then C{Queue.enqueue}d durably), several at a time: each waits
    on its own fsyncs.
    """
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorTime

    from smtptut.client.message import checkMessage
    from smtptut.queue.outbound import messageChunks
    from smtptut.queue.store import Queue

    # Only its clock: the reactor does not run here.
    queue = Queue(str(directory), IReactorTime(reactor))

    def one(i: int) -> None:
        data = message(i)
        source = checkMessage(f"message {i}", lambda: io.BytesIO(data), "bench.test")
        queue.enqueue(SENDER, [RECIPIENT], messageChunks(source))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))


def clientEnvironment(nameserver: str, port: int) -> dict[str, str]:
    """
    How both sides deliver: MX through the loopback DNS only, the sink's port,
    no STARTTLS (smtp-sink offers none), a fixed EHLO name.
    """
    return {
        "SMTPTUT_NAMESERVER": nameserver,
        "SMTPTUT_PORT": str(port),
        "SMTPTUT_TLS": "off",
        "SMTPTUT_HELO": "bench.test",
        "SMTPTUT_FROM": SENDER,
        "SMTPTUT_TO": RECIPIENT,
    }


def _runnerMain(queue: str) -> dict[str, float]:
    from smtptut.queue.command import queueMain

    lines = [0]

    def write(line: str) -> None:
        lines[0] += 1
        print(line)

    start = time.perf_counter()
    status = queueMain(["run", "--once", "--queue", queue], write=write)
    wall = time.perf_counter() - start
    return {"status": status, "wall_s": wall, "lines": lines[0]}


def _directMain(count: int) -> dict[str, float]:
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredSemaphore, gatherResults

    from smtptut.client.delivery import envelopesByDomain
    from smtptut.client.message import checkMessage
    from smtptut.client.send import send
    from smtptut.client.settings import ClientSettings

    settings = ClientSettings.fromEnvironment(os.environ)
    messages = [message(i) for i in range(count)]
    statuses: list[int] = []
    limit = DeferredSemaphore(DOMAIN_CONCURRENCY)

    def one(data: bytes) -> object:
        source = checkMessage("message", lambda: io.BytesIO(data), "bench.test")
        envelopes = envelopesByDomain(settings, source)
        return send(reactor, settings, envelopes).addCallback(statuses.append)

    wall = [0.0]

    def start() -> None:
        began = time.perf_counter()
        done = gatherResults([limit.run(one, m) for m in messages])

        def finished(result: object) -> None:
            wall[0] = time.perf_counter() - began
            if reactor.running:  # not when stopped from outside (SIGTERM)
                reactor.stop()

        done.addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    delivered = sum(1 for s in statuses if s == 0)
    return {
        "status": 0 if delivered == count else 1,
        "wall_s": wall[0],
        "lines": delivered,
    }


@dataclass
class QueueCell(Medians):
    """
    One way of delivering the messages: per-rep wall and CPU seconds.
    """

    name: str
    n: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    maxrssKiB: int = 0
    errors: list[str] = field(default_factory=list)


RUNNER = "queue runner (smtptut queue run --once)"
DIRECT = "smtptut send's delivery, 2 at a time"


def startDNS(
    workdir: Path, cpu: int | None, limit: int = 1800
) -> tuple[subprocess.Popen[bytes], str]:
    """
    Start bench/dns.py (in its own group, under timeout) and read its address.
    """
    timeout = ["timeout", "-k", "5", str(limit)]
    dns = [sys.executable, "-m", "bench.dns", "--limit", str(limit)]
    cmd = pinned(cpu, [*timeout, *dns])
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "dns.stderr", "wb"),
        cwd=ROOT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.startswith("127.0.0.1:"):
        stopDNS(proc)
        raise RuntimeError(f"the bench's DNS server did not start: {line!r}")
    return proc, line


def stopDNS(proc: subprocess.Popen[bytes]) -> None:
    """
    Stop the DNS server's group by its own PID.
    """
    try:
        os.killpg(proc.pid, 15)
        proc.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(5)


def _child(
    cell: QueueCell, args: list[str], env: dict[str, str], workdir: Path, pins: Pins
) -> None:
    cmd = pinned(pins.load, [sys.executable, "-m", "bench.queued", *args])
    run = runTimed(cmd, RUN_LIMIT, workdir, env)
    try:
        report = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        cell.errors.append(
            f"exit {run.returncode}: {' '.join(run.stderr.split())[-300:]}"
        )
        return
    if report["status"] != 0:
        why = " ".join(run.stderr.split())[-200:]
        cell.errors.append(f"status {report['status']}: {why}")
        return
    cell.walls.append(report["wall_s"])
    cell.cpus.append(run.cpu)
    cell.maxrssKiB = max(cell.maxrssKiB, run.maxrssKiB)


def runAll(
    reps: int,
    workdir: Path,
    pins: Pins,
    log: list[str],
    count: int = COUNT,
    budget: float = 900.0,
    cells: list[QueueCell] | None = None,
) -> list[QueueCell]:
    """
    The runner and the direct sender in turns, C{reps} rounds, against one
    smtp-sink; the queue is filled once and copied afresh for each round.
    After the first round, none starts that would end after C{budget}
    seconds (as long as the last one took).

    @param cells: where the results go, as they come (kept if stopped).
    """
    cells = [] if cells is None else cells
    cells[:] = [QueueCell(RUNNER, count), QueueCell(DIRECT, count)]
    template = workdir / "queue-template"
    started = time.monotonic()
    fillQueue(template, count)
    line = f"queue: {count} messages queued in {time.monotonic() - started:.1f} s"
    log.append(line)
    print(line, flush=True)
    port = freePort()
    dns, nameserver = startDNS(workdir, pins.server, int(budget + 2 * RUN_LIMIT + 60))
    # Alive for the whole section (startServer's default limit is 300 s).
    life = int(budget + 2 * RUN_LIMIT + 60)
    sink = startServer(
        "smtp-sink", smtpSinkCommand(port), port, workdir, pins.server, limit=life
    )
    env = clientEnvironment(nameserver, port)
    try:
        waitReady(sink)
        roundStarted = time.monotonic()
        for rep in range(reps):
            now = time.monotonic()
            if rep and (now - started) + (now - roundStarted) > budget:
                line = f"queue: {rep} rounds only, the section's {budget:g} s are up"
                log.append(line)
                print(line, flush=True)
                break
            roundStarted = now
            for cell in cells if rep % 2 == 0 else cells[::-1]:
                mark = cell.mark()
                if cell.name == RUNNER:
                    queue = workdir / "queue"
                    shutil.rmtree(queue, ignore_errors=True)
                    shutil.copytree(template, queue)
                    # The copy's dirty pages are not the runner's to write.
                    os.sync()
                    _child(cell, ["runner", "--queue", str(queue)], env, workdir, pins)
                    left = os.listdir(queue / "entries")
                    if left and len(cell.walls) > mark[0]:
                        cell.errors.append(f"{len(left)} entries left in the queue")
                        cell.walls.pop()
                else:
                    _child(cell, ["direct", "--n", str(count)], env, workdir, pins)
                cell.report(f"queue {cell.name:40} rep {rep + 1}", count, mark, log)
    finally:
        stopServer(sink)
        stopDNS(dns)
        shutil.rmtree(template, ignore_errors=True)
        shutil.rmtree(workdir / "queue", ignore_errors=True)
    return cells


def main(argv: list[str] | None = None) -> int:
    """
    One timed child: C{runner --queue DIR} or C{direct --n N}; one JSON line.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.queued")
    parser.add_argument("mode", choices=["runner", "direct"])
    parser.add_argument("--queue")
    parser.add_argument("--n", type=int, default=COUNT)
    args = parser.parse_args(argv)
    # Imports before the clock, in both modes.
    import smtptut.client.send  # noqa: F401
    import smtptut.queue.command  # noqa: F401

    if args.mode == "runner":
        report = _runnerMain(args.queue)
    else:
        report = _directMain(args.n)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
