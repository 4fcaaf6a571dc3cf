"""The console server's accounts: ``user:hash`` lines, salted scrypt; ``smtptut passwd``."""

from __future__ import annotations

import argparse
import base64
import functools
import getpass
import hashlib
import hmac
import os
import sys
import tempfile

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from zope.interface import implementer

from smtptut.errors import EX_CANTCREAT, EX_DATAERR, EX_NOUSER, EX_OK, EX_USAGE

#: scrypt cost parameters for new hashes: OWASP's minimum (N=2**17, r=8,
#: p=1), about 128 MiB and a few hundred milliseconds a check.  Each hash
#: names its own parameters, so hashes made with other ones (the 2**14 of
#: earlier versions) still verify.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
#: The most memory one check may take: scrypt needs 128 * N * r * p octets
#: and a little more, and OpenSSL refuses beyond its 32 MiB default.
SCRYPT_MAXMEM = 256 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hashPassword(password: str, salt: bytes | None = None) -> str:
    """
    C{scrypt$N$r$p$SALT$HASH}: a salted scrypt hash of C{password}.
    """
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def checkPassword(password: bytes, stored: str) -> bool:
    """
    Whether C{password} matches a hash made by L{hashPassword}.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password,
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _unknownUserHash() -> str:
    """
    A hash with the current parameters that no password matches in practice,
    made once: checking against it costs what checking a real user costs.
    """
    return hashPassword(_b64(os.urandom(32)))


def readUsers(path: str) -> dict[str, str]:
    """
    The C{user:hash} lines of C{path} (blank lines and C{#} comments skipped).
    """
    users: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, colon, stored = line.partition(":")
            if colon:
                users[name] = stored
    return users


@implementer(ICredentialsChecker)
class UsersFileChecker:
    """
    Checks user names and passwords against a users file, read at each
    attempt (so C{smtptut passwd} takes effect at once), hashing in a thread.
    """

    credentialInterfaces = (IUsernamePassword,)

    #: Checks run at once: each takes about 128 MiB (L{SCRYPT_N}), so a burst
    #: of AUTH attempts waits in line rather than fill the thread pool.
    concurrentChecks = 2

    def __init__(self, path: str, reactor: IReactorThreads) -> None:
        self.path = path
        self.reactor = reactor
        self._checks = defer.DeferredSemaphore(self.concurrentChecks)

    def _check(self, username: bytes, password: bytes) -> bytes:
        try:
            stored = readUsers(self.path).get(username.decode("utf-8", "replace"))
        except OSError:
            stored = None
        # Hash even for unknown users, so timing tells nothing about names.
        ok = checkPassword(password, stored or _unknownUserHash())
        if stored is None or not ok:
            raise UnauthorizedLogin()
        return username

    def requestAvatarId(
        self, credentials: IUsernamePassword
    ) -> defer.Deferred[bytes | tuple[()]]:
        return self._checks.run(
            threads.deferToThreadPool,
            self.reactor,
            self.reactor.getThreadPool(),
            self._check,
            credentials.username,
            credentials.password,
        )


def writeUsers(path: str, users: dict[str, str]) -> None:
    """
    Replace C{path} atomically with C{users}, readable by its owner only.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".users-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for name, stored in users.items():
                f.write(f"{name}:{stored}\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _readPassword(user: str) -> str | None:
    password = os.environ.get("SMTPTUT_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n") or None
    first = getpass.getpass(f"Password for {user}: ")
    if getpass.getpass("Again: ") != first:
        print("smtptut passwd: the passwords differ", file=sys.stderr)
        return None
    return first or None


def passwdMain(argv: list[str]) -> int:
    """
    C{smtptut passwd [-f FILE] {add,delete,list} [USER]}: manage the console
    server's users file.
    """
    parser = argparse.ArgumentParser(
        prog="smtptut passwd",
        description=(
            "Manage the console server's users file (SMTPTUT_USERS): user:hash"
            " lines, salted scrypt.  'add' sets a password, read from"
            " SMTPTUT_PASSWORD, else a prompt (twice), else the first line of"
            " standard input."
        ),
    )
    parser.add_argument(
        "-f",
        "--file",
        default=os.environ.get("SMTPTUT_USERS"),
        help="the users file (default: $SMTPTUT_USERS); created if missing",
    )
    parser.add_argument("action", choices=("add", "delete", "list"))
    parser.add_argument("user", nargs="?")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return EX_OK if e.code == 0 else EX_USAGE
    if not args.file:
        print(
            "smtptut passwd: no users file: give -f or SMTPTUT_USERS", file=sys.stderr
        )
        return EX_USAGE
    try:
        users = readUsers(args.file) if os.path.exists(args.file) else {}
    except (OSError, UnicodeDecodeError) as e:
        print(f"smtptut passwd: {args.file}: {e}", file=sys.stderr)
        return EX_DATAERR
    if args.action == "list":
        for name in users:
            print(name)
        return EX_OK
    user: str | None = args.user
    if not user or any(c in user for c in ":\r\n") or user != user.strip():
        print(f"smtptut passwd: {user!r} is not a user name", file=sys.stderr)
        return EX_USAGE
    if args.action == "delete":
        if users.pop(user, None) is None:
            print(f"smtptut passwd: {user}: no such user", file=sys.stderr)
            return EX_NOUSER
    else:
        password = _readPassword(user)
        if password is None:
            print("smtptut passwd: no password given", file=sys.stderr)
            return EX_USAGE
        users[user] = hashPassword(password)
    try:
        writeUsers(args.file, users)
    except OSError as e:
        print(f"smtptut passwd: {args.file}: {e}", file=sys.stderr)
        return EX_CANTCREAT
    return EX_OK
