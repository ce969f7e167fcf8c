"""Key stores (SPEC §5): one contract suite, parametrised over both implementations
(SQLite, and Redis against a real redis-server), plus CachedKeyStore and the grant helpers."""

from __future__ import annotations

import secrets
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.backends.keystore.base import AccountRecord, KeyStore, TokenRecord
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.errors import DuplicateError, KeyStoreUnavailable
from proxy.grants import grants_allow, parse_permission
from proxy.tokens import generate_token, hash_token


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def keystore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    if request.param == "sqlite":
        store: KeyStore = SQLiteKeyStore(tmp_path / "sub" / "edge.db")
    else:
        from proxy.backends.keystore.redis import RedisKeyStore

        url = request.getfixturevalue("redis_url")
        # A fresh prefix per test: the session's redis-server is shared, never flushed.
        store = RedisKeyStore(url, prefix=f"test:{secrets.token_hex(6)}:")
    yield store
    await store.close()


def _record(token_id: str = "tok_1", **kw: object) -> TokenRecord:
    values: dict[str, object] = {
        "id": token_id,
        "name": "ci deploy",
        "kind": "live",
        "stores": ("acme", "beta"),
        "permissions": {"orders": "write", "products": "read"},
        "created_at": 1_700_000_000.0,
    }
    values.update(kw)
    return TokenRecord(**values)  # type: ignore[arg-type]


# -- the contract -------------------------------------------------------------------------


async def test_create_then_lookup_by_hash(keystore: KeyStore) -> None:
    token = generate_token()
    record = _record()
    await keystore.create(record, hash_token(token))
    assert await keystore.lookup(hash_token(token)) == record


async def test_every_field_round_trips(keystore: KeyStore) -> None:
    record = _record(
        "tok_full",
        name="näme with ünïcode",
        kind="test",
        stores=("sandbox-1",),
        permissions={"orders": "read", "inventory": "write"},
        account_id="acct_9",
        tier="gold",
        expires_at=1_800_000_000.5,
        allow_ips=("10.0.0.0/8", "2001:db8::/32"),
        created_at=1_700_000_001.25,
        last_used_at=1_700_000_002.0,
        revoked=False,
    )
    await keystore.create(record, "a" * 64)
    got = await keystore.get("tok_full")
    assert got == record
    assert got is not None
    assert got.stores == ("sandbox-1",) and isinstance(got.stores, tuple)
    assert got.allow_ips == ("10.0.0.0/8", "2001:db8::/32")
    assert dict(got.permissions) == {"orders": "read", "inventory": "write"}


async def test_optional_fields_default(keystore: KeyStore) -> None:
    await keystore.create(_record(), "b" * 64)
    got = await keystore.get("tok_1")
    assert got is not None
    assert (got.account_id, got.tier, got.expires_at, got.last_used_at) == (None, None, None, None)
    assert got.allow_ips == ()
    assert got.revoked is False


async def test_unknown_hash_and_id(keystore: KeyStore) -> None:
    assert await keystore.lookup("0" * 64) is None
    assert await keystore.get("tok_nope") is None
    assert await keystore.revoke("tok_nope") is False
    await keystore.create(_record(), "c" * 64)
    assert await keystore.lookup("d" * 64) is None
    assert await keystore.get("tok_2") is None
    # Lookups are by hash, never by id (and the other way round).
    assert await keystore.lookup("tok_1") is None
    assert await keystore.get("c" * 64) is None


async def test_list_in_creation_order(keystore: KeyStore) -> None:
    assert await keystore.list() == []
    second = _record("tok_b", created_at=2.0)
    first = _record("tok_a", created_at=1.0)
    third = _record("tok_c", created_at=3.0)
    await keystore.create(second, "2" * 64)
    await keystore.create(third, "3" * 64)
    await keystore.create(first, "1" * 64)
    assert await keystore.list() == [first, second, third]


async def test_revoke(keystore: KeyStore) -> None:
    await keystore.create(_record("tok_a"), "a" * 64)
    await keystore.create(_record("tok_b"), "b" * 64)
    assert await keystore.revoke("tok_a") is True
    revoked = await keystore.lookup("a" * 64)
    assert revoked is not None and revoked.revoked is True
    assert revoked == _record("tok_a").revoked_copy()
    got = await keystore.get("tok_a")
    assert got is not None and got.revoked is True
    # The other token is untouched.
    other = await keystore.lookup("b" * 64)
    assert other is not None and other.revoked is False
    # Revoking again is still "found".
    assert await keystore.revoke("tok_a") is True


# -- the JWT deny list (jti) ------------------------------------------------------------


async def test_a_revoked_jti_is_denied_until_its_time(keystore: KeyStore) -> None:
    now = time.time()
    assert await keystore.jti_revoked("jti-1") is False
    await keystore.revoke_jti("jti-1", now + 3600)
    assert await keystore.jti_revoked("jti-1") is True
    # Per jti: another is untouched; a jti is an exact string, not a prefix.
    assert await keystore.jti_revoked("jti-2") is False
    assert await keystore.jti_revoked("jti-") is False


async def test_a_jti_past_its_until_is_not_denied(keystore: KeyStore) -> None:
    # The token has expired anyway: the entry must not deny (nor linger) after that.
    await keystore.revoke_jti("old", time.time() - 1)
    assert await keystore.jti_revoked("old") is False


async def test_revoking_a_jti_again_keeps_the_later_until(keystore: KeyStore) -> None:
    now = time.time()
    await keystore.revoke_jti("jti-1", now + 3600)
    await keystore.revoke_jti("jti-1", now - 10)  # an earlier time must not shorten it
    assert await keystore.jti_revoked("jti-1") is True
    await keystore.revoke_jti("jti-2", now - 10)
    await keystore.revoke_jti("jti-2", now + 3600)  # a later time extends it
    assert await keystore.jti_revoked("jti-2") is True


async def test_jti_values_are_data_not_syntax(keystore: KeyStore) -> None:
    hostile = ["a'; DROP TABLE revoked_jtis; --", "*", "j:x", "ünï \x00code", "x" * 2000]
    until = time.time() + 60
    for jti in hostile:
        await keystore.revoke_jti(jti, until)
    for jti in hostile:
        assert await keystore.jti_revoked(jti) is True
    assert await keystore.jti_revoked("x") is False


async def test_revoked_jtis_and_tokens_do_not_mix(keystore: KeyStore) -> None:
    await keystore.create(_record("tok_a"), "a" * 64)
    await keystore.revoke_jti("tok_a", time.time() + 60)
    got = await keystore.get("tok_a")
    assert got is not None and got.revoked is False
    assert await keystore.jti_revoked("a" * 64) is False


async def test_created_revoked_record_stays_revoked(keystore: KeyStore) -> None:
    await keystore.create(_record(revoked=True), "e" * 64)
    got = await keystore.lookup("e" * 64)
    assert got is not None and got.revoked is True


async def test_new_fields_round_trip(keystore: KeyStore) -> None:
    record = _record(revoked=True, revoked_reason="leaked: x", replaced_by="tok_9")
    await keystore.create(record, "f" * 64)
    assert await keystore.lookup("f" * 64) == record
    assert await keystore.get("tok_1") == record


async def test_duplicate_id_or_hash_is_refused(keystore: KeyStore) -> None:
    await keystore.create(_record("tok_a"), "a" * 64)
    with pytest.raises(DuplicateError):
        await keystore.create(_record("tok_a"), "b" * 64)
    with pytest.raises(DuplicateError):
        await keystore.create(_record("tok_b"), "a" * 64)
    assert [r.id for r in await keystore.list()] == ["tok_a"]
    assert await keystore.lookup("b" * 64) is None


async def test_revoke_records_the_first_reason(keystore: KeyStore) -> None:
    await keystore.create(_record("tok_a"), "a" * 64)
    await keystore.create(_record("tok_b"), "b" * 64)
    assert await keystore.revoke("tok_a", reason="leaked: commit") is True
    assert await keystore.revoke("tok_a", reason="by hand") is True
    got = await keystore.get("tok_a")
    assert got is not None and got.revoked and got.revoked_reason == "leaked: commit"
    assert await keystore.revoke("tok_b") is True
    got = await keystore.get("tok_b")
    assert got is not None and got.revoked and got.revoked_reason is None
    assert await keystore.revoke("tok_b", reason="later") is True
    got = await keystore.get("tok_b")
    assert got is not None and got.revoked_reason == "later"


async def test_retire_expires_no_later_and_names_the_successor(keystore: KeyStore) -> None:
    await keystore.create(_record("tok_a"), "a" * 64)
    await keystore.create(_record("tok_b", expires_at=1_000.0), "b" * 64)
    assert await keystore.retire("tok_a", expires_at=5_000.25, replaced_by="tok_n") is True
    got = await keystore.lookup("a" * 64)
    assert got is not None and (got.expires_at, got.replaced_by) == (5_000.25, "tok_n")
    # A token that already expires sooner keeps its earlier expiry.
    assert await keystore.retire("tok_b", expires_at=5_000.0, replaced_by="tok_m") is True
    got = await keystore.get("tok_b")
    assert got is not None and (got.expires_at, got.replaced_by) == (1_000.0, "tok_m")
    assert got.revoked is False
    assert await keystore.retire("tok_nope", expires_at=1.0, replaced_by="x") is False
    assert await keystore.get("tok_nope") is None


async def test_record_use_keeps_the_newest_time(keystore: KeyStore) -> None:
    await keystore.create(_record("tok_a"), "a" * 64)
    await keystore.create(_record("tok_b", last_used_at=50.0), "b" * 64)
    await keystore.record_use({"tok_a": 100.5, "tok_b": 40.0, "tok_nope": 1.0})
    a, b = await keystore.get("tok_a"), await keystore.get("tok_b")
    assert a is not None and a.last_used_at == 100.5
    assert b is not None and b.last_used_at == 50.0  # older than stored: ignored
    await keystore.record_use({"tok_a": 99.0})
    a = await keystore.lookup("a" * 64)
    assert a is not None and a.last_used_at == 100.5
    await keystore.record_use({})
    assert await keystore.get("tok_nope") is None  # an unknown id is not created


def _account(account_id: str = "acct_1", **kw: object) -> AccountRecord:
    values: dict[str, object] = {
        "id": account_id,
        "name": "Partner Ltd",
        "grants": {"acme": {"orders": "write", "products": "read"}, "lab": {"orders": "read"}},
        "created_at": 1_700_000_000.5,
    }
    values.update(kw)
    return AccountRecord(**values)  # type: ignore[arg-type]


async def test_accounts_round_trip_and_list_in_creation_order(keystore: KeyStore) -> None:
    assert await keystore.list_accounts() == []
    assert await keystore.get_account("acct_1") is None
    b = _account("acct_b", created_at=2.0, name="ünïcode")
    a = _account("acct_a", created_at=1.0, grants={})
    await keystore.create_account(b)
    await keystore.create_account(a)
    assert await keystore.get_account("acct_b") == b
    assert await keystore.get_account("acct_a") == a
    assert await keystore.list_accounts() == [a, b]
    with pytest.raises(DuplicateError):
        await keystore.create_account(_account("acct_a"))
    # Accounts and tokens are separate namespaces.
    assert await keystore.get("acct_a") is None
    assert await keystore.list() == []


async def test_account_grants_are_replaced_whole(keystore: KeyStore) -> None:
    await keystore.create_account(_account())
    shrunk: Mapping[str, Mapping[str, str]] = {"acme": {"orders": "read"}}
    assert await keystore.set_account_grants("acct_1", shrunk) is True  # type: ignore[arg-type]
    got = await keystore.get_account("acct_1")
    assert got is not None and got.grants == shrunk and got.name == "Partner Ltd"
    assert await keystore.set_account_grants("acct_nope", {}) is False
    assert await keystore.get_account("acct_nope") is None


async def test_cache_over_a_real_store_sees_account_changes(keystore: KeyStore) -> None:
    clock = FakeClock()
    cached = CachedKeyStore(keystore, ttl=1.0, clock=clock)
    await keystore.create_account(_account())
    first = await cached.get_account("acct_1")
    assert first is not None and "lab" in first.grants
    await keystore.set_account_grants("acct_1", {"acme": {"orders": "read"}})
    second = await cached.get_account("acct_1")
    assert second == first  # cached
    clock.now += 1.0
    third = await cached.get_account("acct_1")
    assert third is not None and dict(third.grants) == {"acme": {"orders": "read"}}


async def test_flush_writes_last_used_through_the_cache(keystore: KeyStore) -> None:
    cached = CachedKeyStore(keystore)
    await keystore.create(_record(), "9" * 64)
    cached.note_use("tok_1", 1_700_000_100.0)
    cached.note_use("tok_1", 1_700_000_050.0)  # older: the newer one stays
    got = await keystore.get("tok_1")
    assert got is not None and got.last_used_at is None  # not written per request
    await cached.flush()
    got = await keystore.get("tok_1")
    assert got is not None and got.last_used_at == 1_700_000_100.0
    await cached.flush()  # nothing pending: no write


# -- SQLite specifics -----------------------------------------------------------------------


def _all_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


async def test_sqlite_file_never_holds_the_token(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = SQLiteKeyStore(db)
    tokens = [generate_token("live"), generate_token("test")]
    for i, token in enumerate(tokens):
        await store.create(_record(f"tok_{i}"), hash_token(token))
    await store.revoke("tok_0")
    contents = _all_bytes(db)  # the main file, -wal and -shm
    await store.close()
    contents += _all_bytes(db)
    for token in tokens:
        # The hash is there (so we are looking where the data lives) ...
        assert hash_token(token).encode() in contents
        # ... the token, or its random part, is not.
        assert token.encode() not in contents
        assert token[13:43].encode() not in contents


async def test_sqlite_persists_across_instances(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    first = SQLiteKeyStore(db)
    await first.create(_record(), "f" * 64)
    second = SQLiteKeyStore(db)
    try:
        assert await second.lookup("f" * 64) == _record()
        await second.revoke("tok_1")
        got = await first.get("tok_1")
        assert got is not None and got.revoked is True
    finally:
        await first.close()
        await second.close()


# -- CachedKeyStore -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """A KeyStore double that counts lookups and records last-used writes."""

    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.accounts: dict[str, AccountRecord] = {}
        self.lookups: list[str] = []
        self.account_lookups: list[str] = []
        self.uses: list[dict[str, float]] = []
        self.fail_writes = False
        self.closed = False
        self.revoked_jtis: set[str] = set()
        self.jti_lookups: list[str] = []

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        self.lookups.append(token_hash)
        return self.records.get(token_hash)

    async def get_account(self, account_id: str) -> AccountRecord | None:
        self.account_lookups.append(account_id)
        return self.accounts.get(account_id)

    async def record_use(self, uses: Mapping[str, float]) -> None:
        if self.fail_writes:
            raise KeyStoreUnavailable("down")
        self.uses.append(dict(uses))

    async def jti_revoked(self, jti: str) -> bool:
        self.jti_lookups.append(jti)
        return jti in self.revoked_jtis

    async def close(self) -> None:
        self.closed = True


async def test_cache_serves_hits_without_asking_the_store() -> None:
    store, clock = CountingStore(), FakeClock()
    store.records["h1"] = _record()
    cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
    for _ in range(5):
        assert await cached.lookup("h1") == _record()
    assert store.lookups == ["h1"]


async def test_cache_serves_misses_without_asking_the_store() -> None:
    store, clock = CountingStore(), FakeClock()
    cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
    for _ in range(5):
        assert await cached.lookup("unknown") is None
    assert store.lookups == ["unknown"]
    # A miss is per hash.
    assert await cached.lookup("other") is None
    assert store.lookups == ["unknown", "other"]


async def test_cache_refreshes_after_the_ttl() -> None:
    store, clock = CountingStore(), FakeClock()
    store.records["h1"] = _record()
    cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
    assert await cached.lookup("h1") == _record()
    store.records["h1"] = _record().revoked_copy()
    clock.now += 0.5
    got = await cached.lookup("h1")
    assert got is not None and got.revoked is False  # still cached
    assert store.lookups == ["h1"]
    clock.now += 0.6  # 1.1 s after the first lookup
    got = await cached.lookup("h1")
    assert got is not None and got.revoked is True
    assert store.lookups == ["h1", "h1"]


async def test_cached_miss_expires_so_a_new_token_is_found() -> None:
    store, clock = CountingStore(), FakeClock()
    cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
    assert await cached.lookup("h2") is None
    store.records["h2"] = _record("tok_2")
    assert await cached.lookup("h2") is None
    clock.now += 1.01
    assert await cached.lookup("h2") == _record("tok_2")


async def test_default_ttl_is_at_most_one_second() -> None:
    # SPEC §5: revocation takes effect on every replica within 1 s.
    store, clock = CountingStore(), FakeClock()
    store.records["h"] = _record()
    cached = CachedKeyStore(store, clock=clock)  # type: ignore[arg-type]
    await cached.lookup("h")
    store.records["h"] = _record().revoked_copy()
    clock.now += 1.0
    got = await cached.lookup("h")
    assert got is not None and got.revoked is True


async def test_cache_over_a_real_store_sees_revocation(keystore: KeyStore) -> None:
    clock = FakeClock()
    cached = CachedKeyStore(keystore, ttl=1.0, clock=clock)
    await keystore.create(_record(), "9" * 64)
    first = await cached.lookup("9" * 64)
    assert first is not None and not first.revoked
    await keystore.revoke("tok_1")
    second = await cached.lookup("9" * 64)
    assert second is not None and not second.revoked
    clock.now += 2
    third = await cached.lookup("9" * 64)
    assert third is not None and third.revoked


async def test_cached_jti_answers_are_trusted_for_at_most_the_ttl() -> None:
    # The same ≤ 1 s bound as PAT revocation (SPEC §4.2, §5), misses and hits alike.
    store, clock = CountingStore(), FakeClock()
    cached = CachedKeyStore(store, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        assert await cached.jti_revoked("j1") is False
    assert store.jti_lookups == ["j1"]
    store.revoked_jtis.add("j1")
    clock.now += 0.5
    assert await cached.jti_revoked("j1") is False  # still the cached answer
    clock.now += 0.5
    assert await cached.jti_revoked("j1") is True
    assert store.jti_lookups == ["j1", "j1"]


async def test_cache_over_a_real_store_sees_a_revoked_jti(keystore: KeyStore) -> None:
    clock = FakeClock()
    cached = CachedKeyStore(keystore, ttl=1.0, clock=clock)
    assert await cached.jti_revoked("j") is False
    await keystore.revoke_jti("j", time.time() + 60)
    assert await cached.jti_revoked("j") is False
    clock.now += 1.0
    assert await cached.jti_revoked("j") is True


async def test_fresh_is_a_store_answer_of_the_last_ttl_seconds_and_never_a_miss() -> None:
    store, clock = CountingStore(), FakeClock()
    store.records["h1"] = _record()
    store.accounts["acct_1"] = _account()
    cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
    assert cached.fresh("h1") is None and cached.fresh_account("acct_1") is None
    record = await cached.lookup("h1")
    account = await cached.get_account("acct_1")
    assert cached.fresh("h1") is record and cached.fresh_account("acct_1") is account
    assert await cached.lookup("unknown") is None
    assert cached.fresh("unknown") is None  # a miss is only in the TTLCache
    assert (cached.hits, cached.misses) == (2, 3)  # counted like TTLCache hits
    store.records["h1"] = _record().revoked_copy()
    clock.now += 0.999
    assert cached.fresh("h1") is record  # still trusted
    clock.now += 0.001  # the TTL: the same instant the TTLCache stops trusting it
    assert cached.fresh("h1") is None and cached.fresh_account("acct_1") is None
    got = await cached.lookup("h1")
    assert got is not None and got.revoked and cached.fresh("h1") is got  # a revoked record too
    cached.forget("h1")
    assert cached.fresh("h1") is None


async def test_fresh_tables_stay_at_the_cache_size() -> None:
    store, clock = CountingStore(), FakeClock()
    cached = CachedKeyStore(store, maxsize=3, clock=clock)  # type: ignore[arg-type]
    for i in range(10):
        store.records[f"h{i}"] = _record(f"tok_{i}")
        store.accounts[f"acct_{i}"] = _account()
        await cached.lookup(f"h{i}")
        await cached.get_account(f"acct_{i}")
        assert len(cached._fresh) <= 3 and len(cached._fresh_accounts) <= 3
    assert list(cached._fresh) == ["h7", "h8", "h9"]  # the newest kept
    clock.now += 5
    await cached.lookup("h8")  # fetched again: the newest now
    store.records["h10"] = _record("tok_10")
    await cached.lookup("h10")
    assert list(cached._fresh) == ["h9", "h8", "h10"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["h0", "h1", "h2"]),
            st.sampled_from([0.0, 0.4, 0.6, 1.0]),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_fresh_is_only_ever_what_lookup_would_answer(steps: list[tuple[str, float, bool]]) -> None:
    """Whenever :meth:`fresh` knows a record, it is the very record :meth:`lookup` answers
    (the TTLCache's): the front never outlives the cache nor disagrees with it."""
    import asyncio

    async def run() -> None:
        store, clock = CountingStore(), FakeClock()
        cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
        for i, (token_hash, dt, change) in enumerate(steps):
            clock.now += dt
            if change:  # the store changes under the cache: a new object each time
                store.records[token_hash] = _record(f"tok_{i}")
            hit = cached.fresh(token_hash)
            if hit is not None:
                assert hit is await cached.lookup(token_hash)
            else:
                await cached.lookup(token_hash)

    asyncio.run(run())


async def test_cache_close_closes_the_store() -> None:
    store = CountingStore()
    await CachedKeyStore(store).close()  # type: ignore[arg-type]
    assert store.closed


# -- grants ---------------------------------------------------------------------------------


def test_grants_allow_write_implies_read() -> None:
    grants = {"orders": "write", "products": "read"}
    assert grants_allow(grants, "orders", "write")  # type: ignore[arg-type]
    assert grants_allow(grants, "orders", "read")  # type: ignore[arg-type]
    assert grants_allow(grants, "products", "read")  # type: ignore[arg-type]
    assert not grants_allow(grants, "products", "write")  # type: ignore[arg-type]
    assert not grants_allow(grants, "customers", "read")  # type: ignore[arg-type]
    assert not grants_allow({}, "orders", "read")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("orders:write", ("orders", "write")),
        ("products:read", ("products", "read")),
        ("a-b_c:read", ("a-b_c", "read")),
    ],
)
def test_parse_permission(text: str, parsed: tuple[str, str]) -> None:
    assert parse_permission(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "orders",
        "orders:",
        ":read",
        "orders:admin",
        "orders:READ",
        "orders:read:x",
        "",
        ":",
        "orders write",
    ],
)
def test_parse_permission_errors(text: str) -> None:
    with pytest.raises(ValueError, match="must be RESOURCE:read or RESOURCE:write") as info:
        parse_permission(text)
    assert f'"{text}"' in str(info.value)


def test_public_view_has_no_secret_and_sorted_permissions() -> None:
    record = _record(permissions={"products": "read", "orders": "write"}, account_id="acct")
    view = record.public()
    assert view["permissions"] == ["orders:write", "products:read"]
    assert view["account"] == "acct"
    assert view["stores"] == ["acme", "beta"]
    assert set(view) == {
        "id", "name", "kind", "stores", "permissions", "account", "tier", "expires_at",
        "allow_ips", "created_at", "last_used_at", "revoked", "revoked_reason", "replaced_by",
    }  # fmt: skip


# -- CachedKeyStore: accounts and last-used ---------------------------------------------------


async def test_account_lookups_are_cached_for_the_ttl() -> None:
    store, clock = CountingStore(), FakeClock()
    store.accounts["acct_1"] = _account()
    cached = CachedKeyStore(store, ttl=1.0, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        assert await cached.get_account("acct_1") == _account()
        assert await cached.get_account("acct_nope") is None
    assert store.account_lookups == ["acct_1", "acct_nope"]
    clock.now += 1.0
    await cached.get_account("acct_1")
    assert store.account_lookups == ["acct_1", "acct_nope", "acct_1"]


async def test_forget_drops_one_cached_lookup() -> None:
    store, clock = CountingStore(), FakeClock()
    store.records["h"] = _record()
    cached = CachedKeyStore(store, clock=clock)  # type: ignore[arg-type]
    await cached.lookup("h")
    store.records["h"] = _record().revoked_copy("leaked")
    cached.forget("h")
    cached.forget("never-cached")
    got = await cached.lookup("h")
    assert got is not None and got.revoked and got.revoked_reason == "leaked"


async def test_uses_are_batched_and_kept_when_the_store_is_down() -> None:
    store = CountingStore()
    cached = CachedKeyStore(store, flush_interval=3600)  # type: ignore[arg-type]
    cached.note_use("tok_a", 10.0)
    cached.note_use("tok_b", 20.0)
    cached.note_use("tok_a", 30.0)
    store.fail_writes = True
    await cached.flush()  # logged, not raised; kept for next time
    cached.note_use("tok_b", 15.0)  # older than the kept one
    store.fail_writes = False
    await cached.flush()
    assert store.uses == [{"tok_a": 30.0, "tok_b": 20.0}]
    await cached.close()  # cancels the periodic task, flushes nothing new, closes the store
    assert store.uses == [{"tok_a": 30.0, "tok_b": 20.0}] and store.closed


async def test_the_periodic_flush_runs_on_its_own() -> None:
    import asyncio

    store = CountingStore()
    cached = CachedKeyStore(store, flush_interval=0.01)  # type: ignore[arg-type]
    cached.note_use("tok_a", 10.0)  # starts the task on this loop
    for _ in range(500):  # bounded: at most 5 s
        if store.uses:
            break
        # The task's own asyncio timer is what is under test: yield to the loop and poll.
        await asyncio.sleep(0.01)
    assert store.uses == [{"tok_a": 10.0}]
    cached.note_use("tok_a", 11.0)
    await cached.close()  # the last uses are written on close
    assert store.uses[-1] == {"tok_a": 11.0}


# -- backend failures -------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_down_is_keystore_unavailable() -> None:
    from proxy.backends.keystore.redis import RedisKeyStore
    from tests.servers import free_port

    store = RedisKeyStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(KeyStoreUnavailable):
            await store.lookup("0" * 64)
        with pytest.raises(KeyStoreUnavailable):
            await store.revoke("tok_1")
        with pytest.raises(KeyStoreUnavailable):
            await store.record_use({"tok_1": 1.0})
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_never_holds_the_token(redis_url: str) -> None:
    import redis.asyncio as redis

    from proxy.backends.keystore.redis import RedisKeyStore

    prefix = f"test:{secrets.token_hex(6)}:"
    store = RedisKeyStore(redis_url, prefix=prefix)
    token = generate_token()
    await store.create(_record(), hash_token(token))
    await store.revoke("tok_1", reason="x")
    await store.close()
    client = redis.Redis.from_url(redis_url)
    dump = b""
    async for key in client.scan_iter(match=prefix + "*"):
        kind = await client.type(key)
        if kind == b"hash":
            dump += b"".join(k + v for k, v in (await client.hgetall(key)).items())
        elif kind == b"string":
            dump += await client.get(key) or b""
        dump += key
    await client.aclose()
    assert hash_token(token).encode() in dump
    assert token.encode() not in dump and token[13:43].encode() not in dump


def test_sqlite_error_is_keystore_unavailable(tmp_path: Path) -> None:
    (tmp_path / "edge.db").mkdir()  # a directory where the file should be
    with pytest.raises(KeyStoreUnavailable):
        SQLiteKeyStore(tmp_path / "edge.db")


async def test_sqlite_adds_new_columns_to_an_old_file(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    old = sqlite3.connect(db)
    old.executescript(
        """CREATE TABLE tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        kind TEXT NOT NULL, stores TEXT NOT NULL, permissions TEXT NOT NULL, account_id TEXT,
        tier TEXT, expires_at REAL, allow_ips TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL, last_used_at REAL, revoked INTEGER NOT NULL DEFAULT 0);
        INSERT INTO tokens (id, hash, name, kind, stores, permissions, created_at)
        VALUES ('tok_old', 'h', 'n', 'live', '["acme"]', '{"orders": "read"}', 1.0);"""
    )
    old.close()
    store = SQLiteKeyStore(db)
    try:
        got = await store.get("tok_old")
        assert got is not None and (got.revoked_reason, got.replaced_by) == (None, None)
        assert await store.revoke("tok_old", reason="r")
        await store.create_account(_account())
        assert await store.get_account("acct_1") == _account()
    finally:
        await store.close()


# -- choosing the backend -----------------------------------------------------------------------


def _redis_config(tmp_path: Path) -> Path:
    from tests.governance import governed_config

    return governed_config(tmp_path, "http://127.0.0.1:9", "redis", "redis://127.0.0.1:1/0")


def test_redis_backend_without_the_package_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from proxy._toml import ConfigError
    from proxy.backends.keystore import open_keystore
    from proxy.config import load_config
    from tests.conftest import env

    config = load_config(_redis_config(tmp_path), env=env())
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"keystore\.backend: \"redis\" needs the redis package"):
        load_config(_redis_config(tmp_path), env=env())
    # And where the store is opened (an install that lost the package after `check`).
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis → ImportError
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.delitem(sys.modules, "proxy.backends.keystore.redis", raising=False)
    with pytest.raises(ConfigError, match="needs the redis package"):
        open_keystore(config)


def test_open_keystore_picks_the_configured_backend(tmp_path: Path) -> None:
    from proxy.backends.keystore import open_keystore
    from proxy.backends.keystore.redis import RedisKeyStore
    from proxy.config import load_config
    from tests.conftest import env
    from tests.governance import governed_config

    redis = open_keystore(load_config(_redis_config(tmp_path), env=env()))
    assert isinstance(redis, RedisKeyStore)
    sqlite = open_keystore(
        load_config(governed_config(tmp_path, "http://127.0.0.1:9", "sqlite"), env=env())
    )
    assert isinstance(sqlite, SQLiteKeyStore)
    assert sqlite.path == tmp_path / "edge.db"
    import asyncio

    asyncio.run(sqlite.close())
    asyncio.run(redis.close())
