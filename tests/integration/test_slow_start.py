"""A service whose subscriber is slow to start, on a busy machine, starts all the same.

FastStream waits a hard-coded 3 s for each subscriber's first PING (its subscriber's
`start`), and raises TimeoutError past it: the whole service then died at start-up (uvicorn
exits with 3). The slow subscriber reads all the same; those after it were never started."""

from __future__ import annotations

import asyncio

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.asyncio.client import Redis as AsyncRedisClient

from shared import streams
from shared.bus import consume, consumers_ready, consuming, create_broker
from shared.events import UnitPosition, UnitStatus
from tests.helpers import poll_until
from tests.integration.test_bus import settings, status


async def test_a_subscriber_slower_to_start_than_faststream_waits_does_not_stop_the_service(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pinged = AsyncRedisClient.ping
    slow = {"first": True}

    async def first_ping_slow(self: AsyncRedisClient, **kwargs: object) -> object:
        if slow.pop("first", False):  # the first subscriber's, as the machine is busy
            await asyncio.sleep(3.5)
        return await pinged(self, **kwargs)

    monkeypatch.setattr(AsyncRedisClient, "ping", first_ping_slow)
    cfg = settings(clean_redis)
    broker: RedisBroker = create_broker(cfg)
    seen: list[str] = []

    async def on_status(event: UnitStatus) -> None:
        seen.append(event.unit_id)

    async def on_position(event: UnitPosition) -> None:
        seen.append(f"position {event.unit_id}")

    consume(broker, streams.UNIT_STATUS, UnitStatus, on_status, settings=cfg, group="dispatch")
    consume(broker, streams.UNIT_POSITION, UnitPosition, on_position, settings=cfg,
            group="dispatch")
    redis = Redis.from_url(clean_redis)
    try:
        async with consuming(broker, redis, watch_interval_s=0.2):
            await poll_until(lambda: consumers_ready(broker, redis), "every subscriber reading")
            await broker.publish(status("t1"), stream=streams.UNIT_STATUS.name)
            await poll_until(lambda: seen == ["t1"], "the event handled")
    finally:
        await redis.aclose()
