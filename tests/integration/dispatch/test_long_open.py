"""Incidents that wait long for someone (DESIGN.md: an unassigned incident "stays on the
command room's board, flagged, until someone is assigned"), and the figures of an
incident's orders as the command room reads them: in-process against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import records, store
from services.dispatch.locks import IncidentLocks
from shared import streams
from shared.events import IncidentReported, OrderResponded, new_id, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, SCENE, orders_for, team, wait_for_units
from .test_supervision import newer_reports, seed_incidents

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def report_days_ago(broker: RedisBroker, category: str, days: float, *,
                          priority: str = "P2") -> str:
    """An incident reported `days` ago (a reporting system's time), reaching dispatch now."""
    incident_id = new_id("inc")
    await broker.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category=category, priority=priority, location=SCENE,
        reported_at=utcnow() - timedelta(days=days)), stream=streams.INCIDENT_REPORTED.name)
    return incident_id


async def incident(console: httpx.AsyncClient, incident_id: str) -> dict[str, Any]:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    return dict(r.json()) if r.status_code == 200 else {}


async def flagged_board(console: httpx.AsyncClient, **params: str) -> list[str]:
    """The console's own question on every poll: every flagged incident (of the district)."""
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"flagged": "true", "limit": "200", **params})
    assert r.status_code == 200, r.text
    return [i["incident_id"] for i in r.json()["incidents"]]


async def in_flagged_index(redis: aioredis.Redis, incident_id: str) -> bool:
    """Whether the incident is in the indexes of flagged incidents (all districts', its own)."""
    scores = [await redis.zscore(key, incident_id)
              for key in (store.FLAGGED, store.flagged_key(DISTRICT))]
    assert (scores[0] is None) == (scores[1] is None), scores  # the two agree
    return scores[0] is not None


async def test_an_incident_unassigned_for_over_a_month_stays_on_the_board_until_a_team_goes(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis) -> None:
    """No team could be found for 31 days (a report of a system whose alert sat in a queue,
    a district with nobody on shift): the console's flagged query, its tab title and alarm,
    and `?status=unassigned` still list it, without a `since` reaching back a month."""
    incident_id = await report_days_ago(publisher, "suspicious", 31)
    await poll_until(lambda: _status_is(console, incident_id, "unassigned"), "unassigned")
    assert (await incident(console, incident_id))["flagged"]
    assert await flagged_board(console, district=DISTRICT) == [incident_id]
    assert await flagged_board(console) == [incident_id]  # the admin's board: every district
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "status": "unassigned"})
    assert [i["incident_id"] for i in r.json()["incidents"]] == [incident_id]
    assert await in_flagged_index(redis, incident_id)

    # A team comes on shift and gets it: the flag goes, and so does its place in the index.
    await team(publisher, "pol", kind="police", lat=22.8175, lon=108.3665)
    await poll_until(lambda: orders_for(clean_redis, incident_id), "the team's order")
    await poll_until(lambda: _status_is(console, incident_id, "assigned"), "assigned")
    assert not (await incident(console, incident_id))["flagged"]
    assert await flagged_board(console, district=DISTRICT) == []
    assert not await in_flagged_index(redis, incident_id)


async def test_a_hand_over_no_station_team_takes_stays_flagged_however_old_until_assigned(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis) -> None:
    """A hand-over whose station has nobody on shift is flagged (DESIGN: until the station's
    team gets it); one of an incident reported 40 days ago too. Given by hand to a station's
    team, it is not flagged any more, on the board or in the index."""
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report_days_ago(publisher, "noise", 40, priority="P4")
    (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                "the guard's order")
    await redis.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=incident_id, team_id="guard",
        member_id="m1", response="handover", note="needs the station"),
        stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: _flagged_with_status(console, incident_id, "handed_over"),
                     "the hand-over flagged")
    assert await flagged_board(console, district=DISTRICT) == [incident_id]
    assert await in_flagged_index(redis, incident_id)

    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    r = await console.post(f"/v1/incidents/{incident_id}/assign", headers=ADMIN,
                           json={"team_id": "station-car"})
    assert r.status_code == 200, r.text
    assert not (await incident(console, incident_id))["flagged"]
    assert await flagged_board(console, district=DISTRICT) == []
    assert not await in_flagged_index(redis, incident_id)


async def test_flagged_incidents_stored_before_the_index_are_found_however_old(
        clean_redis: str, console: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """Incidents flagged before this version kept the index join it once (by the first
    flagged board read), and are listed behind any number of newer reports; those not
    flagged are not."""
    now = utcnow()
    seed_incidents(clean_redis, [
        ("inc_old_unassigned", now - timedelta(days=45), {"status": "unassigned",
                                                          "flagged": "1"}),
        ("inc_old_handover", now - timedelta(days=35), {"status": "handed_over",
                                                        "flagged": "1"}),
        ("inc_old_resolved", now - timedelta(days=33), {}),
        *newer_reports(300)])
    assert await flagged_board(console, district=DISTRICT) == ["inc_old_handover",
                                                               "inc_old_unassigned"]
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "status": "unassigned"})
    assert [i["incident_id"] for i in r.json()["incidents"]] == ["inc_old_unassigned"]
    assert not await in_flagged_index(redis, "inc_old_resolved")
    # asked for a period, the flagged board keeps to it
    assert await flagged_board(console, district=DISTRICT,
                               since=(now - timedelta(days=40)).isoformat()) == [
        "inc_old_handover"]


async def test_a_forgotten_incident_leaves_the_flagged_index(
        clean_redis: str, console: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """A flagged hand-over nobody acted on is archived with its flag (it still needs the
    command room) and, KPI_DAYS after its report, deleted: its place in the index too."""
    now = utcnow()
    seed_incidents(clean_redis, [("inc_forgotten", now - timedelta(days=400), {
        "status": "handed_over", "flagged": "1", "archived_at": now.isoformat()})])
    assert await flagged_board(console, district=DISTRICT) == ["inc_forgotten"]
    locks = IncidentLocks(redis)
    try:
        assert await records.forget_archived(redis, locks,
                                             reported_before=(now - timedelta(days=1)).timestamp()
                                             ) == 1
    finally:
        await locks.close()
    assert not await in_flagged_index(redis, "inc_forgotten")
    assert await flagged_board(console, district=DISTRICT) == []


async def test_an_orders_eta_is_a_number_as_intake_gives_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis) -> None:
    """`eta_s` of an incident's orders was the stored text ("8.7"): intake answers it as a
    number, and a client doing sums with it got a string."""
    await team(publisher, "pol", kind="police", lat=22.8175, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report_days_ago(publisher, "suspicious", 0)
    await poll_until(lambda: orders_for(clean_redis, incident_id), "the order")
    found = await incident(console, incident_id)
    [order] = found["orders"]
    assert isinstance(order["eta_s"], float) and order["eta_s"] > 0, order


async def _status_is(console: httpx.AsyncClient, incident_id: str, status: str) -> bool:
    return (await incident(console, incident_id)).get("status") == status


async def _flagged_with_status(console: httpx.AsyncClient, incident_id: str,
                               status: str) -> bool:
    found = await incident(console, incident_id)
    return found.get("status") == status and bool(found.get("flagged"))
