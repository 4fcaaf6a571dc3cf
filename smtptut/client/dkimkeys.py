"""DKIM keys: the signing keys read from their files, and ``smtptut dkim keygen`` with the DNS TXT record to publish."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from smtptut.addresses import AddressError, isHostName, toALabel
from smtptut.errors import EX_CANTCREAT, EX_OK, EX_USAGE
from smtptut.settings import ConfigError

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
    A DKIM key file cannot be used: C{missing} (exit 66) when it cannot be
    read at all, else (exit 64) it holds no usable key.
    """


#: A private key that signs (C{cryptography}'s, OpenSSL underneath).
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """
    A private key that signs, with the selector its public key is found under.

    @ivar key: the key, parsed once when its file is read (not for each
        message signed).
    """

    algorithm: Algorithm
    selector: str
    key: PrivateKey = field(repr=False, compare=False)
    path: str = ""

    def sign(self, digest: bytes) -> bytes:
        """
        The signature (C{b=}) of C{digest}, the SHA-256 of the canonicalized
        header fields: RSASSA-PKCS1-v1_5 of the digest (RFC 6376 §3.3.1),
        or Ed25519 of the digest as its message (RFC 8463 §3).
        """
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(
                digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
            )
        return self.key.sign(digest)


def parseKeyPaths(text: str) -> tuple[str, ...]:
    """
    Comma-separated key files: an RSA key, and an Ed25519 key beside it.
    """
    paths = tuple(p.strip() for p in text.split(",") if p.strip())
    if len(paths) > 2:
        raise ValueError(
            "at most two keys: one RSA key, and an Ed25519 key to sign with too"
        )
    return paths


def checkSelector(text: str) -> str:
    """
    A selector (RFC 6376 §3.1: C{sub-domain *( "." sub-domain )}, the
    labels of a host name).

    @raise ValueError: naming what is wrong with it.
    """
    selector = text.strip()
    if not isHostName(selector):
        raise ValueError(f"{text!r} is not a selector (DNS labels: a-z 0-9 -)")
    return selector


def parseSelectors(text: str) -> tuple[str, ...]:
    """
    Comma-separated selectors, one per key in the keys' order.
    """
    return tuple(checkSelector(s) for s in text.split(",") if s.strip())


def signingDomain(text: str) -> str:
    """
    A domain for C{d=}: in A-labels (RFC 5890), lower case, no final dot.

    @raise ValueError: naming what is wrong with it.
    """
    try:
        name = toALabel(text.strip()).lower()
    except AddressError as e:
        raise ValueError(f"{text!r} is not a domain name: {e}") from None
    if "." not in name or not isHostName(name):
        raise ValueError(f"{text!r} is not a domain name")
    return name


@dataclass(frozen=True)
class DKIMSigning:
    """
    What to sign with: no key at all (nothing is signed), an RSA key, or an
    RSA key and an Ed25519 key (two signatures).  L{ClientSettings.dkim},
    from the C{SMTPTUT_DKIM_*} rows of the client's settings table.

    @ivar keys: the RSA key first.
    @ivar domain: C{d=}; L{None} for the domain of the message's C{From:}.
    """

    keys: tuple[SigningKey, ...] = ()
    domain: str | None = None


def signingKeys(
    paths: Sequence[str],
    selectors: Sequence[str],
    domain: str | None,
    labels: Mapping[str, str],
) -> DKIMSigning:
    """
    The key files read and paired with their selectors: the check across
    C{SMTPTUT_DKIM_KEY} and C{SMTPTUT_DKIM_SELECTOR}, each named as in
    C{labels} (how the user gave it).

    @raise ConfigError: naming the setting; a L{KeyFileError} for a key
        file that cannot be read or used.
    """
    keyName = labels.get("SMTPTUT_DKIM_KEY", "SMTPTUT_DKIM_KEY")
    selectorName = labels.get("SMTPTUT_DKIM_SELECTOR", "SMTPTUT_DKIM_SELECTOR")
    if not paths:
        if selectors:
            raise ConfigError(selectorName, f"no key: set {keyName} too")
        return DKIMSigning((), domain)
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
    return DKIMSigning(tuple(keys), domain)


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
        return SigningKey(Algorithm.RSA, selector, key, path)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return SigningKey(Algorithm.ED25519, selector, key, path)
    raise KeyFileError(
        setting,
        f"{path}: a key of type {type(key).__name__.removesuffix('PrivateKey')};"
        " DKIM signs with RSA or Ed25519 keys only",
    )


#: The largest RSA key made: a TXT record of 4096 bits is already five strings.
MAX_RSA_BITS = 4096

#: RFC 1035 §3.3.14: one <character-string> holds at most 255 octets.
TXT_STRING = 255


class KeyType(StrEnum):
    """
    The kinds of key made, by their C{k=} tag (RFC 6376 §3.6.1, RFC 8463).
    """

    RSA = "rsa"
    ED25519 = "ed25519"


def generateKey(keyType: KeyType, bits: int = 2048) -> PrivateKey:
    """
    A new private key.
    """
    if keyType is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def publicKeyData(key: PrivateKey) -> bytes:
    """
    C{p=}: the public key in base64, DER SubjectPublicKeyInfo for RSA
    (RFC 6376 §3.6.1), the raw 32 octets for Ed25519 (RFC 8463 §4).
    """
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    return base64.b64encode(raw)


def txtRecord(selector: str, domain: str, key: PrivateKey) -> str:
    """
    The zone-file line to publish: C{SELECTOR._domainkey.DOMAIN. IN TXT}
    and the key record, split into strings of at most 255 octets (a DKIM
    verifier joins them, RFC 6376 §3.6.2.2).
    """
    isEd25519 = isinstance(key, ed25519.Ed25519PrivateKey)
    keyType = KeyType.ED25519 if isEd25519 else KeyType.RSA
    text = f"v=DKIM1; k={keyType}; p={publicKeyData(key).decode('ascii')}"
    strings = [text[i : i + TXT_STRING] for i in range(0, len(text), TXT_STRING)]
    quoted = " ".join(f'"{s}"' for s in strings)
    return f"{selector}._domainkey.{domain}. IN TXT {quoted}"


def writePrivateKey(path: str, key: PrivateKey) -> None:
    """
    Write C{key} (PKCS#8 PEM, unencrypted) to a new file readable by its
    owner only; an existing file is never replaced.

    @raise FileExistsError: when C{path} exists.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: no overwriting, and no following a symlink planted there.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)


def keygenParser() -> argparse.ArgumentParser:
    """
    The options of C{smtptut dkim keygen}.
    """
    parser = _Parser(
        prog="smtptut dkim keygen",
        description=(
            "Make a DKIM private key and print the DNS TXT record that"
            " publishes its public key; then send with --dkim-key FILE"
            " --dkim-selector SELECTOR."
        ),
    )
    add = parser.add_argument
    add("--selector", required=True, help="the selector (s=), e.g. 2026a")
    add("--domain", required=True, help="the signing domain (d=), e.g. example.org")
    add(
        "--type", choices=[t.value for t in KeyType], default="rsa", help="default: rsa"
    )
    add("--bits", type=int, default=2048, help="RSA key size (default: 2048)")
    add(
        "--out",
        metavar="FILE",
        help="where to write the private key, mode 0600, never over an"
        " existing file (default: SELECTOR._domainkey.DOMAIN.pem)",
    )
    return parser


def keygenMain(argv: Sequence[str]) -> int:
    """
    C{smtptut dkim keygen}.
    """
    args = keygenParser().parse_args(list(argv))
    prog = "smtptut dkim keygen"
    try:
        selector = checkSelector(args.selector)
    except ValueError as e:
        print(f"{prog}: --selector: {e}", file=sys.stderr)
        return EX_USAGE
    try:
        domain = signingDomain(args.domain)
    except ValueError as e:
        print(f"{prog}: --domain: {e}", file=sys.stderr)
        return EX_USAGE
    keyType = KeyType(args.type)
    if keyType is KeyType.RSA and not MIN_RSA_BITS <= args.bits <= MAX_RSA_BITS:
        print(
            f"{prog}: --bits: {args.bits} is not between {MIN_RSA_BITS} and"
            f" {MAX_RSA_BITS} (2048 is usual; RFC 8301)",
            file=sys.stderr,
        )
        return EX_USAGE
    path = args.out or f"{selector}._domainkey.{domain}.pem"
    key = generateKey(keyType, args.bits)
    try:
        writePrivateKey(path, key)
    except FileExistsError:
        print(f"{prog}: --out: {path} exists; it is not replaced", file=sys.stderr)
        return EX_CANTCREAT
    except OSError as e:
        print(f"{prog}: --out: {path}: {e.strerror or e}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"; private key written to {path}; publish this record:", file=sys.stderr)
    print(txtRecord(selector, domain, key))
    return EX_OK


DKIM_HELP = """\
usage: smtptut dkim keygen --selector S --domain D [--type rsa|ed25519]
                           [--bits 2048] [--out FILE]
"""


def dkimMain(argv: list[str]) -> int:
    """
    C{smtptut dkim SUBCOMMAND}.
    """
    if argv[:1] == ["keygen"]:
        return keygenMain(argv[1:])
    if argv[:1] in (["-h"], ["--help"]):
        print(DKIM_HELP, end="")
        return EX_OK
    print(
        f"smtptut dkim: {' '.join(argv[:1]) or 'no command'}?\n{DKIM_HELP}",
        end="",
        file=sys.stderr,
    )
    return EX_USAGE
