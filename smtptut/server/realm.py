"""The tutorial's SimpleRealm and the portal AUTH logs in through."""

from __future__ import annotations

from collections.abc import Callable

from twisted.cred.checkers import (
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.portal import IRealm, Portal
from twisted.mail import smtp
from zope.interface import Interface, implementer

#: The tutorial's account, kept as the default for loopback use.
TUTORIAL_USERS = {b"guest": b"password"}


@implementer(IRealm)
class SimpleRealm:
    """
    The tutorial's realm: an authenticated client gets the same kind of
    delivery as everyone else (and so the same recipients: no relaying).
    """

    def __init__(self, makeDelivery: Callable[[], smtp.IMessageDelivery]) -> None:
        self.makeDelivery = makeDelivery

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: object
    ) -> tuple[type[Interface], object, Callable[[], None]]:
        if smtp.IMessageDelivery in interfaces:
            return smtp.IMessageDelivery, self.makeDelivery(), lambda: None
        raise NotImplementedError()


def makePortal(
    makeDelivery: Callable[[], smtp.IMessageDelivery],
    users: dict[bytes, bytes] | None = None,
    checker: ICredentialsChecker | None = None,
) -> Portal:
    """
    A portal whose checker is C{checker}, or one that knows C{users} (the
    tutorial's guest by default).
    """
    portal = Portal(SimpleRealm(makeDelivery))
    if checker is None:
        memory = InMemoryUsernamePasswordDatabaseDontUse()
        for name, password in (TUTORIAL_USERS if users is None else users).items():
            memory.addUser(name, password)
        checker = memory
    portal.registerChecker(checker)
    return portal
