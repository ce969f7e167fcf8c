"""Step 3 of the request path on ``auth.kind = "jwt"`` surfaces: who is calling, from an
OAuth 2.0 JWT access token. A bearer token in, a :class:`~proxy.auth.Principal` out.

The token is verified by :class:`~proxy.jwt_auth.JWTVerifier` against the issuer the policy
names (``auth.issuer`` → ``config.toml [issuers.NAME]``), then:

- its ``store_id`` claim is the one store it acts on (required: a partner's token is
  issued for one store); its scopes become grants through the policy's ``[auth.scopes]``;
  its ``partner_tier`` picks the rate-limit tier (unknown or absent: the default tier);
- a ``jti`` on the key store's deny list (``magento-edge tokens revoke-jwt``) is refused,
  seen by every replica within the key-store cache's bound (≤ 1 s);
- the principal's public id is ``jwt:<client_id>:<jti>`` (or a hash prefix of the token
  when it has no ``jti``): never the token.

A signature check costs far more than the rest of the request path (README "Performance"),
so a verified token's claims are cached by the token's SHA-256 until the token's own
``exp``; the deny list is still asked on every request (through its 1 s cache).

Failures: 401 ``WWW-Authenticate: Bearer error="invalid_token"`` with the verifier's
reason (never the token), 503 when the issuer's keys cannot be had; a missing scope is
:func:`insufficient_scope` (403, raised by :func:`proxy.decide.authorize`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachetools import TLRUCache

from .auth import Principal, bearer_token, challenge
from .backends.keystore.cached import CachedKeyStore
from .config import Config, Issuer
from .errors import InsufficientScope, TokenIssuerUnavailable
from .grants import grants_allow
from .policy import Surface
from .types import Access

if TYPE_CHECKING:  # imported when a JWT surface exists: httpx (JWKS) loads only then
    from .jwt_auth import JWTClaims, JWTVerifier, KeySet

__all__ = ["JWTAuthenticator", "insufficient_scope", "scopes_granting"]

_REALM = 'Bearer realm="magento-edge"'


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a verified token gives every request that carries it (cached)."""

    claims: JWTClaims
    token_id: str
    permissions: Mapping[str, Access]
    tier: str | None


class JWTAuthenticator:
    """The JWT side of authentication for every ``jwt`` surface of one config. Trust
    model: a token is hostile until its issuer's key verifies it; the issuer (config) and
    its JWKS endpoint are trusted for keys and claims."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 65536,
        keysets: Mapping[str, KeySet] | None = None,
    ) -> None:
        """``keysets``: issuer name → key set, for tests that drive one; by default one
        :class:`KeySet` per config issuer a policy uses, shared by those policies."""
        self._keysets: dict[str, KeySet] = dict(keysets or {})
        self._verifiers: dict[str, JWTVerifier] = {}
        self._caches: dict[str, TLRUCache[bytes, _Verified]] = {}
        self._clock = clock
        for surface in config.surfaces:
            if surface.jwt is None:
                continue
            from .jwt_auth import JWTVerifier

            issuer = config.issuers[surface.jwt.issuer]  # load_config checked the name
            keys = self._keysets.get(issuer.name)
            if keys is None:
                keys = self._keysets[issuer.name] = _keyset(issuer)
            self._verifiers[surface.name] = JWTVerifier(
                issuer=issuer.issuer,
                audience=issuer.audience,
                keys=keys,
                algorithms=issuer.algorithms,
                leeway=issuer.leeway,
                claim_names=surface.jwt.claims,
                clock=clock,
            )
            # Per surface: claim renames and scope mappings differ between policies.
            self._caches[surface.name] = TLRUCache(cache_size, ttu=_until_exp, timer=clock)

    @property
    def keysets(self) -> Mapping[str, KeySet]:
        return self._keysets

    async def close(self) -> None:
        for keys in self._keysets.values():
            await keys.close()

    async def authenticate(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        surface: Surface,
        keystore: CachedKeyStore,
    ) -> Principal:
        token = bearer_token(headers)
        if token is None:
            raise challenge(
                "This API needs an OAuth 2.0 access token: Authorization: Bearer <JWT>",
                sent=False,
            )
        if not token:
            raise challenge("The Authorization header is not one bearer token.", sent=True)
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cache = self._caches[surface.name]
        verified = cache.get(digest)
        if verified is None:
            verified = await self._verify(token, digest, surface)
            cache[digest] = verified  # until the token's own exp
        claims = verified.claims
        if claims.jti is not None and await keystore.jti_revoked(claims.jti):
            raise challenge("The access token has been revoked.", sent=True)
        return Principal(
            token_id=verified.token_id,
            kind="jwt",
            stores=frozenset((claims.store_id,)) if claims.store_id else frozenset(),
            permissions=verified.permissions,
            tier=verified.tier,
            record=None,
            client_id=claims.client_id,
            store_id=claims.store_id,
        )

    async def _verify(self, token: str, digest: bytes, surface: Surface) -> _Verified:
        from .jwt_auth import InvalidToken, IssuerUnavailable

        try:
            claims = await self._verifiers[surface.name].verify(token)
        except InvalidToken as exc:
            raise challenge(f"The access token is not accepted: {exc}.", sent=True) from None
        except IssuerUnavailable:
            raise TokenIssuerUnavailable(
                "Access tokens cannot be checked right now (the issuer's keys are "
                "unavailable); retry shortly.",
                headers={"Retry-After": "5"},
            ) from None
        if not claims.store_id:
            name = surface.jwt.claims.get("store_id", "store_id") if surface.jwt else "store_id"
            raise challenge(
                f'The access token is not accepted: it has no "{name}" claim naming its store.',
                sent=True,
            )
        tag = _printable(claims.jti) if claims.jti else None
        token_id = f"jwt:{_printable(claims.client_id)}:{tag or digest.hex()[:12]}"
        return _Verified(
            claims=claims,
            token_id=token_id,
            permissions=_permissions(surface, claims.scopes),
            tier=claims.tier if claims.tier in surface.tiers else None,
        )


def scopes_granting(surface: Surface, resource: str, access: Access) -> list[str]:
    """The policy's scope names any one of which grants ``resource:access``."""
    return sorted(
        name
        for name, grants in surface.scopes.items()
        if grants_allow(_widest(grants, surface.resources), resource, access)
    )


def insufficient_scope(surface: Surface, resource: str, access: Access) -> InsufficientScope:
    """403 for a JWT whose scopes do not grant the route, with the RFC 6750 §3.1 challenge
    naming the scopes that would."""
    names = scopes_granting(surface, resource, access)
    required = f"{resource}:{access}"
    return InsufficientScope(
        f"This access token's scopes do not grant {required}; it needs one of: "
        f"{', '.join(names) or '(no scope of this API grants it)'}.",
        headers={
            "WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{" ".join(names)}"'
        },
        extra={"required": required, "scopes": names},
    )


def _permissions(surface: Surface, scopes: frozenset[str]) -> dict[str, Access]:
    """The grants of ``scopes`` under the policy's mapping; unknown scopes grant nothing."""
    grants = [grant for name in scopes for grant in surface.scopes.get(name, ())]
    return _widest(grants, surface.resources)


def _widest(grants: Sequence[tuple[str, Access]], resources: Sequence[str]) -> dict[str, Access]:
    # "*" (admin) is spelled out per resource, so that "*:write" beside "orders:read"
    # still grants orders:write (grants_allow looks at the resource's own entry first).
    out: dict[str, Access] = {}
    for resource, access in grants:
        for name in resources if resource == "*" else (resource,):
            if out.get(name) != "write":
                out[name] = access
    return out


def _until_exp(_key: bytes, value: _Verified, _now: float) -> float:
    return value.claims.expires_at


def _keyset(issuer: Issuer) -> KeySet:
    from .jwt_auth import KeySet

    if issuer.jwks_file is not None:
        return KeySet(path=issuer.jwks_file)
    return KeySet(url=issuer.jwks_url, cooldown=issuer.refresh_cooldown, stale_for=issuer.stale_for)


def _printable(value: str) -> str:
    """A claim fit for a log line and a rate-limit key's public id: the issuer signed it,
    but a newline or a megabyte in it must not reach the access log."""
    if value.isascii() and value.isprintable() and len(value) <= 64 and " " not in value:
        return value
    return "h" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
