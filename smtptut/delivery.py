"""Deliver one message to its recipients, domain by domain, exchange by exchange."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtptut.client import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    Envelope,
    RecipientOutcome,
    SMTPClientFactory,
)
from smtptut.config import ClientSettings
from smtptut.exchange import ExchangeLookupError, MailExchange

log = Logger()


@inlineCallbacks
def deliverToExchanges(
    reactor: IReactorTCP,
    exchanges: Sequence[MailExchange],
    envelope: Envelope,
    settings: ClientSettings,
    port: int | None = None,
) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
    """
    Offer C{envelope} to each address of each exchange in turn until every
    recipient has a final reply (RFC 5321 §5.1).

    The next address is tried when a connection cannot be made, the server
    greets with an error, times out or drops the connection before the
    transaction completes; recipients still unsettled at the end are deferred
    (or bounced, if the last server refused for good).

    @return: a L{Deferred} firing with a list of L{RecipientOutcome}.
    """
    port = settings.port if port is None else port
    pending = [envelope]
    outcomes: list[RecipientOutcome] = []
    lastError, lastCode = "no mail exchange to try", 0
    lastExchange: str | None = None
    lastAddress: str | None = None
    for exchange in exchanges:
        for address in exchange.addresses:
            if not pending:
                break
            lastExchange, lastAddress = exchange.host, address
            factory = SMTPClientFactory(
                pending,
                identity=settings.helo,
                timeout=settings.timeout,
                exchange=exchange.host,
                address=address,
            )
            endpoint = HostnameEndpoint(
                reactor, address, port, timeout=min(settings.timeout, 30)
            )
            try:
                yield endpoint.connect(factory)
            except Exception as e:
                lastError = f"cannot connect to port {port}: {_reason(e)}"
                lastCode = 0
                continue
            result = yield factory.finished
            outcomes.extend(result.outcomes)
            pending = result.unsettled
            if result.error is not None:
                lastError, lastCode = result.error, result.errorCode
    for left in pending:
        status = BOUNCED if 500 <= lastCode < 600 else DEFERRED
        for recipient in left.recipients:
            outcomes.append(
                RecipientOutcome(
                    recipient, status, lastCode, lastError, lastExchange, lastAddress
                )
            )
    return outcomes


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
    return [RecipientOutcome(r, status, 0, reason) for r in envelope.recipients]


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
        self.outcomes: list[RecipientOutcome] = []
        if domains == 0:
            self._finish()

    def domainDone(self, outcomes: list[RecipientOutcome]) -> None:
        """
        One domain is settled.
        """
        for outcome in outcomes:
            self._write(str(outcome))
        self.outcomes.extend(outcomes)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish()

    def _finish(self) -> None:
        sent = sum(1 for o in self.outcomes if o.status == DELIVERED)
        self._write(f"Sent {sent} messages")
        self._whenDone(self.outcomes)


class DeliveryService(service.Service):
    """
    The client service of the tutorial's C{cbMailExchange}: once started, it
    delivers the envelope to the looked-up exchanges and tells the report.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        exchanges: Sequence[MailExchange],
        envelope: Envelope,
        settings: ClientSettings,
        report: Report,
    ) -> None:
        self.reactor = reactor
        self.exchanges = exchanges
        self.envelope = envelope
        self.settings = settings
        self.report = report
        self.delivered: Deferred[list[RecipientOutcome]] | None = None

    def startService(self) -> None:
        super().startService()
        self.delivered = deliverToExchanges(
            self.reactor, self.exchanges, self.envelope, self.settings
        )
        self.delivered.addCallback(self.report.domainDone)
        self.delivered.addErrback(
            lambda f: log.failure(
                "Delivery to {exchanges} failed", f, exchanges=self.exchanges
            )
        )


def stopWhenDone(reactor: IReactorCore | IReactorTime) -> Callable[[object], None]:
    """
    A C{whenDone} for L{Report} that stops the reactor, as the tutorial's
    C{sentMail} does.
    """

    def stop(ignored: object) -> None:
        reactor.callLater(0, reactor.stop)  # type: ignore[union-attr]

    return stop
