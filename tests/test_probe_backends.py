"""``magento-edge check --probe`` also probes the configured backends (issue #13 part 4):
the SQLite key store (read without creating it), and each Redis (PING, plus a warning when
it keeps nothing across a restart); an unreachable one fails the check, and no output ever
carries a Redis password."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.config import load_config
from proxy.probe import probe_backends
from tests.servers import free_port
from tests.test_probe import REPO

PASSWORD = "redis-pw-xyz"


def _config(tmp_path: Path, backends: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[server]
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
{backends}
[stores.acme]
magento_url = "http://127.0.0.1:9"
credential = {{ kind = "bearer", token_env = "T" }}
"""
    )
    return path


def _sqlite(tmp_path: Path) -> str:
    return '[keystore]\nbackend = "sqlite"\npath = "edge.db"\n'


def _probe(path: Path) -> dict[str, object]:
    config = load_config(path, env={"T": "x"})
    return {b.backend: b for b in asyncio.run(probe_backends(config, seconds=2.0))}


def test_a_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    found = _probe(_config(tmp_path, _sqlite(tmp_path)))
    ks = found["keystore"]
    assert ks.ok and "does not exist yet" in ks.verdict  # type: ignore[attr-defined]
    assert not (tmp_path / "edge.db").exists()
    assert found["ratelimit"].ok and found["idempotency"].ok  # type: ignore[attr-defined]


def test_a_readable_sqlite_file_counts_tokens_and_warns_when_read_only(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "edge.db")
    db.execute("CREATE TABLE tokens (id TEXT)")
    db.execute("INSERT INTO tokens VALUES ('a')")
    db.commit()
    db.close()
    ks = _probe(_config(tmp_path, _sqlite(tmp_path)))["keystore"]
    assert ks.ok and "(1 tokens)" in ks.verdict and not ks.warnings  # type: ignore[attr-defined]
    os.chmod(tmp_path / "edge.db", 0o444)
    try:
        ks = _probe(_config(tmp_path, _sqlite(tmp_path)))["keystore"]
        if os.geteuid() != 0:  # root writes whatever the mode says
            assert ks.ok and "not writable" in ks.warnings[0]  # type: ignore[attr-defined]
    finally:
        os.chmod(tmp_path / "edge.db", 0o644)
    (tmp_path / "edge.db").write_bytes(b"not a database at all" * 100)
    ks = _probe(_config(tmp_path, _sqlite(tmp_path)))["keystore"]
    assert not ks.ok and "cannot be read" in ks.verdict  # type: ignore[attr-defined]


@pytest.mark.redis
def test_redis_backends_answer_and_persistence_is_warned_about(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backends = (
        f'[keystore]\nbackend = "redis"\nurl = "{redis_url}"\n'
        f'[ratelimit]\nbackend = "redis"\nurl = "{redis_url}"\n'
        f'[idempotency]\nbackend = "redis"\nurl = "{redis_url}"\n'
    )
    found = _probe(_config(tmp_path, backends))
    for part in ("keystore", "ratelimit", "idempotency"):
        assert found[part].ok and "answered PING" in found[part].verdict  # type: ignore[attr-defined]
    # The test server runs with --save "" --appendonly no: nothing survives its restart.
    assert "neither AOF nor RDB" in found["keystore"].warnings[0]  # type: ignore[attr-defined]
    assert not found["ratelimit"].warnings  # type: ignore[attr-defined]


def test_an_unreachable_redis_fails_check_probe_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    path = _config(tmp_path, f'[idempotency]\nbackend = "redis"\nurl = "{url}"\n')
    monkeypatch.setenv("T", "x")
    assert main(["check", "--config", str(path), "--probe"]) == 1
    out = capsys.readouterr().out
    assert "idempotency (redis): FAILED: Redis at 127.0.0.1:" in out and "not reachable" in out
    assert PASSWORD not in out
    assert main(["check", "--config", str(path), "--probe", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    [idem] = [b for b in doc["backends"] if b["backend"] == "idempotency"]
    assert idem["ok"] is False and PASSWORD not in json.dumps(doc)
