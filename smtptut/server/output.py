"""The sink's replies: gathered, refusals logged and counted, written at once when the socket has room."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import ITransport
from twisted.logger import Logger

from smtptut.server.commands import KNOWN_VERBS, Replies, decode, printable
from smtptut.server.session import Session
from smtptut.server.settings import ServerSettings
from smtptut.writing import writeNow


class ReplyOutput:
    """
    L{ConsoleESMTP}'s replies: gathered while pipelined commands are
    answered, then written together; each refusal logged in one line and
    counted, too many of them ending the session.  What it uses of the
    protocol is declared here.
    """

    log: Logger
    transport: ITransport | None
    settings: ServerSettings
    session: Session
    peer: str
    _replies: list[bytes]
    _close: Callable[[], None]

    def _reply(self, code: int, text: bytes | str) -> None:
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        self._replies.append(b"%d %s\r\n" % (code, text))

    def _flush(self) -> None:
        if self._replies and self.transport is not None:
            replies, self._replies = self._replies, []
            writeNow(self.transport, b"".join(replies))

    def _refused(
        self, verb: bytes, code: int, text: bytes | str, argument: bytes = b""
    ) -> None:
        """
        Refuse a command: the reply, and one log line (with the command's
        argument only when given: never for AUTH).
        """
        self._reply(code, text)
        if verb and not verb.startswith(b"(") and verb not in KNOWN_VERBS:
            verb = b"(unrecognized)"
        self.log.info(
            "refused {command}{argument} from {peer}: {code} {reply}",
            command=decode(verb) or "(line)",
            argument=" " + printable(argument) if argument else "",
            peer=self.peer,
            code=code,
            reply=text if isinstance(text, str) else decode(text),
        )

    def _error(
        self, verb: bytes, code: int, text: bytes | str, argument: bytes = b""
    ) -> None:
        """
        Refuse a command and count it; too many errors end the session.
        """
        self._refused(verb, code, text, argument)
        self.session.errors += 1
        if self.session.errors >= self.settings.maxErrors:
            self._refused(b"(session)", *Replies.TOO_MANY_ERRORS)
            self._close()
