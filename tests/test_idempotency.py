"""The idempotency step without HTTP: the key parser and ``forward_idempotently`` against a
fake upstream with multi-chunk answers, over both backends (the ``backend`` fixture of
:mod:`tests.idempotency_backends`; the store contract itself is
``tests/backends/test_idempotency.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._toml import ConfigError
from proxy.backends.idempotency.base import Answer, Lease
from proxy.backends.idempotency.memory import MemoryIdempotencyStore
from proxy.backends.idempotency.redis import RedisIdempotencyStore
from proxy.config import load_config
from proxy.context import RequestContext
from proxy.errors import (
    AnswerNotRecorded,
    BadRequest,
    Conflict,
    IdempotencyUnavailable,
    PayloadTooLarge,
    UnprocessableContent,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.idempotency import (
    Idempotency,
    caller_of,
    forward_idempotently,
    lease_for,
    open_idempotency,
    parse_idempotency_key,
    request_target,
    store_key,
)
from proxy.upstream import ClientGone, UpstreamBroke
from tests.conftest import env, write_config
from tests.idempotency_backends import LEASE, TTL, Backend, Clock
from tests.servers import free_port

Message = dict[str, Any]
FRESH = [(b"x-request-id", b"req-1"), (b"ratelimit-remaining", b"9")]


# -- the key ----------------------------------------------------------------------------


def _key(value: bytes) -> str | None:
    return parse_idempotency_key([(b"content-type", b"x"), (b"idempotency-key", value)])


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b'"8e03978e-40d5"', "8e03978e-40d5"),  # the draft's sf-string
        (b"KG5LxwFBepaKHyUD", "KG5LxwFBepaKHyUD"),  # Stripe's bare form
        (b'  "k"\t', "k"),  # surrounding whitespace is not part of it
        (b'"a\\"b\\\\c"', 'a"b\\c'),  # sf-string escapes
        (b"a\\b", "a\\b"),
        (b"x" * 255, "x" * 255),
        (b'"' + b"x" * 255 + b'"', "x" * 255),
        (b"!~", "!~"),
    ],
)
def test_accepted_keys(raw: bytes, key: str) -> None:
    assert _key(raw) == key


@pytest.mark.parametrize(
    "raw",
    [
        b"", b'""', b"   ", b"x" * 256, b'"' + b"x" * 256 + b'"', b"a b", b'"a b"', b"caf\xc3\xa9",
        b'"abc', b'abc"', b'a"b', b'"a";p=1', b'"a"b"', b'"a\\x"', b'"a\\"', b"\x00", b"a\x7f",
        b"\tx\x01",
    ],
)  # fmt: skip
def test_refused_keys(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        _key(raw)


def test_no_key_and_several_keys() -> None:
    assert parse_idempotency_key([(b"content-type", b"x")]) is None
    with pytest.raises(BadRequest, match="one Idempotency-Key"):
        parse_idempotency_key([(b"idempotency-key", b"a"), (b"idempotency-key", b"a")])


@given(st.binary(max_size=300))
def test_any_header_value_is_a_key_or_400(raw: bytes) -> None:
    try:
        key = _key(raw)
    except BadRequest:
        return
    assert key is not None and 0 < len(key) <= 255
    assert all(0x21 <= ord(c) <= 0x7E for c in key)


visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255)


@given(visible)
def test_quoted_and_bare_forms_are_one_key(key: str) -> None:
    quoted = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert _key(quoted.encode()) == key
    if '"' not in key:
        assert _key(key.encode()) == key


def test_store_keys_separate_callers() -> None:
    assert store_key("tok:a", "k") != store_key("tok:b", "k")
    assert store_key("tok:a", "b:k") != store_key("tok:a:b", "k")
    assert len(store_key("acct:x", "k" * 255)) == 64


def test_caller_is_the_account_else_the_token() -> None:
    class Rec:
        account_id: str | None = None

    class P:
        token_id = "tok_1"
        record: Rec | None = Rec()
        client_id: str | None = None

    p: Any = P()
    assert caller_of(p) == "tok:tok_1"
    p.record.account_id = "acc_9"
    assert caller_of(p) == "acct:acc_9"
    # A JWT: its partner application, whichever short-lived token a retry carries.
    p.record, p.client_id, p.token_id = None, "partner-app", "jwt:partner-app:j1"
    assert caller_of(p) == "client:partner-app"


def test_request_target_is_store_path_and_query_as_sent() -> None:
    class S:
        id = "acme"

    scope = {"raw_path": b"/api/v1/x%2Fy", "path": "/api/v1/x/y", "query_string": b"a=1"}
    store: Any = S()
    assert request_target(scope, store) == "acme /api/v1/x%2Fy?a=1"
    assert request_target({"path": "/p", "query_string": b""}, None) == " /p?"


# -- a backend that cannot be asked ---------------------------------------------------


async def test_redis_down_is_a_503_and_nothing_is_forwarded() -> None:
    idem = Idempotency(RedisIdempotencyStore(f"redis://127.0.0.1:{free_port()}/0"))
    up = Upstream()
    with pytest.raises(IdempotencyUnavailable) as info:
        await call(idem, up)
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
    assert up.calls == 0 and idem.backend_errors == 1
    await idem.close()


# -- forward_idempotently -----------------------------------------------------------------


class Upstream:
    """A fake forward: reads the body, optionally waits or fails, answers in chunks."""

    def __init__(
        self,
        status: int = 201,
        chunks: tuple[bytes, ...] = (b'{"id":', b"42", b"}"),
        *,
        fail: BaseException | None = None,
        gate: asyncio.Event | None = None,
        on_chunk: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.fail = fail
        self.gate = gate
        self.on_chunk = on_chunk
        self.calls = 0
        self.arrived = asyncio.Event()
        self.bodies: list[bytes] = []

    async def __call__(self, receive: Any, send: Any) -> int:
        self.calls += 1
        self.arrived.set()
        message = await receive()
        assert message == {"type": "http.request", "body": message["body"], "more_body": False}
        self.bodies.append(message["body"])
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        headers = [(b"content-type", b"application/json"), (b"x-magento", b"1"), *FRESH]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        for i, chunk in enumerate(self.chunks):
            if self.on_chunk is not None:
                await self.on_chunk()
            last = i == len(self.chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
        return self.status


class Client:
    """The ASGI side: a body in chunks, and every message the client is sent."""

    def __init__(self, body: bytes = b'{"a":1}', chunk: int = 3) -> None:
        self.parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
        self.sent: list[Message] = []
        self.reads = 0

    async def receive(self) -> Message:
        self.reads += 1
        if not self.parts:
            return {"type": "http.disconnect"}
        part = self.parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(self.parts)}

    async def send(self, message: Any) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1
        return int(starts[0]["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return next(m["headers"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def call(
    idem: Idempotency,
    up: Upstream,
    client: Client | None = None,
    *,
    key: str = "k1",
    caller: str = "tok:a",
    method: str = "POST",
    target: str = "acme /api/v1/stores/acme/commerce/orders?",
    headers: list[tuple[bytes, bytes]] | None = None,
    fresh: list[tuple[bytes, bytes]] | None = None,
) -> Client:
    client = client or Client()
    scope = {
        "method": method,
        "headers": headers if headers is not None else [(b"transfer-encoding", b"chunked")],
    }
    ctx = RequestContext(
        scope,
        client.receive,
        client.send,
        request_id="req-1",
        answer_headers=list(fresh if fresh is not None else FRESH),
    )
    await forward_idempotently(idem, ctx, caller=caller, key=key, target=target, forward=up)
    return client


def idem_on(backend: Backend, **kwargs: Any) -> Idempotency:
    return Idempotency(backend.store, ttl=TTL, lease=LEASE, clock=backend.clock, **kwargs)


async def test_first_answer_streams_through_and_a_retry_replays_it(backend: Backend) -> None:
    idem = idem_on(backend)
    up = Upstream()
    first = await call(idem, up, Client(b'{"order": {"total": 10}}'))
    assert up.calls == 1 and up.bodies == [b'{"order": {"total": 10}}']
    assert first.status == 201 and first.body == b'{"id":42}'
    assert [m.get("more_body") for m in first.sent[1:]] == [True, True, False]  # verbatim
    assert (b"idempotent-replayed", b"true") not in first.headers

    fresh = [(b"x-request-id", b"req-2"), (b"ratelimit-remaining", b"8")]
    again = await call(idem, up, Client(b'{"order": {"total": 10}}', chunk=5), fresh=fresh)
    assert up.calls == 1
    assert again.status == 201 and again.body == b'{"id":42}'
    assert again.headers == [
        (b"content-type", b"application/json"),
        (b"x-magento", b"1"),
        (b"x-request-id", b"req-2"),
        (b"ratelimit-remaining", b"8"),
        (b"idempotent-replayed", b"true"),
    ]
    assert idem.replays == 1


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"order": {"total": 11}}'},
        {"method": "PUT"},
        {"target": "acme /api/v1/stores/acme/commerce/orders?x=1"},
        {"target": "lab /api/v1/stores/acme/commerce/orders?"},
    ],
    ids=["body", "method", "query", "store"],
)
async def test_same_key_different_request_is_422(backend: Backend, change: Any) -> None:
    idem = idem_on(backend)
    up = Upstream()
    await call(idem, up, Client(b'{"order": {"total": 10}}'))
    change = dict(change)
    client = Client(change.pop("body", b'{"order": {"total": 10}}'))
    with pytest.raises(UnprocessableContent) as info:
        await call(idem, up, client, **change)
    assert info.value.status == 422 and up.calls == 1 and idem.mismatches == 1


async def test_in_flight_is_409_with_retry_after_and_a_different_request_422(
    backend: Backend,
) -> None:
    idem = idem_on(backend)
    gate = asyncio.Event()
    up = Upstream(gate=gate)
    first = asyncio.create_task(call(idem, up))
    await up.arrived.wait()
    with pytest.raises(Conflict) as info:
        await call(idem, up)
    assert info.value.status == 409 and info.value.headers == {"Retry-After": "1"}
    assert info.value.code == "idempotency_conflict"
    with pytest.raises(UnprocessableContent):
        await call(idem, up, Client(b"other"))
    gate.set()
    assert (await first).status == 201
    assert (await call(idem, up)).status == 201 and up.calls == 1


async def test_callers_never_share_a_key(backend: Backend) -> None:
    idem = idem_on(backend)
    up = Upstream()
    await call(idem, up, caller="tok:a")
    other = await call(idem, up, caller="tok:b")
    assert up.calls == 2 and (b"idempotent-replayed", b"true") not in other.headers


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_upstream_5xx_is_passed_on_not_recorded(backend: Backend, status: int) -> None:
    idem = idem_on(backend)
    failing = await call(idem, Upstream(status))
    assert failing.status == status
    up = Upstream()
    assert (await call(idem, up)).status == 201 and up.calls == 1
    assert (await call(idem, up)).status == 201 and up.calls == 1


@pytest.mark.parametrize(
    "failure",
    [
        UpstreamUnavailable("refused"),
        UpstreamTimeout("slow"),
        ClientGone(),
        UpstreamBroke("cut"),
        asyncio.CancelledError(),
    ],
    ids=["502", "504", "client-gone", "upstream-broke", "cancelled"],
)
async def test_failures_release_the_key_and_propagate(
    backend: Backend, failure: BaseException
) -> None:
    idem = idem_on(backend)
    with pytest.raises(type(failure)):
        await call(idem, Upstream(fail=failure))
    up = Upstream()
    assert (await call(idem, up)).status == 201 and up.calls == 1


async def test_4xx_answers_are_recorded_like_any_other(backend: Backend) -> None:
    idem = idem_on(backend)
    up = Upstream(400, (b'{"message":"bad"}',))
    await call(idem, up)
    again = await call(idem, up)
    assert again.status == 400 and again.body == b'{"message":"bad"}' and up.calls == 1


async def test_an_empty_answer_is_recorded(backend: Backend) -> None:
    idem = idem_on(backend)
    up = Upstream(204, (b"",))
    await call(idem, up)
    again = await call(idem, up)
    assert again.status == 204 and again.body == b"" and up.calls == 1


async def test_body_over_the_cap_is_413_before_reading_or_while_reading(backend: Backend) -> None:
    idem = idem_on(backend, max_body_bytes=100)
    up = Upstream()
    declared = Client(b"x" * 101)
    with pytest.raises(PayloadTooLarge) as info:
        await call(idem, up, declared, headers=[(b"content-length", b"101")])
    assert info.value.status == 413 and declared.reads == 0  # refused before reading
    with pytest.raises(PayloadTooLarge):
        await call(idem, up, Client(b"x" * 101, chunk=40))  # chunked: while reading
    assert up.calls == 0
    at_cap = await call(idem, up, Client(b"x" * 100), headers=[(b"content-length", b"100")])
    assert at_cap.status == 201 and up.calls == 1  # the key was never taken by the 413s


async def test_a_client_gone_while_uploading_takes_nothing(backend: Backend) -> None:
    idem = idem_on(backend)
    client = Client(b"abc")
    messages: list[Message] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    client.receive = receive  # type: ignore[method-assign]
    up = Upstream()
    with pytest.raises(ClientGone):
        await call(idem, up, client)
    assert up.calls == 0
    assert (await call(idem, up)).status == 201 and up.calls == 1


async def test_answer_over_the_record_cap_is_sent_whole_then_not_run_again(
    backend: Backend,
) -> None:
    idem = idem_on(backend, max_record_bytes=8)
    up = Upstream(201, (b"12345", b"6789"))  # 9 bytes: one over
    first = await call(idem, up)
    assert first.body == b"123456789"  # the first client gets all of it
    with pytest.raises(AnswerNotRecorded) as info:
        await call(idem, up)
    assert info.value.status == 409 and info.value.code == "idempotency_answer_not_recorded"
    assert info.value.extra == {"original_status": 201} and "Retry-After" not in info.value.headers
    assert up.calls == 1
    fits = Upstream(201, (b"1234", b"5678"))  # exactly at the cap: recorded
    await call(idem, fits, key="k2")
    assert (await call(idem, fits, key="k2")).body == b"12345678" and fits.calls == 1


async def test_the_lease_is_renewed_while_the_answer_streams(backend: Backend) -> None:
    idem = idem_on(backend)
    seen: list[Lease | Answer | None] = []
    other = Lease("z" * 16, "0" * 64)

    async def tick() -> None:
        seen.append(await backend.store.claim(store_key("tok:a", "k1"), other, LEASE))
        await backend.advance(LEASE / 2)

    await call(idem, Upstream(201, tuple(b"x" for _ in range(6)), on_chunk=tick))
    # Three lease lengths passed while it streamed; nobody could take the key meanwhile.
    assert len(seen) == 6 and all(isinstance(x, Lease) and x.owner != other.owner for x in seen)
    assert isinstance(await backend.store.claim(store_key("tok:a", "k1"), other, LEASE), Answer)


async def test_renewals_happen_only_after_a_third_of_the_lease() -> None:
    clock = Clock()
    counted: list[str] = []

    class Counting(MemoryIdempotencyStore):
        async def renew(self, key: str, lease: Lease, seconds: float) -> bool:
            counted.append(key)
            return await super().renew(key, lease, seconds)

    idem = Idempotency(Counting(clock=clock), lease=30.0, clock=clock)

    async def tick() -> None:
        clock.now += 4.0

    await call(idem, Upstream(201, tuple(b"x" for _ in range(10)), on_chunk=tick))
    assert len(counted) == 3  # 44 s of streaming, a renewal each 10 s


async def test_fifty_concurrent_requests_one_forward(backend: Backend) -> None:
    idem = idem_on(backend)
    gate = asyncio.Event()
    up = Upstream(gate=gate)

    refused: list[int] = []
    others_done = asyncio.Event()

    async def one() -> int | str:
        try:
            return (await call(idem, up)).status
        except Conflict:
            refused.append(1)
            if len(refused) == 49:
                others_done.set()
            return "409"

    tasks = [asyncio.create_task(one()) for _ in range(50)]
    await others_done.wait()  # the one forwarding is held until every other has answered
    gate.set()
    results = await asyncio.gather(*tasks)
    assert up.calls == 1
    assert sorted(results, key=str) == [201] + ["409"] * 49


async def test_backend_errors_after_forwarding_are_counted_not_raised() -> None:
    class Flaky(MemoryIdempotencyStore):
        async def record(self, key: str, lease: Lease, answer: Answer, ttl: float) -> bool:
            raise IdempotencyUnavailable("down")

        async def release(self, key: str, lease: Lease) -> None:
            raise IdempotencyUnavailable("down")

    idem = Idempotency(Flaky())
    assert (await call(idem, Upstream())).status == 201
    assert (await call(idem, Upstream(502), key="k2")).status == 502
    assert idem.backend_errors == 2
    assert len(idem.unsaved) == 1  # the 201 kept to be saved later (test_idempotency_faults)
    await idem.close()


# -- config -----------------------------------------------------------------------------


def _config(tmp_path: Path, extra: str) -> Any:
    path = write_config(tmp_path, "http://127.0.0.1:9", None, extra)
    return load_config(path, env=env())


def test_config_defaults_and_limits(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    assert config.idempotency_max_body_bytes == 1024 * 1024
    assert config.idempotency_max_record_bytes == 1024 * 1024
    # The longest store timeouts: the defaults pool 5 + connect 2 + write 30 + read 30, plus
    # the margin.
    assert lease_for(config) == 5 + 2 + 30 + 30 + 2
    idem = open_idempotency(config)
    assert isinstance(idem.store, MemoryIdempotencyStore)
    assert (idem.ttl, idem.max_body_bytes, idem.lease) == (86400, 1 << 20, 69)

    config = _config(
        tmp_path,
        '[idempotency]\nbackend = "redis"\nurl = "redis://127.0.0.1:1/2"\nttl_seconds = 60\n'
        "max_body_bytes = 10\nmax_record_bytes = 20\n",
    )
    idem = open_idempotency(config)
    assert isinstance(idem.store, RedisIdempotencyStore)
    assert (idem.ttl, idem.max_body_bytes, idem.max_record_bytes) == (60, 10, 20)


def test_config_refuses_bad_limits(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, '[idempotency]\nmax_body_bytes = -1\nmax_record_bytes = "1MB"\n')
    text = "\n".join(info.value.problems)
    assert "idempotency.max_body_bytes: must be at least 0" in text
    assert "idempotency.max_record_bytes: must be an integer" in text
