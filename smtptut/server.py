"""The tutorial's console ESMTP server, working on Python 3."""

from __future__ import annotations

import sys
from collections.abc import Callable
from email.utils import formatdate
from typing import IO, Any, cast

from twisted.application import service, strports
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger, LoggingFile
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
from zope.interface import implementer

from smtptut.config import AcceptPolicy, ServerSettings

#: The tutorial's account, kept as the default for loopback use.
TUTORIAL_USERS = {b"guest": b"password"}


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def consoleOutput() -> IO[str]:
    """
    Where messages are printed: standard output as the process got it.

    Under twistd, C{sys.stdout} is a log file that drops blank lines (such as
    the one between header and body), so the message goes to the real one.
    """
    return cast(
        IO[str], sys.__stdout__ if isinstance(sys.stdout, LoggingFile) else sys.stdout
    )


@implementer(smtp.IMessageDelivery)
class ConsoleMessageDelivery:
    """
    Decides who may receive mail here, and makes a L{ConsoleMessage} for each
    recipient accepted.
    """

    def __init__(
        self,
        accept: AcceptPolicy | None = None,
        hostname: str = "localhost",
        output: Callable[[], IO[str]] = consoleOutput,
    ) -> None:
        self.accept = accept or AcceptPolicy()
        self.hostname = hostname
        self.output = output

    def receivedHeader(
        self,
        helo: tuple[bytes | None, bytes],
        origin: smtp.Address,
        recipients: list[Any],
    ) -> bytes:
        """
        An RFC 5321 §4.4 trace field: who handed us the message, and when.
        """
        heloName, peer = helo
        peerText = _decode(peer) if isinstance(peer, bytes) else str(peer)
        name = _decode(heloName) if heloName else peerText
        protocol = "ESMTP"
        if recipients:
            server = getattr(recipients[0], "protocol", None)
            protocol = getattr(server, "withProtocol", protocol)
        forClause = ""
        if len(recipients) == 1:
            forClause = f"\r\n\tfor <{recipients[0].dest}>"
        return (
            f"Received: from {name} ([{peerText}])\r\n"
            f"\tby {self.hostname} (smtptut) with {protocol}{forClause};"
            f" {formatdate(localtime=True)}"
        ).encode()

    def validateFrom(
        self, helo: tuple[bytes | None, bytes], origin: smtp.Address
    ) -> smtp.Address:
        # All senders are accepted, as in the tutorial.
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], ConsoleMessage]:
        local = _decode(user.dest.local)
        domain = _decode(user.dest.domain)
        if self.accept.accepts(local, domain):
            return lambda: ConsoleMessage(self.output())
        raise smtp.SMTPBadRcpt(user, code=550, resp="5.7.1 Recipient not accepted here")


@implementer(smtp.IMessage)
class ConsoleMessage:
    """
    A message being received: printed when it is complete, as the tutorial does.
    """

    def __init__(self, output: IO[str] | None = None) -> None:
        self.output = output if output is not None else consoleOutput()
        self.lines: list[bytes] | None = []

    def lineReceived(self, line: bytes) -> None:
        assert self.lines is not None
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        assert self.lines is not None
        text = _decode(b"\n".join(self.lines)).replace("\r\n", "\n")
        self.output.write("New message received:\n" + text + "\n")
        self.output.flush()
        self.lines = None
        return defer.succeed(None)

    def connectionLost(self) -> None:
        # There was an error, throw away the stored lines
        self.lines = None


class ConsoleESMTP(smtp.ESMTP):
    """
    Twisted's ESMTP server protocol with what the tutorial's server needs on
    Python 3: it remembers whether EHLO, TLS and AUTH were used, for the
    C{Received:} field's C{with} clause (RFC 3848).
    """

    log = Logger()
    usedEHLO = False

    @property
    def withProtocol(self) -> str:
        if not self.usedEHLO:
            return "SMTP"
        return (
            "ESMTP"
            + ("S" if self.startedTLS else "")
            + ("A" if self.authenticated else "")
        )

    def do_EHLO(self, rest: bytes) -> None:
        self.usedEHLO = True
        super().do_EHLO(rest)

    def do_HELO(self, rest: bytes) -> None:
        self.usedEHLO = False
        super().do_HELO(rest)


class ConsoleSMTPFactory(smtp.SMTPFactory):
    """
    The tutorial's C{ConsoleSMTPFactory}: one L{ConsoleMessageDelivery} for
    unauthenticated clients, AUTH LOGIN and PLAIN through the portal.
    """

    protocol = ConsoleESMTP

    def __init__(
        self,
        portal: Portal | None = None,
        delivery: ConsoleMessageDelivery | None = None,
    ) -> None:
        smtp.SMTPFactory.__init__(self, portal)
        self.delivery = delivery or ConsoleMessageDelivery()
        self.domain = self.delivery.hostname.encode("idna")

    def buildProtocol(self, addr: IAddress | None) -> ConsoleESMTP:
        p = smtp.SMTPFactory.buildProtocol(self, addr)
        p.delivery = self.delivery
        # Twisted looks challengers up by the bytes the client sends.
        p.challengers = {b"LOGIN": LOGINCredentials, b"PLAIN": PLAINCredentials}
        return cast(ConsoleESMTP, p)


@implementer(IRealm)
class SimpleRealm:
    """
    The tutorial's realm: an authenticated client gets the same kind of
    delivery as everyone else.
    """

    def __init__(
        self,
        makeDelivery: Callable[[], ConsoleMessageDelivery] = ConsoleMessageDelivery,
    ) -> None:
        self.makeDelivery = makeDelivery

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, ConsoleMessageDelivery, Callable[[], None]]:
        if smtp.IMessageDelivery in interfaces:
            return smtp.IMessageDelivery, self.makeDelivery(), lambda: None
        raise NotImplementedError()


def makePortal(
    makeDelivery: Callable[[], ConsoleMessageDelivery],
    users: dict[bytes, bytes] | None = None,
) -> Portal:
    """
    A portal whose checker knows C{users} (the tutorial's guest by default).
    """
    portal = Portal(SimpleRealm(makeDelivery))
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    for name, password in (TUTORIAL_USERS if users is None else users).items():
        checker.addUser(name, password)
    portal.registerChecker(checker)
    return portal


def makeServerService(
    settings: ServerSettings, reactor: Any = None
) -> service.IService:
    """
    The console server as a service listening on C{settings.listen}.
    """

    def makeDelivery() -> ConsoleMessageDelivery:
        return ConsoleMessageDelivery(settings.accept, settings.hostname)

    factory = ConsoleSMTPFactory(makePortal(makeDelivery), makeDelivery())
    return strports.service(settings.listen, factory, reactor=reactor)
