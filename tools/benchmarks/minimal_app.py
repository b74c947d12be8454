"""Two plain ASGI apps run under uvicorn by the benchmark.

`app`: the floor of intake's HTTP path: reads the body and does one XADD, answers 202.
`zones`: a stand-in for volunteers' `GET /v1/zones?district=` (one zone covering the
benchmark's city), so dispatch's hop reads zones as it does against volunteers without
measuring volunteers; and for its `GET /v1/districts` (those of BENCH_DISTRICTS,
comma-separated), which intake asks before it makes the HTTP path's keys.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import redis.asyncio as aioredis

_redis: aioredis.Redis | None = None


async def _lifespan(receive: Any, send: Any) -> None:
    global _redis
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _redis is not None:
                await _redis.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["path"] == "/healthz":
        await _answer(send, 200, {"status": "ok"})
        return
    body = await _body(receive)
    assert _redis is not None
    await _redis.xadd("bench.minimal", {"__data__": body})
    await _answer(send, 202, {"incident_id": uuid.uuid4().hex, "status": "reported"})


ZONE = {"zone_id": "bench-zone", "name": "Bench zone", "owner_agency_id": "bench-ps",
        "polygon": [[-180.0, -85.0], [180.0, -85.0], [180.0, 85.0], [-180.0, 85.0]]}


async def zones(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    await _body(receive)
    if scope["path"] == "/v1/districts":
        await _answer(send, 200, {"districts": os.environ.get("BENCH_DISTRICTS", "").split(",")})
        return
    await _answer(send, 200, {"status": "ok"} if scope["path"] == "/healthz" else {
        "district": scope["query_string"].decode().partition("district=")[2], "zones": [ZONE]})
