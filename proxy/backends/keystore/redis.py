"""The Redis key store: tokens and accounts shared by every replica (``[keystore] backend =
"redis"``). Same Protocol and contract tests as the SQLite store.

Layout (``P`` is ``keystore.prefix``, default ``edge:ks:``):

    P t:{sha256}   hash   "record" (JSON of the fields that never change), and one field
                          per field that does: expires_at, revoked, revoked_reason,
                          replaced_by, last_used_at; one HGETALL answers a lookup
    P id:{id}      string the token's hash (ids → hashes for the CLI)
    P tokens       zset   token ids by creation time (listing)
    P a:{id}       hash   "record" (JSON id, name, created_at) and "grants" (JSON)
    P accounts     zset   account ids by creation time
    P j:{jti}      string a revoked JWT id: its "until" epoch, expiring then (PEXPIREAT)

Floats are written with ``repr`` so they round-trip exactly. Changes that must not race
(create if absent, expire-no-later-than, keep-the-newest last-used) are Lua scripts.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import DuplicateError, KeyStoreUnavailable
from .._redis import connect
from .base import AccountRecord, Grants, TokenRecord

__all__ = ["RedisKeyStore"]

# KEYS: token hash key, id key, index. ARGV: hash, id, created_at, field/value pairs...
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""
# KEYS: account key, index. ARGV: id, created_at, record JSON, grants JSON.
_CREATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'grants', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""
# KEYS: a hash key. ARGV: field, value. Sets the field only if the key exists.
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: token hash key. ARGV: expires_at, replaced_by. Expires no later than ARGV[1].
_RETIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'expires_at')
if (not cur) or tonumber(cur) > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[1])
end
redis.call('HSET', KEYS[1], 'replaced_by', ARGV[2])
return 1
"""
# KEYS: token hash key. ARGV: revoke reason ("" for none). A second revoke keeps the reason.
_REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
if ARGV[1] ~= '' then redis.call('HSETNX', KEYS[1], 'revoked_reason', ARGV[1]) end
return 1
"""
# KEYS: jti key. ARGV: until (epoch s), until (epoch ms). Keeps the later "until".
_REVOKE_JTI = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""
# KEYS: token hash key. ARGV: when. Keeps the newest last-used time.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'last_used_at')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
end
return 1
"""


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as exc:
        # The cause names Redis's address: logged for the operator (CachedKeyStore), never
        # shown to a client.
        raise KeyStoreUnavailable(
            "The key store cannot be reached right now; retry shortly.",
            headers={"Retry-After": "1"},
        ) from exc


class RedisKeyStore:
    """Trust model: the Redis server is the operator's; it holds hashes and grants, never
    tokens."""

    def __init__(self, url: str, *, prefix: str = "edge:ks:", max_connections: int = 32) -> None:
        self._redis: Any = connect(url, max_connections=max_connections, decode=True)
        self._p = prefix
        self._create = self._redis.register_script(_CREATE)
        self._create_account = self._redis.register_script(_CREATE_ACCOUNT)
        self._set_if_exists = self._redis.register_script(_SET_IF_EXISTS)
        self._retire = self._redis.register_script(_RETIRE)
        self._revoke = self._redis.register_script(_REVOKE)
        self._touch = self._redis.register_script(_TOUCH)
        self._revoke_jti = self._redis.register_script(_REVOKE_JTI)

    def _t(self, token_hash: str) -> str:
        return f"{self._p}t:{token_hash}"

    def _id(self, token_id: str) -> str:
        return f"{self._p}id:{token_id}"

    def _a(self, account_id: str) -> str:
        return f"{self._p}a:{account_id}"

    # -- tokens -------------------------------------------------------------------------

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        with _translated():
            fields = await self._redis.hgetall(self._t(token_hash))
        return _record(fields) if fields else None

    async def create(self, record: TokenRecord, token_hash: str) -> None:
        fields: dict[str, str] = {"record": json.dumps(_immutable(record))}
        if record.expires_at is not None:
            fields["expires_at"] = repr(record.expires_at)
        if record.last_used_at is not None:
            fields["last_used_at"] = repr(record.last_used_at)
        if record.revoked:
            fields["revoked"] = "1"
        if record.revoked_reason is not None:
            fields["revoked_reason"] = record.revoked_reason
        if record.replaced_by is not None:
            fields["replaced_by"] = record.replaced_by
        pairs = [item for kv in fields.items() for item in kv]
        with _translated():
            created = await self._create(
                keys=[self._t(token_hash), self._id(record.id), self._p + "tokens"],
                args=[token_hash, record.id, repr(record.created_at), *pairs],
            )
        if not created:
            raise DuplicateError(f"token {record.id} (or its hash) already exists")

    async def _hash_of(self, token_id: str) -> str | None:
        with _translated():
            found: str | None = await self._redis.get(self._id(token_id))
        return found

    async def get(self, token_id: str) -> TokenRecord | None:
        token_hash = await self._hash_of(token_id)
        return None if token_hash is None else await self.lookup(token_hash)

    async def list(self) -> list[TokenRecord]:
        with _translated():
            ids = await self._redis.zrange(self._p + "tokens", 0, -1)
            if not ids:
                return []
            hashes = await self._redis.mget([self._id(i) for i in ids])
            async with self._redis.pipeline(transaction=False) as pipe:
                for h in hashes:
                    if h is not None:
                        pipe.hgetall(self._t(h))
                rows = await pipe.execute()
        records = [_record(fields) for fields in rows if fields]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    async def revoke(self, token_id: str, reason: str | None = None) -> bool:
        token_hash = await self._hash_of(token_id)
        if token_hash is None:
            return False
        with _translated():
            return bool(await self._revoke(keys=[self._t(token_hash)], args=[reason or ""]))

    async def retire(self, token_id: str, *, expires_at: float, replaced_by: str) -> bool:
        token_hash = await self._hash_of(token_id)
        if token_hash is None:
            return False
        with _translated():
            return bool(
                await self._retire(keys=[self._t(token_hash)], args=[repr(expires_at), replaced_by])
            )

    async def record_use(self, uses: Mapping[str, float]) -> None:
        if not uses:
            return
        ids = list(uses)
        with _translated():
            hashes = await self._redis.mget([self._id(i) for i in ids])
            async with self._redis.pipeline(transaction=False) as pipe:
                for token_id, token_hash in zip(ids, hashes, strict=True):
                    if token_hash is not None:
                        await self._touch(
                            keys=[self._t(token_hash)], args=[repr(uses[token_id])], client=pipe
                        )
                await pipe.execute()

    # -- revoked JWT ids ----------------------------------------------------------------

    async def jti_revoked(self, jti: str) -> bool:
        with _translated():
            return bool(await self._redis.exists(f"{self._p}j:{jti}"))

    async def revoke_jti(self, jti: str, until: float) -> None:
        with _translated():
            # Redis drops the key at "until" (a time already past drops it at once).
            await self._revoke_jti(
                keys=[f"{self._p}j:{jti}"], args=[repr(until), str(math.ceil(until * 1000))]
            )

    # -- accounts -----------------------------------------------------------------------

    async def create_account(self, account: AccountRecord) -> None:
        record = {"id": account.id, "name": account.name, "created_at": account.created_at}
        with _translated():
            created = await self._create_account(
                keys=[self._a(account.id), self._p + "accounts"],
                args=[
                    account.id,
                    repr(account.created_at),
                    json.dumps(record),
                    _grants_json(account.grants),
                ],
            )
        if not created:
            raise DuplicateError(f"account {account.id} already exists")

    async def get_account(self, account_id: str) -> AccountRecord | None:
        with _translated():
            fields = await self._redis.hgetall(self._a(account_id))
        return _account(fields) if fields else None

    async def list_accounts(self) -> builtins.list[AccountRecord]:
        with _translated():
            ids = await self._redis.zrange(self._p + "accounts", 0, -1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for account_id in ids:
                    pipe.hgetall(self._a(account_id))
                rows = await pipe.execute()
        accounts = [_account(fields) for fields in rows if fields]
        return sorted(accounts, key=lambda a: (a.created_at, a.id))

    async def set_account_grants(self, account_id: str, grants: Grants) -> bool:
        with _translated():
            return bool(
                await self._set_if_exists(
                    keys=[self._a(account_id)], args=["grants", _grants_json(grants)]
                )
            )

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)


def _immutable(record: TokenRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "kind": record.kind,
        "stores": list(record.stores),
        "permissions": dict(record.permissions),
        "account_id": record.account_id,
        "tier": record.tier,
        "allow_ips": list(record.allow_ips),
        "created_at": record.created_at,
    }


def _grants_json(grants: Grants) -> str:
    return json.dumps({store: dict(perms) for store, perms in grants.items()}, sort_keys=True)


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _record(fields: Mapping[str, str]) -> TokenRecord:
    data = json.loads(fields["record"])
    return TokenRecord(
        id=data["id"],
        name=data["name"],
        kind="test" if data["kind"] == "test" else "live",
        stores=tuple(data["stores"]),
        permissions=data["permissions"],
        account_id=data["account_id"],
        tier=data["tier"],
        expires_at=_float(fields.get("expires_at")),
        allow_ips=tuple(data["allow_ips"]),
        created_at=float(data["created_at"]),
        last_used_at=_float(fields.get("last_used_at")),
        revoked=fields.get("revoked") == "1",
        revoked_reason=fields.get("revoked_reason"),
        replaced_by=fields.get("replaced_by"),
    )


def _account(fields: Mapping[str, str]) -> AccountRecord:
    data = json.loads(fields["record"])
    return AccountRecord(
        id=data["id"],
        name=data["name"],
        grants=json.loads(fields["grants"]),
        created_at=float(data["created_at"]),
    )
