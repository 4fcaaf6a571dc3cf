"""Fixtures of the queue's tests: a zone with two domains, a greylisting and a slow server."""

from __future__ import annotations

import email
import email.message
import email.policy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import error
from twisted.internet.interfaces import IListeningPort

from .helpers import (
    DNSServer,
    RecordingFactory,
    RecordingSMTP,
    a,
    mx,
    reactor,
    startDNSServer,
)

#: Where mail goes: recipients at example.test (MX on 127.0.0.2), senders
#: at sender.test (MX on 127.0.0.3, where DSNs arrive).
RECIPIENT_MX = "127.0.0.2"
SENDER_MX = "127.0.0.3"


def queueZone() -> dict[str, list[Any]]:
    return {
        "example.test": [mx(10, "mx.example.test")],
        "mx.example.test": [a(RECIPIENT_MX)],
        "sender.test": [mx(10, "mx.sender.test")],
        "mx.sender.test": [a(SENDER_MX)],
    }


def startQueueDNS(extra: Mapping[str, list[Any]] | None = None) -> DNSServer:
    """
    The loopback nameserver every queue test uses: nothing leaves the machine.

    @param extra: more names of the zone (a DKIM key's TXT record).
    """
    return startDNSServer(reactor, "test", {**queueZone(), **(extra or {})})


class GreylistingSMTP(RecordingSMTP):
    """
    A greylisting receiver, as Postfix with postgrey behaves: the first RCPT
    of a sender/recipient pair gets 451 4.7.1, every later one is taken.
    """

    factory: GreylistingFactory

    def do_RCPT(self, rest: bytes) -> None:
        address = rest.partition(b">")[0].partition(b"<")[2]
        key = (self.sender or b"", address)
        if self.sender is not None and key not in self.factory.seen:
            self.factory.seen.add(key)
            self.sendLine(b"451 4.7.1 Recipient address rejected: Greylisted")
            return
        super().do_RCPT(rest)


class GreylistingFactory(RecordingFactory):
    protocol = GreylistingSMTP

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[bytes, bytes]] = set()


class SlowSMTP(RecordingSMTP):
    """
    A receiver that takes a while (20 ms) to answer the final dot, as a real one that
    scans the message does: a runner killed at random is often killed with
    a transaction in flight.
    """

    factory: SlowFactory

    def sendLine(self, line: bytes) -> None:
        if line.startswith(b"250 2.0.0 queued"):
            reactor.callLater(self.factory.delay, super().sendLine, line)
            return
        super().sendLine(line)


class SlowFactory(RecordingFactory):
    protocol = SlowSMTP

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.delay = delay


@dataclass
class Servers:
    port: int
    listeners: list[IListeningPort]

    def stop(self) -> Any:
        from twisted.internet import defer

        return defer.gatherResults(
            [defer.maybeDeferred(p.stopListening) for p in self.listeners]
        )


def listenAll(factories: Mapping[str, RecordingFactory]) -> Servers:
    """
    Each factory on its loopback address, all on one free port (an address
    with no factory refuses connections on it).
    """
    for _ in range(20):
        port = 0
        listeners: list[IListeningPort] = []
        try:
            for host, factory in factories.items():
                listener = reactor.listenTCP(port, factory, interface=host)
                port = listener.getHost().port
                listeners.append(listener)
        except error.CannotListenError:
            for listener in listeners:
                listener.stopListening()
            continue
        return Servers(port, listeners)
    raise RuntimeError("no port free on every loopback address after 20 tries")


def message(number: int, sender: str = "me@sender.test") -> bytes:
    """
    A small message with a Message-ID of its own, to tell copies apart.
    """
    return (
        f"From: {sender}\r\nTo: you@example.test\r\nSubject: queued {number}\r\n"
        f"Message-ID: <queued-{number}@sender.test>\r\n"
        f"Date: Tue, 1 Dec 2026 22:00:00 +0000\r\n\r\nMessage {number}.\r\n"
    ).encode()


def messageIds(factory: RecordingFactory) -> list[str]:
    """
    The Message-ID of every message the server took, in order.
    """
    return [str(parse(m.data)["Message-ID"]) for m in factory.messages]


def parse(data: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def queueFiles(path: str) -> list[str]:
    return sorted(os.listdir(os.path.join(path, "entries")))


def parts(container: Any) -> list[Any]:
    """
    The parts of a multipart message, or the blocks of a delivery status.
    """
    payload = container.get_payload()
    assert isinstance(payload, list), payload
    return payload
