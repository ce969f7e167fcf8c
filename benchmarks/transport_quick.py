"""A quick, bounded look at the upstream hop alone, without nginx or wrk: the bare raw-ASGI
proxy (``bare_proxy.py``) on aiohttp vs on the edge's own transport, alternating rounds.

    .venv/bin/python benchmarks/transport_quick.py [--requests 3000] [--rounds 3] [--connections 16]

The upstream is a minimal asyncio protocol answering a fixed 200 with a small JSON body
(keep-alive); the client is an asyncio raw-socket load generator in this process, each of
``--connections`` connections sending ``--requests / --connections`` GETs back to back.
Both proxies are real processes served like every Python proxy in the benchmark. Printed
per round and as medians: requests per second and the proxy process's CPU µs per request,
and the ratio transport / aiohttp. Not a substitute for ``run.sh`` (no pinning, no peers):
a sanity figure for the hop alone.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
BODY = b'{"sku":"MB-01","name":"Joust Duffle Bag","price":34}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class _Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:  # GETs without bodies: one answer per head
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_upstream(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Upstream, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


async def _load(port: int, requests: int, connections: int) -> float:
    per = max(1, requests // connections)
    head = f"GET /V1/products/MB-01 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per):
                writer.write(head)
                headers = await reader.readuntil(b"\r\n\r\n")
                if not headers.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(headers[:80])
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(connections))), 120)
    return per * connections / (time.perf_counter() - started)


def _start_proxy(client: str, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bare_proxy.py"), "--port", str(port),
         "--upstream", f"http://127.0.0.1:{upstream_port}", "--client", client],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)  # a process binding its port: poll, bounded above
    proc.kill()
    raise RuntimeError(f"{client} proxy did not start")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args()
    requests = max(100, min(args.requests, 100_000))
    rounds = max(1, min(args.rounds, 10))
    conns = max(1, min(args.connections, 128))
    up_port = _free_port()
    import multiprocessing

    upstream = multiprocessing.Process(target=_serve_upstream, args=(up_port,), daemon=True)
    upstream.start()
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    figures: dict[str, list[tuple[float, float]]] = {"aiohttp": [], "transport": []}
    try:
        for client in figures:
            procs[client] = _start_proxy(client, up_port)
            asyncio.run(_load(procs[client][1], 500, conns))  # warm-up
        for r in range(rounds):
            for client in figures:
                proc, port = procs[client]
                ps = psutil.Process(proc.pid)
                before = sum(ps.cpu_times()[:2])
                rps = asyncio.run(_load(port, requests, conns))
                cpu = sum(ps.cpu_times()[:2]) - before
                us = cpu / ((requests // conns) * conns) * 1e6
                figures[client].append((rps, us))
                print(f"round {r + 1} {client:9} {rps:8,.0f} req/s {us:7.1f} CPU us/req")
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(10)
        upstream.terminate()
        upstream.join(10)
    med = {c: (statistics.median(x[0] for x in f), statistics.median(x[1] for x in f))
           for c, f in figures.items()}  # fmt: skip
    a, t = med["aiohttp"], med["transport"]
    print(f"median aiohttp   {a[0]:8,.0f} req/s {a[1]:7.1f} CPU us/req")
    print(f"median transport {t[0]:8,.0f} req/s {t[1]:7.1f} CPU us/req")
    print(f"transport / aiohttp: {t[0] / a[0]:.2f}x req/s, {t[1] / a[1]:.2f}x CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
