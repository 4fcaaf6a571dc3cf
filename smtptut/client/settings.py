"""The client's settings table (SMTPTUT_* and smtptut send's options), read into ClientSettings and checked."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smtptut.addresses import (
    MailAddress,
    checkHostName,
    isLoopbackAddress,
    localFQDN,
    parseAddress,
)
from smtptut.certificates import loadTrustRoot
from smtptut.client.dkimkeys import (
    DKIMSigning,
    parseKeyPaths,
    parseSelectors,
    signingDomain,
    signingKeys,
)
from smtptut.client.model import TLSPolicy
from smtptut.settings import (
    NO_OPTION,
    ConfigError,
    Setting,
    labels,
    parseFlag,
    parseHostPort,
    parseNameserver,
    parsePort,
    parseReadableFile,
    parseSeconds,
    readSettings,
)

TUTORIAL_SENDER = "tutorial_sender@example.com"
TUTORIAL_RECIPIENT = "tutorial_recipient@example.net"

#: How many domains are delivered to at the same time.
DEFAULT_CONCURRENCY = 8


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parseSender(text: str) -> str:
    """
    The envelope sender as given, checked; C{<>} is the null sender, C{""}.
    """
    if text == "<>":
        return ""
    # A non-ASCII local part needs SMTPUTF8: each server is asked (planner).
    parseAddress(text)
    return text


def parseRecipients(text: str) -> tuple[MailAddress, ...]:
    """
    Comma-separated recipients, each checked.
    """
    texts = _split(text)
    if not texts:
        raise ValueError("no recipient given")
    return tuple(parseAddress(r) for r in texts)


def parseNameservers(text: str) -> tuple[tuple[str, int], ...]:
    """
    Comma-separated DNS servers, by address (see L{parseNameserver}).
    """
    return tuple(parseNameserver(ns) for ns in _split(text))


def parseTLSPolicy(text: str) -> TLSPolicy:
    """
    One of C{may}, C{encrypt}, C{verify} or C{off}, in any case.
    """
    try:
        return TLSPolicy(text.lower())
    except ValueError:
        choices = ", ".join(p.value for p in TLSPolicy)
        raise ValueError(f"{text.lower()!r} is not one of {choices}") from None


#: Every client setting: README's client table lists the same, in this order.
#: The three C{SMTPTUT_DKIM_*} rows make one value, L{ClientSettings.dkim}.
CLIENT_SETTINGS: tuple[Setting[Any], ...] = (
    Setting(
        "sender",
        "SMTPTUT_FROM",
        parseSender,
        TUTORIAL_SENDER,
        "envelope sender; <> for none",
        TUTORIAL_SENDER,
        "ADDRESS",
        option="--from",
    ),
    Setting(
        "recipients",
        "SMTPTUT_TO",
        parseRecipients,
        (parseAddress(TUTORIAL_RECIPIENT),),
        "a recipient (repeat, or separate with commas)",
        TUTORIAL_RECIPIENT,
        "ADDRESS",
        multiple=True,
    ),
    Setting(
        "dataPath",
        "SMTPTUT_DATA",
        str,
        None,
        "the RFC 5322 message to send, LF or CRLF lines; - reads standard input",
        "the tutorial's message",
        "FILE",
    ),
    Setting(
        "helo",
        "SMTPTUT_HELO",
        checkHostName,
        None,
        "the name to greet with: a host name or an address literal such as [192.0.2.1]",
        "the machine's fully qualified name, else [address] of the connection's"
        " local end",
        "NAME",
        # A space or CR around the name is refused, not hidden.
        strip=False,
    ),
    Setting(
        "port", "SMTPTUT_PORT", parsePort, 25, "the exchangers' port", "25", "PORT"
    ),
    Setting(
        "nameservers",
        "SMTPTUT_NAMESERVER",
        parseNameservers,
        (),
        "the IP address of a DNS server to ask, [IPv6]:PORT with a port (repeat)",
        "the system's resolvers",
        "IP[:PORT]",
        multiple=True,
    ),
    Setting(
        "relay",
        "SMTPTUT_RELAY",
        functools.partial(parseHostPort, defaultPort=25),
        None,
        "send everything through this smarthost, no MX lookup (port 25 unless given)",
        "none",
        "HOST[:PORT]",
    ),
    Setting(
        "tlsPolicy",
        "SMTPTUT_TLS",
        parseTLSPolicy,
        TLSPolicy.MAY,
        "may: STARTTLS when offered, no certificate check; encrypt: STARTTLS"
        " required; verify: the certificate must also be valid for the"
        " exchange's name; off: never",
        "may",
        "{may,encrypt,verify,off}",
    ),
    Setting(
        "ca",
        "SMTPTUT_CA",
        parseReadableFile,
        None,
        "CA certificates (PEM) for --tls verify",
        "the system's CAs",
        "FILE",
    ),
    Setting(
        "user",
        "SMTPTUT_USER",
        str,
        None,
        "log in to the --relay with AUTH PLAIN, LOGIN or CRAM-MD5 (needs --tls"
        " verify unless the relay is on loopback); the password comes from"
        " SMTPTUT_PASSWORD or a prompt",
        "none",
        "NAME",
        strip=False,
    ),
    Setting(
        "insecureAuth",
        "SMTPTUT_INSECURE_AUTH",
        parseFlag,
        False,
        "with --tls encrypt, log in over TLS whatever the relay's certificate"
        " (a man in the middle could take the password)",
        "0",
        flag=True,
    ),
    Setting(
        "password",
        "SMTPTUT_PASSWORD",
        str,
        None,
        "the password for SMTPTUT_USER",
        "none",
        option=NO_OPTION,
        strip=False,
    ),
    Setting(
        "timeout",
        "SMTPTUT_TIMEOUT",
        parseSeconds,
        None,
        "the longest wait for a connection or a reply",
        "RFC 5321 §4.5.3.2's",
        "SECONDS",
    ),
    Setting(
        "dkimKeys",
        "SMTPTUT_DKIM_KEY",
        parseKeyPaths,
        (),
        "sign with the DKIM private key in this PEM file, RSA (rsa-sha256) or"
        " Ed25519 (ed25519-sha256, only beside an RSA key); repeat, or"
        " separate with a comma, for both",
        "none (nothing signed)",
        "FILE",
        multiple=True,
    ),
    Setting(
        "dkimSelectors",
        "SMTPTUT_DKIM_SELECTOR",
        parseSelectors,
        (),
        "the selector of each DKIM key (s=; its public key is the TXT record"
        " SELECTOR._domainkey.DOMAIN), in the keys' order",
        "none (needed with a key)",
        "SELECTOR",
        multiple=True,
    ),
    Setting(
        "dkimDomain",
        "SMTPTUT_DKIM_DOMAIN",
        signingDomain,
        None,
        "the signing domain (d=)",
        "the From: address's domain",
        "DOMAIN",
    ),
    Setting(
        "json",
        "SMTPTUT_JSON",
        parseFlag,
        False,
        "print one JSON object per recipient instead of the text lines",
        "0",
        flag=True,
    ),
)


@dataclass(frozen=True)
class ClientSettings:
    """
    What the sending side needs: envelope, message, routing, TLS and limits.
    See L{CLIENT_SETTINGS}.

    @ivar helo: the EHLO name; L{None} for an address literal of the local
        end of each connection (what C{fromEnvironment} leaves when the
        machine has no fully qualified name, see L{localFQDN}).
    @ivar insecureAuth: allow AUTH over TLS whose certificate is not checked
        (C{SMTPTUT_INSECURE_AUTH=1}, with C{SMTPTUT_TLS=encrypt}).
    @ivar timeout: seconds to wait for any one reply, or L{None} for the
        RFC 5321 §4.5.3.2 waits (5 minutes for most replies, 10 after the
        message).
    @ivar concurrency: how many domains are delivered to at the same time.
    @ivar dkim: the keys to DKIM-sign with, read from their files
        (C{SMTPTUT_DKIM_*}); none by default.
    @ivar labels: each variable's name as the user gave it (C{--tls} or
        C{SMTPTUT_TLS}), for checks across settings.
    """

    sender: str = TUTORIAL_SENDER
    recipients: tuple[MailAddress, ...] = (parseAddress(TUTORIAL_RECIPIENT),)
    dataPath: str | None = None
    helo: str | None = None
    port: int = 25
    nameservers: tuple[tuple[str, int], ...] = ()
    relay: tuple[str, int] | None = None
    tlsPolicy: TLSPolicy = TLSPolicy.MAY
    ca: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    insecureAuth: bool = False
    timeout: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    dkim: DKIMSigning = DKIMSigning()
    json: bool = False
    #: C{--debug} (or C{-vv}): the SMTP transcript on standard error.
    debug: bool = False
    labels: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fromEnvironment(
        cls,
        environ: Mapping[str, str],
        options: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """
        Read the client settings from C{environ}, overridden by C{options}
        (text by variable, see L{smtptut.settings.givenOptions}); raise
        L{ConfigError} naming the bad one as the user gave it (a
        L{smtptut.client.dkimkeys.KeyFileError} for a DKIM key file).
        """
        values = readSettings(CLIENT_SETTINGS, environ, options)
        names = labels(CLIENT_SETTINGS, options)
        if values["helo"] is None:
            values["helo"] = localFQDN()
        dkim = signingKeys(
            values.pop("dkimKeys"),
            values.pop("dkimSelectors"),
            values.pop("dkimDomain"),
            names,
        )
        return cls(**values, dkim=dkim, labels=names)

    def label(self, variable: str) -> str:
        """
        How the user gave C{variable}: its option or the variable itself.
        """
        return self.labels.get(variable, variable)

    def said(self, variable: str, value: str) -> str:
        """
        A setting as the user would write it: C{--tls verify} or C{SMTPTUT_TLS=verify}.
        """
        label = self.label(variable)
        return f"{label} {value}" if label.startswith("--") else f"{label}={value}"

    @property
    def username(self) -> bytes | None:
        """
        C{SMTPTUT_USER} as AUTH sends it, if set.
        """
        return self.user.encode("utf-8") if self.user else None

    @property
    def secret(self) -> bytes | None:
        """
        C{SMTPTUT_PASSWORD} as AUTH sends it, if set.
        """
        return self.password.encode("utf-8") if self.password else None

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


# Checks across settings.


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
    tls = settings.tlsPolicy
    if settings.insecureAuth and tls is not TLSPolicy.ENCRYPT:
        raise ConfigError(
            settings.label("SMTPTUT_INSECURE_AUTH"),
            f"only with {settings.said('SMTPTUT_TLS', 'encrypt')} (verify needs"
            " no exception; may and off could send the password in plaintext)",
        )
    if not settings.user:
        return
    user = settings.label("SMTPTUT_USER")
    if settings.relay is None:
        raise ConfigError(
            user,
            "a login is only for a relay: set SMTPTUT_RELAY to the"
            " submission server (the password never goes to a recipient's MX)",
        )
    if isLoopbackRelay(settings) or tls is TLSPolicy.VERIFY:
        return
    if tls is TLSPolicy.ENCRYPT and settings.insecureAuth:
        return
    raise ConfigError(
        user,
        f"a login needs {settings.said('SMTPTUT_TLS', 'verify')}, not {tls}"
        f" (or {settings.said('SMTPTUT_TLS', 'encrypt')} with"
        f" {settings.said('SMTPTUT_INSECURE_AUTH', '1')} to send the"
        " password to any certificate)",
    )


def checkCredentials(settings: ClientSettings) -> None:
    """
    A user name needs a password (and a password a user name), and a
    relay it can safely go to (see L{checkAuthRoute}).
    """
    if settings.user and not settings.password:
        raise ConfigError("SMTPTUT_PASSWORD", "not set, but SMTPTUT_USER is")
    if settings.password and not settings.user:
        raise ConfigError(
            settings.label("SMTPTUT_USER"), "not set, but SMTPTUT_PASSWORD is"
        )
    checkAuthRoute(settings)


def checkTrust(settings: ClientSettings) -> None:
    """
    With C{SMTPTUT_TLS=verify}, the CA file must hold PEM certificates.
    """
    if settings.tlsPolicy is not TLSPolicy.VERIFY or settings.ca is None:
        return
    try:
        loadTrustRoot(settings.ca)
    except Exception as e:
        reason = " ".join(str(e).split()) or e.__class__.__name__
        raise ConfigError(
            settings.label("SMTPTUT_CA"), f"{settings.ca}: {reason}"
        ) from None
