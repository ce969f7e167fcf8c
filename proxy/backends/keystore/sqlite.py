"""The embedded key store (``[keystore] backend = "sqlite"``, the default): one SQLite file,
no server. Safe for several processes on one host (WAL mode); for replicas on many hosts
use the Redis key store.

Queries run on the event loop thread: an indexed lookup in a local file takes a few
microseconds, less than a hop to a worker thread, and :class:`CachedKeyStore` keeps them
off most requests anyway. The one periodic write from the request path (last-used times)
runs in a worker thread on its own connection, so a writer holding the lock elsewhere
(the CLI) never stalls the loop.

An open SQLite connection keeps reading a file that was deleted (or replaced by a rename)
from its old inode: tokens created since would be refused and revocations never seen.
:meth:`SQLiteKeyStore.health` (run by the readiness probe and the periodic last-used
flush) compares the path's inode with the open one: a replaced file is reopened (an
operator restoring a backup), a deleted one makes the edge not ready and is logged until
the file is back.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ...errors import DuplicateError, KeyStoreUnavailable
from .base import AccountRecord, Grants, TokenRecord

__all__ = ["SQLiteKeyStore"]

log = logging.getLogger("magento_edge.keystore")

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
CREATE TABLE IF NOT EXISTS revoked_jtis (
    jti TEXT PRIMARY KEY,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grants TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
# Columns added after the first release: added to an older file when it is opened.
_ADDED = {"revoked_reason": "TEXT", "replaced_by": "TEXT"}
_COLUMNS = (
    "id, name, kind, stores, permissions, account_id, tier, expires_at, allow_ips, "
    "created_at, last_used_at, revoked, revoked_reason, replaced_by"
)
_ACCOUNT_COLUMNS = "id, name, grants, created_at"


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise DuplicateError(f"already exists: {exc}") from exc
    except sqlite3.Error as exc:
        # The cause may name the file: logged for the operator, never shown to a client.
        raise KeyStoreUnavailable(
            "The key store cannot be read right now; retry shortly.",
            headers={"Retry-After": "1"},
        ) from exc


def _at_start(db: sqlite3.Connection, prepare: Callable[[sqlite3.Connection], None]) -> None:
    """Run the start-up schema work, retrying while another process holds the lock.

    Replicas sharing one file start together: switching to WAL and creating the schema
    take the write lock, and SQLite answers "database is locked" at once (without its busy
    timeout) in some of those races (the WAL switch); start-up waits its turn instead
    (bounded)."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            prepare(db)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # start-up only, never on the request path


class SQLiteKeyStore:
    """Trust model: whoever can read the file sees hashes and grants, never tokens."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock  # wall time: a jti is denied until an epoch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        self._problem: str | None = None  # the last health verdict, logged when it changes

    def _open(self) -> sqlite3.Connection:
        with _translated():
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            _at_start(db, self._prepare)
            self._inode = _inode(self.path)
        return db

    def health(self) -> str | None:
        """``None`` while the path is the file this store has open; else why not."""
        try:
            now = _inode(self.path)
        except FileNotFoundError:
            return self._verdict(
                "the SQLite key store file was deleted: tokens created since and "
                "revocations are not seen; restore the file (it is reopened)"
            )
        except OSError as exc:
            return self._verdict(f"the SQLite key store file cannot be checked ({exc.strerror})")
        if now != self._inode:
            try:
                fresh = self._open()
            except KeyStoreUnavailable as exc:
                return self._verdict(
                    f"the SQLite key store file was replaced and cannot be "
                    f"opened ({type(exc.__cause__).__name__})"
                )
            old, self._db = self._db, fresh
            old.close()
            log.warning("the SQLite key store file %s was replaced: reopened", self.path)
        return self._verdict(None)

    def _verdict(self, problem: str | None) -> str | None:
        if problem != self._problem:
            if problem is None:
                log.warning("the SQLite key store file %s is back", self.path)
            else:
                log.error("%s (%s)", problem, self.path)
            self._problem = problem
        return problem

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        # One write transaction for the whole schema (SQLite's DDL is transactional): a
        # second process starting at the same moment sees all of it or none of it, never
        # a table without the columns the first one is adding.
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            have = {row[1] for row in db.execute("PRAGMA table_info(tokens)")}
            for column, kind in _ADDED.items():
                if column not in have:
                    db.execute(f"ALTER TABLE tokens ADD COLUMN {column} {kind}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- tokens -------------------------------------------------------------------------

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        with _translated():
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM tokens WHERE hash = ?",  # noqa: S608 - fixed column list
                (token_hash,),
            ).fetchone()
        return _record(row) if row else None

    async def create(self, record: TokenRecord, token_hash: str) -> None:
        with _translated():
            self._db.execute(
                f"INSERT INTO tokens (hash, {_COLUMNS}) VALUES ({','.join('?' * 15)})",  # noqa: S608
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
                    record.revoked_reason,
                    record.replaced_by,
                ),
            )

    async def get(self, token_id: str) -> TokenRecord | None:
        with _translated():
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM tokens WHERE id = ?",  # noqa: S608
                (token_id,),
            ).fetchone()
        return _record(row) if row else None

    async def list(self) -> list[TokenRecord]:
        with _translated():
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, id"  # noqa: S608
            ).fetchall()
        return [_record(row) for row in rows]

    async def revoke(self, token_id: str, reason: str | None = None) -> bool:
        with _translated():
            cur = self._db.execute(
                "UPDATE tokens SET revoked = 1, revoked_reason = COALESCE(revoked_reason, ?) "
                "WHERE id = ?",
                (reason, token_id),
            )
        return cur.rowcount > 0

    async def retire(self, token_id: str, *, expires_at: float, replaced_by: str) -> bool:
        with _translated():
            cur = self._db.execute(
                "UPDATE tokens SET expires_at = MIN(COALESCE(expires_at, ?), ?), replaced_by = ? "
                "WHERE id = ?",
                (expires_at, expires_at, replaced_by, token_id),
            )
        return cur.rowcount > 0

    async def record_use(self, uses: Mapping[str, float]) -> None:
        if uses:
            await asyncio.to_thread(self._write_uses, dict(uses))

    def _write_uses(self, uses: dict[str, float]) -> None:
        with _translated():
            # mode=rw: a deleted file is not silently recreated empty (health() reports it).
            uri = self.path.resolve().as_uri() + "?mode=rw"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "UPDATE tokens SET last_used_at = ? "
                    "WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                    [(when, token_id, when) for token_id, when in uses.items()],
                )
                db.execute("COMMIT")
            finally:
                db.close()

    # -- revoked JWT ids ----------------------------------------------------------------

    async def jti_revoked(self, jti: str) -> bool:
        with _translated():
            row = self._db.execute(
                "SELECT 1 FROM revoked_jtis WHERE jti = ? AND until > ?", (jti, self._clock())
            ).fetchone()
        return row is not None

    async def revoke_jti(self, jti: str, until: float) -> None:
        with _translated():
            # Entries past their time deny nothing: dropped here, so the table stays small.
            self._db.execute("DELETE FROM revoked_jtis WHERE until <= ?", (self._clock(),))
            self._db.execute(
                "INSERT INTO revoked_jtis (jti, until) VALUES (?, ?) "
                "ON CONFLICT(jti) DO UPDATE SET until = MAX(until, excluded.until)",
                (jti, until),
            )

    # -- accounts -----------------------------------------------------------------------

    async def create_account(self, account: AccountRecord) -> None:
        with _translated():
            self._db.execute(
                f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (?,?,?,?)",  # noqa: S608
                (account.id, account.name, _grants_json(account.grants), account.created_at),
            )

    async def get_account(self, account_id: str) -> AccountRecord | None:
        with _translated():
            row = self._db.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?",  # noqa: S608
                (account_id,),
            ).fetchone()
        return _account(row) if row else None

    async def list_accounts(self) -> builtins.list[AccountRecord]:
        with _translated():
            rows = self._db.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id"  # noqa: S608
            ).fetchall()
        return [_account(row) for row in rows]

    async def set_account_grants(self, account_id: str, grants: Grants) -> bool:
        with _translated():
            cur = self._db.execute(
                "UPDATE accounts SET grants = ? WHERE id = ?", (_grants_json(grants), account_id)
            )
        return cur.rowcount > 0

    async def close(self) -> None:
        self._db.close()


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _grants_json(grants: Grants) -> str:
    return json.dumps({store: dict(perms) for store, perms in grants.items()}, sort_keys=True)


def _record(row: tuple[object, ...]) -> TokenRecord:
    (id_, name, kind, stores, permissions, account_id, tier, expires_at, allow_ips, created_at,
     last_used_at, revoked, revoked_reason, replaced_by) = row  # fmt: skip
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
        revoked_reason=None if revoked_reason is None else str(revoked_reason),
        replaced_by=None if replaced_by is None else str(replaced_by),
    )


def _account(row: tuple[object, ...]) -> AccountRecord:
    id_, name, grants, created_at = row
    return AccountRecord(
        id=str(id_),
        name=str(name),
        grants=json.loads(str(grants)),
        created_at=float(str(created_at)),
    )
