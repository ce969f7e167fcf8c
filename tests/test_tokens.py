"""proxy.tokens: personal access tokens (SPEC §5): prefix + 30 base62 random characters +
a 6-character base62 CRC32, stored as SHA-256."""

from __future__ import annotations

import hashlib
import math
import re
import string
import zlib
from collections import Counter

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.tokens import ParsedToken, generate_token, hash_token, parse_token

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _base62_by_hand(n: int) -> str:
    digits = ""
    while n > 0:
        digits = BASE62[n % 62] + digits
        n //= 62
    return digits.rjust(6, "0")


def _token(prefix: str, random_part: str) -> str:
    return prefix + random_part + _base62_by_hand(zlib.crc32(random_part.encode("ascii")))


FIXED_RANDOM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"
FIXED = _token("soc_pat_live_", FIXED_RANDOM)

# -- generation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prefix"), [("live", "soc_pat_live_"), ("test", "soc_pat_test_")])
def test_generated_token_shape(kind: str, prefix: str) -> None:
    token = generate_token(kind)  # type: ignore[arg-type]
    assert token.startswith(prefix)
    assert len(token) == 49
    body = token[len(prefix) :]
    assert len(body) == 36
    assert set(body) <= set(BASE62)


def test_default_kind_is_live() -> None:
    assert generate_token().startswith("soc_pat_live_")


def test_generated_tokens_parse_back_with_kind_and_sha256() -> None:
    for kind in ("live", "test"):
        token = generate_token(kind)
        parsed = parse_token(token)
        assert parsed == ParsedToken(kind, hashlib.sha256(token.encode()).hexdigest())
        assert parsed is not None and parsed.hash == hash_token(token)


def test_generated_checksum_is_crc32_of_the_random_part() -> None:
    token = generate_token()
    random_part, checksum = token[13:43], token[43:]
    assert checksum == _base62_by_hand(zlib.crc32(random_part.encode()))


def test_random_part_carries_at_least_160_bits() -> None:
    token = generate_token()
    random_len = len(token) - len("soc_pat_live_") - 6
    assert random_len == 30
    assert random_len * math.log2(62) >= 160


def test_random_part_is_not_repeated_and_uses_the_whole_alphabet() -> None:
    tokens = [generate_token() for _ in range(600)]
    assert len(set(tokens)) == len(tokens)
    # 18,000 random characters over 62 symbols: every symbol shows up (each is expected
    # ~290 times; missing one has probability ~1e-120).
    counts = Counter("".join(t[13:43] for t in tokens))
    assert set(counts) == set(BASE62)


# -- the checksum, known answer -------------------------------------------------------------


def test_checksum_known_answer() -> None:
    # FIXED is built in this file from zlib.crc32 and a hand-written base62: the edge must
    # accept it, and refuse it with any other checksum.
    parsed = parse_token(FIXED)
    assert parsed is not None
    assert parsed.kind == "live"
    assert parsed.hash == hashlib.sha256(FIXED.encode("ascii")).hexdigest()
    wrong = _base62_by_hand((zlib.crc32(FIXED_RANDOM.encode()) + 1) % 2**32)
    assert parse_token(FIXED[:43] + wrong) is None


def test_checksum_literal_values() -> None:
    # Pinned (worked by hand: 0xA7A29E56 = 2812452438 = 3·62⁵ + 4·62⁴ + 20·62³ + 47·62² +
    # 22·62 + 6): a change in the checksum layout would invalidate every issued token.
    assert zlib.crc32(FIXED_RANDOM.encode()) == 0xA7A29E56
    assert FIXED == "soc_pat_live_ABCDEFGHIJKLMNOPQRSTUVWXYZabcd34KlM6"
    assert parse_token(FIXED) is not None
    zeros = "soc_pat_test_" + "0" * 30 + "2C8GjS"
    assert zlib.crc32(b"0" * 30) == 0x77E5DB82
    assert _token("soc_pat_test_", "0" * 30) == zeros
    assert parse_token(zeros) == ParsedToken("test", hashlib.sha256(zeros.encode()).hexdigest())


def test_short_checksums_are_left_padded_with_zero() -> None:
    # Find a random part whose CRC32 needs fewer than 6 base62 digits (< 62**5).
    for i in range(10_000):
        candidate = f"{i:030d}"
        if zlib.crc32(candidate.encode()) < 62**5:
            break
    else:  # pragma: no cover - 21% of CRCs qualify
        pytest.fail("no short checksum found")
    token = _token("soc_pat_live_", candidate)
    assert token[43] == "0"
    assert parse_token(token) is not None
    # Without the padding it is not a token.
    assert parse_token(token[:43] + token[44:]) is None


# -- what is refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "soc_pat_live_",
        FIXED[:-1],
        FIXED + "0",
        " " + FIXED,
        FIXED + "\n",
        FIXED.upper(),
        FIXED.replace("soc_pat_live_", "SOC_PAT_LIVE_"),
        FIXED.replace("soc_pat_live_", "soc_pat_prod_"),
        FIXED.replace("soc_pat_live_", "ghp_pat_live_"),
        "soc_pat_live_" + "!" * 36,
        "x" * 49,
        "Bearer " + FIXED[7:],
    ],
)
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert parse_token(text) is None


def _substitutes(original: str) -> list[str]:
    others = [c for c in BASE62 if c != original]
    return [*others, "_", "-", " ", ".", "é", "\udc80", "\x00", "\u0660"]


@pytest.mark.parametrize("token", [FIXED, generate_token("live"), generate_token("test")])
def test_every_single_character_substitution_fails(token: str) -> None:
    assert parse_token(token) is not None
    tried = 0
    for i, ch in enumerate(token):
        for sub in _substitutes(ch):
            if sub == ch:
                continue
            changed = token[:i] + sub + token[i + 1 :]
            assert parse_token(changed) is None, (i, sub)
            tried += 1
    assert tried > 49 * 61


def test_swapping_live_and_test_keeps_the_checksum_but_is_a_different_token() -> None:
    # The CRC covers only the random part, so the whole-prefix swap parses; it is then a
    # different token, looked up by a different hash, so it reaches nothing.
    live = generate_token("live")
    test = "soc_pat_test_" + live[13:]
    parsed_live, parsed_test = parse_token(live), parse_token(test)
    assert parsed_live is not None and parsed_test is not None
    assert (parsed_live.kind, parsed_test.kind) == ("live", "test")
    assert parsed_live.hash != parsed_test.hash
    assert parsed_test.hash == hashlib.sha256(test.encode()).hexdigest()


def test_huge_inputs_are_refused() -> None:
    assert parse_token("x" * 10_000_000) is None
    assert parse_token(FIXED * 100_000) is None


# -- properties ---------------------------------------------------------------------------

_any_char = st.characters(codec=None, exclude_categories=())


@given(st.text(alphabet=_any_char, max_size=120))
@example("\ud800" * 49)
@example("soc_pat_live_" + "\udc80" * 36)
@example(FIXED[:-1] + "\udfff")
def test_parse_token_never_raises(text: str) -> None:
    result = parse_token(text)
    if result is not None:  # only ever a token of the exact published shape
        assert re.fullmatch(r"soc_pat_(live|test)_[0-9A-Za-z]{36}", text)
        assert result.kind == text[8:12]
        assert result.hash == hashlib.sha256(text.encode("ascii")).hexdigest()


@given(
    st.sampled_from(["soc_pat_live_", "soc_pat_test_"]),
    st.text(alphabet=_any_char, min_size=36, max_size=36),
)
def test_parse_token_never_raises_on_prefixed_text(prefix: str, body: str) -> None:
    result = parse_token(prefix + body)
    if result is not None:
        # Anything accepted is base62 with a matching checksum.
        assert set(body) <= set(BASE62)
        assert body[30:] == _base62_by_hand(zlib.crc32(body[:30].encode()))


@given(st.text(alphabet=BASE62, min_size=30, max_size=30), st.sampled_from(["live", "test"]))
def test_any_random_part_with_its_checksum_parses(random_part: str, kind: str) -> None:
    token = _token(f"soc_pat_{kind}_", random_part)
    parsed = parse_token(token)
    assert parsed == ParsedToken(kind, hashlib.sha256(token.encode()).hexdigest())  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_hash_token_of_ascii_is_sha256_hex_of_its_bytes(text: str) -> None:
    # proxy.auth hashes a bearer credential (always ASCII) this way, without the call.
    assert hash_token(text) == hashlib.sha256(text.encode()).hexdigest()


def test_hash_token_accepts_lone_surrogates() -> None:
    # Never raises, even on text that cannot be UTF-8 encoded.
    assert len(hash_token("\udc80")) == 64


@given(
    st.sampled_from(["live", "test"]),
    st.data(),
)
def test_any_single_character_change_fails(kind: str, data: st.DataObject) -> None:
    # SPEC §5 / GitHub's design: a mistyped token is refused offline. Every position,
    # every replacement character (any code point, not only base62).
    token = generate_token(kind)  # type: ignore[arg-type]
    i = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    sub = data.draw(
        st.characters(codec=None, exclude_categories=()).filter(lambda c: c != token[i])
    )
    assert parse_token(token[:i] + sub + token[i + 1 :]) is None


@given(st.sampled_from(["live", "test"]), st.data())
def test_any_insertion_or_deletion_fails(kind: str, data: st.DataObject) -> None:
    token = generate_token(kind)  # type: ignore[arg-type]
    i = data.draw(st.integers(min_value=0, max_value=len(token)))
    ch = data.draw(st.characters(codec=None, exclude_categories=()))
    assert parse_token(token[:i] + ch + token[i:]) is None
    j = min(i, len(token) - 1)
    assert parse_token(token[:j] + token[j + 1 :]) is None
