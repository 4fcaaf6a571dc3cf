"""DKIM settings: the SMTPTUT_DKIM_* rows, and the signing keys read from their files."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import idna
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from smtptut.errors import EX_NOINPUT, EX_USAGE
from smtptut.settings import ConfigError, Setting, labels, readSettings

#: The smallest RSA key taken: RFC 8301 §3.2 (verifiers may refuse smaller).
MIN_RSA_BITS = 1024


class Algorithm(StrEnum):
    """
    A DKIM signing algorithm (C{a=}), by the key that signs.
    """

    RSA = "rsa-sha256"
    ED25519 = "ed25519-sha256"


class KeyFileError(ConfigError):
    """
    A DKIM key file cannot be used: exit 66 when it cannot be read at all
    (L{EX_NOINPUT}), 64 when it holds no usable key (L{EX_USAGE}).
    """

    def __init__(self, setting: str, reason: str, missing: bool = False) -> None:
        super().__init__(setting, reason)
        self.missing = missing

    @property
    def exitStatus(self) -> int:
        return EX_NOINPUT if self.missing else EX_USAGE


@dataclass(frozen=True)
class SigningKey:
    """
    A private key that signs, with the selector its public key is found under.

    @ivar private: the key as dkimpy takes it: an RSAPrivateKey (PKCS#1) in
        PEM, or the base64 32-octet Ed25519 seed.
    """

    algorithm: Algorithm
    selector: str
    private: bytes = field(repr=False)
    path: str = ""


def _paths(text: str) -> tuple[str, ...]:
    paths = tuple(p.strip() for p in text.split(",") if p.strip())
    if len(paths) > 2:
        raise ValueError(
            "at most two keys: one RSA key, and an Ed25519 key to sign with too"
        )
    return paths


def checkSelector(text: str) -> str:
    """
    A selector (RFC 6376 §3.1: C{sub-domain *( "." sub-domain )}).

    @raise ValueError: naming what is wrong with it.
    """
    selector = text.strip()
    if not all(_isLDHLabel(label) for label in selector.split(".")):
        raise ValueError(f"{text!r} is not a selector (DNS labels: a-z 0-9 -)")
    return selector


def _selectors(text: str) -> tuple[str, ...]:
    return tuple(checkSelector(s) for s in text.split(",") if s.strip())


def _isLDHLabel(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c == "-" for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )


def signingDomain(text: str) -> str:
    """
    A domain for C{d=}: in A-labels (RFC 5890), lower case, no final dot.

    @raise ValueError: naming what is wrong with it.
    """
    name = text.strip().rstrip(".")
    try:
        ascii = idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as e:
        raise ValueError(f"{text!r} is not a domain name: {e}") from None
    labels = ascii.split(".")
    if len(labels) < 2 or not all(_isLDHLabel(label) for label in labels):
        raise ValueError(f"{text!r} is not a domain name")
    return ascii


#: The DKIM rows for the client's settings table (one mechanism:
#: smtptut.settings).
DKIM_SETTINGS: tuple[Setting[Any], ...] = (
    Setting(
        "keyPaths",
        "SMTPTUT_DKIM_KEY",
        _paths,
        (),
        "sign with the DKIM private key in this PEM file, RSA (rsa-sha256) or"
        " Ed25519 (ed25519-sha256, only beside an RSA key); repeat, or"
        " separate with a comma, for both",
        metavar="FILE",
        multiple=True,
    ),
    Setting(
        "selectors",
        "SMTPTUT_DKIM_SELECTOR",
        _selectors,
        (),
        "the selector of each DKIM key (s=; its public key is the TXT record"
        " SELECTOR._domainkey.DOMAIN), in the keys' order",
        "none (needed with a key)",
        metavar="SELECTOR",
        multiple=True,
    ),
    Setting(
        "domain",
        "SMTPTUT_DKIM_DOMAIN",
        signingDomain,
        None,
        "the signing domain (d=)",
        "the From: address's domain",
        metavar="DOMAIN",
    ),
)


@dataclass(frozen=True)
class DKIMSettings:
    """
    What to sign with: no key at all (nothing is signed), an RSA key, or an
    RSA key and an Ed25519 key (two signatures).

    @ivar keys: the RSA key first.
    @ivar domain: C{d=}; L{None} for the domain of the message's C{From:}.
    """

    keys: tuple[SigningKey, ...] = ()
    domain: str | None = None

    @classmethod
    def read(
        cls, environ: Mapping[str, str], options: Mapping[str, str] | None = None
    ) -> DKIMSettings:
        """
        The settings from C{options} (text by variable) and C{environ}, the
        key files read.

        @raise ConfigError: naming the setting as the user gave it; a
            L{KeyFileError} for a key file that cannot be read or used.
        """
        values = readSettings(DKIM_SETTINGS, environ, options)
        names = labels(DKIM_SETTINGS, options)
        paths: tuple[str, ...] = values["keyPaths"]
        selectors: tuple[str, ...] = values["selectors"]
        keyName, selectorName = (
            names["SMTPTUT_DKIM_KEY"],
            names["SMTPTUT_DKIM_SELECTOR"],
        )
        if not paths:
            if selectors:
                raise ConfigError(selectorName, f"no key: set {keyName} too")
            return cls((), values["domain"])
        if len(selectors) != len(paths):
            raise ConfigError(
                selectorName,
                f"{len(paths)} key(s) in {keyName} need {len(paths)} selector(s),"
                f" one per key in its order, not {len(selectors)}",
            )
        keys = [
            loadKey(path, selector, keyName)
            for path, selector in zip(paths, selectors, strict=True)
        ]
        kinds = [k.algorithm for k in keys]
        if len(set(kinds)) != len(kinds):
            raise KeyFileError(
                keyName, "two keys of one type: give one RSA key and one Ed25519 key"
            )
        if Algorithm.RSA not in kinds:
            # RFC 8463 §4: an ed25519-sha256 signature alone is unusable to
            # the many verifiers that do not know the algorithm yet.
            raise KeyFileError(
                keyName,
                f"{paths[0]}: an Ed25519 key signs only beside an RSA key"
                " (receivers that do not know ed25519-sha256 would find no"
                " signature they can check): add an RSA key",
            )
        keys.sort(key=lambda k: k.algorithm != Algorithm.RSA)
        return cls(tuple(keys), values["domain"])


def loadKey(path: str, selector: str, setting: str = "SMTPTUT_DKIM_KEY") -> SigningKey:
    """
    Read a PEM private key file, RSA or Ed25519 (the type is detected).

    @raise KeyFileError: naming the file and what is wrong.
    """
    try:
        with open(path, "rb") as f:
            pem = f.read(2**16 + 1)
    except OSError as e:
        raise KeyFileError(
            setting, f"{path}: {e.strerror or e}", missing=True
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise KeyFileError(
            setting, f"{path}: the key is encrypted; give it without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            setting, f"{path}: not a PEM private key (RSA or Ed25519)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(
                setting,
                f"{path}: a {key.key_size}-bit RSA key; DKIM needs at least"
                f" {MIN_RSA_BITS} bits (RFC 8301), 2048 is usual",
            )
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return SigningKey(Algorithm.RSA, selector, private, path)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return SigningKey(Algorithm.ED25519, selector, base64.b64encode(seed), path)
    raise KeyFileError(
        setting,
        f"{path}: a key of type {type(key).__name__.removesuffix('PrivateKey')};"
        " DKIM signs with RSA or Ed25519 keys only",
    )
