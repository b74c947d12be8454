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
from shared.events import IncidentReported, Location, OrderAmended, new_id, utcnow
from tests.helpers import poll_until, read_stream

from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units
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


def amendments(url: str, incident_id: str) -> list[OrderAmended]:
    return [a for a in read_stream(url, streams.ORDER_AMENDED.name, OrderAmended)
            if a.incident_id == incident_id]


async def test_a_follow_ups_words_reach_the_police_team_on_it_and_no_other(
        dispatch: str, publisher: RedisBroker) -> None:
    # A fight, police and the nearest security post sent; the caller rings back: "he has a
    # knife now", and the flag that says so. The police team read only the first words
    # with its order, and was told only the flag; the guards never read a caller's words.
    await team(publisher, "t-police", kind="police", lat=22.8171, lon=108.3665)
    await team(publisher, "t-guard", kind="security", lat=22.8172, lon=108.3665)
    await wait_for_units(dispatch, 2)
    parent = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=parent, system_id="sys", external_ref=parent,
        category="violence", priority="P1", location=SCENE, reported_at=utcnow(),
        description="two men fighting outside the bank"), stream=streams.INCIDENT_REPORTED.name)
    orders = await poll_until(lambda: len(orders_for(dispatch, parent)) == 2
                              and orders_for(dispatch, parent), "both teams sent")
    police = next(o for o in orders if o.agency_kind == "police")
    guard = next(o for o in orders if o.agency_kind == "security")
    await follow_up(publisher, parent, flags=("weapon",), category="violence", priority="P1")
    told = await poll_until(lambda: [a for a in amendments(dispatch, parent)
                                     if a.order_id == police.order_id],
                            "the police team's order amended")
    assert told[-1].description == ("two men fighting outside the bank\n"
                                    "he has a knife now")
    assert "weapon" in told[-1].flags
    for amended in amendments(dispatch, parent):
        if amended.order_id == guard.order_id:
            assert amended.description is None and "weapon" in amended.flags
    # orders issued from now on carry it too
    assert record(dispatch, parent)["description"].endswith("\nhe has a knife now")


async def test_a_follow_up_that_only_says_more_still_reaches_the_police_team(
        dispatch: str, publisher: RedisBroker) -> None:
    # "they went into the mall": no flag, no priority; the police team is told all the same,
    # the guards are not amended for nothing
    await team(publisher, "t-police", kind="police", lat=22.8171, lon=108.3665)
    await team(publisher, "t-guard", kind="security", lat=22.8172, lon=108.3665)
    await wait_for_units(dispatch, 2)
    parent = await report(publisher, "violence", priority="P1")
    orders = await poll_until(lambda: len(orders_for(dispatch, parent)) == 2
                              and orders_for(dispatch, parent), "both teams sent")
    police = next(o for o in orders if o.agency_kind == "police")
    added = await follow_up(publisher, parent, category="violence", priority="P1")
    [told] = await poll_until(lambda: amendments(dispatch, parent), "an amendment")
    assert (told.order_id, told.description) == (police.order_id, "he has a knife now")
    entries = [u.entry for u in updates(dispatch, parent)]
    assert [e.detail_code for e in entries if e.kind == "revised"] == [
        "revised_description_by_report"]
    assert any(e.detail_code == "follow_up_linked" and e.detail_args == {"report": added}
               for e in entries)
    assert all(a.order_id == police.order_id for a in amendments(dispatch, parent))
