"""The inbox's safety rules: loopback names only, no cross-site changes, logins off loopback, sandboxed HTML."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

from twisted.internet import threads
from twisted.trial.unittest import SynchronousTestCase, TestCase
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage

from smtptut.inbox.testing import InboxSink, startInboxSink
from smtptut.server.passwords import hashPassword, writeUsers
from smtptut.server.settings import PLUGIN_HTTP, ServerSettings
from smtptut.settings import ConfigError
from tests.helpers import reactor
from tests.inboxhelpers import fetch, message, send


class RequestRuleTests(TestCase):
    async def startSink(self, **settings: Any) -> InboxSink:
        sink = await startInboxSink(reactor, **settings)
        self.addCleanup(sink.stop)
        await send(sink.smtpPort, message("precious"))
        await sink.waitForMessage("subject:precious")
        return sink

    async def test_wrongHostRefused(self) -> None:
        """
        On a loopback listener a Host that is not a loopback name is refused
        (a DNS-rebound page has its own name), with a JSON error.
        """
        sink = await self.startSink()
        for host in (
            "evil.example",
            "evil.example:8025",
            "10.0.0.1",
            "localhost.evil.example",
        ):
            r = await fetch(
                sink.httpPort, "GET", "/api/v1/messages", headers={"Host": host}
            )
            self.assertEqual(r.status, 421, host)
            self.assertIn("localhost", r.json()["Error"])
        for host in (
            f"localhost:{sink.httpPort}",
            f"127.0.0.1:{sink.httpPort}",
            "[::1]",
            "app.localhost",
        ):
            r = await fetch(
                sink.httpPort, "GET", "/api/v1/messages", headers={"Host": host}
            )
            self.assertEqual(r.status, 200, host)

    async def test_crossSiteFormCannotChange(self) -> None:
        """
        A form on another site (simple content type, another Origin, or no
        Origin at all) cannot delete, mark or release; nothing changes.
        """
        sink = await self.startSink()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        attempts = [
            (
                "POST",
                "/api/v1/message/latest/release",
                b"To=x@example.com",
                {**form, "Origin": "http://evil.example"},
            ),
            ("POST", "/api/v1/message/latest/release", b"To=x@example.com", form),
            (
                "POST",
                "/api/v1/messages",
                b'{"IDs": []}',
                {"Content-Type": "text/plain"},
            ),
            ("DELETE", "/api/v1/messages", b"", {"Origin": "http://evil.example"}),
            # A message's HTML in its sandboxed frame has the origin "null".
            ("DELETE", "/api/v1/messages", b"", {"Origin": "null"}),
            (
                "PUT",
                "/api/v1/messages",
                b'{"Read": true}',
                {"Content-Type": "application/json", "Origin": "https://evil.example"},
            ),
            (
                "OPTIONS",
                "/api/v1/messages",
                b"",
                {
                    "Origin": "http://evil.example",
                    "Access-Control-Request-Method": "DELETE",
                },
            ),
        ]
        for method, path, body, headers in attempts:
            r = await fetch(sink.httpPort, method, path, body, headers)
            self.assertEqual(r.status, 403, (method, headers))
            self.assertNotIn("access-control-allow-origin", r.headers)
        self.assertEqual(
            [(m["Subject"], m["Read"]) for m in sink.messages()], [("precious", False)]
        )
        # The inbox's own page (same Origin) may.
        own = {"Origin": f"http://127.0.0.1:{sink.httpPort}"}
        r = await fetch(sink.httpPort, "PUT", "/api/v1/messages", {"Read": True}, own)
        self.assertEqual(r.status, 200)

    async def test_noPermissiveCORS(self) -> None:
        sink = await self.startSink()
        r = await fetch(sink.httpPort, "GET", "/api/v1/messages")
        self.assertNotIn("access-control-allow-origin", r.headers)
        self.assertEqual(r.headers["x-content-type-options"], "nosniff")

    async def test_basicAuth(self) -> None:
        """
        With SMTPTUT_HTTP_USERS, every request needs a login from the users file.
        """
        users = self.mktemp()
        writeUsers(users, {"dev": hashPassword("s3cret")})
        sink = await self.startSink(httpUsers=users)
        r = await fetch(sink.httpPort, "GET", "/api/v1/messages")
        self.assertEqual(r.status, 401)
        self.assertIn("basic", r.headers["www-authenticate"].lower())
        wrong = base64.b64encode(b"dev:nope").decode()
        r = await fetch(
            sink.httpPort,
            "GET",
            "/api/v1/messages",
            headers={"Authorization": "Basic " + wrong},
        )
        self.assertEqual(r.status, 401)
        good = base64.b64encode(b"dev:s3cret").decode()
        r = await fetch(
            sink.httpPort,
            "GET",
            "/api/v1/messages",
            headers={"Authorization": "Basic " + good},
        )
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["total"], 1)

    async def test_eventsNeedLogin(self) -> None:
        """
        With SMTPTUT_HTTP_USERS the /api/events websocket needs a login too:
        without one (or with a wrong one) the upgrade is refused with 401;
        with one it is told of new mail.
        """
        users = self.mktemp()
        writeUsers(users, {"dev": hashPassword("s3cret")})
        sink = await self.startSink(httpUsers=users)
        for authorization in (None, "Basic " + base64.b64encode(b"dev:nope").decode()):
            status = await threads.deferToThread(
                _refusedEvents, sink.httpPort, authorization
            )
            self.assertEqual(status, 401, authorization)
        good = "Basic " + base64.b64encode(b"dev:s3cret").decode()
        connection = await threads.deferToThread(_openEvents, sink.httpPort, good)
        self.addCleanup(connection[0].close)
        await send(sink.smtpPort, message("announced to the logged in"))
        event = await threads.deferToThread(_nextEvent, connection, "new")
        self.assertEqual(event["Data"]["Subject"], "announced to the logged in")


def _handshake(
    port: int, authorization: str | None
) -> tuple[socket.socket, WSConnection, AcceptConnection | RejectConnection]:
    """
    Ask for the /api/events websocket (wsproto over a plain socket, so that
    the request can carry an Authorization header); the server's answer.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    ws = WSConnection(ConnectionType.CLIENT)
    headers = [(b"authorization", authorization.encode())] if authorization else []
    sock.sendall(
        ws.send(
            Request(
                host=f"127.0.0.1:{port}", target="/api/events", extra_headers=headers
            )
        )
    )
    for _ in range(100):
        data = sock.recv(65536)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection | RejectConnection):
                return sock, ws, event
        if not data:
            break
    sock.close()
    raise AssertionError("no answer to the websocket upgrade")


def _refusedEvents(port: int, authorization: str | None) -> int:
    sock, _, answer = _handshake(port, authorization)
    sock.close()
    assert isinstance(answer, RejectConnection), answer
    return answer.status_code


def _openEvents(port: int, authorization: str) -> tuple[socket.socket, WSConnection]:
    sock, ws, answer = _handshake(port, authorization)
    if not isinstance(answer, AcceptConnection):
        sock.close()
        raise AssertionError(f"websocket refused: {answer}")
    return sock, ws


def _nextEvent(connection: tuple[socket.socket, WSConnection], kind: str) -> Any:
    """
    The next Mailpit event of type C{kind} (within the socket's timeout).
    """
    sock, ws = connection
    for _ in range(1000):
        data = sock.recv(65536)
        if not data:
            break
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, TextMessage):
                decoded = json.loads(event.data)
                if decoded["Type"] == kind:
                    return decoded
    raise AssertionError(f"no {kind!r} event")


class SettingsTests(SynchronousTestCase):
    def test_nonLoopbackNeedsUsers(self) -> None:
        """
        A listener off loopback refuses to start without SMTPTUT_HTTP_USERS.
        """
        for endpoint in (
            "tcp:8025",
            "tcp:8025:interface=0.0.0.0",
            "tcp:8025:interface=192.0.2.1",
        ):
            e = self.assertRaises(
                ConfigError, ServerSettings.fromEnvironment, {"SMTPTUT_HTTP": endpoint}
            )
            self.assertEqual(e.setting, "SMTPTUT_HTTP")
            self.assertIn("SMTPTUT_HTTP_USERS", e.reason)
        e = self.assertRaises(
            ConfigError, ServerSettings.fromEnvironment, {}, {"SMTPTUT_HTTP": "tcp:80"}
        )
        self.assertEqual(e.setting, "--http")
        users = self.mktemp()
        writeUsers(users, {})
        settings = ServerSettings.fromEnvironment(
            {"SMTPTUT_HTTP": "tcp:8025", "SMTPTUT_HTTP_USERS": users}
        )
        self.assertEqual(settings.httpUsers, users)

    def test_defaults(self) -> None:
        """
        Off unless set (emailserver.tac); the plugin's default is loopback 8025.
        """
        self.assertFalse(ServerSettings.fromEnvironment({}).httpEnabled)
        plugin = ServerSettings.fromEnvironment({}, defaultHTTP=PLUGIN_HTTP)
        self.assertEqual(plugin.http, "tcp:8025:interface=127.0.0.1")
        self.assertTrue(plugin.httpEnabled and plugin.httpLoopback)
        self.assertFalse(
            ServerSettings.fromEnvironment(
                {"SMTPTUT_HTTP": "off"}, defaultHTTP="tcp:1"
            ).httpEnabled
        )

    def test_badValues(self) -> None:
        for variable, value in [
            ("SMTPTUT_HTTP", "tcp:99999"),
            ("SMTPTUT_HTTP", "nonsense:1"),
            ("SMTPTUT_HTTP_USERS", "/nonexistent/users"),
            ("SMTPTUT_RELEASE_TO", "@"),
            ("SMTPTUT_RELEASE_RELAY", "host:notaport"),
        ]:
            e = self.assertRaises(
                ConfigError, ServerSettings.fromEnvironment, {variable: value}
            )
            self.assertEqual(e.setting, variable)
            self.assertNotIn("\n", str(e))

    def test_releaseTo(self) -> None:
        settings = ServerSettings.fromEnvironment(
            {
                "SMTPTUT_RELEASE_TO": "@example.test, qa@example.org",
                "SMTPTUT_RELEASE_RELAY": "127.0.0.1:2526",
            }
        )
        assert settings.releaseTo is not None
        self.assertTrue(settings.releaseTo.accepts("any", "example.test"))
        self.assertFalse(settings.releaseTo.accepts("other", "example.org"))
        self.assertEqual(settings.releaseRelay, ("127.0.0.1", 2526))
