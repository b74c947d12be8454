"""Intake's HTTP path against a minimal ASGI app that only does one XADD.

Both run under uvicorn in their own process (intake as `python -m services.intake`, the
minimal app as `uvicorn tools.benchmarks.minimal_app:app`) against the same Redis; the same
client (tools.benchmarks.rawhttp, in the benchmark's process) sends the same bodies with the
same number of connections, closed loop: each connection sends its next request when the
last one answered. Requests per second count 2xx answers after a warm-up; every report is
a new incident (its own external_ref and a place no open incident of its category is near).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass

from . import district as sim
from .machine import cpu_seconds
from .rawhttp import Pool, encode_request


@dataclass(frozen=True, slots=True)
class HttpResult:
    rate: float
    failed: int
    statuses: dict[str, int]
    cpu_ms: float | None  # the server process's CPU per answered request




def incident_requests(host: str, tokens: list[str], district: str, n: int,
                      seed: int) -> list[bytes]:
    """`n` reports, each a new incident, spread over several system keys: intake limits each
    key (RATE_LIMIT_SYSTEM, 600/s by default), and this figure is about the path's cost."""
    out = []
    places = sim.incident_places(seed)
    for i, (category, lat, lon) in enumerate(itertools.islice(places, n)):
        token = tokens[i % len(tokens)]
        body = json.dumps({
            "external_ref": f"{district}-{i}", "category": category, "district": district,
            "location": {"lat": round(lat, 6), "lon": round(lon, 6), "address": f"Bench road {i}"},
            "description": "simulated incident for the benchmark",
            "caller": {"phone": "13800000000", "name": "Bench Caller"},
        }, separators=(",", ":")).encode()
        out.append(encode_request("POST", host, "/v1/incidents", token=token, body=body))
    return out


async def closed_loop(port: int, requests: list[bytes], *, concurrency: int, warmup_s: float,
                      duration_s: float, reuse: bool = False,
                      server_pid: int | None = None) -> HttpResult:
    """`reuse`: cycle through `requests` (for an app that ignores the body)."""
    pool = Pool("127.0.0.1", port, size=concurrency, timeout_s=10.0)
    counter = itertools.count()
    ok = failed = 0
    statuses: dict[str, int] = {}
    measuring = False
    end = time.perf_counter() + warmup_s + duration_s

    async def worker() -> None:
        nonlocal ok, failed
        while time.perf_counter() < end:
            i = next(counter)
            if i >= len(requests):
                if not reuse:
                    raise RuntimeError("ran out of prepared requests; prepare more")
                i %= len(requests)
            try:
                status, _ = await pool.request(requests[i])
            except Exception as exc:
                key, good = type(exc).__name__, False
            else:
                key, good = str(status), 200 <= status < 300
            if measuring:
                statuses[key] = statuses.get(key, 0) + 1
                ok += good
                failed += not good

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup_s)
    measuring = True
    t0 = time.perf_counter()
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_seconds(server_pid) if server_pid else None
    pool.close()
    cpu_ms = ((cpu1 - cpu0) * 1000 / (ok + failed)
              if cpu0 is not None and cpu1 is not None and ok + failed else None)
    return HttpResult(rate=ok / elapsed, failed=failed, statuses=statuses, cpu_ms=cpu_ms)
