"""Step 1 of the request path: make the raw request path safe to decide on.

Scope is decided on ``raw_path`` split on ``/``: an encoded ``%2F`` inside a SKU is data,
not a separator, and is forwarded byte-for-byte. Anything a server, a framework or Magento
behind us could read as a different path than we do is refused with 400 before any
decision: dot segments in any encoding (``..``, ``%2e%2E``, ``%252e``, ``..%2F`` hidden in
one segment), backslashes, NUL and control bytes, malformed escapes, empty segments
(``//``; nginx in front of Magento merges them) and non-ASCII bytes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

from .errors import BadRequest

__all__ = ["split_path"]

# RFC 3986 pchar without "%", which is checked as an escape: unreserved, sub-delims, ":" "@".
_SAFE_SEGMENT = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*")
_MAX_DECODE_ROUNDS = 4


def split_path(raw_path: bytes) -> tuple[str, ...]:
    """The path's segments, still percent-encoded; raise :class:`BadRequest` if unsafe.

    ``/a/b/`` gives ``("a", "b", "")``: a trailing slash is kept as an empty last segment so
    the forwarded path is what the client sent; routing ignores it.
    """
    return _split_cached(raw_path)


@lru_cache(maxsize=1024)
def _split_cached(raw_path: bytes) -> tuple[str, ...]:
    try:
        text = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("The request path must be ASCII; percent-encode other bytes.") from None
    if not text.startswith("/"):
        raise BadRequest("The request path must start with '/'.")
    segments = tuple(text[1:].split("/"))
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if not segment:
            if i == last:
                continue
            raise BadRequest("The request path contains an empty segment ('//').")
        _check_segment(segment)
    return segments


def _check_segment(segment: str) -> None:
    if not _SAFE_SEGMENT.fullmatch(segment):
        if "\\" in segment:
            raise BadRequest("The request path contains a backslash.")
        if "%" in segment and re.search(r"%(?![0-9A-Fa-f]{2})", segment):
            raise BadRequest("The request path contains a malformed percent escape.")
        raise BadRequest("The request path contains a character that must be percent-encoded.")
    if "%" not in segment:
        if segment in (".", ".."):
            raise BadRequest("The request path contains a dot segment.")
        return
    # Decode repeatedly so double-encoded tricks (%252e%252e) are seen as what a second
    # decoder downstream would see.
    current = segment
    for _ in range(_MAX_DECODE_ROUNDS):
        try:
            decoded = unquote(current, errors="strict") if "%" in current else current
        except UnicodeDecodeError:
            raise BadRequest("The request path's percent escapes are not valid UTF-8.") from None
        _check_decoded(decoded)
        if decoded == current:
            return
        current = decoded
    raise BadRequest("The request path is percent-encoded too many times.")


def _check_decoded(decoded: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise BadRequest("The request path contains a NUL or control character.")
    if "\\" in decoded:
        raise BadRequest("The request path contains a backslash.")
    # A decoded "/" is data to us but a separator to anything that decodes before routing.
    for piece in decoded.split("/"):
        if piece in (".", ".."):
            raise BadRequest("The request path contains a dot segment.")
