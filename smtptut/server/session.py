"""What one SMTP session knows: its State, the client's names, and the Transaction in progress."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.mail import smtp

from smtptut.server.messages import ISinkMessage


class State(enum.StrEnum):
    """
    What the session reads next.
    """

    #: Commands.
    COMMAND = "COMMAND"
    #: A response to an AUTH challenge.
    AUTH = "AUTH"
    #: A message's text, after 354.
    DATA = "DATA"
    #: Nothing: the session is over.
    CLOSED = "CLOSED"


@dataclass
class Transaction:
    """
    One MAIL ... DATA transaction (RFC 5321 §3.3): its sender, the
    recipients taken so far (each with the factory of its message), the
    message's size so far, and the refusal to give after its end.
    """

    sender: smtp.Address | None = None
    recipients: list[tuple[smtp.User, Callable[[], ISinkMessage]]] = field(
        default_factory=list
    )
    size: int = 0
    failure: tuple[int, bytes] | None = None

    def users(self) -> list[smtp.User]:
        """
        The recipients taken.
        """
        return [user for user, _ in self.recipients]


@dataclass
class Session:
    """
    One client's session: what it said (HELO/EHLO), whether it is on TLS
    and authenticated, its errors, and the current L{Transaction}.

    @ivar peer: the client's address, as text.
    """

    peer: str
    state: State = State.COMMAND
    helo: bytes | None = None
    usedEHLO: bool = False
    startedTLS: bool = False
    authenticated: bool = False
    user: bytes | None = None
    errors: int = 0
    overshoot: int = 0
    authFailures: int = 0
    closing: bool = False
    transaction: Transaction = field(default_factory=Transaction)

    @property
    def heloPair(self) -> tuple[bytes | None, bytes]:
        """
        C{(helo name, client address)}, as L{smtp.IMessageDelivery} takes it.
        """
        return (self.helo, self.peer.encode())

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def withProtocol(self) -> str:
        """
        RFC 3848's protocol name for a C{Received:} field.
        """
        if not self.usedEHLO:
            return "SMTP"
        return (
            "ESMTP"
            + ("S" if self.startedTLS else "")
            + ("A" if self.authenticated else "")
        )

    def reset(self) -> None:
        """
        Forget what the client said (after STARTTLS, RFC 3207 §4.2).
        """
        self.helo = None
        self.usedEHLO = False
        self.authenticated = False
        self.user = None
        self.newTransaction()

    def newTransaction(self) -> None:
        """
        Forget the transaction (RSET, HELO, after the message).
        """
        self.transaction = Transaction()
