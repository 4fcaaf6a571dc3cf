"""Shared fixtures: a loopback DNS server, console servers, twistd subprocesses."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet import defer, error, protocol
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IListeningPort
from twisted.names import dns, server
from twisted.python.failure import Failure

from smtptut.server.delivery import ConsoleMessageDelivery
from smtptut.server.factory import ConsoleSMTPFactory
from smtptut.server.realm import makePortal
from smtptut.server.sasl import AuthThrottle
from smtptut.server.settings import AcceptPolicy
from smtptut.testing import (  # noqa: F401 - the public doubles, for the tests
    Behaviour,
    DNSServer,
    Exchanges,
    Received,
    RecordingFactory,
    RecordingSMTP,
    Zone,
    ZoneAuthority,
    a,
    aaaa,
    cname,
    freePort,
    listenDNS,
    listenOnLoopbacks,
    mx,
    startDNSServer,
    txt,
)

#: The global reactor, typed loosely: tests hand it to code that wants one
#: interface or another of it.
reactor: Any = _reactor

#: The repository's top directory, where the .tac files are.
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
SMTPTUT = os.path.join(os.path.dirname(sys.executable), "smtptut")

#: How long any one subprocess may run before the test kills it.
PROCESS_TIMEOUT = 30.0


def exampleZone(mxHost: str = "127.0.0.1") -> dict[str, list[Any]]:
    """
    The issue's zone: C{example.test MX 10 mx.example.test}, an A record for it.
    """
    return {
        "example.test": [mx(10, "mx.example.test")],
        "mx.example.test": [a(mxHost)],
    }


# ---------------------------------------------------------- console servers


@dataclass
class ConsoleServer:
    """
    An in-process console server on loopback, printing into C{output}.
    """

    port: int
    listener: IListeningPort
    output: io.StringIO

    def messages(self) -> list[str]:
        """
        The messages printed so far, without the C{New message received:} line.
        """
        parts = self.output.getvalue().split("New message received:\n")
        return [p[:-1] if p.endswith("\n") else p for p in parts[1:]]

    def stop(self) -> defer.Deferred[Any]:
        return defer.maybeDeferred(self.listener.stopListening)


def startConsoleServer(
    reactor: Any, accept: str = "console", interface: str = "127.0.0.1", port: int = 0
) -> ConsoleServer:
    """
    Listen on C{interface}:C{port} (a free port by default) with the console
    server, capturing what it prints.
    """
    output = io.StringIO()
    policy = AcceptPolicy.parse(accept)

    def makeDelivery() -> ConsoleMessageDelivery:
        return ConsoleMessageDelivery(reactor, reactor, policy, output=lambda: output)

    factory = ConsoleSMTPFactory(reactor, makeDelivery(), makePortal(makeDelivery))
    listener = reactor.listenTCP(port, factory, interface=interface)
    return ConsoleServer(listener.getHost().port, listener, output)


# ------------------------------------------------------------- subprocesses


def childEnvironment(settings: Mapping[str, str]) -> dict[str, str]:
    """
    This process's environment without any C{SMTPTUT_*}, plus C{settings}.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTUT_")}
    # The plugin serves the inbox on 127.0.0.1:8025 by default (issue 11), a
    # fixed port that runs in parallel would share: a test that wants the
    # inbox says where.
    env["SMTPTUT_HTTP"] = "off"
    env.update(settings)
    return env


@dataclass
class ProcessResult:
    out: str
    err: str
    code: int | None
    signal: int | None


class _Collector(protocol.ProcessProtocol):
    def __init__(self, stdin: bytes | None) -> None:
        self.out = io.BytesIO()
        self.err = io.BytesIO()
        self.stdin = stdin
        self.ended: defer.Deferred[ProcessResult] = defer.Deferred()
        self.watchers: list[tuple[re.Pattern[str], defer.Deferred[re.Match[str]]]] = []

    def connectionMade(self) -> None:
        if self.stdin is not None:
            self.transport.write(self.stdin)  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.out.write(data)
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err.write(data)
        self._check()

    def text(self) -> str:
        return (self.out.getvalue() + self.err.getvalue()).decode("utf-8", "replace")

    def _check(self) -> None:
        text = self.text()
        for pattern, d in list(self.watchers):
            m = pattern.search(text)
            if m:
                self.watchers.remove((pattern, d))
                d.callback(m)

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        result = ProcessResult(
            self.out.getvalue().decode("utf-8", "replace"),
            self.err.getvalue().decode("utf-8", "replace"),
            getattr(value, "exitCode", None),
            getattr(value, "signal", None),
        )
        for _, d in self.watchers:
            d.errback(RuntimeError(f"process ended before printing it:\n{self.text()}"))
        self.watchers = []
        self.ended.callback(result)


class Process:
    """
    A child process that a test started: its output, and a way to end it.
    """

    def __init__(
        self,
        reactor: Any,
        argv: list[str],
        env: Mapping[str, str],
        stdin: bytes | None = None,
        timeout: float = PROCESS_TIMEOUT,
        path: str = TOP,
        usePTY: bool = False,
    ) -> None:
        self.reactor = reactor
        self._proto = _Collector(stdin)
        # usePTY: the child's standard streams are a terminal, as a user's
        # (its output then has CRLF line ends).
        self.transport = reactor.spawnProcess(
            self._proto, argv[0], argv, env=dict(env), path=path, usePTY=usePTY
        )
        self._killer = reactor.callLater(timeout, self.kill, signal.SIGKILL)
        self.ended = self._proto.ended
        self.ended.addBoth(self._cancelKiller)

    def _cancelKiller(self, result: Any) -> Any:
        if self._killer.active():
            self._killer.cancel()
        return result

    def output(self) -> str:
        return self._proto.text()

    def waitFor(
        self, pattern: str, timeout: float = 15.0
    ) -> defer.Deferred[re.Match[str]]:
        """
        Fire when the output matches C{pattern}; fail after C{timeout} seconds.
        """
        d: defer.Deferred[re.Match[str]] = defer.Deferred()
        self._proto.watchers.append((re.compile(pattern), d))
        self._proto._check()
        d.addTimeout(timeout, self.reactor)
        return d

    def kill(self, sig: int = signal.SIGTERM) -> None:
        try:
            self.transport.signalProcess(sig)
        except error.ProcessExitedAlready:
            pass

    def stop(self, grace: float = 10.0) -> defer.Deferred[ProcessResult]:
        """
        SIGTERM now, SIGKILL after C{grace} seconds; fires with the result.
        """
        if self.ended.called:
            return self.ended
        self.kill(signal.SIGTERM)
        later = self.reactor.callLater(grace, self.kill, signal.SIGKILL)

        def cancel(result: Any) -> Any:
            if later.active():
                later.cancel()
            return result

        self.ended.addBoth(cancel)
        return self.ended


def runProcess(
    reactor: Any,
    argv: list[str],
    settings: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = PROCESS_TIMEOUT,
    path: str = TOP,
    usePTY: bool = False,
) -> defer.Deferred[ProcessResult]:
    """
    Run a command in C{path} to its end (killing it after C{timeout} seconds).
    """
    return Process(
        reactor,
        argv,
        childEnvironment(settings or {}),
        stdin,
        timeout,
        path,
        usePTY,
    ).ended


def pythonOutput(code: str) -> str:
    """
    What a fresh Python (this venv's) prints running C{code}; it must exit 0.
    """
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=True,
    ).stdout


def twistdArgv(tac: str) -> list[str]:
    """
    The command line that runs C{tac} in the foreground with no pid file.
    """
    return [TWISTD, "-n", "--pidfile=", "-y", os.path.join(TOP, tac)]


@defer.inlineCallbacks
def startTwistdServer(
    reactor: Any, settings: Mapping[str, str], tac: str = "emailserver.tac"
) -> Generator[defer.Deferred[Any], Any, tuple[Process, int]]:
    """
    Start C{twistd -ny emailserver.tac} on a free loopback port and wait
    until it listens.  Fires with C{(process, port)}.
    """
    env = {"SMTPTUT_LISTEN": "tcp:0:interface=127.0.0.1"}
    env.update(settings)
    process = Process(reactor, twistdArgv(tac), childEnvironment(env), timeout=120)
    try:
        match = yield process.waitFor(r"starting on (\d+)")
    except BaseException:
        yield process.stop()
        raise
    return process, int(match.group(1))


# ------------------------------------------------------------- certificates


@dataclass
class Certificates:
    """
    A test CA and a server certificate signed by it, as PEM files.

    @ivar serverCert: the server's certificate chain (PEM).
    @ivar serverKey: the server's private key (PEM).
    @ivar caCert: the CA certificate a client should trust (PEM).
    """

    directory: str
    serverCert: str
    serverKey: str
    caCert: str


def makeCertificates(
    directory: str, names: Iterable[str] = ("localhost", "mx.example.test", "127.0.0.1")
) -> Certificates:
    """
    Write a fresh CA and a server certificate for C{names} under C{directory}.
    """
    import trustme

    os.makedirs(directory, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert(*names)
    paths = Certificates(
        directory,
        os.path.join(directory, "server.pem"),
        os.path.join(directory, "server.key"),
        os.path.join(directory, "ca.pem"),
    )
    issued.cert_chain_pems[0].write_to_path(paths.serverCert)
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(paths.serverCert, append=True)
    issued.private_key_pem.write_to_path(paths.serverKey)
    ca.cert_pem.write_to_path(paths.caCert)
    return paths


def serverTLS(certificates: Certificates) -> Any:
    """
    A server context factory for the certificate made by L{makeCertificates}.
    """
    from twisted.internet import ssl

    with (
        open(certificates.serverCert, "rb") as c,
        open(certificates.serverKey, "rb") as k,
    ):
        return ssl.PrivateCertificate.loadPEM(c.read() + k.read()).options()


class _QuietDNSFactory(server.DNSServerFactory):
    def gotResolverError(
        self, failure: Failure, protocol: Any, message: Any, address: Any
    ) -> None:
        # As the base class, but SERVFAIL is not logged (trial counts logged errors).
        if failure.check(dns.DomainError, dns.AuthoritativeDomainError):
            rCode = dns.ENAME
        else:
            rCode = dns.ESERVER
        response = self._responseFromMessage(message=message, rCode=rCode)
        self.sendReply(protocol, response, address)


class _FailingAuthority(ZoneAuthority):
    def __init__(self, origin: str, records: Zone, servfail: Iterable[str]) -> None:
        # "name" fails every question; "name TYPE" (say "mx.test AAAA") only that one.
        self._servfail: set[tuple[bytes, int | None]] = set()
        for entry in servfail:
            name, _, typeName = entry.partition(" ")
            qtype = dns.REV_TYPES[typeName.upper()] if typeName else None
            self._servfail.add((name.lower().encode(), qtype))
        super().__init__(origin, records)

    def _lookup(self, name: Any, cls: Any, type: Any, timeout: Any = None) -> Any:
        key = name.lower()
        if (key, None) in self._servfail or (key, type) in self._servfail:
            return defer.fail(RuntimeError("this test's server fails here"))
        return super()._lookup(name, cls, type, timeout)


def startFailingDNSServer(
    reactor: Any, origin: str, records: Zone, servfail: Iterable[str]
) -> DNSServer:
    """
    Like L{startDNSServer}, but every question about a name in C{servfail}
    gets SERVFAIL; an entry C{"name TYPE"} fails only questions of that type.
    """
    authority = _FailingAuthority(origin, records, servfail)
    return listenDNS(reactor, _QuietDNSFactory(authorities=[authority]))


def startAiosmtpd(
    tmp: str,
    certificates: Certificates | None = None,
    recipientLimit: int | None = None,
    **kwargs: Any,
) -> tuple[Any, list[Any], int]:
    """
    A real third-party server, aiosmtpd, in its own thread on 127.0.0.1,
    with STARTTLS when C{certificates} are given.  Returns the controller
    (stop it), the list its handler appends envelopes to, and the port.

    With C{recipientLimit}, RCPTs past that many in one transaction get
    Postfix's C{smtpd_recipient_limit} reply, C{452 4.5.3 Error: too many
    recipients}.
    """
    import ssl as stdssl

    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            envelope.tls = session.ssl is not None
            envelope.user = getattr(session, "auth_data", None)
            received.append(envelope)
            return "250 2.0.0 OK aiosmtpd"

    class LimitedHandler(Handler):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            assert recipientLimit is not None
            if len(envelope.rcpt_tos) >= recipientLimit:
                return "452 4.5.3 Error: too many recipients"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

    if certificates is not None:
        context = stdssl.create_default_context(stdssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.serverCert, certificates.serverKey)
        kwargs["tls_context"] = context
    port = freePort()
    handler = Handler() if recipientLimit is None else LimitedHandler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ready_timeout=10, **kwargs
    )
    controller.start()
    return controller, received, port


# ------------------------------------------- server tests (issue 4): sinks
#
# The console server built from ServerSettings in-process (so trial sees
# what it logs), and blocking clients to run in a thread against it.


@dataclass
class Sink:
    """
    An in-process console server made by L{smtptut.server.service.makeFactory}.
    """

    port: int
    factory: Any
    listener: IListeningPort
    output: io.StringIO
    settings: Any

    def messages(self) -> list[str]:
        parts = self.output.getvalue().split("New message received:\n")
        return [p[:-1] if p.endswith("\n") else p for p in parts[1:]]

    def stored(self) -> list[bytes]:
        """
        The files in the Maildir's C{new/}, oldest first.
        """
        assert self.settings.maildir is not None
        new = os.path.join(self.settings.maildir, "new")
        paths = sorted(
            (os.path.join(new, n) for n in os.listdir(new)), key=os.path.getmtime
        )
        result = []
        for path in paths:
            with open(path, "rb") as f:
                result.append(f.read())
        return result

    def tmpFiles(self) -> list[str]:
        assert self.settings.maildir is not None
        return os.listdir(os.path.join(self.settings.maildir, "tmp"))

    def stop(self) -> defer.Deferred[Any]:
        d = defer.maybeDeferred(self.listener.stopListening)
        d.addCallback(lambda _: self.factory.shutdown(2.0))
        return d


def startSink(reactor: Any, interface: str = "127.0.0.1", **settings: Any) -> Sink:
    """
    Listen on a free port of C{interface} with the console server, its
    L{ServerSettings} replaced by C{settings}; AUTH failures wait 50 ms.
    """
    from dataclasses import replace

    from smtptut.server.service import makeFactory
    from smtptut.server.settings import ServerSettings

    if isinstance(settings.get("accept"), str):
        settings["accept"] = AcceptPolicy.parse(settings["accept"])
    listen = f"tcp:0:interface={interface}"
    config = replace(ServerSettings(listen=listen), **settings)
    output = io.StringIO()
    factory = makeFactory(config, reactor, reactor, output=lambda: output)
    factory.authThrottle = AuthThrottle(reactor, baseDelay=0.05)
    listener = reactor.listenTCP(0, factory, interface=interface)
    return Sink(listener.getHost().port, factory, listener, output, config)


class InlineThreads:
    """
    A reactor's threads for a test on a Clock: what would run in the thread
    pool (a Maildir's fsync and rename) runs at once, and its result is
    delivered at once too.
    """

    def getThreadPool(self) -> InlineThreads:
        return self

    def callInThreadWithCallback(
        self, onResult: Any, f: Any, *args: Any, **kwargs: Any
    ) -> None:
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class MemorySink(Sink):
    """
    The console server on StringTransport and a Clock: a L{Sink} for tests
    of protocol detail, which need no socket.
    """

    clock: Any = None

    def replies(
        self, script: bytes, replies: int, chunk: int | None = None
    ) -> list[bytes]:
        """
        As L{smtpReplies} does over a socket: each reply's last line, the
        greeting first, up to C{replies} after it.
        """
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        client = IPv4Address("TCP", "127.0.0.1", 5555)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 2525), peerAddress=client
        )
        p = self.factory.buildProtocol(client)
        p.makeConnection(transport)
        step = chunk or len(script) or 1
        for i in range(0, len(script), step):
            p.dataReceived(script[i : i + step])
        finals = [
            line for line in transport.value().split(b"\r\n") if line[3:4] == b" "
        ]
        p.connectionLost(Failure(error.ConnectionDone()))
        return finals[: replies + 1]

    def stop(self) -> defer.Deferred[Any]:
        return defer.succeed(None)


def startMemorySink(**settings: Any) -> MemorySink:
    """
    L{startSink} on StringTransport and a Clock: its settings replaced by
    C{settings}, messages printed into memory, a Maildir written at once.
    """
    from dataclasses import replace

    from twisted.internet import task

    from smtptut.server.service import makeFactory
    from smtptut.server.settings import ServerSettings

    if isinstance(settings.get("accept"), str):
        settings["accept"] = AcceptPolicy.parse(settings["accept"])
    config = replace(ServerSettings(listen="tcp:2525:interface=127.0.0.1"), **settings)
    output = io.StringIO()
    clock = task.Clock()
    factory = makeFactory(
        config, cast(Any, InlineThreads()), clock, output=lambda: output
    )
    # Port 0: a test that tries a socket on it fails at once.
    sink = MemorySink(0, factory, cast(IListeningPort, None), output, config)
    sink.clock = clock
    return sink


def smtpReplies(
    port: int,
    script: bytes,
    replies: int,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    chunk: int | None = None,
    source: str | None = None,
) -> list[bytes]:
    """
    Blocking (run it in a thread): connect, read the greeting, send
    C{script} (all at once, or C{chunk} octets at a time), then read until
    C{replies} complete replies have come or the server closes.  Returns
    each reply's last line, the greeting first.  C{source}: the local
    address to connect from (another loopback address is another client).
    """
    result: list[bytes] = []
    with socket.create_connection(
        (host, port), timeout=timeout, source_address=(source, 0) if source else None
    ) as s:
        pending = b""

        def readReplies(count: int) -> None:
            nonlocal pending
            while len(result) < count:
                while b"\r\n" not in pending:
                    data = s.recv(65536)
                    if not data:
                        return
                    pending += data
                line, _, pending = pending.partition(b"\r\n")
                if line[3:4] != b"-":
                    result.append(line)

        readReplies(1)
        if chunk:
            for i in range(0, len(script), chunk):
                s.sendall(script[i : i + chunk])
        else:
            s.sendall(script)
        try:
            readReplies(replies + 1)
        except ConnectionResetError:
            pass
    return result


def makeCommonNameOnlyCertificate(directory: str, commonName: str) -> Certificates:
    """
    Write a self-signed certificate that names C{commonName} in its subject
    only, with no subjectAltName (as C{openssl req -x509 -subj /CN=...} makes
    it), and its key, under C{directory}.  The certificate is its own CA.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificates(
        directory,
        os.path.join(directory, "cn-only.pem"),
        os.path.join(directory, "cn-only.key"),
        os.path.join(directory, "cn-only.pem"),
    )
    with open(paths.serverCert, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(paths.serverKey, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


# ------------------------------------------- a small real filesystem (issue 9)


def mountTmpfs(testCase: Any, size: str = "2m") -> str:
    """
    Mount a tmpfs of C{size} on a fresh directory (the tests run as root),
    unmounted when C{testCase} ends; fail the test, saying why, when it
    cannot be mounted (a full disk is only real on a real filesystem).
    """
    import subprocess

    path = os.path.abspath(testCase.mktemp())
    os.makedirs(path)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        testCase.fail(f"cannot mount a tmpfs on {path}: {done.stderr.strip()}")
    # Lazy: a file a failed test left open must not keep the mount.
    testCase.addCleanup(subprocess.run, ["umount", "-l", path], check=True, timeout=10)
    return path


def remountReadOnly(testCase: Any, path: str) -> None:
    """
    Make the tmpfs at C{path} read-only: root's writes fail too (EROFS),
    which a mode bit would not do.
    """
    import subprocess

    done = subprocess.run(
        ["mount", "-o", "remount,ro", path], capture_output=True, text=True, timeout=10
    )
    if done.returncode != 0:
        testCase.fail(f"cannot remount {path} read-only: {done.stderr.strip()}")


def readmeSettingsTable(heading: str) -> list[dict[str, str]]:
    """
    The settings table of README.md that follows the line starting with
    C{heading}: a row per setting, each cell by its column's name, with
    Markdown's code marks (backquotes) taken out.
    """
    with open(os.path.join(TOP, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append(
            [cell.strip().replace("`", "") for cell in line.strip("|").split(" | ")]
        )
    header, _, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]
