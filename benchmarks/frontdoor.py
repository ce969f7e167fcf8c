"""What the front door (proxy.frontdoor: header limits, deadline, framing checks) costs:
the same edge served twice, once on the front door's protocol and once on uvicorn's own
httptools protocol, in front of one Magento stand-in; rounds of a bounded loopback load
alternate between them (ABBA order), and the edge process's own CPU time per request
(``utime + stime`` from ``/proc``) is compared: the client's cost is not counted.

    .venv/bin/python benchmarks/frontdoor.py [--rounds 8] [-n 4000] [-c 8]

``--app hello`` serves a minimal ASGI answer instead of the edge: the protocol's share of
a request is largest there (an upper bound on the relative cost). No assertion anywhere:
this prints, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAGENTO_TOKEN = "bench-frontdoor-magento-token"  # noqa: S105 - the stand-in's, local only
PATH = "/api/v1/stores/acme/commerce/products/24-MB01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def _setup(work: Path, magento_port: int) -> tuple[Path, str]:
    from proxy.backends.keystore.base import TokenRecord
    from proxy.backends.keystore.sqlite import SQLiteKeyStore
    from proxy.tokens import generate_token, hash_token

    config = work / "edge.toml"  # the shipped v1 policy; its "internal" tier is never spent
    config.write_text(
        f"""
[server]
policies = ["{ROOT / "policies" / "storeoncloud.toml"}"]
[keystore]
backend = "sqlite"
path = "edge.db"
[logging]
access_log = false
level = "warning"
[stores.acme]
name = "Acme"
environment = "live"
magento_url = "http://127.0.0.1:{magento_port}"
credential = {{ kind = "bearer", token_env = "BENCH_MAGENTO_TOKEN" }}
"""
    )
    token = generate_token("live")
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        name="bench",
        kind="live",
        stores=("acme",),
        permissions={"products": "read"},
        tier="internal",
    )
    store = SQLiteKeyStore(work / "edge.db")
    asyncio.run(store.create(record, hash_token(token)))
    asyncio.run(store.close())
    return config, token


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(protocol: str, port: int, config_path: str, app_kind: str) -> None:
    """A child: the edge (or hello) on ``protocol`` ("frontdoor" or "stock")."""
    import uvicorn

    from proxy.config import load_config
    from proxy.server import build_app, uvicorn_config

    app: Any = _hello if app_kind == "hello" else build_app(load_config(config_path))
    config = uvicorn_config(app, "127.0.0.1", port, log_level="warning")
    if protocol == "stock":
        config.http = "httptools"
    uvicorn.Server(config).run()


async def _load(port: int, request: bytes, n: int, connections: int) -> int:
    """``n`` requests over ``connections`` keep-alive connections; how many were
    answered (2xx, or the stand-in's own 404 for a product it does not hold: forwarded
    all the same)."""
    ok = 0
    per = n // connections

    async def one() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            ok += head[9:10] in (b"2", b"4")  # the stand-in starts empty: Magento's own 404
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return ok


def _probe(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(2000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("-c", type=int, default=8)
    parser.add_argument("--app", choices=("edge", "hello"), default="edge")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        protocol, port, config_path, app_kind = args.serve
        _serve(protocol, int(port), config_path, app_kind)
        return
    sys.path.insert(0, str(ROOT))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_MAGENTO_TOKEN": MAGENTO_TOKEN}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            magento_port = _free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "magento_standin", "--port", str(magento_port),
                 "--bearer-token-env", "BENCH_MAGENTO_TOKEN"], env=env, cwd=ROOT,
            ))  # fmt: skip
            config, token = _setup(Path(tmp), magento_port)
            ports = {"frontdoor": _free_port(), "stock": _free_port()}
            pids = {}
            for protocol, port in ports.items():
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--serve", protocol, str(port), str(config),
                     args.app], env=env, cwd=ROOT,
                )  # fmt: skip
                procs.append(proc)
                pids[protocol] = proc.pid
            for port in (magento_port, *ports.values()):
                _wait(port)
            request = (
                f"GET {PATH} HTTP/1.1\r\nHost: edge.test\r\nAuthorization: Bearer {token}\r\n"
                "Accept: application/json\r\nUser-Agent: bench\r\n\r\n"
            ).encode()
            for protocol in ports:  # warm-up
                asyncio.run(_load(ports[protocol], request, args.n // 4, args.c))
            cost: dict[str, list[float]] = {"frontdoor": [], "stock": []}
            order = ["frontdoor", "stock"]
            for r in range(args.rounds):
                for protocol in order if r % 2 == 0 else order[::-1]:
                    before = _cpu_seconds(pids[protocol])
                    ok = asyncio.run(_load(ports[protocol], request, args.n, args.c))
                    spent = _cpu_seconds(pids[protocol]) - before
                    if ok != args.n // args.c * args.c:
                        answer = _probe(ports[protocol], request)
                        raise SystemExit(f"{protocol}: {ok} of {args.n} answered: {answer!r}")
                    cost[protocol].append(spent / ok * 1e6)
            ratios = [f / s for f, s in zip(cost["frontdoor"], cost["stock"], strict=True)]
            for protocol, values in cost.items():
                print(f"{protocol:9} CPU us/request: median {statistics.median(values):.1f} "
                      f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip
            print(f"front door / stock: median ratio {statistics.median(ratios):.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f}), app={args.app}, "
                  f"n={args.n} x {args.rounds} rounds, {args.c} connections")  # fmt: skip
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
