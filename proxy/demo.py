"""``magento-edge demo``: the edge on its embedded defaults in front of the bundled Magento
stand-in, with fresh tokens and working ``curl`` lines. Serves until interrupted.

Three APIs answer on one port: the developer API v1 (personal access tokens) on
``127.0.0.1``, the partner API v3 (JWT access tokens) on ``localhost`` (both APIs have an
``/api/v1``, so each answers on its own host name: ``[server] surface_hosts``), and the
storefront (no token) on either.

Everything lives under ``--data-dir`` (default ``.edge-demo/``): the generated
``config.toml``, the SQLite key store, and a throwaway issuer for the partner API: an RSA
key made at each start (``issuer-key.pem``, owner-only) and its public half as
``jwks.json``, which ``[issuers.storeicu] jwks_file`` names. The stand-in's state is in
memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .backends.keystore.base import TokenRecord
from .backends.keystore.sqlite import SQLiteKeyStore
from .config import load_config
from .edge import Edge
from .server import uvicorn_config
from .tokens import generate_token, hash_token

__all__ = ["run_demo"]

POLICIES = Path(__file__).resolve().parent.parent / "policies"
POLICY = POLICIES / "storeoncloud.toml"
PARTNER_POLICY = POLICIES / "storeicu.toml"
STOREFRONT_POLICY = POLICIES / "storefront.toml"
PERMISSIONS = {"products": "write", "orders": "read", "customers": "read", "inventory": "write"}

# The demo's own issuer: plain names, so no token minted here passes for a real platform's.
ISSUER = "magento-edge-demo"
AUDIENCE = "magento-edge-demo-api"
PARTNER_SCOPES = "read_products write_products read_orders"
TOKEN_HOURS = 4
V1_HOST = "127.0.0.1"
V3_HOST = "localhost"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config_text(port: int, magento_port: int) -> str:
    return f"""# Written by `magento-edge demo`; see config.example.toml for every key.
[server]
host = "127.0.0.1"
port = {port}
policies = ["{POLICY}", "{PARTNER_POLICY}", "{STOREFRONT_POLICY}"]
# Both the developer API and the partner API have an /api/v1: each answers on its own host.
surface_hosts = {{ storeoncloud = ["{V1_HOST}"], storeicu = ["{V3_HOST}"] }}

[keystore]
backend = "sqlite"
path = "edge.db"

# The partner API's tokens: signed by the demo's throwaway key (jwks.json, made at start).
[issuers.storeicu]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "jwks.json"

[stores.demo]
name = "Demo Store (Magento stand-in)"
environment = "live"
magento_url = "http://127.0.0.1:{magento_port}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "DEMO_MAGENTO_TOKEN" }}
"""


def _make_issuer(data_dir: Path) -> tuple[Path, str]:
    """A fresh RSA key in ``data_dir`` (owner-only) and its public JWK as ``jwks.json``;
    returns the key file and the key id."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "demo-" + secrets.token_hex(4)
    key_path = data_dir / "issuer-key.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.unlink(missing_ok=True)  # created anew, so the mode below is the file's mode
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig", alg="RS256")
    (data_dir / "jwks.json").write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    return key_path, kid


def _partner_claims(now: int) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + TOKEN_HOURS * 3600,
        "client_id": "demo-app",
        "store_id": "demo",
        "scope": PARTNER_SCOPES,
        "partner_tier": "gold",
        "jti": "demo-" + secrets.token_hex(6),
    }


def _mint_line(key_path: Path, kid: str, jti: str) -> str:
    """A shell line minting another partner token with nothing but Python and pyjwt."""
    claims = (
        f'{{"iss": "{ISSUER}", "aud": "{AUDIENCE}", "iat": t, "exp": t + 3600, '
        '"client_id": "my-app", "store_id": "demo", "scope": "read_customers read_orders", '
        f'"partner_tier": "standard", "jti": "{jti}"}}'
    )
    code = (
        f"import jwt, time; t = int(time.time()); print(jwt.encode({claims}, "
        f'open({json.dumps(str(key_path.resolve()))}).read(), algorithm="RS256", '
        f'headers={{"kid": "{kid}"}}))'
    )
    return f"TOKEN=$({shlex.quote(_python())} -c {shlex.quote(code)})"


def _python() -> str:
    """This interpreter (it has pyjwt and cryptography), relative to the working directory
    when it lives under it (``.venv/bin/python`` after scripts/demo.sh)."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def run_demo(*, port: int, data_dir: Path) -> None:
    for policy in (POLICY, PARTNER_POLICY, STOREFRONT_POLICY):
        if not policy.exists():
            raise SystemExit(f"demo: {policy} not found; run the demo from a checkout")
    data_dir.mkdir(parents=True, exist_ok=True)
    magento_port = _free_port()
    magento_token = secrets.token_urlsafe(24)
    key_path, kid = _make_issuer(data_dir)
    config_path = data_dir / "config.toml"
    config_path.write_text(_config_text(port, magento_port))
    config = load_config(config_path, env={"DEMO_MAGENTO_TOKEN": magento_token})

    keystore = SQLiteKeyStore(config.keystore_path or data_dir / "edge.db")
    token = generate_token("live")
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        name="demo",
        kind="live",
        stores=("demo",),
        permissions=PERMISSIONS,  # type: ignore[arg-type]
        created_at=time.time(),
    )
    asyncio.run(keystore.create(record, hash_token(token)))
    claims = _partner_claims(int(time.time()))
    partner_token = jwt.encode(
        claims, key_path.read_bytes(), algorithm="RS256", headers={"kid": kid}
    )

    # Imported here: the stand-in is a sibling package (not the product), and the demo is
    # the one product command that needs it.
    from magento_standin import create_standin

    standin = create_standin(bearer_tokens=[magento_token])
    edge = Edge.from_config(config, keystore)
    # New at each start: the deny list lives in edge.db, which outlives a demo run.
    minted_jti = "my-app-" + secrets.token_hex(4)
    print(
        _banner(
            port=port,
            magento_port=magento_port,
            config_path=config_path,
            token_id=record.id,
            token=token,
            claims=claims,
            partner_token=partner_token,
            mint=_mint_line(key_path, kid, minted_jti),
            revoke=shlex.join(
                [
                    _python(),
                    "-m",
                    "proxy",
                    "tokens",
                    "revoke-jwt",
                    "--config",
                    str(config_path),
                    minted_jti,
                ]
            ),
        ),
        flush=True,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve_both(edge, standin, port, magento_port))


def _banner(
    *,
    port: int,
    magento_port: int,
    config_path: Path,
    token_id: str,
    token: str,
    claims: dict[str, Any],
    partner_token: str,
    mint: str,
    revoke: str,
) -> str:
    v1 = f"http://{V1_HOST}:{port}/api/v1"
    v3 = f"http://{V3_HOST}:{port}/api/v3"
    shop = f"http://{V3_HOST}:{port}/api/storefront/v3"
    auth = f'-H "Authorization: Bearer {token}"'
    bearer = '-H "Authorization: Bearer $JWT"'
    return f"""magento-edge demo
  edge:             http://127.0.0.1:{port}  (config: {config_path})
  Magento stand-in: http://127.0.0.1:{magento_port}  (its integration token stays inside)

Developer API v1 on {V1_HOST}, token {token_id}: products:write orders:read customers:read
inventory:write on store "demo"
  curl -s {v1}/stores {auth}
  curl -s {v1}/stores/demo/commerce/products/MB-01 {auth}
  curl -sg '{v1}/stores/demo/commerce/products?searchCriteria[pageSize]=2' {auth}
  curl -s -X POST {v1}/stores/demo/commerce/products {auth} \\
       -H "Content-Type: application/json" \\
       -d '{{"product":{{"sku":"DEMO-1","name":"Demo","price":9}}}}'
  curl -s {v1}/stores/demo/commerce/orders/1 {auth}
  curl -s {v1}/stores/demo/commerce/integration/admin/token -X POST {auth}   # 403: denied route
  curl -s {v1}/stores/demo/commerce/products/MB-01                 # 401: no token
  curl -s {v1}/openapi.json | head -c 300

Partner API v3 on {V3_HOST}: a JWT access token signed by the demo's own issuer, valid
{TOKEN_HOURS} hours, with these claims:
  {json.dumps(claims)}
Set it in your shell first:
  export JWT={partner_token}
  curl -s '{v3}/products?limit=2' {bearer}
  curl -s {v3}/products/MB-01 {bearer}
  curl -s '{v3}/orders?page=1&limit=1' {bearer}
  curl -s {v3}/products/NO-SUCH-SKU {bearer}   # 404: Magento's error, in the envelope
  curl -s {v3}/customers/1 {bearer}            # 403: insufficient_scope
  curl -s -X PUT {v3}/orders/1 {bearer}        # 501: no Magento equivalent
  curl -s http://{V3_HOST}:{port}/api/v2/products {bearer}   # 410: v2 is retired
  curl -s {v3}/products                                          # 401: no token
  (curl -i shows X-Rate-Limit-Limit/-Remaining/-Reset and WWW-Authenticate.)

Another partner token, other scopes (Python and pyjwt only; the key is the demo's):
  {mint}
  curl -s {v3}/customers/1 -H "Authorization: Bearer $TOKEN"
Revoke it by its jti (refused within 1 s):
  {revoke}

Storefront (no token; the store from X-Store-Id):
  curl -s -X POST {shop}/cart -H 'X-Store-Id: demo'    # a guest cart's id

Every request prints one access-log line below: time, request id, client, method, route
template, status, then store, token id (never the token), bytes and milliseconds.
Ctrl-C stops both servers.
"""


async def _serve_both(edge: Edge, standin: object, port: int, magento_port: int) -> None:
    servers = [
        uvicorn.Server(uvicorn_config(standin, "127.0.0.1", magento_port, log_level="warning")),
        # uvicorn's own start-up lines would only repeat the URLs printed above.
        uvicorn.Server(uvicorn_config(edge, "127.0.0.1", port, log_level="warning")),
    ]
    await asyncio.gather(*(s.serve() for s in servers))
