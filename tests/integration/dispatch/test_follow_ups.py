"""A reporting system's follow-up of its own report (intake's POST
/v1/incidents/{id}/follow-ups: `follow_up_of`, linked to the report's incident whatever the
distance and the time): it joins that incident while it is open, its flags revising it, its
timeline saying a follow-up came; once that incident has ended, it is an incident of its own,
saying so."""

from __future__ import annotations

import json

import redis as sync_redis
from faststream.redis import RedisBroker

from shared import streams
from shared.events import IncidentReported, Location, new_id, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_linked import resolve, status, updates

# 1.1 km from the scene: they went into the mall
MALL = Location(lat=22.8270, lon=108.3665)


async def follow_up(broker: RedisBroker, parent: str, *, flags: tuple[str, ...] = (),
                    category: str = "noise", priority: str = "P4") -> str:
    incident_id = new_id("inc")
    await broker.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category=category, priority=priority, flags=flags, location=MALL, reported_at=utcnow(),
        description="he has a knife now", linked_to=parent, follow_up_of=parent),
        stream=streams.INCIDENT_REPORTED.name)
    return incident_id


def record(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(f"dispatch:incident:{incident_id}")
    finally:
        client.close()


async def test_a_follow_up_of_an_open_incident_joins_it_and_raises_it(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "t1", kind="police", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    parent = await report(publisher, "dispute", priority="P2")
    await poll_until(lambda: orders_for(dispatch, parent), "the incident's order")
    added = await follow_up(publisher, parent, flags=("weapon",), category="violence",
                            priority="P1")
    await poll_until(lambda: [u for u in updates(dispatch, added) if u.status == "linked"],
                     "the follow-up linked")
    told = await poll_until(lambda: [u for u in updates(dispatch, parent)
                                     if u.entry.detail_code == "follow_up_linked"],
                            "the incident told of the follow-up")
    assert told[0].entry.detail == f"a follow-up from its reporting system: {added}"
    [joined] = [u for u in updates(dispatch, added) if u.status == "linked"]
    assert joined.entry.detail == f"follow-up of {parent}"
    assert orders_for(dispatch, added) == []
    now = record(dispatch, parent)
    assert now["priority"] == "P1" and "weapon" in json.loads(now["flags"])


async def test_a_follow_up_of_an_ended_incident_is_dispatched_as_its_own(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    parent = await report(publisher, "noise", priority="P4")
    await resolve(dispatch, publisher, parent)
    await team(publisher, "t2", kind="security", lat=22.8271, lon=108.3665)
    await wait_for_units(dispatch, 2)
    added = await follow_up(publisher, parent)
    orders = await poll_until(lambda: orders_for(dispatch, added), "an order of its own")
    assert len(orders) == 1
    seen = updates(dispatch, added)
    assert "linked" not in [u.status for u in seen]
    assert seen[0].entry.detail_code == "follow_up_of_ended"
    assert seen[0].entry.detail == (f"a follow-up of {parent}, which had ended (resolved): "
                                    "dispatched as an incident of its own")
    assert status(dispatch, parent) == "resolved"

