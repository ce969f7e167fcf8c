"""Drive load with ``wrk`` (Debian's package) and read its results as JSON.

A Lua script sets the method, body and headers. Static requests (every GET, unkeyed
POSTs) are pre-built once by wrk; only when each request needs a unique
``Idempotency-Key`` does the script define ``request()``, which formats one per call
(``<nonce>-<thread>-<counter>``). ``done()`` prints one JSON line with the request count,
errors and latency percentiles in microseconds.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from measure import cpu_seconds
from peers import HOST, LOAD_CPU, WORK, Proc, child_env

LUA = r"""
local method = os.getenv("BENCH_METHOD") or "GET"
local auth = os.getenv("BENCH_AUTH")
local keyed = os.getenv("BENCH_IDEMPOTENCY") == "1"
local nonce = os.getenv("BENCH_NONCE") or "n"
local body_file = os.getenv("BENCH_BODY_FILE")
local body = nil
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end

wrk.method = method
wrk.body = body
if auth and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
if body then wrk.headers["Content-Type"] = "application/json" end

local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

if keyed then
  local counter = 0
  function request()
    counter = counter + 1
    wrk.headers["Idempotency-Key"] = nonce .. "-" .. tostring(tid) .. "-" .. tostring(counter)
    return wrk.format()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass
class Request:
    """What each wrk request looks like."""

    path: str
    method: str = "GET"
    body: bytes | None = None
    token: str | None = None
    idempotency: bool = False


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int  # socket errors + timeouts
    non_2xx: int  # status >= 400
    raw: dict[str, float] = field(default_factory=dict)


def _script() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "bench.lua"
    if not path.exists() or path.read_text() != LUA:
        path.write_text(LUA)
    return path


def run_wrk(
    port: int, req: Request, *, connections: int, duration: float, threads: int = 1,
    cpu: str = LOAD_CPU, timeout_s: int = 5,
) -> WrkResult:  # fmt: skip
    """One bounded wrk run against ``127.0.0.1:port``; raises RuntimeError on failure."""
    env = {"BENCH_METHOD": req.method, "BENCH_NONCE": uuid.uuid4().hex[:12]}
    if req.token:
        env["BENCH_AUTH"] = req.token
    if req.idempotency:
        env["BENCH_IDEMPOTENCY"] = "1"
    if req.body is not None:
        body_file = WORK / "bench-body.json"
        body_file.write_bytes(req.body)
        env["BENCH_BODY_FILE"] = str(body_file)
    threads = max(1, min(threads, connections))
    secs = max(1, round(duration))
    cmd = [
        "taskset", "-c", cpu, "wrk", "-t", str(threads), "-c", str(connections),
        "-d", f"{secs}s", "--timeout", f"{timeout_s}s", "-s", str(_script()),
        f"http://{HOST}:{port}{req.path}",
    ]  # fmt: skip
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=child_env(env), timeout=secs + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk did not finish within {secs + 30}s") from exc
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    dur = raw["duration_us"] / 1e6
    return WrkResult(
        requests=raw["requests"],
        duration_s=dur,
        rps=raw["requests"] / dur if dur else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
        non_2xx=raw["status_errors"],
        raw=raw,
    )


def cpu_point(
    label: str, proc: Proc, req: Request, *, connections: int, duration: float
) -> tuple[float, float]:
    """One wrk run against ``proc``: (its CPU µs per request, req/s); RuntimeError when any
    answer was not 2xx or wrk saw errors (benchmarks/breakdown.py and ab.py)."""
    before = cpu_seconds(proc.pids())
    result = run_wrk(proc.port, req, connections=connections, duration=duration)
    used = cpu_seconds(proc.pids()) - before
    if result.non_2xx or result.errors or not result.requests:
        raise RuntimeError(f"{label}: {result.non_2xx} non-2xx, {result.errors} errors")
    return used / result.requests * 1e6, result.rps
