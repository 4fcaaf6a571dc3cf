"""Client TLS contexts for STARTTLS, one per SMTPTUT_TLS mode."""

from __future__ import annotations

from typing import Any

from twisted.internet import ssl

#: Modes in which the connection must be encrypted before the transaction.
REQUIRED = ("encrypt", "verify")


def loadTrustRoot(path: str | None) -> Any:
    """
    The CA certificates in the PEM bundle at C{path}, or the system's when
    C{path} is L{None}.
    """
    if path is None:
        return ssl.platformTrust()
    with open(path, "rb") as f:
        pem = f.read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError("no PEM certificate in it")
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(block) for block in blocks]
    )


def clientContext(mode: str, hostname: str, trustRoot: Any = None) -> Any:
    """
    What to hand C{ESMTPClient} as its context factory for C{mode}:

      - C{off}: L{None}, no STARTTLS;
      - C{may} and C{encrypt}: TLS without checking the certificate (an MX's
        certificate rarely matches, RFC 7435 opportunistic security);
      - C{verify}: the certificate must chain to C{trustRoot} (see
        L{loadTrustRoot}) and name C{hostname}.
    """
    if mode == "off":
        return None
    if mode == "verify":
        return ssl.optionsForClientTLS(hostname, trustRoot=trustRoot)
    return ssl.CertificateOptions(verify=False)
