"""The session's commands for ConsoleESMTP: HELO/EHLO, RSET, NOOP, QUIT, VRFY, EXPN, HELP, STARTTLS, AUTH."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from smtptut.server.commands import Replies, Reply, decode
from smtptut.server.framing import MAX_AUTH_LINE, MAX_COMMAND_LINE, Framer
from smtptut.server.sasl import (
    MAX_AUTH_FAILURES,
    AuthExchange,
    Challenge,
    Credentials,
    Step,
)
from smtptut.server.session import Session, State
from smtptut.server.settings import ServerSettings

if TYPE_CHECKING:
    from smtptut.server.factory import ConsoleSMTPFactory


class SessionCommands:
    """
    L{ConsoleESMTP}'s commands outside a mail transaction: the greeting and
    its extensions, the small commands, STARTTLS (RFC 3207) and AUTH (RFC
    4954) with its throttle.  What it uses of the protocol is declared here.
    """

    log: Logger
    factory: ConsoleSMTPFactory
    settings: ServerSettings
    session: Session
    framer: Framer
    clock: IReactorTime
    portal: Portal | None
    peer: str
    peerIsLoopback: bool
    transport: ITransport | None
    delivery: smtp.IMessageDelivery
    handshaking: bool
    _auth: AuthExchange | None
    _onLogout: Callable[[], None] | None
    _reply: Callable[[int, bytes | str], None]
    _replies: list[bytes]
    _refused: Callable[..., None]
    _error: Callable[..., None]
    _flush: Callable[[], None]
    _close: Callable[[], None]
    _wait: Callable[[defer.Deferred[None]], None]
    _afterTransaction: Callable[[], None]

    def authOffered(self) -> bool:
        """
        AUTH needs accounts, and TLS unless the client is on loopback.
        """
        return self.portal is not None and (
            self.session.startedTLS or self.peerIsLoopback
        )

    def _greet(self, rest: bytes, extended: bool) -> None:
        verb = b"EHLO" if extended else b"HELO"
        if not rest:
            self._error(verb, 501, b"5.5.4 Syntax: " + verb + b" hostname")
            return
        session = self.session
        session.newTransaction()
        session.helo = rest
        session.usedEHLO = extended
        greeting = (
            self.factory.domain + b" Hello " + rest + b" [" + self.peer.encode() + b"]"
        )
        if not extended:
            self._reply(250, greeting)
            return
        lines = [
            greeting,
            b"PIPELINING",
            b"SIZE %d" % self.settings.maxSize,
            b"8BITMIME",
            b"ENHANCEDSTATUSCODES",
        ]
        if self.factory.tls is not None and not session.startedTLS:
            lines.append(b"STARTTLS")
        if self.authOffered():
            lines.append(b"AUTH PLAIN LOGIN")
        self._replies.extend(b"250-%s\r\n" % line for line in lines[:-1])
        self._reply(250, lines[-1])

    def do_HELO(self, rest: bytes) -> None:
        self._greet(rest, False)

    def do_EHLO(self, rest: bytes) -> None:
        self._greet(rest, True)

    def do_RSET(self, rest: bytes) -> None:
        self.session.newTransaction()
        self._reply(*Replies.RESET)
        self._afterTransaction()

    def do_NOOP(self, rest: bytes) -> None:
        self._reply(*Replies.OK)

    def do_QUIT(self, rest: bytes) -> None:
        self._reply(*Replies.BYE)
        self._close()

    def do_VRFY(self, rest: bytes) -> None:
        self._reply(*Replies.VRFY)

    def do_EXPN(self, rest: bytes) -> None:
        self._error(b"EXPN", *Replies.NO_EXPN)

    def do_HELP(self, rest: bytes) -> None:
        self._reply(*Replies.HELP)

    def do_STARTTLS(self, rest: bytes) -> None:
        if self.factory.tls is None:
            self._error(b"STARTTLS", *Replies.NO_TLS)
            return
        if self.session.startedTLS:
            self._error(b"STARTTLS", *Replies.TLS_ACTIVE)
            return
        if rest:
            self._error(b"STARTTLS", *Replies.STARTTLS_SYNTAX)
            return
        self._reply(*Replies.START_TLS)
        self._flush()
        discarded = self.framer.discard()
        if discarded:
            # RFC 3207 §5 / CVE-2011-0411: nothing sent in plaintext after
            # STARTTLS may be taken as said over TLS.
            self.log.info(
                "discarded {count} octets pipelined after STARTTLS from {peer}",
                count=discarded,
                peer=self.peer,
            )
        self.transport.startTLS(self.factory.tls)  # type: ignore[union-attr]
        self.handshaking = True
        # RFC 3207 §4.2: forget everything learnt before TLS.
        self.session.reset()
        self.session.startedTLS = True

    # -- AUTH

    def do_AUTH(self, rest: bytes) -> None:
        session = self.session
        if self.portal is None:
            self._error(b"AUTH", *Replies.NO_AUTH)
            return
        if not self.authOffered():
            self._error(b"AUTH", *Replies.AUTH_NEEDS_TLS)
            return
        if session.helo is None or not session.usedEHLO:
            self._error(b"AUTH", *Replies.NO_EHLO)
            return
        if session.authenticated:
            self._error(b"AUTH", *Replies.AUTHENTICATED_ALREADY)
            return
        if session.transaction.sender is not None:
            self._error(b"AUTH", *Replies.AUTH_IN_TRANSACTION)
            return
        mechanism, _, initial = rest.partition(b" ")
        mechanism = mechanism.upper()
        try:
            self._auth = AuthExchange(mechanism)
        except KeyError:
            self._error(b"AUTH", *Replies.UNKNOWN_MECHANISM)
            return
        if self._authThrottled():
            return
        session.state = State.AUTH
        self.framer.expectLines(MAX_AUTH_LINE)
        self._authStep(self._auth.start(initial.strip()))

    def _authResponse(self, line: bytes) -> None:
        # Never log what the client sends here: it is a credential.
        assert self._auth is not None
        self._authStep(self._auth.respond(line))

    def _endAuth(self) -> None:
        self.session.state = State.COMMAND
        self.framer.expectLines(MAX_COMMAND_LINE)
        self._auth = None

    def _authStep(self, step: Step) -> None:
        if isinstance(step, Challenge):
            self._reply(334, step.text)
            return
        self._endAuth()
        if isinstance(step, Reply):
            self._error(b"AUTH", *step)
            return
        assert isinstance(step, Credentials) and self.portal is not None
        # Checked again here: parallel connections may all have passed the
        # check at AUTH before any of them sent credentials.
        if self._authThrottled():
            return
        attempt = self.factory.authThrottle.attempt(self.peer)
        login = self.portal.login(step.credentials, None, smtp.IMessageDelivery)
        self._wait(
            login.addCallbacks(
                self._authSucceeded,
                self._authFailed,
                callbackArgs=(step.username, attempt),
            )
        )

    def _authThrottled(self) -> bool:
        """
        Refuse AUTH (454, an error) when this client's address has made all
        the attempts it may for now, over all its connections.
        """
        if not self.factory.authThrottle.refuses(self.peer):
            return False
        self._endAuth()
        self._error(b"AUTH", *Replies.AUTH_THROTTLED)
        return True

    def _authSucceeded(
        self,
        result: tuple[object, smtp.IMessageDelivery, Callable[[], None]],
        user: bytes,
        attempt: float,
    ) -> None:
        self.factory.authThrottle.succeeded(self.peer, attempt)
        _, avatar, logout = result
        self.delivery = avatar
        self._onLogout = logout
        self.session.authenticated = True
        self.session.user = user
        self.log.info(
            "authenticated {user} from {peer}", user=decode(user), peer=self.peer
        )
        self._reply(*Replies.AUTH_OK)

    def _authFailed(self, failure: Failure) -> defer.Deferred[None]:
        session = self.session
        session.authFailures += 1
        session.errors += 1
        # Each failure waits longer before its answer; enough of them end
        # the session.
        delay = self.factory.authThrottle.delay(self.peer, session.authFailures)

        def answer() -> None:
            self._refused(b"AUTH", *Replies.AUTH_INVALID)
            if session.authFailures >= MAX_AUTH_FAILURES:
                self._refused(b"(session)", *Replies.AUTH_TOO_MANY)
                self._close()

        return task.deferLater(self.clock, delay, answer)
