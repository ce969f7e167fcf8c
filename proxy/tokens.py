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
import re
import secrets
import zlib
from dataclasses import dataclass

from .types import TokenKind

__all__ = ["ParsedToken", "generate_token", "hash_token", "parse_token"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62 = re.compile(r"[0-9A-Za-z]+")
PREFIXES: dict[str, TokenKind] = {"soc_pat_live_": "live", "soc_pat_test_": "test"}
RANDOM_LEN = 30
CHECKSUM_LEN = 6
TOKEN_LEN = len("soc_pat_live_") + RANDOM_LEN + CHECKSUM_LEN


@dataclass(frozen=True, slots=True)
class ParsedToken:
    kind: TokenKind
    hash: str  # SHA-256 hex of the whole token: the key-store lookup key


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
    if len(text) != TOKEN_LEN:
        return None
    kind = PREFIXES.get(text[:13])
    if kind is None:
        return None
    body = text[13:]
    if _BASE62.fullmatch(body) is None:
        return None
    random_part, checksum = body[:RANDOM_LEN], body[RANDOM_LEN:]
    if not secrets.compare_digest(_checksum(random_part), checksum):
        return None
    return ParsedToken(kind, hash_token(text))
