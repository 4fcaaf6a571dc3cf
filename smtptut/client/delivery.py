"""Deliver one message to its recipients, domain by domain, exchange by exchange."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dns.resolver
from twisted.application import service
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    inlineCallbacks,
)
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtptut.certificates import loadTrustRoot
from smtptut.client import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    NO_REPLY,
    AttemptResult,
    Envelope,
    RecipientOutcome,
    SMTPClientFactory,
)
from smtptut.config import ClientSettings
from smtptut.exchange import ExchangeLookupError, MailExchange, getMailExchange
from smtptut.tls import clientContext

log = Logger()

#: At most this many addresses (of all the exchanges together) are tried
#: for one delivery, as Postfix's C{smtp_mx_address_limit} (5) does: fifty
#: silent exchanges would otherwise take hours.
MX_ADDRESS_LIMIT = 5

#: At most this many addresses that answered (an SMTP session was had) are
#: tried for one delivery, as Postfix's C{smtp_mx_session_limit} (2).
MX_SESSION_LIMIT = 2

#: What an outcome says when smtptut was stopped (SIGTERM, Ctrl-C) before
#: the recipient was settled.
INTERRUPTED = "interrupted"


def notInterrupted() -> bool:
    return False


@dataclass(frozen=True)
class Cause:
    """
    Why a connection to one address of one exchange did not settle everything.

    @ivar code: the server's SMTP reply code, or L{NO_REPLY}.
    @ivar connected: C{False} when no connection was made at all.
    """

    reason: str
    code: int = NO_REPLY
    exchange: str | None = None
    address: str | None = None
    connected: bool = True

    @property
    def weight(self) -> int:
        """
        How much this cause says about the delivery: a session with a server
        (its reply, a TLS or protocol failure, a timeout, a dropped
        connection) says more than a connection that could not be made,
        which says more than nothing tried at all.
        """
        if self.exchange is None:
            return 0
        return 2 if self.connected else 1

    def outranks(self, other: Cause) -> bool:
        """
        Whether this (later) cause is the one to report instead of C{other}:
        it weighs at least as much, so that of equals the latest is kept.
        """
        return self.weight >= other.weight

    @property
    def permanent(self) -> bool:
        """
        Whether the server refused for good (a 5xx reply).
        """
        return 500 <= self.code < 600


NOTHING_TRIED = Cause("no mail exchange to try")


@inlineCallbacks
def deliverToExchanges(
    reactor: IReactorTCP,
    exchanges: Sequence[MailExchange],
    envelope: Envelope,
    settings: ClientSettings,
    port: int | None = None,
    interrupted: Callable[[], bool] = notInterrupted,
) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
    """
    Offer C{envelope} to each address of each exchange in turn until every
    recipient has a final reply (RFC 5321 §5.1), trying at most
    L{MX_ADDRESS_LIMIT} addresses and L{MX_SESSION_LIMIT} that answered.

    The next address is tried when a connection cannot be made, the server
    greets with an error, times out or drops the connection before the
    transaction completes; recipients still unsettled at the end are deferred
    (or bounced, if the server refused for good) with the most telling cause
    (see L{Cause.outranks}): an exchange that answered, or whose TLS handshake
    failed, is named rather than a later address that refused the
    connection.  With
    C{SMTPTUT_TLS=may}, an address whose TLS handshake fails is tried again
    in plaintext, as Postfix does.

    Once C{interrupted()} is true (the reactor is shutting down) no new
    connection is made; what is not settled is deferred as L{INTERRUPTED}.

    @return: a L{Deferred} firing with a list of L{RecipientOutcome}.
    """
    pending = [envelope]
    outcomes: list[RecipientOutcome] = []
    cause = NOTHING_TRIED
    trustRoot = loadTrustRoot(settings.ca) if settings.tls == "verify" else None
    targets = [(e, address) for e in exchanges for address in e.addresses]
    sessions = 0
    for exchange, address in targets[:MX_ADDRESS_LIMIT]:
        if not pending or interrupted() or sessions >= MX_SESSION_LIMIT:
            break
        exchangePort = port or exchange.port or settings.port
        tlsMode = settings.tls
        answered = False
        notes: tuple[str, ...] = ()
        while pending and not interrupted():
            factory = _factory(settings, exchange, address, tlsMode, trustRoot)
            factory.envelopes = pending
            result = yield _attempt(reactor, factory, address, exchangePort)
            outcomes.extend(
                replace(o, notes=notes + o.notes) if notes else o
                for o in result.outcomes
            )
            pending = result.unsettled
            answered = answered or result.connected
            if result.error is not None:
                latest = Cause(
                    result.error,
                    result.errorCode,
                    exchange.host,
                    address,
                    result.connected,
                )
                if latest.outranks(cause):
                    cause = latest
                log.info(
                    "{exchange} [{address}]:{port}: {error}",
                    exchange=exchange.host,
                    address=address,
                    port=exchangePort,
                    error=result.error,
                )
            if result.tlsFailed and tlsMode == "may":
                tlsMode = "off"
                # What follows is in plaintext: the outcome line says so.
                notes = (f"unencrypted: {result.error}",)
                continue
            break
        if answered:
            sessions += 1
    if pending and interrupted():
        return outcomes + interruptedOutcomes(
            [r for left in pending for r in left.recipients]
        )
    status = BOUNCED if cause.permanent else DEFERRED
    for left in pending:
        for recipient in left.recipients:
            outcomes.append(
                RecipientOutcome(
                    recipient,
                    status,
                    cause.code,
                    cause.reason,
                    cause.exchange,
                    cause.address,
                )
            )
    return outcomes


def interruptedOutcomes(recipients: Iterable[str]) -> list[RecipientOutcome]:
    """
    C{deferred (interrupted)} for recipients not settled when smtptut was
    stopped: the message may be sent to them again, never lost.
    """
    return [
        RecipientOutcome(
            r,
            DEFERRED,
            NO_REPLY,
            "smtptut was stopped before the transaction completed",
            notes=(INTERRUPTED,),
        )
        for r in recipients
    ]


def _factory(
    settings: ClientSettings,
    exchange: MailExchange,
    address: str,
    tlsMode: str,
    trustRoot: Any,
) -> SMTPClientFactory:
    password = settings.password.encode("utf-8") if settings.password else None
    # The credentials are the submission server's: never offered to anything
    # but the relay, whatever the settings let through (issue 9).
    toRelay = settings.relay is not None and (
        exchange.host.lower() == settings.relay[0].lower()
    )
    login = bool(settings.user) and toRelay
    return SMTPClientFactory(
        [],
        identity=settings.helo,
        secret=password if login else None,
        contextFactory=clientContext(tlsMode, exchange.host, trustRoot),
        timeout=settings.timeout,
        exchange=exchange.host,
        address=address,
        username=settings.user.encode("utf-8") if login and settings.user else None,
        tlsMode=tlsMode,
    )


@inlineCallbacks
def _attempt(
    reactor: IReactorTCP, factory: SMTPClientFactory, address: str, port: int
) -> Generator[Deferred[Any], Any, AttemptResult]:
    """
    One connection to C{address}: what it settled, or why it could not start.
    """
    log.info(
        "Connecting to {exchange} [{address}]:{port}",
        exchange=factory.exchange,
        address=address,
        port=port,
    )
    endpoint = HostnameEndpoint(
        reactor, address, port, timeout=factory.timeouts.connect
    )
    try:
        yield endpoint.connect(factory)
    except Exception as e:
        return AttemptResult(
            [],
            factory.envelopes,
            f"cannot connect to port {port}: {_reason(e)}",
            connected=False,
        )
    result: AttemptResult = yield factory.finished
    return result


def _reason(e: BaseException) -> str:
    text = str(e).strip() or e.__class__.__name__
    # Twisted's connection errors read "An error occurred while connecting: 111: ..."
    return " ".join(text.split())


def lookupFailed(failure: Failure, envelope: Envelope) -> list[RecipientOutcome]:
    """
    Outcomes for recipients whose domain's exchanges could not be found.
    """
    error = failure.value
    if isinstance(error, ExchangeLookupError):
        status = BOUNCED if error.permanent else DEFERRED
        reason = str(error)
    else:
        log.failure("Unexpected error looking up a mail exchange", failure)
        status, reason = DEFERRED, f"lookup failed: {error}"
    return [RecipientOutcome(r, status, NO_REPLY, reason) for r in envelope.recipients]


class Report:
    """
    Collects the outcomes of every domain, prints a line per recipient as
    they come, and when all domains are done prints the tutorial's
    C{Sent N messages} and calls C{whenDone} with everything.
    """

    def __init__(
        self,
        domains: int,
        whenDone: Callable[[list[RecipientOutcome]], object],
        write: Callable[[str], object] = print,
    ) -> None:
        self._waiting = domains
        self._whenDone = whenDone
        self._write = write
        self._finished = False
        self._envelopes: list[Envelope] = []
        self.interrupted = False
        self.outcomes: list[RecipientOutcome] = []
        if domains == 0:
            self._finish()

    def watchShutdown(
        self, reactor: IReactorCore, envelopes: Iterable[Envelope]
    ) -> None:
        """
        When the reactor shuts down (SIGTERM, Ctrl-C) before every domain is
        done: note it at once, so no delivery starts a new connection (see
        L{deliverToExchanges}); then, once the reactor has dropped the
        connections (the deliveries under way report what they settled),
        report every recipient still unsettled as C{deferred (interrupted)}.
        """
        self._envelopes = list(envelopes)
        reactor.addSystemEventTrigger("before", "shutdown", self._interrupt)
        # After the reactor's own "during" trigger that drops connections.
        reactor.addSystemEventTrigger("during", "shutdown", self._reportInterrupted)

    def _interrupt(self) -> None:
        self.interrupted = True

    def _reportInterrupted(self) -> None:
        if self._finished:
            return
        done = {o.recipient for o in self.outcomes}
        left = [r for e in self._envelopes for r in e.recipients if r not in done]
        self._waiting = 1
        self.domainDone(interruptedOutcomes(left))

    def domainDone(self, outcomes: list[RecipientOutcome]) -> None:
        """
        One domain is settled.
        """
        if self._finished:
            # Reported already as interrupted.
            return
        for outcome in outcomes:
            self._write(str(outcome))
        self.outcomes.extend(outcomes)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        sent = sum(1 for o in self.outcomes if o.status == DELIVERED)
        self._write(f"Sent {sent} messages")
        self._whenDone(self.outcomes)


class DeliveryService(service.Service):
    """
    The client service of the tutorial's C{cbMailExchange}: once started, it
    delivers the envelope to the looked-up exchanges and tells the report.

    @param limit: shared by the services of all domains, it bounds how many
        deliver at the same time (a limit of its own would bound nothing).
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        exchanges: Sequence[MailExchange],
        envelope: Envelope,
        settings: ClientSettings,
        report: Report,
        limit: DeferredSemaphore,
    ) -> None:
        self.reactor = reactor
        self.exchanges = exchanges
        self.envelope = envelope
        self.settings = settings
        self.report = report
        self.limit = limit
        self.delivered: Deferred[list[RecipientOutcome]] | None = None

    def startService(self) -> None:
        super().startService()
        self.delivered = self.limit.run(
            deliverToExchanges,
            self.reactor,
            self.exchanges,
            self.envelope,
            self.settings,
            interrupted=lambda: self.report.interrupted,
        )
        self.delivered.addErrback(internalError, self.envelope)
        self.delivered.addCallback(self.report.domainDone)


def deliverAll(
    reactor: Any,
    settings: ClientSettings,
    envelopes: Mapping[str, Envelope],
    resolver: dns.resolver.Resolver,
    write: Callable[[str], object] = print,
) -> Deferred[list[RecipientOutcome]]:
    """
    What C{smtpclient.tac} does, without the Application: look up each
    domain's exchanges and deliver to them, at most C{settings.concurrency}
    domains at a time, writing the outcome lines as they come.

    @return: a L{Deferred} firing with every recipient's outcome.
    """
    done: Deferred[list[RecipientOutcome]] = Deferred()
    report = Report(len(envelopes), done.callback, write)
    report.watchShutdown(reactor, envelopes.values())
    limit = DeferredSemaphore(settings.concurrency)

    @inlineCallbacks
    def oneDomain(
        domain: str, envelope: Envelope
    ) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
        try:
            exchanges = yield getMailExchange(
                reactor, domain, resolver, relay=settings.relay
            )
        except Exception:
            return lookupFailed(Failure(), envelope)
        outcomes: list[RecipientOutcome] = yield deliverToExchanges(
            reactor,
            exchanges,
            envelope,
            settings,
            interrupted=lambda: report.interrupted,
        )
        return outcomes

    for domain, envelope in envelopes.items():
        d = limit.run(oneDomain, domain, envelope)
        d.addErrback(internalError, envelope)
        d.addCallback(report.domainDone)
    return done


def internalError(failure: Failure, envelope: Envelope) -> list[RecipientOutcome]:
    """
    Log a bug and defer the envelope's recipients, so the run still ends.
    """
    log.failure("Delivery failed unexpectedly", failure)
    reason = f"internal error: {failure.getErrorMessage()}"
    return [
        RecipientOutcome(r, DEFERRED, NO_REPLY, reason) for r in envelope.recipients
    ]


def stopWhenDone(reactor: IReactorCore | IReactorTime) -> Callable[[object], None]:
    """
    A C{whenDone} for L{Report} that stops the reactor, as the tutorial's
    C{sentMail} does.
    """

    def stop(ignored: object) -> None:
        reactor.callLater(0, stopReactor, reactor)  # type: ignore[union-attr]

    return stop


def stopReactor(reactor: IReactorCore) -> None:
    """
    Stop the reactor, unless it is stopping already (after a signal, the
    report is finished during its shutdown).
    """
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass
