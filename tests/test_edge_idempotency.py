"""Idempotency-Key through the edge over real HTTP, with the Magento stand-in counting the
calls that reach it: replays, 422, 409 while in flight, 413, the record cap, what is not
recorded, caller scopes, bad keys; 50 concurrent keyed POSTs reach Magento once in one
process (memory) and across two ``magento-edge serve`` processes sharing Redis; a replay
after a restart; a killed process frees its keys when its lease runs out."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from magento_standin import create_standin
from proxy.backends.keystore.base import AccountRecord, TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.tokens import generate_token, hash_token
from tests.conftest import MAGENTO_TOKEN, REPO, Harness, env, wait_for, write_config
from tests.panel_app import PanelApp
from tests.servers import free_port, serving
from tests.test_edge_streaming import EdgeProcess

PRODUCTS = "/api/v1/stores/acme/commerce/products"
REPLAYED = "idempotent-replayed"
MAX_BODY = 4096
MAX_RECORD = 2048


class GatedMagento:
    """The stand-in behind a gate: a request carrying ``x-test-hold`` waits while the gate
    is closed; ``x-test-fail: 503`` is answered with that status instead. (The edge
    forwards both headers; the fingerprint ignores headers, so a retry without them is
    "the same request".)"""

    def __init__(self) -> None:
        self.standin = create_standin(bearer_tokens=[MAGENTO_TOKEN])
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0
        self.failed = 0

    @property
    def hits(self) -> int:
        # Not the admin listener's readiness probe (a signed read of store configs)
        probes = ("GET", "/V1/store/storeConfigs")
        return sum(n for call, n in self.standin.hits.items() if call != probes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if b"x-test-hold" in headers:
                self.held += 1
                # The gate is opened from the test's thread: poll it.
                while not self.gate.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            fail = headers.get(b"x-test-fail")
            if fail is not None:
                while (await receive()).get("more_body"):
                    pass
                self.failed += 1
                body = b'{"message":"Internal Error. Details are available in Magento log file."}'
                start = {"type": "http.response.start", "status": int(fail), "headers": []}
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
        await self.standin(scope, receive, send)


@contextmanager
def gated_edge(directory: Path, extra: str = "") -> Iterator[tuple[Harness, GatedMagento]]:
    magento = GatedMagento()
    with ExitStack() as stack:
        upstream = stack.enter_context(serving(magento))
        path = write_config(directory, upstream.url, None, extra)
        config = load_config(path, env=env())
        edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        server = stack.enter_context(serving(edge))
        yield Harness(server.url, path, config, magento.standin, PanelApp(), edge), magento
        magento.gate.set()


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, GatedMagento]]:
    limits = f"[idempotency]\nmax_body_bytes = {MAX_BODY}\nmax_record_bytes = {MAX_RECORD}\n"
    with gated_edge(tmp_path_factory.mktemp("idem"), limits) as pair:
        yield pair


def product(sku: str, name: str = "Tent") -> dict[str, Any]:
    return {"product": {"sku": sku, "name": name, "price": 99, "attribute_set_id": 4}}


def key() -> str:
    return secrets.token_hex(16)


def test_retry_replays_with_fresh_headers_and_magento_runs_once(
    gated: tuple[Harness, GatedMagento],
) -> None:
    h, magento = gated
    token = h.token("products:write")  # the standard tier: Remaining visibly counts down
    k = key()
    with h.client(token) as c:
        before = magento.hits
        first = c.post(PRODUCTS, json=product("IDEM-1"), headers={"Idempotency-Key": k})
        again = c.post(
            PRODUCTS,
            json=product("IDEM-1"),
            headers={"Idempotency-Key": f'"{k}"', "X-Request-Id": "retry-1"},
        )
    assert magento.hits == before + 1
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.json()["sku"] == "IDEM-1"
    assert again.headers[REPLAYED] == "true" and REPLAYED not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["x-request-id"] == "retry-1"  # this answer's, not the first's
    assert first.headers["x-request-id"] != "retry-1"
    assert int(again.headers["ratelimit-remaining"]) < int(first.headers["ratelimit-remaining"])
    assert again.headers.get_list("x-request-id") == ["retry-1"]


def test_delete_with_a_key_replays_instead_of_404(gated: tuple[Harness, GatedMagento]) -> None:
    h, _magento = gated
    token = h.token("products:write", tier="internal")
    k = key()
    with h.client(token) as c:
        assert c.post(PRODUCTS, json=product("IDEM-DEL")).status_code == 200
        first = c.delete(PRODUCTS + "/IDEM-DEL", headers={"Idempotency-Key": k})
        again = c.delete(PRODUCTS + "/IDEM-DEL", headers={"Idempotency-Key": k})
        unkeyed = c.delete(PRODUCTS + "/IDEM-DEL")
    assert first.status_code == again.status_code == 200 and again.headers[REPLAYED] == "true"
    assert unkeyed.status_code == 404  # Magento's own answer to a second delete


def test_get_ignores_the_header(gated: tuple[Harness, GatedMagento]) -> None:
    h, magento = gated
    token = h.token("products:read", tier="internal")
    with h.client(token) as c:
        before = magento.hits
        answers = [c.get(PRODUCTS + "/MB-01", headers={"Idempotency-Key": "a b"}) for _ in "12"]
    assert [r.status_code for r in answers] == [200, 200] and magento.hits == before + 2
    assert all(REPLAYED not in r.headers for r in answers)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (PRODUCTS, product("IDEM-422", "Other name")),
        (PRODUCTS + "?storeId=1", product("IDEM-422")),
        ("/api/v1/stores/acme/commerce/products/IDEM-422", product("IDEM-422")),
    ],
    ids=["body", "query", "path"],
)
def test_same_key_different_request_is_422(
    gated: tuple[Harness, GatedMagento], path: str, body: dict[str, Any]
) -> None:
    h, magento = gated
    token = h.token("products:write", tier="internal")
    k = key()
    with h.client(token) as c:
        first = c.post(PRODUCTS, json=product("IDEM-422"), headers={"Idempotency-Key": k})
        assert first.status_code == 200
        before = magento.hits
        method = "PUT" if path.endswith("IDEM-422") else "POST"
        r = c.request(method, path, json=body, headers={"Idempotency-Key": k})
    assert r.status_code == 422 and magento.hits == before
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/idempotency-mismatch")
    assert "ratelimit-remaining" in r.headers


def test_in_flight_is_409_with_retry_after_then_replays(
    gated: tuple[Harness, GatedMagento],
) -> None:
    h, magento = gated
    token = h.token("products:write", tier="internal")
    k = key()
    headers = {"Idempotency-Key": k, "X-Test-Hold": "1"}
    results: list[httpx.Response] = []
    magento.gate.clear()
    held = magento.held
    with h.client(token) as c, h.client(token) as c2:
        first = threading.Thread(
            target=lambda: results.append(
                c.post(PRODUCTS, json=product("IDEM-409"), headers=headers)
            )
        )
        first.start()
        try:
            assert wait_for(lambda: magento.held > held)
            busy = c2.post(PRODUCTS, json=product("IDEM-409"), headers={"Idempotency-Key": k})
            other = c2.post(PRODUCTS, json=product("X"), headers={"Idempotency-Key": k})
        finally:
            magento.gate.set()
            first.join(10)
        after = c2.post(PRODUCTS, json=product("IDEM-409"), headers={"Idempotency-Key": k})
    assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
    assert busy.json()["type"].endswith("/idempotency-conflict")
    assert other.status_code == 422  # a different request is wrong whatever the state
    assert results[0].status_code == 200
    assert after.status_code == 200 and after.headers[REPLAYED] == "true"
    assert after.content == results[0].content


def test_upstream_5xx_is_not_recorded(gated: tuple[Harness, GatedMagento]) -> None:
    h, magento = gated
    token = h.token("products:write", tier="internal")
    k = key()
    with h.client(token) as c:
        failed = c.post(
            PRODUCTS, json=product("IDEM-5XX"), headers={"Idempotency-Key": k, "X-Test-Fail": "503"}
        )
        before = magento.hits
        retry = c.post(PRODUCTS, json=product("IDEM-5XX"), headers={"Idempotency-Key": k})
        again = c.post(PRODUCTS, json=product("IDEM-5XX"), headers={"Idempotency-Key": k})
    assert failed.status_code == 503 and "Internal Error" in failed.text  # Magento's, verbatim
    assert retry.status_code == 200 and REPLAYED not in retry.headers
    assert again.headers[REPLAYED] == "true" and magento.hits == before + 1


def test_edge_errors_and_transport_failures_are_not_recorded(
    gated: tuple[Harness, GatedMagento],
) -> None:
    h, magento = gated
    token = h.token("products:write", stores=("acme", "gone"), tier="internal")
    k = key()
    body = product("IDEM-EDGE")
    headers = {"Idempotency-Key": k}
    with h.client(token) as c:
        forbidden = c.post("/api/v1/stores/acme/commerce/orders/1/cancel", headers=headers)
        hidden = c.post("/api/v1/stores/nosuch/commerce/products", json=body, headers=headers)
        refused = c.post("/api/v1/stores/gone/commerce/products", json=body, headers=headers)
        before = magento.hits
        ok = c.post(PRODUCTS, json=body, headers=headers)  # 422 if any of those were kept
    with h.client("soc_pat_live_" + "x" * 36) as bad:
        unauthorized = bad.post(PRODUCTS, json=body, headers=headers)
    assert (forbidden.status_code, hidden.status_code, refused.status_code) == (403, 404, 502)
    assert unauthorized.status_code == 401
    assert ok.status_code == 200 and REPLAYED not in ok.headers and magento.hits == before + 1


def test_callers_are_isolated_but_an_accounts_tokens_share_keys(
    gated: tuple[Harness, GatedMagento],
) -> None:
    h, magento = gated
    a = h.token("products:write", tier="internal")
    b = h.token("products:write", tier="internal")
    k = key()
    before = magento.hits
    answers = []
    for token in (a, b):
        with h.client(token) as c:
            answers.append(
                c.post(PRODUCTS, json=product("IDEM-ISO"), headers={"Idempotency-Key": k})
            )
    assert magento.hits == before + 2 and all(REPLAYED not in r.headers for r in answers)

    one, two = _account_tokens(h, 2)
    with h.client(one) as c:
        first = c.post(PRODUCTS, json=product("IDEM-ACCT"), headers={"Idempotency-Key": k})
    with h.client(two) as c:
        second = c.post(PRODUCTS, json=product("IDEM-ACCT"), headers={"Idempotency-Key": k})
    assert second.headers[REPLAYED] == "true" and second.content == first.content


def _account_tokens(h: Harness, n: int) -> list[str]:
    store = SQLiteKeyStore(h.config.keystore_path or "")
    account = AccountRecord(
        "acc_" + secrets.token_hex(6), "Acme ERP", {"acme": {"products": "write"}}
    )
    tokens = []

    async def create() -> None:
        await store.create_account(account)
        for _ in range(n):
            token = generate_token("live")
            record = TokenRecord(
                id="tok_" + secrets.token_hex(8),
                name="acct",
                kind="live",
                stores=("acme",),
                permissions={"products": "write"},
                account_id=account.id,
                tier="internal",
            )
            await store.create(record, hash_token(token))
            tokens.append(token)
        await store.close()

    asyncio.run(create())
    return tokens


def test_body_over_the_cap_is_413_and_unkeyed_bodies_still_stream(
    gated: tuple[Harness, GatedMagento],
) -> None:
    h, magento = gated
    token = h.token("products:write", tier="internal")
    k = key()
    big = json.dumps(product("IDEM-413", "n" * MAX_BODY)).encode()

    def chunked() -> Iterator[bytes]:
        yield big[:1000]
        yield big[1000:]

    with h.client(token) as c:
        before = magento.hits
        declared = c.post(PRODUCTS, content=big, headers={"Idempotency-Key": k})
        streamed = c.post(
            PRODUCTS,
            content=chunked(),
            headers={"Idempotency-Key": k, "Content-Type": "application/json"},
        )
        assert magento.hits == before
        unkeyed = c.post(PRODUCTS, content=big, headers={"Content-Type": "application/json"})
        small = c.post(PRODUCTS, json=product("IDEM-413"), headers={"Idempotency-Key": k})
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["type"].endswith("/payload-too-large")
    assert str(MAX_BODY) in declared.json()["detail"]
    assert unkeyed.status_code == 200 and small.status_code == 200  # the key was untouched
    assert magento.hits == before + 2


def test_answer_over_the_record_cap_is_not_run_again(gated: tuple[Harness, GatedMagento]) -> None:
    h, magento = gated
    token = h.token("products:write", tier="internal")
    k = key()
    body = product("IDEM-CAP", "n" * (MAX_RECORD + 100))
    with h.client(token) as c:
        before = magento.hits
        first = c.post(PRODUCTS, json=body, headers={"Idempotency-Key": k})
        again = c.post(PRODUCTS, json=body, headers={"Idempotency-Key": k})
    assert first.status_code == 200 and len(first.content) > MAX_RECORD  # sent in full
    assert first.json()["name"] == "n" * (MAX_RECORD + 100)
    assert again.status_code == 409 and "retry-after" not in again.headers
    problem = again.json()
    assert problem["type"].endswith("/idempotency-answer-not-recorded")
    assert problem["original_status"] == 200
    assert magento.hits == before + 1


# What the edge must make of an Idempotency-Key value, written from the specs rather than
# from proxy.idempotency: OWS around a field value is not part of it (RFC 9110 §5.5); the
# value is an RFC 8941 sf-string (§3.3.3: DQUOTE, printable ASCII but DQUOTE and "\\",
# escapes of exactly those two, DQUOTE) or a bare token of visible ASCII without DQUOTE
# (Stripe's form); the key itself is 1-255 visible ASCII characters.
_SF_STRING = re.compile(rb'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_BARE = re.compile(rb"[\x21\x23-\x7e]+")
_KEY = re.compile(rb"[\x21-\x7e]{1,255}")


def _expected_key(value: bytes) -> bytes | None:
    value = value.strip(b" \t")
    if m := _SF_STRING.fullmatch(value):
        key = re.sub(rb"\\(.)", rb"\1", m.group(1))
    elif _BARE.fullmatch(value):
        key = value
    else:
        return None
    return key if _KEY.fullmatch(key) else None


def _sf_string(key: bytes) -> bytes:
    return b'"' + key.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def test_the_key_oracle_agrees_with_the_rfc_examples() -> None:
    # The oracle below is itself code: pin it to hand-worked values first.
    assert _expected_key(b"abc") == b"abc"
    assert _expected_key(b' "a\\"b\\\\c" ') == b'a"b\\c'
    assert _expected_key(b'"a b"') is None  # a space is in sf-string but not in a key
    assert _expected_key(b'"a";p=1') is None and _expected_key(b'a"b') is None
    assert _expected_key(b"x" * 255) == b"x" * 255 and _expected_key(b"x" * 256) is None
    assert _expected_key(b'""') is None and _expected_key(b"") is None
    assert _expected_key(b"caf\xc3\xa9") is None
    assert _expected_key(_sf_string(b'"\\')) == b'"\\'


# Values near the grammar: quotes, backslashes, spaces and OWS in every position.
_key_like = st.builds(
    lambda ows1, q1, body, q2, ows2: ows1 + q1 + body + q2 + ows2,
    st.sampled_from([b"", b" ", b"\t "]),
    st.sampled_from([b"", b'"']),
    st.lists(
        st.sampled_from([*"abcXYZ019-_.~!#$%&'*+^`|", '"', "\\", " ", '\\"', "\\\\"]),
        max_size=20,
    ).map(lambda parts: "".join(parts).encode()),
    st.sampled_from([b"", b'"', b'";p=1']),
    st.sampled_from([b"", b" "]),
)


def _post_with_key(h: Harness, token: str, value: bytes) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(h.url.removeprefix("http://"), timeout=10)
    body = json.dumps(product("IDEM-HYPO")).encode()
    try:
        conn.putrequest("POST", PRODUCTS, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        try:
            conn.putheader("Idempotency-Key", value)
        except ValueError:
            assume(False)
        conn.endheaders(body)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    value=st.binary(max_size=300)
    | st.text(max_size=40).map(lambda t: t.encode("utf-8"))
    | _key_like
)
def test_any_key_header_is_used_or_400_never_5xx(
    gated: tuple[Harness, GatedMagento], value: bytes
) -> None:
    h, _magento = gated
    token = _hypothesis_token(h)
    key = _expected_key(value)
    response = _post_with_key(h, token, value)
    event(f"status {response.status}")
    assert response.status == (400 if key is None else 200), value
    if key is not None:
        # The same key in its sf-string form is the same key: the answer is replayed.
        again = _post_with_key(h, token, _sf_string(key))
        assert again.status == 200 and again.getheader(REPLAYED) == "true", (value, key)


_TOKENS: dict[str, str] = {}


def _hypothesis_token(h: Harness) -> str:
    if h.url not in _TOKENS:
        _TOKENS[h.url] = h.token("products:write", tier="internal")
    return _TOKENS[h.url]


async def _burst(
    urls: list[str], token: str, k: str, magento: GatedMagento, n: int = 50
) -> list[httpx.Response]:
    """``n`` identical keyed POSTs at once; the one that reaches Magento is held there
    until every other one has been answered."""
    body = product("IDEM-50")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": k, "X-Test-Hold": "1"}
    others = asyncio.Event()
    answered = 0
    magento.gate.clear()

    async def one(client: httpx.AsyncClient, url: str) -> httpx.Response:
        nonlocal answered
        r = await client.post(url + PRODUCTS, json=body, headers=headers)
        answered += 1
        if answered == n - 1:
            others.set()
        return r

    async def opener() -> None:
        try:
            await asyncio.wait_for(others.wait(), 20)
        finally:
            magento.gate.set()

    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        *answers, _ = await asyncio.gather(
            *(one(client, urls[i % len(urls)]) for i in range(n)), opener()
        )
    return list(answers)


def _check_burst(answers: list[httpx.Response]) -> None:
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [409] * 49
    assert all(r.headers["retry-after"] == "1" for r in answers if r.status_code == 409)


def test_50_concurrent_keyed_posts_reach_magento_once_memory(
    gated: tuple[Harness, GatedMagento],
) -> None:
    h, magento = gated
    token = h.token("products:write", tier="internal")
    before = magento.hits
    answers = asyncio.run(_burst([h.url], token, key(), magento))
    assert magento.hits == before + 1
    _check_burst(answers)


# -- Redis: several processes, restarts, a dead process -----------------------------------

REDIS_CONFIG = """
[server]
host = "127.0.0.1"
port = 0
policies = ["{policy}"]

[keystore]
backend = "sqlite"
path = "edge.db"

[idempotency]
backend = "redis"
url = "{redis}"

[logging]
level = "warning"
access_log = false

[stores.acme]
name = "Acme"
environment = "live"
magento_url = "{magento}"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
timeouts = {{ connect = 0.5, read = {read}, pool = 0.5, write = 0.5 }}
"""


class RedisStack:
    def __init__(self, directory: Path, redis_url: str, magento: GatedMagento, url: str) -> None:
        self.magento = magento
        self.directory = directory
        self.redis_url = redis_url
        self.magento_url = url
        self.config = self.configure(read=10.0)
        self.db = directory / "edge.db"

    def configure(self, *, read: float) -> Path:
        """A claim's lease is pool + connect + write + read + 2 s: 13.5 s here by default."""
        path = self.directory / "config.toml"
        path.write_text(
            REDIS_CONFIG.format(
                policy=REPO / "policies" / "storeoncloud.toml",
                redis=self.redis_url,
                magento=self.magento_url,
                read=read,
            )
        )
        return path

    def token(self) -> str:
        token = generate_token("live")
        record = TokenRecord(
            id="tok_" + secrets.token_hex(8),
            name="idem",
            kind="live",
            stores=("acme",),
            permissions={"products": "write"},
            tier="internal",
        )
        store = SQLiteKeyStore(self.db)
        asyncio.run(store.create(record, hash_token(token)))
        asyncio.run(store.close())
        return token

    def edge(self) -> EdgeProcess:
        return EdgeProcess(self.config, free_port())


@pytest.fixture
def redis_stack(tmp_path: Path, redis_url: str) -> Iterator[RedisStack]:
    magento = GatedMagento()
    with serving(magento) as upstream:
        try:
            yield RedisStack(tmp_path, redis_url, magento, upstream.url)
        finally:
            magento.gate.set()


@pytest.mark.redis
def test_50_concurrent_keyed_posts_across_two_processes_reach_magento_once_redis(
    redis_stack: RedisStack,
) -> None:
    token = redis_stack.token()
    edges = [redis_stack.edge(), redis_stack.edge()]
    try:
        answers = asyncio.run(_burst([e.url for e in edges], token, key(), redis_stack.magento))
    finally:
        for e in edges:
            e.stop()
    assert redis_stack.magento.hits == 1
    _check_burst(answers)


@pytest.mark.redis
def test_replay_after_the_edge_restarts_redis(redis_stack: RedisStack) -> None:
    token = redis_stack.token()
    k = key()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": k}
    edge = redis_stack.edge()
    try:
        first = httpx.post(edge.url + PRODUCTS, json=product("IDEM-RESTART"), headers=headers)
    finally:
        edge.stop()
    edge = redis_stack.edge()
    try:
        again = httpx.post(edge.url + PRODUCTS, json=product("IDEM-RESTART"), headers=headers)
    finally:
        edge.stop()
    assert first.status_code == again.status_code == 200
    assert again.headers[REPLAYED] == "true" and again.content == first.content
    assert redis_stack.magento.hits == 1


@pytest.mark.redis
def test_a_killed_process_frees_its_key_when_the_lease_runs_out_redis(
    redis_stack: RedisStack,
) -> None:
    redis_stack.configure(read=1.0)  # lease: 0.5 + 0.5 + 0.5 + 1.0 + 2 = 4.5 s
    token = redis_stack.token()
    magento = redis_stack.magento
    body = product("IDEM-KILL")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key()}
    doomed, survivor = redis_stack.edge(), redis_stack.edge()
    magento.gate.clear()
    try:
        started = time.monotonic()
        threading.Thread(
            target=lambda: _quiet_post(doomed.url, body, {**headers, "X-Test-Hold": "1"}),
            daemon=True,
        ).start()
        assert wait_for(lambda: magento.held == 1)
        doomed.proc.kill()  # SIGKILL mid-request: no release, no record
        doomed.stop()
        with httpx.Client(base_url=survivor.url, timeout=10) as c:
            assert c.post(PRODUCTS, json=body, headers=headers).status_code == 409
            statuses = []
            while time.monotonic() - started < 15:
                r = c.post(PRODUCTS, json=body, headers=headers)
                statuses.append(r.status_code)
                if r.status_code != 409:
                    break
                # The lease is a Redis key expiry seen by a separate process: no clock of
                # ours to move; poll it, bounded by the 15 s deadline above.
                time.sleep(0.25)
        freed_after = time.monotonic() - started
    finally:
        survivor.stop()
        hits = magento.hits
        magento.gate.set()
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}
    assert 3.0 < freed_after < 7.5  # the 4.5 s lease, not forever
    assert hits == 1  # only the survivor's retry ran (the doomed one never got past the gate)


def _quiet_post(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # its edge is killed under it
        httpx.post(url + PRODUCTS, json=body, headers=headers, timeout=10)
