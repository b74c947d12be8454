"""A service's retention sweep on a real Redis: which streams it trims, and which consumer
groups may hold a stream back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from shared import streams
from shared.retention import forget_stale_consumers, keep_trimming
from tests.helpers import poll_until

DAY_MS = 86_400_000
RETENTION_S = 30 * 86400


async def old_and_recent(redis: Redis, stream: str) -> list[str]:
    """Two entries 40 and 39 days old, then one of now: their ids."""
    now_ms = int(time.time() * 1000)
    ids = [await redis.xadd(stream, {"n": str(age)}, id=f"{now_ms - age * DAY_MS}-0")
           for age in (40, 39)]
    return [*ids, await redis.xadd(stream, {"n": "recent"})]


async def entry_ids(redis: Redis, stream: str) -> list[str]:
    return [i for i, _ in await redis.xrange(stream)]


async def sweep_until(redis: Redis, service: str, done: Callable[[], Awaitable[bool]],
                      what: str) -> None:
    """`keep_trimming` until `done` (its next sweep would come an hour later)."""
    stop = asyncio.Event()
    sweeping = asyncio.create_task(keep_trimming(redis, service, retention_s=RETENTION_S,
                                                 stop=stop, interval_s=3600, first_after_s=0))
    try:
        await poll_until(done, what)
    finally:
        stop.set()
        await asyncio.wait_for(sweeping, timeout=5)


async def test_a_group_no_release_declares_does_not_keep_old_entries(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    stream = streams.INCIDENT_UPDATED.name  # dispatch's; intake's group reads it
    ids = await old_and_recent(redis, stream)
    await redis.xgroup_create(stream, "intake", id="0")
    read = await redis.xreadgroup("intake", "c", {stream: ">"})
    await redis.xack(stream, "intake", *[i for i, _ in read[0][1]])
    await redis.xgroup_create(stream, "intake-v0", id="0")  # left by an older release

    async def trimmed() -> bool:
        return await entry_ids(redis, stream) == ids[2:]

    with caplog.at_level(logging.WARNING, logger="shared.retention"):
        await sweep_until(redis, "dispatch", trimmed, "the entries older than retention gone")

    warned = [r.getMessage() for r in caplog.records if "intake-v0" in r.getMessage()]
    assert len(warned) == 1 and stream in warned[0]
    assert {g["name"] for g in await redis.xinfo_groups(stream)} == {"intake", "intake-v0"}
    await redis.aclose()


async def test_a_declared_group_still_keeps_what_it_has_not_read(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    stream = streams.INCIDENT_UPDATED.name
    ids = await old_and_recent(redis, stream)
    await redis.xgroup_create(stream, "intake", id="0")
    # dispatch's sweep comes to the dead letters of what it reads after its own streams
    last = streams.consumed_by("dispatch")[-1].dead_letters
    dead = await old_and_recent(redis, last)

    async def swept() -> bool:
        return await entry_ids(redis, last) == dead[2:]

    await sweep_until(redis, "dispatch", swept, f"{last} trimmed")
    assert await entry_ids(redis, stream) == ids
    await redis.aclose()


async def test_the_dead_letters_of_the_streams_a_service_reads_are_trimmed_by_age(
        clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    # intake reads incident.updated and incident.closed (volunteers too: its sweep makes the
    # same cut of dlq.incident.closed)
    updated = await old_and_recent(redis, streams.INCIDENT_UPDATED.dead_letters)
    closed = await old_and_recent(redis, streams.INCIDENT_CLOSED.dead_letters)

    async def trimmed() -> bool:
        return (await entry_ids(redis, streams.INCIDENT_UPDATED.dead_letters) == updated[2:]
                and await entry_ids(redis, streams.INCIDENT_CLOSED.dead_letters) == closed[2:])

    await sweep_until(redis, "intake", trimmed, "intake's dead letters older than retention gone")
    await redis.aclose()


@pytest.mark.parametrize("decode", [True, False])
async def test_consumers_left_by_dead_processes_are_deleted_unless_they_hold_entries(
        clean_redis: str, decode: bool) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=decode)
    try:
        stream = streams.INCIDENT_REPORTED.name
        await redis.xgroup_create(stream, "dispatch", id="0", mkstream=True)
        await redis.xadd(stream, {"n": "1"})
        await redis.xadd(stream, {"n": "2"})
        # a process that read and acknowledged, and one that died holding an entry
        [[_, [(first, _)]]] = await redis.xreadgroup("dispatch", "vm-101", {stream: ">"}, count=1)
        await redis.xack(stream, "dispatch", first)
        await redis.xreadgroup("dispatch", "vm-102", {stream: ">"}, count=1)
        await asyncio.sleep(0.01)
        assert await forget_stale_consumers(redis, "dispatch", idle_ms=5) == 1
        left = [c["name"] for c in await redis.xinfo_consumers(stream, "dispatch")]
        assert left in (["vm-102"], [b"vm-102"])
        assert (await redis.xpending(stream, "dispatch"))["pending"] == 1  # still claimable
        assert await forget_stale_consumers(redis, "dispatch") == 0  # a day: none so idle
    finally:
        await redis.aclose()


async def test_a_consumer_that_claims_an_entry_as_it_is_judged_idle_is_not_deleted(
        clean_redis: str) -> None:
    # On Redis before 7.2 a living reclaimer that found nothing to claim for a day looks
    # idle. Should it claim an entry between the sweep's look (nothing pending) and its
    # DELCONSUMER, the delete took the entry off the group's pending list: never retried,
    # never dead-lettered, never handled (an incident lost).
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        stream = streams.INCIDENT_REPORTED.name
        await redis.xgroup_create(stream, "dispatch", id="0", mkstream=True)
        await redis.xadd(stream, {"n": "1"})
        [[_, [(entry, _)]]] = await redis.xreadgroup("dispatch", "vm-dead", {stream: ">"},
                                                     count=1)
        await redis.xgroup_createconsumer(stream, "dispatch", "vm-reclaimer")
        await asyncio.sleep(0.02)
        looked = redis.xinfo_consumers

        async def claimed_meanwhile(*args: object, **kwargs: object) -> object:
            seen = await looked(*args, **kwargs)  # the reclaimer: nothing pending, idle
            await redis.xclaim(stream, "dispatch", "vm-reclaimer", 0, [entry])
            return seen

        redis.xinfo_consumers = claimed_meanwhile  # type: ignore[method-assign]
        await forget_stale_consumers(redis, "dispatch", idle_ms=5)
        pending = await redis.xpending_range(stream, "dispatch", "-", "+", 10)
        assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry, "vm-reclaimer")]
    finally:
        await redis.aclose()


async def test_a_stream_a_declared_group_does_not_exist_on_yet_is_not_trimmed(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    """Redis came back empty and intake has not started since: its group on incident.updated
    will be made at id 0 and read everything, so nothing of it goes, however old."""
    redis = Redis.from_url(clean_redis, decode_responses=True)
    stream = streams.INCIDENT_UPDATED.name
    ids = await old_and_recent(redis, stream)
    last = streams.consumed_by("dispatch")[-1].dead_letters
    dead = await old_and_recent(redis, last)

    async def swept() -> bool:  # the sweep's last stream: it went past incident.updated
        return await entry_ids(redis, last) == dead[2:]

    with caplog.at_level(logging.WARNING, logger="shared.retention"):
        await sweep_until(redis, "dispatch", swept, f"{last} trimmed")
    assert await entry_ids(redis, stream) == ids
    warned = [r.getMessage() for r in caplog.records if stream in r.getMessage()]
    assert len(warned) == 1 and "intake" in warned[0] and "not trimmed" in warned[0], warned
    await redis.aclose()
