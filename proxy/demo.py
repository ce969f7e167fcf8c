"""``magento-edge demo``: the edge on its embedded defaults in front of the bundled Magento
stand-in, with a fresh token and working ``curl`` lines. Serves until interrupted.

Everything lives under ``--data-dir`` (default ``.edge-demo/``): the generated
``config.toml`` and the SQLite key store. The stand-in's state is in memory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from pathlib import Path

import uvicorn

from .backends.keystore.base import TokenRecord
from .backends.keystore.sqlite import SQLiteKeyStore
from .config import load_config
from .edge import Edge
from .server import uvicorn_config
from .tokens import generate_token, hash_token

__all__ = ["run_demo"]

POLICY = Path(__file__).resolve().parent.parent / "policies" / "storeoncloud.toml"
PERMISSIONS = {"products": "write", "orders": "read", "customers": "read", "inventory": "write"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config_text(port: int, magento_port: int) -> str:
    return f"""# Written by `magento-edge demo`; see config.example.toml for every key.
[server]
host = "127.0.0.1"
port = {port}
policies = ["{POLICY}"]

[keystore]
backend = "sqlite"
path = "edge.db"

[stores.demo]
name = "Demo Store (Magento stand-in)"
environment = "live"
magento_url = "http://127.0.0.1:{magento_port}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "DEMO_MAGENTO_TOKEN" }}
"""


def run_demo(*, port: int, data_dir: Path) -> None:
    if not POLICY.exists():
        raise SystemExit(f"demo: {POLICY} not found; run the demo from a checkout")
    data_dir.mkdir(parents=True, exist_ok=True)
    magento_port = _free_port()
    magento_token = secrets.token_urlsafe(24)
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

    # Imported here: the stand-in is a sibling package (not the product), and the demo is
    # the one product command that needs it.
    from magento_standin import create_standin

    standin = create_standin(bearer_tokens=[magento_token])
    edge = Edge.from_config(config, keystore)
    base = f"http://127.0.0.1:{port}/api/v1"
    auth = f'-H "Authorization: Bearer {token}"'
    print(
        f"""magento-edge demo
  edge:            http://127.0.0.1:{port}  (config: {config_path})
  Magento stand-in: http://127.0.0.1:{magento_port}  (its integration token stays inside)
  token {record.id}: products:write orders:read customers:read inventory:write on store "demo"

Try:
  curl -s {base}/stores {auth}
  curl -s {base}/stores/demo/commerce/products/MB-01 {auth}
  curl -sg '{base}/stores/demo/commerce/products?searchCriteria[pageSize]=2' {auth}
  curl -s -X POST {base}/stores/demo/commerce/products {auth} \\
       -H "Content-Type: application/json" \\
       -d '{{"product":{{"sku":"DEMO-1","name":"Demo","price":9}}}}'
  curl -s {base}/stores/demo/commerce/orders/1 {auth}
  curl -s {base}/stores/demo/commerce/integration/admin/token -X POST {auth}   # 403: denied route
  curl -s {base}/stores/demo/commerce/products/MB-01                 # 401: no token
  curl -s {base}/openapi.json | head -c 300

Every request prints one access-log line below: time, request id, token id (never the
token), method, status, time spent. Ctrl-C stops both servers.
""",
        flush=True,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve_both(edge, standin, port, magento_port))


async def _serve_both(edge: Edge, standin: object, port: int, magento_port: int) -> None:
    servers = [
        uvicorn.Server(uvicorn_config(standin, "127.0.0.1", magento_port, log_level="warning")),
        # uvicorn's own start-up lines would only repeat the URLs printed above.
        uvicorn.Server(uvicorn_config(edge, "127.0.0.1", port, log_level="warning")),
    ]
    await asyncio.gather(*(s.serve() for s in servers))
