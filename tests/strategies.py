"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

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
