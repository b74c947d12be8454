"""Retention: streams are trimmed by age (XTRIM MINID), never past what a group still needs.

Each service trims the streams it produces. An entry goes only when it is older than the
retention (default 30 days, so the command room's history survives) AND every consumer
group has read and acknowledged it: the cut stops before the oldest pending entry and
before the first entry any group has not yet read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import streams

log = logging.getLogger(__name__)


def _id(value: str | bytes) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


async def safe_trim_point(redis: Redis, stream: str, *, retention_s: float,
                          now: float | None = None) -> str:
    """The MINID below which every entry is both old enough and done by every group."""
    if not await redis.exists(stream):
        return "0-0"
    cut = (int(((now or time.time()) - retention_s) * 1000), 0)
    for group in await redis.xinfo_groups(stream):
        name = group["name"]
        cut = min(cut, _id(group["last-delivered-id"]))
        summary = await redis.xpending(stream, name)
        if summary and summary.get("pending"):
            cut = min(cut, _id(summary["min"]))
    return _text(cut)


async def trim_stream(redis: Redis, stream: str, *, retention_s: float) -> int:
    point = await safe_trim_point(redis, stream, retention_s=retention_s)
    if point == "0-0":
        return 0
    return int(await redis.xtrim(stream, minid=point, approximate=False))


async def keep_trimming(redis: Redis, service: str, *, retention_s: float, stop: asyncio.Event,
                        interval_s: float = 600.0, first_after_s: float = 30.0) -> None:
    """Trim this service's streams every `interval_s` until `stop` is set. It stops between
    commands, never in the middle of one (a cancelled command can stall the client)."""
    owned = [s.name for s in streams.produced_by(service)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=first_after_s)
    while not stop.is_set():
        for name in owned:
            if stop.is_set():
                return
            try:
                removed = await trim_stream(redis, name, retention_s=retention_s)
                if removed:
                    log.info("trimmed %d entries older than retention from %s", removed, name)
            except RedisError as exc:
                log.warning("trimming %s failed: %s", name, type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
