"""The points ledger stays bounded on a real Redis: an award's idempotency key expires long
after any redelivery, a member's history keeps its most recent entries, and a removed
member's points go with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.volunteers.domain.points import LedgerEntry
from services.volunteers.store import keys
from services.volunteers.store import points as points_store
from shared.events import IncidentClosed

from .conftest import ADMIN, running
from .test_points import hazard_order, resolved, wang_and_chen

DAY_S = 86400
AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def entry(n: int, points: float = 1) -> LedgerEntry:
    return LedgerEntry(entry_id=f"adjust:a-{n}", member_id="m-wang", team_id="t-vol",
                       district="d1", points=points, reason="adjustment", at=AT, note=str(n))


def about(ttl_s: int) -> range:
    return range(ttl_s - 60, ttl_s + 1)


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    """The district imported (points go to members on the roster only: Auntie Wang's)."""
    async with running(clean_redis) as volunteers:
        await volunteers.import_district()
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def test_an_entry_is_awarded_once_and_its_key_expires(redis: Redis) -> None:
    assert await points_store.award(redis, [entry(1, 5)], ledger_ttl_s=7 * DAY_S) == 1
    assert await points_store.award(redis, [entry(1, 5)], ledger_ttl_s=7 * DAY_S) == 0
    assert await redis.get(keys.points_balance("m-wang")) == "5"
    assert await redis.ttl(keys.ledger_entry("adjust:a-1")) in about(7 * DAY_S)


async def test_the_history_keeps_the_latest_entries_and_the_balance_counts_all(
        redis: Redis) -> None:
    total = points_store.HISTORY_KEPT + 5
    assert await points_store.award(redis, [entry(n) for n in range(total)],
                                    ledger_ttl_s=DAY_S) == total
    balance, history, count = await points_store.balance_and_history(
        redis, "m-wang", offset=0, limit=2)
    assert (balance, count) == (total, points_store.HISTORY_KEPT)
    assert [e["note"] for e in history] == [str(total - 1), str(total - 2)]  # newest first
    assert await redis.zscore(keys.leaderboard("d1"), "m-wang") == total


async def test_the_service_keeps_award_keys_twice_the_stream_history(
        clean_redis: str, publisher: RedisBroker) -> None:
    async with running(clean_redis, retention_days=3) as volunteers:
        await wang_and_chen(volunteers, chen_on_shift=False)
        await publisher.publish(hazard_order(), stream="order.issued")
        await volunteers.consumed("order.issued")
        await publisher.publish(resolved(), stream="order.responded")  # a team's transition
        await volunteers.consumed("order.responded")
        await publisher.publish(IncidentClosed(  # a hazard Chen reported from the street
            district="d1", incident_id="inc_street", final_status="resolved",
            category="hazard_report", reported_by_member="m-chen"), stream="incident.closed")
        await volunteers.consumed("incident.closed")
        r = await volunteers.client.post("/v1/members/m-wang/points", headers=ADMIN, json={
            "points": 5, "note": "the briefing", "adjustment_id": "k-1"})
        assert r.status_code == 201, r.text
        for entry_id in ("resolved:ord_h:m-wang", "hazard:inc_ord_h:m-wang",
                         "hazard:inc_street:m-chen", "adjust:k-1"):
            ttl = await volunteers.redis.ttl(keys.ledger_entry(entry_id))
            assert ttl in about(6 * DAY_S), (entry_id, ttl)


async def test_a_removed_member_leaves_no_points_behind(clean_redis: str) -> None:
    async with running(clean_redis) as volunteers:
        await volunteers.import_district()
        r = await volunteers.client.post("/v1/members/m-chen/points", headers=ADMIN, json={
            "points": 5, "note": "the briefing"})
        assert r.status_code == 201, r.text
        assert await volunteers.redis.exists(keys.points_history("m-chen"),
                                             keys.points_balance("m-chen")) == 2
        r = await volunteers.client.delete("/v1/members/m-chen", headers=ADMIN)
        assert r.status_code == 204, r.text
        assert await volunteers.redis.exists(keys.points_history("m-chen"),
                                             keys.points_balance("m-chen")) == 0
