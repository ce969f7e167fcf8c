"""proxy.auth: who is calling, and what it may do now. Unit tests on a real SQLite store
with an injected clock (no sleeping), a property test over any header and address, and
the IP allowlist over real HTTP behind a trusted proxy, on both key stores."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import auth as auth_module
from proxy.auth import Principal, authenticate, bearer_token
from proxy.backends.keystore.base import AccountRecord, TokenRecord
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.errors import EdgeError, Forbidden, Unauthorized
from proxy.headers import client_address
from proxy.tokens import generate_token, hash_token
from tests.governance import BACKENDS, GovernedEdge, governed_edge

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Keys:
    """A SQLite store behind a CachedKeyStore whose TTL clock the test drives."""

    def __init__(self, store: SQLiteKeyStore) -> None:
        self.store = store
        self.ttl_clock = Clock(0.0)
        self.cached = CachedKeyStore(store, clock=self.ttl_clock)
        self.n = 0

    async def token(self, **kw: object) -> tuple[str, TokenRecord]:
        self.n += 1
        values: dict[str, object] = {
            "id": f"tok_{self.n}",
            "name": "t",
            "kind": "live",
            "stores": ("acme", "oak"),
            "permissions": {"orders": "write", "products": "read"},
        }
        values.update(kw)
        record = TokenRecord(**values)  # type: ignore[arg-type]
        token = generate_token(record.kind)
        await self.store.create(record, hash_token(token))
        return token, record

    async def auth(
        self, token: str | None, *, client: str = "192.0.2.10", now: float = NOW
    ) -> Principal:
        headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
        return await authenticate(headers, self.cached, client=client, clock=Clock(now))


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[Keys]:
    store = SQLiteKeyStore(tmp_path / "edge.db")
    k = Keys(store)
    yield k
    await k.cached.close()


def _www(exc: pytest.ExceptionInfo[EdgeError]) -> str:
    return exc.value.headers["WWW-Authenticate"]


# -- 401: the credential ----------------------------------------------------------------------


async def test_no_token_is_a_bare_challenge(keys: Keys) -> None:
    with pytest.raises(Unauthorized) as exc:
        await keys.auth(None)
    assert _www(exc) == 'Bearer realm="magento-edge"'  # type: ignore[arg-type]


async def test_malformed_and_unknown_are_distinct(keys: Keys) -> None:
    with pytest.raises(Unauthorized, match="malformed") as exc:
        await keys.auth("soc_pat_live_" + "A" * 36)
    assert 'error="invalid_token"' in _www(exc)  # type: ignore[arg-type]
    with pytest.raises(Unauthorized, match="not known"):
        await keys.auth(generate_token())


async def test_revoked_and_leaked_say_so(keys: Keys) -> None:
    token, record = await keys.token()
    await keys.store.revoke(record.id)
    with pytest.raises(Unauthorized, match=r"has been revoked\.$"):
        await keys.auth(token)
    leaked, record = await keys.token()
    await keys.store.revoke(record.id, reason="leaked: reported by GitHub secret scanning")
    with pytest.raises(Unauthorized, match="reported as leaked") as exc:
        await keys.auth(leaked)
    assert leaked not in exc.value.detail


async def test_expiry_is_checked_against_the_injected_clock(keys: Keys) -> None:
    token, _ = await keys.token(expires_at=NOW + 10)
    assert (await keys.auth(token, now=NOW + 9.999)).token_id == "tok_1"
    for at in (NOW + 10, NOW + 11):
        with pytest.raises(Unauthorized, match="has expired") as exc:
            await keys.auth(token, now=at)
        assert 'error="invalid_token"' in _www(exc)  # type: ignore[arg-type]


async def test_rotated_token_works_in_its_grace_then_says_rotated(keys: Keys) -> None:
    token, record = await keys.token()
    await keys.store.retire(record.id, expires_at=NOW + 3600, replaced_by="tok_new")
    keys.cached.forget(hash_token(token))
    assert (await keys.auth(token, now=NOW + 3599)).token_id == record.id
    with pytest.raises(Unauthorized, match="rotated and its grace period has ended"):
        await keys.auth(token, now=NOW + 3600)


# -- 403: the network -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "client", "ok"),
    [
        (("10.0.0.0/8",), "10.200.1.2", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("192.0.2.7",), "192.0.2.7", True),  # a bare address is a /32
        (("192.0.2.7",), "192.0.2.8", False),
        (("10.0.0.0/8", "2001:db8::/32"), "2001:db8::1", True),
        (("10.0.0.0/8", "2001:db8::/32"), "2001:db9::1", False),
        (("192.0.2.0/24",), "::ffff:192.0.2.9", True),  # IPv4-mapped is the IPv4 address
        (("192.0.2.0/24",), "unknown", False),  # no socket address: never allowed
        (("192.0.2.0/24",), "", False),
        (("not-a-net",), "192.0.2.1", False),  # a broken entry never widens access
        (("not-a-net", "192.0.2.0/24"), "192.0.2.1", True),
    ],
)
async def test_ip_allowlist(keys: Keys, allow: tuple[str, ...], client: str, ok: bool) -> None:
    token, _ = await keys.token(allow_ips=allow)
    if ok:
        assert (await keys.auth(token, client=client)).token_id == "tok_1"
        return
    with pytest.raises(Forbidden) as exc:
        await keys.auth(token, client=client)
    assert exc.value.status == 403
    assert exc.value.detail == "This token may not be used from this network address."
    assert not exc.value.headers  # not a credential problem: no challenge
    for cidr in allow:
        assert cidr not in exc.value.detail


async def test_no_allowlist_means_any_address(keys: Keys) -> None:
    token, _ = await keys.token()
    assert (await keys.auth(token, client="unknown")).token_id == "tok_1"


async def test_revoked_is_401_before_the_network_check(keys: Keys) -> None:
    token, record = await keys.token(allow_ips=("10.0.0.0/8",))
    await keys.store.revoke(record.id)
    with pytest.raises(Unauthorized):
        await keys.auth(token, client="192.0.2.1")


_TEN = ("10.0.0.0/8",)


@pytest.mark.parametrize(
    ("trusted", "peer", "xff", "client", "sent_on"),
    [
        # No trusted proxies configured: X-Forwarded-For is never read.
        ((), "203.0.113.5", [b"192.0.2.50"], "203.0.113.5", "203.0.113.5"),
        # An untrusted peer's X-Forwarded-For is not believed, nor passed on.
        (_TEN, "203.0.113.5", [b"192.0.2.50"], "203.0.113.5", "203.0.113.5"),
        # A trusted peer without the header: the peer is the client.
        (_TEN, "10.0.0.1", [], "10.0.0.1", "10.0.0.1"),
        # Read from the right: the first untrusted hop is the client (ProxyFix).
        (_TEN, "10.0.0.1", [b"192.0.2.50, 198.51.100.1, 10.0.0.9"], "198.51.100.1",
         "192.0.2.50, 198.51.100.1, 10.0.0.9, 10.0.0.1"),
        # Every hop trusted: the leftmost one is as far as the chain goes.
        (_TEN, "10.0.0.1", [b"10.0.0.5, 10.0.0.9"], "10.0.0.5", "10.0.0.5, 10.0.0.9, 10.0.0.1"),
        # Several header lines are one list, in order (RFC 9110 §5.3).
        (_TEN, "10.0.0.1", [b"192.0.2.50", b"198.51.100.1"], "198.51.100.1",
         "192.0.2.50, 198.51.100.1, 10.0.0.1"),
        # Empty list elements and optional whitespace are not hops (RFC 9110 §5.6.1).
        (_TEN, "10.0.0.1", [b" 192.0.2.50 ,, \t198.51.100.1 , "], "198.51.100.1",
         "192.0.2.50, 198.51.100.1, 10.0.0.1"),
        # Garbage written by a trusted proxy: believe that proxy, go no further left.
        (_TEN, "10.0.0.1", [b"192.0.2.50, unknown, 10.0.0.9"], "10.0.0.9",
         "192.0.2.50, unknown, 10.0.0.9, 10.0.0.1"),
        (_TEN, "10.0.0.1", [b"198.51.100.1:4711"], "10.0.0.1", "198.51.100.1:4711, 10.0.0.1"),
        # IPv6 hops and networks.
        (("2001:db8::/32",), "2001:db8::1", [b"2606:4700::1111, 2001:db8::2"], "2606:4700::1111",
         "2606:4700::1111, 2001:db8::2, 2001:db8::1"),
        # Several trusted networks; an address just outside one is a client.
        (("10.0.0.0/8", "192.168.0.0/16"), "192.168.1.1", [b"11.0.0.1, 10.255.255.255"],
         "11.0.0.1", "11.0.0.1, 10.255.255.255, 192.168.1.1"),
    ],
)  # fmt: skip
def test_client_address_comes_through_trusted_proxies_only(
    trusted: tuple[str, ...], peer: str, xff: list[bytes], client: str, sent_on: str
) -> None:
    headers = [(b"x-forwarded-for", v) for v in xff]
    networks = [ipaddress.ip_network(n) for n in trusted]
    got_client, hops = client_address(peer, [(b"host", b"edge"), *headers], networks)
    assert got_client == client
    assert ", ".join(hops) == sent_on


# -- accounts: effective grants -----------------------------------------------------------------


async def test_account_caps_the_token_per_store(keys: Keys) -> None:
    await keys.store.create_account(
        AccountRecord("acct_1", "P", {"acme": {"orders": "read", "products": "write"}})
    )
    token, _ = await keys.token(account_id="acct_1")
    p = await keys.auth(token)
    assert p.stores == frozenset({"acme"})  # the account has no oak
    assert p.permissions_for("acme") == {"orders": "read", "products": "read"}
    assert p.permissions_for("oak") == {}
    assert p.permissions_for(None) == p.permissions == {"orders": "read", "products": "read"}
    assert p.account is not None and p.account.id == "acct_1"
    # The token's own grants are kept on the record (what it could hold again).
    assert p.record.permissions == {"orders": "write", "products": "read"}


async def test_shrinking_the_account_shrinks_the_token_after_the_cache_ttl(keys: Keys) -> None:
    await keys.store.create_account(
        AccountRecord("acct_1", "P", {"acme": {"orders": "write"}, "oak": {"orders": "write"}})
    )
    token, _ = await keys.token(account_id="acct_1")
    assert (await keys.auth(token)).permissions_for("oak") == {"orders": "write"}
    await keys.store.set_account_grants("acct_1", {"acme": {"orders": "read"}})
    assert (await keys.auth(token)).permissions_for("oak") == {"orders": "write"}  # cached
    keys.ttl_clock.now += 1.0  # CACHE_TTL_SECONDS
    p = await keys.auth(token)
    assert p.stores == frozenset({"acme"})
    assert p.permissions_for("acme") == {"orders": "read"}


async def test_missing_account_is_401(keys: Keys) -> None:
    token, _ = await keys.token(account_id="acct_gone")
    with pytest.raises(Unauthorized, match="account no longer exists"):
        await keys.auth(token)


async def test_token_without_account_keeps_its_own_grants(keys: Keys) -> None:
    token, _ = await keys.token()
    p = await keys.auth(token)
    assert p.account is None and p.store_grants is None
    assert p.stores == frozenset({"acme", "oak"})
    assert p.permissions_for("acme") == {"orders": "write", "products": "read"}


async def test_use_is_noted_in_memory_and_written_by_flush(keys: Keys) -> None:
    token, record = await keys.token()
    await keys.auth(token, now=NOW + 5)
    await keys.auth(token, now=NOW + 7)
    stored = await keys.store.get(record.id)
    assert stored is not None and stored.last_used_at is None  # no write per request
    await keys.cached.flush()
    stored = await keys.store.get(record.id)
    assert stored is not None and stored.last_used_at == NOW + 7


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    value=st.binary(max_size=120),
    client=st.one_of(st.ip_addresses().map(str), st.text(max_size=20)),
)
def test_any_authorization_value_and_address_is_a_4xx_or_a_principal(
    value: bytes, client: str
) -> None:
    import asyncio

    async def run() -> None:
        store = _PROPERTY_STORE
        cached = CachedKeyStore(store)  # type: ignore[arg-type]
        try:
            await authenticate([(b"authorization", value)], cached, client=client)
        except EdgeError as exc:
            assert 400 <= exc.status < 500
        else:  # pragma: no cover - an arbitrary value is never a known token
            raise AssertionError("accepted")

    asyncio.run(run())


class _SlowWay(CachedKeyStore):
    """The reference: every answer through the TTL caches, as before the fast path."""

    def fresh(self, token_hash: str) -> None:
        return None

    def fresh_account(self, account_id: str) -> None:
        return None


class _Store:
    """Tokens and accounts in memory; every change stores a new record object."""

    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.accounts: dict[str, AccountRecord] = {}

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        return self.records.get(token_hash)

    async def get_account(self, account_id: str) -> AccountRecord | None:
        return self.accounts.get(account_id)

    async def record_use(self, uses: object) -> None:
        pass

    async def close(self) -> None:
        pass


@contextlib.contextmanager
def _no_principal_reuse() -> Iterator[None]:
    saved, auth_module._principals = auth_module._principals, {}
    try:
        yield
    finally:
        auth_module._principals = saved


def _outcome(call: Coroutine[Any, Any, Principal]) -> object:
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    except EdgeError as exc:
        return type(exc), exc.status, exc.detail, exc.headers
    raise AssertionError("authenticate waited on something")  # pragma: no cover


_LIVE, _ACCOUNT, _SIBLING, _LIMITED, _ROTATED = (generate_token() for _ in range(5))
_TOKENS = [_LIVE, _ACCOUNT, _SIBLING, _LIMITED, _ROTATED, generate_token(), _LIVE[:-1] + "x", ""]
_CHANGES = ["none", "revoke", "leak", "shrink", "drop account", "restore"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_TOKENS),
            st.sampled_from(["192.0.2.10", "10.1.2.3", "unknown"]),
            st.sampled_from([0.0, 0.3, 0.7, 1.0]),  # the cache clock moves on
            st.sampled_from([NOW, NOW + 100]),  # the wall clock: _ROTATED expires at NOW + 50
            st.sampled_from(_CHANGES),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_the_fast_path_answers_exactly_what_the_full_way_answers(
    steps: list[tuple[str, str, float, float, str]],
) -> None:
    """A warm key-store cache (fresh hits, the checksum skipped, Principals reused) and the
    reference (every request parsed and looked up through the TTL caches) over the same
    store and clocks: the same Principal or the same error every time, stale for the same
    time after a change, and the same hit and miss counts."""
    store = _Store()

    def put(token: str, **kw: object) -> None:
        values: dict[str, object] = {
            "id": f"tok_{_TOKENS.index(token)}",
            "name": "t",
            "kind": "live",
            "stores": ("acme", "oak"),
            "permissions": {"orders": "write", "products": "read"},
        }
        values.update(kw)
        store.records[hash_token(token)] = TokenRecord(**values)  # type: ignore[arg-type]

    def restore() -> None:
        put(_LIVE)
        put(_ACCOUNT, account_id="acct_1")
        put(_SIBLING, account_id="acct_1", stores=("acme",))  # its account cached apart
        put(_LIMITED, allow_ips=("10.0.0.0/8",))
        put(_ROTATED, expires_at=NOW + 50, replaced_by="tok_9")
        store.accounts["acct_1"] = AccountRecord("acct_1", "P", {"acme": {"orders": "write"}})

    restore()
    ttl_clock = Clock(0.0)
    warm = CachedKeyStore(store, clock=ttl_clock)  # type: ignore[arg-type]
    reference = _SlowWay(store, clock=ttl_clock)  # type: ignore[arg-type]
    for ks in (warm, reference):
        ks.note_use = lambda token_id, when: None  # type: ignore[method-assign]
    for token, client, dt, now, change in steps:
        ttl_clock.now += dt
        if change == "restore":
            restore()
        elif change in ("revoke", "leak"):
            record = store.records[hash_token(_LIVE)]
            reason = "leaked: reported" if change == "leak" else None
            store.records[hash_token(_LIVE)] = record.revoked_copy(reason)
        elif change == "shrink":
            store.accounts["acct_1"] = AccountRecord("acct_1", "P", {"acme": {"orders": "read"}})
        elif change == "drop account":
            store.accounts.pop("acct_1", None)
        headers = [(b"authorization", f"Bearer {token}".encode())]
        got = _outcome(authenticate(headers, warm, client=client, clock=Clock(now)))
        with _no_principal_reuse():
            want = _outcome(authenticate(headers, reference, client=client, clock=Clock(now)))
        assert got == want, (token, client, change)
        assert (warm.hits, warm.misses) == (reference.hits, reference.misses)


async def test_a_principal_is_reused_while_its_record_and_account_are(keys: Keys) -> None:
    await keys.store.create_account(AccountRecord("acct_1", "P", {"acme": {"orders": "write"}}))
    sibling, _ = await keys.token(account_id="acct_1")
    plain, _ = await keys.token()
    await keys.auth(sibling)  # the account is fetched (and cached) now
    keys.ttl_clock.now += 0.5
    token, _ = await keys.token(account_id="acct_1")
    first = await keys.auth(token)  # its record fetched now, its account from the cache
    assert await keys.auth(token) is first
    assert (await keys.auth(plain)) is (await keys.auth(plain)) is not first
    await keys.store.set_account_grants("acct_1", {"acme": {"orders": "read"}})
    keys.ttl_clock.now += 0.5  # the account is fetched again, the token's record is not
    again = await keys.auth(token)
    assert again is not first and again.record is first.record
    assert again.permissions_for("acme") == {"orders": "read"}
    assert first.permissions_for("acme") == {"orders": "write"}  # the old one untouched


class _NoTokens:
    async def lookup(self, token_hash: str) -> None:
        return None


_PROPERTY_STORE = _NoTokens()


def test_bearer_token_parsing() -> None:
    assert bearer_token([]) is None
    assert bearer_token([(b"authorization", b"Bearer abc")]) == "abc"
    assert bearer_token([(b"authorization", b"bearer   abc ")]) == "abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) == ""
    assert bearer_token([(b"authorization", b"Bearer \xff")]) == ""
    two = [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]
    assert bearer_token(two) == ""


# -- over HTTP, behind a trusted proxy, on both key stores ----------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GovernedEdge]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    with governed_edge(
        tmp_path_factory.mktemp("auth"),
        request.param,
        redis_url,
        server='trusted_proxies = ["127.0.0.1/32"]',
    ) as edge:
        yield edge


def test_allowlist_over_http_uses_the_forwarded_client(proxied: GovernedEdge) -> None:
    token, _ = proxied.token("products:read", extra=("--allow-ip", "203.0.113.0/24"))
    inside = proxied.get("/api/v1/stores", token, headers={"X-Forwarded-For": "203.0.113.9"})
    assert inside.status_code == 200, inside.text
    for xff in ("198.51.100.4", "203.0.113.9, 198.51.100.4"):  # read from the right
        r = proxied.get("/api/v1/stores", token, headers={"X-Forwarded-For": xff})
        assert r.status_code == 403
        body = r.json()
        assert body["detail"] == "This token may not be used from this network address."
        assert "203.0.113" not in r.text and "www-authenticate" not in r.headers
    # Without X-Forwarded-For the client is the socket peer, 127.0.0.1: not in the list.
    assert proxied.get("/api/v1/stores", token).status_code == 403


def test_allowlist_ignores_forwarded_for_from_an_untrusted_peer(tmp_path: Path) -> None:
    with governed_edge(tmp_path, "sqlite") as edge:  # trusted_proxies = []
        token, _ = edge.token("products:read", extra=("--allow-ip", "203.0.113.0/24"))
        r = edge.get("/api/v1/stores", token, headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403
        local, _ = edge.token("products:read", extra=("--allow-ip", "127.0.0.0/8"))
        assert edge.get("/api/v1/stores", local).status_code == 200


def test_expired_token_over_http_is_401_expired(proxied: GovernedEdge) -> None:
    # The CLI stamps expires_at from the wall clock; the edge checks it against its own
    # injected clock, which this test moves forward an hour instead of waiting.
    token, token_id = proxied.token("products:read", extra=("--expires-in", "1h"))
    assert re.fullmatch(r"tok_[0-9a-f]{16}", token_id)
    real = proxied.edge.clock
    try:
        proxied.edge.clock = lambda: real() + 3590
        assert proxied.get("/api/v1/stores", token).status_code == 200
        proxied.edge.clock = lambda: real() + 3600
        r = proxied.get("/api/v1/stores", token)
    finally:
        proxied.edge.clock = real
    assert r.status_code == 401
    assert r.json()["detail"] == "The bearer token has expired."
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert proxied.get("/api/v1/stores", token).status_code == 200  # back on the real clock


_XFF_TOKENS: dict[int, str] = {}
_ALLOWED = ipaddress.ip_network("203.0.113.0/24")  # the token's --allow-ip

# Hops the HTTP property builds X-Forwarded-For from, each with what it is; the edge trusts
# exactly 127.0.0.1 (the test client's socket address, so the peer is always trusted).
_inside = st.ip_addresses(v=4, network="203.0.113.0/24").map(lambda a: ("inside", str(a)))
_outside = (
    st.ip_addresses()
    .filter(lambda a: a not in _ALLOWED and str(a) != "127.0.0.1")
    .filter(lambda a: a.version == 4 or a.ipv4_mapped is None)  # "::ffff:203.0.113.9"
    .map(lambda a: ("outside", str(a)))
)
_trusted_hop = st.just(("trusted", "127.0.0.1"))
_garbage = st.sampled_from(["unknown", "_hidden", "203.0.113.7:80", "203.0.113", "[::1]"]).map(
    lambda g: ("garbage", g)
)
_blank = st.sampled_from(["", " ", "\t"]).map(lambda b: ("blank", b))
_hop = st.one_of(_inside, _outside, _trusted_hop, _garbage, _blank)


def _expected_inside(hops: list[tuple[str, str]]) -> bool:
    """Walk right to left: blanks are not hops and trusted hops are passed through; the
    first other hop decides (garbage: the trusted proxy to its right, 127.0.0.1, is the
    client, which is outside the allowlist)."""
    for kind, _ in reversed(hops):
        if kind in ("blank", "trusted"):
            continue
        return kind == "inside"
    return False  # every hop trusted: the client is 127.0.0.1


def _get_stores(url: str, token: str, xff: bytes) -> int:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        conn.putrequest("GET", "/api/v1/stores")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("X-Forwarded-For", xff)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status


def _xff_token(proxied: GovernedEdge) -> str:
    if id(proxied) not in _XFF_TOKENS:
        _XFF_TOKENS[id(proxied)] = proxied.token(
            "products:read", extra=("--allow-ip", "203.0.113.0/24")
        )[0]
    return _XFF_TOKENS[id(proxied)]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(hops=st.lists(_hop, max_size=5))
def test_forwarded_for_chains_let_in_exactly_the_allowed_client(
    proxied: GovernedEdge, hops: list[tuple[str, str]]
) -> None:
    xff = ",".join(text for _, text in hops).encode()
    status = _get_stores(proxied.url, _xff_token(proxied), xff)
    expected = 200 if _expected_inside(hops) else 403
    assert status == expected, (xff, status)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(xff=st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b))
def test_no_forwarded_for_value_is_a_5xx_or_a_way_in(proxied: GovernedEdge, xff: bytes) -> None:
    status = _get_stores(proxied.url, _xff_token(proxied), xff)
    # 400: the HTTP server refused the header line itself (NUL, ...).
    assert status in (200, 400, 403), status
    if status == 200:  # only an address inside the allowlist opens it
        assert any(_in_allowlist(hop) for hop in xff.decode("latin-1").split(",")), xff


def _in_allowlist(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in _ALLOWED
