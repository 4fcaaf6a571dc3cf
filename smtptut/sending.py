"""From settings to envelopes: what the client will send, one envelope per domain."""

from __future__ import annotations

import os
from collections.abc import Iterable

from smtptut.client import Envelope
from smtptut.config import (
    ClientSettings,
    ConfigError,
    MailAddress,
    isLoopbackAddress,
    parseAddress,
)
from smtptut.dkim import signMessage  # DKIM wiring (issue 12)
from smtptut.dkimsettings import DKIMSettings  # DKIM wiring (issue 12)
from smtptut.exchange import ExchangeLookupError, toALabel
from smtptut.message import MessageSource, messageFromPath, tutorialMessage
from smtptut.tls import loadTrustRoot


def messageIdDomain(settings: ClientSettings) -> str:
    """
    The domain of a C{Message-ID:} made for a message that lacks one: the
    sender's, or the EHLO name for the null sender.
    """
    return settings.sender.rpartition("@")[2] or settings.helo or "localhost"


def loadMessage(settings: ClientSettings) -> MessageSource:
    """
    The message file named by the settings, checked, or the tutorial's message.
    """
    if settings.dataPath is None:
        return tutorialMessage()
    return messageFromPath(settings.dataPath, idDomain=messageIdDomain(settings))


def wireAddress(address: MailAddress, setting: str = "SMTPTUT_TO") -> str:
    """
    The address as it goes on the wire: an internationalized domain in its
    ASCII form (A-labels, RFC 5890), so no SMTPUTF8 is needed.
    """
    if address.isLiteral or address.domain.isascii():
        return str(address)
    try:
        return f"{address.local}@{toALabel(address.domain)}"
    except ExchangeLookupError as e:
        raise ConfigError(f"{setting}: {address}: {e.reason}") from None


def envelopesByDomain(
    settings: ClientSettings, message: MessageSource
) -> dict[str, Envelope]:
    """
    One envelope per recipient domain: one lookup and one transaction each.
    Through a relay (C{SMTPTUT_RELAY}) there is one envelope for everyone.
    """
    sender = settings.sender
    if sender:
        sender = wireAddress(parseAddress(sender, "SMTPTUT_FROM"), "SMTPTUT_FROM")
    if settings.relay is not None:
        host, port = settings.relay
        everyone = _unique(wireAddress(r) for r in settings.recipients)
        return {f"{host}:{port}": Envelope(sender, everyone, message)}
    envelopes: dict[str, Envelope] = {}
    for recipients in settings.domains().values():
        addresses = _unique(wireAddress(r) for r in recipients)
        key = addresses[0].rpartition("@")[2].lower()
        if key in envelopes:
            # "bücher.test" and "xn--bcher-kva.test" are one domain.
            old = envelopes[key]
            addresses = _unique(old.recipients + addresses)
        envelopes[key] = Envelope(sender, addresses, message)
    return envelopes


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """
    Each address once, in first-seen order: a domain is compared without
    regard to case, a local part as it is (RFC 5321 §2.4).
    """
    seen: set[tuple[str, str]] = set()
    result = []
    for address in addresses:
        local, _, domain = address.rpartition("@")
        key = (local, domain.lower())
        if key not in seen:
            seen.add(key)
            result.append(address)
    return tuple(result)


def isLoopbackRelay(settings: ClientSettings) -> bool:
    """
    Whether the relay is on this machine: a loopback address, or
    C{localhost} (RFC 6761 §6.3).
    """
    if settings.relay is None:
        return False
    host = settings.relay[0].lower().rstrip(".")
    return isLoopbackAddress(host) or host == "localhost"


def checkAuthRoute(settings: ClientSettings) -> None:
    """
    Credentials go to the submission server only, and only where no one can
    take them on the way: a user name needs C{SMTPTUT_RELAY} (the recipients'
    MXes never see it), and C{SMTPTUT_TLS=verify} unless the relay is on
    loopback or C{SMTPTUT_INSECURE_AUTH=1} accepts any certificate with
    C{SMTPTUT_TLS=encrypt}.
    """
    if settings.insecureAuth and settings.tls != "encrypt":
        raise ConfigError(
            "SMTPTUT_INSECURE_AUTH: only with SMTPTUT_TLS=encrypt (verify needs"
            " no exception; may and off could send the password in plaintext)"
        )
    if not settings.user:
        return
    if settings.relay is None:
        raise ConfigError(
            "SMTPTUT_USER: a login is only for a relay: set SMTPTUT_RELAY to the"
            " submission server (the password never goes to a recipient's MX)"
        )
    if isLoopbackRelay(settings) or settings.tls == "verify":
        return
    if settings.tls == "encrypt" and settings.insecureAuth:
        return
    raise ConfigError(
        f"SMTPTUT_USER: a login needs SMTPTUT_TLS=verify, not {settings.tls}"
        " (or SMTPTUT_TLS=encrypt with SMTPTUT_INSECURE_AUTH=1 to send the"
        " password to any certificate)"
    )


def checkCredentials(settings: ClientSettings) -> None:
    """
    A user name needs a password (and a password a user name), and a
    relay it can safely go to (see L{checkAuthRoute}).
    """
    if settings.user and not settings.password:
        raise ConfigError("SMTPTUT_PASSWORD: not set, but SMTPTUT_USER is")
    if settings.password and not settings.user:
        raise ConfigError("SMTPTUT_USER: not set, but SMTPTUT_PASSWORD is")
    checkAuthRoute(settings)


def checkTrust(settings: ClientSettings) -> None:
    """
    With C{SMTPTUT_TLS=verify}, the CA file must hold PEM certificates.
    """
    if settings.tls != "verify" or settings.ca is None:
        return
    try:
        loadTrustRoot(settings.ca)
    except Exception as e:
        reason = " ".join(str(e).split()) or e.__class__.__name__
        raise ConfigError(f"SMTPTUT_CA: {settings.ca}: {reason}") from None


def loadClientJob() -> tuple[ClientSettings, dict[str, Envelope]]:
    """
    Settings from the environment and the envelopes they ask for.
    """
    settings = ClientSettings.fromEnvironment()
    checkCredentials(settings)
    checkTrust(settings)
    # DKIM wiring (issue 12): sign the message when SMTPTUT_DKIM_KEY is set.
    message = signMessage(loadMessage(settings), DKIMSettings.read(os.environ))
    return settings, envelopesByDomain(settings, message)
