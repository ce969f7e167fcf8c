"""No answer the edge gives a client names an internal address, host, port or file
(issue #13 part 4): every backend's "unavailable" error, rendered in both error styles, is
checked with one regex (:data:`tests.fault_tools.ADDRESS`); the cause, address included,
still reaches the operator (the CLI, the log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.backends.idempotency.base import Lease
from proxy.backends.idempotency.redis import RedisIdempotencyStore
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.redis import RedisKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.errors import EdgeError, IdempotencyUnavailable, KeyStoreUnavailable, render
from tests.fault_tools import names_no_address
from tests.servers import free_port


def _rendered(exc: EdgeError) -> list[bytes]:
    out = []
    for style in ("problem", "envelope"):
        status, headers, body = render(
            exc,
            style=style,
            request_id="r",
            type_base="https://errors.example/",  # type: ignore[arg-type]
        )
        assert status == 503
        out.append(body + b"".join(n + b": " + v for n, v in headers))
    return out


async def test_redis_key_store_down_names_no_address(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    cached = CachedKeyStore(RedisKeyStore(f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(KeyStoreUnavailable) as info:
        await cached.lookup("0" * 64)
    for body in _rendered(info.value):
        assert names_no_address(body), body
    assert f"127.0.0.1:{port}" in str(info.value.__cause__)  # kept as the cause
    assert "key store unavailable: 1 failures" in caplog.text  # and logged for the operator
    assert f"{port}" in caplog.text
    await cached.close()


async def test_unreadable_sqlite_key_store_names_no_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    store = SQLiteKeyStore(path)
    store._db.close()  # any sqlite3.Error: its text may name the file
    with pytest.raises(KeyStoreUnavailable) as info:
        await store.lookup("0" * 64)
    for body in _rendered(info.value):
        assert names_no_address(body) and str(tmp_path).encode() not in body, body


async def test_redis_idempotency_down_names_no_address() -> None:
    store = RedisIdempotencyStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(IdempotencyUnavailable) as info:
        await store.claim("k", Lease("o", "f" * 64), 30)
    for body in _rendered(info.value):
        assert names_no_address(body), body
    await store.close()
