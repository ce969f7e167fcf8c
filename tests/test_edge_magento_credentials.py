"""The store's Magento credential where the edge is really deployed, end to end.

Real uvicorn servers on loopback: the edge (plain HTTP, or TLS terminated by uvicorn with a
throwaway certificate) in front of the Magento stand-in, whose OAuth 1.0a verifier rebuilds
the signed URL the way Magento does (scheme from TLS or its offloader header, the Host
header, the raw path and query). Every case runs with a bearer integration token, an OAuth
1.0a integration and an admin login, for every method, with ``%2F`` SKUs, bracketed
``searchCriteria`` and non-ASCII query values.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from magento_standin import MagentoStandin, create_standin
from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.tokens import generate_token, hash_token
from tests.servers import self_signed_certificate, serving

REPO = Path(__file__).resolve().parent.parent
BEARER = "integration-" + "c" * 20
OAUTH = ("ck" + "5" * 30, "cs" + "6" * 30, "at" + "7" * 30, "as" + "8" * 30)
ADMIN = ("ops", "s3cret-admin-pw")
ENV = {
    "M_BEARER": BEARER,
    "M_CK": OAUTH[0],
    "M_CS": OAUTH[1],
    "M_AT": OAUTH[2],
    "M_ATS": OAUTH[3],
    "M_ADMIN_USER": ADMIN[0],
    "M_ADMIN_PASSWORD": ADMIN[1],
}
CREDENTIALS = {
    "bearer": '{ kind = "bearer", token_env = "M_BEARER" }',
    "oauth1": (
        '{ kind = "oauth1", consumer_key_env = "M_CK", consumer_secret_env = "M_CS", '
        'access_token_env = "M_AT", access_token_secret_env = "M_ATS" }'
    ),
    "admin": '{ kind = "admin", username_env = "M_ADMIN_USER", password_env = "M_ADMIN_PASSWORD" }',
}
CUSTOM_OFFLOADER = "X-Forwarded-Scheme"


def _standin(offloader: str) -> MagentoStandin:
    return create_standin(
        bearer_tokens=[BEARER],
        oauth1=[OAUTH],
        admin_users=dict([ADMIN]),
        offloader_header=offloader,
    )


class Deployment:
    def __init__(
        self, plain: str, tls: str, ca: str, standins: dict[str, tuple[MagentoStandin, str]]
    ) -> None:
        self.plain = plain
        self.tls = tls
        self.ca = ca
        self.standins = standins  # "" / "-x" -> (stand-in, its URL)
        self.token = ""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("credentials")
    cert = self_signed_certificate(directory)
    standard, custom = _standin("X-Forwarded-Proto"), _standin(CUSTOM_OFFLOADER)
    with ExitStack() as stack:
        m1 = stack.enter_context(serving(standard))
        m2 = stack.enter_context(serving(custom))
        stores = []
        for kind, credential in CREDENTIALS.items():
            stores.append(
                f'[stores.{kind}]\nmagento_url = "{m1.url}"\ncredential = {credential}\n'
                f"timeouts = {{ connect = 2.0, read = 10.0 }}\n"
            )
            stores.append(
                f'[stores.{kind}-x]\nmagento_url = "{m2.url}"\ncredential = {credential}\n'
                f'magento_offloader_header = "{CUSTOM_OFFLOADER}"\n'
            )
        (directory / "config.toml").write_text(
            f"""
[server]
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
trusted_proxies = ["127.0.0.1/32"]
[keystore]
path = "edge.db"
[logging]
access_log = false
{"".join(stores)}
"""
        )
        config = load_config(directory / "config.toml", env=ENV)
        keystore = SQLiteKeyStore(config.keystore_path or "")
        token = generate_token("live")
        record = TokenRecord(
            id="tok_matrix",
            name="matrix",
            kind="live",
            stores=tuple(config.stores),
            permissions={"products": "write"},
        )
        asyncio.run(keystore.create(record, hash_token(token)))
        asyncio.run(keystore.close())
        # The same config behind two listeners: plain HTTP, and TLS straight to the edge
        # (one Edge each: an app's upstream pool belongs to its server's event loop).
        plain = stack.enter_context(
            serving(Edge.from_config(config, SQLiteKeyStore(str(config.keystore_path))))
        )
        tls = stack.enter_context(
            serving(Edge.from_config(config, SQLiteKeyStore(str(config.keystore_path))), tls=cert)
        )
        d = Deployment(
            plain.url, tls.url, cert[0], {"": (standard, m1.url), "-x": (custom, m2.url)}
        )
        d.token = token
        yield d


# (how the request reaches the edge, headers the client or ingress adds, the proto Magento
# must be told)
CASES: dict[str, tuple[str, dict[str, str], str]] = {
    "plain-http": ("plain", {}, "http"),
    "tls-ingress": ("plain", {"X-Forwarded-Proto": "https"}, "https"),
    "tls-ingress-forwarded-host": (
        "plain",
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com"},
        "https",
    ),
    "tls-to-edge": ("tls", {}, "https"),
    # A client (not the ingress) claiming https in a custom offloader header over plain
    # HTTP: the edge drops it and says what really happened.
    "spoofed-offloader": ("plain", {CUSTOM_OFFLOADER: "https"}, "http"),
}
_SKUS = itertools.count(1)
SEARCH = (
    "searchCriteria[filter_groups][0][filters][0][field]=name"
    "&searchCriteria[filter_groups][0][filters][0][value]=%C3%A9t%C3%A9%25"
    "&searchCriteria[filter_groups][0][filters][0][condition_type]=like"
    "&searchCriteria[pageSize]=5&note=caf%C3%A9+cr%C3%A8me"
)


def _client(d: Deployment, listener: str) -> httpx.Client:
    if listener == "tls":
        return httpx.Client(base_url=d.tls, verify=ssl.create_default_context(cafile=d.ca))
    return httpx.Client(base_url=d.plain)


def _seen(standin: MagentoStandin, method: str, raw_path: bytes) -> dict[str, Any]:
    for request in reversed(standin.requests):
        if request["method"] == method and request["raw_path"] == raw_path:
            return dict(request)
    raise AssertionError(f"the stand-in never saw {method} {raw_path!r}")


@pytest.mark.parametrize("offloader", ["", "-x"], ids=["x-forwarded-proto", "custom-offloader"])
@pytest.mark.parametrize("kind", list(CREDENTIALS))
@pytest.mark.parametrize("case", list(CASES))
def test_every_method_and_path_shape_is_accepted_by_magento(
    deployment: Deployment, case: str, kind: str, offloader: str
) -> None:
    listener, extra, proto = CASES[case]
    store = kind + offloader
    standin, magento_url = deployment.standins[offloader]
    base = f"/api/v1/stores/{store}/commerce"
    sku = f"M-{next(_SKUS)}"
    headers = {"Authorization": f"Bearer {deployment.token}", **extra}
    with _client(deployment, listener) as client:
        r = client.get(f"{base}/products/BAG%2F01", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["sku"] == "BAG/01"
        r = client.get(f"{base}/products?{SEARCH}", headers=headers)
        assert r.status_code == 200, r.text
        assert standin.requests[-1]["query"] == SEARCH.encode()  # byte for byte
        r = client.post(
            f"{base}/products", headers=headers, json={"product": {"sku": sku, "price": 3}}
        )
        assert r.status_code == 200, r.text
        r = client.put(f"{base}/products/{sku}", headers=headers, json={"product": {"price": 4}})
        assert (r.status_code, r.json()["price"]) == (200, 4), r.text
        r = client.delete(f"{base}/products/{sku}", headers=headers)
        assert (r.status_code, r.json()) == (200, True), r.text

    seen = _seen(standin, "GET", b"/rest/default/V1/products/BAG%2F01")
    sent = {k.lower(): v for k, v in seen["headers"]}
    assert sent["x-forwarded-proto"] == proto
    if offloader:
        assert sent[CUSTOM_OFFLOADER.lower()] == proto
    # The Host the edge sends (and signs) is the store's magento_url authority.
    assert sent["host"] == magento_url.split("://")[1]
    assert sent["authorization"].split(" ")[0] == ("OAuth" if kind == "oauth1" else "Bearer")
