"""The tutorial's ConsoleSMTPFactory: connection limits (per peer too), the too-busy reply, shutdown."""

from __future__ import annotations

from typing import cast

from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import (
    IAddress,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.mail import smtp

from smtptut.addresses import toALabel
from smtptut.server.commands import addressText
from smtptut.server.delivery import ConsoleMessageDelivery
from smtptut.server.protocol import ConsoleESMTP
from smtptut.server.sasl import AuthThrottle
from smtptut.server.settings import ServerSettings

log = Logger()


class TooBusy(Protocol):
    """
    Says 421 and hangs up: the server has as many connections as it takes.
    """

    reply = b"421 4.7.0 Too many connections, try again later\r\n"

    def connectionMade(self) -> None:
        self.transport.write(self.reply)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class TooBusyForPeer(TooBusy):
    """
    Says 421 and hangs up: this client address has as many connections as
    one address may have (Postfix's smtpd_client_connection_count_limit).
    """

    reply = b"421 4.7.0 Too many connections from your address, try again later\r\n"


class ConsoleSMTPFactory(smtp.SMTPFactory):
    """
    The tutorial's C{ConsoleSMTPFactory}: one L{ConsoleMessageDelivery} for
    unauthenticated clients, AUTH LOGIN and PLAIN through the portal, and the
    sink's limits from L{ServerSettings}.

    @ivar clock: every timer of its connections (the reactor; a
        L{task.Clock} in tests).
    @ivar tls: STARTTLS's context, or L{None} for no STARTTLS.
    """

    protocol = ConsoleESMTP  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        clock: IReactorTime,
        delivery: ConsoleMessageDelivery,
        portal: Portal | None = None,
        settings: ServerSettings | None = None,
        tls: IOpenSSLServerConnectionCreator | None = None,
        authThrottle: AuthThrottle | None = None,
    ) -> None:
        smtp.SMTPFactory.__init__(self, portal)
        self.clock = clock
        self.delivery = delivery
        self.domain = toALabel(delivery.hostname).encode("ascii")
        self.settings = settings or ServerSettings()
        self.tls = tls
        self.authThrottle = authThrottle or AuthThrottle(clock)
        self.protocols: set[ConsoleESMTP] = set()
        self._allGone: list[defer.Deferred[None]] = []
        #: Connections served per client address (for maxPeerConnections).
        self.peerConnections: dict[str, int] = {}

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        host = getattr(addr, "host", None)
        busy: TooBusy | None = None
        if len(self.protocols) >= self.settings.maxConnections:
            log.info(
                "refused a connection from {peer}: too many", peer=addressText(addr)
            )
            busy = TooBusy()
        elif (
            host is not None
            and self.peerConnections.get(host, 0) >= self.settings.maxPeerConnections
        ):
            log.info(
                "refused a connection from {peer}: too many from {host}",
                peer=addressText(addr),
                host=host,
            )
            busy = TooBusyForPeer()
        if busy is not None:
            busy.factory = self
            return busy
        p = cast(ConsoleESMTP, smtp.SMTPFactory.buildProtocol(self, addr))
        p.delivery = self.delivery
        p.peerHost = host
        if host is not None:
            self.peerConnections[host] = self.peerConnections.get(host, 0) + 1
        self.protocols.add(p)
        return p

    def protocolGone(self, p: ConsoleESMTP) -> None:
        if p in self.protocols and p.peerHost is not None:
            left = self.peerConnections.pop(p.peerHost, 1) - 1
            if left > 0:
                self.peerConnections[p.peerHost] = left
        self.protocols.discard(p)
        if not self.protocols:
            waiting, self._allGone = self._allGone, []
            for d in waiting:
                d.callback(None)

    def shutdown(self, grace: float) -> defer.Deferred[None]:
        """
        Close idle connections, let transactions in flight finish for up to
        C{grace} seconds, then cut what is left.
        """
        for p in list(self.protocols):
            p.shutdown()
        if not self.protocols:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._allGone.append(d)

        def cut() -> None:
            for p in list(self.protocols):
                log.warn(
                    "cut a connection from {peer} still busy at shutdown", peer=p.peer
                )
                p.transport.abortConnection()  # type: ignore[union-attr]

        later = self.clock.callLater(grace, cut)
        d.addBoth(lambda r: later.cancel() if later.active() else None)
        return d
