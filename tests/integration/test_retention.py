"""Retention trims by age, and never what a consumer group still needs."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from shared.retention import safe_trim_point, trim_stream

DAY_MS = 86_400_000


async def test_old_entries_done_by_every_group_go_and_the_rest_stay(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    now_ms = int(time.time() * 1000)
    ids = [await redis.xadd("s", {"n": str(i)}, id=f"{now_ms - (40 - i) * DAY_MS}-0")
           for i in range(5)]  # 40, 39, 38, 37, 36 days old
    recent = await redis.xadd("s", {"n": "recent"})
    await redis.xgroup_create("s", "a", id="0")
    await redis.xgroup_create("s", "b", id="0")
    # a: read everything, acknowledged all but the third; b: read the first four only
    read = await redis.xreadgroup("a", "c", {"s": ">"})
    await redis.xack("s", "a", *[i for i, _ in read[0][1] if i != ids[2]])
    read = await redis.xreadgroup("b", "c", {"s": ">"}, count=4)
    await redis.xack("s", "b", *[i for i, _ in read[0][1]])

    assert await safe_trim_point(redis, "s", retention_s=30 * 86400) == ids[2]
    assert await trim_stream(redis, "s", retention_s=30 * 86400) == 2
    left = [i for i, _ in await redis.xrange("s")]
    assert left == [ids[2], ids[3], ids[4], recent]
    await redis.aclose()


async def test_nothing_goes_while_a_group_has_not_read_it(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    now_ms = int(time.time() * 1000)
    await redis.xadd("t", {"n": "old"}, id=f"{now_ms - 60 * DAY_MS}-0")
    await redis.xgroup_create("t", "slow", id="0")
    assert await trim_stream(redis, "t", retention_s=30 * 86400) == 0
    assert await redis.xlen("t") == 1
    await redis.aclose()
