"""PEM loading: a server's certificate chain and key, a client's CA bundle."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from OpenSSL.crypto import X509, PKey
from twisted.internet import ssl

if TYPE_CHECKING:
    # Twisted exports the interface from no public module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot

#: One certificate of a PEM file (a C{fullchain.pem} or a CA bundle holds
#: several, and may hold comments or other blocks between them).
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def certificateBlocks(pem: bytes) -> list[bytes]:
    """
    Every PEM certificate in C{pem}, in order.

    @raise ValueError: there is none.
    """
    blocks: list[bytes] = _PEM_CERTIFICATE.findall(pem)
    if not blocks:
        raise ValueError("no PEM certificate in it")
    return blocks


def loadCertificateChain(certPath: str, keyPath: str) -> tuple[PKey, X509, list[X509]]:
    """
    A server's private key, its certificate and the intermediates to send
    after it, from PEM files: the first certificate in C{certPath} is the
    server's, the others (a C{fullchain.pem}'s intermediates) follow it.
    """
    with open(certPath, "rb") as c, open(keyPath, "rb") as k:
        cert, key = c.read(), k.read()
    blocks = certificateBlocks(cert)
    leaf = ssl.PrivateCertificate.loadPEM(blocks[0] + b"\n" + key)
    chain = [ssl.Certificate.loadPEM(block).original for block in blocks[1:]]
    return leaf.privateKey.original, leaf.original, chain


@functools.cache
def loadTrustRoot(path: str | None) -> IOpenSSLTrustRoot:
    """
    The CA certificates in the PEM bundle at C{path}, or the system's when
    C{path} is L{None}.
    """
    if path is None:
        return ssl.platformTrust()
    with open(path, "rb") as f:
        blocks = certificateBlocks(f.read())
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(block) for block in blocks]
    )
