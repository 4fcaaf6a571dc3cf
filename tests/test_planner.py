"""Tests for smtptut.client.planner: the sans-IO transactions against a scripted server, by property."""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smtptut.client.message import MessageSource, checkMessage
from smtptut.client.model import Envelope
from smtptut.client.planner import (
    EIGHT_BIT_REFUSED,
    Abort,
    Close,
    Hangup,
    PassOn,
    Quit,
    Refuse,
    Send,
    Settle,
    Step,
    TransactionPlanner,
    Transfer,
)

ASCII = checkMessage("ascii", lambda: io.BytesIO(b"Subject: a\n\nhello\n"))
EIGHT_BIT = checkMessage("8bit", lambda: io.BytesIO(b"Subject: b\n\ncaf\xc3\xa9\n"))

#: Each reply a server may give, by what it answers.
TOO_MANY = (452, b"4.5.3 Error: too many recipients")
REPLIES = {
    "MAIL": [(250, b"ok"), (451, b"try later"), (550, b"no"), (421, b"bye")],
    "RCPT": [(250, b"ok"), (251, b"will forward"), (450, b"busy"), (550, b"unknown")]
    + [TOO_MANY],
    "DATA": [(354, b"go ahead"), (451, b"later"), (554, b"no")],
    "DOT": [(250, b"queued"), (451, b"later"), (554, b"rejected"), (421, b"bye")],
}


@dataclass
class Server:
    """
    A server that answers each command with a drawn reply, in order, as
    a consistent one would (nothing after a refused MAIL, 503 for DATA
    without a recipient unless it says 354 anyway, as RFC 2920 §3.1 allows).
    """

    draw: st.DataObject
    mailOk: bool = False
    accepted: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    mails: list[bytes] = field(default_factory=list)

    def reply(self, command: bytes) -> tuple[int, bytes]:
        verb = command[:4]
        if verb == b"MAIL":
            self.mails.append(command)
            self.accepted = []
            code, text = self.draw.draw(st.sampled_from(REPLIES["MAIL"]))
            self.mailOk = code == 250
            return code, text
        if verb == b"RCPT":
            if not self.mailOk:
                return 503, b"need MAIL"
            code, text = self.draw.draw(st.sampled_from(REPLIES["RCPT"]))
            if 200 <= code < 300:
                self.accepted.append(command[9:-1].decode())
            return code, text
        if verb == b"DATA":
            if not self.mailOk:
                return 503, b"need MAIL"
            choices = REPLIES["DATA"] if self.accepted else [(354, b"go"), (554, b"no")]
            return self.draw.draw(st.sampled_from(choices))
        if command == b"<message>":
            code, text = self.draw.draw(st.sampled_from(REPLIES["DOT"]))
            if 200 <= code < 300:
                self.delivered.extend(self.accepted)
            self.mailOk = False
            return code, text
        if command == b".":
            self.mailOk = False
            return 554, b"no valid recipients"
        if command == b"RSET":
            self.mailOk = False
            return 250, b"reset"
        assert command == b"QUIT", command
        return 221, b"bye"


@dataclass
class Run:
    """
    What a session did: its commands, what each recipient got, how it ended.
    """

    commands: list[bytes] = field(default_factory=list)
    settled: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    #: The recipients of transactions the server deferred whole (L{PassOn}).
    passedOn: list[str] = field(default_factory=list)
    end: Step | None = None
    mostOutstanding: int = 0


def session(
    envelopes: list[Envelope], extensions: dict[bytes, bytes | None], server: Server
) -> Run:
    """
    Drive a L{TransactionPlanner} against C{server} until the session ends
    (bounded: a planner that loops fails the test, it does not hang it).
    """
    planner = TransactionPlanner(envelopes)
    run = Run()
    outstanding: deque[bytes] = deque()
    steps = planner.begin(extensions)
    for _ in range(10_000):
        for step in steps:
            if isinstance(step, Send):
                outstanding.append(step.line)
                run.commands.append(step.line)
            elif isinstance(step, Transfer):
                planner.messageWritten()
                outstanding.append(b"<message>")
            elif isinstance(step, Settle):
                for recipient, code, _ in step.results:
                    assert recipient not in run.settled, recipient
                    run.settled[recipient] = code
            elif isinstance(step, PassOn):
                assert 400 <= step.code < 500, step
                run.passedOn.extend(step.recipients)
            elif isinstance(step, Refuse):
                assert step.reason == EIGHT_BIT_REFUSED
                run.refused.extend(step.recipients)
            elif isinstance(step, Quit):
                outstanding.append(b"QUIT")
                run.commands.append(b"QUIT")
            else:
                assert isinstance(step, (Close, Abort, Hangup)), step
                run.end = step
        run.mostOutstanding = max(run.mostOutstanding, len(outstanding))
        if run.end is not None or not outstanding:
            break
        steps = planner.replied(*server.reply(outstanding.popleft()))
    else:
        raise AssertionError("the session did not end")
    lastSteps, left = planner.connectionLost()
    for step in lastSteps:
        assert isinstance(step, Settle), step
        for recipient, code, _ in step.results:
            assert recipient not in run.settled, recipient
            run.settled[recipient] = code
    run.unsettled = [r for envelope in left for r in envelope.recipients]
    return run


@st.composite
def envelopeLists(draw: st.DrawFn) -> list[Envelope]:
    count = draw(st.integers(min_value=0, max_value=4))
    envelopes = []
    for i in range(count):
        recipients = draw(st.integers(min_value=1, max_value=5))
        message: MessageSource = draw(st.sampled_from([ASCII, ASCII, EIGHT_BIT]))
        envelopes.append(
            Envelope(
                f"s{i}@client.test",
                tuple(f"r{i}.{j}@x.test" for j in range(recipients)),
                message,
            )
        )
    return envelopes


extensionSets = st.fixed_dictionaries(
    {},
    optional={b"PIPELINING": st.none(), b"8BITMIME": st.none(), b"SIZE": st.none()},
)


class PlannerPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(envelopeLists(), extensionSets, st.data())
    def test_everyRecipientOnce(
        self,
        envelopes: list[Envelope],
        extensions: dict[bytes, bytes | None],
        data: st.DataObject,
    ) -> None:
        """
        Whatever the server answers, the session ends, and each recipient is
        settled once, bounced unsent once, or left for another exchange:
        never two of these, never lost.  Exactly those the server took the
        message for are delivered.
        """
        server = Server(data)
        run = session(envelopes, extensions, server)
        everyone = sorted(r for e in envelopes for r in e.recipients)
        self.assertEqual(sorted([*run.settled, *run.refused, *run.unsettled]), everyone)
        delivered = sorted(r for r, code in run.settled.items() if 200 <= code < 300)
        self.assertEqual(delivered, sorted(set(server.delivered)))
        # What the server deferred whole is left for the next exchange.
        self.assertLessEqual(set(run.passedOn), set(run.unsettled))
        if run.end is None or isinstance(run.end, Hangup):
            # A session that ran its course leaves nothing else behind.
            self.assertEqual(sorted(run.unsettled), sorted(run.passedOn))

    @settings(max_examples=200, deadline=None)
    @given(envelopeLists(), extensionSets, st.data())
    def test_commands(
        self,
        envelopes: list[Envelope],
        extensions: dict[bytes, bytes | None],
        data: st.DataObject,
    ) -> None:
        """
        Without PIPELINING one command waits for its reply before the next;
        8-bit data goes only to a server with 8BITMIME, and is said so; SIZE
        is given when offered; QUIT is the last command.
        """
        server = Server(data)
        run = session(envelopes, extensions, server)
        if b"PIPELINING" not in extensions:
            self.assertLessEqual(run.mostOutstanding, 1)
        for envelope in envelopes:
            mail = b"MAIL FROM:<%s>" % envelope.sender.encode()
            sent = [m for m in server.mails if m.startswith(mail)]
            if envelope.message.eightBit and b"8BITMIME" not in extensions:
                self.assertEqual(sent, [])
                left = set(envelope.recipients) - set(run.refused)
                self.assertLessEqual(left, set(run.unsettled))
            for line in sent:
                self.assertEqual(b" SIZE=" in line, b"SIZE" in extensions)
                self.assertEqual(
                    line.endswith(b" BODY=8BITMIME"), envelope.message.eightBit
                )
        if b"QUIT" in run.commands:
            self.assertEqual(run.commands[-1], b"QUIT")
            self.assertEqual(run.commands.count(b"QUIT"), 1)


class PlannerTests(SynchronousTestCase):
    """
    The planner's answers, step by step.
    """

    def test_pipelinedTransaction(self) -> None:
        envelope = Envelope("s@c.test", ("a@x.test", "b@x.test"), ASCII)
        planner = TransactionPlanner([envelope])
        steps = planner.begin({b"PIPELINING": None, b"SIZE": b"1000"})
        self.assertEqual(
            steps,
            [
                Send(b"MAIL FROM:<s@c.test> SIZE=%d" % ASCII.size),
                Send(b"RCPT TO:<a@x.test>"),
                Send(b"RCPT TO:<b@x.test>"),
                Send(b"DATA"),
            ],
        )
        self.assertEqual(planner.replied(250, b"ok"), [])
        self.assertEqual(planner.replied(250, b"ok"), [])
        self.assertEqual(planner.replied(550, b"unknown"), [])
        self.assertEqual(planner.replied(354, b"go"), [Transfer(ASCII)])
        planner.messageWritten()
        self.assertEqual(
            planner.replied(250, b"queued"),
            [
                Settle(
                    250,
                    b"queued",
                    (("a@x.test", 250, b"queued"), ("b@x.test", 550, b"unknown")),
                ),
                Quit(),
            ],
        )
        self.assertEqual(planner.replied(221, b"bye"), [Hangup()])

    def test_recipientLimitGoesAgain(self) -> None:
        """
        Recipients over the server's limit go in another transaction, on the
        same connection, with no RSET in between.
        """
        envelope = Envelope("s@c.test", ("a@x.test", "b@x.test"), ASCII)
        planner = TransactionPlanner([envelope])
        planner.begin({})
        self.assertEqual(planner.replied(250, b"ok"), [Send(b"RCPT TO:<a@x.test>")])
        self.assertEqual(planner.replied(250, b"ok"), [Send(b"RCPT TO:<b@x.test>")])
        self.assertEqual(planner.replied(*TOO_MANY), [Send(b"DATA")])
        planner.replied(354, b"go")
        planner.messageWritten()
        steps = planner.replied(250, b"queued")
        self.assertEqual(
            steps,
            [
                Settle(250, b"queued", (("a@x.test", 250, b"queued"),)),
                Send(b"MAIL FROM:<s@c.test>"),
            ],
        )

    def test_421Closes(self) -> None:
        planner = TransactionPlanner([Envelope("s@c.test", ("a@x.test",), ASCII)])
        planner.begin({})
        self.assertEqual(
            planner.replied(421, b"4.3.2  shutting   down"),
            [Close("4.3.2 shutting down", 421)],
        )
        steps, left = planner.connectionLost()
        self.assertEqual((steps, [e.recipients for e in left]), ([], [("a@x.test",)]))
