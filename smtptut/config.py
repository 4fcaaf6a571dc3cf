"""The client's settings from the environment (``SMTPTUT_*``), checked up front with one-line errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from smtptut.addresses import (
    MailAddress,
    checkHostName,
    localFQDN,
    parseAddress,
)
from smtptut.settings import (
    ConfigError,
    parseAs,
    parseFlag,
    parseHostPort,
    parseNameserver,
    parsePort,
    parseSeconds,
)

T = TypeVar("T")

TUTORIAL_SENDER = "tutorial_sender@example.com"
TUTORIAL_RECIPIENT = "tutorial_recipient@example.net"

#: How many domains are delivered to at the same time.
DEFAULT_CONCURRENCY = 8

TLS_MODES = ("may", "encrypt", "verify", "off")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class ClientSettings:
    """
    What the sending side needs: envelope, message, routing, TLS and limits.

    @ivar helo: the EHLO name; L{None} for an address literal of the local
        end of each connection (what C{fromEnvironment} leaves when the
        machine has no fully qualified name, see L{localFQDN}).
    @ivar insecureAuth: allow AUTH over TLS whose certificate is not checked
        (C{SMTPTUT_INSECURE_AUTH=1}, with C{SMTPTUT_TLS=encrypt}).
    @ivar timeout: seconds to wait for any one reply, or L{None} for the
        RFC 5321 §4.5.3.2 waits (5 minutes for most replies, 10 after the
        message).
    @ivar concurrency: how many domains are delivered to at the same time.
    """

    sender: str = TUTORIAL_SENDER
    recipients: tuple[MailAddress, ...] = (parseAddress(TUTORIAL_RECIPIENT),)
    dataPath: str | None = None
    helo: str | None = None
    port: int = 25
    nameservers: tuple[tuple[str, int], ...] = ()
    relay: tuple[str, int] | None = None
    tls: str = "may"
    ca: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    insecureAuth: bool = False
    timeout: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY

    @classmethod
    def fromEnvironment(
        cls, environ: Mapping[str, str] | None = None
    ) -> ClientSettings:
        """
        Read the C{SMTPTUT_*} client settings; raise L{ConfigError} on a bad one.
        """
        env = os.environ if environ is None else environ
        sender = env.get("SMTPTUT_FROM", TUTORIAL_SENDER).strip()
        if sender and sender != "<>":
            _asciiLocalPart(
                parseAs("SMTPTUT_FROM", parseAddress, sender), "SMTPTUT_FROM"
            )
        elif sender == "<>":
            sender = ""
        recipientTexts = _split(env.get("SMTPTUT_TO", TUTORIAL_RECIPIENT))
        if not recipientTexts:
            raise ConfigError("SMTPTUT_TO", "no recipient given")
        recipients = tuple(
            _asciiLocalPart(parseAs("SMTPTUT_TO", parseAddress, r), "SMTPTUT_TO")
            for r in recipientTexts
        )
        port = parseAs("SMTPTUT_PORT", parsePort, env.get("SMTPTUT_PORT", "25"))
        nameservers = tuple(
            parseAs("SMTPTUT_NAMESERVER", parseNameserver, ns)
            for ns in _split(env.get("SMTPTUT_NAMESERVER", ""))
        )
        relay = _read(
            env, "SMTPTUT_RELAY", functools.partial(parseHostPort, defaultPort=25), None
        )
        tls = env.get("SMTPTUT_TLS", "may").strip().lower()
        if tls not in TLS_MODES:
            raise ConfigError(
                "SMTPTUT_TLS", f"{tls!r} is not one of {', '.join(TLS_MODES)}"
            )
        ca = env.get("SMTPTUT_CA") or None
        if ca is not None and not os.path.isfile(ca):
            raise ConfigError("SMTPTUT_CA", f"{ca}: no such file")
        timeout = _read(env, "SMTPTUT_TIMEOUT", parseSeconds, None)
        # Not stripped: a space or CR around the name is refused, not hidden.
        heloText = env.get("SMTPTUT_HELO", "")
        helo = (
            parseAs("SMTPTUT_HELO", checkHostName, heloText)
            if heloText
            else localFQDN()
        )
        return cls(
            sender=sender,
            recipients=recipients,
            dataPath=env.get("SMTPTUT_DATA") or None,
            helo=helo,
            port=port,
            nameservers=nameservers,
            relay=relay,
            tls=tls,
            ca=ca,
            user=env.get("SMTPTUT_USER") or None,
            password=env.get("SMTPTUT_PASSWORD") or None,
            insecureAuth=_read(env, "SMTPTUT_INSECURE_AUTH", parseFlag, False),
            timeout=timeout,
        )

    @property
    def dnsLifetime(self) -> float:
        """
        How long one DNS lookup may take, all retries included.
        """
        return min(self.timeout or 10.0, 10.0)

    def domains(self) -> dict[str, list[MailAddress]]:
        """
        Recipients grouped by domain (case-insensitively), in first-seen order.
        """
        groups: dict[str, list[MailAddress]] = {}
        for rcpt in self.recipients:
            groups.setdefault(rcpt.domain.lower(), []).append(rcpt)
        return groups


def _asciiLocalPart(address: MailAddress, setting: str) -> MailAddress:
    """
    Refuse a non-ASCII local part: it would need SMTPUTF8, which is not supported.
    """
    if not address.local.isascii():
        raise ConfigError(
            setting, f"{address} has a non-ASCII local part (SMTPUTF8 is not supported)"
        )
    return address


def _read(
    env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T
) -> T:
    """
    The setting C{name} from C{env}, stripped, parsed; C{default} if empty.
    """
    text = env.get(name, "").strip()
    return parseAs(name, parse, text) if text else default
