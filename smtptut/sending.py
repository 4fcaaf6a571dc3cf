"""From settings to envelopes: what the client will send, one envelope per domain."""

from __future__ import annotations

from smtptut.client import Envelope
from smtptut.config import ClientSettings, ConfigError, MailAddress, parseAddress
from smtptut.exchange import ExchangeLookupError, toALabel
from smtptut.message import MessageSource, messageFromPath, tutorialMessage
from smtptut.tls import loadTrustRoot


def messageIdDomain(settings: ClientSettings) -> str:
    """
    The domain of a C{Message-ID:} made for a message that lacks one: the
    sender's, or the EHLO name for the null sender.
    """
    return settings.sender.rpartition("@")[2] or settings.helo


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
        everyone = tuple(wireAddress(r) for r in settings.recipients)
        return {f"{host}:{port}": Envelope(sender, everyone, message)}
    envelopes: dict[str, Envelope] = {}
    for recipients in settings.domains().values():
        addresses = tuple(wireAddress(r) for r in recipients)
        key = addresses[0].rpartition("@")[2].lower()
        if key in envelopes:
            # "bücher.test" and "xn--bcher-kva.test" are one domain.
            old = envelopes[key]
            addresses = old.recipients + addresses
        envelopes[key] = Envelope(sender, addresses, message)
    return envelopes


def checkCredentials(settings: ClientSettings) -> None:
    """
    A user name needs a password (and a password a user name).
    """
    if settings.user and not settings.password:
        raise ConfigError("SMTPTUT_PASSWORD: not set, but SMTPTUT_USER is")
    if settings.password and not settings.user:
        raise ConfigError("SMTPTUT_USER: not set, but SMTPTUT_PASSWORD is")


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
    return settings, envelopesByDomain(settings, loadMessage(settings))
