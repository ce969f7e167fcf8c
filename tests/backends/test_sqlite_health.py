"""The SQLite key store notices its file deleted or replaced (issue #13 part 4): an open
connection would go on reading the old inode, so ``health()`` compares inodes, reports a
deleted file until it is back, and reopens a replaced one; the last-used flush runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

import pytest

from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.errors import KeyStoreUnavailable


def _record(token_id: str) -> TokenRecord:
    return TokenRecord(id=token_id, name="n", kind="live", stores=("acme",), permissions={})


async def test_deleted_then_restored_then_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "edge.db"
    store = SQLiteKeyStore(path)
    await store.create(_record("tok_a"), "a" * 64)
    assert store.health() is None
    other = SQLiteKeyStore(tmp_path / "other.db")
    await other.create(_record("tok_b"), "b" * 64)
    await other.close()

    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")
    with caplog.at_level(logging.ERROR):
        why = store.health()
        assert why is not None and "deleted" in why
        assert store.health() == why  # still deleted: same verdict,
    assert caplog.text.count("was deleted") == 1  # logged once, on the change
    assert await store.lookup("a" * 64) is not None  # the old inode still reads
    # Writing last-used times must not recreate the file empty.
    with pytest.raises(KeyStoreUnavailable):
        await store.record_use({"tok_a": 1.0})
    assert path.name not in os.listdir(tmp_path)

    shutil.copy(tmp_path / "other.db", path)  # restored (from another file: a new inode)
    assert store.health() is None
    assert await store.lookup("b" * 64) is not None  # the restored file is read now
    assert await store.lookup("a" * 64) is None

    replacement = tmp_path / "new.db"
    fresh = SQLiteKeyStore(replacement)
    await fresh.create(_record("tok_c"), "c" * 64)
    await fresh.close()
    replacement.replace(path)  # mv new.db edge.db
    assert store.health() is None
    assert await store.lookup("c" * 64) is not None
    assert "was replaced: reopened" in caplog.text
    await store.close()


async def test_the_periodic_flush_checks_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "edge.db"
    cached = CachedKeyStore(SQLiteKeyStore(path), flush_interval=0.01)
    cached.start()
    os.remove(path)
    for _ in range(300):  # bounded: the flush task runs on this loop
        if "was deleted" in caplog.text:
            break
        await asyncio.sleep(0.01)
    assert "the SQLite key store file was deleted" in caplog.text
    assert cached.health() is not None
    await cached.close()
