"""DKIM signing (RFC 6376) of the message as sent, in one streaming pass."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from email.utils import getaddresses
from typing import BinaryIO

import dkim
from dkim.canonicalization import (
    CanonicalizationPolicy,
    compress_whitespace,
    strip_trailing_whitespace,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from smtptut.client.dkimkeys import DKIMSigning, SigningKey, signingDomain
from smtptut.client.message import CHUNK_SIZE, MAX_LINE, MessageSource
from smtptut.errors import MessageError

# How it streams.  dkimpy's DKIM.sign takes the whole message as bytes
# (rfc822_parse splits it, and the body is canonicalized and hashed in
# one piece), which would hold a message of up to 100 MiB in memory two or
# three times over.  So the work is split where RFC 6376 splits it:
#
#   - the body hash (bh=, §3.7) is computed here, by RelaxedBodyHash:
#     the message is read once in chunks cut at line ends, each chunk is
#     relaxed-canonicalized with dkimpy's own helpers
#     (dkim.canonicalization.strip_trailing_whitespace and
#     compress_whitespace) and fed to hashlib.sha256; only the empty
#     lines at the end of what was read so far are held back (as a count),
#     since trailing empty lines are not hashed (§3.4.4);
#   - the header section, which is small (at most MAX_HEADER_SECTION), is
#     kept and handed to dkimpy, whose header parsing, canonicalization,
#     folding and hash_headers build the DKIM-Signature field from the
#     tags given, bh= included, as its DomainSigner.gen_header (the routine
#     DKIM.sign itself ends with) does; the digest is signed with OpenSSL
#     (see signatureField).  None of that is documented API, hence the
#     upper bound on dkimpy in pyproject.toml, and tests/test_dkim.py
#     checks the result with Mail::DKIM, against dkimpy's whole-message
#     body hash and against the field gen_header makes itself.
#
# What is signed is what smtptut.client.message.MessageProducer sends, less the
# dot-stuffing (transport only, RFC 5321 §4.5.2): the fields the client adds
# (Date:, Message-ID:), CRLF line ends, the final line end added when
# missing, and no Bcc: fields (the source's reader already leaves them out).

log = Logger()

#: The largest header section signed (fields the client adds included): the
#: header section is held in memory while the body streams past.
MAX_HEADER_SECTION = 2**20

#: The header fields RFC 6376 §5.4.1 says should be signed, each instance
#: present (dkimpy keeps the RFC's list).
SIGNED_FIELDS: tuple[bytes, ...] = tuple(dkim.DKIM.SHOULD)

#: Fields over-signed (RFC 6376 §8.15): named once more in C{h=} than the
#: message holds them, so none can be added in transit without breaking the
#: signature -- a second C{From:} or C{Subject:} shown instead of the signed
#: one, or a C{Reply-To:} added to a message that had none.
OVERSIGNED_FIELDS: tuple[bytes, ...] = (
    b"from",
    b"sender",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"to",
    b"cc",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)

RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")

CRLF = b"\r\n"


class RelaxedBodyHash:
    """
    The SHA-256 of a body under relaxed canonicalization (RFC 6376 §3.4.4),
    fed whole CRLF lines in any number of pieces.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        # Empty lines read but not yet hashed: only hashed if a line with
        # something on it follows (trailing empty lines are ignored).
        self._emptyLines = 0

    def update(self, lines: bytes) -> None:
        """
        Hash C{lines}: whole lines, each ending in CRLF.
        """
        canonical = compress_whitespace(strip_trailing_whitespace(lines))
        content = canonical.rstrip(b"\r\n")
        trailing = (len(canonical) - len(content)) // 2
        if not content:
            self._emptyLines += trailing
            return
        self._hash.update(b"\r\n" * self._emptyLines + content + b"\r\n")
        self._emptyLines = trailing - 1

    def digest(self) -> bytes:
        # An empty body hashes as nothing at all (RFC 6376 §3.4.4, dkimpy's
        # correct_empty_body): no line was ever hashed then.
        return self._hash.copy().digest()


@dataclass(frozen=True)
class _Read:
    """
    A message read once: its header section (CRLF lines) and body hash.
    """

    headers: bytes
    bodyHash: bytes


def _toCRLF(lines: bytes) -> bytes:
    return lines.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def readForSigning(source: MessageSource, chunkSize: int = CHUNK_SIZE) -> _Read:
    """
    Read C{source} once as it will be sent: keep the header section, hash
    the body.

    @raise MessageError: when the header section is over
        L{MAX_HEADER_SECTION}.
    """
    headers = bytearray(source.extraHeaders)
    body = RelaxedBodyHash()
    with source.open() as f:
        while True:
            line = f.readline(MAX_LINE + 3)
            if not line:
                break
            if not line.endswith(b"\n"):
                line += b"\n"
            if line in (b"\n", b"\r\n"):
                break
            headers += _toCRLF(line)
            if len(headers) > MAX_HEADER_SECTION:
                raise MessageError(
                    f"{source.name}: the header section is over"
                    f" {MAX_HEADER_SECTION} octets; it is not DKIM-signed"
                )
        _hashBody(f, body, chunkSize)
    return _Read(bytes(headers), body.digest())


def _hashBody(f: BinaryIO, body: RelaxedBodyHash, chunkSize: int) -> None:
    pending = b""
    while True:
        chunk = f.read(chunkSize)
        if not chunk:
            break
        data = pending + chunk
        # Cut after an LF: a CRLF is never split between two chunks.
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            body.update(_toCRLF(data[:cut]))
    if pending:
        # The producer ends an unterminated last line for SMTP: so here.
        body.update(_toCRLF(pending + b"\n"))


def signedFieldNames(headers: Sequence[Sequence[bytes]]) -> list[bytes]:
    """
    C{h=}: each field of RFC 6376's list present, in order, and then every
    field in L{OVERSIGNED_FIELDS} once more.
    """
    present = [name.lower() for name, _ in headers if name.lower() in SIGNED_FIELDS]
    return present + list(OVERSIGNED_FIELDS)


def fromDomain(headers: Iterable[Sequence[bytes]], name: str) -> str:
    """
    The domain of the first address of the message's C{From:}, for C{d=}.

    @raise MessageError: when there is none.
    """
    for fieldName, value in headers:
        if fieldName.lower() == b"from":
            text = value.decode("utf-8", "replace")
            for _, address in getaddresses([text]):
                domain = address.rpartition("@")[2]
                if domain:
                    try:
                        return signingDomain(domain)
                    except ValueError as e:
                        raise MessageError(f"{name}: From: {e}") from None
            break
    raise MessageError(
        f"{name}: no From: address to take the DKIM domain from (set"
        " SMTPTUT_DKIM_DOMAIN or give the message a From: field)"
    )


def signatureFields(
    key: SigningKey,
    domain: str,
    include: Sequence[bytes],
    bodyHash: bytes,
    now: float,
) -> list[tuple[bytes, bytes]]:
    """
    The tags of a C{DKIM-Signature} field, C{b=} still to be filled.
    """
    return [
        (b"v", b"1"),
        (b"a", key.algorithm.value.encode("ascii")),
        (b"c", RELAXED.to_c_value()),
        (b"d", domain.encode("ascii")),
        (b"s", key.selector.encode("ascii")),
        (b"t", str(int(now)).encode("ascii")),
        (b"h", b": ".join(include)),
        (b"bh", base64.b64encode(bodyHash)),
        # As dkimpy's own sign(): a placeholder b= long enough to be folded
        # onto a line of its own, so that filling it in changes no folding
        # of the tags before it.
        (b"b", b"0" * 60),
    ]


def signHeaders(
    headers: bytes,
    bodyHash: bytes,
    keys: Sequence[SigningKey],
    domain: str | None,
    name: str,
    now: float,
) -> bytes:
    """
    The C{DKIM-Signature} fields, one per key, in SMTP form, for a message
    with C{headers} (its header section, CRLF lines) and C{bodyHash}.

    @raise MessageError: when the header section cannot be parsed or has
        no C{From:} to take the domain from.
    """
    try:
        signer = dkim.DKIM(headers + b"\r\n")
    except dkim.MessageFormatError as e:
        raise MessageError(f"{name}: cannot DKIM-sign: {e}") from None
    d = domain or fromDomain(signer.headers, name)
    include = signedFieldNames(signer.headers)
    # Canonicalized once for every signature: the header section is the same.
    canonical = RELAXED.canonicalize_headers(signer.headers)
    result = b""
    for key in keys:
        fields = signatureFields(key, d, include, bodyHash, now)
        result += b"DKIM-Signature: " + signatureField(canonical, include, fields, key)
    return result


def signatureField(
    canonical: list[tuple[bytes, bytes]],
    include: Sequence[bytes],
    fields: list[tuple[bytes, bytes]],
    key: SigningKey,
) -> bytes:
    """
    The value of a C{DKIM-Signature} field, folded, ending in CRLF, for the
    header fields C{canonical} (relaxed) and the tags C{fields}.

    This is dkimpy's C{DomainSigner.gen_header} (as C{DKIM.sign} ends) with
    dkimpy's own pieces -- C{fold}, C{RE_BTAG}, C{hash_headers} -- except
    for the signature itself.  dkimpy signs RSA with its own pure-Python
    PKCS#1 code (two 2048-bit C{pow}s, 10 to 25 ms a message, most of
    what signing cost) and parses the PEM key again for every message;
    here OpenSSL signs the digest (through C{cryptography}), with the key
    parsed once (L{SigningKey.key}).  RSA PKCS#1 v1.5 and Ed25519
    signatures are deterministic: the field is the very one dkimpy makes
    (tests/test_dkim.py compares them).
    """
    header = b"DKIM-Signature"
    value = dkim.fold(
        b"; ".join(b"=".join(f) for f in fields), namelen=len(header), linesep=CRLF
    )
    value = dkim.RE_BTAG.sub(b"\\1", value)
    digest = hashlib.sha256()
    dkim.hash_headers(
        digest, RELAXED, canonical, include, (header, b" " + value), dict(fields)
    )
    signature = base64.b64encode(key.sign(digest.digest()))
    signed = [(tag, signature if tag == b"b" else v) for tag, v in fields]
    value = b"; ".join(b"=".join(f) for f in signed) + CRLF
    return bytes(dkim.fold(value, namelen=len(header), linesep=CRLF))


def signMessage(
    source: MessageSource, signing: DKIMSigning, clock: IReactorTime
) -> MessageSource:
    """
    C{source} with a C{DKIM-Signature} field for each key in C{signing} in
    front (none without keys); the message is read once to sign it.  The
    signing time (C{t=}) is C{clock.seconds()}: the reactor's time, which a
    test's L{Clock} sets.

    @raise MessageError: when the message cannot be signed.
    """
    if not signing.keys:
        return source
    read = readForSigning(source)
    signatures = signHeaders(
        read.headers,
        read.bodyHash,
        signing.keys,
        signing.domain,
        source.name,
        clock.seconds(),
    )
    log.info(
        "DKIM-signed with {selectors}",
        selectors=", ".join(f"{k.selector} ({k.algorithm})" for k in signing.keys),
    )
    return replace(
        source,
        extraHeaders=signatures + source.extraHeaders,
        size=source.size + len(signatures),
    )
