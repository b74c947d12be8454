"""A team a roster import moves into a volunteer agency (a security patrol that was in fact a
residents' patrol, filed under the wrong agency) while it holds an order on an incident
whose flags bar volunteers (a weapon): volunteers are never sent into violence, as the
command room's revision adding the flag takes them off. Dispatch takes the order back, with
a timeline entry saying why, and the incident goes to a team that may answer it. Before,
nothing looked at the order again (a station's order of a moved team is handed on). A P1's
escort so moved leaves volunteers alone there: another escort joins them (or, nobody free,
the command room is told), the moved team going on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import store
from shared.events import OrderIssued, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_followup import kinds_and_details
from .test_station_orders_of_a_moved_team import moved
from .test_station_orders_of_a_removed_team import incident, withdrawn
from .test_take_back import respond

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


# A collapse (medical, P1) that only a volunteer first-aid team can answer: it goes, with the
# nearest security team as its escort (volunteers are never the only responders to a P1).
FIRST_AID = {"aunties": ("volunteer", 22.8172), "guards": ("security", 22.8180)}


async def a_collapse(url: str, publisher: RedisBroker, teams: dict[str, tuple[str, float]]
                     ) -> tuple[str, OrderIssued]:
    for team_id, (kind, lat) in teams.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665,
                   skills=("first_aid",) if kind == "volunteer" else ())
    await wait_for_units(url, len(teams))
    incident_id = await report(publisher, "medical", priority="P1")
    sent = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2
                            and orders_for(url, incident_id), "the volunteers and their escort")
    assert [o.team_id for o in sent] == ["aunties", "guards"]
    return incident_id, sent[1]


def _order_field(url: str, order_id: str, name: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(f"dispatch:order:{order_id}", name)
    finally:
        client.close()


ESCORT_MOVED = ("note", "guards is now a team of ag-residents, a volunteer agency: "
                        "volunteers are never the only responders to a P1: an escort is sought",
                None)


async def test_an_escort_moved_into_volunteers_on_a_p1_is_joined_by_another_escort(
        dispatch: str, publisher: RedisBroker) -> None:
    # The escort, moved into a volunteer agency on its way, is a volunteer team now: with
    # the first-aiders, volunteers alone on a P1. It goes on (nothing bars volunteers from a
    # collapse), and the nearest security team free joins them as their escort.
    incident_id, guards = await a_collapse(dispatch, publisher,
                                           {**FIRST_AID, "guards-2": ("security", 22.8200)})
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "another escort")
    assert third.team_id == "guards-2"
    assert _order_field(dispatch, third.order_id, "escort") == "1"
    assert withdrawn(dispatch, guards.order_id) == []  # the moved team goes on
    assert ESCORT_MOVED in kinds_and_details(dispatch, incident_id)
    await poll_until(lambda: incident(dispatch, incident_id)["flagged"] == "0", "no flag")


async def test_an_escort_moved_into_volunteers_with_nobody_to_replace_it_flags_the_p1(
        dispatch: str, publisher: RedisBroker) -> None:
    # Nobody else is free: the command room is told that volunteers are alone on the P1, and
    # the next police or security team that comes free joins them.
    incident_id, _ = await a_collapse(dispatch, publisher, FIRST_AID)
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: incident(dispatch, incident_id)["flagged"] == "1",
                     "the volunteers alone on the P1 flagged")
    assert len(orders_for(dispatch, incident_id)) == 2
    await team(publisher, "pol", kind="police", lat=22.8300, lon=108.3665)
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "the freed escort")
    assert third.team_id == "pol"
    await poll_until(lambda: incident(dispatch, incident_id)["flagged"] == "0", "the flag gone")


async def test_an_escort_moved_back_out_of_volunteers_escorts_them_again(
        dispatch: str, publisher: RedisBroker) -> None:
    # The import was a mistake, put right by the next one: the guards are a security team
    # again, escorting the first-aiders as they were sent to. The alarm goes, and the
    # incident no longer waits for another escort.
    incident_id, _ = await a_collapse(dispatch, publisher, FIRST_AID)
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: incident(dispatch, incident_id)["flagged"] == "1",
                     "the volunteers alone on the P1 flagged")
    await moved(publisher, "guards", agency_id="ag-security", kind="security")
    await poll_until(lambda: incident(dispatch, incident_id)["flagged"] == "0", "the flag gone")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.zscore(f"dispatch:waiting:{DISTRICT}", incident_id) is None
    finally:
        client.close()
    assert ESCORT_BACK in kinds_and_details(dispatch, incident_id)


ESCORT_BACK = ("note", "guards is now a team of ag-security (security): no longer counted as "
                       "volunteers", None)

async def test_a_station_team_s_backup_moved_into_volunteers_on_a_weapon_case_is_replaced(
        dispatch: str, publisher: RedisBroker) -> None:
    # A knife fight the guards hand over to the station; the station's car, there for the
    # case, calls for backup, and the security team sent is moved into a volunteer agency on
    # its way. Volunteers are never sent to an incident flagged weapon, handed over or not:
    # taken off, and another backup sent for the car. (The case handed over, the move was
    # never judged: the backup went on.)
    teams = {"guards": ("security", 22.8171), "station-car": ("police", 22.8300),
             "backup": ("security", 22.8400), "backup-2": ("security", 22.8500)}
    for team_id, (kind, lat) in teams.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(dispatch, len(teams))
    incident_id = await report(publisher, "violence", priority="P1", flags=("weapon",))
    sent = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                            and orders_for(dispatch, incident_id), "the joint response")
    assert sorted(o.team_id for o in sent) == ["guards", "station-car"]
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
    finally:
        client.close()
    (guards,) = [o for o in sent if o.team_id == "guards"]
    await respond(publisher, guards, "acknowledged", "handover")
    (station,) = await poll_until(lambda: [o for o in orders_for(dispatch, incident_id)
                                           if o.kind == "handover"], "the station's order")
    await respond(publisher, station, "reinforce")
    (backup,) = await poll_until(lambda: [o for o in orders_for(dispatch, incident_id)
                                          if o.kind == "reinforcement"], "the backup")
    assert backup.team_id == "backup"
    await moved(publisher, "backup", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: withdrawn(dispatch, backup.order_id), "the backup taken off")
    backups = await poll_until(lambda: [o.team_id for o in orders_for(dispatch, incident_id)
                                        if o.kind == "reinforcement"][1:], "another backup")
    assert backups == ["backup-2"]
    assert incident(dispatch, incident_id)["status"] == "handed_over"


async def test_a_team_moved_into_volunteers_as_its_order_is_written_is_judged_too(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The move is read between the search that chose the guards (as security) and the offer
    # that claims them: its look at the team's claim found none, and the order, written after
    # it as a security team's, was never judged. The offer's own script judges it then.
    for team_id, (kind, lat) in TEAMS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(dispatch, len(TEAMS))
    real = store.offer_order
    moves: list[str] = []

    async def moved_first(*args: Any, **kwargs: Any) -> Any:
        if kwargs["fields"]["team_id"] == "guards" and not moves:
            moves.append("guards")
            client = Redis.from_url(dispatch, decode_responses=True)
            try:
                await store.save_unit_status(client, at=utcnow(), fields={
                    "team_id": "guards", "district": DISTRICT, "status": "available",
                    "name": "guards", "agency_id": "ag-residents", "agency_kind": "volunteer",
                    "agency_role": "", "mode": "car", "skills": "[]", "home_zone_id": "",
                    "on_shift": "1"})
            finally:
                await client.aclose()
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "offer_order", moved_first)
    incident_id = await report(publisher, "violence", priority="P1", flags=("weapon",))
    sent = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                            and orders_for(dispatch, incident_id), "the joint response")
    (guards,) = [o for o in sent if o.team_id == "guards"]
    assert moves == ["guards"]
    await poll_until(lambda: withdrawn(dispatch, guards.order_id), "the order taken back")
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "another security team")
    assert third.team_id == "guards-2"


async def test_the_by_hand_list_warns_that_volunteers_would_be_alone_once_the_escort_moved(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The escort moved into a volunteer agency counts as volunteers (nobody free to replace
    # it: the P1 flagged). The command room looks for a team to send by hand: another
    # first-aid volunteer team is marked as volunteers alone on a P1, as dispatch counts the
    # teams on it (it read the escort as sent, security, and warned of nothing).
    url = clean_redis
    incident_id, _ = await a_collapse(url, publisher,
                                      {**FIRST_AID, "aunties-2": ("volunteer", 22.8250)})
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: incident(url, incident_id)["flagged"] == "1",
                     "the volunteers alone on the P1 flagged")
    r = await console.get(f"/v1/incidents/{incident_id}/teams", headers=ADMIN)
    assert r.status_code == 200, r.text
    rows = {row["team_id"]: row for row in r.json()["teams"]}
    assert rows["aunties-2"]["warnings"] == ["volunteers_alone_on_p1"]
