"""Shared fixtures: a loopback DNS server, console servers, twistd subprocesses."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IListeningPort
from twisted.names import authority, dns, server
from twisted.python.failure import Failure

from smtptut.config import AcceptPolicy
from smtptut.server import ConsoleMessageDelivery, ConsoleSMTPFactory, makePortal

#: The global reactor, typed loosely: tests hand it to code that wants one
#: interface or another of it.
reactor: Any = _reactor

#: The repository's top directory, where the .tac files are.
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
SMTPTUT = os.path.join(os.path.dirname(sys.executable), "smtptut")

#: How long any one subprocess may run before the test kills it.
PROCESS_TIMEOUT = 30.0

# ---------------------------------------------------------------- DNS server

Zone = Mapping[str, Iterable[Any]]


class ZoneAuthority(authority.FileAuthority):
    """
    An authority serving records given in memory rather than read from a file.
    """

    def __init__(self, origin: str, records: Zone) -> None:
        self._zone = (origin, records)
        super().__init__("")

    def loadFile(self, filename: str) -> None:
        origin, records = self._zone
        soa = dns.Record_SOA(
            mname=b"ns." + origin.encode(),
            rname=b"hostmaster." + origin.encode(),
            serial=1,
            refresh=60,
            retry=60,
            expire=60,
            minimum=1,
            ttl=1,
        )
        table: dict[bytes, list[Any]] = {origin.encode().lower(): [soa]}
        for name, recs in records.items():
            table.setdefault(name.encode().lower(), []).extend(recs)
        self.soa = (origin.encode(), soa)  # type: ignore[assignment]
        self.records = table  # type: ignore[assignment]


def mx(preference: int, name: str) -> dns.Record_MX:
    return dns.Record_MX(preference, name.encode(), ttl=1)


def a(address: str) -> dns.Record_A:
    return dns.Record_A(address, ttl=1)


def aaaa(address: str) -> dns.Record_AAAA:
    return dns.Record_AAAA(address, ttl=1)


def cname(name: str) -> dns.Record_CNAME:
    return dns.Record_CNAME(name.encode(), ttl=1)


@dataclass
class DNSServer:
    """
    A twisted.names server on 127.0.0.1, UDP and TCP on the same free port.
    """

    port: int
    listeners: list[IListeningPort] = field(default_factory=list)

    @property
    def nameserver(self) -> str:
        """
        The C{SMTPTUT_NAMESERVER} value that points at this server.
        """
        return f"127.0.0.1:{self.port}"

    def stop(self) -> defer.Deferred[Any]:
        return defer.gatherResults(
            [defer.maybeDeferred(p.stopListening) for p in self.listeners]
        )


def startDNSServer(reactor: Any, origin: str, records: Zone) -> DNSServer:
    """
    Serve C{records} for the zone C{origin}; names outside it get REFUSED,
    names inside it that are not listed get NXDOMAIN.
    """
    factory = server.DNSServerFactory(authorities=[ZoneAuthority(origin, records)])
    for _ in range(20):
        udp = reactor.listenUDP(
            0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1"
        )
        port = udp.getHost().port
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")
        except error.CannotListenError:
            udp.stopListening()
            continue
        return DNSServer(port, [udp, tcp])
    raise RuntimeError("no free port for the DNS server after 20 tries")


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
        return ConsoleMessageDelivery(policy, output=lambda: output)

    factory = ConsoleSMTPFactory(makePortal(makeDelivery), makeDelivery())
    listener = reactor.listenTCP(port, factory, interface=interface)
    return ConsoleServer(listener.getHost().port, listener, output)


# ------------------------------------------------------------- subprocesses


def childEnvironment(settings: Mapping[str, str]) -> dict[str, str]:
    """
    This process's environment without any C{SMTPTUT_*}, plus C{settings}.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTUT_")}
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
    ) -> None:
        self.reactor = reactor
        self._proto = _Collector(stdin)
        self.transport = reactor.spawnProcess(
            self._proto, argv[0], argv, env=dict(env), path=TOP
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
) -> defer.Deferred[ProcessResult]:
    """
    Run a command to its end (killing it after C{timeout} seconds).
    """
    return Process(
        reactor, argv, childEnvironment(settings or {}), stdin, timeout
    ).ended


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
