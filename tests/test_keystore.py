"""Key stores (SPEC §5): one contract suite, parametrised over implementations (add
"redis" to the ``keystore`` fixture's params), plus CachedKeyStore and the grant helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.keystore import CachedKeyStore, KeyStore, TokenRecord, grants_allow, parse_permission
from proxy.keystore_sqlite import SQLiteKeyStore
from proxy.tokens import generate_token, hash_token


@pytest.fixture(params=["sqlite"])
async def keystore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    if request.param == "sqlite":
        store: KeyStore = SQLiteKeyStore(tmp_path / "sub" / "edge.db")
    else:  # pragma: no cover - new implementations go here
        raise AssertionError(request.param)
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


async def test_created_revoked_record_stays_revoked(keystore: KeyStore) -> None:
    await keystore.create(_record(revoked=True), "e" * 64)
    got = await keystore.lookup("e" * 64)
    assert got is not None and got.revoked is True


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
    """A KeyStore double that counts lookups."""

    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.lookups: list[str] = []
        self.closed = False

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        self.lookups.append(token_hash)
        return self.records.get(token_hash)

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
        "allow_ips", "created_at", "last_used_at", "revoked",
    }  # fmt: skip
