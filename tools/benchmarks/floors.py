"""Floors: what Redis and redis-py alone do over the pipeline's hops, in the services' shape.

F1 moves one message at a time (XADD; XREADGROUP COUNT 1 -> XADD -> XACK; XREADGROUP COUNT 1
-> XACK); F2 the same batched (100 XADDs per pipelined round trip, COUNT 100, one XACK per
batch). Each stage is its own process with its own connection, like the services:
- produce: XADD to stream A (intake's place);
- relay:   read A in a group, XADD to stream B, XACK (dispatch's place);
- consume: read B in a group, XACK (notify's place).
Stages are measured alone against pre-loaded streams (the denominators of the hop ratios)
and together as a chain (the headline F1/F2: messages through both hops per second).

`python -m tools.benchmarks.floors '<spec>'` runs one stage and prints a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from .procs import poll_progress, run_worker
from .stats import first_to_last_rate, progress_rate, stream_id_ms

BATCH = 100
A, B = "bench.a", "bench.b"


# --- the stages (child side) ------------------------------------------------------------


async def produce(r: aioredis.Redis, *, out: str, n: int, payload: bytes,
                  batched: bool) -> tuple[float, float]:
    """Wall and CPU seconds for n XADDs."""
    start, cpu = time.perf_counter(), time.process_time()
    if batched:
        for first in range(0, n, BATCH):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(BATCH, n - first)):
                pipe.xadd(out, {"__data__": payload})
            await pipe.execute()
    else:
        for _ in range(n):
            await r.xadd(out, {"__data__": payload})
    return time.perf_counter() - start, time.process_time() - cpu


async def relay(r: aioredis.Redis, *, src: str, group: str, out: str | None, n: int,
                batched: bool) -> float:
    """Reads `src` in `group` until n entries are acknowledged; re-adds each to `out`.
    Returns the CPU seconds from the first entry read to the last acknowledged."""
    done = 0
    count = BATCH if batched else 1
    cpu: float | None = None
    while done < n:
        reply = await r.xreadgroup(group, "c1", {src: ">"}, count=count, block=1000)
        if not reply:
            continue
        if cpu is None:
            cpu = time.process_time()
        entries = reply[0][1]
        if batched:
            pipe = r.pipeline(transaction=False)
            if out is not None:
                for _, fields in entries:
                    pipe.xadd(out, fields)
            pipe.xack(src, group, *[entry_id for entry_id, _ in entries])
            await pipe.execute()
        else:
            for entry_id, fields in entries:
                if out is not None:
                    await r.xadd(out, fields)
                await r.xack(src, group, entry_id)
        done += len(entries)
    return time.process_time() - (cpu or 0.0)


async def _stage(spec: dict[str, Any]) -> dict[str, Any]:
    r = aioredis.Redis.from_url(spec["url"])
    try:
        await r.ping()
        if spec["stage"] == "produce":
            elapsed, cpu = await produce(r, out=spec["out"], n=spec["n"],
                                         payload=spec["payload"].encode(), batched=spec["batched"])
            return {"elapsed_s": elapsed, "rate": spec["n"] / elapsed, "cpu_s": cpu}
        cpu = await relay(r, src=spec["src"], group=spec["group"], out=spec.get("out"),
                          n=spec["n"], batched=spec["batched"])
        return {"cpu_s": cpu}
    finally:
        await r.aclose()


# --- the parent side --------------------------------------------------------------------


# (figure, CPU milliseconds per message of the process doing the work, or None)
Measured = tuple[float | None, float | None]


def per_message_ms(result: dict[str, Any], n: int) -> float | None:
    cpu = result.get("cpu_s")
    return cpu * 1000 / n if cpu is not None and n else None


async def preload(r: aioredis.Redis, stream: str, n: int, payload: bytes) -> None:
    for first in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(1000, n - first)):
            pipe.xadd(stream, {"__data__": payload})
        await pipe.execute()


async def make_group(r: aioredis.Redis, stream: str, group: str) -> None:
    await r.xgroup_create(stream, group, id="0", mkstream=True)


async def output_rate(r: aioredis.Redis, stream: str) -> tuple[int, float | None]:
    """Entries in `stream` and their rate from the first to the last (server clock)."""
    n = await r.xlen(stream)
    first = await r.xrange(stream, count=1)
    last = await r.xrevrange(stream, count=1)
    if n < 2 or not first or not last:
        return n, None
    span_ms = stream_id_ms(last[0][0]) - stream_id_ms(first[0][0])
    return n, first_to_last_rate(n, 0.0, span_ms / 1000) if span_ms > 0 else None


class Floors:
    def __init__(self, r: aioredis.Redis, url: str, logs: Any, payload: bytes) -> None:
        self.r = r
        self.url = url
        self.logs = logs
        self.payload = payload

    def _spec(self, stage: str, batched: bool, n: int, **kw: Any) -> dict[str, Any]:
        return {"stage": stage, "batched": batched, "n": n, "url": self.url,
                "payload": self.payload.decode(), **kw}

    async def _worker(self, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return await run_worker("tools.benchmarks.floors", spec,
                                log=self.logs / "floors.log", timeout_s=timeout_s)

    async def produce(self, *, batched: bool, n: int) -> Measured:
        await self.r.flushall()
        result = await self._worker(self._spec("produce", batched, n, out=A), 120)
        return float(result["rate"]), per_message_ms(result, n)

    async def relay(self, *, batched: bool, n: int) -> Measured:
        await self.r.flushall()
        await preload(self.r, A, n, self.payload)
        await make_group(self.r, A, "relay")
        result = await self._worker(self._spec("relay", batched, n, src=A, group="relay",
                                               out=B), 120)
        return (await output_rate(self.r, B))[1], per_message_ms(result, n)

    async def consume(self, *, batched: bool, n: int) -> Measured:
        await self.r.flushall()
        await preload(self.r, B, n, self.payload)
        await make_group(self.r, B, "sink")
        task = asyncio.create_task(self._worker(self._spec("consume", batched, n, src=B,
                                                           group="sink"), 120))
        samples = await poll_progress(self.r, B, "sink", n, timeout_s=120)
        result = await task
        return progress_rate(samples, n), per_message_ms(result, n)

    async def chain(self, *, batched: bool, n: int) -> Measured:
        await self.r.flushall()
        await make_group(self.r, A, "relay")
        await make_group(self.r, B, "sink")
        workers = [
            asyncio.create_task(self._worker(self._spec("consume", batched, n, src=B,
                                                        group="sink"), 180)),
            asyncio.create_task(self._worker(self._spec("relay", batched, n, src=A,
                                                        group="relay", out=B), 180)),
        ]
        await asyncio.sleep(0.5)  # both readers blocked on their streams before the first XADD
        workers.append(asyncio.create_task(self._worker(self._spec("produce", batched, n,
                                                                   out=A), 180)))
        samples = await poll_progress(self.r, B, "sink", n, timeout_s=180)
        results = await asyncio.gather(*workers)
        cpu = [per_message_ms(result, n) for result in results]
        return progress_rate(samples, n), (sum(c for c in cpu if c is not None)
                                          if None not in cpu else None)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(_stage(json.loads(sys.argv[1])))) + "\n")
