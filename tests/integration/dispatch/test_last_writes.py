"""A new order with its step's last writes in one script (store.offer_order with LastWrites),
against a real Redis: all of it when the claim holds, none of it when the claim is lost."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from services.dispatch import locks, store
from shared import streams
from shared.events import TimelineEntry

INCIDENT = "inc_lw"


@pytest.fixture
async def redis(clean_redis: str):
    client = Redis.from_url(clean_redis, decode_responses=True)
    await client.hset(f"dispatch:incident:{INCIDENT}", mapping={
        "incident_id": INCIDENT, "district": "d1", "status": "dispatching", "seq": "0"})
    await client.hset(store.STATUS_COUNTS, "dispatching", 1)
    await client.zadd("dispatch:waiting:d1", {INCIDENT: 1.0})
    await client.set(locks.key(INCIDENT), "my-token")
    await client.hset("dispatch:unit:t1", mapping={"status": "available", "on_shift": "1"})
    yield client
    await client.aclose()


def _last(lock_token: str = "my-token") -> store.LastWrites:
    return store.LastWrites(
        order_issued=b"issued-entry", incident_changes={"status": "assigned", "seq": "1"},
        old_status="dispatching", status_entry=TimelineEntry(kind="status", status="assigned"),
        incident_updated=b"updated-entry", district="d1", lock_key=locks.key(INCIDENT),
        lock_token=lock_token)


async def _offer(redis: Redis, order_id: str, last: store.LastWrites | None, *,
                 lock: tuple[str, str] | None = None) -> tuple[bool, bool]:
    return await store.offer_order(
        redis, order_id=order_id, incident_id=INCIDENT,
        fields={"team_id": "t1", "kind": "dispatch", "state": "offered", "published": "0"},
        claim=True, require_available=True, ack_by=None,
        entry=TimelineEntry(kind="offer", team_id="t1", order_id=order_id),
        first_assignment_at="2026-12-04T09:00:00+00:00", last=last, lock=lock)


async def _entries(redis: Redis, stream: str) -> list[str]:
    return [fields["__data__"] for _, fields in await redis.xrange(stream)]


async def test_the_order_and_every_last_write_land_together(redis: Redis) -> None:
    assert await _offer(redis, "ord_1", _last()) == (True, True)
    assert await redis.get("dispatch:claim:t1") == "ord_1"
    assert await redis.hget("dispatch:order:ord_1", "published") == "1"
    assert await _entries(redis, streams.ORDER_ISSUED.name) == ["issued-entry"]
    assert await _entries(redis, streams.INCIDENT_UPDATED.name) == ["updated-entry"]
    incident = await redis.hgetall(f"dispatch:incident:{INCIDENT}")
    assert (incident["status"], incident["seq"]) == ("assigned", "1")
    assert "first_assigned_at" in incident
    assert await redis.hgetall(store.STATUS_COUNTS) == {"dispatching": "0", "assigned": "1"}
    timeline = [json.loads(x) for x in await redis.lrange(f"dispatch:timeline:{INCIDENT}", 0, -1)]
    assert [e["kind"] for e in timeline] == ["offer", "status"]
    assert await redis.zscore("dispatch:waiting:d1", INCIDENT) is None
    assert await redis.exists(locks.key(INCIDENT)) == 0


async def test_a_lost_claim_writes_nothing_at_all(redis: Redis) -> None:
    await redis.hset("dispatch:order:ord_other", mapping={"state": "acknowledged"})
    await redis.set("dispatch:claim:t1", "ord_other")
    assert await _offer(redis, "ord_2", _last()) == (False, False)
    assert await redis.get("dispatch:claim:t1") == "ord_other"
    assert await redis.exists("dispatch:order:ord_2") == 0
    assert await _entries(redis, streams.ORDER_ISSUED.name) == []
    assert await _entries(redis, streams.INCIDENT_UPDATED.name) == []
    assert await redis.hget(f"dispatch:incident:{INCIDENT}", "status") == "dispatching"
    assert await redis.hgetall(store.STATUS_COUNTS) == {"dispatching": "1"}
    assert await redis.llen(f"dispatch:timeline:{INCIDENT}") == 0
    assert await redis.zscore("dispatch:waiting:d1", INCIDENT) == 1.0
    assert await redis.get(locks.key(INCIDENT)) == "my-token"  # the step still holds it


async def test_a_lock_taken_over_by_another_worker_is_not_released(redis: Redis) -> None:
    await redis.set(locks.key(INCIDENT), "someone-else")  # ours expired and was retaken
    assert (await _offer(redis, "ord_3", _last()))[0]
    assert await redis.get(locks.key(INCIDENT)) == "someone-else"


@pytest.mark.parametrize("last", [_last(), None], ids=["with its last writes", "alone"])
async def test_a_step_whose_lock_passed_to_another_writes_no_order(
        redis: Redis, last: store.LastWrites | None) -> None:
    # The step stalled past its lock's TTL; another step took the lock (and may have given
    # the incident its team): the stale step's order would be a second one.
    await redis.set(locks.key(INCIDENT), "someone-else")
    with pytest.raises(locks.LockLost):
        await _offer(redis, "ord_5", last, lock=(locks.key(INCIDENT), "my-token"))
    assert await redis.exists("dispatch:order:ord_5") == 0
    assert await redis.get("dispatch:claim:t1") is None
    assert await _entries(redis, streams.ORDER_ISSUED.name) == []
    assert await redis.llen(f"dispatch:timeline:{INCIDENT}") == 0
    assert await redis.get(locks.key(INCIDENT)) == "someone-else"
    # while the lock is its own, the same call writes the order
    await redis.set(locks.key(INCIDENT), "my-token")
    assert (await _offer(redis, "ord_5", last, lock=(locks.key(INCIDENT), "my-token")))[0]


async def test_without_a_lock_to_release_the_rest_is_written(redis: Redis) -> None:
    assert (await _offer(redis, "ord_4", _last(lock_token="")))[0]
    assert await redis.get(locks.key(INCIDENT)) == "my-token"
    assert len(await _entries(redis, streams.INCIDENT_UPDATED.name)) == 1


async def test_the_same_script_sent_again_writes_nothing_twice(redis: Redis) -> None:
    # redis-py sends a script again when it lost the reply (Redis restarted after running
    # it). By then the lock the first run released may have let another step move on.
    assert await _offer(redis, "ord_3", _last()) == (True, True)
    await redis.hset(f"dispatch:incident:{INCIDENT}", mapping={"status": "acknowledged",
                                                               "seq": "2"})
    await redis.hset("dispatch:order:ord_3", "state", "acknowledged")
    # offered, as it was; still the first assignment (a lost reply's re-run is counted once)
    assert await _offer(redis, "ord_3", _last()) == (True, True)
    assert await redis.lrange(f"dispatch:orders:{INCIDENT}", 0, -1) == ["ord_3"]
    assert await redis.hget("dispatch:order:ord_3", "state") == "acknowledged"
    incident = await redis.hgetall(f"dispatch:incident:{INCIDENT}")
    assert (incident["status"], incident["seq"]) == ("acknowledged", "2")
    assert await _entries(redis, streams.ORDER_ISSUED.name) == ["issued-entry"]
    assert await _entries(redis, streams.INCIDENT_UPDATED.name) == ["updated-entry"]
    assert await redis.llen(f"dispatch:timeline:{INCIDENT}") == 2
    assert await redis.hgetall(store.STATUS_COUNTS) == {"dispatching": "0", "assigned": "1"}
