"""A report that reaches dispatch long after it was reported (a 110 system's queue stuck, a
video system catching up after a network cut) is new to the command room when dispatch
receives it: the board in the order received (`?order=received`, the console's) lists it
first however many newer reports came before it, and the incident says how late it came
(its timeline's entry, the row's `late_by_s`). How it is dispatched does not change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import domain, records, store
from services.dispatch.locks import IncidentLocks
from shared import streams
from shared.events import IncidentReported, IncidentUpdated, TimelineEntry, new_id, utcnow
from tests.helpers import poll_until, read_stream

from .conftest import console_of
from .test_engine import DISTRICT, SCENE, orders_for, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}
BUSY_EVENING = 200  # the console's first page holds 200 incidents


async def reported(broker: RedisBroker, category: str, priority: str, *,
                   ago: timedelta) -> str:
    incident_id = new_id("inc")
    await broker.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys-110",
        external_ref=incident_id, category=category, priority=priority, location=SCENE,
        reported_at=utcnow() - ago), stream=streams.INCIDENT_REPORTED.name)
    return incident_id


async def created(url: str, count: int) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await poll_until(lambda: _count_is(client, count),
                         f"{count} incidents made by dispatch", 60)
    finally:
        await client.aclose()


async def _count_is(client: aioredis.Redis, count: int) -> bool:
    return await client.zcard(store.district_key(DISTRICT)) >= count


@contextlib.asynccontextmanager
async def busy_evening(url: str, broker: RedisBroker) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch with BUSY_EVENING reports received, each a moment after it was made, of
    the last 7 minutes."""
    async with console_of(url) as console:
        for n in range(BUSY_EVENING):
            await reported(broker, "noise", "P4", ago=timedelta(seconds=2 * n))
        await created(url, BUSY_EVENING)
        yield console


async def board(console: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    r = await console.get("/v1/incidents", params={"district": DISTRICT, **params},
                          headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_report_that_reached_dispatch_late_is_first_on_the_board_in_the_order_received(
        clean_redis: str, publisher: RedisBroker) -> None:
    async with busy_evening(clean_redis, publisher) as console:
        fight = await reported(publisher, "violence", "P1", ago=timedelta(minutes=50))
        await created(clean_redis, BUSY_EVENING + 1)
        by_report = await board(console, limit="200")
        by_receipt = await board(console, limit="200", order="received")
        # the API's default order stays the report's: there it is behind the 200
        assert fight not in [i["incident_id"] for i in by_report["incidents"]]
        first = by_receipt["incidents"][0]
        assert first["incident_id"] == fight
        assert first["priority"] == "P1"
        late = datetime.fromisoformat(first["received_at"]) - datetime.fromisoformat(
            first["reported_at"])
        assert timedelta(minutes=50) <= late < timedelta(minutes=51)
        assert first["late_by_s"] == round(late.total_seconds())
        # the others came on time: nothing said of them
        assert {i["late_by_s"] for i in by_receipt["incidents"][1:]} == {None}

        # paged by the cursor in the same order: each incident once, the late one first
        seen: list[str] = []
        after: dict[str, str] = {}
        for _ in range(10):
            page = await board(console, limit="60", order="received", **after)
            seen += [i["incident_id"] for i in page["incidents"]]
            if not page["next"]:
                break
            after = {"after": page["next"]}
        assert seen[0] == fight and len(seen) == len(set(seen)) == BUSY_EVENING + 1

        # the filters read the index by receipt too: the flagged (no team: every one), a
        # reference's few read whole
        flagged = await board(console, limit="5", order="received", flagged="true")
        assert flagged["incidents"][0]["incident_id"] == fight and flagged["next"]
        by_ref = await board(console, order="received", ref=fight)
        assert [i["incident_id"] for i in by_ref["incidents"]] == [fight]

        # a cursor of one order is no place in the other
        r = await console.get("/v1/incidents", params={
            "district": DISTRICT, "limit": "60", "after": by_report["next"],
            "order": "received"}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["error"]["field"] == "after", r.text
        described = (await console.get("/openapi.json")).json()["paths"]["/v1/incidents"]["get"]
        assert any(p["name"] == "order" for p in described["parameters"])


async def test_a_late_report_s_timeline_says_how_long_before_it_reached_dispatch_it_was_made(
        clean_redis: str, publisher: RedisBroker) -> None:
    """Its timeline's entry of its own, right after the report's, in the dispatcher's
    language on the console (timeline_text's `reported_late`); and it is dispatched as any
    report is: its teams sent at once."""
    async with console_of(clean_redis) as console:
        await team(publisher, "police-1", kind="police", lat=22.8175, lon=108.3665)
        await team(publisher, "guards-1", kind="security", lat=22.8172, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        fight = await reported(publisher, "violence", "P1", ago=timedelta(minutes=50))
        orders = await poll_until(lambda: len(orders_for(clean_redis, fight)) >= 2
                                  and orders_for(clean_redis, fight), "the fight's two teams")
        assert {o.team_id for o in orders} == {"police-1", "guards-1"}
        old = await reported(publisher, "noise", "P4", ago=timedelta(days=6))
        fresh = await reported(publisher, "noise", "P4", ago=timedelta(minutes=2))
        await created(clean_redis, 3)

        async def entries(incident_id: str) -> list[dict[str, Any]]:
            r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
            assert r.status_code == 200, r.text
            return list(r.json()["timeline"])

        timeline = await entries(fight)
        assert [e["kind"] for e in timeline[:2]] == ["reported", "note"]
        note = timeline[1]
        assert note["detail_code"] == "reported_late"
        assert note["detail_args"]["minutes"] == "50"
        reported_at = datetime.fromisoformat(note["detail_args"]["reported_at"])
        assert timedelta(minutes=50) <= datetime.fromisoformat(note["at"]) - reported_at
        assert note["detail"].startswith("reported at ")
        assert ", 50 min before it reached dispatch: " in note["detail"]

        (six_days,) = [e for e in await entries(old) if e.get("detail_code") == "reported_late"]
        assert six_days["detail_args"]["minutes"] == str(6 * 24 * 60)
        assert not [e for e in await entries(fresh) if e.get("detail_code") == "reported_late"]
        rows = {i["incident_id"]: i for i in (await board(console, order="received"))["incidents"]}
        assert 6 * 86_400 <= rows[old]["late_by_s"] < 6 * 86_400 + 60
        assert rows[fresh]["late_by_s"] is None

        # the incident's first incident.updated says the same (intake shows the reporting
        # system), its later ones nothing of it
        updates = read_stream(clean_redis, streams.INCIDENT_UPDATED.name, IncidentUpdated)
        for incident_id in (fight, old, fresh):
            first = [u for u in updates if u.incident_id == incident_id and u.seq == 1]
            assert len(first) == 1
            assert first[0].received_at == datetime.fromisoformat(rows[incident_id]["received_at"])
            assert first[0].late_by_s == rows[incident_id]["late_by_s"]
            said = [TimelineEntry.model_validate(e) for e in await entries(incident_id)
                    if e.get("detail_code") == "reported_late"]
            assert [first[0].late_note] == (said or [None])
        assert not [u for u in updates if u.seq > 1 and (
            u.received_at or u.late_by_s is not None or u.late_note)]
        # within LATE_REPORT it is not late
        assert domain.LATE_REPORT > timedelta(minutes=2)


async def test_the_index_by_receipt_leaves_with_the_incident_and_catches_up_earlier_ones(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The retention's last sweep takes an incident out of the index by receipt as out of
    the others; incidents made before that index was kept join it once, by when dispatch
    received them (the report's time for a record without one), and one forgotten
    meanwhile does not come back."""
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        async with console_of(clean_redis):
            incident_id = await reported(publisher, "noise", "P4", ago=timedelta(minutes=30))
            await created(clean_redis, 1)
        received = await client.zscore(store.received_key(DISTRICT), incident_id)
        assert received is not None
        assert await client.zscore(store.RECEIVED, incident_id) == received
        inc = await store.get_incident(client, incident_id)
        assert inc is not None
        assert received == datetime.fromisoformat(inc["received_at"]).timestamp()
        await client.hset(store.incident_key(incident_id), "archived_at", utcnow().isoformat())
        locks = IncidentLocks(client)
        try:
            assert await records.forget_archived(
                client, locks, reported_before=utcnow().timestamp() + 1) == 1
        finally:
            await locks.close()
        assert await client.zscore(store.received_key(DISTRICT), incident_id) is None
        assert await client.zscore(store.RECEIVED, incident_id) is None

        # an earlier version's incidents: in the indexes by report time only
        at = utcnow() - timedelta(hours=3)
        for name, fields in (("inc_then", {"received_at": (at + timedelta(hours=1)).isoformat()}),
                             ("inc_before_receipts", {})):
            await client.hset(store.incident_key(name), mapping={
                "incident_id": name, "district": DISTRICT, "status": "resolved",
                "reported_at": at.isoformat(), **fields})
            await client.zadd(store.district_key(DISTRICT), {name: at.timestamp()})
            await client.zadd(store.ALL_INCIDENTS, {name: at.timestamp()})
        # gone but for its place in the index by report time (forgotten while the catch-up ran)
        await client.zadd(store.ALL_INCIDENTS, {"inc_gone": at.timestamp()})
        assert await records.index_received_before(client) == 2
        assert await client.zscore(store.received_key(DISTRICT), "inc_then") == (
            at + timedelta(hours=1)).timestamp()
        assert await client.zscore(store.RECEIVED, "inc_before_receipts") == at.timestamp()
        assert await client.zscore(store.RECEIVED, "inc_gone") is None
        assert await records.index_received_before(client) == 0  # once
    finally:
        await client.aclose()


async def test_the_catch_ups_of_an_earlier_versions_incidents_run_once_at_a_time(
        clean_redis: str) -> None:
    """The board starts a catch-up on the first read after an upgrade, and every console
    polls every 3 s: each poll began a scan of every incident kept (800 days' worth) while
    the first still ran, against the Redis the incidents' path shares. Asked meanwhile,
    a catch-up waits for the one running."""
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    scans = 0
    real_zscan = client.zscan

    async def zscan(*args: Any, **kwargs: Any) -> Any:
        nonlocal scans
        scans += 1
        await asyncio.sleep(0.05)  # a page of a long scan
        return await real_zscan(*args, **kwargs)

    client.zscan = zscan  # type: ignore[method-assign]
    try:
        at = utcnow() - timedelta(hours=3)
        await client.hset(store.incident_key("inc_then"), mapping={
            "incident_id": "inc_then", "district": DISTRICT, "status": "resolved",
            "reported_at": at.isoformat()})
        await client.zadd(store.ALL_INCIDENTS, {"inc_then": at.timestamp()})
        for catch_up in (records.index_received_before, records.index_flagged_before):
            scans = 0
            await asyncio.gather(*(catch_up(client) for _ in range(5)))
            assert scans == 1, catch_up.__name__
        assert await client.zscore(store.RECEIVED, "inc_then") == at.timestamp()
    finally:
        await client.aclose()
