"""``magento-edge check --probe``: each store's credential tried against its Magento (the
stand-in, served for real on loopback) and reported in Magento's own terms."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from magento_standin import create_standin
from proxy.cli import main
from proxy.config import AdminCredential, BearerCredential, OAuth1Credential, Store, Timeouts
from proxy.probe import ProbeResult, probe_store
from tests.servers import ThreadServer, free_port, serving

REPO = Path(__file__).resolve().parent.parent
OAUTH = OAuth1Credential("k" * 32, "consumer-secret-xyz", "t" * 32, "token-secret-xyz")
SECRETS = ("consumer-secret-xyz", "token-secret-xyz", "bearer-secret-xyz", "admin-pw-xyz")


def _store(url: str, credential: object, offloader: str = "X-Forwarded-Proto") -> Store:
    return Store(
        id="acme",
        name="Acme",
        environment="live",
        magento_url=url,
        store_code="default",
        credential=credential,  # type: ignore[arg-type]
        timeouts=Timeouts(connect=2.0, read=5.0),
        offloader_header=offloader,
    )


@pytest.fixture(scope="module")
def magento() -> Iterator[ThreadServer]:
    standin = create_standin(
        bearer_tokens=["bearer-secret-xyz"],
        oauth1=[
            (
                OAUTH.consumer_key,
                OAUTH.consumer_secret,
                OAUTH.access_token,
                OAUTH.access_token_secret,
            )
        ],
        admin_users={"ops": "admin-pw-xyz"},
    )
    with serving(standin) as server:
        yield server


async def _probe(store: Store) -> ProbeResult:
    async with httpx.AsyncClient() as client:
        result = await probe_store(store, client=client)
    text = repr(result.as_dict())
    for secret in SECRETS:
        assert secret not in text
    return result


@pytest.mark.parametrize(
    "credential",
    [
        BearerCredential("bearer-secret-xyz"),
        OAUTH,
        AdminCredential("ops", "admin-pw-xyz"),
    ],
    ids=["bearer", "oauth1", "admin"],
)
async def test_a_good_credential_is_accepted(magento: ThreadServer, credential: object) -> None:
    result = await _probe(_store(magento.url, credential))
    assert result.ok and result.reachable and result.status == 200, result.verdict
    assert "credential accepted" in result.verdict
    assert result.clock_skew_seconds is not None and abs(result.clock_skew_seconds) < 5
    assert result.warnings == []


async def test_wrong_oauth_secret_is_named(magento: ThreadServer) -> None:
    wrong = OAuth1Credential(OAUTH.consumer_key, "guess", OAUTH.access_token, "token-secret-xyz")
    result = await _probe(_store(magento.url, wrong))
    assert not result.ok and result.status == 401
    assert result.verdict.startswith("Magento rejected the OAuth signature")


async def test_unknown_consumer_key_is_named(magento: ThreadServer) -> None:
    wrong = OAuth1Credential("z" * 32, "a", OAUTH.access_token, "b")
    result = await _probe(_store(magento.url, wrong))
    assert not result.ok
    assert "no integration with this consumer key" in result.verdict


async def test_unknown_bearer_token_is_explained(magento: ThreadServer) -> None:
    result = await _probe(_store(magento.url, BearerCredential("not-known")))
    assert not result.ok and result.status == 401
    assert "treated the request as a guest" in result.verdict
    assert "standalone Bearer tokens" in result.verdict


async def test_wrong_admin_password(magento: ThreadServer) -> None:
    result = await _probe(_store(magento.url, AdminCredential("ops", "nope")))
    assert not result.ok and result.reachable
    assert "refused the admin username or password" in result.verdict


async def test_two_factor_auth_is_said_exactly() -> None:
    standin = create_standin(admin_users={"ops": "admin-pw-xyz"}, two_factor=True)
    with serving(standin) as server:
        result = await _probe(_store(server.url, AdminCredential("ops", "admin-pw-xyz")))
    assert not result.ok
    assert "Two-Factor Authentication module (Magento_TwoFactorAuth)" in result.verdict
    assert "Please use the 2fa provider-specific endpoints" in result.verdict


async def test_a_clock_ahead_of_magentos_is_reported_as_such() -> None:
    # Magento's clock is an hour behind this machine's: the OAuth timestamp is refused.
    standin = create_standin(
        oauth1=[
            (
                OAUTH.consumer_key,
                OAUTH.consumer_secret,
                OAUTH.access_token,
                OAUTH.access_token_secret,
            )
        ],
        clock=lambda: time.time() - 3600,
    )
    with serving(standin) as server:
        result = await _probe(_store(server.url, OAUTH))
    assert not result.ok and result.status == 400
    # The Date header has whole seconds: the skew reads 3600 or 3601.
    assert re.search(r"clock is ahead of Magento's by about 360[01] s", result.verdict)
    assert result.clock_skew_seconds is not None and 3590 < result.clock_skew_seconds < 3610
    assert any(re.search(r"360[01] s ahead of", w) for w in result.warnings)


async def test_a_clock_behind_magentos_works_but_is_warned_about() -> None:
    standin = create_standin(bearer_tokens=["bearer-secret-xyz"], clock=lambda: time.time() + 900)
    with serving(standin) as server:
        result = await _probe(_store(server.url, BearerCredential("bearer-secret-xyz")))
    assert result.ok
    assert any(re.search(r"(899|900) s behind", w) for w in result.warnings)


async def test_offloader_header_mismatch_is_found() -> None:
    # Magento reads X-Forwarded-Scheme; the store says X-Forwarded-Proto (the default).
    standin = create_standin(
        oauth1=[
            (
                OAUTH.consumer_key,
                OAUTH.consumer_secret,
                OAUTH.access_token,
                OAUTH.access_token_secret,
            )
        ],
        offloader_header="X-Forwarded-Scheme",
    )
    with serving(standin) as server:
        wrong = await _probe(_store(server.url, OAUTH))
        right = await _probe(_store(server.url, OAUTH, offloader="X-Forwarded-Scheme"))
    assert wrong.ok  # plain HTTP works either way...
    assert any("offloader_header" in w for w in wrong.warnings)  # ...HTTPS would not
    assert right.ok and right.warnings == []


async def test_unreachable_magento() -> None:
    result = await _probe(_store(f"http://127.0.0.1:{free_port()}", BearerCredential("x")))
    assert not result.ok and not result.reachable
    assert "not reachable" in result.verdict


def _config(tmp_path: Path, magento_url: str, token_env: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[server]
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
[keystore]
path = "edge.db"
[stores.acme]
magento_url = "{magento_url}"
credential = {{ kind = "bearer", token_env = "{token_env}" }}
"""
    )
    return path


def test_check_probe_cli(
    magento: ThreadServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GOOD_TOKEN", "bearer-secret-xyz")
    monkeypatch.setenv("BAD_TOKEN", "not-known")
    assert (
        main(["check", "--config", str(_config(tmp_path, magento.url, "GOOD_TOKEN")), "--probe"])
        == 0
    )
    out = capsys.readouterr().out
    assert "store acme: ok: credential accepted (bearer)" in out
    assert (
        main(["check", "--config", str(_config(tmp_path, magento.url, "BAD_TOKEN")), "--probe"])
        == 1
    )
    out = capsys.readouterr().out
    assert "store acme: FAILED: Magento treated the request as a guest" in out
    assert "bearer-secret-xyz" not in out and "not-known" not in out
    # Without --probe, check never talks to Magento.
    assert main(["check", "--config", str(_config(tmp_path, magento.url, "BAD_TOKEN"))]) == 0


def test_check_probe_json(
    magento: ThreadServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BAD_TOKEN", "not-known")
    path = _config(tmp_path, magento.url, "BAD_TOKEN")
    assert main(["check", "--config", str(path), "--probe", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["stores"] == 1
    [store] = doc["probe"]
    assert store["store"] == "acme" and store["ok"] is False and store["status"] == 401
    assert store["credential"] == "bearer" and store["reachable"] is True
