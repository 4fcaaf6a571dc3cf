"""The recording SMTP server of smtptut.testing: records every command and message, misbehaves on request."""

from __future__ import annotations

import base64
import hmac
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from twisted.internet import defer, error, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IReactorTCP,
)
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

# ----------------------------------------------- a recording SMTP server
#
# A small purpose-built SMTP server for a client's tests: it records exactly
# what it is sent, and can be told to misbehave (greet with 421, drop the
# connection in DATA, never answer, break the TLS handshake).  Several
# loopback addresses (127.0.0.2, 127.0.0.3...) serve as different exchanges
# on one port.


@dataclass
class Behaviour:
    """
    How a L{RecordingSMTP} server acts.

    @ivar greeting: the first reply; a 4xx or 5xx one is followed by a close.
    @ivar extensions: EHLO keywords offered (STARTTLS and AUTH are added
        from C{tls} and C{auth}).
    @ivar refuse: local parts refused at RCPT with 550.
    @ivar mailReply: the reply to every MAIL (a greylisting C{451}, say).
    @ivar deferRecipients: local parts deferred at RCPT with 450.
    @ivar silent: accept the connection, never say anything.
    @ivar dropInData: close the connection after the first line of message.
    @ivar stallAtDot: take the whole message, then never answer the final dot.
    @ivar tls: a server context factory; STARTTLS is offered when set.
    @ivar brokenTLS: answer STARTTLS with 220, then garbage, then close.
    @ivar auth: mechanisms offered (C{PLAIN}, C{LOGIN}, C{CRAM-MD5}).
    @ivar users: accepted user names and passwords.
    """

    greeting: bytes = b"220 recorder.test ESMTP"
    extensions: tuple[bytes, ...] = (b"PIPELINING", b"8BITMIME", b"SIZE 10000000")
    refuse: tuple[str, ...] = ("bad",)
    mailReply: bytes = b"250 2.1.0 sender ok"
    deferRecipients: tuple[str, ...] = ()
    silent: bool = False
    dropInData: bool = False
    stallAtDot: bool = False
    tls: IOpenSSLServerConnectionCreator | CertificateOptions | None = None
    brokenTLS: bool = False
    auth: tuple[bytes, ...] = ()
    users: Mapping[bytes, bytes] = field(default_factory=dict)
    #: Refuse an EHLO or HELO name that is neither fully qualified nor an
    #: address literal, with the reply of Postfix's
    #: C{smtpd_helo_restrictions = reject_non_fqdn_helo_hostname}.
    fqdnHelo: bool = False


@dataclass
class Received:
    """
    One message as the server took it (dot-unstuffed), with its session facts.
    """

    sender: bytes
    recipients: list[bytes]
    mailLine: bytes
    data: bytes
    tls: bool
    user: bytes | None
    address: str


class RecordingSMTP(LineReceiver):
    """
    A small ESMTP server that records commands and messages exactly, into
    its factory (a L{RecordingFactory}), acting as its L{Behaviour} says.
    """

    factory: RecordingFactory

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.factory.open += 1
        self.factory.mostOpen = max(self.factory.mostOpen, self.factory.open)
        self.behaviour = self.factory.behaviour
        self.tls = False
        self.user: bytes | None = None
        self.inData = False
        self.authState: tuple[bytes, ...] | None = None
        self.reset()
        if self.behaviour.silent:
            return
        self.sendLine(self.behaviour.greeting)
        if not self.behaviour.greeting.startswith(b"2"):
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.open -= 1

    def dataReceived(self, data: bytes) -> None:
        # What arrived together shows whether the client pipelines.
        if not self.inData:
            self.factory.chunks.append(data)
        super().dataReceived(data)

    def reset(self) -> None:
        self.sender: bytes | None = None
        self.recipients: list[bytes] = []
        self.mailLine = b""
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        if self.behaviour.silent:
            return
        if self.inData:
            return self.dataLine(line)
        if self.authState is not None:
            return self.authLine(line)
        self.factory.commands.append(line)
        verb, _, rest = line.partition(b" ")
        handler = getattr(self, "do_" + verb.upper().decode("ascii", "replace"), None)
        if handler is None:
            self.sendLine(b"500 5.5.1 unknown command")
        else:
            handler(rest)

    def heloRefused(self, name: bytes) -> bool:
        if not self.behaviour.fqdnHelo or name.startswith(b"[") or b"." in name:
            return False
        self.sendLine(
            b"504 5.5.2 <" + name + b">: Helo command rejected: need fully-qualified"
            b" hostname"
        )
        return True

    def do_EHLO(self, rest: bytes) -> None:
        if self.heloRefused(rest.strip()):
            return
        offered = list(self.behaviour.extensions)
        if self.behaviour.tls is not None or self.behaviour.brokenTLS:
            if not self.tls:
                offered.append(b"STARTTLS")
        if self.behaviour.auth:
            offered.append(b"AUTH " + b" ".join(self.behaviour.auth))
        lines = [b"recorder.test", *offered]
        for text in lines[:-1]:
            self.sendLine(b"250-" + text)
        self.sendLine(b"250 " + lines[-1])

    def do_HELO(self, rest: bytes) -> None:
        if self.heloRefused(rest.strip()):
            return
        self.sendLine(b"250 recorder.test")

    def do_STARTTLS(self, rest: bytes) -> None:
        self.sendLine(b"220 2.0.0 go ahead")
        if self.behaviour.brokenTLS:
            self.transport.write(b"this is not TLS\r\n" * 4)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.transport.startTLS(self.behaviour.tls)  # type: ignore[union-attr]
        self.tls = True
        self.reset()

    def do_AUTH(self, rest: bytes) -> None:
        mechanism, _, initial = rest.partition(b" ")
        mechanism = mechanism.upper()
        if mechanism not in self.behaviour.auth:
            self.sendLine(b"504 5.5.4 mechanism not offered")
        elif mechanism == b"PLAIN" and initial:
            self.checkPlain(initial)
        elif mechanism == b"PLAIN":
            self.authState = (b"PLAIN",)
            self.sendLine(b"334 ")
        elif mechanism == b"LOGIN":
            self.authState = (b"LOGIN",)
            self.sendLine(b"334 " + base64.b64encode(b"Username:"))
        else:
            challenge = b"<12345.67890@recorder.test>"
            self.authState = (b"CRAM-MD5", challenge)
            self.sendLine(b"334 " + base64.b64encode(challenge))

    def authLine(self, line: bytes) -> None:
        self.factory.authLines.append(line)
        state, self.authState = self.authState, None
        assert state is not None
        try:
            answer = base64.b64decode(line)
        except ValueError:
            self.sendLine(b"501 5.5.2 bad base64")
            return
        if state[0] == b"PLAIN":
            self.checkPlain(line)
        elif state[0] == b"LOGIN" and len(state) == 1:
            self.authState = (b"LOGIN", answer)
            self.sendLine(b"334 " + base64.b64encode(b"Password:"))
        elif state[0] == b"LOGIN":
            self.authenticated(state[1], answer == self.behaviour.users.get(state[1]))
        else:
            user, _, digest = answer.rpartition(b" ")
            password = self.behaviour.users.get(user)
            expected = (
                hmac.new(password, state[1], "md5").hexdigest().encode()
                if password is not None
                else b""
            )
            self.authenticated(user, bool(expected) and digest == expected)

    def checkPlain(self, encoded: bytes) -> None:
        self.factory.authLines.append(encoded)
        parts = base64.b64decode(encoded).split(b"\0")
        if len(parts) != 3:
            self.sendLine(b"501 5.5.2 bad PLAIN response")
            return
        _, user, password = parts
        self.authenticated(user, self.behaviour.users.get(user) == password)

    def authenticated(self, user: bytes, ok: bool) -> None:
        if ok:
            self.user = user
            self.sendLine(b"235 2.7.0 authenticated")
        else:
            self.sendLine(b"535 5.7.8 authentication credentials invalid")

    def do_MAIL(self, rest: bytes) -> None:
        if self.sender is not None:
            self.sendLine(b"503 5.5.1 nested MAIL command")
            return
        if not self.behaviour.mailReply.startswith(b"2"):
            self.sendLine(self.behaviour.mailReply)
            return
        self.mailLine = rest
        self.sender = rest.partition(b">")[0].partition(b"<")[2]
        self.sendLine(self.behaviour.mailReply)

    def do_RCPT(self, rest: bytes) -> None:
        if self.sender is None:
            self.sendLine(b"503 5.5.1 MAIL first")
            return
        address = rest.partition(b">")[0].partition(b"<")[2]
        local = address.rpartition(b"@")[0].decode("utf-8", "replace")
        if local in self.behaviour.refuse:
            self.sendLine(b"550 5.1.1 no such user here")
            return
        if local in self.behaviour.deferRecipients:
            self.sendLine(b"450 4.2.0 mailbox busy, try later")
            return
        self.recipients.append(address)
        self.sendLine(b"250 2.1.5 recipient ok")

    def do_DATA(self, rest: bytes) -> None:
        if not self.recipients:
            self.sendLine(b"554 5.5.1 no valid recipients")
            return
        self.inData = True
        self.sendLine(b"354 go ahead")

    def dataLine(self, line: bytes) -> None:
        if self.behaviour.dropInData:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if line != b".":
            self.lines.append(line[1:] if line.startswith(b".") else line)
            return
        self.inData = False
        assert self.sender is not None
        peer = self.transport.getHost()  # type: ignore[union-attr]
        self.factory.messages.append(
            Received(
                self.sender,
                self.recipients,
                self.mailLine,
                b"".join(line + b"\r\n" for line in self.lines),
                self.tls,
                self.user,
                getattr(peer, "host", ""),
            )
        )
        self.reset()
        if self.behaviour.stallAtDot:
            return
        self.sendLine(b"250 2.0.0 queued")

    def do_RSET(self, rest: bytes) -> None:
        self.reset()
        self.sendLine(b"250 2.0.0 reset")

    def do_NOOP(self, rest: bytes) -> None:
        self.sendLine(b"250 2.0.0 ok")

    def do_QUIT(self, rest: bytes) -> None:
        self.sendLine(b"221 2.0.0 bye")
        self.transport.loseConnection()  # type: ignore[union-attr]


class RecordingFactory(protocol.ServerFactory):
    """
    Makes L{RecordingSMTP} servers that share one record.

    @ivar commands: every command line, in order (AUTH answers apart).
    @ivar authLines: the client's AUTH answers (base64, as sent).
    @ivar chunks: the octets of each read outside DATA (what was pipelined).
    @ivar messages: the L{Received} messages.
    @ivar connections: connections so far; C{open}, now; C{mostOpen}, at once.
    """

    protocol = RecordingSMTP  # type: ignore[assignment]
    noisy = False

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.commands: list[bytes] = []
        self.authLines: list[bytes] = []
        self.chunks: list[bytes] = []
        self.messages: list[Received] = []
        self.connections = 0
        self.open = 0
        self.mostOpen = 0


@dataclass
class Exchanges:
    """
    Servers on several loopback addresses, all on one port.
    """

    port: int
    factories: dict[str, RecordingFactory]
    listeners: list[IListeningPort]

    def stop(self) -> defer.Deferred[None]:
        """
        Stop every server.
        """
        return defer.gatherResults(
            [defer.maybeDeferred(p.stopListening) for p in self.listeners]
        ).addCallback(lambda _: None)


def listenOnLoopbacks(
    reactor: IReactorTCP, behaviours: Mapping[str, Behaviour | None]
) -> Exchanges:
    """
    A L{RecordingSMTP} server on each given loopback address, one free port
    for all.  An address mapped to L{None} gets no server: connections to it
    are refused.
    """
    for _ in range(20):
        port = 0
        listeners: list[IListeningPort] = []
        factories: dict[str, RecordingFactory] = {}
        try:
            for host, behaviour in behaviours.items():
                if behaviour is None:
                    continue
                factory = RecordingFactory(behaviour)
                listener = reactor.listenTCP(port, factory, interface=host)
                port = cast(IPv4Address, listener.getHost()).port
                listeners.append(listener)
                factories[host] = factory
        except error.CannotListenError:
            for listener in listeners:
                defer.maybeDeferred(listener.stopListening)
            continue
        if port == 0:
            port = freePort()
        return Exchanges(port, factories, listeners)
    raise RuntimeError("no port free on every loopback address after 20 tries")


def freePort(host: str = "127.0.0.1") -> int:
    """
    A port nothing listens on at C{host} right now.
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
