"""One run of the client: envelopes from the settings, a client service per domain, the report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import dns.resolver
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtptut.addresses import parseAddress, wireAddress
from smtptut.client.dkim import signMessage
from smtptut.client.exchange import (
    ExchangeLookupError,
    MailExchange,
    getMailExchange,
)
from smtptut.client.jsonreport import outcomeJSON
from smtptut.client.message import MessageSource, messageFromPath, tutorialMessage
from smtptut.client.model import NO_REPLY, Envelope, RecipientOutcome, Status
from smtptut.client.protocol import SMTPClientFactory
from smtptut.client.routing import clientFactory, deliverWith, interruptedOutcomes
from smtptut.client.settings import (
    DEFAULT_CONCURRENCY,
    ClientSettings,
    checkCredentials,
    checkTrust,
)
from smtptut.settings import parseAs

log = Logger()


def messageIdDomain(settings: ClientSettings) -> str:
    """
    The domain of a C{Message-ID:} made for a message that lacks one: the
    sender's, or the EHLO name for the null sender.
    """
    return settings.sender.rpartition("@")[2] or settings.helo or "localhost"


def loadMessage(settings: ClientSettings) -> MessageSource:
    """
    The message file named by the settings, checked, or the tutorial's message.
    """
    if settings.dataPath is None:
        return tutorialMessage()
    return messageFromPath(settings.dataPath, idDomain=messageIdDomain(settings))


def envelopesByDomain(
    settings: ClientSettings, message: MessageSource
) -> dict[str, Envelope]:
    """
    One envelope per recipient domain: one lookup and one transaction each.
    Through a relay (C{SMTPTUT_RELAY}) there is one envelope for everyone.
    """
    sender = settings.sender
    if sender:
        sender = parseAs(settings.label("SMTPTUT_FROM"), _wireText, sender)
    to = settings.label("SMTPTUT_TO")
    if settings.relay is not None:
        host, port = settings.relay
        everyone = _unique(parseAs(to, wireAddress, r) for r in settings.recipients)
        return {f"{host}:{port}": Envelope(sender, everyone, message)}
    envelopes: dict[str, Envelope] = {}
    for recipients in settings.domains().values():
        addresses = _unique(parseAs(to, wireAddress, r) for r in recipients)
        key = addresses[0].rpartition("@")[2].lower()
        if key in envelopes:
            # "bücher.test" and "xn--bcher-kva.test" are one domain.
            old = envelopes[key]
            addresses = _unique(old.recipients + addresses)
        envelopes[key] = Envelope(sender, addresses, message)
    return envelopes


def _wireText(text: str) -> str:
    return wireAddress(parseAddress(text))


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """
    Each address once, in first-seen order: a domain is compared without
    regard to case, a local part as it is (RFC 5321 §2.4).
    """
    seen: set[tuple[str, str]] = set()
    result = []
    for address in addresses:
        local, _, domain = address.rpartition("@")
        key = (local, domain.lower())
        if key not in seen:
            seen.add(key)
            result.append(address)
    return tuple(result)


def loadClientJob(
    environ: Mapping[str, str],
) -> tuple[ClientSettings, dict[str, Envelope]]:
    """
    Settings from C{environ}, checked, and the envelopes they ask for (the
    message DKIM-signed when C{SMTPTUT_DKIM_KEY} is set).
    """
    settings = ClientSettings.fromEnvironment(environ)
    checkCredentials(settings)
    checkTrust(settings)
    from twisted.internet import reactor

    # The reactor that sends it (twistd's) times the signature (t=).
    message = signMessage(loadMessage(settings), settings.dkim, IReactorTime(reactor))
    return settings, envelopesByDomain(settings, message)


def lookupFailed(failure: Failure, envelope: Envelope) -> list[RecipientOutcome]:
    """
    Outcomes for recipients whose domain's exchanges could not be found.
    """
    error = failure.value
    if isinstance(error, ExchangeLookupError):
        status = Status.BOUNCED if error.permanent else Status.DEFERRED
        reason = str(error)
    else:
        log.failure("Unexpected error looking up a mail exchange", failure)
        status, reason = Status.DEFERRED, f"lookup failed: {error}"
    return [RecipientOutcome(r, status, NO_REPLY, reason) for r in envelope.recipients]


class Report:
    """
    Collects the outcomes of every domain, prints a line per recipient as
    they come, and when all domains are done prints the tutorial's
    C{Sent N messages} and calls C{whenDone} with everything.

    Its C{limit} is shared by the client services of all domains: at most
    C{concurrency} deliver at the same time.
    """

    def __init__(
        self,
        domains: int,
        whenDone: Callable[[list[RecipientOutcome]], object],
        write: Callable[[str], object] = print,
        concurrency: int = DEFAULT_CONCURRENCY,
        line: Callable[[RecipientOutcome], str] = str,
        summary: bool = True,
    ) -> None:
        self._waiting = domains
        #: The line written for each outcome (the text, or C{--json}'s).
        self._line = line
        #: Whether the tutorial's C{Sent N messages} ends the report.
        self._summary = summary
        self._whenDone = whenDone
        self._write = write
        self._finished = False
        self._envelopes: list[Envelope] = []
        self.interrupted = False
        #: Bounds how many domains are delivered to at the same time.
        self.limit = DeferredSemaphore(concurrency)
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
            self._write(self._line(outcome))
        self.outcomes.extend(outcomes)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        sent = sum(1 for o in self.outcomes if o.status is Status.DELIVERED)
        if self._summary:
            self._write(f"Sent {sent} messages")
        self._whenDone(self.outcomes)


class SMTPClientService(service.Service):
    """
    The client service of the tutorial's C{cbMailExchange}, where it has
    C{internet.TCPClient(exchange, port, smtpClientFactory)}.

    C{TCPClient} makes one connection to one host, with no timeout, and
    leaves the factory to cope when it fails.  Mail must be offered to every
    address of every exchange in turn until each recipient has a final
    reply (RFC 5321 §5.1), each connection with its own timeouts and TLS
    policy: so this sibling of C{TCPClient}, once started, runs
    L{deliverWith} with factories made from C{smtpClientFactory} (at most
    C{report.limit} domains at a time) and tells the report how it went.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        exchanges: Sequence[MailExchange],
        smtpClientFactory: SMTPClientFactory,
        settings: ClientSettings,
        report: Report,
    ) -> None:
        self.reactor = reactor
        self.exchanges = exchanges
        self.factory = smtpClientFactory
        self.settings = settings
        self.report = report
        self.delivered: Deferred[list[RecipientOutcome]] | None = None

    def startService(self) -> None:
        super().startService()
        envelopes = self.factory.envelopes
        self.delivered = self.report.limit.run(
            deliverWith,
            self.reactor,
            self.exchanges,
            self.factory,
            self.settings,
            interrupted=lambda: self.report.interrupted,
        )
        self.delivered.addErrback(internalError, *envelopes)
        self.delivered.addCallback(self.report.domainDone)


def outcomeLine(
    settings: ClientSettings, queueId: str | None = None
) -> Callable[[RecipientOutcome], str]:
    """
    How an outcome is written: its text, or with C{--json} its JSON object.
    """
    if not settings.json:
        return str
    selectors = [key.selector for key in settings.dkim.keys]
    return lambda outcome: outcomeJSON(outcome, selectors, queueId)


def deliverAll(
    reactor: IReactorCore,
    settings: ClientSettings,
    envelopes: Mapping[str, Envelope],
    resolver: dns.resolver.Resolver,
    write: Callable[[str], object] = print,
) -> Deferred[list[RecipientOutcome]]:
    """
    What C{smtpclient.tac} does, with a service collection of its own for
    the Application: look up each domain's exchanges, then start an
    L{SMTPClientService} for it; at most C{settings.concurrency} domains
    deliver at the same time.  The outcome lines are written as they come.

    @param reactor: it connects (L{IReactorTCP}), times the waits
        (L{IReactorTime}) and runs the lookups in its thread pool
        (L{IReactorThreads}).
    @return: a L{Deferred} firing with every recipient's outcome.
    """
    done: Deferred[list[RecipientOutcome]] = Deferred()
    report = Report(
        len(envelopes),
        done.callback,
        write,
        settings.concurrency,
        line=outcomeLine(settings),
        summary=not settings.json,
    )
    report.watchShutdown(reactor, envelopes.values())
    services = service.MultiService()
    services.startService()

    def cbMailExchange(exchanges: list[MailExchange], envelope: Envelope) -> None:
        smtpClientFactory = clientFactory(settings, [envelope], IReactorTime(reactor))
        smtpClientService = SMTPClientService(
            IReactorTCP(reactor), exchanges, smtpClientFactory, settings, report
        )
        smtpClientService.setServiceParent(services)

    def ebMailExchange(failure: Failure, envelope: Envelope) -> None:
        report.domainDone(lookupFailed(failure, envelope))

    for domain, envelope in envelopes.items():
        lookup = getMailExchange(
            IReactorThreads(reactor), domain, resolver, settings.relay
        )
        lookup.addCallbacks(
            cbMailExchange,
            ebMailExchange,
            callbackArgs=(envelope,),
            errbackArgs=(envelope,),
        )
        lookup.addErrback(_reportBug, report, envelope)

    def stopServices(outcomes: list[RecipientOutcome]) -> list[RecipientOutcome]:
        services.stopService()
        return outcomes

    return done.addCallback(stopServices)


def _reportBug(failure: Failure, report: Report, envelope: Envelope) -> None:
    report.domainDone(internalError(failure, envelope))


def internalError(failure: Failure, *envelopes: Envelope) -> list[RecipientOutcome]:
    """
    Log a bug and defer the envelopes' recipients, so the run still ends.
    """
    log.failure("Delivery failed unexpectedly", failure)
    reason = f"internal error: {failure.getErrorMessage()}"
    return [
        RecipientOutcome(r, Status.DEFERRED, NO_REPLY, reason)
        for envelope in envelopes
        for r in envelope.recipients
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
