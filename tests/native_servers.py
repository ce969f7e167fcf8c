"""A real edge serving the Magento-native mount (sidecar mode) in front of the stand-in,
each a uvicorn server on loopback, for the native tests."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from magento_standin import create_standin
from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import Config, load_config
from proxy.edge import Edge
from proxy.tokens import generate_token, hash_token
from tests.servers import serving

REPO = Path(__file__).resolve().parent.parent
STORE_TOKEN = "integration-" + "n" * 20
CUSTOMER_EMAIL = "roni_cost@example.com"  # the stand-in's customer 1
CUSTOMER_PASSWORD = "roni-password-1"
JWT_ISSUER = "https://auth.store.icu/"
JWT_AUDIENCE = "https://api.store.icu"


class NativeHarness:
    """The edge's URL, its config, the stand-in behind it and a way to mint edge tokens."""

    def __init__(self, url: str, config: Config, standin: Any, edge: Edge) -> None:
        self.url = url
        self.config = config
        self.standin = standin
        self.edge = edge

    def token(self, *permissions: str, stores: tuple[str, ...] = ("shop",)) -> str:
        token = generate_token("live")
        record = TokenRecord(
            id="tok_" + secrets.token_hex(8),
            name="native",
            kind="live",
            stores=stores,
            permissions={p.split(":")[0]: p.split(":")[1] for p in permissions},  # type: ignore[misc]
        )
        store = SQLiteKeyStore(self.config.keystore_path or "")
        asyncio.run(store.create(record, hash_token(token)))
        asyncio.run(store.close())
        return token

    def seen(self, since: int) -> list[Any]:
        """The requests the stand-in received after the first ``since``."""
        return list(self.standin.requests)[since:]

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client of the edge, sending ``token`` as a bearer when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def customer_token(self) -> str:
        """A Magento customer token for the stand-in's customer 1, logged in through the
        edge (``integration/customer/token`` is anonymous on the native mount)."""
        with self.client() as c:
            r = c.post(
                "/rest/default/V1/integration/customer/token",
                json={"username": CUSTOMER_EMAIL, "password": CUSTOMER_PASSWORD},
            )
        assert r.status_code == 200, r.text
        token = r.json()
        assert isinstance(token, str) and token.count(".") == 2  # Magento 2.4.4+: a JWT
        return token


def sent_header(request: Any, name: str) -> list[str]:
    """The values of header ``name`` (lower case) in a request the stand-in recorded."""
    return [v for k, v in request["headers"] if k == name]


def native_config(
    directory: Path, magento_url: str, *, tiers: str = "", jwks: Path | None = None
) -> Path:
    """``tiers``: other tier numbers; ``jwks``: accept JWTs of an issuer with these keys
    (the shipped policy's commented issuer lines, uncommented)."""
    policy = REPO / "policies" / "magento.toml"
    issuer = ""
    if tiers or jwks:  # a copy of the shipped native policy (it names its table's file)
        text = policy.read_text().replace('policy = "storeoncloud.toml"', (
            f'policy = "{REPO / "policies" / "storeoncloud.toml"}"'
        ))  # fmt: skip
        if tiers:
            text = _retier(text, tiers)
        if jwks:
            text = text.replace("# issuer =", "issuer =").replace(
                "# [auth.scopes]", "[auth.scopes]"
            )
            for scope in (
                "read_products",
                "write_products",
                "read_orders",
                "write_orders",
                "admin",
            ):
                text = text.replace(f"# {scope} =", f"{scope} =")
            issuer = (
                f'[issuers.storeicu]\nissuer = "{JWT_ISSUER}"\naudience = "{JWT_AUDIENCE}"\n'
                f'jwks_file = "{jwks}"\n'
            )
        policy = directory / "magento.toml"
        policy.write_text(text)
    path = directory / "config.toml"
    path.write_text(f"""
[server]
policies = ["{REPO / "policies" / "storeoncloud.toml"}", "{policy}"]

[keystore]
backend = "sqlite"
path = "edge.db"

[logging]
access_log = false

[stores.shop]
magento_url = "{magento_url}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "SHOP_TOKEN" }}
native = true
hosts = ["shop.example.com"]
store_codes = ["default", "all", "fr"]

{issuer}

[stores.other]
magento_url = "{magento_url}"
credential = {{ kind = "bearer", token_env = "SHOP_TOKEN" }}
""")
    return path


def _retier(text: str, tiers: str) -> str:
    head, _, rest = text.partition("[ratelimit.tiers.standard]")
    _, _, tail = rest.partition("[native]")
    return head + tiers + "\n[native]" + tail


@contextmanager
def native_edge(
    directory: Path, *, tiers: str = "", jwks: Path | None = None
) -> Iterator[NativeHarness]:
    standin = create_standin(
        bearer_tokens=[STORE_TOKEN],
        customer_passwords={CUSTOMER_EMAIL: CUSTOMER_PASSWORD},
        store_codes=("default", "fr"),
        carts=True,
    )
    with ExitStack() as stack:
        magento = stack.enter_context(serving(standin))
        path = native_config(directory, magento.url, tiers=tiers, jwks=jwks)
        config = load_config(path, env={"SHOP_TOKEN": STORE_TOKEN})
        edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        server = stack.enter_context(serving(edge))
        yield NativeHarness(server.url, config, standin, edge)
