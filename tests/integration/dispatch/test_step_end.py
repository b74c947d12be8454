"""A step's last writes and its end in one script (store.end_step) against a real Redis:
made once, even when the script is sent again; never made without the step's lock."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from services.dispatch import locks, store

INCIDENT = "inc_se"
KEY = f"dispatch:incident:{INCIDENT}"
TIMELINE = f"dispatch:timeline:{INCIDENT}"


@pytest.fixture
async def redis(clean_redis: str):
    client = Redis.from_url(clean_redis, decode_responses=True)
    await client.hset(KEY, mapping={"incident_id": INCIDENT, "status": "assigned", "seq": "3"})
    await client.set("dispatch:claim:t1", "ord_1")
    await client.hset("dispatch:unit:t1", mapping={"status": "available", "on_shift": "1"})
    await client.zadd("dispatch:waiting:d1", {"inc_waiting": 1.0})
    yield client
    await client.aclose()


def commands(status: str, seq: str) -> list[tuple[str, ...]]:
    return [("HSET", KEY, "status", status, "seq", seq), ("RPUSH", TIMELINE, status)]


async def end(redis: Redis, token: str, done: str = "responded:e1") -> bool | None:
    return await store.end_step(redis, commands("resolved", "4"), done=done,
                                lock_key=locks.key(INCIDENT), lock_token=token,
                                freed=("t1", "d1"), release_claim=("t1", "ord_1"))


async def test_the_writes_the_mark_the_release_and_the_free_check_in_one_step(redis) -> None:
    await redis.set(locks.key(INCIDENT), "mine")
    assert await end(redis, "mine") is True  # t1 is free and an incident of d1 waits
    assert await redis.hget(KEY, "status") == "resolved"
    assert await redis.lrange(TIMELINE, 0, -1) == ["resolved"]
    assert await redis.exists("dispatch:seen:responded:e1", "dispatch:claim:t1",
                              locks.key(INCIDENT)) == 1  # only the done mark


async def test_sent_again_after_other_steps_it_writes_nothing_twice(redis) -> None:
    # redis-py sends a script again when it lost the reply (Redis restarted after running
    # it); the lock the first run released may have let other steps change the incident.
    await redis.set(locks.key(INCIDENT), "mine")
    assert await end(redis, "mine") is True
    await redis.hset(KEY, mapping={"status": "closed", "seq": "5"})  # a later step
    await redis.set("dispatch:claim:t1", "ord_2")  # the team took another order
    await redis.set(locks.key(INCIDENT), "theirs")
    assert await end(redis, "mine") is False  # t1 is claimed again: not free
    assert (await redis.hget(KEY, "status"), await redis.hget(KEY, "seq")) == ("closed", "5")
    assert await redis.lrange(TIMELINE, 0, -1) == ["resolved"]
    assert await redis.get("dispatch:claim:t1") == "ord_2"
    assert await redis.get(locks.key(INCIDENT)) == "theirs"


async def test_a_step_whose_lock_expired_writes_nothing(redis) -> None:
    await redis.set(locks.key(INCIDENT), "theirs")  # ours expired; another step holds it
    assert await end(redis, "mine") is None
    assert (await redis.hget(KEY, "status"), await redis.hget(KEY, "seq")) == ("assigned", "3")
    assert await redis.llen(TIMELINE) == 0
    assert not await redis.exists("dispatch:seen:responded:e1")
    assert await redis.get("dispatch:claim:t1") == "ord_1"
    assert await redis.get(locks.key(INCIDENT)) == "theirs"
