"""proxy.paths.split_path: the raw path is split on "/" and refused when anything behind us
could read it as a different path than we do (SPEC §8 "Paths")."""

from __future__ import annotations

import re
import string
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.errors import BadRequest
from proxy.paths import split_path

# -- accepted paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        (b"/api/v1/stores", ("api", "v1", "stores")),
        (b"/a", ("a",)),
        (b"/", ("",)),
        (
            b"/api/v1/stores/acme/commerce/products/ab-1",
            ("api", "v1", "stores", "acme", "commerce", "products", "ab-1"),
        ),
        # RFC 3986 pchar: unreserved, sub-delims, ":" and "@" pass as they are.
        (b"/a-b._~/!$&'()*+,;=:@", ("a-b._~", "!$&'()*+,;=:@")),
        # A dot inside a segment is not a dot segment.
        (b"/products/v1.2/...x/x..", ("products", "v1.2", "...x", "x..")),
        (b"/products/.hidden", ("products", ".hidden")),
        (b"/products/...", ("products", "...")),
        # Escapes of ordinary characters are kept raw, in the case the client used.
        (b"/products/a%20b/%41%e2%82%ac", ("products", "a%20b", "%41%e2%82%ac")),
        (b"/products/%25", ("products", "%25")),
    ],
)
def test_accepted_paths_split_on_slash(raw: bytes, segments: tuple[str, ...]) -> None:
    assert split_path(raw) == segments


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        (b"/products/a%2Fb", ("products", "a%2Fb")),
        (b"/products/a%2fb/media", ("products", "a%2fb", "media")),
        (b"/products/%2F", ("products", "%2F")),
        (b"/products/a%2F%2Fb", ("products", "a%2F%2Fb")),
        (b"/products/%252F", ("products", "%252F")),
    ],
)
def test_encoded_slash_stays_inside_its_segment_raw(raw: bytes, segments: tuple[str, ...]) -> None:
    assert split_path(raw) == segments


def test_trailing_slash_is_kept_as_empty_last_segment() -> None:
    assert split_path(b"/a/b/") == ("a", "b", "")
    assert split_path(b"/a/b") == ("a", "b")
    assert split_path(b"/a/b/")[:-1] == split_path(b"/a/b")


# -- refused paths ------------------------------------------------------------------------

DOT_SEGMENTS = [
    b"/a/..",
    b"/a/../b",
    b"/../a",
    b"/a/.",
    b"/a/./b",
    b"/.",
    b"/..",
    b"/a/%2e%2e",
    b"/a/%2E%2E/b",
    b"/a/%2e",
    b"/a/%2E./b",
    b"/a/.%2e/b",
    b"/a/%2e./b",
    b"/a/.%2E",
    # double- and triple-encoded
    b"/a/%252e%252e/b",
    b"/a/%252E%252E",
    b"/a/%252e",
    b"/a/%25252e%25252e",
    b"/a/%25%32%65%25%32%65",
    # a "/" hidden in one segment: a decoder before routing would see a dot segment
    b"/a/..%2Fadmin",
    b"/a/..%2fadmin",
    b"/a/x%2F..%2Fadmin",
    b"/a/%2F..%2F",
    b"/a/%2F.%2F",
    b"/a/%2e%2e%2fadmin",
    b"/a/..%252Fadmin",
    b"/a/%252F..%252F",
    b"/a/foo%2F..",
    b"/a/%2F..",
]


@pytest.mark.parametrize("raw", DOT_SEGMENTS)
def test_dot_segments_in_any_encoding_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        split_path(raw)
    assert info.value.status == 400
    assert "dot segment" in info.value.detail


@pytest.mark.parametrize(
    "raw",
    [b"/a\\b", b"/a/\\", b"/a/..\\b", b"/a%5Cb", b"/a/%5c", b"/a/..%5C..", b"/a/%255C"],
)
def test_backslashes_raw_or_encoded_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="backslash"):
        split_path(raw)


@pytest.mark.parametrize(
    "raw", [b"/a%00", b"/a/%00b", b"/a/%2500", b"/a/%0a", b"/a/%0D", b"/a/%7f"]
)
def test_encoded_nul_and_control_characters_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="NUL or control"):
        split_path(raw)


@pytest.mark.parametrize(
    "raw", [b"/a\x00", b"/a\x01b", b"/a\rb", b"/a\tb", b"/a\x7f", b"/a/\x1b", b"/\nb/c"]
)
def test_raw_control_characters_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        split_path(raw)


@pytest.mark.parametrize("raw", [b"/a\n", b"/a/b\n/c", b"/a/..\n"])
def test_raw_line_feed_at_segment_end_is_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        split_path(raw)


@pytest.mark.parametrize("raw", [b"/a/%", b"/a/%4", b"/a/%zz", b"/a/b%", b"/a/%g0", b"/a/%%41"])
def test_malformed_escapes_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="malformed percent escape"):
        split_path(raw)


@pytest.mark.parametrize("raw", [b"/a/%ff", b"/a/%c3", b"/a/%c3%28", b"/a/%80", b"/a/%25ff"])
def test_escapes_that_are_not_utf8_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="not valid UTF-8"):
        split_path(raw)


@pytest.mark.parametrize("raw", [b"//a", b"/a//b", b"/a///", b"/a//"])
def test_empty_middle_segments_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="empty segment"):
        split_path(raw)


@pytest.mark.parametrize("raw", ["/é".encode(), b"/a/\xff", b"/a/\x80b", "/ü/x".encode("latin-1")])
def test_non_ascii_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="ASCII"):
        split_path(raw)


@pytest.mark.parametrize("raw", [b"", b"a/b", b"*", b"http://x/a", b"%2Fa"])
def test_path_must_start_with_a_slash(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="start with '/'"):
        split_path(raw)


@pytest.mark.parametrize("raw", [b"/a b", b"/a?b", b"/a#b", b'/a"b', b"/a<b>", b"/a{b}", b"/a|b"])
def test_characters_that_must_be_encoded_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        split_path(raw)


def test_too_many_encoding_layers_are_refused() -> None:
    # Five layers: a decoder downstream could keep going after we stop.
    with pytest.raises(BadRequest, match="too many times"):
        split_path(b"/a/%252525252e")


def test_the_same_bad_path_is_refused_every_time() -> None:
    # split_path caches; an exception must not be cached as a success.
    for _ in range(3):
        with pytest.raises(BadRequest):
            split_path(b"/a/%2e%2e")


# -- properties ---------------------------------------------------------------------------

# Building blocks that make dot segments, encodings and separators likely.
_TOKENS = [
    "/", "/", ".", "..", "%", "%2e", "%2E", "%25", "%2F", "%2f", "%5C", "%5c", "%00", "%0a",
    "\\", "2", "5", "e", "E", "F", "f", "a", "b", "x", "-", "~", "%41", "%ff", "%c3%a9",
    "%252e", "%252F", ":", "@",
]  # fmt: skip
_path_text = st.lists(st.sampled_from(_TOKENS), max_size=14).map(lambda ts: "/" + "".join(ts))


def _decodings(segment: str, rounds: int = 8) -> list[str]:
    """Every string ``segment`` turns into under repeated percent-decoding."""
    out = [segment]
    for _ in range(rounds):
        nxt = unquote(out[-1])
        if nxt == out[-1]:
            break
        out.append(nxt)
    return out


@given(st.binary(max_size=64))
@example(b"/a/%")
@example(b"/\xff")
@example(b"")
def test_arbitrary_bytes_only_ever_raise_bad_request(raw: bytes) -> None:
    try:
        segments = split_path(raw)
    except BadRequest:
        return
    # Accepted: the segments are the path's own bytes, split on "/" and nothing else.
    assert "/" + "/".join(segments) == raw.decode("ascii")


@given(st.binary(max_size=40).map(lambda b: b"/" + b))
def test_arbitrary_bytes_after_a_slash_only_ever_raise_bad_request(raw: bytes) -> None:
    try:
        segments = split_path(raw)
    except BadRequest as exc:
        assert exc.status == 400
        return
    assert len(segments) == raw.count(b"/")


@settings(max_examples=400)
@given(_path_text)
@example("/a/..%2Fadmin")
@example("/a/%252e%252e")
@example("/a/%2525252e")
def test_accepted_segments_never_decode_to_a_dot_segment(text: str) -> None:
    try:
        segments = split_path(text.encode("ascii"))
    except BadRequest:
        return
    for segment in segments:
        for decoded in _decodings(segment):
            pieces = re.split(r"[/\\]", decoded)
            assert "." not in pieces and ".." not in pieces, (segment, decoded)


@settings(max_examples=400)
@given(_path_text)
def test_accepted_segments_joined_reproduce_the_input(text: str) -> None:
    try:
        segments = split_path(text.encode("ascii"))
    except BadRequest:
        return
    assert "/" + "/".join(segments) == text


_plain_segment = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@", min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@given(st.lists(_plain_segment, min_size=1, max_size=8), st.booleans())
def test_plain_segments_are_always_accepted(segments: list[str], trailing: bool) -> None:
    text = "/" + "/".join(segments) + ("/" if trailing else "")
    assert split_path(text.encode("ascii")) == (*segments, *([""] if trailing else []))
