"""From settings to envelopes: what the client will send, one envelope per domain."""

from __future__ import annotations

from smtptut.client import Envelope
from smtptut.config import ClientSettings
from smtptut.message import MessageSource, messageFromPath, tutorialMessage


def loadMessage(settings: ClientSettings) -> MessageSource:
    """
    The message file named by the settings, checked, or the tutorial's message.
    """
    if settings.dataPath is None:
        return tutorialMessage()
    domain = settings.sender.rpartition("@")[2] or settings.helo
    return messageFromPath(settings.dataPath, idDomain=domain)


def envelopesByDomain(
    settings: ClientSettings, message: MessageSource
) -> dict[str, Envelope]:
    """
    One envelope per recipient domain: one lookup and one transaction each.
    """
    return {
        domain: Envelope(settings.sender, tuple(str(r) for r in recipients), message)
        for domain, recipients in settings.domains().items()
    }


def loadClientJob() -> tuple[ClientSettings, dict[str, Envelope]]:
    """
    Settings from the environment and the envelopes they ask for.
    """
    settings = ClientSettings.fromEnvironment()
    return settings, envelopesByDomain(settings, loadMessage(settings))
