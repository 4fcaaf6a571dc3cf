"""The one place the queue meets smtptut's client: envelopes, outcomes and delivery."""

# Everything else in smtptut.queue imports the client's names from here, so
# that moving the client's modules means changing only this file.

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorTCP,
    IReactorThreads,
)
from twisted.python.failure import Failure

from smtptut.addresses import localFQDN
from smtptut.client.delivery import lookupFailed, stopReactor
from smtptut.client.exchange import getMailExchange, makeResolver
from smtptut.client.message import CHUNK_SIZE, MessageSource, messageFromPath
from smtptut.client.model import NO_REPLY, Envelope, RecipientOutcome, Status
from smtptut.client.routing import INTERRUPTED, deliverToExchanges
from smtptut.client.send import (
    CommandParser,
    UsageError,
    internalError,
    startLogging,
)
from smtptut.client.settings import ClientSettings, checkCredentials, checkTrust

# The runner compares outcomes' statuses with these.
BOUNCED = Status.BOUNCED
DEFERRED = Status.DEFERRED
DELIVERED = Status.DELIVERED

__all__ = [
    "CommandParser",
    "UsageError",
    "BOUNCED",
    "DEFERRED",
    "DELIVERED",
    "INTERRUPTED",
    "NO_REPLY",
    "ClientSettings",
    "Deliver",
    "Envelope",
    "MessageSource",
    "RecipientOutcome",
    "clientDelivery",
    "clientSettings",
    "internalError",
    "messageChunks",
    "queuedMessage",
    "reportingName",
    "startLogging",
    "stopReactor",
]

#: Delivers one envelope (one recipient domain) and fires with an outcome
#: for each of its recipients.
Deliver = Callable[[Envelope], "Deferred[list[RecipientOutcome]]"]


def clientSettings(environ: Mapping[str, str]) -> ClientSettings:
    """
    How the runner delivers: the client's C{SMTPTUT_*} settings (port,
    relay, TLS, CA, EHLO name, nameservers, timeout, login) from
    C{environ}, checked as C{smtptut send} checks them.
    """
    settings = ClientSettings.fromEnvironment(environ)
    checkCredentials(settings)
    checkTrust(settings)
    return settings


def reportingName(settings: ClientSettings) -> str:
    """
    The name a DSN gives as its C{Reporting-MTA}: the EHLO name.
    """
    return settings.helo or localFQDN() or "localhost"


def messageChunks(source: MessageSource) -> Iterator[bytes]:
    """
    The message as it is sent (its added C{Date:} and C{Message-ID:} first,
    without its C{Bcc:} fields), in chunks: what the queue stores.
    """
    yield source.extraHeaders
    with source.open() as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def queuedMessage(path: str) -> MessageSource:
    """
    A queued message file, ready to send as it is.
    """
    return messageFromPath(path)


def clientDelivery(
    reactor: IReactorCore,
    settings: ClientSettings,
    interrupted: Callable[[], bool] = lambda: False,
) -> Deliver:
    """
    The production L{Deliver}: smtptut's client, as C{smtptut send} uses
    it, for one domain (its exchanges looked up, tried in turn).

    @param reactor: as L{smtptut.client.delivery.deliverAll}'s: it connects
        (L{IReactorTCP}), times the waits and runs the lookups in its
        thread pool (L{IReactorThreads}).

    @param interrupted: true once the runner is stopping: no new
        connection is made, what is unsettled comes back deferred.
    """
    resolver = makeResolver(settings.nameservers, lifetime=settings.dnsLifetime)

    @inlineCallbacks
    def deliver(
        envelope: Envelope,
    ) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
        domain = envelope.recipients[0].rpartition("@")[2]
        try:
            exchanges = yield getMailExchange(
                IReactorThreads(reactor), domain, resolver, relay=settings.relay
            )
        except Exception:
            return lookupFailed(Failure(), envelope)
        outcomes: list[RecipientOutcome] = yield deliverToExchanges(
            IReactorTCP(reactor), exchanges, envelope, settings, interrupted=interrupted
        )
        return outcomes

    return deliver
