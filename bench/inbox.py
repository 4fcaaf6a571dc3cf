"""The inbox at scale (issue 11): first page, open, search and RSS at 10k and 100k messages.

Run with `.venv/bin/python -m bench.inbox`; writes bench/INBOX.md.  The
server is `twistd smtptut-server` in a child process, so its RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
REPEAT = 21
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(maildir: str, count: int) -> None:
    """
    C{count} messages of about 2 KiB, a tenth of them read.
    """
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    start = 1_700_000_000
    for i in range(count):
        body = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(300))
        text = (
            f"Return-Path: <shop{i % 97}@example.com>\n"
            f"From: Shop {i % 97} <shop{i % 97}@example.com>\n"
            f"To: customer{i}@example.net\nSubject: Order {i} confirmation\n"
            f"Message-ID: <order{i}@example.com>\n\nDear customer, token{i}.\n{body}\n"
        )
        name = f"{start + i}.M{i}P1Q{i}.bench"
        path = f"cur/{name}:2,S" if i % 10 == 0 else f"new/{name}"
        with open(os.path.join(maildir, path), "w") as f:
            f.write(text)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return bytes(r.read())


def median(url: str) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        get(url)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def status(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, maildir: str, http: bool = True) -> None:
        self.smtp = freePort()
        self.httpPort = freePort()
        self.url = f"http://127.0.0.1:{self.httpPort}/"
        # Never "-l /dev/null": twistd rotates its log file at 1 MB by
        # renaming it (see bench/servers.py); its log goes to stdout instead.
        argv = [TWISTD, "-n", "--pidfile=", "-l", "-", "smtptut-server"]
        argv += ["--listen", f"tcp:{self.smtp}:interface=127.0.0.1", "--accept", "*"]
        argv += ["--maildir", maildir, "--print", "0"]
        argv += [
            "--http",
            f"tcp:{self.httpPort}:interface=127.0.0.1" if http else "off",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTUT_")}
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        port = self.httpPort if http else self.smtp
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("bench.inbox: the server did not listen")

    def info(self) -> dict[str, float]:
        return dict(json.loads(get(self.url + "api/v1/info")))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def scale(count: int, work: str) -> dict[str, float]:
    maildir = os.path.join(work, f"m{count}")
    fill(maildir, count)
    started = time.monotonic()
    server = Server(maildir)
    try:
        while server.info()["Messages"] < count:
            if time.monotonic() - started > 600:
                raise SystemExit("bench.inbox: indexing took over 10 minutes")
            time.sleep(0.5)
        built = time.monotonic() - started
        listing = json.loads(get(server.url + "api/v1/messages"))
        some = listing["messages"][len(listing["messages"]) // 2]["ID"]
        row = {
            "messages": count,
            "index built (s)": built,
            "first page (ms)": median(server.url + "api/v1/messages"),
            "open one (ms)": median(server.url + f"api/v1/message/{some}"),
            "subject: search (ms)": median(
                server.url
                + f"api/v1/search?query=subject:%22Order%20{count // 2}%20%22"
            ),
            "body word search (ms)": median(
                server.url + f"api/v1/search?query=token{count // 3}"
            ),
            "common word, first page (ms)": median(
                server.url + "api/v1/search?query=charlie"
            ),
            "RSS (MiB)": status(server.process.pid, "VmRSS"),
            "peak RSS (MiB)": status(server.process.pid, "VmHWM"),
        }
    finally:
        server.stop()
        shutil.rmtree(maildir, ignore_errors=True)
    return row


def ingestOnce(work: str, http: bool, messages: int = 1000) -> float:
    """
    Messages per second stored over one SMTP connection (smtplib) by a fresh
    server, with the inbox and its index on (C{http}) or off.
    """
    body = ("x" * 70 + "\r\n") * 28
    maildir = os.path.join(work, f"ingest-{http}")
    server = Server(maildir, http)
    try:
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", server.smtp) as client:
            for i in range(messages):
                client.sendmail(
                    "a@example.com",
                    ["b@example.net"],
                    f"Subject: ingest {i}\r\n\r\n{body}".encode(),
                )
        return messages / (time.perf_counter() - started)
    finally:
        server.stop()
        shutil.rmtree(maildir, ignore_errors=True)


def ingestion(work: str, messages: int = 1000, reps: int = 1) -> dict[str, Any]:
    """
    Messages per second over one SMTP connection, inbox and index on and off,
    taking turns for C{reps} rounds; medians, and their ratio.
    """
    runs: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(reps):
        for http in (False, True) if rep % 2 == 0 else (True, False):
            runs[http].append(ingestOnce(work, http, messages))
    off, on = statistics.median(runs[False]), statistics.median(runs[True])
    return {
        "messages": messages,
        "off (msg/s)": off,
        "on (msg/s)": on,
        "ratio": on / off,
        "off runs": runs[False],
        "on runs": runs[True],
    }


def bigPart(work: str) -> dict[str, float]:
    """
    RSS growth of the server while a 50 MB attachment goes out through /part/.
    """
    import base64

    maildir = os.path.join(work, "big")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    chunk = os.urandom(57 * 1024)
    count = 50 * 1000 * 1000 // len(chunk) + 1
    with open(os.path.join(maildir, "new", "1800000000.M1P1Q1.big"), "wb") as f:
        f.write(
            b"Subject: big\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="BB"\n\n--BB\n'
            b"Content-Type: text/plain\n\nsee attached\n--BB\n"
            b"Content-Type: application/octet-stream\n"
            b'Content-Disposition: attachment; filename="big.bin"\n'
            b"Content-Transfer-Encoding: base64\n\n"
        )
        for _ in range(count):
            f.write(base64.encodebytes(chunk))
        f.write(b"--BB--\n")
    server = Server(maildir)
    try:
        while server.info()["Messages"] < 1:
            time.sleep(0.2)
        listing = json.loads(get(server.url + "api/v1/messages"))
        before = status(server.process.pid, "VmHWM")
        started = time.perf_counter()
        size = len(
            get(server.url + f"api/v1/message/{listing['messages'][0]['ID']}/part/2")
        )
        seconds = time.perf_counter() - started
        after = status(server.process.pid, "VmHWM")
    finally:
        server.stop()
        shutil.rmtree(maildir, ignore_errors=True)
    return {"octets": size, "seconds": seconds, "peak RSS growth (MiB)": after - before}


#: Read with the numbers: what they mean and what stands behind the miss.
NOTES = """
## Notes

- Ingestion with the inbox on vs off is bound by fsync and by the other
  processes on the two CPUs: single runs moved between 1.62x and 0.65x on
  2026-12-01, so `make bench` now takes it as the median of several rounds
  (RESULTS.md, section (e)). What the index adds per stored message, in
  the server's process: about 0.2 ms reading the file (in a thread, one
  pass, headers and the first 64 KiB of text) and about 0.3 ms inserting
  it (SQLite, FTS5 trigrams), messages stored within 50 ms of each other
  going in one transaction; a profile of the insert alone showed 0.7 ms a
  row one transaction each, 0.3 ms batched.
- A common word matching every message (`charlie`) is slow at 100,000:
  the trigram index must list every match before the newest 50 are
  picked; no target asks for it, and Mailpit's own `LIKE` scan has the
  same shape.
- The peak RSS at 100,000 (about 109 MiB) is the initial build, which
  reads 200 files per thread job; afterwards the process holds about
  70 MiB.
- The index file is about 2.4 times the Maildir for 2 KiB messages
  (mostly the FTS5 trigram tables); deleting it loses nothing.
"""


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inbox")
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--no-ingestion",
        action="store_true",
        help="leave out ingestion on vs off (`python -m bench` measures it, section (e))",
    )
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="smtptut-bench-inbox-")
    try:
        rows = [scale(n, work) for n in args.counts]
        ingest = None if args.no_ingestion else ingestion(work)
        big = bigPart(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    largest = rows[-1]
    lines = [
        "# The inbox at scale (issue 11)",
        "",
        f"Written by `.venv/bin/python -m bench.inbox` on"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; medians of {REPEAT}"
        " requests over loopback HTTP (Python's urllib, one connection each), server"
        " `twistd smtptut-server` in its own process; messages of about 2 KiB.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---:|" * len(rows[0]),
    ]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()
            )
            + " |"
        )
    lines += [
        "",
        (
            f"SMTP ingestion, 1000 messages of 2 KiB over one connection (smtplib):"
            f" {ingest['off (msg/s)']:.0f} msg/s with the inbox off,"
            f" {ingest['on (msg/s)']:.0f} msg/s with it on ({ingest['ratio']:.2f}x)."
            if ingest
            else "SMTP ingestion with the inbox on vs off: measured by `make bench`"
            " in the same run as the other targets (RESULTS.md, section (e))."
        ),
        "",
        f"A 50 MB attachment ({big['octets']} octets decoded) through `/part/`:"
        f" {big['seconds']:.2f} s, peak RSS grew by {big['peak RSS growth (MiB)']:.1f} MiB.",
        "",
        f"## Targets at {largest['messages']} messages",
        "",
        "| target | measured | verdict |",
        "|---|---:|---|",
        f"| first page <= 20 ms | {largest['first page (ms)']:.1f} ms | {verdict(largest['first page (ms)'] <= 20)} |",
        f"| `subject:` search <= 200 ms | {largest['subject: search (ms)']:.1f} ms | {verdict(largest['subject: search (ms)'] <= 200)} |",
        f"| body word search <= 200 ms | {largest['body word search (ms)']:.1f} ms | {verdict(largest['body word search (ms)'] <= 200)} |",
        f"| RSS <= 150 MiB | {largest['RSS (MiB)']:.1f} MiB | {verdict(largest['RSS (MiB)'] <= 150)} |",
        *(
            [
                f"| ingestion with the index >= 0.8x without | {ingest['ratio']:.2f}x | {verdict(ingest['ratio'] >= 0.8)} |"
            ]
            if ingest
            else []
        ),
        f"| 50 MB through /part/: RSS growth <= 16 MiB | {big['peak RSS growth (MiB)']:.1f} MiB | {verdict(big['peak RSS growth (MiB)'] <= 16)} |",
        "",
        "Mailpit, for comparison, on paper only: its README claims 200-300 messages"
        " per second of SMTP ingestion; Debian's Go on this machine is too old to"
        " build it, so it was not measured here.",
        "",
    ]
    lines.append(NOTES)
    (HERE / "INBOX.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
