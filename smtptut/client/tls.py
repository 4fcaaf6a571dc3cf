"""Client TLS contexts for STARTTLS, one per TLSPolicy."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from OpenSSL.crypto import X509
from OpenSSL.SSL import VERIFY_FAIL_IF_NO_PEER_CERT, VERIFY_PEER, Connection
from service_identity import VerificationError
from service_identity.hazmat import (
    DNS_ID,
    IPAddress_ID,
    ServiceID,
    verify_service_identity,
)
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from smtptut.addresses import toALabel
from smtptut.client.model import TLSPolicy

if TYPE_CHECKING:
    # Twisted exports the interface from no public module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot

log = Logger()


class HostnameMismatch(Exception):
    """
    The server's certificate does not name the exchange (or could not be
    checked at all); the TLS handshake is aborted with this reason.
    """

    def __init__(self, hostname: str, reason: str) -> None:
        super().__init__(hostname, reason)
        self.hostname = hostname
        self.reason = reason

    def __str__(self) -> str:
        return f"the certificate is not valid for {self.hostname}: {self.reason}"


def serviceID(hostname: str) -> ServiceID:
    """
    What the certificate must name: an IP address, or a DNS name (A-labels).
    """
    try:
        return IPAddress_ID(str(ipaddress.ip_address(hostname.split("%")[0])))
    except ValueError:
        pass
    return DNS_ID(toALabel(hostname))


@implementer(IOpenSSLClientConnectionCreator)
class StrictClientTLSOptions:
    """
    Twisted's L{ssl.optionsForClientTLS} with a name check that fails closed.

    Twisted's own check (C{_verifyCB} in C{twisted/internet/_sslverify.py},
    C{_identityVerifyingInfoCallback} in older releases) turns only
    C{service_identity}'s C{VerificationError} into a failed handshake.
    Since service_identity 24.1.0 (pyca/service-identity#66, prompted by
    twisted/twisted#12074) a certificate with no subjectAltName raises
    C{CertificateError} instead: Twisted logs it as critical and I{accepts
    the connection}, so a CN-only certificate for any name passed
    C{SMTPTUT_TLS=verify} and the password followed.  No Twisted ticket for
    that was found.  Here the leaf certificate is checked again, and any
    exception at all is a failed verification.
    """

    def __init__(
        self, hostname: str, trustRoot: IOpenSSLTrustRoot | None = None
    ) -> None:
        self._hostname = hostname
        self._creator = ssl.optionsForClientTLS(hostname, trustRoot=trustRoot)
        self._serviceID = serviceID(hostname)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> Connection:
        connection: Connection = self._creator.clientConnectionForTLS(tlsProtocol)
        # Replaces the callback Twisted just set (SSL_set_verify).
        connection.set_verify(
            VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT,
            self._verifyCallback(tlsProtocol),
        )
        return connection

    def _verifyCallback(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> Callable[[Connection, X509, int, int, int], bool]:
        def verify(
            connection: Connection, cert: X509, errno: int, depth: int, ok: int
        ) -> bool:
            if not ok:
                return False  # OpenSSL's chain check failed: so does the handshake.
            if depth != 0:
                return True
            patterns: Sequence[Any] = []
            try:
                patterns = extract_patterns(cert)
                verify_service_identity(patterns, [self._serviceID], [])
            except BaseException as e:
                reason = _inWords(
                    e, patterns if isinstance(e, VerificationError) else []
                )
                try:
                    tlsProtocol.failVerification(
                        Failure(HostnameMismatch(self._hostname, reason))
                    )
                except BaseException:
                    log.failure("while aborting a failed certificate check")
                return False
            return True

        return verify


def _inWords(error: BaseException, patterns: Sequence[Any]) -> str:
    """
    Why the certificate does not do, for a person: service_identity's
    C{VerificationError} reads as a repr (C{VerificationError(errors=[
    DNSMismatch(...)])}); say which names the certificate is for instead.
    """
    if isinstance(error, VerificationError):
        names = []
        for pattern in patterns:
            value = getattr(pattern, "pattern", None)
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            if value is not None:
                names.append(str(value))
        if names:
            return f"it is for {', '.join(names)} only"
        return "it names no host name or address"
    return " ".join(str(error).split()) or error.__class__.__name__


def clientContext(
    policy: TLSPolicy, hostname: str, trustRoot: IOpenSSLTrustRoot | None = None
) -> IOpenSSLClientConnectionCreator | ssl.CertificateOptions | None:
    """
    What to hand C{ESMTPClient} as its context factory for C{policy}:

      - C{off}: L{None}, no STARTTLS;
      - C{may} and C{encrypt}: TLS without checking the certificate (an MX's
        certificate rarely matches, RFC 7435 opportunistic security);
      - C{verify}: the certificate must chain to C{trustRoot} (see
        L{smtptut.certificates.loadTrustRoot}) and name C{hostname} in its
        subjectAltName (see L{StrictClientTLSOptions}).
    """
    if policy is TLSPolicy.OFF:
        return None
    if policy is TLSPolicy.VERIFY:
        return StrictClientTLSOptions(hostname, trustRoot)
    return ssl.CertificateOptions(verify=False)
