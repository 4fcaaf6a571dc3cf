"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Characters a message line may hold: anything but CR, LF and NUL, 8-bit included.
_lineBytes = st.binary(max_size=120).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)


@st.composite
def messageLines(draw: st.DrawFn, maxLines: int = 40) -> list[bytes]:
    """
    Lines of a message body (no line ends), with plenty that start with dots.
    """
    line = st.one_of(
        _lineBytes,
        _lineBytes.map(lambda b: b"." + b),
        st.just(b"."),
        st.just(b".."),
        st.just(b""),
    )
    return draw(st.lists(line, max_size=maxLines))


lineEnds = st.sampled_from([b"\n", b"\r\n"])


# ------------------------------------------- server tests (issue 4): fuzzing

#: Pieces of an SMTP session: real commands in every state, dot lines, AUTH
#: answers, binary junk and overlong lines.
smtpPieces = st.one_of(
    st.sampled_from(
        [
            b"EHLO c",
            b"HELO c",
            b"MAIL FROM:<a@c>",
            b"MAIL FROM:<>  SIZE=99999999",
            b"MAIL FROM:<a@c> BODY=8BITMIME",
            b"RCPT TO:<r@s>",
            b"RCPT TO:<>",
            b"DATA",
            b".",
            b"..",
            b"RSET",
            b"NOOP",
            b"VRFY x",
            b"AUTH PLAIN",
            b"AUTH LOGIN Z3Vlc3Q=",
            b"AUTH CRAM-MD5",
            b"*",
            b"=",
            b"STARTTLS",
            b"\xff\xfe\x00",
        ]
    ),
    st.binary(max_size=40),
    st.binary(min_size=500, max_size=1200),
)

#: A stream of pieces, each ended by CRLF, a bare LF, a bare CR or nothing.
smtpStreams = st.lists(
    st.tuples(smtpPieces, st.sampled_from([b"\r\n", b"\n", b"\r", b""])),
    max_size=30,
).map(lambda pieces: b"".join(p + end for p, end in pieces))


def fuzzSettings(examples: int) -> settings:
    """
    Hypothesis settings for a fuzz run: C{examples} of them, no deadline or
    database, no health check (the streams are large on purpose).
    """
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
