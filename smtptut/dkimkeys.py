"""``smtptut dkim keygen``: a DKIM private key, and the DNS TXT record that publishes it."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from smtptut.dkimsettings import MIN_RSA_BITS, checkSelector, signingDomain
from smtptut.errors import EX_CANTCREAT, EX_OK, EX_USAGE

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


KeyPair = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def generateKey(keyType: KeyType, bits: int = 2048) -> KeyPair:
    """
    A new private key.
    """
    if keyType is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def publicKeyData(key: KeyPair) -> bytes:
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


def txtRecord(selector: str, domain: str, key: KeyPair) -> str:
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


def writePrivateKey(path: str, key: KeyPair) -> None:
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
