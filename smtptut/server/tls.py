"""The sink's server TLS: the certificate chain, Mozilla's intermediate profile, the ALPN fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from OpenSSL import crypto
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from smtptut.certificates import loadCertificateChain

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection, _NoOverlappingProtocols
    from twisted.protocols.tls import TLSMemoryBIOProtocol

#: Mozilla's "intermediate" server profile (ssl-config.mozilla.org, v5.7)
#: without its DHE suites (no DH parameters are configured): TLS 1.2 with
#: ECDHE key exchange and AEAD ciphers only (no CBC, no static RSA key
#: exchange), and TLS 1.3 with OpenSSL's default suites.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    ":ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    ":ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def _ignoreALPN(
    connection: Connection, offered: list[bytes]
) -> bytes | _NoOverlappingProtocols:
    from OpenSSL.SSL import NO_OVERLAPPING_PROTOCOLS

    return NO_OVERLAPPING_PROTOCOLS


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The sink's server TLS: Twisted's C{CertificateOptions} for the
    certificate, its chain and L{INTERMEDIATE_CIPHERS}, with one fix.

    Twisted 26.10 (since the ALPN rework that twisted/twisted#12598 traces
    to #12506) calls C{_sslverify.setupForALPN} on every context it makes,
    acceptable protocols or not, and its selection callback answers C{b""}
    when nothing overlaps (a TODO there says it should be pyOpenSSL's
    C{NO_OVERLAPPING_PROTOCOLS}).  pyOpenSSL takes C{b""} as "select an empty
    protocol" (pyca/pyopenssl#876), which OpenSSL 3 refuses with an
    C{internal_error} alert (80): every client that offers ALPN (openssl
    s_client -alpn, Go, Android) failed the handshake.  No Twisted ticket
    for this was found.  SMTP negotiates no application protocol, so the
    context gets a callback that ignores the client's list, as a server
    without ALPN does.  A pyOpenSSL context cannot be changed once a
    connection uses it: this is done here, before the first one.
    """

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self.options = options
        self.context = options.getContext()
        self.context.set_alpn_select_callback(_ignoreALPN)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> Connection:
        from OpenSSL.SSL import Connection

        return Connection(self.context, None)


def serverTLS(
    privateKey: crypto.PKey,
    certificate: crypto.X509,
    extraCertChain: list[crypto.X509] | None = None,
) -> ServerTLS:
    """
    L{ServerTLS} for a key, its certificate and the intermediate certificates
    that lead from it to a root (all pyOpenSSL objects).
    """
    return ServerTLS(
        ssl.CertificateOptions(
            privateKey=privateKey,
            certificate=certificate,
            extraCertChain=extraCertChain or None,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(
                INTERMEDIATE_CIPHERS
            ),
        )
    )


def loadTLS(certPath: str, keyPath: str) -> ServerTLS:
    """
    A server TLS context factory from PEM files: the first certificate in
    C{certPath} is the server's, the others (a C{fullchain.pem}'s
    intermediates) are sent after it.
    """
    return serverTLS(*loadCertificateChain(certPath, keyPath))


def sinkTLSEndpoint(endpoint: IStreamServerEndpoint) -> IStreamServerEndpoint:
    """
    An C{ssl:} endpoint with the sink's TLS (L{ServerTLS}) in place of the
    context Twisted's parser made, keeping that one's certificate, key and
    chain; any other endpoint as it is.

    The endpoint keeps its context factory in a private attribute, and no
    public way builds one from a description with another: replaced here
    only, for the ALPN bug L{ServerTLS} describes (tests/test_server_tls.py
    fails if Twisted renames it).
    """
    if not isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        return endpoint
    options = endpoint._sslContextFactory
    endpoint._sslContextFactory = serverTLS(
        options.privateKey, options.certificate, options.extraCertChain
    )
    return endpoint


def tlsFailure(reason: Failure) -> str:
    """
    Why a TLS handshake failed, in a few words (OpenSSL's reasons).
    """
    from OpenSSL.SSL import Error
    from twisted.internet.error import ConnectionDone, ConnectionLost

    error = reason.value
    if isinstance(error, Error) and error.args and isinstance(error.args[0], list):
        words = [part[-1] for part in error.args[0] if part and part[-1]]
        if words:
            return ", ".join(words)
    if reason.check(ConnectionDone, ConnectionLost):
        return "the client closed the connection"
    return str(error) or error.__class__.__name__
