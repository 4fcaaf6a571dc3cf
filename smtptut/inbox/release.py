"""Release: send a stored message on with smtptut's own client, only to the recipients allowed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import BinaryIO

import dns.resolver
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore

from smtptut.addresses import AddressError, parseAddress

# The one place the inbox reaches the sending side (smtptut/client/), as
# smtptut/queue/outbound.py is the queue's.
from smtptut.client.delivery import deliverAll, envelopesByDomain
from smtptut.client.exchange import makeResolver
from smtptut.client.message import checkMessage
from smtptut.client.model import RecipientOutcome, Status
from smtptut.client.settings import ClientSettings, parseNameservers
from smtptut.errors import MessageError
from smtptut.server.settings import AcceptPolicy
from smtptut.settings import ConfigError

__all__ = [
    "ReleaseRefused",
    "Releaser",
    "allowedRecipients",
    "releaseResolver",
]


def releaseResolver(environ: Mapping[str, str]) -> dns.resolver.Resolver:
    """
    The resolver release's MX lookups use: the client's C{SMTPTUT_NAMESERVER}
    when set, else the system's.

    @raise ConfigError: C{SMTPTUT_NAMESERVER} is not addresses.
    """
    text = environ.get("SMTPTUT_NAMESERVER", "")
    try:
        return makeResolver(parseNameservers(text))
    except ValueError as e:
        raise ConfigError("SMTPTUT_NAMESERVER", str(e)) from None


class ReleaseRefused(Exception):
    """
    Release is not allowed (not configured, or a recipient outside the patterns).
    """


def allowedRecipients(policy: AcceptPolicy | None, recipients: Sequence[str]) -> None:
    """
    Raise L{ReleaseRefused} unless every recipient matches C{policy}.
    """
    if policy is None:
        raise ReleaseRefused("message relaying is disabled (set SMTPTUT_RELEASE_TO)")
    if not recipients:
        raise ReleaseRefused("no recipients given (To)")
    for recipient in recipients:
        try:
            address = parseAddress(recipient)
        except AddressError as e:
            raise ReleaseRefused(f"To: {e}") from None
        if not policy.accepts(address.local, address.domain):
            raise ReleaseRefused(f"{recipient}: not allowed by SMTPTUT_RELEASE_TO")


def _withoutReturnPath(path: str) -> BinaryIO:
    """
    The stored message, less the C{Return-Path:} the sink put on top
    (RFC 5321 §4.4: only final delivery adds it).
    """
    f = open(path, "rb")
    first = f.readline(1000)
    if not first.lower().startswith(b"return-path:"):
        f.seek(0)
    return f


class Releaser:
    """
    Sends stored messages on: through C{relay}, or to each recipient's MX.

    @ivar client: the client settings releases start from (TLS, EHLO name, port).
    """

    def __init__(
        self,
        reactor: IReactorCore,
        policy: AcceptPolicy | None,
        resolver: dns.resolver.Resolver,
        relay: tuple[str, int] | None = None,
        client: ClientSettings | None = None,
    ) -> None:
        self.reactor = reactor
        self.policy = policy
        self.resolver = resolver
        self.client = dataclasses.replace(client or ClientSettings(), relay=relay)

    @property
    def enabled(self) -> bool:
        return self.policy is not None

    def release(
        self, path: str, sender: str, recipients: Sequence[str]
    ) -> Deferred[list[str]]:
        """
        Send the message at C{path}; fires with the outcome lines, or fails
        with L{ReleaseRefused} (nothing sent) or when a recipient was not
        delivered to.
        """
        allowedRecipients(self.policy, recipients)
        try:
            addresses = tuple(parseAddress(r) for r in recipients)
            message = checkMessage(path, lambda: _withoutReturnPath(path))
        except AddressError as e:
            raise ReleaseRefused(f"To: {e}") from None
        except MessageError as e:
            raise ReleaseRefused(str(e)) from None
        settings = dataclasses.replace(self.client, sender=sender, recipients=addresses)
        lines: list[str] = []
        try:
            envelopes = envelopesByDomain(settings, message)
        except ConfigError as e:
            raise ReleaseRefused(str(e)) from None
        d = deliverAll(self.reactor, settings, envelopes, self.resolver, lines.append)

        def checked(outcomes: list[RecipientOutcome]) -> list[str]:
            failed = [o for o in outcomes if o.status != Status.DELIVERED]
            if failed:
                raise ReleaseRefused("; ".join(str(o) for o in failed))
            return lines

        return d.addCallback(checked)
