"""Routing one envelope across its exchanges and their addresses (RFC 5321 §5.1), with Postfix's limits."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import takewhile
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.logger import Logger

from smtptut.certificates import loadTrustRoot
from smtptut.client.exchange import MailExchange
from smtptut.client.eyeballs import Race, interleaveFamilies, raceConnections
from smtptut.client.model import (
    NO_REPLY,
    AttemptResult,
    Envelope,
    RecipientOutcome,
    Status,
    TLSPolicy,
)
from smtptut.client.protocol import SMTPClientFactory
from smtptut.client.settings import ClientSettings
from smtptut.client.tls import clientContext

if TYPE_CHECKING:
    # Twisted exports the interface from no public module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot

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


def clientFactory(
    settings: ClientSettings, envelopes: Iterable[Envelope], clock: IReactorTime
) -> SMTPClientFactory:
    """
    The L{SMTPClientFactory} for C{settings}: its name, credentials and
    timeouts (the TLS policy, and whether to log in, are chosen for each
    attempt, see L{forAttempt}).
    """
    return SMTPClientFactory(
        envelopes,
        settings.helo,
        secret=settings.secret,
        timeout=settings.timeout,
        username=settings.username,
        clock=clock,
        transcript=transcriptLine if settings.debug else None,
    )


def transcriptLine(line: str) -> None:
    """
    One line of C{--debug}'s transcript, on standard error (as swaks).
    """
    print(line, file=sys.stderr, flush=True)


def deliverToExchanges(
    reactor: IReactorTCP,
    exchanges: Sequence[MailExchange],
    envelope: Envelope,
    settings: ClientSettings,
    port: int | None = None,
    interrupted: Callable[[], bool] = notInterrupted,
) -> Deferred[list[RecipientOutcome]]:
    """
    L{deliverWith} C{envelope}, with L{clientFactory}'s factory for the
    settings (the reactor that connects also times the waits).
    """
    factory = clientFactory(settings, [envelope], IReactorTime(reactor))
    return deliverWith(reactor, exchanges, factory, settings, port, interrupted)


@inlineCallbacks
def deliverWith(
    reactor: IReactorTCP,
    exchanges: Sequence[MailExchange],
    factory: SMTPClientFactory,
    settings: ClientSettings,
    port: int | None = None,
    interrupted: Callable[[], bool] = notInterrupted,
) -> Generator[Deferred[Any], Any, list[RecipientOutcome]]:
    """
    Offer C{factory}'s envelopes to each address of each exchange in turn
    (an exchange's addresses IPv6 first, families alternating:
    L{interleaveFamilies}) until every
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

    Each connection's factory is made from C{factory} with
    L{SMTPClientFactory.forAttempt}: the same protocol, name, credentials
    and timeouts, for what is still pending.

    @return: a L{Deferred} firing with a list of L{RecipientOutcome}.
    """
    pending = list(factory.envelopes)
    outcomes: list[RecipientOutcome] = []
    cause = NOTHING_TRIED
    verify = settings.tlsPolicy is TLSPolicy.VERIFY
    trustRoot = loadTrustRoot(settings.ca) if verify else None
    # RFC 8305 §4: each exchange's addresses IPv6 first, families alternating.
    targets = [(e, a) for e in exchanges for a in interleaveFamilies(e.addresses)]
    sessions = 0
    #: How many connections each recipient was offered on.
    tried: Counter[str] = Counter()
    queue = targets[:MX_ADDRESS_LIMIT]

    def note(
        exchange: MailExchange, address: str, port: int, result: AttemptResult
    ) -> None:
        nonlocal cause
        if result.error is None:
            return
        latest = Cause(
            result.error, result.errorCode, exchange.host, address, result.connected
        )
        if latest.outranks(cause):
            cause = latest
        log.info(
            "{exchange} [{address}]:{port}: {error}",
            exchange=exchange.host,
            address=address,
            port=port,
            error=result.error,
        )

    while queue and pending and not interrupted() and sessions < MX_SESSION_LIMIT:
        exchange = queue[0][0]
        group = [a for e, a in takewhile(partial(_sameExchange, exchange), queue)]
        exchangePort = port or exchange.port or settings.port
        tlsPolicy = settings.tlsPolicy
        attempts = [
            forAttempt(factory, pending, settings, exchange, a, tlsPolicy, trustRoot)
            for a in group
        ]
        # Happy Eyeballs (RFC 8305): an address that does not answer costs
        # CONNECT_DELAY, not the connect timeout, before the next is tried.
        race: Race = yield raceConnections(
            factory.clock,
            [
                partial(_connect, reactor, f, a, exchangePort)
                for f, a in zip(attempts, group, strict=True)
            ],
        )
        spent = {index for index, _ in race.failures}
        for index, error in race.failures:
            tried.update(r for left in pending for r in left.recipients)
            reason = f"cannot connect to port {exchangePort}: {_reason(error)}"
            failed = AttemptResult([], pending, reason, connected=False)
            note(exchange, group[index], exchangePort, failed)
        if race.winner is not None:
            spent.add(race.winner)
        # What was cancelled for the winner, or not started, may be tried later.
        queue = [t for i, t in enumerate(queue) if not (i < len(group) and i in spent)]
        if race.winner is None:
            continue
        address = group[race.winner]
        tried.update(r for left in pending for r in left.recipients)
        result: AttemptResult = yield attempts[race.winner].finished
        answered = False
        notes: tuple[str, ...] = ()
        while True:
            outcomes.extend(
                replace(o, notes=notes + o.notes, attempts=tried[o.recipient])
                for o in result.outcomes
            )
            pending = result.unsettled
            answered = answered or result.connected
            note(exchange, address, exchangePort, result)
            if (
                result.tlsFailed
                and tlsPolicy is TLSPolicy.MAY
                and pending
                and not interrupted()
            ):
                tlsPolicy = TLSPolicy.OFF
                # What follows is in plaintext: the outcome line says so.
                notes = (f"unencrypted: {result.error}",)
                attempt = forAttempt(
                    factory, pending, settings, exchange, address, tlsPolicy, trustRoot
                )
                tried.update(r for left in pending for r in left.recipients)
                result = yield _attempt(reactor, attempt, address, exchangePort)
                continue
            break
        if answered:
            sessions += 1
    if pending and interrupted():
        return outcomes + [
            replace(o, attempts=tried[o.recipient])
            for o in interruptedOutcomes(
                [r for left in pending for r in left.recipients]
            )
        ]
    status = Status.BOUNCED if cause.permanent else Status.DEFERRED
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
                    attempts=tried[recipient],
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
            Status.DEFERRED,
            NO_REPLY,
            "smtptut was stopped before the transaction completed",
            notes=(INTERRUPTED,),
        )
        for r in recipients
    ]


def forAttempt(
    factory: SMTPClientFactory,
    envelopes: Iterable[Envelope],
    settings: ClientSettings,
    exchange: MailExchange,
    address: str,
    tlsPolicy: TLSPolicy,
    trustRoot: IOpenSSLTrustRoot | None,
) -> SMTPClientFactory:
    """
    The factory for one connection to C{address} of C{exchange}.
    """
    # The credentials are the submission server's: never offered to anything
    # but the relay, whatever the settings let through (issue 9).
    toRelay = settings.relay is not None and (
        exchange.host.lower() == settings.relay[0].lower()
    )
    return factory.forAttempt(
        envelopes,
        exchange.host,
        address,
        tlsPolicy,
        clientContext(tlsPolicy, exchange.host, trustRoot),
        login=bool(settings.user) and toRelay,
    )


def _sameExchange(exchange: MailExchange, target: tuple[MailExchange, str]) -> bool:
    return target[0] is exchange


def _connect(
    reactor: IReactorTCP, factory: SMTPClientFactory, address: str, port: int
) -> Deferred[Any]:
    """
    Start connecting C{factory} to C{address} (cancellable).
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
    return endpoint.connect(factory)


@inlineCallbacks
def _attempt(
    reactor: IReactorTCP, factory: SMTPClientFactory, address: str, port: int
) -> Generator[Deferred[Any], Any, AttemptResult]:
    """
    One connection to C{address}: what it settled, or why it could not start.
    """
    try:
        yield _connect(reactor, factory, address, port)
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
