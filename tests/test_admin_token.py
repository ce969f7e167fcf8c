"""proxy.admin_token: a Magento admin token fetched, refreshed before expiry and once on a
401, never more often than the interval, with 2FA said as such. Real HTTP to the stand-in
on loopback; the stand-in (Magento's clock) and the edge share one injected clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from magento_standin import MagentoStandin, create_standin
from proxy.admin_token import AdminTokenAuth, AdminTokenError, login_failure
from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import AdminCredential, Store, Timeouts, load_config
from proxy.edge import Edge
from proxy.tokens import generate_token, hash_token
from tests.conftest import wait_for
from tests.servers import ThreadServer, serving

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pw-" + "9" * 12
LOGIN = ("POST", "/V1/integration/admin/token")


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def _logins(standin: MagentoStandin) -> int:
    return sum(1 for r in standin.requests if r["raw_path"].endswith(b"/integration/admin/token"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def magento(clock: Clock) -> Iterator[tuple[MagentoStandin, ThreadServer]]:
    standin = create_standin(admin_users={"ops": PASSWORD}, admin_token_minutes=60, clock=clock)
    with serving(standin) as server:
        yield standin, server


def _store(url: str, password: str = PASSWORD, interval: float = 30.0) -> Store:
    return Store(
        id="acme",
        name="Acme",
        environment="live",
        magento_url=url,
        store_code="default",
        credential=AdminCredential("ops", password, min_refresh_interval=interval),
        timeouts=Timeouts(connect=2.0, read=5.0),
    )


async def _works(url: str, value: str) -> int:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{url}/rest/V1/products/MB-01", headers={"Authorization": value})
        return r.status_code


async def test_token_is_fetched_once_and_used(
    magento: tuple[MagentoStandin, ThreadServer], clock: Clock
) -> None:
    standin, server = magento
    auth = AdminTokenAuth(_store(server.url), clock=clock)
    try:
        assert auth.authorization("GET", "x") is None  # nothing yet: the caller refreshes
        await asyncio.gather(*(auth.refresh() for _ in range(5)))  # concurrent: one login
        value = auth.authorization("GET", "x")
        assert value is not None and value.startswith("Bearer ")
        assert _logins(standin) == 1
        assert await _works(server.url, value) == 200
    finally:
        await auth.close()


async def test_refreshed_before_expiry_while_the_old_token_still_works(
    magento: tuple[MagentoStandin, ThreadServer], clock: Clock
) -> None:
    standin, server = magento
    auth = AdminTokenAuth(_store(server.url), clock=clock)
    try:
        await auth.refresh()
        first = auth.authorization("GET", "x")
        clock.now += 3600 - 299  # inside the last 5 minutes of the JWT's hour
        assert auth.authorization("GET", "x") == first  # still served meanwhile
        await auth.refresh()  # the background login started above; wait for it
        second = auth.authorization("GET", "x")
        assert second is not None and second != first
        assert _logins(standin) == 2
        clock.now += 300  # the first token has expired at Magento; the new one works
        assert await _works(server.url, first or "") == 401
        assert await _works(server.url, second) == 200
    finally:
        await auth.close()


async def test_an_expired_token_is_never_sent(
    magento: tuple[MagentoStandin, ThreadServer], clock: Clock
) -> None:
    _, server = magento
    auth = AdminTokenAuth(_store(server.url), clock=clock)
    try:
        await auth.refresh()
        clock.now += 3601
        assert auth.authorization("GET", "x") is None
        await auth.refresh()
        assert await _works(server.url, auth.authorization("GET", "x") or "") == 200
    finally:
        await auth.close()


async def test_a_401_refreshes_once_per_interval(
    magento: tuple[MagentoStandin, ThreadServer], clock: Clock
) -> None:
    standin, server = magento
    auth = AdminTokenAuth(_store(server.url, interval=30), clock=clock)
    try:
        await auth.refresh()
        clock.now += 31
        auth.rejected()
        auth.rejected()  # a burst of 401s: one login
        await auth.refresh()
        assert _logins(standin) == 2
        clock.now += 10
        auth.rejected()  # within the interval: nothing
        await auth.refresh()
        assert _logins(standin) == 2
        clock.now += 30
        auth.rejected()
        await auth.refresh()
        assert _logins(standin) == 3
    finally:
        await auth.close()


async def test_wrong_password_backs_off_and_says_why(
    magento: tuple[MagentoStandin, ThreadServer], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    standin, server = magento
    auth = AdminTokenAuth(_store(server.url, password="wrong-password", interval=30), clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="magento_edge.credentials"):
            await auth.refresh()
        assert auth.authorization("GET", "x") is None
        assert auth.last_error is not None and auth.last_error.kind == "credentials"
        assert "refused the admin username or password" in caplog.text
        assert "wrong-password" not in caplog.text
        # Magento locks an admin after six failures: the edge waits 30, 60, 120 s...
        for wait, expected in ((29, 1), (2, 2), (59, 2), (2, 3), (119, 3), (2, 4)):
            clock.now += wait
            await auth.refresh()
            assert _logins(standin) == expected, (wait, expected)
    finally:
        await auth.close()


async def test_two_factor_auth_is_named(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    standin = create_standin(admin_users={"ops": PASSWORD}, two_factor=True, clock=clock)
    with serving(standin) as server:
        auth = AdminTokenAuth(_store(server.url), clock=clock)
        try:
            with caplog.at_level(logging.WARNING, logger="magento_edge.credentials"):
                await auth.refresh()
        finally:
            await auth.close()
    assert auth.last_error is not None and auth.last_error.kind == "two_factor"
    assert "Two-Factor Authentication" in str(auth.last_error)
    assert 'kind "oauth1"' in str(auth.last_error)
    assert "Two-Factor Authentication" in caplog.text


async def test_unreachable_magento() -> None:
    from tests.servers import free_port

    auth = AdminTokenAuth(_store(f"http://127.0.0.1:{free_port()}"))
    try:
        await auth.refresh()
    finally:
        await auth.close()
    assert auth.last_error is not None and auth.last_error.kind == "unreachable"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, b'{"message":"Please ask an administrator with sufficient access to configure 2FA first"}', "two_factor"),
        (400, b'{"message":"Please use the 2fa provider-specific endpoints to obtain a token."}', "two_factor"),
        (401, b'{"message":"You are required to configure personal Two-Factor Authorization in order to login. Please check your email."}', "two_factor"),
        (401, b'{"message":"The account sign-in was incorrect or your account is disabled temporarily."}', "credentials"),
        (500, b"<html>oops</html>", "unexpected"),
        (200, b'{"not": "a token"}', "unexpected"),
    ],
)  # fmt: skip
def test_login_failures_are_classified(status: int, body: bytes, kind: str) -> None:
    error = login_failure(status, body)
    assert isinstance(error, AdminTokenError) and error.kind == kind


def test_through_the_edge_expiry_and_revocation(tmp_path: Path, clock: Clock) -> None:
    """The edge logs in on the first request, refreshes before the token's hour is up,
    and logs in again after Magento answers 401 to a token it no longer knows."""
    standin = create_standin(admin_users={"ops": PASSWORD}, admin_token_minutes=60, clock=clock)
    with serving(standin) as magento:
        (tmp_path / "config.toml").write_text(
            f"""
[server]
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
[keystore]
path = "edge.db"
[logging]
access_log = false
[stores.acme]
magento_url = "{magento.url}"
credential = {{ kind = "admin", username_env = "U", password_env = "P", min_refresh_seconds = 5 }}
"""
        )
        config = load_config(tmp_path / "config.toml", env={"U": "ops", "P": PASSWORD})
        token = generate_token("live")
        ks = SQLiteKeyStore(str(config.keystore_path))
        record = TokenRecord(
            id="tok_a", name="a", kind="live", stores=("acme",), permissions={"products": "read"}
        )
        asyncio.run(ks.create(record, hash_token(token)))
        asyncio.run(ks.close())
        edge = Edge.from_config(config, SQLiteKeyStore(str(config.keystore_path)), clock=clock)
        with (
            serving(edge) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}
            ) as client,
        ):
            auth = edge._auths["acme"]
            assert isinstance(auth, AdminTokenAuth)
            url = "/api/v1/stores/acme/commerce/products/MB-01"
            assert client.get(url).status_code == 200
            assert _logins(standin) == 1
            clock.now += 3600 - 200
            assert client.get(url).status_code == 200  # the old token, refresh started
            assert wait_for(lambda: auth.logins == 2)  # the edge holds the new token
            clock.now += 300  # past the first token's expiry
            assert client.get(url).status_code == 200
            assert _logins(standin) == 2
            standin._admin_tokens.clear()  # Magento forgets every token (revoked)
            clock.now += 10
            r = client.get(url)
            assert r.status_code == 401  # Magento's answer passes through once...
            assert wait_for(lambda: auth.logins == 3)
            assert client.get(url).status_code == 200  # ...and the edge has logged in again
