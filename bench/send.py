"""One client run (`python -m bench.send`): send N messages, print one JSON line."""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
SENDER = "sender@bench.test"
RECIPIENT = "rcpt@bench.test"


def benchMessage(bodySize: int = 1024) -> bytes:
    """
    A message with the usual headers and a body of C{bodySize} octets in
    80-column CRLF lines.
    """
    headers = (
        b"From: <sender@bench.test>\r\nTo: <rcpt@bench.test>\r\nSubject: bench\r\n"
        b"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <bench@bench.test>\r\n\r\n"
    )
    line = b"X" * 78 + b"\r\n"
    body = (line * (bodySize // len(line) + 1))[:bodySize]
    if body and not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n"
    return headers + body


def writeBenchMessage(path: Path, bodySize: int) -> None:
    """
    Write a message like L{benchMessage} to C{path} without holding it whole.
    """
    block = b"X" * 78 + b"\r\n"
    lines = bodySize // len(block)
    with open(path, "wb") as f:
        f.write(benchMessage(0))
        chunk = block * 1024
        for _ in range(lines // 1024):
            f.write(chunk)
        f.write(block * (lines % 1024))


@dataclass
class Job:
    """
    What to send: how many messages over how many connections, and where.
    """

    port: int
    n: int
    conns: int
    deadline: float
    message: bytes
    path: str | None
    #: smtptut only: check (and with a key, DKIM-sign) each message on its
    #: own, as C{smtptut send} does for every message it sends.
    each: bool = False
    dkimKey: str | None = None

    def shares(self) -> list[int]:
        """
        The number of messages each connection sends.
        """
        k = max(1, min(self.conns, self.n))
        return [self.n // k + (1 if i < self.n % k else 0) for i in range(k)]

    def payload(self) -> bytes:
        """
        The message as bytes (the libraries that take nothing else need this).
        """
        return Path(self.path).read_bytes() if self.path else self.message


def runSmtplib(job: Job) -> int:
    """
    smtplib, one thread per connection, C{sendmail} for each message.
    """
    import smtplib

    payload = job.payload()
    sent = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + job.deadline

    def connection(count: int) -> None:
        with smtplib.SMTP(HOST, job.port, "bench.test", timeout=30) as client:
            for _ in range(count):
                if time.monotonic() > deadline:
                    break
                client.sendmail(SENDER, [RECIPIENT], payload)
                with lock:
                    sent[0] += 1

    threads = [threading.Thread(target=connection, args=(c,)) for c in job.shares()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(job.deadline + 30)
    return sent[0]


def runAiosmtplib(job: Job) -> int:
    """
    aiosmtplib, one task per connection, C{sendmail} for each message.
    """
    import asyncio

    import aiosmtplib

    payload = job.payload()
    sent = [0]

    async def connection(count: int) -> None:
        client = aiosmtplib.SMTP(
            hostname=HOST,
            port=job.port,
            local_hostname="bench.test",
            start_tls=False,
            timeout=30,
        )
        async with client:
            for _ in range(count):
                await client.sendmail(SENDER, [RECIPIENT], payload)
                sent[0] += 1

    async def everything() -> None:
        tasks = asyncio.gather(*(connection(c) for c in job.shares()))
        try:
            await asyncio.wait_for(tasks, job.deadline)
        except TimeoutError:
            pass

    asyncio.run(everything())
    return sent[0]


def runSmtptut(job: Job) -> int:
    """
    The project's client: one L{SMTPClientFactory} per connection, each given
    its share of the envelopes to send over that one connection.
    """
    from twisted.internet import defer, reactor

    from smtptut.client.dkim import signMessage
    from smtptut.client.dkimkeys import DKIMSigning, loadKey
    from smtptut.client.message import MessageSource, checkMessage, messageFromPath
    from smtptut.client.model import AttemptResult, Envelope, Status
    from smtptut.client.protocol import SMTPClientFactory

    signing = DKIMSigning(
        (loadKey(job.dkimKey, "bench"),) if job.dkimKey else (), "bench.test"
    )

    def prepared() -> MessageSource:
        if job.path:
            source = messageFromPath(job.path, "bench.test")
        else:
            message = job.message
            source = checkMessage(
                "bench message", lambda: io.BytesIO(message), "bench.test"
            )
        return signMessage(source, signing, reactor)

    # Inside the timed part: with --each (or a key), every message is
    # checked and signed on its own, as one `smtptut send` per message would.
    envelope = Envelope(SENDER, (RECIPIENT,), prepared())
    shares = job.shares()
    if job.each or job.dkimKey:
        batches = [
            [Envelope(SENDER, (RECIPIENT,), prepared()) for _ in range(count)]
            for count in shares
        ]
    else:
        batches = [[envelope] * count for count in shares]
    sent = [0]

    def finished(results: list[AttemptResult]) -> None:
        for result in results:
            sent[0] += sum(1 for o in result.outcomes if o.status is Status.DELIVERED)

    def start() -> None:
        waits = []
        for batch in batches:
            factory = SMTPClientFactory(batch, "bench.test", timeout=30, clock=reactor)
            reactor.connectTCP(HOST, job.port, factory, timeout=10)
            waits.append(factory.finished)
        done = defer.gatherResults(waits, consumeErrors=True)
        done.addCallback(finished)
        done.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    guard = reactor.callLater(job.deadline, reactor.stop)
    reactor.run()
    if guard.active():
        guard.cancel()
    return sent[0]


IMPLS: dict[str, Callable[[Job], int]] = {
    "smtptut": runSmtptut,
    "smtplib": runSmtplib,
    "aiosmtplib": runAiosmtplib,
}


def _preload(impl: str) -> None:
    # Imports happen before the clock starts.
    if impl == "smtptut":
        from twisted.internet import reactor  # noqa: F401

        import smtptut.client.dkim  # noqa: F401
        import smtptut.client.protocol  # noqa: F401
    elif impl == "aiosmtplib":
        import aiosmtplib  # noqa: F401
    else:
        import smtplib  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """
    Parse the options, send, and print C{{"sent", "wall_s", "cpu_s", ...}}.

    Timing covers the first connect to the last reply; imports come before it.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.send", description=__doc__)
    parser.add_argument("--impl", required=True, choices=sorted(IMPLS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024, help="body octets")
    parser.add_argument("--data", help="send this message file instead")
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument(
        "--each", action="store_true", help="smtptut: check each message on its own"
    )
    parser.add_argument("--dkim-key", help="smtptut: DKIM-sign each message (s=bench)")
    args = parser.parse_args(argv)
    if not 0 < args.n <= 100_000 or not 0 < args.conns <= 100:
        parser.error("--n must be 1..100000 and --conns 1..100")
    _preload(args.impl)
    job = Job(
        args.port,
        args.n,
        args.conns,
        args.deadline,
        benchMessage(args.size),
        args.data,
        args.each,
        args.dkim_key,
    )
    idleKiB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    sent = IMPLS[args.impl](job)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    report = {
        "impl": args.impl,
        "n": args.n,
        "conns": args.conns,
        "sent": sent,
        "wall_s": wall,
        "cpu_s": cpu,
        "idle_maxrss_kib": idleKiB,
        "maxrss_kib": after.ru_maxrss,
    }
    print(json.dumps(report), flush=True)
    return 0 if sent == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
