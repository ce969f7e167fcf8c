"""Step 6b, for stores with ``credential.kind = "admin"``: a Magento admin token, kept fresh.

Magento admin tokens expire (2.4.4+ issues JWTs whose ``exp`` comes from
``webapi/jwtauth/admin_expiration``; older installs issue opaque tokens that live
``oauth/access_token_lifetime/admin`` hours, 4 by default). The edge logs in with
``POST /V1/integration/admin/token`` (httpx: control-plane HTTP, off the hot path), uses the
token until shortly before it expires, refreshes it in the background while the old one
still works, and refreshes once more when Magento answers 401 to a request that carried it.

Logins are rate-limited: at most one per ``min_refresh_seconds``, doubling after each
failure up to 30 minutes, because Magento locks an admin account for 30 minutes after six
failed logins (``oauth/authentication_lock``) — a wrong password must not lock the account.
With Magento_TwoFactorAuth (bundled with 2.4) that endpoint refuses every admin; the edge
says exactly that rather than a generic 401. Neither the password nor a token is ever logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Literal

import httpx
import jwt

from .config import AdminCredential, Store
from .control_plane import ControlPlaneClient, SharedFetch

__all__ = ["AdminTokenAuth", "AdminTokenError", "login_failure"]

log = logging.getLogger("magento_edge.credentials")

_MAX_BACKOFF = 1800.0  # Magento's own lock-out period
_TWO_FACTOR = (
    "2fa",
    "two-factor",
    "configure 2fa",
)


class AdminTokenError(Exception):
    """Why no admin token could be had. ``str()`` is safe to log and show an operator."""

    def __init__(
        self, kind: Literal["credentials", "two_factor", "unreachable", "unexpected"], text: str
    ) -> None:
        super().__init__(text)
        self.kind = kind


def login_failure(status: int, body: bytes) -> AdminTokenError:
    """Classify Magento's answer to a failed admin login (never echoes the request)."""
    message = ""
    with contextlib.suppress(ValueError, AttributeError):
        doc = json.loads(body)
        message = str(doc.get("message", "")) if isinstance(doc, dict) else ""
    lowered = message.lower()
    if any(word in lowered for word in _TWO_FACTOR):
        return AdminTokenError(
            "two_factor",
            "Magento's Two-Factor Authentication module (Magento_TwoFactorAuth) refuses admin "
            f'tokens from POST /V1/integration/admin/token ("{message}"). Use an integration '
            '(credential kind "oauth1") for this store, or have Magento issue tokens without '
            "2FA for this admin.",
        )
    if status == 401:
        return AdminTokenError(
            "credentials",
            "Magento refused the admin username or password (or the account is locked for 30 "
            "minutes after six failed logins).",
        )
    shown = f': "{message[:200]}"' if message else ""
    return AdminTokenError("unexpected", f"Magento answered the admin login with {status}{shown}.")


class AdminTokenAuth:
    """Trust model: Magento is the operator's; its token answer is believed as given."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        credential = store.credential
        assert isinstance(credential, AdminCredential)
        self._credential = credential
        self._store_id = store.id
        self._url = f"{store.magento_url}/rest/{store.store_code}/V1/integration/admin/token"
        timeout = httpx.Timeout(
            store.timeouts.read, connect=store.timeouts.connect, pool=store.timeouts.pool
        )
        self._clock = clock
        self._http = ControlPlaneClient(timeout, client)
        self._value: str | None = None  # "Bearer <token>"
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._failures = 0
        self._logins = SharedFetch(self._login)
        self.last_error: AdminTokenError | None = None
        self.logins = 0  # successful logins (tests, metrics)

    # -- the request path -----------------------------------------------------------

    def authorization(self, method: str, signed_url: str) -> str | None:
        now = self._clock()
        if self._value is None or now >= self._expires_at:
            return None
        if now >= self._refresh_at:
            self._start_refresh(now)  # the current token still works meanwhile
        return self._value

    async def refresh(self) -> None:
        """Wait for a login in flight, or start one if the interval allows."""
        self._start_refresh(self._clock())
        await self._logins.join()

    def rejected(self) -> None:
        self._start_refresh(self._clock())

    async def close(self) -> None:
        await self._logins.close()
        await self._http.close()

    # -- logging in -----------------------------------------------------------------

    def _start_refresh(self, now: float) -> None:
        # After the n-th failure in a row: the interval times 2**(n-1), at most 30 minutes.
        backoff = 2 ** max(self._failures - 1, 0)
        self._logins.start(now, min(self._credential.min_refresh_interval * backoff, _MAX_BACKOFF))

    async def _login(self) -> None:
        try:
            token = await self.fetch()
        except AdminTokenError as exc:
            self._failures += 1
            self.last_error = exc
            log.warning("store %s: no Magento admin token: %s", self._store_id, exc)
        else:
            self._failures = 0
            self.last_error = None
            self.logins += 1
            now = self._clock()
            expires = _jwt_expiry(token) or now + self._credential.token_lifetime
            lifetime = max(expires - now, 0.0)
            self._value = "Bearer " + token
            self._expires_at = expires
            self._refresh_at = expires - min(300.0, lifetime / 10)

    async def fetch(self) -> str:
        """One login; the token, or :class:`AdminTokenError` saying why not."""
        body = json.dumps(
            {"username": self._credential.username, "password": self._credential.password}
        )
        try:
            response = await self._http.get().post(
                self._url,
                content=body,
                headers={"content-type": "application/json", "accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise AdminTokenError(
                "unreachable", f"cannot reach Magento for an admin token ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise login_failure(response.status_code, response.content)
        try:
            token = json.loads(response.content)
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise login_failure(response.status_code, response.content)
        return token


def _jwt_expiry(token: str) -> float | None:
    """``exp`` of a Magento 2.4.4+ JWT admin token (read, not verified: the edge is the
    token's holder, not its audience); ``None`` for opaque tokens."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
