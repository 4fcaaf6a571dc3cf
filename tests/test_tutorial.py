"""
The tutorial's steps (docs/tutorial/) run as the walk-through tells a learner
to run them -- C{twistd -ny}, against the tutorial's console server on loopback
-- and do what docs/tutorial/README.md says they do.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.protocols import portforward
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from .helpers import (
    TWISTD,
    DNSServer,
    Process,
    ProcessResult,
    a,
    childEnvironment,
    mx,
    reactor,
    runProcess,
    startDNSServer,
    startTwistdServer,
    twistdArgv,
)

TUTORIAL_SERVER = "docs/tutorial/emailserver.tac"
PROJECT_SERVER = "emailserver.tac"
ZONE_FILE = "docs/tutorial/example-net.pyzone"

#: A recipient both console servers take (local part "console").
ACCEPTED = "console@example.net"

#: How long a step that should keep running is watched before it is stopped.
STILL_RUNNING = 1.0

#: Bound on a step that should stop by itself.
STEP_TIMEOUT = 20.0

#: What the console servers print of the tutorial's message.
PRINTED = [
    "New message received:",
    "Subject: Tutorate!",
    "Hello, how are you, goodbye.",
]


def step(n: int) -> str:
    return f"docs/tutorial/smtpclient-{n}.tac"


def sleep(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def exampleNetZone() -> dict[str, list[Any]]:
    """
    The zone of docs/tutorial/example-net.pyzone: example.net's exchange is
    mx.example.net, which is 127.0.0.1.
    """
    return {
        "example.net": [mx(10, "mx.example.net")],
        "mx.example.net": [a("127.0.0.1")],
    }


class _RecordingClient(portforward.ProxyClient):
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        relay: RecordingRelayFactory = self.factory.server.factory  # type: ignore[attr-defined]
        if not relay.closed.called:
            relay.closed.callback(None)


class _RecordingClientFactory(portforward.ProxyClientFactory):
    protocol = _RecordingClient


class _Recorder(portforward.ProxyServer):
    clientProtocolFactory = _RecordingClientFactory

    def connectionMade(self) -> None:
        relay: RecordingRelayFactory = self.factory  # type: ignore[assignment]
        relay.connections += 1
        if not relay.connected.called:
            relay.connected.callback(None)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        relay: RecordingRelayFactory = self.factory  # type: ignore[assignment]
        relay.fromClient += data
        super().dataReceived(data)


class RecordingRelayFactory(portforward.ProxyFactory):
    """
    Relays connections to a server and records what clients send it.

    @ivar connected: fires when the first client connects.
    @ivar closed: fires when the relay's first connection to the server is
        closed (after the client's side was).
    """

    protocol = _Recorder

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.connections = 0
        self.fromClient = b""
        self.connected: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()


class TutorialStepTests(TestCase):
    """
    Each step against the tutorial's own console server.
    """

    timeout = 60

    async def startServer(self, tac: str = TUTORIAL_SERVER, **settings: str) -> int:
        process, port = await startTwistdServer(reactor, settings, tac=tac)
        self.server = process
        self.addCleanup(process.stop, 5.0)
        return port

    def startStep(self, n: int, **settings: str) -> Process:
        """
        Start step C{n} with C{twistd -ny}; the test stops it at the end.
        """
        process = Process(
            reactor,
            twistdArgv(step(n)),
            childEnvironment(settings),
            timeout=STEP_TIMEOUT + 10,
        )
        self.addCleanup(process.stop, 5.0)
        return process

    async def stopRunningStep(self, process: Process) -> ProcessResult:
        """
        Check that C{process} is still running a while after it did what it
        does, then stop it (SIGTERM, SIGKILL after a bound) and return its
        result.
        """
        await sleep(STILL_RUNNING)
        self.assertFalse(
            process.ended.called, "the step ended by itself:\n" + process.output()
        )
        result = await process.stop(5.0)
        output = result.out + result.err
        self.assertIn("Received SIGTERM, shutting down.", output)
        # twistd shuts down cleanly, then ends itself with the signal it got.
        self.assertEqual(result.signal, signal.SIGTERM, output)
        return result

    async def runToEnd(self, n: int, **settings: str) -> ProcessResult:
        return await runProcess(
            reactor, twistdArgv(step(n)), settings, timeout=STEP_TIMEOUT
        )

    def assertUnhandledError(self, output: str, *lines: str) -> None:
        self.assertIn("Unhandled Error", output)
        for line in lines:
            self.assertIn(line, output)

    def assertDelivered(self, result: ProcessResult) -> None:
        """
        The step sent the message and the reactor stopped by itself.
        """
        output = result.out + result.err
        self.assertEqual(result.code, 0, output)
        self.assertIn("[stdout#info] Sent 1 messages", output)
        self.assertIn("Main loop terminated.", output)
        self.assertNotIn("Received SIGTERM", output)
        self.assertNotIn("Traceback", output)

    async def assertServerPrinted(self, server: Process) -> None:
        await server.waitFor(PRINTED[-1], timeout=10)
        printed = server.output()
        for line in PRINTED:
            self.assertIn(line, printed)

    async def test_step1StartsAndDoesNothing(self) -> None:
        process = self.startStep(1)
        await process.waitFor(r"reactor class: ")
        result = await self.stopRunningStep(process)
        output = result.out + result.err
        self.assertNotIn("Starting factory", output)
        self.assertNotIn("Traceback", output)

    async def test_step2FailsOnTheMissingHost(self) -> None:
        result = await self.runToEnd(2)
        output = result.out + result.err
        # twistd gives up: the service cannot even start.
        self.assertEqual(result.code, 1, output)
        self.assertIn("Traceback (most recent call last):", output)
        self.assertIn("in connectTCP", output)
        self.assertIn(
            "AttributeError: 'NoneType' object has no attribute 'split'", output
        )

    async def test_step3FailsBuildingTheProtocol(self) -> None:
        port = await self.startServer()
        process = self.startStep(3, SMTPTUT_PORT=str(port))
        await process.waitFor(r"Stopping factory")
        result = await self.stopRunningStep(process)
        self.assertUnhandledError(
            result.out + result.err,
            "in buildProtocol",
            "assert self.protocol is not None",
            "builtins.AssertionError",
        )

    async def test_step4ConnectsAndSendsNothing(self) -> None:
        port = await self.startServer()
        relay = RecordingRelayFactory("127.0.0.1", port)
        listener = reactor.listenTCP(0, relay, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        process = self.startStep(4, SMTPTUT_PORT=str(listener.getHost().port))
        await relay.connected.addTimeout(10, reactor)
        result = await self.stopRunningStep(process)
        await relay.closed.addTimeout(10, reactor)
        output = result.out + result.err
        self.assertEqual(relay.connections, 1)
        self.assertEqual(relay.fromClient, b"")
        self.assertIn("Starting factory", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("Unhandled Error", output)

    async def test_step5FailsConstructingESMTPClient(self) -> None:
        port = await self.startServer()
        process = self.startStep(5, SMTPTUT_PORT=str(port))
        await process.waitFor(r"Stopping factory")
        result = await self.stopRunningStep(process)
        self.assertUnhandledError(
            result.out + result.err,
            "p = self.protocol()",
            "builtins.TypeError: ESMTPClient.__init__() missing 1 required"
            " positional argument: 'secret'",
        )

    async def test_step6StopsAtGetMailFrom(self) -> None:
        port = await self.startServer()
        process = self.startStep(6, SMTPTUT_PORT=str(port))
        await process.waitFor(r"Stopping factory")
        result = await self.stopRunningStep(process)
        self.assertUnhandledError(
            result.out + result.err,
            "self._from = self.getMailFrom()",
            "builtins.NotImplementedError",
        )
        self.assertNotIn("New message received", self.server.output())

    async def test_step7RecipientRefusedKeepsRunning(self) -> None:
        # The tutorial's recipient, tutorial_recipient@example.net: refused.
        port = await self.startServer()
        process = self.startStep(7, SMTPTUT_PORT=str(port))
        await process.waitFor(r"Sent \d+ messages")
        result = await self.stopRunningStep(process)
        output = result.out + result.err
        self.assertIn("[stdout#info] Sent 0 messages", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("New message received", self.server.output())

    async def test_step7Delivers(self) -> None:
        # With a recipient the server takes, step 7 sends -- and still runs on.
        port = await self.startServer()
        process = self.startStep(7, SMTPTUT_PORT=str(port), SMTPTUT_TO=ACCEPTED)
        await process.waitFor(r"Sent \d+ messages")
        result = await self.stopRunningStep(process)
        self.assertIn("[stdout#info] Sent 1 messages", result.out + result.err)
        await self.assertServerPrinted(self.server)

    async def test_step8SendsAndStops(self) -> None:
        port = await self.startServer()
        result = await self.runToEnd(8, SMTPTUT_PORT=str(port), SMTPTUT_TO=ACCEPTED)
        self.assertDelivered(result)
        await self.assertServerPrinted(self.server)

    async def test_step8RefusedStillStops(self) -> None:
        port = await self.startServer()
        result = await self.runToEnd(8, SMTPTUT_PORT=str(port))
        output = result.out + result.err
        self.assertEqual(result.code, 0, output)
        self.assertIn("[stdout#info] Sent 0 messages", output)
        self.assertIn("Main loop terminated.", output)

    async def test_step9SendsAndStops(self) -> None:
        port = await self.startServer()
        result = await self.runToEnd(9, SMTPTUT_PORT=str(port), SMTPTUT_TO=ACCEPTED)
        self.assertDelivered(result)
        await self.assertServerPrinted(self.server)

    async def test_step10SendsAndStops(self) -> None:
        port = await self.startServer()
        result = await self.runToEnd(10, SMTPTUT_PORT=str(port), SMTPTUT_TO=ACCEPTED)
        self.assertDelivered(result)
        await self.assertServerPrinted(self.server)

    def startDNS(self) -> DNSServer:
        dns = startDNSServer(reactor, "example.net", exampleNetZone())
        self.addCleanup(dns.stop)
        return dns

    async def test_step11LooksUpTheMXSendsAndStops(self) -> None:
        port = await self.startServer()
        dns = self.startDNS()
        result = await self.runToEnd(
            11,
            SMTPTUT_PORT=str(port),
            SMTPTUT_TO=ACCEPTED,
            SMTPTUT_NAMESERVER=dns.nameserver,
        )
        self.assertDelivered(result)
        await self.assertServerPrinted(self.server)

    async def test_step11UnknownDomainDoesNotConnect(self) -> None:
        # No MX and no address for the domain: the lookup fails and, as in
        # the tutorial, nothing handles that -- the step just sits there.
        port = await self.startServer()
        dns = self.startDNS()
        process = self.startStep(
            11,
            SMTPTUT_PORT=str(port),
            SMTPTUT_TO="console@nowhere.example.net",
            SMTPTUT_NAMESERVER=dns.nameserver,
        )
        await process.waitFor(r"MX lookup failed; attempting to use hostname")
        result = await self.stopRunningStep(process)
        output = result.out + result.err
        self.assertNotIn("Starting factory", output)
        self.assertNotIn("Sent ", output)


class ProjectServerTests(TestCase):
    """
    The last steps also work against the project's own console server, and
    step 11 against the zone file the walk-through serves with C{twistd dns}.
    """

    timeout = 60

    async def test_finalStepsAgainstProjectServer(self) -> None:
        server, port = await startTwistdServer(reactor, {}, tac=PROJECT_SERVER)
        self.addCleanup(server.stop, 5.0)
        dns = Process(
            reactor,
            [TWISTD, "-n", "--pidfile=", "dns", "-i", "127.0.0.1", "-p", "0"]
            + ["--pyzone", ZONE_FILE],
            childEnvironment({}),
            timeout=60,
        )
        self.addCleanup(dns.stop, 5.0)
        match = await dns.waitFor(r"DNSDatagramProtocol starting on (\d+)")
        settings = {"SMTPTUT_PORT": str(port), "SMTPTUT_TO": ACCEPTED}
        runs = [
            runProcess(reactor, twistdArgv(step(n)), settings, timeout=STEP_TIMEOUT)
            for n in (8, 9, 10)
        ]
        runs.append(
            runProcess(
                reactor,
                twistdArgv(step(11)),
                {**settings, "SMTPTUT_NAMESERVER": f"127.0.0.1:{match.group(1)}"},
                timeout=STEP_TIMEOUT,
            )
        )
        # All four run at once; each is bounded by STEP_TIMEOUT.
        results = await defer.gatherResults(runs)
        for n, result in zip((8, 9, 10, 11), results, strict=True):
            output = result.out + result.err
            self.assertEqual(result.code, 0, f"step {n}:\n{output}")
            self.assertIn("[stdout#info] Sent 1 messages", output, f"step {n}")
        await server.waitFor(r"(?s)(New message received:.*){4}", timeout=10)
        self.assertEqual(server.output().count("Subject: Tutorate!"), 4)
