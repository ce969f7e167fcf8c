"""A real ``magento-edge demo`` process for the OpenAPI tests (schemathesis, generated SDKs):
a personal access token on the v1 ``internal`` tier (every resource) made with the CLI against the demo's own
key store, and a partner JWT (``internal`` tier, scope ``admin``) signed with the demo's
throwaway issuer key, as the demo's own minting line does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
READY_LINE = "Ctrl-C stops both servers."
# Every resource of the v1 policy: the fuzzer reaches Magento on every documented route
# (tax rules are "settings", CMS pages "design", store config "stores").
V1_PERMISSIONS = (
    "stores", "design", "settings", "email", "domains", "members", "webhooks", "integrations",
    "extensions", "backups", "deployments", "orders", "products", "customers", "inventory",
)  # fmt: skip


@dataclass
class DemoEdge:
    port: int
    data_dir: Path
    pat: str  # v1, on 127.0.0.1
    jwt: str  # v3, on localhost

    @property
    def v1(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def v3(self) -> str:
        return f"http://localhost:{self.port}/api/v3"


@contextmanager
def demo_edge(tmp: Path) -> Iterator[DemoEdge]:
    port = free_port()
    data_dir = tmp / "demo"
    log = tmp / "demo-stderr.txt"
    with log.open("w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "demo",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the banner is flushed before serving
            if READY_LINE in line:
                break
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("the demo did not serve: " + log.read_text()) from None
                time.sleep(0.1)
        yield DemoEdge(port, data_dir, _make_pat(data_dir), _make_jwt(data_dir))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _make_pat(data_dir: Path) -> str:
    permissions = [a for r in V1_PERMISSIONS for a in ("--permission", f"{r}:write")]
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "tokens",
            "create",
            "--config",
            str(data_dir / "config.toml"),
            "--store",
            "demo",
            *permissions,
            "--tier",
            "internal",
            "--name",
            "openapi-tests",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _make_jwt(data_dir: Path) -> str:
    from proxy.demo import AUDIENCE, ISSUER

    kid = json.loads((data_dir / "jwks.json").read_text())["keys"][0]["kid"]
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "client_id": "openapi-tests",
        "store_id": "demo",
        "scope": "admin",
        "partner_tier": "internal",
        "jti": f"openapi-tests-{now}",
    }
    key = (data_dir / "issuer-key.pem").read_bytes()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
