"""DKIM signing: verified by Mail::DKIM (not dkimpy) against the loopback DNS, streaming."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import subprocess
import sys
from functools import partial
from typing import Any

import dkim as dkimpy
import dns.resolver
from dkim.canonicalization import CanonicalizationPolicy
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import threads
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smtptut.client.dkim import (
    OVERSIGNED_FIELDS,
    RELAXED,
    RelaxedBodyHash,
    readForSigning,
    signatureField,
    signatureFields,
    signedFieldNames,
    signMessage,
)
from smtptut.client.dkimkeys import (
    Algorithm,
    DKIMSigning,
    KeyFileError,
    KeyType,
    generateKey,
    txtRecord,
    writePrivateKey,
)
from smtptut.client.message import MessageProducer, MessageSource, checkMessage
from smtptut.client.settings import ClientSettings
from smtptut.errors import (
    EX_CANTCREAT,
    EX_NOINPUT,
    EX_USAGE,
    MessageError,
    exitStatusFor,
)
from smtptut.settings import ConfigError

from .helpers import (
    SMTPTUT,
    DNSServer,
    ProcessResult,
    a,
    mx,
    reactor,
    runProcess,
    startAiosmtpd,
    startDNSServer,
    twistdArgv,
    txt,
)
from .strategies import lineEnds, messageLines

VERIFIER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "mail_dkim_verify.pl"
)

MESSAGE = b"""\
From: Sender <sender@example.test>
To: Someone <rcpt@example.test>
Bcc: hidden@example.test
Subject: signed   and  sealed
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

.a line that starts with a dot
..and one with two
.
trailing blanks and\ttabs \t
  indented  with   runs   of spaces


"""


def sentBytes(source: MessageSource) -> bytes:
    """
    What L{MessageProducer} writes for C{source}, dot-stuffing undone and the
    final C{.} line taken off: the message as the receiver stores it.
    """
    transport = StringTransport()
    MessageProducer(source).beginTransfer(transport)
    for _ in range(100000):
        if transport.producer is None:
            break
        transport.producer.resumeProducing()
    wire = transport.value()
    assert wire.endswith(b"\r\n.\r\n"), wire[-20:]
    lines = wire[:-3].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def recordStrings(line: str) -> list[str]:
    """
    The <character-string>s of a zone-file TXT line as keygen prints it.
    """
    return re.findall(r'"([^"]*)"', line)


def writeKey(directory: str, keyType: KeyType, selector: str) -> tuple[str, str]:
    """
    A new key file in C{directory} and its TXT record line.
    """
    key = generateKey(keyType)
    path = os.path.join(directory, f"{selector}.pem")
    writePrivateKey(path, key)
    return path, txtRecord(selector, "example.test", key)


def keygenArgv(selector: str, path: str, *more: str) -> list[str]:
    """
    C{smtptut dkim keygen} for C{selector} of example.test, the key to C{path}.
    """
    keygen = [SMTPTUT, "dkim", "keygen", "--selector", selector]
    return keygen + ["--domain", "example.test", "--out", path, *more]


def dkimSettings(
    environ: dict[str, str], options: dict[str, str] | None = None
) -> DKIMSigning:
    """
    The DKIM keys the client's settings read from C{environ} and C{options}
    (text by variable, as C{smtptut send} gives them).
    """
    return ClientSettings.fromEnvironment(environ, options).dkim


def dkimpyVerify(message: bytes, records: dict[str, str], index: int) -> bool:
    """
    dkimpy's verdict on signature C{index}, the key looked up in C{records}.
    """

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        found = records.get(name.decode("ascii").rstrip("."))
        return None if found is None else found.encode("ascii")

    try:
        return bool(dkimpy.DKIM(message).verify(index, dnsfunc=lookup))
    except dkimpy.ValidationError:  # "body hash mismatch" among others
        return False


# ------------------------------------------------------------ in-process


class BodyHashTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(messageLines(), lineEnds, st.lists(st.integers(1, 400), min_size=1))
    def test_streamedEqualsWhole(
        self, lines: list[bytes], end: bytes, cuts: list[int]
    ) -> None:
        """
        The body hash fed in pieces cut anywhere at line ends is dkimpy's
        relaxed body hash of the whole body.
        """
        lines = [
            b" \t" + line + b"  " if i % 3 else line for i, line in enumerate(lines)
        ]
        lines += [b"", b"\t", b""][: len(cuts) % 4]
        body = b"".join(line + b"\r\n" for line in lines)
        policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        whole = hashlib.sha256(policy.canonicalize_body(body)).digest()
        streamed = RelaxedBodyHash()
        rest = lines
        for cut in cuts * (len(lines) + 1):
            if not rest:
                break
            size = 1 + cut % 5
            piece, rest = rest[:size], rest[size:]
            streamed.update(b"".join(line + b"\r\n" for line in piece))
        self.assertEqual(streamed.digest(), whole)


class SentBytesTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(
        messageLines(),
        messageLines(maxLines=5),
        lineEnds,
        st.booleans(),
        st.integers(1, 300),
    )
    def test_hashesWhatIsSent(
        self,
        body: list[bytes],
        extra: list[bytes],
        end: bytes,
        finalEnd: bool,
        chunkSize: int,
    ) -> None:
        """
        The header section kept and the body hash are those of the bytes
        the producer sends (dots unstuffed), however the message is read in
        chunks: LF or CRLF lines, a Bcc: field, lines of dots and
        whitespace, no final line end.
        """
        headers = [b"From: a@example.test", b"Bcc: b@example.test", b"Subject: x"]
        headers += [b"X-Extra: " + line.replace(b":", b"") for line in extra]
        text = end.join(headers + [b""] + body)
        if finalEnd or not text:
            text += end
        source = checkMessage("m", lambda: io.BytesIO(text))
        sent = sentBytes(source)
        if b"\r\n\r\n" in sent:
            head, _, sentBody = sent.partition(b"\r\n\r\n")
            head += b"\r\n"
        else:  # no empty line: all of it is the header section
            head, sentBody = sent, b""
        read = readForSigning(source, chunkSize)
        self.assertEqual(read.headers, head)
        policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        expected = hashlib.sha256(policy.canonicalize_body(sentBody)).digest()
        self.assertEqual(read.bodyHash, expected)


class SigningTests(SynchronousTestCase):
    """
    Signing in-process, checked with dkimpy (Mail::DKIM's checks are below).
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.rsa, self.rsaRecord = writeKey(self.directory, KeyType.RSA, "r1")
        self.records = {
            "r1._domainkey.example.test": "".join(recordStrings(self.rsaRecord))
        }

    def sign(self, message: bytes, **environ: str) -> bytes:
        environ.setdefault("SMTPTUT_DKIM_KEY", self.rsa)
        environ.setdefault("SMTPTUT_DKIM_SELECTOR", "r1")
        signing = dkimSettings(environ)
        source = checkMessage("message", lambda: io.BytesIO(message))
        clock = Clock()
        clock.advance(1.7e9)
        return sentBytes(signMessage(source, signing, clock))

    def test_noKeyNoSignature(self) -> None:
        """
        Without a key the message goes as before: nothing read, nothing added.
        """
        source = checkMessage("message", lambda: io.BytesIO(MESSAGE))
        self.assertIs(signMessage(source, dkimSettings({}), Clock()), source)

    def test_signsWhatIsSent(self) -> None:
        """
        The signature covers the message as sent: the Bcc: field gone, the
        Date: and Message-ID: the client adds, dots and CRLFs as received.
        """
        sent = self.sign(MESSAGE.replace(b"\n", b"\r\n"))
        self.assertTrue(sent.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"), sent)
        self.assertNotIn(b"Bcc:", sent)
        self.assertIn(b"\r\n.a line that starts with a dot\r\n", sent)
        self.assertTrue(dkimpyVerify(sent, self.records, 0))
        fields = dkimpy.util.parse_tag_value(
            sent.split(b"\r\nDate:")[0].removeprefix(b"DKIM-Signature:")
        )
        self.assertEqual(fields[b"c"], b"relaxed/relaxed")
        self.assertEqual(fields[b"d"], b"example.test")
        signed = [h.strip() for h in fields[b"h"].split(b":")]
        self.assertIn(b"date", signed)
        self.assertIn(b"message-id", signed)
        # Over-signed: one From: more than the message has.
        self.assertEqual(signed.count(b"from"), 2)
        self.assertEqual(set(OVERSIGNED_FIELDS) - set(signed), set())

    def test_signingTimeFromTheClock(self) -> None:
        """
        t= is the time of the clock given (the reactor's), not the wall
        clock's: a Clock at 2001-09-09 01:46:40 signs with t=1000000000, and
        the signature still verifies.
        """
        environ = {"SMTPTUT_DKIM_KEY": self.rsa, "SMTPTUT_DKIM_SELECTOR": "r1"}
        source = checkMessage("message", lambda: io.BytesIO(MESSAGE))
        clock = Clock()
        clock.advance(10**9 + 0.75)
        sent = sentBytes(signMessage(source, dkimSettings(environ), clock))
        fields = dkimpy.util.parse_tag_value(
            sent.split(b"\r\nDate:")[0].removeprefix(b"DKIM-Signature:")
        )
        self.assertEqual(fields[b"t"], b"1000000000")
        self.assertTrue(dkimpyVerify(sent, self.records, 0))

    def test_addedFromBreaksTheSignature(self) -> None:
        """
        Over-signing at work: a From: (or Reply-To:) put in front in transit
        fails verification, as a changed body does.
        """
        sent = self.sign(MESSAGE)
        self.assertTrue(dkimpyVerify(sent, self.records, 0))
        for forged in (
            sent.replace(b"\r\nFrom:", b"\r\nFrom: boss@example.test\r\nFrom:", 1),
            sent.replace(b"\r\nFrom:", b"\r\nReply-To: x@example.org\r\nFrom:", 1),
            sent.replace(b"with two", b"with 2"),
        ):
            self.assertFalse(dkimpyVerify(forged, self.records, 0))

    def test_domainFromTheFromField(self) -> None:
        """
        d= is the From: domain (in A-labels) unless SMTPTUT_DKIM_DOMAIN says.
        """
        message = MESSAGE.replace(b"sender@example.test", "s@bücher.example".encode())
        sent = self.sign(message)
        self.assertIn(b" d=xn--bcher-kva.example;", sent)
        sent = self.sign(message, SMTPTUT_DKIM_DOMAIN="Example.TEST.")
        self.assertIn(b" d=example.test;", sent)
        self.assertTrue(dkimpyVerify(sent, self.records, 0))

    def test_noFromNoDomain(self) -> None:
        """
        With no From: to take d= from, sending stops with one line (the
        message's fault: 65).
        """
        e = self.assertRaises(MessageError, self.sign, b"Subject: no sender\n\nhi\n")
        self.assertIn("no From: address", str(e))
        self.assertEqual(exitStatusFor(e), 65)


class FastSigningTests(SynchronousTestCase):
    """
    The signature is made by OpenSSL (through cryptography) with a key parsed
    once, not by dkimpy's pure-Python RSA with the key parsed per message --
    and it is the very field dkimpy makes.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.rsa, _ = writeKey(self.directory, KeyType.RSA, "r1")
        self.ed, _ = writeKey(self.directory, KeyType.ED25519, "e1")
        self.signing = dkimSettings(
            {"SMTPTUT_DKIM_KEY": f"{self.rsa},{self.ed}"},
            {"SMTPTUT_DKIM_SELECTOR": "r1,e1"},
        )

    def test_sameFieldAsDkimpy(self) -> None:
        """
        For RSA and Ed25519 (both deterministic), the DKIM-Signature field
        is byte for byte the one dkimpy's own gen_header makes with its own
        signing code and its own form of the same key.
        """
        from cryptography.hazmat.primitives import serialization
        from nacl.signing import SigningKey as NaClKey

        read = readForSigning(checkMessage("m", lambda: io.BytesIO(MESSAGE)))
        for key in self.signing.keys:
            algorithm = key.algorithm.value.encode("ascii")
            signer = dkimpy.DKIM(read.headers + b"\r\n", signature_algorithm=algorithm)
            signer.hasher = dkimpy.HASH_ALGORITHMS[algorithm]
            include = signedFieldNames(signer.headers)
            fields = signatureFields(key, "example.test", include, read.bodyHash, 1.7e9)
            if key.algorithm is Algorithm.RSA:
                pem = key.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
                theirs: Any = dkimpy.crypto.parse_pem_private_key(pem)
            else:
                theirs = NaClKey(
                    key.key.private_bytes(
                        serialization.Encoding.Raw,
                        serialization.PrivateFormat.Raw,
                        serialization.NoEncryption(),
                    )
                )
            expected = signer.gen_header(
                list(fields), include, RELAXED, b"DKIM-Signature", theirs
            )
            canonical = RELAXED.canonicalize_headers(signer.headers)
            self.assertEqual(
                signatureField(canonical, include, list(fields), key), expected
            )

    def test_noPurePythonRSANoParsingPerMessage(self) -> None:
        """
        Signing messages with keys already read parses no key file and never
        reaches dkimpy's pure-Python RSA (10 to 25 ms a 2048-bit signature,
        against OpenSSL's under 1 ms); the result still verifies.
        """
        from cryptography.hazmat.primitives import serialization

        def refuse(*args: object, **kwargs: object) -> Any:
            raise AssertionError("called while signing")

        self.patch(dkimpy, "RSASSA_PKCS1_v1_5_sign", refuse)
        self.patch(dkimpy.crypto, "RSASSA_PKCS1_v1_5_sign", refuse)
        self.patch(dkimpy.crypto, "parse_pem_private_key", refuse)
        self.patch(serialization, "load_pem_private_key", refuse)
        records = {
            "r1._domainkey.example.test": "".join(
                recordStrings(txtRecord("r1", "example.test", self.signing.keys[0].key))
            )
        }
        for number in range(3):
            message = MESSAGE.replace(b"sealed", b"sealed %d" % number)
            source = checkMessage("m", partial(io.BytesIO, message))
            sent = sentBytes(signMessage(source, self.signing, Clock()))
            self.assertEqual(sent.count(b"DKIM-Signature:"), 2)
            self.assertTrue(dkimpyVerify(sent, records, 0))


class SettingsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.rsa, _ = writeKey(self.directory, KeyType.RSA, "r1")
        self.ed, _ = writeKey(self.directory, KeyType.ED25519, "e1")

    def refused(
        self, environ: dict[str, str], options: dict[str, str] | None = None
    ) -> ConfigError:
        return self.assertRaises(ConfigError, dkimSettings, environ, options)

    def test_rsaThenEd25519(self) -> None:
        """
        Two keys, in either order, give the RSA signature first; the type is
        read from the key.
        """
        read = dkimSettings(
            {"SMTPTUT_DKIM_KEY": f"{self.ed},{self.rsa}"},
            {"SMTPTUT_DKIM_SELECTOR": "e1,r1"},
        )
        self.assertEqual(
            [(k.algorithm, k.selector) for k in read.keys],
            [(Algorithm.RSA, "r1"), (Algorithm.ED25519, "e1")],
        )
        self.assertIsNone(read.domain)

    def test_missingKeyFile(self) -> None:
        """
        A key file that is not there: one line naming it, exit 66.
        """
        missing = os.path.join(self.directory, "nope.pem")
        e = self.refused({"SMTPTUT_DKIM_KEY": missing, "SMTPTUT_DKIM_SELECTOR": "s"})
        self.assertEqual(
            str(e), f"SMTPTUT_DKIM_KEY: {missing}: No such file or directory"
        )
        self.assertEqual(exitStatusFor(e), EX_NOINPUT)
        e = self.refused({"SMTPTUT_DKIM_SELECTOR": "s"}, {"SMTPTUT_DKIM_KEY": missing})
        self.assertTrue(str(e).startswith("--dkim-key: "), str(e))

    def test_badKeyFiles(self) -> None:
        """
        What is no usable key is one line and exit 64: not PEM, a
        certificate, an encrypted key, a small RSA key, an EC key.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        def write(name: str, data: bytes) -> str:
            path = os.path.join(self.directory, name)
            with open(path, "wb") as f:
                f.write(data)
            return path

        # cryptography makes no key under 1024 bits; OpenSSL still does.
        smallPEM = subprocess.run(
            ["openssl", "genrsa", "512"], capture_output=True, check=True, timeout=30
        ).stdout
        small = serialization.load_pem_private_key(smallPEM, None)
        cases = {
            write("text.pem", b"hello\n"): "not a PEM private key",
            write("empty.pem", b""): "not a PEM private key",
            write(
                "locked.pem",
                small.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                ),
            ): "encrypted",
            write(
                "small.pem",
                small.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                ),
            ): "a 512-bit RSA key",
            write(
                "ec.pem",
                ec.generate_private_key(ec.SECP256R1()).private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ): "DKIM signs with RSA or Ed25519",
        }
        for path, reason in cases.items():
            e = self.refused({"SMTPTUT_DKIM_KEY": path, "SMTPTUT_DKIM_SELECTOR": "s"})
            self.assertIsInstance(e, KeyFileError)
            self.assertIn(reason, str(e))
            self.assertTrue(str(e).startswith(f"SMTPTUT_DKIM_KEY: {path}: "), str(e))
            self.assertNotIn("\n", str(e))
            self.assertEqual(exitStatusFor(e), EX_USAGE)

    def test_keyCombinations(self) -> None:
        """
        Ed25519 alone (unusable at receivers that lack it), two of a kind,
        and selectors that do not pair with the keys are refused.
        """
        cases = [
            (
                {"SMTPTUT_DKIM_KEY": self.ed, "SMTPTUT_DKIM_SELECTOR": "e1"},
                "only beside an RSA key",
            ),
            (
                {
                    "SMTPTUT_DKIM_KEY": f"{self.rsa},{self.rsa}",
                    "SMTPTUT_DKIM_SELECTOR": "a,b",
                },
                "two keys of one type",
            ),
            (
                {
                    "SMTPTUT_DKIM_KEY": f"{self.rsa},{self.ed}",
                    "SMTPTUT_DKIM_SELECTOR": "r1",
                },
                "need 2 selector(s)",
            ),
            ({"SMTPTUT_DKIM_KEY": self.rsa}, "need 1 selector(s)"),
            ({"SMTPTUT_DKIM_SELECTOR": "r1"}, "no key"),
            (
                {"SMTPTUT_DKIM_KEY": self.rsa, "SMTPTUT_DKIM_SELECTOR": "r 1"},
                "is not a selector",
            ),
            (
                {"SMTPTUT_DKIM_KEY": "a,b,c", "SMTPTUT_DKIM_SELECTOR": "a,b,c"},
                "at most two keys",
            ),
            (
                {
                    "SMTPTUT_DKIM_KEY": self.rsa,
                    "SMTPTUT_DKIM_SELECTOR": "r1",
                    "SMTPTUT_DKIM_DOMAIN": "not_a domain",
                },
                "is not a domain name",
            ),
        ]
        for environ, reason in cases:
            e = self.refused(environ)
            self.assertIn(reason, str(e))
            self.assertEqual(exitStatusFor(e), EX_USAGE)


# ---------------------------------------------------------- on loopback


#: Peak RSS of the command given, in KiB, printed last on standard error.
RSS_WRAPPER = """\
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("maxrss", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


class MailDKIMTests(TestCase):
    """
    C{smtptut send} run as a user runs it, to aiosmtpd on loopback; what
    aiosmtpd received is verified by Perl's Mail::DKIM, which looks the key
    up in the test's DNS on 127.0.0.1.
    """

    timeout = 300

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        controller, self.received, self.smtpPort = startAiosmtpd(
            self.directory, data_size_limit=64 * 2**20
        )
        self.addCleanup(controller.stop)
        self.records: dict[str, str] = {}

    async def keygen(self, keyType: KeyType, selector: str) -> str:
        """
        Make a key with C{smtptut dkim keygen}; the TXT record it prints is
        served by the test's DNS.  Returns the key file.
        """
        path = os.path.join(self.directory, f"{selector}.pem")
        result = await runProcess(
            reactor, keygenArgv(selector, path, "--type", keyType.value)
        )
        self.assertEqual(result.code, 0, result.err)
        [line] = result.out.splitlines()
        self.assertRegex(
            line,
            rf'^{selector}\._domainkey\.example\.test\. IN TXT( "[^"]{{1,255}}")+$',
        )
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.records[f"{selector}._domainkey.example.test"] = "".join(
            recordStrings(line)
        )
        self.txtLines = getattr(self, "txtLines", []) + [line]
        return path

    def startDNS(self) -> DNSServer:
        zone: dict[str, list[Any]] = {
            "example.test": [mx(10, "mx.example.test")],
            "mx.example.test": [a("127.0.0.1")],
        }
        for line in self.txtLines:
            zone[line.split()[0].rstrip(".")] = [txt(*recordStrings(line))]
        server = startDNSServer(reactor, "example.test", zone)
        self.addCleanup(server.stop)
        return server

    async def send(
        self,
        message: bytes,
        keys: list[str],
        selectors: list[str],
        stdin: bool = False,
        wrapper: list[str] | None = None,
    ) -> tuple[ProcessResult, bytes, DNSServer]:
        """
        Send C{message} signed with C{keys}; what aiosmtpd got.
        """
        dnsServer = self.startDNS()
        argv = [
            SMTPTUT,
            "send",
            "--from",
            "sender@example.test",
            "--to",
            "rcpt@example.test",
            "--dkim-key",
            ",".join(keys),
        ]
        for selector in selectors:
            argv += ["--dkim-selector", selector]
        if stdin:
            argv += ["--data", "-"]
        else:
            path = os.path.join(self.directory, "message.eml")
            with open(path, "wb") as f:
                f.write(message)
            argv += ["--data", path]
        result = await runProcess(
            reactor,
            (wrapper or []) + argv,
            {
                "SMTPTUT_NAMESERVER": dnsServer.nameserver,
                "SMTPTUT_PORT": str(self.smtpPort),
            },
            stdin=message if stdin else None,
            timeout=240,
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        [envelope] = self.received
        return result, envelope.original_content, dnsServer

    async def mailDKIM(self, message: bytes, dnsServer: DNSServer) -> list[str]:
        """
        Mail::DKIM's lines about C{message}: one per signature, then RESULT.
        """
        result = await runProcess(
            reactor, ["perl", VERIFIER, str(dnsServer.port)], stdin=message, timeout=120
        )
        self.assertEqual(result.code, 0, result.err)
        return result.out.splitlines()

    async def test_rsaLFInput(self) -> None:
        """
        An RSA-signed message from an LF file, with leading-dot lines and a
        Bcc: field, passes Mail::DKIM.
        """
        key = await self.keygen(KeyType.RSA, "rsa2026")
        _, received, dnsServer = await self.send(MESSAGE, [key], ["rsa2026"])
        self.assertIn(
            b"\r\n.a line that starts with a dot\r\n..and one with two\r\n.\r\n",
            received,
        )
        self.assertNotIn(b"Bcc:", received)
        self.assertEqual(
            await self.mailDKIM(received, dnsServer),
            ["SIGNATURE rsa-sha256 rsa2026 example.test pass", "RESULT pass"],
        )

    async def test_rsaCRLFStandardInput(self) -> None:
        """
        The same over CRLF lines read from standard input (the spooled path).
        """
        key = await self.keygen(KeyType.RSA, "rsa2026")
        _, received, dnsServer = await self.send(
            MESSAGE.replace(b"\n", b"\r\n"), [key], ["rsa2026"], stdin=True
        )
        self.assertIn(b"\r\n.a line that starts with a dot\r\n", received)
        self.assertEqual(
            await self.mailDKIM(received, dnsServer),
            ["SIGNATURE rsa-sha256 rsa2026 example.test pass", "RESULT pass"],
        )

    async def test_rsaAndEd25519(self) -> None:
        """
        With an Ed25519 key as well, two signatures: Mail::DKIM passes the
        RSA one.  Debian 12's Mail::DKIM (1.20230212) has no ed25519-sha256
        and says so of the other, which dkimpy verifies instead, its key
        from the same loopback DNS.
        """
        rsa = await self.keygen(KeyType.RSA, "rsa2026")
        ed = await self.keygen(KeyType.ED25519, "ed2026")
        _, received, dnsServer = await self.send(
            MESSAGE, [ed, rsa], ["ed2026", "rsa2026"]
        )
        lines = await self.mailDKIM(received, dnsServer)
        self.assertEqual(lines[0], "SIGNATURE rsa-sha256 rsa2026 example.test pass")
        self.assertIn(
            lines[1],
            [
                "SIGNATURE ed25519-sha256 ed2026 example.test pass",
                "SIGNATURE ed25519-sha256 ed2026 example.test invalid"
                " (invalid (unsupported algorithm ed25519-sha256))",
            ],
        )
        self.assertEqual(lines[2], "RESULT pass")

        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
            resolver.port = dnsServer.port
            answer = resolver.resolve(name.decode("ascii"), "TXT", lifetime=5)
            return b"".join(b"".join(r.strings) for r in answer)

        def verify(index: int) -> bool:
            return bool(dkimpy.DKIM(received).verify(index, dnsfunc=lookup))

        ok = await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), lambda: [verify(0), verify(1)]
        )
        self.assertEqual(ok, [True, True])

    async def test_largeMessageFlatMemory(self) -> None:
        """
        A 20 MB message is signed and sent without being held in memory: the
        client's peak RSS grows by far less than the message over a small
        one, and the signature passes Mail::DKIM.
        """
        key = await self.keygen(KeyType.RSA, "rsa2026")
        wrapper = [sys.executable, "-c", RSS_WRAPPER]
        line = (
            b"Lorem ipsum dolor sit amet, consectetur adipiscing elit  \t sed do.  " * 3
            + b"\n"
        )
        small = MESSAGE + line * 100
        large = MESSAGE + line * (20 * 10**6 // len(line))
        peaks = []
        for message in (small, large):
            self.received.clear()
            result, received, dnsServer = await self.send(
                message, [key], ["rsa2026"], wrapper=wrapper
            )
            peaks.append(int(result.err.split("maxrss ")[-1]))
        self.assertGreater(len(received), 20 * 10**6)
        growth = (peaks[1] - peaks[0]) * 1024
        self.assertLess(growth, 8 * 2**20, peaks)
        self.assertEqual((await self.mailDKIM(received, dnsServer))[-1], "RESULT pass")

    async def test_badKeyExitStatus(self) -> None:
        """
        As a user meets it: a missing key file is exit 66, a file that holds
        no key exit 64, each one line and no traceback; nothing is sent.
        """
        garbage = os.path.join(self.directory, "garbage.pem")
        with open(garbage, "w") as f:
            f.write(
                "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"
            )
        for path, code in (
            (os.path.join(self.directory, "none.pem"), 66),
            (garbage, 64),
        ):
            result = await runProcess(
                reactor,
                [
                    SMTPTUT,
                    "send",
                    "--to",
                    "rcpt@example.test",
                    "--data",
                    garbage,
                    "--dkim-key",
                    path,
                    "--dkim-selector",
                    "s",
                ],
                {"SMTPTUT_NAMESERVER": "127.0.0.1:1"},
            )
            self.assertEqual(result.code, code, result.err)
            self.assertEqual(result.out, "")
            [line] = result.err.splitlines()
            self.assertTrue(
                line.startswith(f"smtptut send: --dkim-key: {path}: "), line
            )
        self.assertEqual(self.received, [])

    async def test_keygenRefusesToOverwrite(self) -> None:
        """
        keygen never replaces a key file (that would unpublish the key in
        use): exit 73, the old key left as it was.
        """
        path = await self.keygen(KeyType.ED25519, "ed2026")
        with open(path, "rb") as f:
            before = f.read()
        result = await runProcess(reactor, keygenArgv("x", path))
        self.assertEqual(result.code, EX_CANTCREAT)
        self.assertEqual(result.out, "")
        self.assertEqual(
            result.err.strip(),
            f"smtptut dkim keygen: --out: {path} exists; it is not replaced",
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    async def test_smtpclientTac(self) -> None:
        """
        smtpclient.tac signs with the same settings (SMTPTUT_DKIM_*), and a
        missing key is one line and exit 66 there too.
        """
        key = await self.keygen(KeyType.RSA, "rsa2026")
        dnsServer = self.startDNS()
        path = os.path.join(self.directory, "message.eml")
        with open(path, "wb") as f:
            f.write(MESSAGE)
        settings = {
            "SMTPTUT_FROM": "sender@example.test",
            "SMTPTUT_TO": "rcpt@example.test",
            "SMTPTUT_DATA": path,
            "SMTPTUT_NAMESERVER": dnsServer.nameserver,
            "SMTPTUT_PORT": str(self.smtpPort),
            "SMTPTUT_DKIM_KEY": key,
            "SMTPTUT_DKIM_SELECTOR": "rsa2026",
        }
        result = await runProcess(reactor, twistdArgv("smtpclient.tac"), settings)
        self.assertEqual(result.code, 0, result.out + result.err)
        [envelope] = self.received
        self.assertEqual(
            await self.mailDKIM(envelope.original_content, dnsServer),
            ["SIGNATURE rsa-sha256 rsa2026 example.test pass", "RESULT pass"],
        )
        missing = os.path.join(self.directory, "gone.pem")
        result = await runProcess(
            reactor,
            twistdArgv("smtpclient.tac"),
            {**settings, "SMTPTUT_DKIM_KEY": missing},
        )
        self.assertEqual(result.code, EX_NOINPUT, result.err)
        self.assertIn(
            f"smtpclient.tac: SMTPTUT_DKIM_KEY: {missing}: No such file or directory",
            result.err,
        )
        self.assertNotIn("Traceback", result.out + result.err)
        self.assertEqual(len(self.received), 1)
