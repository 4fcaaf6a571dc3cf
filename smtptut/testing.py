"""Test doubles for projects that send or receive mail with smtptut: a sink, a recording server, a DNS zone."""

from __future__ import annotations

import email
import email.message
import email.policy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
)
from twisted.names import authority, dns, server

from smtptut._recording import (
    Behaviour,
    Exchanges,
    Received,
    RecordingFactory,
    RecordingSMTP,
    freePort,
    listenOnLoopbacks,
)
from smtptut.server.factory import ConsoleSMTPFactory
from smtptut.server.service import makeFactory
from smtptut.server.settings import AcceptPolicy, ServerSettings

__all__ = [
    "Behaviour",
    "DNSServer",
    "Exchanges",
    "InboxSink",
    "Received",
    "RecordingFactory",
    "RecordingSMTP",
    "Sink",
    "Zone",
    "ZoneAuthority",
    "a",
    "aaaa",
    "cname",
    "freePort",
    "inboxSinkInThread",
    "listenDNS",
    "listenOnLoopbacks",
    "mx",
    "startDNSServer",
    "startInboxSink",
    "startSink",
    "txt",
]

# ------------------------------------------------------------------ the sink


@dataclass
class Sink:
    """
    smtptut's sink, in this process on a free port of loopback, storing
    what it accepts in a Maildir of its own (removed by L{stop}).

    @ivar port: the TCP port it listens on (at C{host}).
    @ivar host: the loopback address it listens on.
    @ivar maildir: the Maildir's directory (removed by L{stop} when the
        sink made it).
    @ivar settings: the L{ServerSettings} it runs with.
    """

    port: int
    host: str
    maildir: str
    settings: ServerSettings
    factory: ConsoleSMTPFactory
    listener: IListeningPort
    clock: IReactorTime
    ownMaildir: bool = True

    def stored(self) -> list[bytes]:
        """
        The stored files, oldest first, as bytes: a C{Return-Path:},
        C{Received:} and C{Delivered-To:} trace, then the message as sent
        (LF line ends).
        """
        new = os.path.join(self.maildir, "new")
        if not os.path.isdir(new):
            return []
        # Each file is written once, before its rename into new/: its
        # modification time is its arrival (the name breaks a tie).
        paths = [os.path.join(new, name) for name in os.listdir(new)]
        paths.sort(key=lambda p: (os.path.getmtime(p), os.path.basename(p)))
        result = []
        for path in paths:
            with open(path, "rb") as f:
                result.append(f.read())
        return result

    def messages(self) -> list[email.message.EmailMessage]:
        """
        The stored messages, oldest first, parsed (C{email.policy.default}):
        C{msg["Subject"]}, C{msg.get_content()}, C{msg["Delivered-To"]}...;
        L{stored} has their bytes.
        """
        return [
            cast(
                email.message.EmailMessage,
                email.message_from_bytes(raw, policy=email.policy.default),
            )
            for raw in self.stored()
        ]

    def waitForMessages(
        self, count: int, timeout: float = 10.0
    ) -> defer.Deferred[list[email.message.EmailMessage]]:
        """
        Fire with L{messages} once at least C{count} are stored; fail with
        L{defer.TimeoutError} after C{timeout} seconds.
        """
        interval = 0.02
        tries = max(1, int(timeout / interval))
        found: defer.Deferred[list[email.message.EmailMessage]] = defer.Deferred()

        def check(tried: int) -> None:
            if len(os.listdir(os.path.join(self.maildir, "new"))) >= count:
                found.callback(self.messages())
            elif tried >= tries:
                found.errback(
                    defer.TimeoutError(
                        f"{count} messages not stored in {timeout} seconds"
                    )
                )
            else:
                self.clock.callLater(interval, check, tried + 1)

        check(0)
        return found

    def stop(self) -> defer.Deferred[None]:
        """
        Stop listening, finish the transactions in flight, remove the Maildir.
        """
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        try:
            await _stopListening([self.listener])
            await self.factory.shutdown(2.0)
        finally:
            if self.ownMaildir:
                shutil.rmtree(self.maildir, ignore_errors=True)


def startSink(reactor: IReactorTCP, host: str = "127.0.0.1", **settings: Any) -> Sink:
    """
    Start smtptut's sink on a free port of C{host} (a loopback address),
    storing into a new temporary Maildir and printing nothing; it accepts
    every recipient (C{accept="*"}) unless told otherwise.

    @param reactor: a whole reactor: TCP, threads (the Maildir's fsync),
        time.
    @param settings: L{ServerSettings} fields to change (C{accept} may be
        given as text, as C{SMTPTUT_ACCEPT} is), e.g. C{maxSize=1000}.
    @raise ConfigError: as the server's settings would.
    """
    if isinstance(settings.get("accept"), str):
        settings["accept"] = AcceptPolicy.parse(settings["accept"])
    settings = {"accept": AcceptPolicy.parse("*"), "printMessages": False, **settings}
    given = settings.pop("maildir", None)
    maildir = given or tempfile.mkdtemp(prefix="smtptut-sink-")
    try:
        config = replace(
            ServerSettings(listen=f"tcp:0:interface={host}", maildir=maildir),
            **settings,
        )
        # One reactor provides all three; a type cannot say so (zope
        # interfaces do not intersect).
        clock = cast(IReactorTime, reactor)
        factory = makeFactory(config, cast(IReactorThreads, reactor), clock)
        listener = reactor.listenTCP(0, factory, interface=host)
    except BaseException:
        if not given:
            shutil.rmtree(maildir, ignore_errors=True)
        raise
    return Sink(
        cast(IPv4Address, listener.getHost()).port,
        host,
        maildir,
        config,
        factory,
        listener,
        clock,
        ownMaildir=not given,
    )


# ---------------------------------------------------------- a DNS double

#: Records by owner name: C{{"example.test": [mx(10, "mx.example.test")]}}.
Zone = Mapping[str, Iterable[dns.IEncodableRecord]]


class ZoneAuthority(authority.FileAuthority):
    """
    An authority serving the records of a L{Zone} given in memory (rather
    than read from a file), with an SOA for C{origin}.
    """

    def __init__(self, origin: str, records: Zone) -> None:
        self._zone = (origin, records)
        super().__init__("")

    def loadFile(self, filename: str) -> None:
        origin, records = self._zone
        soa = dns.Record_SOA(
            mname=b"ns." + origin.encode(),
            rname=b"hostmaster." + origin.encode(),
            serial=1,
            refresh=60,
            retry=60,
            expire=60,
            minimum=1,
            ttl=1,
        )
        table: dict[bytes, list[dns.IEncodableRecord]] = {
            origin.encode().lower(): [soa]
        }
        for name, recs in records.items():
            table.setdefault(name.encode().lower(), []).extend(recs)
        self.soa = (origin.encode(), soa)  # type: ignore[assignment]
        self.records = table  # type: ignore[assignment]


def mx(preference: int, name: str) -> dns.Record_MX:
    """
    An MX record (TTL 1 s): mail for the owner goes to C{name}.
    """
    return dns.Record_MX(preference, name.encode(), ttl=1)


def a(address: str) -> dns.Record_A:
    """
    An A record (TTL 1 s) for the IPv4 C{address}.
    """
    return dns.Record_A(address, ttl=1)


def aaaa(address: str) -> dns.Record_AAAA:
    """
    An AAAA record (TTL 1 s) for the IPv6 C{address}.
    """
    return dns.Record_AAAA(address, ttl=1)


def cname(name: str) -> dns.Record_CNAME:
    """
    A CNAME record (TTL 1 s): the owner is an alias of C{name}.
    """
    return dns.Record_CNAME(name.encode(), ttl=1)


def txt(*strings: str) -> dns.Record_TXT:
    """
    A TXT record (TTL 1 s) of C{strings} (SPF, DKIM keys...).
    """
    return dns.Record_TXT(*(s.encode() for s in strings), ttl=1)


@dataclass
class DNSServer:
    """
    A twisted.names server on 127.0.0.1, UDP and TCP on the same free port.
    """

    port: int
    listeners: list[IListeningPort] = field(default_factory=list)

    @property
    def nameserver(self) -> str:
        """
        The C{SMTPTUT_NAMESERVER} value that points at this server.
        """
        return f"127.0.0.1:{self.port}"

    def stop(self) -> defer.Deferred[None]:
        """
        Stop serving, UDP and TCP.
        """
        return _stopListening(self.listeners)


def startDNSServer(reactor: IReactorTCP, origin: str, records: Zone) -> DNSServer:
    """
    Serve C{records} for the zone C{origin} on a free port of 127.0.0.1
    (give L{DNSServer.nameserver} to C{SMTPTUT_NAMESERVER}); names not
    listed get NXDOMAIN, inside the zone or not (nothing is asked upstream).

    @param reactor: a reactor with TCP and UDP.
    """
    factory = server.DNSServerFactory(authorities=[ZoneAuthority(origin, records)])
    return listenDNS(reactor, factory)


def listenDNS(reactor: IReactorTCP, factory: server.DNSServerFactory) -> DNSServer:
    """
    Serve C{factory} over UDP and TCP on one free port of 127.0.0.1.

    @param reactor: a reactor with TCP and UDP.
    """
    # One reactor provides both; a type cannot say so (zope interfaces do not
    # intersect).
    udpReactor = cast(IReactorUDP, reactor)
    for _ in range(20):
        udp = udpReactor.listenUDP(
            0,
            dns.DNSDatagramProtocol(factory),
            interface="127.0.0.1",
            maxPacketSize=8192,
        )
        port = cast(IPv4Address, udp.getHost()).port
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")
        except error.CannotListenError:
            defer.maybeDeferred(udp.stopListening)
            continue
        return DNSServer(port, [udp, tcp])
    raise RuntimeError("no free port for the DNS server after 20 tries")


def _stopListening(listeners: Iterable[IListeningPort]) -> defer.Deferred[None]:
    stopped: list[defer.Deferred[object]] = [
        defer.maybeDeferred(cast(Callable[[], object], p.stopListening))
        for p in listeners
    ]
    d = defer.gatherResults(stopped)
    return d.addCallback(lambda _: None)


# ------------------------------------------------------ the sink's inbox

#: The sink with its web inbox (smtptut/inbox/testing.py builds on L{Sink}),
#: imported on first use: it loads twisted.web.
_INBOX = ("InboxSink", "inboxSinkInThread", "startInboxSink")

if TYPE_CHECKING:
    from smtptut.inbox.testing import InboxSink, inboxSinkInThread, startInboxSink
else:

    def __getattr__(name: str) -> object:
        if name in _INBOX:
            from smtptut.inbox import testing

            return getattr(testing, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
