"""A team a roster import moves into a volunteer agency (a security patrol that was in fact a
residents' patrol, filed under the wrong agency) while it holds an order on an incident
whose flags bar volunteers (a weapon): volunteers are never sent into violence, as the
command room's revision adding the flag takes them off. Dispatch takes the order back, with
a timeline entry saying why, and the incident goes to a team that may answer it. Before,
nothing looked at the order again (a station's order of a moved team is handed on)."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker

from tests.helpers import poll_until

from .test_engine import orders_for, report, team, wait_for_units
from .test_followup import kinds_and_details
from .test_station_orders_of_a_moved_team import moved
from .test_station_orders_of_a_removed_team import incident, withdrawn

# a knife fight: the police patrol and the nearest security team go
ADMIN = {"Authorization": "Bearer test-admin-token"}
TEAMS = {"patrol": ("police", 22.8300), "guards": ("security", 22.8171),
         "guards-2": ("security", 22.8200)}


async def a_knife_fight(url: str, publisher: RedisBroker) -> str:
    for team_id, (kind, lat) in TEAMS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(url, len(TEAMS))
    incident_id = await report(publisher, "violence", priority="P1", flags=("weapon",))
    sent = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2
                            and orders_for(url, incident_id), "the joint response")
    assert sorted(o.team_id for o in sent) == ["guards", "patrol"]
    return incident_id


async def test_a_team_moved_into_volunteers_is_taken_off_a_weapon_incident_and_replaced(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id = await a_knife_fight(dispatch, publisher)
    (guards,) = [o for o in orders_for(dispatch, incident_id) if o.team_id == "guards"]
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: withdrawn(dispatch, guards.order_id), "the order taken back")
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "another security team")
    assert (third.team_id, third.kind) == ("guards-2", "dispatch")
    entries = [(kind, detail) for kind, detail, _ in kinds_and_details(dispatch, incident_id)
               if kind == "withdrawn"]
    assert entries == [("withdrawn", "guards is now a team of ag-residents, a volunteer "
                                     "agency: volunteers are not sent to an incident "
                                     "flagged weapon: taken off")]
    assert incident(dispatch, incident_id)["flagged"] == "0"


async def test_a_team_moved_into_volunteers_keeps_an_order_volunteers_may_answer(
        dispatch: str, publisher: RedisBroker) -> None:
    # A noise complaint: nothing bars volunteers from it. The team on its way goes on.
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: _moved(dispatch, "guards"), "the move read")
    assert withdrawn(dispatch, order.order_id) == []
    assert len(orders_for(dispatch, incident_id)) == 1


def _moved(url: str, team_id: str) -> bool:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(f"dispatch:unit:{team_id}", "agency_kind") == "volunteer"
    finally:
        client.close()


async def test_a_team_moved_into_volunteers_is_taken_off_when_a_weapon_is_learnt_later(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Moved while on a noise complaint (nothing bars volunteers: it goes on); then the caller
    # rings back: he has a knife. The revision takes volunteers off: this team too, though
    # its order was sent to it as a security team.
    url = clean_redis
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the order")
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: _moved(url, "guards"), "the move read")
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                            json={"add_flags": ["weapon"]})
    assert r.status_code == 200, r.text
    assert r.json()["withdrawn"] == [order.order_id]
    assert withdrawn(url, order.order_id)
