"""Tests for smtptut.certificates: a server's chain and a client's CA bundle from PEM."""

import os

import trustme
from twisted.internet import ssl
from twisted.trial.unittest import SynchronousTestCase

from smtptut.certificates import loadCertificateChain, loadTrustRoot


class ChainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.root = trustme.CA()
        self.intermediate = self.root.create_child_ca()
        self.leaf = self.intermediate.issue_cert("localhost")
        self.chainPath = self.path("fullchain.pem")
        self.keyPath = self.path("key.pem")
        # Leaf first, then the intermediate, as CAs hand them out.
        self.leaf.cert_chain_pems[0].write_to_path(self.chainPath)
        self.intermediate.cert_pem.write_to_path(self.chainPath, append=True)
        self.leaf.private_key_pem.write_to_path(self.keyPath)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def test_leafAndIntermediates(self) -> None:
        """
        The first certificate is the server's, with its key; every other
        one is kept, in order, to be sent after it.
        """
        key, leaf, chain = loadCertificateChain(self.chainPath, self.keyPath)
        self.assertEqual(
            leaf.get_issuer().der(), chain[0].get_subject().der(), "leaf's issuer"
        )
        self.assertEqual(len(chain), 1)
        self.assertEqual(key.bits(), leaf.get_pubkey().bits())

    def test_keyInTheCertificateFile(self) -> None:
        combined = self.path("combined.pem")
        with open(combined, "wb") as out:
            for path in (self.chainPath, self.keyPath):
                with open(path, "rb") as f:
                    out.write(f.read())
        _, _, chain = loadCertificateChain(combined, combined)
        self.assertEqual(len(chain), 1)

    def test_noCertificate(self) -> None:
        e = self.assertRaises(
            ValueError, loadCertificateChain, self.keyPath, self.keyPath
        )
        self.assertEqual(str(e), "no PEM certificate in it")


class TrustRootTests(SynchronousTestCase):
    def test_bundle(self) -> None:
        path = os.path.abspath(self.mktemp())
        first, second = trustme.CA(), trustme.CA()
        first.cert_pem.write_to_path(path)
        with open(path, "a") as f:
            f.write("# a comment between certificates\n")
        second.cert_pem.write_to_path(path, append=True)
        given: list[list[ssl.Certificate]] = []

        def trustRoot(certificates: list[ssl.Certificate]) -> str:
            given.append(certificates)
            return path

        self.patch(ssl, "trustRootFromCertificates", trustRoot)
        self.assertEqual(loadTrustRoot(path), path)
        self.addCleanup(loadTrustRoot.cache_clear)
        self.assertEqual(
            [c.dumpPEM() for c in given[0]],
            [first.cert_pem.bytes(), second.cert_pem.bytes()],
        )

    def test_noCertificate(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("not a certificate\n")
        e = self.assertRaises(ValueError, loadTrustRoot, path)
        self.assertEqual(str(e), "no PEM certificate in it")
