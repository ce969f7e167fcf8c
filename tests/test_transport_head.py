"""proxy.transport._head: the request head as written upstream. It is built with C-level
joins (it runs on every request); the property holds it to the plain loop it replaced,
byte for byte, and to the same refusal of a line break anywhere in a field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.transport import _NO_BODY_METHODS, ConnectionBroken, _head


def _reference(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | AsyncIterator[bytes] | None,
    authority: str,
) -> bytes:
    """The loop _head replaced (a field at a time)."""
    has_host = has_length = has_te = False
    for name, _ in headers:
        if name.lower() == "host":
            has_host = True
        elif name.lower() == "content-length":
            has_length = True
        elif name.lower() == "transfer-encoding":
            has_te = True
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    if not has_host:
        lines.append(f"host: {authority}\r\n")
    lines.extend([f"{n}: {v}\r\n" for n, v in headers])
    if isinstance(body, bytes):
        if not has_length and not has_te and (body or method not in _NO_BODY_METHODS):
            lines.append(f"content-length: {len(body)}\r\n")
    elif body is None:
        if not has_length and not has_te and method not in _NO_BODY_METHODS:
            lines.append("content-length: 0\r\n")
    elif not has_length:
        lines.append("transfer-encoding: chunked\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ConnectionBroken("a request header holds a line break")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


async def _stream() -> AsyncIterator[bytes]:
    yield b"x"


_NAMES = st.sampled_from(
    ["host", "Host", "HOST", "content-length", "Content-Length", "transfer-encoding",
     "Transfer-Encoding", "x-host", "hostname", "accept", "content-length2", "te", ""]
) | st.text(alphabet="abcHOST-\r\n ", max_size=12)  # fmt: skip
# (Names never hold ":": the edge's own are constants and a client's were parsed by
# httptools, which refuses one that is not an HTTP token.)
_VALUES = st.text(alphabet="ab 0:\r\n\t\u00e9\u20ac", max_size=12)


@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
    headers=st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
    body=st.sampled_from(["none", "empty", "bytes", "stream"]),
)
def test_the_head_is_the_one_the_field_by_field_loop_writes(
    method: str, headers: list[tuple[str, str]], body: str
) -> None:
    data: bytes | AsyncIterator[bytes] | None = {
        "none": None, "empty": b"", "bytes": b"abc", "stream": _stream()
    }[body]  # fmt: skip
    try:
        expected: bytes | type[Exception] = _reference(method, "/p?q=1", headers, data, "u:81")
    except ConnectionBroken:
        expected = ConnectionBroken
    if expected is ConnectionBroken:
        with pytest.raises(ConnectionBroken):
            _head(method, "/p?q=1", headers, data, "u:81")
    else:
        assert _head(method, "/p?q=1", headers, data, "u:81") == expected
    if isinstance(data, AsyncIterator):
        data.aclose().close()  # type: ignore[attr-defined]


def test_a_line_break_in_a_value_is_refused() -> None:
    with pytest.raises(ConnectionBroken):
        _head("GET", "/", [("x-a", "1\r\nhost: evil")], None, "u")
