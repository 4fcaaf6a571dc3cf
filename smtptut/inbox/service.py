"""The inbox's HTTP listener in the sink process, fed by the sink's Maildir."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web import resource, static
from twisted.web.websocket import WebSocketResource

from smtptut.inbox.api import InboxAPI, MessageView
from smtptut.inbox.events import EventHub
from smtptut.inbox.index import MaildirIndex
from smtptut.inbox.release import Releaser, releaseResolver
from smtptut.inbox.safety import (
    ErrorResource,
    InboxSite,
    RequestPolicy,
    requireLogin,
)
from smtptut.server.maildir import Maildir
from smtptut.server.service import ListeningService
from smtptut.server.settings import ServerSettings, listenInterface

log = Logger()

STATIC = os.path.join(os.path.dirname(__file__), "static")

_PLACEHOLDER = b"""<!doctype html><meta charset="utf-8"><title>smtptut inbox</title>
<p>smtptut's inbox: the API is at <a href="/api/v1/messages">/api/v1/</a>.</p>
"""


class JSONContainer(resource.Resource):
    """
    C{/api/}: an unknown path under it is a JSON 404, as the API's own are.
    """

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return ErrorResource(404, "no such API path")


def makeRoot(
    index: MaildirIndex, releaser: Releaser, reactor: Any
) -> resource.Resource:
    """
    The inbox's resources: the web inbox at C{/}, the API, the views, the events.
    """
    root: resource.Resource
    if os.path.isdir(STATIC):
        root = static.File(STATIC)
    else:
        root = resource.Resource()
        root.putChild(b"", static.Data(_PLACEHOLDER, "text/html; charset=utf-8"))
    api = JSONContainer()
    api.putChild(b"v1", InboxAPI(index, releaser, reactor))
    api.putChild(b"events", WebSocketResource(EventHub(index)))
    root.putChild(b"api", api)
    root.putChild(b"view", MessageView(index, reactor))
    return root


class InboxService(ListeningService):
    """
    Keeps the index of C{maildir} and serves the inbox on C{settings.http}.
    """

    def __init__(
        self,
        settings: ServerSettings,
        maildir: str,
        reactor: Any,
        releaser: Releaser,
        temporary: bool = False,
        program: str = "smtptut-server",
    ) -> None:
        super().__init__(reactor, program, f"{settings.http} (SMTPTUT_HTTP)")
        self.settings = settings
        self.temporary = temporary
        self.maildir = maildir
        self.index = MaildirIndex(maildir, reactor, reactor)
        self.releaser = releaser

    def makeSite(self) -> InboxSite:
        root: resource.IResource = makeRoot(self.index, self.releaser, self.reactor)
        if self.settings.httpUsers:
            root = requireLogin(root, self.settings.httpUsers, self.reactor)
        names = {"localhost"}
        interface = listenInterface(self.settings.http)
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            if interface:
                names.add(interface.lower())
        policy = RequestPolicy(self.settings.httpLoopback, frozenset(names))
        return InboxSite(root, policy)

    def startService(self) -> None:
        super().startService()
        self.index.start().addErrback(lambda f: log.failure("Indexing failed", f))

    def listen(self) -> defer.Deferred[IListeningPort]:
        endpoint = endpoints.serverFromString(self.reactor, self.settings.http)
        return endpoint.listen(self.makeSite())

    def listening(self, port: IListeningPort) -> None:
        super().listening(port)
        host = port.getHost()
        log.info(
            "The inbox is at http://{host}:{port}/ (Maildir {maildir})",
            host=getattr(host, "host", "?"),
            port=getattr(host, "port", "?"),
            maildir=self.maildir,
        )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        d = self.stopListening()
        d.addCallback(lambda _: self.index.stop())
        if self.temporary:
            d.addCallback(lambda _: shutil.rmtree(self.maildir, ignore_errors=True))
        return d


def withInboxMaildir(settings: ServerSettings) -> tuple[ServerSettings, bool]:
    """
    C{settings} with a Maildir for the inbox to show: C{SMTPTUT_MAILDIR}, or
    a temporary one (the second value says so) removed when the inbox stops.
    """
    if settings.maildir is not None or not settings.httpEnabled:
        return settings, False
    path = tempfile.mkdtemp(prefix="smtptut-inbox-")
    log.info(
        "No SMTPTUT_MAILDIR: messages go to the temporary Maildir {path},"
        " removed at exit",
        path=path,
    )
    return dataclasses.replace(settings, maildir=path), True


def makeInboxService(
    settings: ServerSettings,
    maildir: Maildir,
    reactor: Any,
    temporary: bool = False,
    program: str = "smtptut-server",
    environ: Mapping[str, str] | None = None,
    releaser: Releaser | None = None,
) -> InboxService:
    """
    The inbox of the sink storing into C{maildir}: told of every message
    through L{Maildir.observers}; release resolves with the client's
    C{SMTPTUT_NAMESERVER} from C{environ}, unless a C{releaser} is given.

    @raise ConfigError: C{SMTPTUT_NAMESERVER} is wrong.
    """
    if releaser is None:
        resolver = releaseResolver(os.environ if environ is None else environ)
        releaser = Releaser(
            reactor, settings.releaseTo, resolver, settings.releaseRelay
        )
    inbox = InboxService(settings, maildir.path, reactor, releaser, temporary, program)
    maildir.observers.append(inbox.index.messageStored)
    return inbox
