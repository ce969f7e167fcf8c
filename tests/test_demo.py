"""``magento-edge demo`` as a newcomer runs it: a real process on a free port, and every
``curl`` line it prints sent as printed (with httpx), statuses checked. The partner token's
lines need the ``export JWT=...`` line it prints; the minting one-liner is run by bash."""

from __future__ import annotations

import json
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
READY_LINE = "Ctrl-C stops both servers."

# Every request the demo prints, by (method, host, path and query), and the status it must
# get. A line added to the demo without a row here fails the test, and so does a row whose
# line is gone.
EXPECTED = {
    ("GET", "127.0.0.1", "/api/v1/stores"): 200,
    ("GET", "127.0.0.1", "/api/v1/stores/demo/commerce/products/MB-01"): 200,
    ("GET", "127.0.0.1", "/api/v1/stores/demo/commerce/products?searchCriteria[pageSize]=2"): 200,
    ("POST", "127.0.0.1", "/api/v1/stores/demo/commerce/products"): 200,
    ("GET", "127.0.0.1", "/api/v1/stores/demo/commerce/orders/1"): 200,
    ("POST", "127.0.0.1", "/api/v1/stores/demo/commerce/integration/admin/token"): 403,
    ("GET", "127.0.0.1", "/api/v1/stores/demo/commerce/products/MB-01 (no token)"): 401,
    ("GET", "127.0.0.1", "/api/v1/openapi.json (no token)"): 200,
    ("GET", "localhost", "/api/v3/products?limit=2"): 200,
    ("GET", "localhost", "/api/v3/products/MB-01"): 200,
    ("GET", "localhost", "/api/v3/orders?page=1&limit=1"): 200,
    ("GET", "localhost", "/api/v3/products/NO-SUCH-SKU"): 404,
    ("GET", "localhost", "/api/v3/customers/1"): 403,
    ("PUT", "localhost", "/api/v3/orders/1"): 501,
    ("GET", "localhost", "/api/v2/products"): 410,
    ("GET", "localhost", "/api/v3/products (no token)"): 401,
    ("GET", "localhost", "/api/v3/customers/1 ($TOKEN)"): 200,
    ("POST", "localhost", "/api/storefront/v3/cart (no token)"): 200,
}


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    minted: bool  # sent with the token the one-liner minted ($TOKEN)

    def key(self) -> tuple[str, str, str]:
        parts = urlsplit(self.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if "Authorization" not in self.headers:
            target += " (no token)"
        elif self.minted:
            target += " ($TOKEN)"
        return self.method, parts.hostname or "", target


def parse_curl(line: str, env: dict[str, str]) -> Request:
    """The request a printed ``curl`` line sends (the flags the demo uses)."""
    minted = "$TOKEN" in line
    for name, value in env.items():
        line = line.replace(f"${name}", value)
    words = shlex.split(line, comments=True)
    if "|" in words:
        words = words[: words.index("|")]
    assert words[0] == "curl"
    method = None
    headers: dict[str, str] = {}
    body = None
    url = None
    it = iter(words[1:])
    for word in it:
        if word == "-X":
            method = next(it)
        elif word == "-H":
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(it)
        elif word.startswith("http"):
            url = word
        else:
            assert word in ("-s", "-sg"), f"a flag this test does not know: {word}"
    assert url is not None
    return Request(method or ("POST" if body is not None else "GET"), url, headers, body, minted)


def shell_lines(banner: str) -> list[str]:
    """The banner's command lines, continuation lines joined."""
    joined = banner.replace("\\\n", " ")
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip().startswith(("curl ", "export ", "TOKEN="))
    ]


@dataclass
class Demo:
    port: int
    data_dir: Path
    banner: str
    log: Path
    process: subprocess.Popen[str]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    data_dir = tmp_path / "demo"
    log = tmp_path / "stderr.txt"
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
        lines = []
        for line in process.stdout:  # the banner is printed (and flushed) before serving
            lines.append(line)
            if READY_LINE in line:
                break
        banner = "".join(lines)
        assert READY_LINE in banner, banner + log.read_text()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("the demo did not serve: " + log.read_text()) from None
                time.sleep(0.1)
        yield Demo(port, data_dir, banner, log, process)
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("Ctrl-C did not stop the demo") from None
        finally:
            if process.stdout is not None:
                process.stdout.close()


@pytest.mark.timeout(120)
def test_every_printed_line_gets_its_status(demo: Demo) -> None:
    env: dict[str, str] = {}
    requests: list[Request] = []
    for line in shell_lines(demo.banner):
        if line.startswith("export JWT="):
            env["JWT"] = line.removeprefix("export JWT=")
        elif line.startswith("TOKEN="):
            # The minting one-liner, run as printed: only Python, pyjwt and the key file.
            minted = subprocess.run(
                ["bash", "-c", f'{line}\nprintf %s "$TOKEN"'],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            env["TOKEN"] = minted.stdout.strip()
            assert env["TOKEN"].count(".") == 2, minted.stderr
        else:
            requests.append(parse_curl(line, env))
    assert "JWT" in env and "TOKEN" in env

    seen = {}
    with httpx.Client(timeout=15) as client:
        for req in requests:
            answer = client.request(req.method, req.url, headers=req.headers, content=req.body)
            seen[req.key()] = answer
            expected = EXPECTED.get(req.key())
            assert expected is not None, f"printed but not expected here: {req.key()}"
            assert answer.status_code == expected, (req.key(), answer.text)
    assert set(seen) == set(EXPECTED)

    # What the v3 lines show, beyond their statuses.
    products = seen[("GET", "localhost", "/api/v3/products?limit=2")]
    assert len(products.json()["items"]) == 2  # limit became searchCriteria[pageSize]
    assert products.headers["X-Rate-Limit-Limit"] == "240"  # gold (partner_tier): its burst
    assert int(products.headers["X-Rate-Limit-Reset"]) > time.time() - 5  # epoch seconds
    missing = seen[("GET", "localhost", "/api/v3/products/NO-SUCH-SKU")].json()["error"]
    assert missing["code"] == "RESOURCE_NOT_FOUND" and "magento" in missing["details"]
    scope = seen[("GET", "localhost", "/api/v3/customers/1")]
    assert scope.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert 'error="insufficient_scope"' in scope.headers["WWW-Authenticate"]
    assert "read_customers" in scope.headers["WWW-Authenticate"]
    assert seen[("GET", "localhost", "/api/v2/products")].json()["error"]["code"] == (
        "VERSION_RETIRED"
    )
    minted = seen[("GET", "localhost", "/api/v3/customers/1 ($TOKEN)")]
    assert minted.json()["id"] == 1
    assert minted.headers["X-Rate-Limit-Limit"] == "120"  # standard: its burst
    # The printed revoke line, run as printed: the minted token is refused within the
    # key-store cache's bound (1 s; 3 s allowed here for a loaded machine).
    (revoke,) = [line.strip() for line in demo.banner.splitlines() if "tokens revoke-jwt" in line]
    done = subprocess.run(
        ["bash", "-c", revoke], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "revoked jti my-app-" in done.stdout, done.stderr
    minted_url = next(r.url for r in requests if r.minted)
    deadline = time.monotonic() + 3
    while True:
        again = httpx.get(minted_url, headers={"Authorization": f"Bearer {env['TOKEN']}"})
        if again.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.json()["error"]["message"] == "The access token has been revoked."
    cart = seen[("POST", "localhost", "/api/storefront/v3/cart (no token)")]
    assert len(cart.json()) == 32  # Magento's masked cart id

    # The same path on the other host is the other API: v1 on localhost is the partner
    # API's retired v1, not the developer API.
    retired = httpx.get(f"http://localhost:{demo.port}/api/v1/stores", timeout=15)
    assert retired.status_code == 410

    # One access-log line per request, and no secret in the log.
    time.sleep(0.3)
    log = demo.log.read_text()
    assert log.count("magento_edge.access") >= len(requests)
    pat = next(w for w in demo.banner.split() if w.startswith("soc_pat_"))
    for secret in (pat.rstrip('"'), env["JWT"], env["TOKEN"]):
        assert secret not in log


def test_issuer_files(demo: Demo) -> None:
    """The throwaway key is owner-only; the JWKS beside the config holds its public half."""
    key = demo.data_dir / "issuer-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (jwk,) = json.loads((demo.data_dir / "jwks.json").read_text())["keys"]
    assert jwk["kty"] == "RSA" and "d" not in jwk and jwk["kid"] in demo.banner
    config = (demo.data_dir / "config.toml").read_text()
    assert 'jwks_file = "jwks.json"' in config
    assert 'surface_hosts = { storeoncloud = ["127.0.0.1"], storeicu = ["localhost"] }' in config
