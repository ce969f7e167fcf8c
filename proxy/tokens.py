"""Step 3a of the request path: the personal access token format, checked before any lookup.

``soc_pat_live_`` or ``soc_pat_test_`` + 30 base62 characters of randomness (178 bits)
+ 6 base62 characters of CRC32 over the random part, left-padded with ``0`` (the layout of
GitHub's token format). A mistyped or made-up token fails the checksum and is refused
without touching the key store, and secret scanners can recognise real ones.

Tokens are stored only as SHA-256 hashes: with ≥ 112 bits of entropy a plain hash is what
NIST SP 800-63B asks for, and it costs a microsecond per request where a KDF costs
milliseconds.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from typing import NamedTuple

from .types import TokenKind

__all__ = ["ParsedToken", "generate_token", "hash_token", "parse_token", "token_kind"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIXES: dict[str, TokenKind] = {"soc_pat_live_": "live", "soc_pat_test_": "test"}
RANDOM_LEN = 30
CHECKSUM_LEN = 6
TOKEN_LEN = len("soc_pat_live_") + RANDOM_LEN + CHECKSUM_LEN


class ParsedToken(NamedTuple):  # one is built per request: a tuple builds fastest
    kind: TokenKind
    hash: str  # SHA-256 hex of the whole token: the key-store lookup key


# Every pair of base62 digits and its value: a 6-digit checksum is read in three lookups.
_PAIRS = {a + b: i * 62 + j for i, a in enumerate(ALPHABET) for j, b in enumerate(ALPHABET)}


def _base62(n: int, width: int) -> str:
    out = []
    while n:
        n, rem = divmod(n, 62)
        out.append(ALPHABET[rem])
    return "".join(reversed(out)).rjust(width, "0")


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LEN)


def generate_token(kind: TokenKind = "live") -> str:
    prefix = "soc_pat_live_" if kind == "live" else "soc_pat_test_"
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LEN))
    return prefix + random_part + _checksum(random_part)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_token(text: str) -> ParsedToken | None:
    """The token's kind and hash, or ``None`` for anything that is not a well-formed,
    checksum-valid token. Never raises."""
    kind = token_kind(text)
    return None if kind is None else ParsedToken(kind, hash_token(text))


def token_kind(text: str) -> TokenKind | None:
    """The kind of a well-formed, checksum-valid token, else ``None`` (the checks of
    :func:`parse_token`, without the hash: the request path has it already). Never raises.

    Runs on every request whose token is not cached: the checksum is read as a number
    (three table lookups) and compared with the CRC, rather than the CRC written out in
    base62 (six divisions); a fixed-width base62 number has one spelling, so the two agree.
    (The comparison needs no constant time: both sides come from the caller's own token.)"""
    if len(text) != TOKEN_LEN:
        return None
    kind = PREFIXES.get(text[:13])
    if kind is None:
        return None
    body = text[13:]
    if not (body.isascii() and body.isalnum()):  # ASCII letters and digits: base62
        return None
    c = body[RANDOM_LEN:]
    checksum = (_PAIRS[c[:2]] * 3844 + _PAIRS[c[2:4]]) * 3844 + _PAIRS[c[4:]]
    if zlib.crc32(body[:RANDOM_LEN].encode("ascii")) != checksum:
        return None
    return kind
