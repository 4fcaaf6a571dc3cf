"""A real Postfix smtpd as the receiver: a DKIM-signed message through the queue into Postfix's Maildir, verified by Mail::DKIM."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from typing import Any

import dkim as dkimpy
import dns.resolver
from twisted.internet import defer, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from smtptut.client.dkimkeys import KeyType, generateKey, txtRecord, writePrivateKey

from .helpers import (
    SMTPTUT,
    Process,
    childEnvironment,
    freePort,
    reactor,
    runProcess,
    txt,
)
from .queuefixtures import RECIPIENT_MX, queueFiles, startQueueDNS
from .test_dkim import VERIFIER  # Perl's Mail::DKIM: not dkimpy

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"

#: The test's message: LF line ends, lines starting with dots, a Bcc: field.
MESSAGE = b"""\
From: Me <me@sender.test>
To: You <you@example.test>
Bcc: hidden@example.test
Subject: through the queue   to Postfix
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

.a line that starts with a dot
..and one with two
.
trailing blanks and\ttabs \t
"""

MAIN_CF = """\
# A throwaway Postfix for one test: its own directories, loopback only,
# mail for example.test into a Maildir, and nothing ever leaves: no DNS
# (client or server side) and every other destination is an error.
compatibility_level = 3.6
queue_directory = {top}/spool
data_directory = {top}/data
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
default_transport = error:this test's Postfix sends no mail anywhere
relay_transport = $default_transport
disable_dns_lookups = yes
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
append_dot_mydomain = no
virtual_mailbox_domains = example.test
virtual_mailbox_base = {top}/mail
virtual_mailbox_maps = inline:{{ you@example.test=you/ }}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
alias_maps =
alias_database =
notify_classes =
biff = no
in_flow_delay = 0s
maillog_file = /dev/stdout
"""

#: Postfix 3.7's master.cf, less what is not needed; nothing chrooted (the
#: test's directories are outside the queue directory).
MASTER_CF = """\
127.0.0.2:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def childrenOf(pid: int) -> set[int]:
    """
    The processes whose parent is C{pid} (from /proc).
    """
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has exited; its new parent reaps it.
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class PostfixInstance:
    """
    A Postfix of the test's own, on C{127.0.0.2:port}: master(8) started in
    the foreground (C{-d}), so the test owns its process and stops it.
    """

    def __init__(self, testCase: TestCase) -> None:
        self.testCase = testCase
        # Not the trial temp directory: Postfix's UNIX sockets live under
        # queue_directory/private, and a socket path has 107 octets at most.
        self.top = tempfile.mkdtemp(prefix="smtptut-pf-")
        os.chmod(self.top, 0o755)  # Postfix's daemons run as its mail_owner
        self.port = freePort(RECIPIENT_MX)
        self.master: Process | None = None
        self.children: set[int] = set()
        self.maildir = os.path.join(self.top, "mail", "you")
        testCase.addCleanup(self.stop)

    async def start(self) -> None:
        if os.geteuid() != 0:
            self.testCase.fail("Postfix's master(8) runs only as root")
        if not os.access(POSTFIX, os.X_OK):
            self.testCase.fail(
                f"{POSTFIX} is missing: install Debian's postfix"
                " (tools/debian-test-packages.sh, run by make venv, does as root)"
            )
        nobody = pwd.getpwnam("nobody")
        postfixUser = pwd.getpwnam("postfix")
        conf = os.path.join(self.top, "conf")
        for name in ("conf", "spool", "data", "mail"):
            os.mkdir(os.path.join(self.top, name))
        os.chown(os.path.join(self.top, "data"), postfixUser.pw_uid, -1)
        # virtual(8) delivers as nobody, and makes the Maildir itself.
        os.chown(os.path.join(self.top, "mail"), nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(top=self.top, uid=nobody.pw_uid, gid=nobody.pw_gid))
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        daemons = subprocess.run(
            [POSTCONF, "-c", conf, "-h", "daemon_directory"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        # "postfix check" makes the queue directories, owned as Postfix wants;
        # it says what is wrong only on a terminal (else to syslog).
        check = await runProcess(
            reactor, [POSTFIX, "-c", conf, "check"], timeout=60, usePTY=True
        )
        self.testCase.assertEqual(check.code, 0, check.out + check.err)
        self.master = Process(
            reactor,
            [os.path.join(daemons, "master"), "-c", conf, "-d", "-s"],
            childEnvironment({}),
            timeout=600,
        )
        try:
            await self.master.waitFor(r"daemon started", timeout=30)
        except defer.TimeoutError:
            self.testCase.fail(f"Postfix's master did not start:\n{self.log()}")
        for _ in range(100):
            try:
                socket.create_connection((RECIPIENT_MX, self.port), timeout=1).close()
                break
            except OSError:
                await deferLater(reactor, 0.1)
        else:
            self.testCase.fail(f"Postfix never listened:\n{self.log()}")
        self.children = childrenOf(self.master.transport.pid)

    def log(self) -> str:
        return self.master.output() if self.master is not None else ""

    async def stop(self) -> None:
        """
        SIGTERM to master(8) (SIGKILL after 10 s): it passes the signal on,
        and its daemons exit when it is gone; each is waited for, and
        killed by its process ID if it lingers.  Then the files go.
        """
        if self.master is not None:
            pid = self.master.transport.pid
            if pid is not None:
                self.children |= childrenOf(pid)
            await self.master.stop(grace=10)
            for _ in range(100):
                if not any(alive(child) for child in self.children):
                    break
                await deferLater(reactor, 0.1)
            for child in self.children:
                if alive(child):
                    os.kill(child, signal.SIGKILL)
        shutil.rmtree(self.top, ignore_errors=True)

    async def waitForMail(self, count: int = 1, timeout: float = 30) -> list[bytes]:
        """
        The messages in the Maildir's new/, once there are C{count}.
        """
        new = os.path.join(self.maildir, "new")
        for _ in range(int(timeout * 10)):
            names = sorted(os.listdir(new)) if os.path.isdir(new) else []
            if len(names) >= count:
                messages = []
                for name in names:
                    with open(os.path.join(new, name), "rb") as f:
                        messages.append(f.read())
                return messages
            await deferLater(reactor, 0.1)
        self.testCase.fail(f"no mail in {new} after {timeout} s:\n{self.log()}")


class PostfixReceiverTests(TestCase):
    """
    A message signed with RSA and Ed25519 keys, queued with C{smtptut send
    --queue} and delivered by C{smtptut queue run --once} to a real Postfix
    smtpd (Debian's postfix package, a throwaway instance on a loopback
    port), which stores it in a Maildir as any Postfix mailbox host would.
    """

    timeout = 240

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        zone: dict[str, list[Any]] = {}
        self.keys = []
        for keyType, selector in (
            (KeyType.RSA, "pf2026"),
            (KeyType.ED25519, "pf2026e"),
        ):
            key = generateKey(keyType)
            path = os.path.join(self.directory, f"{selector}.pem")
            writePrivateKey(path, key)
            self.keys.append(path)
            # The record as "smtptut dkim keygen" prints it, served on loopback.
            record = txtRecord(selector, "sender.test", key)
            zone[record.split()[0].rstrip(".")] = [
                txt(*re.findall(r'"([^"]*)"', record))
            ]
        self.dns = startQueueDNS(zone)
        self.addCleanup(self.dns.stop)

    async def test_signedQueuedMessageIntoPostfix(self) -> None:
        """
        Postfix takes the queued message (250 from its smtpd, the queue
        emptied), delivers it to the Maildir with its own trace fields on
        top, and the stored file passes Mail::DKIM (RSA) and dkimpy (both
        signatures), the keys looked up in the test's DNS.
        """
        postfix = PostfixInstance(self)
        await postfix.start()
        data = os.path.join(self.directory, "message.eml")
        with open(data, "wb") as f:
            f.write(MESSAGE)
        queue = os.path.join(self.directory, "queue")
        env = {
            "SMTPTUT_NAMESERVER": self.dns.nameserver,
            "SMTPTUT_PORT": str(postfix.port),
            "SMTPTUT_HELO": "client.test",
            "SMTPTUT_TIMEOUT": "20",
        }
        sent = await runProcess(
            reactor,
            [
                SMTPTUT,
                "send",
                "--queue",
                queue,
                "--queue-only",
                "--from",
                "me@sender.test",
                "--to",
                "you@example.test",
                "--data",
                data,
                "--dkim-key",
                ",".join(self.keys),
                "--dkim-selector",
                "pf2026,pf2026e",
            ],
            env,
        )
        self.assertEqual(sent.code, 0, sent.out + sent.err)
        [entryId] = queueFiles(queue)
        self.assertEqual(sent.out, f"queued as {entryId}\n")
        run = await runProcess(
            reactor, [SMTPTUT, "queue", "run", "--once", "--queue", queue], env
        )
        self.assertEqual(run.code, 0, run.out + run.err + postfix.log())
        self.assertNotIn("Traceback", run.out + run.err)
        self.assertEqual(queueFiles(queue), [])

        [stored] = await postfix.waitForMail()
        # Kept in the trial temp directory, to look at when this fails.
        with open(os.path.join(self.directory, "delivered.eml"), "wb") as f:
            f.write(stored)
        with open(os.path.join(self.directory, "postfix.log"), "w") as logFile:
            logFile.write(postfix.log())
        log = postfix.log()
        self.assertRegex(
            log, r"postfix/virtual\[\d+\]: \w+: to=<you@example\.test>.*status=sent"
        )
        # Postfix's own fields, in front of the signatures it must not break.
        head = stored.partition(b"\n\n")[0]
        self.assertTrue(stored.startswith(b"Return-Path: <me@sender.test>\n"), head)
        self.assertIn(b"\nDelivered-To: you@example.test\n", head)
        self.assertRegex(head, rb"\nReceived: from client\.test \(unknown \[127\.0")
        self.assertIn(b"by mx.example.test (Postfix)", head)
        self.assertNotIn(b"Bcc:", stored)
        self.assertIn(b"\n.a line that starts with a dot\n..and one with two\n", stored)

        verdict = await runProcess(
            reactor,
            ["perl", VERIFIER, str(self.dns.port)],
            stdin=stored,
            timeout=120,
        )
        self.assertEqual(verdict.code, 0, verdict.err)
        lines = verdict.out.splitlines()
        self.assertEqual(lines[0], "SIGNATURE rsa-sha256 pf2026 sender.test pass")
        # Debian 12's Mail::DKIM (1.20230212) has no ed25519-sha256.
        self.assertIn(
            lines[1],
            [
                "SIGNATURE ed25519-sha256 pf2026e sender.test pass",
                "SIGNATURE ed25519-sha256 pf2026e sender.test invalid"
                " (invalid (unsupported algorithm ed25519-sha256))",
            ],
        )
        self.assertEqual(lines[2:], ["RESULT pass"])

        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
            resolver.port = self.dns.port
            answer = resolver.resolve(name.decode("ascii"), "TXT", lifetime=5)
            return b"".join(b"".join(r.strings) for r in answer)

        crlf = stored.replace(b"\n", b"\r\n")

        def verify(index: int) -> bool:
            return bool(dkimpy.DKIM(crlf).verify(index, dnsfunc=lookup))

        ok = await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), lambda: [verify(0), verify(1)]
        )
        self.assertEqual(ok, [True, True])
