"""The ``smtptut`` console script: ``smtptut send`` and ``smtptut dkim`` (client side), ``smtptut passwd`` (server side), ``smtptut queue``."""

from __future__ import annotations

import sys
from collections.abc import Callable

from smtptut.errors import EX_OK, EX_USAGE

TOP_HELP = """\
usage: smtptut COMMAND [OPTIONS]

commands:
  send     send a message straight to the recipients' mail exchangers
           (or through a relay); "smtptut send --help" tells more
  passwd   manage the console server's password file (see "smtptut passwd --help")
  dkim     "smtptut dkim keygen": make a DKIM key and its DNS TXT record
  queue    list, flush, delete or deliver queued mail (see "smtptut queue --help")
"""


def sendMain(argv: list[str]) -> int:
    """
    C{smtptut send}, from the client side.
    """
    # Imported here, as passwd's is: each command loads only its own side.
    from smtptut.client.send import sendMain as clientSendMain

    return clientSendMain(argv)


def passwdMain(argv: list[str]) -> int:
    """
    C{smtptut passwd}: the console server's command, from its own module.
    """
    # Imported here: "smtptut send" needs none of the server's modules.
    from smtptut.server.passwords import passwdMain as serverPasswdMain

    return serverPasswdMain(argv)


def dkimMain(argv: list[str]) -> int:
    """
    C{smtptut dkim keygen}, from the client side.
    """
    from smtptut.client.dkimkeys import dkimMain as keysMain

    return keysMain(argv)


def queueMain(argv: list[str]) -> int:
    """
    C{smtptut queue}: the delivery queue's command (issue 12).
    """
    from smtptut.queue.command import queueMain as run

    return run(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "send": sendMain,
    "passwd": passwdMain,
    "dkim": dkimMain,
    "queue": queueMain,
}


def main(argv: list[str] | None = None) -> int:
    """
    The console script: C{smtptut COMMAND [OPTIONS]}.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(TOP_HELP, end="")
        return EX_OK if argv else EX_USAGE
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"smtptut: no command {argv[0]!r}\n\n{TOP_HELP}", end="", file=sys.stderr)
        return EX_USAGE
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
