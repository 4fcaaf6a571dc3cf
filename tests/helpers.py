"""Shared fixtures: a loopback DNS server, console servers, twistd subprocesses."""

from __future__ import annotations

import base64
import hmac
import io
import os
import re
import signal
import socket
import sys
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IListeningPort
from twisted.names import authority, dns, server
from twisted.protocols.basic import LineReceiver
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
    return _listenDNS(reactor, factory)


def _listenDNS(reactor: Any, factory: server.DNSServerFactory) -> DNSServer:
    """
    Serve C{factory} over UDP and TCP on one free port of 127.0.0.1.
    """
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


# ------------------------------------------- client tests (issue 3): peers
#
# Small purpose-built SMTP servers for the client's tests: one that records
# exactly what it is sent, and can be told to misbehave (greet with 421, drop
# the connection in DATA, never answer, break the TLS handshake).  Several
# loopback addresses (127.0.0.2, 127.0.0.3...) serve as different exchanges
# on one port.


@dataclass
class Behaviour:
    """
    How a L{RecordingSMTP} server acts.

    @ivar greeting: the first reply; a 4xx or 5xx one is followed by a close.
    @ivar extensions: EHLO keywords offered (STARTTLS and AUTH are added
        from C{tls} and C{auth}).
    @ivar refuse: local parts refused at RCPT with 550.
    @ivar silent: accept the connection, never say anything.
    @ivar dropInData: close the connection after the first line of message.
    @ivar stallAtDot: take the whole message, then never answer the final dot.
    @ivar tls: a server context factory; STARTTLS is offered when set.
    @ivar brokenTLS: answer STARTTLS with 220, then garbage, then close.
    @ivar auth: mechanisms offered (C{PLAIN}, C{LOGIN}, C{CRAM-MD5}).
    @ivar users: accepted user names and passwords.
    """

    greeting: bytes = b"220 recorder.test ESMTP"
    extensions: tuple[bytes, ...] = (b"PIPELINING", b"8BITMIME", b"SIZE 10000000")
    refuse: tuple[str, ...] = ("bad",)
    silent: bool = False
    dropInData: bool = False
    stallAtDot: bool = False
    tls: Any = None
    brokenTLS: bool = False
    auth: tuple[bytes, ...] = ()
    users: Mapping[bytes, bytes] = field(default_factory=dict)
    #: Refuse an EHLO or HELO name that is neither fully qualified nor an
    #: address literal, with the reply of Postfix's
    #: C{smtpd_helo_restrictions = reject_non_fqdn_helo_hostname}.
    fqdnHelo: bool = False


@dataclass
class Received:
    """
    One message as the server took it (dot-unstuffed), with its session facts.
    """

    sender: bytes
    recipients: list[bytes]
    mailLine: bytes
    data: bytes
    tls: bool
    user: bytes | None
    address: str


class RecordingSMTP(LineReceiver):
    """
    A small ESMTP server that records commands and messages exactly.
    """

    factory: RecordingFactory

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.factory.open += 1
        self.factory.mostOpen = max(self.factory.mostOpen, self.factory.open)
        self.behaviour = self.factory.behaviour
        self.tls = False
        self.user: bytes | None = None
        self.inData = False
        self.authState: tuple[bytes, ...] | None = None
        self.reset()
        if self.behaviour.silent:
            return
        self.sendLine(self.behaviour.greeting)
        if not self.behaviour.greeting.startswith(b"2"):
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.open -= 1

    def dataReceived(self, data: bytes) -> None:
        # What arrived together shows whether the client pipelines.
        if not self.inData:
            self.factory.chunks.append(data)
        super().dataReceived(data)

    def reset(self) -> None:
        self.sender: bytes | None = None
        self.recipients: list[bytes] = []
        self.mailLine = b""
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        if self.behaviour.silent:
            return
        if self.inData:
            return self.dataLine(line)
        if self.authState is not None:
            return self.authLine(line)
        self.factory.commands.append(line)
        verb, _, rest = line.partition(b" ")
        handler = getattr(self, "do_" + verb.upper().decode("ascii", "replace"), None)
        if handler is None:
            self.sendLine(b"500 5.5.1 unknown command")
        else:
            handler(rest)

    def heloRefused(self, name: bytes) -> bool:
        if not self.behaviour.fqdnHelo or name.startswith(b"[") or b"." in name:
            return False
        self.sendLine(
            b"504 5.5.2 <" + name + b">: Helo command rejected: need fully-qualified"
            b" hostname"
        )
        return True

    def do_EHLO(self, rest: bytes) -> None:
        if self.heloRefused(rest.strip()):
            return
        offered = list(self.behaviour.extensions)
        if self.behaviour.tls is not None or self.behaviour.brokenTLS:
            if not self.tls:
                offered.append(b"STARTTLS")
        if self.behaviour.auth:
            offered.append(b"AUTH " + b" ".join(self.behaviour.auth))
        lines = [b"recorder.test", *offered]
        for text in lines[:-1]:
            self.sendLine(b"250-" + text)
        self.sendLine(b"250 " + lines[-1])

    def do_HELO(self, rest: bytes) -> None:
        if self.heloRefused(rest.strip()):
            return
        self.sendLine(b"250 recorder.test")

    def do_STARTTLS(self, rest: bytes) -> None:
        self.sendLine(b"220 2.0.0 go ahead")
        if self.behaviour.brokenTLS:
            self.transport.write(b"this is not TLS\r\n" * 4)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.transport.startTLS(self.behaviour.tls)  # type: ignore[union-attr]
        self.tls = True
        self.reset()

    def do_AUTH(self, rest: bytes) -> None:
        mechanism, _, initial = rest.partition(b" ")
        mechanism = mechanism.upper()
        if mechanism not in self.behaviour.auth:
            self.sendLine(b"504 5.5.4 mechanism not offered")
        elif mechanism == b"PLAIN" and initial:
            self.checkPlain(initial)
        elif mechanism == b"PLAIN":
            self.authState = (b"PLAIN",)
            self.sendLine(b"334 ")
        elif mechanism == b"LOGIN":
            self.authState = (b"LOGIN",)
            self.sendLine(b"334 " + base64.b64encode(b"Username:"))
        else:
            challenge = b"<12345.67890@recorder.test>"
            self.authState = (b"CRAM-MD5", challenge)
            self.sendLine(b"334 " + base64.b64encode(challenge))

    def authLine(self, line: bytes) -> None:
        self.factory.authLines.append(line)
        state, self.authState = self.authState, None
        assert state is not None
        try:
            answer = base64.b64decode(line)
        except ValueError:
            self.sendLine(b"501 5.5.2 bad base64")
            return
        if state[0] == b"PLAIN":
            self.checkPlain(line)
        elif state[0] == b"LOGIN" and len(state) == 1:
            self.authState = (b"LOGIN", answer)
            self.sendLine(b"334 " + base64.b64encode(b"Password:"))
        elif state[0] == b"LOGIN":
            self.authenticated(state[1], answer == self.behaviour.users.get(state[1]))
        else:
            user, _, digest = answer.rpartition(b" ")
            password = self.behaviour.users.get(user)
            expected = (
                hmac.new(password, state[1], "md5").hexdigest().encode()
                if password is not None
                else b""
            )
            self.authenticated(user, bool(expected) and digest == expected)

    def checkPlain(self, encoded: bytes) -> None:
        self.factory.authLines.append(encoded)
        parts = base64.b64decode(encoded).split(b"\0")
        if len(parts) != 3:
            self.sendLine(b"501 5.5.2 bad PLAIN response")
            return
        _, user, password = parts
        self.authenticated(user, self.behaviour.users.get(user) == password)

    def authenticated(self, user: bytes, ok: bool) -> None:
        if ok:
            self.user = user
            self.sendLine(b"235 2.7.0 authenticated")
        else:
            self.sendLine(b"535 5.7.8 authentication credentials invalid")

    def do_MAIL(self, rest: bytes) -> None:
        if self.sender is not None:
            self.sendLine(b"503 5.5.1 nested MAIL command")
            return
        self.mailLine = rest
        self.sender = rest.partition(b">")[0].partition(b"<")[2]
        self.sendLine(b"250 2.1.0 sender ok")

    def do_RCPT(self, rest: bytes) -> None:
        if self.sender is None:
            self.sendLine(b"503 5.5.1 MAIL first")
            return
        address = rest.partition(b">")[0].partition(b"<")[2]
        local = address.rpartition(b"@")[0].decode("utf-8", "replace")
        if local in self.behaviour.refuse:
            self.sendLine(b"550 5.1.1 no such user here")
            return
        self.recipients.append(address)
        self.sendLine(b"250 2.1.5 recipient ok")

    def do_DATA(self, rest: bytes) -> None:
        if not self.recipients:
            self.sendLine(b"554 5.5.1 no valid recipients")
            return
        self.inData = True
        self.sendLine(b"354 go ahead")

    def dataLine(self, line: bytes) -> None:
        if self.behaviour.dropInData:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if line != b".":
            self.lines.append(line[1:] if line.startswith(b".") else line)
            return
        self.inData = False
        assert self.sender is not None
        peer = self.transport.getHost()  # type: ignore[union-attr]
        self.factory.messages.append(
            Received(
                self.sender,
                self.recipients,
                self.mailLine,
                b"".join(line + b"\r\n" for line in self.lines),
                self.tls,
                self.user,
                getattr(peer, "host", ""),
            )
        )
        self.reset()
        if self.behaviour.stallAtDot:
            return
        self.sendLine(b"250 2.0.0 queued")

    def do_RSET(self, rest: bytes) -> None:
        self.reset()
        self.sendLine(b"250 2.0.0 reset")

    def do_NOOP(self, rest: bytes) -> None:
        self.sendLine(b"250 2.0.0 ok")

    def do_QUIT(self, rest: bytes) -> None:
        self.sendLine(b"221 2.0.0 bye")
        self.transport.loseConnection()  # type: ignore[union-attr]


class RecordingFactory(protocol.Factory):
    """
    Makes L{RecordingSMTP} servers that share one record.
    """

    protocol = RecordingSMTP  # type: ignore[assignment]
    noisy = False

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.commands: list[bytes] = []
        self.authLines: list[bytes] = []
        self.chunks: list[bytes] = []
        self.messages: list[Received] = []
        self.connections = 0
        self.open = 0
        self.mostOpen = 0


@dataclass
class Exchanges:
    """
    Servers on several loopback addresses, all on one port.
    """

    port: int
    factories: dict[str, RecordingFactory]
    listeners: list[IListeningPort]

    def stop(self) -> defer.Deferred[Any]:
        return defer.gatherResults(
            [defer.maybeDeferred(p.stopListening) for p in self.listeners]
        )


def listenOnLoopbacks(
    reactor: Any, behaviours: Mapping[str, Behaviour | None]
) -> Exchanges:
    """
    A L{RecordingSMTP} server on each given loopback address, one free port
    for all.  An address mapped to L{None} gets no server: connections to it
    are refused.
    """
    for _ in range(20):
        port = 0
        listeners: list[IListeningPort] = []
        factories: dict[str, RecordingFactory] = {}
        try:
            for host, behaviour in behaviours.items():
                if behaviour is None:
                    continue
                factory = RecordingFactory(behaviour)
                listener = reactor.listenTCP(port, factory, interface=host)
                port = listener.getHost().port
                listeners.append(listener)
                factories[host] = factory
        except error.CannotListenError:
            for listener in listeners:
                listener.stopListening()
            continue
        if port == 0:
            port = freePort()
        return Exchanges(port, factories, listeners)
    raise RuntimeError("no port free on every loopback address after 20 tries")


def freePort(host: str = "127.0.0.1") -> int:
    """
    A port nothing listens on at C{host} right now.
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
    return _listenDNS(reactor, _QuietDNSFactory(authorities=[authority]))


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
    An in-process console server made by L{smtptut.server.makeFactory}.
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

    from smtptut.config import ServerSettings
    from smtptut.server import makeFactory

    if isinstance(settings.get("accept"), str):
        settings["accept"] = AcceptPolicy.parse(settings["accept"])
    listen = f"tcp:0:interface={interface}"
    config = replace(ServerSettings(listen=listen), **settings)
    output = io.StringIO()
    factory = makeFactory(config, reactor, output=lambda: output)
    factory.authDelay = 0.05
    listener = reactor.listenTCP(0, factory, interface=interface)
    return Sink(listener.getHost().port, factory, listener, output, config)


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
