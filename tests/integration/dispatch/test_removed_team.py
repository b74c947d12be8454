"""A team removed from the roster (volunteers' last `unit.status`, `removed`) leaves
dispatch's projection: the units list, the map, its unit record. No older status or fix of
it, redelivered or read late, brings it back; an order it held goes to the next team."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import UnitPosition, UnitStatus, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_take_back import kinds_and_teams

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def removed(publisher: RedisBroker, team_id: str, *, at: datetime | None = None) -> None:
    """volunteers' word for `DELETE /v1/teams/{id}`: off duty, and removed."""
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="off_duty", agency_id="ag-security",
        agency_kind="security", mode="car", on_shift=False, removed=True,
        occurred_at=at or utcnow() + timedelta(milliseconds=5)),
        stream=streams.UNIT_STATUS.name)


def traces(url: str, team_id: str) -> dict[str, object]:
    """What dispatch keeps of the team: its record, its place in the list and on the map."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return {"unit": client.exists(f"dispatch:unit:{team_id}"),
                "listed": client.sismember(f"dispatch:units:{DISTRICT}", team_id),
                "mapped": client.zscore(f"dispatch:geo:{DISTRICT}", team_id) is not None}
    finally:
        client.close()


GONE = {"unit": 0, "listed": False, "mapped": False}


def all_read(url: str) -> bool:
    """Dispatch has read and handled every status and fix published so far."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        for stream in (streams.UNIT_STATUS.name, streams.UNIT_POSITION.name):
            group = next(g for g in client.xinfo_groups(stream) if g["name"] == "dispatch")
            if group["pending"] or group["lag"]:
                return False
        return True
    finally:
        client.close()


async def units_listed(console: httpx.AsyncClient) -> list[str]:
    r = await console.get("/v1/units", params={"district": DISTRICT}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return [u["team_id"] for u in r.json()["units"]]


async def test_a_removed_team_leaves_the_units_list_and_the_map(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    await team(publisher, "gone", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "stays", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    assert sorted(await units_listed(console)) == ["gone", "stays"]

    await removed(publisher, "gone")
    await poll_until(lambda: traces(clean_redis, "gone") == GONE, "the team out of dispatch")
    assert await units_listed(console) == ["stays"]
    assert traces(clean_redis, "stays") == {"unit": 1, "listed": True, "mapped": True}


async def test_no_older_status_or_fix_brings_a_removed_team_back(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A status and a fix made before the removal, read after it (a redelivery, a reclaimed
    # entry, a replayed dead letter): the team stays gone, leaving no key behind.
    before = utcnow()
    await team(publisher, "gone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    removal = utcnow()
    await removed(publisher, "gone", at=removal)
    await removed(publisher, "gone", at=removal)  # redelivered: the same
    await poll_until(lambda: traces(clean_redis, "gone") == GONE, "the team out of dispatch")

    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="gone", status="available", agency_id="ag-security",
        agency_kind="security", mode="car", on_shift=True, occurred_at=before),
        stream=streams.UNIT_STATUS.name)
    await publisher.publish(UnitPosition(district=DISTRICT, unit_id="gone", lat=22.8172,
                                         lon=108.3665, at=removal - timedelta(milliseconds=1)),
                            stream=streams.UNIT_POSITION.name)
    await poll_until(lambda: all_read(clean_redis), "the late status and fix handled",
                     timeout=20)
    assert traces(clean_redis, "gone") == GONE
    assert await units_listed(console) == []

    # imported again later under its id: its newer status counts
    await team(publisher, "gone", kind="security", lat=22.8171, lon=108.3665)
    await poll_until(lambda: traces(clean_redis, "gone") == {
        "unit": 1, "listed": True, "mapped": True}, "the team back once imported again")


async def test_an_offer_to_a_removed_team_goes_to_the_next_team_at_once(
        dispatch: str, publisher: RedisBroker) -> None:
    # Dispatch offered the team the incident before it read the team's removal (volunteers
    # had not read the order yet): nobody of that team will ever answer it.
    await team(publisher, "gone", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "next", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "noise", priority="P4")
    [first] = await poll_until(lambda: orders_for(dispatch, incident_id), "the first order")
    assert first.team_id == "gone"
    await removed(publisher, "gone")
    await poll_until(lambda: len(orders_for(dispatch, incident_id)) == 2, "the next team's order",
                     timeout=20)
    assert kinds_and_teams(dispatch, incident_id) == [("dispatch", "gone"), ("dispatch", "next")]
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.hget(store.order_key(first.order_id), "state") == "withdrawn"
        await poll_until(lambda: not client.exists("dispatch:claim:gone"),
                         "the removed team's claim released")
    finally:
        client.close()
    assert traces(dispatch, "gone") == GONE


async def test_a_team_removed_while_on_its_order_flags_the_incident_for_the_command_room(
        dispatch: str, publisher: RedisBroker) -> None:
    from .test_assign import timeline
    from .test_take_back import respond

    await team(publisher, "gone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await respond(publisher, order, "acknowledged", "en_route")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        await poll_until(lambda: client.hget(store.order_key(order.order_id), "state")
                         == "en_route", "en route")
        await removed(publisher, "gone")
        await poll_until(lambda: client.hget(store.incident_key(incident_id), "flagged") == "1",
                         "the incident flagged", timeout=20)
    finally:
        client.close()
    notes = [e["detail"] for e in timeline(dispatch, incident_id) if e["kind"] == "note"]
    assert notes == ["gone was removed from the roster while en route on this order: the "
                     "command room decides"]
    assert traces(dispatch, "gone") == GONE
