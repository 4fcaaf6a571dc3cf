"""The tutorial's ConsoleMessageDelivery: whom mail is taken for, trace fields, where it goes."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from email.utils import formatdate
from typing import IO

from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.mail import smtp
from zope.interface import implementer

from smtptut.server.commands import Replies, decode
from smtptut.server.consoleview import consoleOutput
from smtptut.server.maildir import Maildir
from smtptut.server.messages import (
    ConsoleMessage,
    Destinations,
    ISinkMessage,
    MaildirSink,
)
from smtptut.server.settings import AcceptPolicy


class _TraceDate:
    """
    The date for a trace field (RFC 5322) on a clock, made once a second.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(self.clock.seconds())
        if second != self._second:
            self._second, self._text = second, formatdate(second, localtime=True)
        return self._text


class ISinkDelivery(smtp.IMessageDelivery):
    """
    Twisted's L{smtp.IMessageDelivery} given what its interface leaves out,
    so that it never reaches back into the protocol: the protocol's name for
    C{Received:}, the address the client connected to.
    """

    def traceHeader(
        helo: tuple[bytes | None, bytes],
        origin: smtp.Address,
        recipients: list[smtp.User],
        withProtocol: str,
    ) -> bytes:
        """
        C{receivedHeader}'s field, naming C{withProtocol} (RFC 3848).
        """

    def validateRecipient(
        user: smtp.User, localHost: str | None
    ) -> Callable[[], ISinkMessage]:
        """
        C{validateTo}, knowing C{localHost}, the address the client
        connected to (or L{None}).
        """


@implementer(ISinkDelivery)
class ConsoleMessageDelivery:
    """
    Decides who may receive mail here, and makes the message (printed, stored
    in a Maildir, or both) for a transaction.

    The sink's protocol gives it what Twisted's interface leaves out: the
    protocol name for C{Received:} (L{traceHeader}) and the address the
    client connected to (L{validateRecipient}).
    """

    def __init__(
        self,
        reactor: IReactorThreads,
        clock: IReactorTime,
        accept: AcceptPolicy | None = None,
        hostname: str = "localhost",
        output: Callable[[], IO[str]] = consoleOutput,
        maildir: Maildir | None = None,
        printMessages: bool = True,
    ) -> None:
        """
        @param reactor: where a Maildir's commit (fsync) runs.
        @param clock: the time of C{Received:} fields and Maildir names.
        """
        self.reactor = reactor
        self.clock = clock
        self.accept = accept or AcceptPolicy()
        self.hostname = hostname
        self.output = output
        self.maildir = maildir
        self.printMessages = printMessages
        #: Where the console spools a large message (L{ConsoleMessage}).
        self.spoolDirectory: str | None = None
        self._date = _TraceDate(clock)

    def receivedHeader(
        self,
        helo: tuple[bytes | None, bytes],
        origin: smtp.Address,
        recipients: list[smtp.User],
    ) -> bytes:
        """
        L{smtp.IMessageDelivery}'s: L{traceHeader} with plain C{ESMTP}.
        """
        return self.traceHeader(helo, origin, recipients, "ESMTP")

    def traceHeader(
        self,
        helo: tuple[bytes | None, bytes],
        origin: smtp.Address,
        recipients: list[smtp.User],
        withProtocol: str,
    ) -> bytes:
        """
        An RFC 5321 §4.4 trace field: who handed us the message, how
        (C{withProtocol}, RFC 3848: C{ESMTPSA}...), and when.
        """
        heloName, peer = helo
        peerText = decode(peer) if isinstance(peer, bytes) else str(peer)
        name = decode(heloName) if heloName else peerText
        if ":" in peerText:
            # RFC 5321 §4.1.3: an IPv6 address literal is tagged.
            peerText = "IPv6:" + peerText
        forClause = ""
        if len(recipients) == 1:
            forClause = f"\r\n\tfor <{recipients[0].dest}>"
        return (
            f"Received: from {name} ([{peerText}])\r\n"
            f"\tby {self.hostname} (smtptut) with {withProtocol}{forClause};"
            f" {self._date()}"
        ).encode("utf-8", "replace")

    def validateFrom(
        self, helo: tuple[bytes | None, bytes], origin: smtp.Address
    ) -> smtp.Address:
        # All senders are accepted, as in the tutorial.
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], ISinkMessage]:
        """
        L{smtp.IMessageDelivery}'s: L{validateRecipient}, knowing no address
        the client connected to.
        """
        return self.validateRecipient(user, None)

    def validateRecipient(
        self, user: smtp.User, localHost: str | None
    ) -> Callable[[], ISinkMessage]:
        """
        Take C{user} or raise L{smtp.SMTPBadRcpt}; C{localHost} is the
        address the client connected to (its literal is a local domain).
        """
        # Never an open relay: whoever the client is, authenticated or not,
        # only the recipients SMTPTUT_ACCEPT names are taken.
        local = decode(user.dest.local)
        domain = decode(user.dest.domain)
        if self.accept.accepts(local, domain):
            return self.makeMessage
        if local.lower() == "postmaster" and self.isLocalDomain(domain, localHost):
            # RFC 5321 §4.5.1: postmaster is taken for every domain served.
            return self.makeMessage
        code, text = Replies.NOT_HERE
        raise smtp.SMTPBadRcpt(user, code=code, resp=text)

    def isLocalDomain(self, domain: str, localHost: str | None = None) -> bool:
        """
        Whether C{domain} is one this sink serves: one C{SMTPTUT_ACCEPT}
        accepts mail for (see L{AcceptPolicy.acceptsDomain}), its own name,
        or the address literal of C{localHost}, the address the client
        connected to.
        """
        domain = domain.lower()
        if domain == self.hostname.lower() or self.accept.acceptsDomain(domain):
            return True
        if not localHost:
            return False
        try:
            own = ipaddress.ip_address(localHost.split("%")[0])
        except ValueError:
            return False
        # A literal recipient domain is in its usual form already.
        return domain == (f"[ipv6:{own}]" if own.version == 6 else f"[{own}]")

    def makeMessage(self) -> ISinkMessage:
        """
        Where one message goes: the console, the Maildir, or both.
        """
        parts: list[ISinkMessage] = []
        if self.printMessages:
            parts.append(ConsoleMessage(self.output(), self.spoolDirectory))
        if self.maildir is not None:
            message = self.maildir.newMessage(self.reactor, self.clock.seconds())
            parts.append(MaildirSink(message))
        if len(parts) == 1:
            return parts[0]
        return Destinations(parts)
