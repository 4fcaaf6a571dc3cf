"""Mailpit's C{/api/events} websocket: new, deleted and read messages, as they happen."""

from __future__ import annotations

import json
from typing import Any

from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.websocket import WebSocketTransport

from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.shapes import VERSION, summary


class EventsProtocol:
    """
    One browser (or client) listening; it says nothing we need to hear.
    """

    transport: WebSocketTransport | None = None

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.hub.clients.add(self)

    def pongReceived(self, payload: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        pass

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.hub.clients.discard(self)


class EventHub:
    """
    Turns the index's changes into Mailpit's C{{"Type": ..., "Data": ...}}
    notifications for every connected client (a C{WebSocketServerFactory}).
    """

    def __init__(self, index: MaildirIndex) -> None:
        self.index = index
        self.clients: set[EventsProtocol] = set()
        index.observers.append(self.indexChanged)

    def buildProtocol(self, request: IRequest) -> EventsProtocol:
        return EventsProtocol(self)

    def broadcast(self, kind: str, data: Any) -> None:
        text = json.dumps({"Type": kind, "Data": data})
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.sendTextMessage(text)

    def indexChanged(self, event: str, data: Any) -> None:
        if not self.clients:
            return
        if event == "new":
            self.broadcast("new", summary(data))
        elif event == "delete":
            self.broadcast("delete", {"ID": data})
        elif event == "update":
            identifier, read = data
            self.broadcast("update", {"ID": identifier, "Read": read})
        elif event in ("truncate", "prune"):
            self.broadcast(event, None)
        total, unread = self.index.totals()
        self.broadcast("stats", {"Total": total, "Unread": unread, "Version": VERSION})
