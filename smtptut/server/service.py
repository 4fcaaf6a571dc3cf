"""The sink as a service: the factory built from ServerSettings, listening, graceful stop."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, cast

from twisted.application import service
from twisted.cred.portal import Portal
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorThreads,
    IReactorTime,
)
from twisted.logger import LoggingFile
from twisted.python.failure import Failure

from smtptut.errors import EX_OSERR
from smtptut.server.consoleview import consoleOutput
from smtptut.server.delivery import ConsoleMessageDelivery
from smtptut.server.factory import ConsoleSMTPFactory
from smtptut.server.maildir import Maildir
from smtptut.server.passwords import UsersFileChecker
from smtptut.server.realm import makePortal
from smtptut.server.settings import ServerSettings
from smtptut.server.tls import ServerTLS, loadTLS, sinkTLSEndpoint
from smtptut.settings import ConfigError


def makeDelivery(
    settings: ServerSettings,
    reactor: IReactorThreads,
    clock: IReactorTime,
    output: Callable[[], IO[str]] = consoleOutput,
) -> ConsoleMessageDelivery:
    """
    The L{ConsoleMessageDelivery} for C{settings}: C{reactor}'s thread pool
    syncs the Maildir, C{clock} dates the messages.

    @raise ConfigError: the Maildir cannot be written.
    """
    try:
        maildir = Maildir(settings.maildir) if settings.maildir else None
        if maildir is not None:
            maildir.checkWritable()
    except OSError as e:
        raise ConfigError(
            "SMTPTUT_MAILDIR", f"{settings.maildir}: {e.strerror}"
        ) from None
    return ConsoleMessageDelivery(
        reactor,
        clock,
        settings.accept,
        settings.hostname,
        output,
        maildir,
        settings.printMessages,
    )


def sinkPortal(
    settings: ServerSettings,
    delivery: ConsoleMessageDelivery,
    reactor: IReactorThreads,
) -> Portal | None:
    """
    The portal AUTH logs in through: the users file's accounts, or the
    tutorial's guest on loopback only, or none (no AUTH).
    """

    # Deliveries hold no per-session state: one serves every client,
    # authenticated or not.
    def makeDelivery() -> ConsoleMessageDelivery:
        return delivery

    if settings.users:
        return makePortal(
            makeDelivery, checker=UsersFileChecker(settings.users, reactor)
        )
    if settings.loopback:
        return makePortal(makeDelivery)
    # No accounts, and not on loopback: the tutorial's guest is no default.
    return None


def sinkTLS(settings: ServerSettings) -> ServerTLS | None:
    """
    STARTTLS's context for C{settings}, or L{None} without a certificate.

    @raise ConfigError: the certificate or key cannot be loaded.
    """
    if not settings.tlsCert:
        return None
    try:
        return loadTLS(settings.tlsCert, settings.tlsKey or settings.tlsCert)
    except Exception as e:
        raise ConfigError(
            "SMTPTUT_TLS_CERT",
            f"cannot load {settings.tlsCert} with {settings.tlsKey}: {e}",
        ) from None


def makeFactory(
    settings: ServerSettings,
    reactor: IReactorThreads,
    clock: IReactorTime,
    output: Callable[[], IO[str]] = consoleOutput,
) -> ConsoleSMTPFactory:
    """
    The console server's factory for C{settings}: C{reactor}'s thread pool
    checks passwords and syncs the Maildir, C{clock} times everything.

    @raise ConfigError: see L{makeDelivery} and L{sinkTLS}.
    """
    delivery = makeDelivery(settings, reactor, clock, output)
    portal = sinkPortal(settings, delivery, reactor)
    return ConsoleSMTPFactory(clock, delivery, portal, settings, sinkTLS(settings))


def cannotListen(program: str, endpoint: str, failure: Failure) -> None:
    """
    Say why C{program} cannot listen on C{endpoint}: one line, no traceback,
    on the process's real standard error (under twistd, C{sys.stderr} is the
    log).
    """
    error = failure.value
    reason = str(error)
    socketError = getattr(error, "socketError", None)
    if isinstance(socketError, OSError) and socketError.strerror:
        reason = socketError.strerror
    elif socketError is not None:
        reason = str(socketError)
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    stderr = sys.__stderr__ if isinstance(sys.stderr, LoggingFile) else sys.stderr
    assert stderr is not None
    print(f"{program}: cannot listen on {endpoint}: {reason}", file=stderr, flush=True)


class ListeningService(service.Service):
    """
    Listens when it starts (in C{privilegedStartService} under twistd, as
    Twisted's own C{StreamServerEndpointService} does), before the reactor
    runs: when it cannot, stopping the reactor would do nothing, so it says
    so in one line on standard error and ends the process (C{EX_OSERR}).

    @ivar where: the endpoint as the error names it.
    """

    def __init__(self, reactor: IReactorCore, program: str, where: str) -> None:
        self.reactor = reactor
        self.program = program
        self.where = where
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[IListeningPort] | None = None

    def listen(self) -> defer.Deferred[IListeningPort]:
        """
        Start listening (the endpoint's C{listen}).
        """
        raise NotImplementedError

    def listening(self, port: IListeningPort) -> None:
        """
        Called once it listens on C{port}.
        """
        self.port = port

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self._listen()

    def _listen(self) -> None:
        self._listening = d = self.listen()
        outcome: list[IListeningPort | Failure] = []
        d.addBoth(outcome.append)
        if outcome:
            # The usual case (tcp:, unix:, ssl:): the endpoint listened at once.
            if isinstance(outcome[0], Failure):
                cannotListen(self.program, self.where, outcome[0])
                raise SystemExit(EX_OSERR)
            self.listening(outcome[0])
            return

        # Some other endpoint: it may fail once the reactor runs.
        def listening(result: IListeningPort | Failure) -> None:
            if isinstance(result, Failure):
                cannotListen(self.program, self.where, result)
                self.reactor.callWhenRunning(self.reactor.stop)
            else:
                self.listening(result)

        d.addCallback(listening)

    def stopListening(self) -> defer.Deferred[None]:
        """
        Stop listening, if it does.
        """
        if self.port is None:
            return defer.succeed(None)
        stopping = cast(Callable[[], object], self.port.stopListening)
        return defer.maybeDeferred(stopping).addCallback(lambda _: None)


class SinkService(ListeningService):
    """
    Listens on the settings' endpoint; on stop, finishes transactions in
    flight (up to C{settings.shutdownGrace} seconds) before it is done.
    """

    def __init__(
        self,
        settings: ServerSettings,
        factory: ConsoleSMTPFactory,
        reactor: IReactorCore,
        program: str = "emailserver.tac",
    ) -> None:
        super().__init__(reactor, program, settings.listen)
        self.settings = settings
        self.factory = factory

    def listen(self) -> defer.Deferred[IListeningPort]:
        endpoint = sinkTLSEndpoint(
            endpoints.serverFromString(self.reactor, self.settings.listen)
        )
        return endpoint.listen(self.factory)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        d = self.stopListening()
        d.addCallback(lambda _: self.factory.shutdown(self.settings.shutdownGrace))
        return cast(defer.Deferred[None], d)


def makeServerService(
    settings: ServerSettings,
    reactor: IReactorCore,
    program: str = "emailserver.tac",
) -> service.IService:
    """
    The console server as a service listening on C{settings.listen} and,
    unless C{settings.http} is off, its inbox (L{smtptut.inbox}) beside it;
    C{reactor} is a whole reactor (its threads, its clock, its TCP).

    @raise ConfigError: see L{makeFactory}.
    """
    temporary = False
    if settings.httpEnabled:
        # Only a sink with an inbox loads twisted.web.
        from smtptut.inbox.service import withInboxMaildir

        settings, temporary = withInboxMaildir(settings)
    # One reactor provides all three; a type cannot say so (zope interfaces
    # do not intersect).
    factory = makeFactory(
        settings, cast(IReactorThreads, reactor), cast(IReactorTime, reactor)
    )
    sink = SinkService(settings, factory, reactor, program)
    maildir = factory.delivery.maildir
    if not settings.httpEnabled or maildir is None:
        return sink
    from smtptut.inbox.service import makeInboxService

    inbox = makeInboxService(settings, maildir, reactor, temporary, program)
    both = service.MultiService()
    sink.setServiceParent(both)
    inbox.setServiceParent(both)
    return both
