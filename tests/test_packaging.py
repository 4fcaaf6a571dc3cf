"""The distribution as people who do not clone get it: the wheel, installed
into a fresh virtual environment outside the checkout."""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass

from twisted.trial.unittest import TestCase

from .helpers import (
    TOP,
    TWISTD,
    Process,
    ProcessResult,
    childEnvironment,
    reactor,
    startDNSServer,
)

#: Left out of the copy the distributions are built from, as not source at
#: all (caches, venvs, earlier builds).  What is source but must not be in the
#: wheel (tests, tools, the .tac files) is copied, so the tests see it left out.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "_trial_temp*",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "node_modules",
)

#: Building and installing take a few seconds each; a loaded machine, more.
STEP_TIMEOUT = 240.0


def _environment() -> dict[str, str]:
    """
    A child's environment that cannot reach the checkout or the network:
    no C{SMTPTUT_*}, no C{PYTHONPATH}, and pip never asks PyPI for a newer
    version of itself.
    """
    env = childEnvironment({"PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


async def _run(argv: list[str], cwd: str) -> ProcessResult:
    result: ProcessResult = await Process(
        reactor, argv, _environment(), timeout=STEP_TIMEOUT, path=cwd
    ).ended
    if result.code != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited with {result.code} (signal {result.signal}):\n"
            f"{result.out}{result.err}"
        )
    return result


@dataclass(frozen=True)
class Installation:
    """
    The distribution built from this checkout, its wheel installed into a
    fresh venv.

    @ivar sdist: the source distribution.
    @ivar wheel: the wheel file.
    @ivar venv: the venv's directory.
    @ivar home: an empty directory outside the checkout, to run commands in.
    """

    sdist: str
    wheel: str
    venv: str
    home: str

    def bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)


_installation: Installation | None = None


async def installation() -> Installation:
    """
    Build the wheel and install it, once per test run: building is the slow
    part, and every test here reads the same installation without changing it.
    """
    global _installation
    if _installation is None:
        _installation = await _install()
    return _installation


async def _install() -> Installation:
    top = tempfile.mkdtemp(prefix="smtptut-wheel-")
    atexit.register(shutil.rmtree, top, True)
    # The wheel is built from a copy so that the build leaves nothing in the
    # checkout; the copy keeps what a checkout has that must not be shipped
    # (tests, tools, bench, docs, the .tac files), plus the plugin cache that
    # twistd writes beside the plugin whenever it runs from a checkout.
    source = os.path.join(top, "source")
    shutil.copytree(TOP, source, ignore=NOT_SOURCE)
    with open(os.path.join(source, "twisted", "plugins", "dropin.cache"), "wb") as f:
        f.write(b"a stale cache\n")
    dist = os.path.join(top, "dist")
    # What `python -m build` does: the sdist, then the wheel from the sdist.
    # No build isolation: the build backend (setuptools, a dev extra) comes
    # from this venv, so nothing is fetched from PyPI.
    await _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source],
        top,
    )
    [sdist] = glob.glob(os.path.join(dist, "*.tar.gz"))
    [wheel] = glob.glob(os.path.join(dist, "*.whl"))

    venv = os.path.join(top, "venv")
    home = os.path.join(top, "home")
    os.mkdir(home)
    await _run([sys.executable, "-m", "venv", "--without-pip", venv], top)
    python = os.path.join(venv, "bin", "python")
    await _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps"]
        + ["--no-index", wheel],
        home,
    )
    # The dependencies (Twisted, dnspython...) are read from this venv rather
    # than downloaded: a .pth line adds its site-packages after the fresh
    # venv's own.  A directory added that way has its .pth files ignored, so
    # this venv's editable hook (which names the checkout) does not come along.
    # The plugin then sits in the fresh venv's twisted/plugins/, which Twisted
    # searches as it does every twisted/plugins/ directory without an
    # __init__.py on sys.path; where Twisted is installed in the same venv,
    # it sits in Twisted's own plugins directory instead.
    purelib = sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})
    here = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    with open(os.path.join(purelib, "smtptut-test-dependencies.pth"), "w") as f:
        f.write("".join(p + "\n" for p in here))
    # pip writes console scripts only for what it installed, and Twisted came
    # by the .pth file: this is the script Twisted's own entry point makes.
    twistd = os.path.join(venv, "bin", "twistd")
    with open(twistd, "w") as f:
        f.write(f"#!{python}\nfrom twisted.scripts.twistd import run\nrun()\n")
    os.chmod(twistd, 0o755)
    return Installation(sdist, wheel, venv, home)


class WheelTests(TestCase):
    timeout = 2 * STEP_TIMEOUT + 120

    async def test_files(self) -> None:
        """
        The wheel holds the package and the twistd plugin, and nothing that
        only a checkout needs.
        """
        wheel = (await installation()).wheel
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
        self.assertIn("twisted/plugins/smtptut_plugin.py", names)
        for module in (
            "cli",
            "client/protocol",
            "client/send",
            "server/protocol",
            "server/tap",
        ):
            self.assertIn(f"smtptut/{module}.py", names)
        # Every module of each side's package and of the queue's (issue 12): a
        # subpackage setuptools ships only when pyproject.toml lists it.
        top = os.path.join(os.path.dirname(os.path.dirname(__file__)), "smtptut")
        for side in ("client", "server", "queue", "inbox"):
            modules = [
                n for n in os.listdir(os.path.join(top, side)) if n.endswith(".py")
            ]
            self.assertIn("__init__.py", modules)
            for module in modules:
                self.assertIn(f"smtptut/{side}/{module}", names)
        # The web inbox is served from the installed package's own files.
        for name in ("index.html", "inbox.css", "inbox.js", "favicon.svg"):
            self.assertIn(f"smtptut/inbox/static/{name}", names)
        # Twisted's own twisted/__init__.py and twisted/plugins/__init__.py
        # would be overwritten by ours.
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        tops = {n.split("/")[0] for n in names} - {"smtptut", "twisted"}
        [metadata] = tops
        self.assertTrue(
            metadata.startswith("smtptut-") and metadata.endswith(".dist-info"), tops
        )
        self.assertEqual(
            {n for n in names if n.startswith("twisted/")},
            {"twisted/plugins/smtptut_plugin.py", "twisted/plugins/smtptut_queue.py"},
        )
        self.assertNotIn("smtptut/demo.py", names)
        self.assertEqual([n for n in names if n.endswith(".tac")], [])

    async def test_sdistIsTheSource(self) -> None:
        """
        The sdist holds what the wheel is built from and what runs the tests
        and the demo, without the plugin cache.
        """
        sdist = (await installation()).sdist
        with tarfile.open(sdist) as t:
            names = {n.split("/", 1)[-1] for n in t.getnames()}
        for name in [
            "pyproject.toml",
            "twisted/plugins/smtptut_plugin.py",
            "smtptut/server/tap.py",
            "tests/helpers.py",
            "tools/demo.py",
            "emailserver.tac",
            "smtpclient.tac",
            "Makefile",
        ]:
            self.assertIn(name, names)
        self.assertEqual([n for n in names if n.endswith("dropin.cache")], [])

    async def test_help(self) -> None:
        """
        The installed C{smtptut send} and C{twistd smtptut-server} answer
        C{--help}, run from outside the checkout, with the package and the
        plugin from the fresh venv.
        """
        i = await installation()
        send = await _run([i.bin("smtptut"), "send", "--help"], i.home)
        self.assertIn("--nameserver", send.out)
        self.assertIn("exit status", send.out)
        server = await _run([i.bin("twistd"), "-n", "smtptut-server", "--help"], i.home)
        self.assertIn("smtptut-server [options]", server.out)
        self.assertIn("--maildir=", server.out)
        queue = await _run([i.bin("twistd"), "-n", "smtptut-queue", "--help"], i.home)
        self.assertIn("--queue-max-age=", queue.out)
        where = await _run(
            [
                i.bin("python"),
                "-c",
                "import smtptut, twisted.plugins.smtptut_plugin as p;"
                "print(smtptut.__file__); print(p.__file__)",
            ],
            i.home,
        )
        for path in where.out.split():
            self.assertTrue(path.startswith(i.venv + os.sep), where.out)

    async def test_sendAndReceive(self) -> None:
        """
        A message sent with the installed C{smtptut send} to the installed
        plugin's server lands in the server's Maildir; SIGTERM stops it.
        """
        i = await installation()
        # An address literal needs no lookup; the nameserver is given anyway,
        # on loopback, so that nothing could leave the machine.
        dns = startDNSServer(reactor, "example.test", {})
        self.addCleanup(dns.stop)
        maildir = os.path.join(i.home, "mail-" + self.id().rsplit(".", 1)[-1])
        server = Process(
            reactor,
            [i.bin("twistd"), "-n", "--pidfile=", "smtptut-server"]
            + ["--listen", "tcp:0:interface=127.0.0.1", "--accept", "*"]
            + ["--maildir", maildir, "--print", "0"],
            _environment(),
            timeout=120,
            path=i.home,
        )
        self.addCleanup(server.stop)
        match = await server.waitFor(r"starting on (\d+)", timeout=60)
        port = match.group(1)
        message = os.path.join(i.home, "message.eml")
        with open(message, "wb") as f:
            f.write(b"Subject: From the wheel\n\nInstalled and working.\n")
        sent = await _run(
            [i.bin("smtptut"), "send", "--to", "x@[127.0.0.1]", "--port", port]
            + ["--nameserver", dns.nameserver, "--data", message],
            i.home,
        )
        self.assertIn("x@[127.0.0.1]: delivered", sent.out)
        [name] = os.listdir(os.path.join(maildir, "new"))
        with open(os.path.join(maildir, "new", name), "rb") as f:
            self.assertIn(b"Subject: From the wheel", f.read())
        ended = await server.stop()
        # A clean shutdown: twistd ends by re-raising the SIGTERM it handled
        # (not a SIGKILL from Process.stop's grace timer).
        self.assertEqual(ended.signal, signal.SIGTERM, server.output())
        self.assertIn("Server Shut Down.", server.output())


class EditableTests(TestCase):
    timeout = 60

    async def test_pluginFromOutsideTheCheckout(self) -> None:
        """
        C{make venv}'s plain editable install exposes the checkout's plugin to
        the venv's twistd wherever it runs.
        """
        home = tempfile.mkdtemp(prefix="smtptut-editable-")
        self.addCleanup(shutil.rmtree, home, True)
        result = await _run([TWISTD, "-n", "smtptut-server", "--help"], home)
        self.assertIn("--maildir=", result.out)
        where = await _run(
            [
                sys.executable,
                "-c",
                "import twisted.plugins.smtptut_plugin as p; print(p.__file__)",
            ],
            home,
        )
        self.assertEqual(
            where.out.strip(),
            os.path.join(TOP, "twisted", "plugins", "smtptut_plugin.py"),
        )
