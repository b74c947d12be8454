"""The timer loop (services.dispatch.timers) against a real Redis: a timer whose handling
waits (an incident's lock held by a stalled step) does not hold back the ones due after it."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from services.dispatch import store, timers
from services.dispatch.timers import run_timers
from tests.helpers import poll_until

from .conftest import settings_for


class Engine:
    """What the loop uses of the dispatcher: its Redis and fire_timer."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.fired: list[str] = []
        self.slow_may_end = asyncio.Event()
        self.blocking = {"ack:slow"}

    async def fire_timer(self, member: str) -> None:
        self.fired.append(member)
        if member in self.blocking:
            await self.slow_may_end.wait()


async def test_a_timer_that_waits_does_not_hold_back_the_next_deadline(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    engine = Engine(redis)
    now = time.time()
    await redis.zadd(store.TIMERS, {"ack:slow": now - 2, "ack:next": now - 1})
    stop = asyncio.Event()
    loop = asyncio.create_task(run_timers(engine, settings_for(clean_redis), stop))  # type: ignore[arg-type]

    async def handled(member: str) -> bool:
        return member in engine.fired and await redis.zscore(store.TIMERS, member) is None

    try:
        await poll_until(lambda: handled("ack:next"), "the next deadline handled", 5)
        assert await redis.zscore(store.TIMERS, "ack:slow") is not None  # still under way
        await asyncio.sleep(0.3)  # scans go on meanwhile: the slow one is not fired twice
        assert engine.fired.count("ack:slow") == 1
        engine.slow_may_end.set()
        await poll_until(lambda: handled("ack:slow"), "the slow one handled once it could", 5)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await redis.aclose()


async def test_timers_under_way_are_cancelled_when_the_loop_stops(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    engine = Engine(redis)
    await redis.zadd(store.TIMERS, {"ack:slow": time.time() - 1})
    stop = asyncio.Event()
    loop = asyncio.create_task(run_timers(engine, settings_for(clean_redis), stop))  # type: ignore[arg-type]
    try:
        await poll_until(lambda: engine.fired == ["ack:slow"], "the timer fired", 5)
        stop.set()
        await asyncio.wait_for(loop, 5)  # does not wait for the handler: it is cancelled
        # leased, not removed: it fires again after its lease, in this or another process
        assert await redis.zscore(store.TIMERS, "ack:slow") is not None
    finally:
        await redis.aclose()


async def test_no_more_timers_are_taken_than_can_be_under_way(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timers, "MAX_FIRING", 2)
    redis = Redis.from_url(clean_redis, decode_responses=True)
    engine = Engine(redis)
    now = time.time()
    await redis.zadd(store.TIMERS, {"ack:slow": now - 3, "ack:a": now - 2, "ack:b": now - 1})
    engine.blocking = {"ack:slow", "ack:a"}
    stop = asyncio.Event()
    loop = asyncio.create_task(run_timers(engine, settings_for(clean_redis), stop))  # type: ignore[arg-type]
    try:
        await poll_until(lambda: len(engine.fired) == 2, "two timers under way", 5)
        await asyncio.sleep(0.3)
        assert sorted(engine.fired) == ["ack:a", "ack:slow"]  # the third waits its turn,
        # unleased: another process may take it meanwhile
        assert await redis.zscore(store.TIMERS, "ack:b") == pytest.approx(now - 1)
        engine.slow_may_end.set()
        await poll_until(lambda: "ack:b" in engine.fired, "the third once there is room", 5)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await redis.aclose()
