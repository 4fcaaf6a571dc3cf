"""What the run was on: date, CPU, kernel, Python, package versions, commit."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.procs import ROOT, SMTP_SINK


def _firstLine(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line
    except OSError:
        pass
    return "?"


def _command(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def osName() -> str:
    """
    The distribution's name, from /etc/os-release.
    """
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def describe() -> dict[str, str]:
    """
    The facts that go at the top of RESULTS.md.
    """
    dirty = _command("git", "status", "--porcelain", "--", "smtptut", "*.tac")
    memKiB = _firstLine("/proc/meminfo", "MemTotal").split()[0]
    postfix = _command("dpkg-query", "-W", "-f", "${Version}", "postfix")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": _command("nproc"),
        "cpu": _firstLine("/proc/cpuinfo", "model name"),
        "memory": f"{int(memKiB) / 2**20:.1f} GiB" if memKiB.isdigit() else "?",
        "os": f"{osName()}, kernel {platform.release()}",
        "python": platform.python_version(),
        "twisted": _version("twisted"),
        "aiosmtpd": _version("aiosmtpd"),
        "aiosmtplib": _version("aiosmtplib"),
        "dnspython": _version("dnspython"),
        "postfix": f"{postfix} ({SMTP_SINK} and smtp-source)",
        "commit": _command("git", "rev-parse", "--short", "HEAD")
        + (" + uncommitted changes in smtptut/ or *.tac" if dirty != "?" else ""),
        "disk": _command("df", "--output=fstype,source", str(ROOT)).splitlines()[-1],
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
