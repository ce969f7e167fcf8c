"""Step 2 of the request path, for surfaces with ``auth.kind = "jwt"``: OAuth 2.0 JWT access
tokens (RFC 9068 profile), verified with pyjwt against the issuer's JWKS.

Trust model: the token is hostile until its signature checks out against a key the issuer
published; the issuer's JWKS endpoint is trusted for keys only.

- Algorithms come from an allowlist (RS256, PS256, ES256, EdDSA by default); ``none`` and
  every HMAC algorithm are refused whatever the token's header says, so a public key can
  never be used as an HMAC secret. The key is chosen by ``kid`` and must fit the algorithm.
- ``iss`` must equal the issuer, ``aud`` must contain the audience, ``exp`` is required;
  ``nbf``/``iat`` are honoured when present, all with a small leeway, on an injected clock
  (pyjwt's own time checks read the system clock, so they are switched off and done here).
- The key set (:class:`KeySet`) is fetched with httpx and cached for the ``Cache-Control``
  ``max-age`` the issuer sends, kept within bounds. An unknown ``kid`` triggers at most one
  refresh per cooldown, shared by every concurrent request (one fetch, not one per request).
  When the issuer cannot be reached the last good key set keeps serving for ``stale_for``
  seconds, and the edge says so in its log; after that, tokens cannot be checked (503).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from .control_plane import ControlPlaneClient, SharedFetch

__all__ = [
    "DEFAULT_ALGORITHMS",
    "InvalidToken",
    "IssuerUnavailable",
    "JWTClaims",
    "JWTVerifier",
    "KeySet",
]

log = logging.getLogger("magento_edge.jwt")

DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
# Never accepted, whatever a policy or token says: no signature, or a shared secret (with an
# asymmetric issuer, the "secret" would be the public key anyone can fetch).
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
_MAX_TOKEN_BYTES = 16 * 1024


class InvalidToken(Exception):
    """The token is not acceptable; ``str()`` says why without echoing it."""


class IssuerUnavailable(Exception):
    """No usable key set: the issuer is unreachable and the last one is too old."""


@dataclass(frozen=True, slots=True)
class JWTClaims:
    """What the edge reads from a verified token (claim names per SPEC §4.2)."""

    subject: str | None
    client_id: str
    store_id: str | None
    scopes: frozenset[str]
    tier: str | None
    jti: str | None
    expires_at: float


class KeySet:
    """An issuer's JWKS: from a URL (cached, refreshed as above) or a local file (fixed)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        path: Path | None = None,
        cooldown: float = 30.0,
        stale_for: float = 86400.0,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        default_ttl: float = 300.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("a key set needs exactly one of url and path")
        self._url = url
        self._cooldown = cooldown
        self._stale_for = stale_for
        self._ttl_bounds = (min_ttl, max_ttl)
        self._default_ttl = default_ttl
        self._clock = clock
        self._http = ControlPlaneClient(httpx.Timeout(timeout), client)
        # kid -> (key, the "alg" the JWK pins or None)
        self._keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched_at = float("-inf")
        self._expires_at = float("-inf")
        self._reason = ""
        self._refreshes = SharedFetch(self._fetch)
        self.fetches = 0  # attempts (tests, metrics)
        self.failures = 0
        self.stale = False  # serving a key set past its max-age because the issuer is down
        if path is not None:
            self._install(json.loads(path.read_text()), ttl=float("inf"))

    async def close(self) -> None:
        await self._refreshes.close()
        await self._http.close()

    async def key(self, kid: str | None) -> tuple[jwt.PyJWK, str | None]:
        """The key for ``kid`` and the algorithm its JWK pins (if any); refreshes when
        the set is old or the kid unknown."""
        now = self._clock()
        if now >= self._expires_at:
            await self._refresh(now, reason="expired")
            now = self._clock()
            if now - self._fetched_at > self._stale_for:
                raise IssuerUnavailable("the issuer's keys cannot be fetched")
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            found = next(iter(self._keys.values()))  # a single key needs no kid
        if found is None:
            await self._refresh(now, reason="unknown kid")
            found = self._keys.get(kid)
        if found is None:
            raise InvalidToken("the token was signed by a key the issuer does not publish")
        return found

    async def probe(self) -> str | None:
        """The readiness probe (issue #12): refresh when due (the usual cooldown applies),
        then ``None`` when usable keys are held and fresh, else why not."""
        if self._url is not None and self._clock() >= self._expires_at:
            await self._refresh(self._clock(), reason="readiness probe")
        if not self._keys:
            return f"no signing keys fetched from {self._url} yet"
        if self.stale:
            return f"serving stale keys: {self._url} failed to answer the last refresh"
        return None

    async def _refresh(self, now: float, *, reason: str) -> None:
        if self._url is None:
            return  # a file: what it holds is all there is
        if self._refreshes.start(now, self._cooldown):
            self._reason = reason  # read by the fetch, which runs from the next loop turn
        await self._refreshes.join()  # one fetch for every waiting request

    async def _fetch(self) -> None:
        assert self._url is not None
        self.fetches += 1
        try:
            response = await self._http.get().get(self._url, headers={"accept": "application/json"})
            response.raise_for_status()
            doc = json.loads(response.content)
            self._install(doc, ttl=self._ttl(response.headers.get("cache-control", "")))
        except (httpx.HTTPError, ValueError, TypeError, jwt.PyJWTError) as exc:
            self.failures += 1
            if self._keys:
                self.stale = self._clock() >= self._expires_at
            log.warning(
                "JWKS %s: refresh (%s) failed: %s%s",
                self._url,
                self._reason,
                type(exc).__name__,
                "; serving the last good key set" if self._keys else "",
            )

    def _ttl(self, cache_control: str) -> float:
        match = _MAX_AGE.search(cache_control)
        ttl = float(match.group(1)) if match else self._default_ttl
        low, high = self._ttl_bounds
        return min(max(ttl, low), high)

    def _install(self, doc: Any, *, ttl: float) -> None:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
            raise ValueError('a JWKS is a JSON object with a "keys" array')
        keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        for entry in doc["keys"]:
            if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("kty") == "oct":
                continue  # a shared secret has no place in a public key set: never used
            try:
                key = jwt.PyJWK(dict(entry))
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue  # a key type or curve this edge cannot use: skip it, keep the rest
            pinned = entry.get("alg")
            kid = entry.get("kid")
            keys[kid if isinstance(kid, str) else None] = (
                key,
                pinned if isinstance(pinned, str) else None,
            )
        if not keys:
            raise ValueError("the JWKS holds no usable signing key")
        now = self._clock()
        self._keys = keys
        self._fetched_at = now
        self._expires_at = now + ttl
        self.stale = False


class JWTVerifier:
    """Verifies one issuer's access tokens. ``clock`` is wall time (claims are epochs)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySet,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        claim_names: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        bad = FORBIDDEN_ALGORITHMS.intersection(algorithms)
        if bad:
            raise ValueError(f"algorithms never allowed: {', '.join(sorted(bad))}")
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.algorithms = frozenset(algorithms)
        self.leeway = leeway
        self.names = {
            "scope": "scope",
            "scp": "scp",
            "store_id": "store_id",
            "client_id": "client_id",
            "partner_tier": "partner_tier",
            "jti": "jti",
            **(claim_names or {}),
        }
        self.clock = clock

    async def verify(self, token: str) -> JWTClaims:
        if len(token) > _MAX_TOKEN_BYTES:
            raise InvalidToken("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("the token's signing algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id is malformed")
        key, pinned = await self.keys.key(kid)
        if (pinned is not None and pinned != alg) or not _compatible(key, alg):
            raise InvalidToken("the token's algorithm does not fit the issuer's key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,  # checked below, on the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f'the token has no "{exc.claim}" claim') from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is not meant for this API (aud)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer (iss)") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token is malformed") from None
        return self._claims(claims)

    def _claims(self, claims: Mapping[str, Any]) -> JWTClaims:
        now = self.clock()
        exp = _number(claims.get("exp"), "exp")
        if exp is None or now > exp + self.leeway:
            raise InvalidToken("the token has expired")
        nbf = _number(claims.get("nbf"), "nbf")
        if nbf is not None and now + self.leeway < nbf:
            raise InvalidToken("the token is not valid yet (nbf)")
        iat = _number(claims.get("iat"), "iat")
        if iat is not None and now + self.leeway < iat:
            raise InvalidToken("the token was issued in the future (iat)")
        n = self.names
        scopes: set[str] = set()
        scope = claims.get(n["scope"])
        if isinstance(scope, str):
            scopes.update(scope.split())
        elif scope is not None:
            raise InvalidToken(f'the "{n["scope"]}" claim must be a space-separated string')
        scp = claims.get(n["scp"])
        if isinstance(scp, list) and all(isinstance(s, str) for s in scp):
            scopes.update(scp)
        elif scp is not None:
            raise InvalidToken(f'the "{n["scp"]}" claim must be a list of strings')
        client_id = claims.get(n["client_id"])
        if not isinstance(client_id, str) or not client_id:
            raise InvalidToken(f'the token has no "{n["client_id"]}" claim')
        return JWTClaims(
            subject=_string(claims, "sub"),
            client_id=client_id,
            store_id=_string(claims, n["store_id"]),
            scopes=frozenset(scopes),
            tier=_string(claims, n["partner_tier"]),
            jti=_string(claims, n["jti"]),
            expires_at=exp,
        )


def _compatible(key: jwt.PyJWK, alg: str) -> bool:
    """The key type each allowed algorithm needs (RFC 7518, RFC 8037)."""
    kty = key.key_type
    if alg in ("RS256", "PS256"):
        return kty == "RSA"
    if alg == "ES256":
        return kty == "EC"
    return alg == "EdDSA" and kty == "OKP"


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f'the "{name}" claim must be a number')
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidToken(f'the "{name}" claim must be a string')
    return value
