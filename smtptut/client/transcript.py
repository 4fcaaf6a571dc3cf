"""The SMTP transcript of --debug (as swaks shows it), with AUTH payloads and the password hidden."""

from __future__ import annotations

import base64
from collections.abc import Callable

#: What stands in for a hidden payload or password.
HIDDEN = "***"


def secretForms(secret: bytes) -> list[bytes]:
    """
    The password and the forms it takes on the wire: base64 alone, and
    inside AUTH PLAIN's C{\\0user\\0password} (whatever the user name, the
    password's own base64 is not a substring of that, so a line is hidden
    whole while AUTH goes on: see L{Transcript}).
    """
    if not secret:
        return []
    return [secret, base64.b64encode(secret)]


class Transcript:
    """
    Writes each line of a session: C{-> } for the client's, C{<- } for the
    server's.  From C{AUTH} until the server's reply that is not C{334},
    what the client sends is C{***} (its mechanism apart), and the password
    itself is hidden wherever it would appear.
    """

    def __init__(
        self, write: Callable[[str], object], secret: bytes | None = None
    ) -> None:
        self._write = write
        self._secrets = secretForms(secret or b"")
        self._inAuth = False

    def sent(self, line: bytes) -> None:
        """
        The client sent C{line} (without its CRLF).
        """
        if line[:5].upper() == b"AUTH ":
            self._inAuth = True
            mechanism = line[5:].split(b" ", 1)
            shown = b"AUTH " + mechanism[0]
            if len(mechanism) > 1:
                shown += b" " + HIDDEN.encode()
            self._emit("->", shown)
        elif self._inAuth:
            self._emit("->", HIDDEN.encode())
        else:
            self._emit("->", line)

    def received(self, line: bytes) -> None:
        """
        The server sent C{line}.
        """
        if self._inAuth and line[:3] != b"334":
            self._inAuth = False
        self._emit("<-", line)

    def message(self, size: int) -> None:
        """
        The message went (it is not shown: only its size).
        """
        self._write(f"-> ({size} octets of message, then .)")

    def _emit(self, direction: str, line: bytes) -> None:
        for secret in self._secrets:
            line = line.replace(secret, HIDDEN.encode())
        text = line.decode("utf-8", "backslashreplace")
        self._write(f"{direction} {text}")
