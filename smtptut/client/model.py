"""The client's value types: envelopes, outcomes, statuses, TLS policies, timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smtptut.client.message import MessageSource

#: The code of an outcome or a failure that came with no SMTP reply at all
#: (a refused connection, a timeout, a failed handshake, a DNS error).
NO_REPLY = 0


class Status(StrEnum):
    """
    What happened to a recipient; the value is what the outcome line prints.
    """

    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"

    @classmethod
    def forCode(cls, code: int) -> Status:
        """
        C{delivered} for 2xx, C{bounced} for 5xx, C{deferred} for anything else.
        """
        if 200 <= code < 300:
            return cls.DELIVERED
        if 500 <= code < 600:
            return cls.BOUNCED
        return cls.DEFERRED


class TLSPolicy(StrEnum):
    """
    C{SMTPTUT_TLS}: when STARTTLS is used, and what is checked.
    """

    MAY = "may"
    ENCRYPT = "encrypt"
    VERIFY = "verify"
    OFF = "off"

    @property
    def required(self) -> bool:
        """
        Whether the connection must be encrypted before the transaction.
        """
        return self in (TLSPolicy.ENCRYPT, TLSPolicy.VERIFY)


@dataclass(frozen=True)
class Envelope:
    """
    One transaction: the sender, the recipients and the message.
    """

    sender: str
    recipients: tuple[str, ...]
    message: MessageSource


@dataclass(frozen=True)
class RecipientOutcome:
    """
    What happened to one recipient: C{delivered}, C{deferred} or C{bounced}.
    """

    recipient: str
    status: Status
    code: int
    reply: str
    exchange: str | None = None
    address: str | None = None
    #: What the user should know about how it went, shown in parentheses
    #: after the status: C{interrupted}, C{unencrypted: TLS handshake
    #: failed: ...} or C{not authenticated: ...}.
    notes: tuple[str, ...] = ()
    #: The session's TLS version (C{TLSv1.3}), L{None} in plaintext.
    tlsVersion: str | None = None
    #: Whether the server's certificate was verified (C{SMTPTUT_TLS=verify}).
    tlsVerified: bool = False
    #: How many connections tried to deliver to this recipient.
    attempts: int = 0

    def __str__(self) -> str:
        via = ""
        if self.exchange:
            via = f" via {self.exchange}"
            if self.address and self.address != self.exchange:
                via += f" [{self.address}]"
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        reply = f"{self.code} {self.reply}" if self.code != NO_REPLY else self.reply
        return f"{self.recipient}: {self.status}{notes}{via}: {reply}"


@dataclass(frozen=True)
class Timeouts:
    """
    How long to wait, in seconds: for the connection, then for each reply.

    The defaults are RFC 5321 §4.5.3.2's: 5 minutes for the greeting and for
    EHLO, MAIL and RCPT, 2 for DATA, 3 for each block of the message to be
    taken, and 10 for the reply after the message.
    """

    connect: float = 30.0
    greeting: float = 300.0
    command: float = 300.0
    dataCommand: float = 120.0
    block: float = 180.0
    final: float = 600.0

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """
        The same limit for every wait (C{SMTPTUT_TIMEOUT}).
        """
        return cls(seconds, seconds, seconds, seconds, seconds, seconds)

    @classmethod
    def of(cls, timeout: float | Timeouts | None) -> Timeouts:
        """
        L{Timeouts} from a number of seconds for every wait, or the defaults.
        """
        if timeout is None:
            return cls()
        if isinstance(timeout, Timeouts):
            return timeout
        return cls.uniform(timeout)


@dataclass
class AttemptResult:
    """
    The end of one connection: the outcomes it settled, and why it stopped
    early if it did.

    @ivar unsettled: envelopes (or what is left of them) that this connection
        did not bring to a final reply; another exchange may still take them.
    @ivar error: the reason the session failed, when it did.
    @ivar errorCode: the SMTP code that came with it, or L{NO_REPLY}.
    @ivar tlsFailed: whether the session ended in the TLS handshake.
    @ivar connected: C{False} when no connection could be made at all.
    """

    outcomes: list[RecipientOutcome]
    unsettled: list[Envelope]
    error: str | None = None
    errorCode: int = NO_REPLY
    tlsFailed: bool = False
    connected: bool = True
