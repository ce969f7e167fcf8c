"""Stream a large body up and down through a proxy: MB/s and the proxy's peak RSS growth.

The upstream here is a tiny aiohttp.web app (``python benchmarks/streaming.py serve``):

- ``GET /rest/default/V1/products/stream-<N>`` answers N bytes (Content-Length, 256 KiB
  writes of a constant buffer);
- ``POST /rest/default/V1/products`` reads the body as it comes; up to 64 KiB it echoes
  it back (the POST-echo check), past that it answers ``{"received": N}`` without keeping it;
- any other ``GET /rest/default/V1/products/<sku>`` answers the fixed product JSON.

The client is curl (``--noproxy '*'``, 127.0.0.1 only): upload ``-T`` from a sparse file
with a Content-Length, download to /dev/null. RSS of the proxy's process tree is sampled
every 50 ms; growth is the peak over the RSS measured idle, after a small warm-up transfer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from measure import Background, RssSampler
from peers import (
    HOST,
    LOAD_CPU,
    POST_JSON,
    PRODUCT_JSON,
    WORK,
    Proc,
    child_env,
    free_port,
    start,
)
from peers import wait_ready as _wait_ready

CHUNK = 256 * 1024
ECHO_LIMIT = 64 * 1024
UPSTREAM_PREFIX = "/rest/default/V1/products"


# --- the streaming upstream (its own process, on the load core) ---------------------------


def _app() -> object:
    from aiohttp import web

    blob = b"\x00" * CHUNK
    product = PRODUCT_JSON.encode()

    async def get_product(request: web.Request) -> web.StreamResponse:
        sku = request.match_info["sku"]
        if not sku.startswith("stream-"):
            return web.Response(body=product, content_type="application/json")
        size = int(sku.removeprefix("stream-"))
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = size
        await resp.prepare(request)
        left = size
        while left > 0:
            n = min(left, CHUNK)
            await resp.write(blob if n == CHUNK else blob[:n])
            left -= n
        await resp.write_eof()
        return resp

    async def post_product(request: web.Request) -> web.Response:
        kept = bytearray()
        received = 0
        async for chunk in request.content.iter_any():
            received += len(chunk)
            if received <= ECHO_LIMIT:
                kept += chunk
        if received <= ECHO_LIMIT:
            return web.Response(body=bytes(kept), content_type=request.content_type)
        return web.json_response({"received": received})

    app = web.Application()
    app.router.add_get(UPSTREAM_PREFIX + "/{sku}", get_product)
    app.router.add_post(UPSTREAM_PREFIX, post_product)
    return app


def serve(port: int) -> None:
    import uvloop
    from aiohttp import web

    web.run_app(
        _app(),  # type: ignore[arg-type]
        host=HOST,
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def start_upstream(cpu: str = LOAD_CPU) -> Proc:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__)), "serve", "--port", str(port)]
    proc = start("stream-upstream", cmd, cpu=cpu, env={"PYTHONPATH": str(Path(__file__).parent)})
    proc.port = port
    _wait_ready(proc, UPSTREAM_PREFIX + "/probe")
    return proc


# --- the client ---------------------------------------------------------------------------


@dataclass
class Transfer:
    direction: str  # "download" | "upload"
    status: int
    bytes: int
    seconds: float
    mb_s: float
    rss_idle_mb: float
    rss_peak_growth_mb: float
    ok: bool
    note: str = ""
    background: float = 0.0  # foreign CPU share of the machine during the transfer


def _curl(args: list[str], timeout: float, direction: str) -> tuple[int, int, float, str]:
    fmt = "%{http_code} %{size_download} %{size_upload} %{time_total}"
    cmd = ["taskset", "-c", LOAD_CPU, "curl", "-sS", "--noproxy", "*", "--max-time",
           str(int(timeout)), "-w", fmt, *args]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout + 15, env=child_env(), check=False
    )
    parts = out.stdout.strip().split()
    if len(parts) < 4:
        return 0, 0, 0.0, out.stderr.strip()[-200:]
    code, down, up, total = parts[-4:]
    moved = int(float(down if direction == "download" else up))
    return int(code), moved, float(total), out.stderr.strip()[-200:]


def download(port: int, path: str, size: int, headers: list[str], timeout: float) -> tuple:
    args = [a for h in headers for a in ("-H", h)] + [
        "-o",
        os.devnull,
        f"http://{HOST}:{port}{path}",
    ]
    return _curl(args, timeout, "download")


def upload(port: int, path: str, src: Path, headers: list[str], timeout: float) -> tuple:
    out = WORK / "upload-answer.json"
    args = [a for h in headers for a in ("-H", h)] + [
        "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
        "-X", "POST", "-T", str(src), "-o", str(out), f"http://{HOST}:{port}{path}",
    ]  # fmt: skip
    code, moved, seconds, err = _curl(args, timeout, "upload")
    try:
        answer = json.loads(out.read_text() or "{}")
    except (OSError, ValueError):
        answer = {}
    if code == 200 and answer.get("received") != src.stat().st_size:
        err = f"upstream received {answer.get('received')!r} of {src.stat().st_size}"
    return code, moved, seconds, err


def sparse_file(size: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"upload-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        with path.open("wb") as f:
            f.truncate(size)
    return path


def echo_check(port: int, path: str, headers: dict[str, str]) -> str:
    from peers import http_request

    h = {"Content-Type": "application/json", **headers}
    status, body = http_request(port, "POST", path, body=POST_JSON.encode(), headers=h)
    if status == 200 and body == POST_JSON.encode():
        return "ok"
    return f"HTTP {status}, {len(body)} bytes back"


def measure_target(
    proc: Proc, *, get_path: str, post_path: str, size: int, headers: dict[str, str],
    bg: Background,
) -> dict[str, object]:  # fmt: skip
    """Echo check, warm-up, then one download and one upload of ``size`` bytes."""
    hdrs = [f"{k}: {v}" for k, v in headers.items()]
    timeout = max(60.0, size / 20e6)  # never slower than 20 MB/s, or it is a failure
    result: dict[str, object] = {"echo": echo_check(proc.port, post_path, headers)}
    warm = 4_000_000
    download(proc.port, f"{get_path}stream-{warm}", warm, hdrs, 30)
    upload(proc.port, post_path, sparse_file(warm), hdrs, 30)
    transfers = []
    for direction in ("download", "upload"):
        pids = proc.pids()
        bg.wait_quiet(0.05, 20)
        bg.start()
        with RssSampler(pids) as sampler:
            if direction == "download":
                code, moved, secs, err = download(
                    proc.port, f"{get_path}stream-{size}", size, hdrs, timeout
                )
            else:
                code, moved, secs, err = upload(
                    proc.port, post_path, sparse_file(size), hdrs, timeout
                )
        ok = code == 200 and moved == size and not err
        background = bg.share()
        transfers.append(
            Transfer(
                direction=direction,
                status=code,
                bytes=moved,
                seconds=round(secs, 3),
                mb_s=round(moved / secs / 1e6, 1) if secs and ok else 0.0,
                rss_idle_mb=round(sampler.idle / 1e6, 1),
                rss_peak_growth_mb=round(sampler.growth_mb, 2),
                ok=ok,
                note=err,
                background=round(background, 4),
            )
        )
    result["transfers"] = [asdict(t) for t in transfers]
    return result


def run_streaming(
    targets: list[tuple[str, Callable[[str], tuple[Proc, dict[str, str], str]]]],
    size: int,
    log: Callable[[str], None] = print,
) -> list[dict[str, object]]:
    """Each target starter gets the upstream URL and returns (proc, headers, path prefix)."""
    upstream = start_upstream()
    rows: list[dict[str, object]] = []
    try:
        url = f"http://{HOST}:{upstream.port}"
        for name, starter in targets:
            row: dict[str, object] = {"config": name, "bytes": size}
            try:
                proc, headers, prefix = starter(url)
            except Exception as exc:
                row["skipped"] = str(exc)[:300]
                log(f"  stream {name}: skipped: {row['skipped']}")
                rows.append(row)
                continue
            try:
                row.update(
                    measure_target(
                        proc,
                        get_path=prefix + "/",
                        post_path=prefix,
                        size=size,
                        headers=headers,
                        bg=Background(lambda proc=proc: proc.pids() + upstream.pids()),
                    )
                )
                for t in row["transfers"]:  # type: ignore[attr-defined]
                    log(
                        f"  stream {name} {t['direction']}: HTTP {t['status']} {t['mb_s']} MB/s "
                        f"RSS +{t['rss_peak_growth_mb']} MB {t['note']}"
                    )
            except Exception as exc:
                row["skipped"] = f"{type(exc).__name__}: {exc}"[:300]
                log(f"  stream {name}: failed: {row['skipped']}")
            finally:
                proc.stop()
            rows.append(row)
    finally:
        upstream.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="the streaming upstream")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.port)


if __name__ == "__main__":
    main()
