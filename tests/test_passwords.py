"""The users file: salted scrypt hashes, ``smtptut passwd``, the checker."""

from __future__ import annotations

import os
import stat

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial.unittest import TestCase

from smtptut.passwords import (
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
        self.assertTrue(one.startswith("scrypt$16384$8$1$"))
        self.assertTrue(checkPassword(b"pw", one))
        self.assertFalse(checkPassword(b"pW", one))
        self.assertFalse(checkPassword(b"pw", "plain-text"))
        self.assertNotIn("pw", one.split("$", 4)[4])


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

    async def test_checker(self) -> None:
        self.add("app", "right")
        checker = UsersFileChecker(self.path, reactor)
        avatar = await checker.requestAvatarId(UsernamePassword(b"app", b"right"))
        self.assertEqual(avatar, b"app")
        for user, password in [(b"app", b"wrong"), (b"nobody", b"right")]:
            with self.assertRaises(UnauthorizedLogin):
                await checker.requestAvatarId(UsernamePassword(user, password))
