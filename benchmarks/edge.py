"""Configure, provision and start ``magento-edge serve`` in each benchmark mode.

Modes (one edge process each, one worker, pinned like every other proxy):

- ``edge-pass``: no authentication. With ``serve --no-auth`` if the CLI offers it,
  otherwise through the policy's own switch (``[auth] kind = "none"``);
- ``edge-full``: bearer token + scope + rate limit, memory rate-limit/idempotency backends;
- ``edge-full-log``: ``edge-full`` with the edge's access log on (its default; every other
  mode and every peer runs without an access log, so this row prices the log alone);
- ``edge-nolimit``: ``edge-full`` with rate limits off (``[ratelimit] backend = "none"``):
  the reference that prices the limiter, memory (``edge-full``) and Redis (``edge-redis``);
- ``edge-redis``: ``edge-full`` with Redis rate-limit, idempotency and key-store backends
  (our own redis-server on a free loopback port).

Each mode gets its own directory under ``benchmarks/.work/`` with ``edge.toml``, its key
store and a token made with ``magento-edge tokens create`` (the last line it prints). The
edge runs the shipped v1 policy (``policies/storeoncloud.toml``, all 385 Magento routes:
what an operator runs); ``edge-pass`` gets a copy with authentication off. ``--edge-policy``
in run.py swaps in another file; the small generated policy below (the two routes the
benchmark calls) is used only when the shipped one is missing.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from peers import HOST, PROXY_CPU, ROOT, VENV_BIN, WORK, Proc, child_env, free_port, start
from peers import wait_ready as _wait_ready

STORE = "acme"
PUBLIC_PREFIX = f"/api/v1/stores/{STORE}/commerce/products"
GET_PATH = PUBLIC_PREFIX + "/24-MB01"
MAGENTO_TOKEN = "bench-magento-integration-token"  # noqa: S105 - a stand-in, never checked
MODES = ("edge-pass", "edge-full", "edge-full-log", "edge-nolimit", "edge-redis")

POLICY = """\
# Benchmark surface: the two product routes the benchmark calls, one generous tier.
resources = ["products"]

[surface]
name = "bench"
title = "magento-edge benchmark surface"
version = "1.0.0"
base_path = "/api/v1"

[auth]
kind = "{auth}"

[ratelimit]
default_tier = "internal"

[ratelimit.tiers.internal]
rate = 1000000000
period = 1
burst = 1000000000

[[mounts]]
name = "commerce"
path = "/stores/{{store}}/commerce"
upstream = "magento"
target = "/rest/{{store_code}}/V1"
routes = "commerce"

[[routes.commerce]]
method = "GET"
path = "/products/{{sku}}"
resource = "products"
summary = "Read a product"

[[routes.commerce]]
method = "POST"
path = "/products"
resource = "products"
summary = "Create a product"
"""

CONFIG = """\
[server]
host = "{host}"
port = {port}
policies = ["{policy}"]
trusted_proxies = []

[keystore]
{keystore}

[ratelimit]
backend = "{rl_backend}"
{redis_url}
[idempotency]
backend = "{backend}"
{redis_url}
[stores.{store}]
name = "Acme"
environment = "live"
magento_url = "{magento}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
timeouts = {{ connect = 2.0, read = 60.0 }}
# One store takes every connection (128 at most here): as the bare proxies, and as the
# edge before per-store pools (one pool of [server] max_connections = 512).
max_connections = 512

[upstreams.panel]
url = "{panel}"

[logging]
level = "info"
access_log = {access_log}

[admin]
port = 0                           # each edge its own (ephemeral) admin listener
"""


def edge_binary() -> Path:
    return VENV_BIN / "magento-edge"


@cache
def serve_help() -> tuple[bool, str]:
    """(works, help text or the reason it does not) for ``magento-edge serve --help``."""
    binary = edge_binary()
    if not binary.exists():
        return False, f"{binary} not installed"
    try:
        out = subprocess.run(
            [str(binary), "serve", "--help"], capture_output=True, text=True, timeout=30,
            env=child_env(), check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, "`magento-edge serve --help` did not answer within 30 s"
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0:
        last = text.splitlines()[-1] if text else f"exit {out.returncode}"
        return False, f"`magento-edge serve --help` fails: {last}"
    return True, text


def _write(
    mode: str, magento_url: str, panel_url: str, redis_url: str | None, policy: Path | None
) -> tuple[Path, int]:
    d = WORK / f"{mode}-{free_port()}"
    d.mkdir(parents=True, exist_ok=True)
    shipped = repo_policy()
    if policy is None and shipped is not None:
        # The shipped v1 policy (all 385 Magento routes): what an operator runs.
        policy = shipped
        if mode == "edge-pass":
            # Pass-through: the same policy with authentication off; anonymous traffic is
            # limited per address with the default tier, so make that the internal one.
            text = shipped.read_text()
            text = text.replace('kind = "pat"', 'kind = "none"', 1)
            text = text.replace('default_tier = "standard"', 'default_tier = "internal"', 1)
            policy = d / "pass-policy.toml"
            policy.write_text(text)
    elif policy is None:
        policy = d / "bench-policy.toml"
        policy.write_text(POLICY.format(auth="none" if mode == "edge-pass" else "pat"))
    port = free_port()
    config = d / "edge.toml"
    config.write_text(
        CONFIG.format(
            host=HOST,
            port=port,
            policy=policy,
            backend="redis" if redis_url else "memory",
            rl_backend="redis" if redis_url else ("none" if mode == "edge-nolimit" else "memory"),
            keystore=(
                f'backend = "redis"\nurl = "{redis_url}"\nprefix = "bench:{port}:"'
                if redis_url
                else 'backend = "sqlite"\npath = "edge.db"'
            ),
            redis_url=f'url = "{redis_url}"\n' if redis_url else "",
            store=STORE,
            magento=magento_url,
            panel=panel_url,
            access_log="true" if mode == "edge-full-log" else "false",
        )
    )
    return config, port


def create_token(config: Path) -> str:
    cmd = [
        str(edge_binary()), "tokens", "create", "--config", str(config), "--store", STORE,
        "--permission", "products:read", "--permission", "products:write", "--tier", "internal",
    ]  # fmt: skip
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env({"ACME_MAGENTO_TOKEN": MAGENTO_TOKEN}),
        cwd=str(config.parent),
        check=False,
    )  # fmt: skip
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"tokens create failed ({out.returncode}): {out.stderr.strip()[-200:]}")
    return lines[-1]


def start_edge(
    mode: str, magento_url: str, *, redis_url: str | None = None, cpu: str = PROXY_CPU,
    policy: Path | None = None, name: str | None = None, env: dict[str, str] | None = None,
) -> tuple[Proc, str | None]:  # fmt: skip
    """Start one edge; return (process, token or None). Raise RuntimeError with a reason.
    ``env``: more environment for the edge process (``benchmarks/ab.py``: a PYTHONPATH
    that puts another revision's ``proxy`` package first)."""
    works, help_text = serve_help()
    if not works:
        raise RuntimeError(help_text)
    if mode == "edge-redis" and not redis_url:
        raise RuntimeError("edge-redis needs a redis URL")
    no_auth_flag = mode == "edge-pass" and "--no-auth" in help_text
    config, port = _write(
        mode,
        magento_url,
        panel_url=magento_url,
        redis_url=redis_url if mode == "edge-redis" else None,
        policy=None if mode == "edge-pass" and not no_auth_flag else policy,
    )
    token = None if mode == "edge-pass" else create_token(config)
    cmd = [str(edge_binary()), "serve", "--config", str(config)]
    if no_auth_flag:
        cmd.append("--no-auth")
    proc = start(
        name or mode, cmd, cpu=cpu, env={"ACME_MAGENTO_TOKEN": MAGENTO_TOKEN, **(env or {})},
        cwd=config.parent,
    )  # fmt: skip
    proc.port = port
    proc.meta["config"] = str(config)
    if mode == "edge-pass":
        proc.meta["pass_through"] = "--no-auth flag" if no_auth_flag else "policy auth.kind=none"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        _wait_ready(proc, GET_PATH, headers=headers, timeout=30)
    except RuntimeError:
        proc.stop()
        raise
    return proc, token


def repo_policy() -> Path | None:
    path = ROOT / "policies" / "storeoncloud.toml"
    return path if path.exists() else None
