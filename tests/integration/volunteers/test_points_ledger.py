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
    # the coordinator's reading adds up: the dropped entries' points, then those kept
    page = await points_store.history_page(redis, "m-wang", before=None, limit=1,
                                           brought_forward=True)
    assert (page.balance, page.brought_forward) == (total, 5)


async def test_a_balance_brought_forward_keeps_quarter_points_and_penalties_exact(
        redis: Redis) -> None:
    kept = points_store.HISTORY_KEPT
    awards = [entry(0, 1.25), entry(1, -2), *(entry(n, 1.25) for n in range(2, kept + 2))]
    assert await points_store.award(redis, awards, ledger_ttl_s=DAY_S) == kept + 2
    page = await points_store.history_page(redis, "m-wang", before=None, limit=1,
                                           brought_forward=True)
    assert (page.balance, page.brought_forward) == (1.25 * (kept + 1) - 2, -0.75)


async def test_the_service_keeps_award_keys_twice_the_stream_history(
        clean_redis: str, publisher: RedisBroker) -> None:
    async with running(clean_redis, retention_days=3) as volunteers:
        await wang_and_chen(volunteers, chen_on_shift=False)
        await publisher.publish(hazard_order(), stream="order.issued")
        await volunteers.consumed("order.issued")
        await publisher.publish(resolved(), stream="order.responded")  # a team's transition
        await volunteers.consumed("order.responded")
        await publisher.publish(IncidentClosed(  # the hazard confirmed: its team's shift
            district="d1", incident_id="inc_ord_h", final_status="resolved",
            resolved_by=("t-vol",), category="hazard_report"), stream="incident.closed")
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
                                             keys.points_seq("m-chen"),
                                             keys.points_balance("m-chen")) == 3
        r = await volunteers.client.delete("/v1/members/m-chen", headers=ADMIN)
        assert r.status_code == 204, r.text
        assert await volunteers.redis.exists(keys.points_history("m-chen"),
                                             keys.points_seq("m-chen"),
                                             keys.points_balance("m-chen")) == 0


async def test_paging_the_history_while_awards_arrive_shows_each_entry_once(
        clean_redis: str) -> None:
    # Newest first, paged by offset: each award that came between two pages moved every
    # entry down one place, and the next page began with one already shown.
    async with running(clean_redis) as volunteers:
        await volunteers.import_district()
        device = await volunteers.enrol("m-wang")
        redis = Redis.from_url(clean_redis, decode_responses=True)
        try:
            await points_store.award(redis, [entry(n) for n in range(5)], ledger_ttl_s=DAY_S)

            async def page(**params: object) -> dict[str, object]:
                r = await volunteers.client.get("/v1/me/points", headers=device,
                                                params={"limit": 2, **params})
                assert r.status_code == 200, r.text
                return dict(r.json())

            seen, first = [], await page()
            seen += [e["note"] for e in first["history"]]
            cursor = first["next"]
            n = 5
            while cursor is not None:
                await points_store.award(redis, [entry(n)], ledger_ttl_s=DAY_S)  # meanwhile
                n += 1
                more = await page(before=cursor)
                seen += [e["note"] for e in more["history"]]
                cursor = more["next"]
            assert seen == ["4", "3", "2", "1", "0"]  # each once, newest first, to the end
            assert (await page())["history"][0]["note"] == str(n - 1)
            refused = await volunteers.client.get("/v1/me/points", headers=device,
                                                  params={"before": 3, "offset": 2})
            assert refused.status_code == 422 and refused.json()["error"]["field"] == "before"
        finally:
            await redis.aclose()


async def test_a_cursor_holds_past_the_history_kept_and_over_a_history_from_before_it(
        redis: Redis) -> None:
    # A history written before the cursor existed (no counter) pages on from its length;
    # once full, the oldest entries fall off the end and the cursor still points right.
    await redis.rpush(keys.points_history("m-wang"),
                      *[entry(n).model_dump_json() for n in (2, 1, 0)])
    page = await points_store.history_page(redis, "m-wang", before=None, limit=2)
    assert [e["note"] for e in page.history] == ["2", "1"]
    total = points_store.HISTORY_KEPT + 3
    await points_store.award(redis, [entry(n) for n in range(3, total)], ledger_ttl_s=DAY_S)
    page = await points_store.history_page(redis, "m-wang", before=page.next, limit=2)
    assert page.history == []  # "0" fell off the end of the history kept: nothing, not a repeat
    page = await points_store.history_page(redis, "m-wang", before=None, limit=1)
    page = await points_store.history_page(redis, "m-wang", before=page.next, limit=1)
    assert [e["note"] for e in page.history] == [str(total - 2)]
