"""The users file: salted scrypt hashes, ``smtptut passwd``, the checker."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial.unittest import TestCase

from smtptut.server.passwords import (
    UsersFileChecker,
    checkPassword,
    hashPassword,
    passwdMain,
    readUsers,
)

from .helpers import SMTPTUT, reactor, runProcess


class HashTests(TestCase):
    timeout = 30

    def test_saltedAndChecked(self) -> None:
        one, two = hashPassword("pw"), hashPassword("pw")
        self.assertNotEqual(one, two)
        self.assertTrue(checkPassword(b"pw", one))
        self.assertFalse(checkPassword(b"pW", one))
        self.assertFalse(checkPassword(b"pw", "plain-text"))
        self.assertNotIn("pw", one.split("$", 4)[4])

    def test_newHashesCostAtLeastOWASPMinimum(self) -> None:
        # OWASP's password storage cheat sheet: scrypt N=2**17, r=8, p=1 at
        # least; the parameters are part of the hash.
        scheme, n, r, p, salt, digest = hashPassword("pw").split("$")
        self.assertEqual(scheme, "scrypt")
        self.assertGreaterEqual(int(n), 2**17)
        self.assertEqual((int(r), int(p)), (8, 1))
        expected = hashlib.scrypt(
            b"pw",
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=512 * 1024 * 1024,
        )
        self.assertEqual(base64.b64decode(digest), expected)

    def test_oldHashesStillVerify(self) -> None:
        # Made by earlier versions (N=2**14): users files written then keep
        # working.
        old = (
            "scrypt$16384$8$1$c210cHR1dC1vbGQtc2FsdA==$xQeW/ubefjltrdqOJklykCOJWlqt"
            "3/ZnT+YO89faTWE2kFqLM3TUboQGy9Xi5ChkR6/l2lKTyxpojJNnwqGEXA=="
        )
        self.assertTrue(checkPassword(b"old-password", old))
        self.assertFalse(checkPassword(b"old-passwore", old))


class PasswdTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())

    def add(self, user: str, password: str) -> int:
        self.patch(os, "environ", {**os.environ, "SMTPTUT_PASSWORD": password})
        return passwdMain(["-f", self.path, "add", user])

    def test_addChangeDelete(self) -> None:
        self.assertEqual(self.add("app", "one"), 0)
        self.assertEqual(self.add("other", "two"), 0)
        first = readUsers(self.path)["app"]
        self.assertEqual(self.add("app", "three"), 0)
        users = readUsers(self.path)
        self.assertNotEqual(users["app"], first)
        self.assertTrue(checkPassword(b"three", users["app"]))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path) as f:
            self.assertNotIn("three", f.read())
        self.assertEqual(passwdMain(["-f", self.path, "delete", "app"]), 0)
        self.assertEqual(list(readUsers(self.path)), ["other"])
        # EX_NOUSER (sysexits.h): the user does not exist.
        self.assertEqual(passwdMain(["-f", self.path, "delete", "app"]), 67)

    def test_badUsage(self) -> None:
        self.assertEqual(self.add("a:b", "x"), 64)
        self.patch(os, "environ", {})
        self.assertEqual(passwdMain(["add", "app"]), 64)
        self.assertEqual(passwdMain(["frobnicate"]), 64)

    async def test_consoleScript(self) -> None:
        result = await runProcess(
            reactor,
            [SMTPTUT, "passwd", "add", "app"],
            {"SMTPTUT_USERS": self.path},
            stdin=b"from-stdin\n",
        )
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertTrue(checkPassword(b"from-stdin", readUsers(self.path)["app"]))
        listed = await runProcess(reactor, [SMTPTUT, "passwd", "-f", self.path, "list"])
        self.assertEqual(listed.out, "app\n")

    async def test_checkerTakesOldHashes(self) -> None:
        with open(self.path, "w") as f:
            f.write(
                "old:scrypt$16384$8$1$c210cHR1dC1vbGQtc2FsdA==$xQeW/ubefjltrdqOJkly"
                "kCOJWlqt3/ZnT+YO89faTWE2kFqLM3TUboQGy9Xi5ChkR6/l2lKTyxpojJNnwqGEXA==\n"
            )
        checker = UsersFileChecker(self.path, reactor)
        avatar = await checker.requestAvatarId(
            UsernamePassword(b"old", b"old-password")
        )
        self.assertEqual(avatar, b"old")

    async def test_checker(self) -> None:
        self.add("app", "right")
        checker = UsersFileChecker(self.path, reactor)
        avatar = await checker.requestAvatarId(UsernamePassword(b"app", b"right"))
        self.assertEqual(avatar, b"app")
        for user, password in [(b"app", b"wrong"), (b"nobody", b"right")]:
            with self.assertRaises(UnauthorizedLogin):
                await checker.requestAvatarId(UsernamePassword(user, password))
