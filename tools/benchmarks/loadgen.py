"""The position load: simulated members' phones sending `PUT /v1/me/position`.

A process of its own, so its CPU is not taken from the loop that measures latency. Each
request carries the next member's own device token (round robin over all of them) and a fix
near the member's team. Two modes:
- `rate`: open loop at a fixed rate (members / report interval), requests fired on schedule
  whether or not earlier ones have answered; SIGUSR1 pauses, SIGUSR2 resumes, SIGTERM ends.
- `max`: closed loop, `concurrency` connections each sending as soon as the last answered,
  for `warmup_s` + `duration_s`; the rate is counted over the last `duration_s`.
It prints a JSON line of cumulative counts every `report_s`, and a final one.

`python -m tools.benchmarks.loadgen '<spec>'`
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .rawhttp import Pool, encode_request

TICK_S = 0.005  # the open loop sends what is due every 5 ms (at 2,000/s: 10 per tick)
WARMUP_MAX_S = 60.0


class Counts:
    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.failed = 0
        self.statuses: dict[str, int] = {}
        self.in_flight = 0
        self.skipped = 0

    def line(self, **extra: Any) -> str:
        return json.dumps({"t": time.time(), "sent": self.sent, "ok": self.ok,
                           "failed": self.failed, "skipped": self.skipped,
                           "in_flight": self.in_flight, "statuses": self.statuses, **extra})


def requests_for(members: list[list[Any]], host: str, seed: int = 3) -> list[bytes]:
    """One pre-encoded request per member: its token and a fix within ~50 m of its team."""
    rng = random.Random(seed)
    out = []
    for token, lat, lon in members:
        body = json.dumps({"lat": round(lat + rng.uniform(-4e-4, 4e-4), 6),
                           "lon": round(lon + rng.uniform(-4e-4, 4e-4), 6),
                           "accuracy_m": 8}, separators=(",", ":")).encode()
        out.append(encode_request("PUT", host, "/v1/me/position", token=token, body=body))
    return out


async def _send(pool: Pool, request: bytes, counts: Counts) -> None:
    counts.sent += 1
    counts.in_flight += 1
    try:
        status, _ = await pool.request(request)
    except Exception as exc:  # refused, reset, timed out: a failed update, counted
        counts.failed += 1
        key = type(exc).__name__
        counts.statuses[key] = counts.statuses.get(key, 0) + 1
    else:
        if status == 200:
            counts.ok += 1
        else:
            counts.failed += 1
        counts.statuses[str(status)] = counts.statuses.get(str(status), 0) + 1
    finally:
        counts.in_flight -= 1


async def _report(counts: Counts, every_s: float, on_gone: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            sys.stdout.write(counts.line() + "\n")
            sys.stdout.flush()
        except OSError:  # a broken pipe: the benchmark is gone, so no load goes on alone
            on_gone()
            return


async def open_loop(pool: Pool, requests: list[bytes], counts: Counts, rate: float,
                    stop: asyncio.Event, running: asyncio.Event) -> None:
    """Fires each member's fix on schedule while `running` is set. A fix due while every
    connection is still waiting for an answer is skipped and counted (`skipped`), as a phone
    whose last report is still under way would skip one: the backlog stays bounded and the
    shortfall is visible."""
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    sent = 0
    member = 0  # round robin over the members, across pauses
    while not stop.is_set():
        if not running.is_set():  # paused: resume on schedule from now, owing nothing
            await running.wait()
            start, sent = time.perf_counter(), 0
        target = int((time.perf_counter() - start) * rate) + 1
        for _ in range(sent, target):
            member = (member + 1) % len(requests)
            if counts.in_flight >= pool.size:
                counts.skipped += 1
                continue
            task = asyncio.create_task(_send(pool, requests[member], counts))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent = max(sent, target)
        await asyncio.sleep(TICK_S)  # what fell due meanwhile goes out on the next tick
    for task in list(tasks):
        task.cancel()


async def closed_loop(pool: Pool, requests: list[bytes], counts: Counts, *, concurrency: int,
                      warmup_s: float, duration_s: float) -> dict[str, Any]:
    """As fast as the server answers. The warm-up lasts `warmup_s` and at least until every
    member has sent once (bounded by WARMUP_MAX_S): phones report every few seconds, so
    the steady state is a server that has seen every token, not the first pass over them."""
    next_request = iter(range(10**12))
    end: float | None = None

    async def worker() -> None:
        while end is None or time.perf_counter() < end:
            await _send(pool, requests[next(next_request) % len(requests)], counts)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    started = time.perf_counter()
    await asyncio.sleep(warmup_s)
    for _ in range(int(WARMUP_MAX_S / 0.05)):
        if counts.sent >= len(requests):
            break
        await asyncio.sleep(0.05)
    ok0, failed0, t0 = counts.ok, counts.failed, time.perf_counter()
    end = t0 + duration_s
    sys.stdout.write(counts.line(measuring=True) + "\n")  # the server's CPU is read from here
    sys.stdout.flush()
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - t0
    return {"rate": (counts.ok - ok0) / elapsed, "failed_rate": (counts.failed - failed0) / elapsed,
            "elapsed_s": elapsed, "warmup_s": t0 - started}


async def main(spec: dict[str, Any], members: list[list[Any]]) -> dict[str, Any]:
    requests = requests_for(members, f"127.0.0.1:{spec['port']}")
    pool = Pool("127.0.0.1", spec["port"], size=spec["concurrency"], timeout_s=10.0)
    counts = Counts()
    stop, running = asyncio.Event(), asyncio.Event()
    running.set()
    loop = asyncio.get_running_loop()
    def finish() -> None:
        stop.set()
        running.set()

    loop.add_signal_handler(signal.SIGTERM, finish)
    loop.add_signal_handler(signal.SIGUSR1, running.clear)  # pause
    loop.add_signal_handler(signal.SIGUSR2, running.set)  # resume
    sys.stdout.write(counts.line(ready=True) + "\n")  # signals are handled from here on
    sys.stdout.flush()
    reporter = asyncio.create_task(_report(counts, spec.get("report_s", 1.0), finish))
    try:
        if spec["mode"] == "max":
            result = await closed_loop(pool, requests, counts, concurrency=spec["concurrency"],
                                       warmup_s=spec["warmup_s"], duration_s=spec["duration_s"])
        else:
            await open_loop(pool, requests, counts, spec["rate"], stop, running)
            result = {}
    finally:
        reporter.cancel()
        pool.close()
    return {"final": True, **json.loads(counts.line()), **result}


if __name__ == "__main__":
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    spec = json.loads(sys.argv[1])
    members = json.loads(Path(spec["members_file"]).read_text())
    sys.stdout.write(json.dumps(runner(main(spec, members))) + "\n")
