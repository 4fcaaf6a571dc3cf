"""AUTH PLAIN and LOGIN (RFC 4954) on Twisted's challengers, and the per-address AuthThrottle."""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from dataclasses import dataclass

from twisted.cred.credentials import UsernamePassword
from twisted.internet.interfaces import IReactorTime

# Twisted's server-side challengers, public in imap4 (smtp has LOGIN only).
from twisted.mail.imap4 import (
    IllegalClientResponse,
    LOGINCredentials,
    PLAINCredentials,
)

from smtptut.server.commands import Replies, Reply

#: Failed AUTH attempts before the session ends.
MAX_AUTH_FAILURES = 3
#: AUTH attempts one client address may make in AUTH_PEER_WINDOW seconds,
#: over all its connections, before AUTH is refused (454) for the rest of
#: that window: 90 parallel connections made 270 guesses in 7 s (issue 9).
AUTH_PEER_LIMIT = 10
AUTH_PEER_WINDOW = 300.0
#: Client addresses the AUTH throttle remembers (the oldest forgotten first).
AUTH_PEERS_REMEMBERED = 10000
#: Seconds an AUTH failure waits, times the failures so far.
AUTH_DELAY = 1.0

#: The mechanisms offered, and Twisted's server side of each.
MECHANISMS: dict[bytes, type[PLAINCredentials | LOGINCredentials]] = {
    b"PLAIN": PLAINCredentials,
    b"LOGIN": LOGINCredentials,
}

#: What a LOGIN challenge says on the wire, for Twisted's challenge: the
#: words every client expects (RFC 4954 leaves them free).
_LOGIN_PROMPTS = {b"User Name\0": b"Username:", b"Password\0": b"Password:"}


@dataclass(frozen=True)
class Challenge:
    """
    Send C{334} with this (base64) text and wait for the client's response.
    """

    text: bytes


@dataclass(frozen=True)
class Credentials:
    """
    All the client's responses are in: check these credentials.
    """

    credentials: UsernamePassword
    username: bytes


Step = Challenge | Credentials | Reply


class AuthExchange:
    """
    One AUTH exchange, sans-IO: the mechanism's challenges and the client's
    responses, until there are credentials to check or a refusal
    (a L{Reply}).  It never keeps or logs what the client sends.
    """

    def __init__(self, mechanism: bytes) -> None:
        self.mechanism = mechanism
        # Both are Twisted's UsernamePassword with IChallengeResponse added.
        self.credentials: PLAINCredentials | LOGINCredentials = MECHANISMS[mechanism]()

    def start(self, initial: bytes) -> Step:
        """
        The first step: the initial response when there is one (RFC 4954
        §4), else the first challenge.
        """
        challenge = self.credentials.getChallenge()
        if initial:
            return self.respond(initial)
        return Challenge(base64.b64encode(_LOGIN_PROMPTS.get(challenge, challenge)))

    def respond(self, line: bytes) -> Step:
        """
        The client's response to the last challenge.
        """
        if line.strip() == b"*":
            return Replies.AUTH_CANCELLED
        try:
            answer = (
                b"" if line.strip() == b"=" else base64.b64decode(line, validate=True)
            )
        except (binascii.Error, ValueError):
            return Replies.AUTH_UNDECODABLE
        try:
            self.credentials.setResponse(answer)
        except IllegalClientResponse:
            return Replies.AUTH_BAD_PLAIN
        if self.credentials.moreChallenges():
            challenge = self.credentials.getChallenge()
            return Challenge(base64.b64encode(_LOGIN_PROMPTS.get(challenge, challenge)))
        return Credentials(self.credentials, self.credentials.username or b"")


class AuthThrottle:
    """
    AUTH attempts per client address over all its connections: at most
    C{limit} in any C{window} seconds.  An attempt counts from the moment its
    credentials are checked (so that parallel connections cannot all pass
    the check at once) until it succeeds; failures stay for the window.
    Each failure is answered after L{delay} seconds.

    @ivar clock: the reactor; a L{task.Clock} in tests.
    @ivar baseDelay: seconds the first failure waits.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limit: int = AUTH_PEER_LIMIT,
        window: float = AUTH_PEER_WINDOW,
        remembered: int = AUTH_PEERS_REMEMBERED,
        baseDelay: float = AUTH_DELAY,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.remembered = remembered
        self.baseDelay = baseDelay
        self._attempts: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, peer: str) -> list[float]:
        times = self._attempts.get(peer, [])
        cutoff = self.clock.seconds() - self.window
        while times and times[0] <= cutoff:
            del times[0]
        if not times:
            self._attempts.pop(peer, None)
        return times

    def failures(self, peer: str) -> int:
        """
        The attempts from C{peer} in the window that did not succeed.
        """
        return len(self._recent(peer))

    def refuses(self, peer: str) -> bool:
        """
        Whether C{peer} has made as many attempts as it may for now.
        """
        return self.failures(peer) >= self.limit

    def delay(self, peer: str, sessionFailures: int) -> float:
        """
        How long the answer to a failure waits: the longer the more failures
        this session and (doubling, up to 32 times L{baseDelay}) this address
        on any connection have had.
        """
        peerFailures = self.failures(peer)
        return self.baseDelay * max(sessionFailures, 2 ** (min(peerFailures, 6) - 1))

    def attempt(self, peer: str) -> float:
        """
        Count an attempt by C{peer}; the result identifies it to L{succeeded}.
        """
        now = self.clock.seconds()
        times = self._recent(peer)
        times.append(now)
        self._attempts[peer] = times
        self._attempts.move_to_end(peer)
        while len(self._attempts) > self.remembered:
            self._attempts.popitem(last=False)
        return now

    def succeeded(self, peer: str, attempt: float) -> None:
        """
        The attempt was right: it is no failure.
        """
        times = self._attempts.get(peer)
        if times and attempt in times:
            times.remove(attempt)
