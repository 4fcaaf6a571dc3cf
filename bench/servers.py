"""The servers under test and how to start each: the project's, aiosmtpd, smtp-sink."""

from __future__ import annotations

import smtplib
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.procs import (
    HOST,
    Server,
    smtpSinkCommand,
    startServer,
    stopServer,
    waitReady,
)

BIN = Path(sys.executable).parent
SMTPTUT = "smtptut"
SMTPTUT_MAILDIR = "smtptut-maildir"
AIOSMTPD = "aiosmtpd"
AIOSMTPD_PRINT = "aiosmtpd-debugging"
AIOSMTPD_MAILDIR = "aiosmtpd-mailbox"
SMTP_SINK = "smtp-sink"

Command = tuple[list[str], dict[str, str]]


class Unavailable(RuntimeError):
    """
    The server lacks a feature the benchmark needs (not a failure of the run).
    """


@dataclass(frozen=True)
class ServerKind:
    """
    One server under test: a label for the tables and how to start it.
    """

    name: str
    label: str
    command: Callable[[int, Path], Command]
    #: The aiosmtpd setup that does the same job, for a like-for-like ratio.
    sameJob: str | None = None
    memory: bool = True


def _smtptut(port: int, workdir: Path, env: Mapping[str, str] = {}) -> Command:
    # twistd in the foreground, its log on stdout, which goes to /dev/null.
    # Never "-l /dev/null": twistd rotates its log file at 1 MB by renaming
    # it, and so turns /dev/null into a growing pile of regular files.
    cmd = [str(BIN / "twistd"), "-n", "--pidfile=", "-l", "-"]
    cmd += ["-y", "emailserver.tac"]
    listen = f"tcp:{port}:interface={HOST}"
    return cmd, {"SMTPTUT_LISTEN": listen, "SMTPTUT_ACCEPT": "*", **env}


def _smtptutMaildir(port: int, workdir: Path) -> Command:
    maildir = workdir / f"maildir-{port}"
    return _smtptut(
        port, workdir, {"SMTPTUT_MAILDIR": str(maildir), "SMTPTUT_PRINT": "0"}
    )


def _aiosmtpd(port: int, workdir: Path, handler: str = "Sink", *args: str) -> Command:
    # aiosmtpd's own command line; -s 0: no size limit.
    cmd = [str(BIN / "aiosmtpd"), "-n", "-s", "0", "-c", f"aiosmtpd.handlers.{handler}"]
    return [*cmd, "-l", f"{HOST}:{port}", *args], {}


def _aiosmtpdPrint(port: int, workdir: Path) -> Command:
    # Its default handler: prints every message to stdout (here /dev/null).
    return _aiosmtpd(port, workdir, "Debugging")


def _aiosmtpdMaildir(port: int, workdir: Path) -> Command:
    # mailbox.Maildir underneath: tmp/ then new/, but no fsync.
    return _aiosmtpd(port, workdir, "Mailbox", str(workdir / f"mailbox-{port}"))


def _smtpSink(port: int, workdir: Path) -> Command:
    return smtpSinkCommand(port), {}


KINDS = {
    SMTPTUT: ServerKind(
        SMTPTUT, "smtptut (console to /dev/null)", _smtptut, AIOSMTPD_PRINT
    ),
    SMTPTUT_MAILDIR: ServerKind(
        SMTPTUT_MAILDIR,
        "smtptut (Maildir, no console)",
        _smtptutMaildir,
        AIOSMTPD_MAILDIR,
    ),
    AIOSMTPD: ServerKind(AIOSMTPD, "aiosmtpd (Sink handler)", _aiosmtpd),
    AIOSMTPD_PRINT: ServerKind(
        AIOSMTPD_PRINT,
        "aiosmtpd (Debugging handler, prints to /dev/null)",
        _aiosmtpdPrint,
        memory=False,
    ),
    AIOSMTPD_MAILDIR: ServerKind(
        AIOSMTPD_MAILDIR,
        "aiosmtpd (Mailbox handler: Maildir, no fsync)",
        _aiosmtpdMaildir,
        memory=False,
    ),
    SMTP_SINK: ServerKind(SMTP_SINK, "Postfix smtp-sink", _smtpSink),
}


def maildirOf(server: Server) -> Path | None:
    """
    The Maildir a server was told to use, if any.
    """
    path = server.extra.get("SMTPTUT_MAILDIR")
    return Path(path) if path else None


def launch(
    kind: ServerKind,
    port: int,
    workdir: Path,
    cpu: int | None,
    env: Mapping[str, str] | None = None,
) -> Server:
    """
    Start a server of C{kind} on C{port} and wait (bounded) until it greets.
    """
    cmd, kindEnv = kind.command(port, workdir)
    allEnv = {**kindEnv, **(env or {})}
    server = startServer(kind.name, cmd, port, workdir, cpu, allEnv)
    server.extra.update(allEnv)
    try:
        waitReady(server)
        if maildirOf(server) is not None:
            checkMaildir(server)
    except BaseException:
        stopServer(server)
        raise
    return server


def checkMaildir(server: Server, seconds: float = 5.0) -> None:
    """
    Send one message and see it land in C{new/}, or say Maildir mode is missing.
    """
    maildir = maildirOf(server)
    assert maildir is not None
    with smtplib.SMTP(HOST, server.port, "bench.test", timeout=10) as client:
        client.sendmail(
            "probe@bench.test", ["rcpt@bench.test"], b"Subject: probe\r\n\r\nx\r\n"
        )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any((maildir / "new").glob("*")):
            return
        time.sleep(0.05)
    raise Unavailable(
        "SMTPTUT_MAILDIR (issue 4) not implemented yet: no file in new/ after a 250"
    )
