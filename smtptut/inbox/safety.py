"""The inbox's safety rules: who may reach it, from which pages, and what message HTML may do."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from typing import Any
from urllib.parse import urlsplit

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.web import guard, resource, server
from twisted.web.iweb import IRequest
from zope.interface import implementer

from smtptut.server.passwords import UsersFileChecker

#: What a message's HTML may do when the inbox shows it: no scripts, no
#: forms, no plugins, no requests but inline styles, data: images and the
#: inbox's own (its inline parts, C{cid:} references rewritten to their
#: C{/part/} URLs); and C{sandbox} puts it in an origin of its own, away
#: from the inbox's API.
MESSAGE_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;"
    " font-src data:; form-action 'none'; frame-ancestors 'self'"
)
#: The same, with remote images allowed (the inbox's "load images" button).
MESSAGE_CSP_REMOTE = MESSAGE_CSP.replace(
    "img-src 'self' data:", "img-src * 'self' data:"
)
#: For anything else served from a message (parts, raw source).
PART_CSP = "sandbox; default-src 'none'"
#: The largest request body taken (JSON requests are small).
MAX_BODY = 1024 * 1024
#: Methods that change nothing.
SAFE_METHODS = (b"GET", b"HEAD")
#: Content types a cross-site form can send (the CORS "simple" ones).
_SIMPLE_TYPES = (
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
)
#: Headers a cross-site page may send without a preflight (the CORS safelist).
_SIMPLE_HEADERS = {
    b"accept",
    b"accept-language",
    b"content-language",
    b"content-type",
    b"range",
    # Sent by the browser itself, not chosen by the page:
    b"host",
    b"origin",
    b"referer",
    b"user-agent",
    b"content-length",
    b"connection",
    b"accept-encoding",
    b"cookie",
    b"cache-control",
    b"pragma",
    b"dnt",
    b"priority",
    b"upgrade-insecure-requests",
}


def jsonError(request: IRequest, code: int, message: str) -> bytes:
    """
    Set C{code} and give the body of a one-line JSON error, Mailpit's field name.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"Error": " ".join(message.split())}).encode() + b"\n"


class ErrorResource(resource.Resource):
    """
    A refusal, whatever the path and method.
    """

    isLeaf = True

    def __init__(self, code: int, message: str) -> None:
        super().__init__()
        self.code = code
        self.message = message

    def render(self, request: IRequest) -> bytes:
        return jsonError(request, self.code, self.message)


def isLoopbackName(host: str) -> bool:
    """
    Whether a Host name is this machine: C{localhost}, C{*.localhost}, a loopback address.
    """
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hostName(header: str) -> str:
    """
    The name in a C{Host} header, without its port.
    """
    return urlsplit("//" + header).hostname or ""


class RequestPolicy:
    """
    Decides whether a request may reach the inbox at all.

    @ivar loopback: the listener is on loopback, where only loopback names
        (and C{names}) are taken in C{Host}: a page whose name a DNS
        rebinding pointed at 127.0.0.1 has another name.
    """

    def __init__(self, loopback: bool, names: frozenset[str] = frozenset()) -> None:
        self.loopback = loopback
        self.names = frozenset(n.lower() for n in names)

    def refusal(self, request: IRequest) -> tuple[int, str] | None:
        """
        Why C{request} is refused (status, reason), or L{None}.
        """
        hostHeader = (request.getHeader(b"host") or b"").decode("latin-1")
        host = hostName(hostHeader)
        if self.loopback and not (isLoopbackName(host) or host in self.names):
            return 421, f"this inbox answers to localhost only, not {host or 'no Host'}"
        origin = request.getHeader(b"origin")
        method = request.method
        if origin == b"null" and method not in SAFE_METHODS:
            # A sandboxed frame (a message's HTML) or a privacy-minded page.
            return 403, "cross-origin requests are refused"
        if origin is not None and origin != b"null":
            if urlsplit(origin.decode("latin-1")).netloc.lower() != hostHeader.lower():
                return 403, "cross-origin requests are refused"
        if method == b"OPTIONS":
            # No CORS preflight is ever approved.
            return 403, "cross-origin requests are refused"
        if method in SAFE_METHODS:
            return None
        length = request.getHeader(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return 413, f"request bodies are at most {MAX_BODY} octets"
        if method != b"POST":
            # PUT and DELETE cannot come from a form; from another page's
            # script they need a preflight, which is refused above.
            return None
        contentType = (request.getHeader(b"content-type") or b"").decode("latin-1")
        media = contentType.partition(";")[0].strip().lower()
        if media and media not in _SIMPLE_TYPES:
            return None
        headers = {k.lower() for k, _ in request.requestHeaders.getAllRawHeaders()}
        if headers - _SIMPLE_HEADERS:
            return None
        return 403, "a POST needs a JSON body (Content-Type: application/json)"


class InboxSite(server.Site):
    """
    A site that applies a L{RequestPolicy} before any resource sees the
    request, and marks every answer as not to be sniffed or framed elsewhere.
    """

    displayTracebacks = False

    def __init__(
        self, root: resource.IResource, policy: RequestPolicy, **kw: Any
    ) -> None:
        super().__init__(root, **kw)
        self.policy = policy

    def getResourceFor(self, request: IRequest) -> resource.IResource:
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-frame-options", b"SAMEORIGIN")
        refusal = self.policy.refusal(request)
        if refusal is not None:
            return ErrorResource(*refusal)
        return super().getResourceFor(request)


@implementer(ICredentialsChecker)
class RememberingChecker:
    """
    A L{UsersFileChecker} that remembers logins that worked while the users
    file is unchanged: a browser sends the password with every request, and
    each check costs a scrypt hash.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, path: str, reactor: Any) -> None:
        self.path = path
        self.checker = UsersFileChecker(path, reactor)
        self._good: dict[bytes, tuple[float, bytes | tuple[()]]] = {}

    def _key(self, credentials: Any) -> bytes:
        return hashlib.sha256(
            credentials.username + b"\0" + credentials.password
        ).digest()

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        try:
            stamp = os.stat(self.path).st_mtime
        except OSError:
            stamp = -1.0
        key = self._key(credentials)
        known = self._good.get(key)
        if known is not None and known[0] == stamp:
            return defer.succeed(known[1])
        d = self.checker.requestAvatarId(credentials)

        def remember(avatarId: bytes | tuple[()]) -> bytes | tuple[()]:
            if len(self._good) > 100:
                self._good.clear()
            self._good[key] = (stamp, avatarId)
            return avatarId

        return d.addCallback(remember)


@implementer(IRealm)
class _Realm:
    def __init__(self, root: resource.IResource) -> None:
        self.root = root

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if resource.IResource in interfaces:
            return resource.IResource, self.root, lambda: None
        raise NotImplementedError()


def requireLogin(
    root: resource.IResource, users: str, reactor: Any
) -> resource.IResource:
    """
    C{root} behind HTTP Basic authentication against a C{smtptut passwd} users file.
    """
    portal = Portal(_Realm(root), [RememberingChecker(users, reactor)])
    return guard.HTTPAuthSessionWrapper(
        portal, [guard.BasicCredentialFactory(b"smtptut inbox")]
    )
