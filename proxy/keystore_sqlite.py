"""The embedded key store: one SQLite file, no server. Safe for several processes on one
host (WAL mode); for replicas on many hosts use the Redis key store.

Queries run on the event loop thread: an indexed lookup in a local file takes a few
microseconds, less than a hop to a worker thread, and :class:`CachedKeyStore` keeps them
off most requests anyway.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .keystore import TokenRecord

__all__ = ["SQLiteKeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    stores TEXT NOT NULL,
    permissions TEXT NOT NULL,
    account_id TEXT,
    tier TEXT,
    expires_at REAL,
    allow_ips TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""
_COLUMNS = (
    "id, name, kind, stores, permissions, account_id, tier, expires_at, allow_ips, "
    "created_at, last_used_at, revoked"
)


class SQLiteKeyStore:
    """Trust model: whoever can read the file sees hashes and grants, never tokens."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM tokens WHERE hash = ?",  # noqa: S608 - fixed column list
            (token_hash,),
        ).fetchone()
        return _record(row) if row else None

    async def create(self, record: TokenRecord, token_hash: str) -> None:
        self._db.execute(
            f"INSERT INTO tokens (hash, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            (
                token_hash,
                record.id,
                record.name,
                record.kind,
                json.dumps(list(record.stores)),
                json.dumps(dict(record.permissions)),
                record.account_id,
                record.tier,
                record.expires_at,
                json.dumps(list(record.allow_ips)),
                record.created_at,
                record.last_used_at,
                int(record.revoked),
            ),
        )

    async def get(self, token_id: str) -> TokenRecord | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM tokens WHERE id = ?",  # noqa: S608
            (token_id,),
        ).fetchone()
        return _record(row) if row else None

    async def list(self) -> list[TokenRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at").fetchall()  # noqa: S608
        return [_record(row) for row in rows]

    async def revoke(self, token_id: str) -> bool:
        cur = self._db.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,))
        return cur.rowcount > 0

    async def close(self) -> None:
        self._db.close()


def _record(row: tuple[object, ...]) -> TokenRecord:
    (id_, name, kind, stores, permissions, account_id, tier, expires_at, allow_ips, created_at,
     last_used_at, revoked) = row  # fmt: skip
    return TokenRecord(
        id=str(id_),
        name=str(name),
        kind="test" if kind == "test" else "live",
        stores=tuple(json.loads(str(stores))),
        permissions=json.loads(str(permissions)),
        account_id=None if account_id is None else str(account_id),
        tier=None if tier is None else str(tier),
        expires_at=None if expires_at is None else float(str(expires_at)),
        allow_ips=tuple(json.loads(str(allow_ips))),
        created_at=float(str(created_at)),
        last_used_at=None if last_used_at is None else float(str(last_used_at)),
        revoked=bool(revoked),
    )
