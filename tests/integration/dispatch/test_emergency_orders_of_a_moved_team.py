"""A team a roster import moves into a volunteer agency (a security patrol that was in fact a
residents' patrol, filed under the wrong agency) while it holds an order on an incident
whose flags bar volunteers (a weapon): volunteers are never sent into violence, as the
command room's revision adding the flag takes them off. Dispatch takes the order back, with
a timeline entry saying why, and the incident goes to a team that may answer it. Before,
nothing looked at the order again (a station's order of a moved team is handed on). A P1's
escort so moved leaves volunteers alone there: another escort joins them (or, nobody free,
the command room is told), the moved team going on. A team moved to a kind its order's
category does not list is taken off too (but for one the command room sent by hand)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared.events import OrderIssued, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_followup import kinds_and_details
from .test_followup_answers import order_in
from .test_station_orders_of_a_moved_team import moved
from .test_station_orders_of_a_removed_team import incident, withdrawn
from .test_take_back import respond
from .test_zone_pending import zones_back

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
    [taken] = await poll_until(lambda: withdrawn(dispatch, guards.order_id),
                               "the order taken back")
    assert taken.barred_by == ("weapon",)  # its phones are told why: a weapon, leave
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
    # A help request: its category lists volunteers, and nothing bars them from it. The
    # team on its way goes on.
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "help_request", priority="P3")
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
    # Moved while on a help request (its category lists volunteers, and nothing bars them:
    # it goes on); then the caller rings back: he has a knife. The revision takes
    # volunteers off: this team too, though its order was sent to it as a security team.
    url = clean_redis
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, "help_request", priority="P3")
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
        # the flag goes with the timeline entry, the queue in the refill after it
        await poll_until(lambda: client.zscore(f"dispatch:waiting:{DISTRICT}", incident_id)
                         is None, "off the waiting queue")
    finally:
        client.close()
    assert ESCORT_BACK in kinds_and_details(dispatch, incident_id)


ESCORT_BACK = ("note", "guards is now a team of ag-security (security): no longer counted as "
                       "volunteers", None)


async def test_an_escort_moved_back_while_its_move_in_is_judged_escorts_them_again(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The import putting it right is read while the `moved:` timer of the mistaken one is
    # still firing: the P1 flagged, the timer not yet removed. The move back's timer, set
    # then, is not lost with the one that fired (it was: set only if absent, then removed
    # as handled, and the flag stayed until the team's next move).
    real = Dispatcher._counted_as_volunteers
    raced: list[str] = []

    async def moved_back_meanwhile(engine: Dispatcher, *args: Any, **kwargs: Any) -> None:
        await real(engine, *args, **kwargs)
        if not raced:
            raced.append("moved back")
            await store.save_unit_status(engine.redis, at=utcnow(), fields={
                "team_id": "guards", "district": DISTRICT, "status": "available",
                "name": "guards", "agency_id": "ag-security", "agency_kind": "security",
                "agency_role": "", "mode": "car", "skills": "[]", "home_zone_id": "",
                "on_shift": "1"})

    monkeypatch.setattr(Dispatcher, "_counted_as_volunteers", moved_back_meanwhile)
    incident_id, _ = await a_collapse(dispatch, publisher, FIRST_AID)
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: raced, "the move back read as the move in is judged")
    await poll_until(lambda: ESCORT_BACK in kinds_and_details(dispatch, incident_id),
                     "the move back judged")
    assert incident(dispatch, incident_id)["flagged"] == "0"

async def test_a_station_team_s_backup_moved_into_volunteers_on_a_weapon_case_is_replaced(
        dispatch: str, publisher: RedisBroker) -> None:
    # A knife fight the guards would hand over to the station, which the police car on it
    # does (a P1: the guards' hand-over left it with the police); the station's car, there
    # for the case, calls for backup, and the security team sent is moved into a volunteer
    # agency on its way. Volunteers are never sent to an incident flagged weapon, handed
    # over or not: taken off, and another backup sent for the car. (The case handed over,
    # the move was never judged: the backup went on.)
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
    (car,) = [o for o in sent if o.team_id == "station-car"]
    await respond(publisher, guards, "acknowledged", "handover")
    await order_in(dispatch, guards, "handover")
    await respond(publisher, car, "acknowledged", "handover")
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


def moved_as_offered(monkeypatch: pytest.MonkeyPatch, url: str, team_id: str, *,
                     agency_id: str, kind: str) -> list[str]:
    """The roster import moving `team_id` (to `agency_id`, of `kind`, with no skills) read
    between the search that chose the team and the offer that claims it: its status saved
    just before the team's first offer is written. The list gets the team's id once it was."""
    real = store.offer_order
    moves: list[str] = []

    async def moved_first(*args: Any, **kwargs: Any) -> Any:
        if kwargs["fields"]["team_id"] == team_id and not moves:
            moves.append(team_id)
            client = Redis.from_url(url, decode_responses=True)
            try:
                await store.save_unit_status(client, at=utcnow(), fields={
                    "team_id": team_id, "district": DISTRICT, "status": "available",
                    "name": team_id, "agency_id": agency_id, "agency_kind": kind,
                    "agency_role": "", "mode": "car", "skills": "[]", "home_zone_id": "",
                    "on_shift": "1"})
            finally:
                await client.aclose()
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "offer_order", moved_first)
    return moves


async def test_a_team_moved_into_volunteers_as_its_order_is_written_is_judged_too(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The move is read between the search that chose the guards (as security) and the offer
    # that claims them: its look at the team's claim found none, and the order, written after
    # it as a security team's, was never judged. The offer's own script judges it then.
    for team_id, (kind, lat) in TEAMS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(dispatch, len(TEAMS))
    moves = moved_as_offered(monkeypatch, dispatch, "guards", agency_id="ag-residents", kind="volunteer")
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



# A roster import moves a team into an agency of a kind the category of its order does not
# list (DESIGN's "who may answer"): dispatch would never have sent it. Taken off, as a
# weapon takes volunteers off, the timeline saying why, and the incident offered again.
# (It went on: an e-bike theft, a police case, was left to a security company's guards, a
# fight without a weapon flag to a volunteer patrol.)


def moved_off(team_id: str, agency: str, kind: str, category: str
              ) -> tuple[str, str, None]:
    return ("withdrawn", f"{team_id} is now a team of {agency} ({kind}), which {category} "
                         "is not sent to: taken off", None)


async def test_a_police_team_moved_into_a_security_company_is_taken_off_an_ebike_theft(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(publisher, "pol-2", kind="police", lat=22.8400, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "ebike_theft", priority="P3")
    (first,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    assert first.team_id == "pol"
    await moved(publisher, "pol", agency_id="ag-guards", kind="security")
    await poll_until(lambda: withdrawn(dispatch, first.order_id), "the order taken back")
    second = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                              and orders_for(dispatch, incident_id)[1], "another police team")
    assert (second.team_id, second.kind) == ("pol-2", "dispatch")
    assert moved_off("pol", "ag-guards", "security", "ebike_theft") in kinds_and_details(
        dispatch, incident_id)


async def test_a_police_team_moved_into_volunteers_is_taken_off_a_fight_without_a_weapon(
        dispatch: str, publisher: RedisBroker) -> None:
    # No weapon flag bars them, and the guards are there (not alone on the P1): volunteers
    # are still no team a fight is sent (its category lists police and security only).
    for team_id, (kind, lat) in TEAMS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(dispatch, len(TEAMS))
    incident_id = await report(publisher, "violence", priority="P1")
    sent = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                            and orders_for(dispatch, incident_id), "the joint response")
    (patrol,) = [o for o in sent if o.team_id == "patrol"]
    await moved(publisher, "patrol", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: withdrawn(dispatch, patrol.order_id), "the order taken back")
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "another team")
    assert third.team_id == "guards-2"
    assert moved_off("patrol", "ag-residents", "volunteer", "violence") in kinds_and_details(
        dispatch, incident_id)


async def test_a_team_moved_to_a_kind_its_category_lists_goes_on_judged_once(
        dispatch: str, publisher: RedisBroker) -> None:
    # A dispute: security may answer it too. The police patrol moved into a security company
    # goes on; its next statuses (busy, available) do not have its order judged again.
    await team(publisher, "pol", kind="police", role="patrol", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "dispute", priority="P2")
    (order,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await moved(publisher, "pol", agency_id="ag-guards", kind="security")
    await poll_until(lambda: _order_field(dispatch, order.order_id, "judged_as") == "security",
                     "the move judged")
    later = utcnow() + timedelta(seconds=1)
    await moved(publisher, "pol", agency_id="ag-guards", kind="security", at=later)
    await poll_until(lambda: _status_at(dispatch, "pol") >= later.timestamp() - 0.001,
                     "the next status read")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.zscore(store.TIMERS, f"moved:{order.order_id}") is None
    finally:
        client.close()
    assert withdrawn(dispatch, order.order_id) == []
    assert len(orders_for(dispatch, incident_id)) == 1


def _status_at(url: str, team_id: str) -> float:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return float(client.hget(f"dispatch:unit:{team_id}", "status_at") or 0)
    finally:
        client.close()


async def test_a_team_the_command_room_sent_by_hand_stays_when_moved_to_a_kind_not_listed(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # An e-bike theft nobody dispatch may send is free for: the command room sends the
    # guards by hand, knowingly (the by-hand list warned: a kind the category does not list).
    # Moved into a volunteer agency, they are still its choice: they go on.
    url = clean_redis
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, "ebike_theft", priority="P3")
    await poll_until(lambda: incident(url, incident_id).get("status") == "unassigned",
                     "nobody to send")
    r = await console.post(f"/v1/incidents/{incident_id}/assign", headers=ADMIN,
                           json={"team_id": "guards"})
    assert r.status_code == 200, r.text
    order_id = r.json()["order_id"]
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: _order_field(url, order_id, "judged_as") == "volunteer",
                     "the move judged")
    assert withdrawn(url, order_id) == []


async def test_a_team_moved_to_a_kind_not_listed_as_its_order_is_written_is_judged_too(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The move is read between the search that chose the police car and the offer that
    # claims it: the offer's own script has it judged, as the move's would have.
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(publisher, "pol-2", kind="police", lat=22.8400, lon=108.3665)
    await wait_for_units(dispatch, 2)
    moves = moved_as_offered(monkeypatch, dispatch, "pol", agency_id="ag-guards", kind="security")
    incident_id = await report(publisher, "ebike_theft", priority="P3")
    first = (await poll_until(lambda: orders_for(dispatch, incident_id), "the order"))[0]
    assert (moves, first.team_id) == (["pol"], "pol")
    await poll_until(lambda: withdrawn(dispatch, first.order_id), "the order taken back")
    second = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                              and orders_for(dispatch, incident_id)[1], "another police team")
    assert second.team_id == "pol-2"


# A roster import takes from a team a skill its order's category requires (a collapse,
# medical: any kind, with first aid; the team's first-aider moved to another team): dispatch
# would never have sent it (DESIGN's "who may answer"). Taken off as a team moved to a kind
# the category does not list is, the timeline saying why, and the incident offered again.
# (It went on: nobody on the way could give first aid.)

FIRST_AIDERS = {"guards": ("security", 22.8171), "guards-2": ("security", 22.8200)}


async def first_aid_teams(url: str, publisher: RedisBroker,
                          teams: dict[str, tuple[str, float]]) -> None:
    for team_id, (kind, lat) in teams.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665, skills=("first_aid",))
    await wait_for_units(url, len(teams))


LACKS_FIRST_AID = ("withdrawn", "guards no longer has first_aid, which medical needs: "
                                "taken off", None)


async def test_a_team_an_import_leaves_without_first_aid_is_taken_off_a_collapse(
        dispatch: str, publisher: RedisBroker) -> None:
    await first_aid_teams(dispatch, publisher, FIRST_AIDERS)
    incident_id = await report(publisher, "medical", priority="P1")
    (first,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    assert first.team_id == "guards"
    await moved(publisher, "guards", agency_id="ag-security", kind="security", skills=())
    await poll_until(lambda: withdrawn(dispatch, first.order_id), "the order taken back")
    second = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                              and orders_for(dispatch, incident_id)[1], "another first-aid team")
    assert (second.team_id, second.kind) == ("guards-2", "dispatch")
    assert LACKS_FIRST_AID in kinds_and_details(dispatch, incident_id)


async def test_a_team_at_the_scene_an_import_leaves_without_first_aid_stays_there(
        dispatch: str, publisher: RedisBroker) -> None:
    # The guards are with the patient: a roster edit does not pull them off (the people at
    # the scene are the same); judged once, as a change that takes nobody off.
    await first_aid_teams(dispatch, publisher, FIRST_AIDERS)
    incident_id = await report(publisher, "medical", priority="P1")
    (first,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await respond(publisher, first, "acknowledged", "en_route", "on_scene")
    await poll_until(lambda: _order_field(dispatch, first.order_id, "state") == "on_scene",
                     "the guards at the scene")
    await moved(publisher, "guards", agency_id="ag-security", kind="security", skills=())
    await poll_until(lambda: _order_field(dispatch, first.order_id, "judged_skills") == "",
                     "the change judged")
    assert withdrawn(dispatch, first.order_id) == []
    assert _order_field(dispatch, first.order_id, "state") == "on_scene"
    assert LACKS_FIRST_AID not in kinds_and_details(dispatch, incident_id)


async def test_a_team_an_import_takes_a_skill_from_goes_on_where_none_is_needed_judged_once(
        dispatch: str, publisher: RedisBroker) -> None:
    # A noise complaint needs no skill: the guards, first-aiders no more, go on; their next
    # statuses do not have the order judged again.
    await first_aid_teams(dispatch, publisher, {"guards": ("security", 22.8171)})
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await moved(publisher, "guards", agency_id="ag-security", kind="security", skills=())
    await poll_until(lambda: _order_field(dispatch, order.order_id, "judged_skills") == "",
                     "the change judged")
    later = utcnow() + timedelta(seconds=1)
    await moved(publisher, "guards", agency_id="ag-security", kind="security", at=later)
    await poll_until(lambda: _status_at(dispatch, "guards") >= later.timestamp() - 0.001,
                     "the next status read")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.zscore(store.TIMERS, f"moved:{order.order_id}") is None
    finally:
        client.close()
    assert withdrawn(dispatch, order.order_id) == []
    assert len(orders_for(dispatch, incident_id)) == 1


async def test_a_team_left_without_first_aid_as_its_order_is_written_is_judged_too(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The import is read between the search that chose the guards (first-aiders) and the
    # offer that claims them: the offer's own script has the order judged.
    await first_aid_teams(dispatch, publisher, FIRST_AIDERS)
    moves = moved_as_offered(monkeypatch, dispatch, "guards", agency_id="ag-security", kind="security")
    incident_id = await report(publisher, "medical", priority="P1")
    first = (await poll_until(lambda: orders_for(dispatch, incident_id), "the order"))[0]
    assert (moves, first.team_id) == (["guards"], "guards")
    await poll_until(lambda: withdrawn(dispatch, first.order_id), "the order taken back")
    second = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                              and orders_for(dispatch, incident_id)[1], "another first-aid team")
    assert second.team_id == "guards-2"


# A fraud warning goes to the police station owning its zone (`zone_station`: DESIGN's
# "police:station (the zone's)"), and to volunteers. A roster import moves the station's
# team to another station: dispatch would never have sent it there. Taken off as a team
# moved to a kind the category does not list is, the timeline saying why, and the warning
# offered again (to the zone's station's next team). (It went on: another station's team
# warned the zone's residents, which the zone's station follows up a week later.)

STATIONS = {"own-station": ("police", 22.8200), "own-station-2": ("police", 22.8400),
            "aunties": ("volunteer", 22.8171)}
OTHER_STATION = ("withdrawn", "own-station is now a team of ag-other: fraud_warning goes to "
                              "its zone's own station, ag-police: taken off", None)


async def a_fraud_warning(url: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch,
                          ) -> tuple[str, OrderIssued]:
    """A fraud warning in ag-police's zone: its station team and the volunteers go."""
    zones_back(monkeypatch)
    for team_id, (kind, lat) in STATIONS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(url, len(STATIONS))
    incident_id = await report(publisher, "fraud_warning", priority="P4")
    sent = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2
                            and orders_for(url, incident_id), "the station and the volunteers")
    # the first station order (a move judged as it was written may have had the next one
    # sent already)
    station = next(o for o in sent if o.team_id != "aunties")
    return incident_id, station


async def test_a_station_team_moved_to_another_station_is_taken_off_a_fraud_warning(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id, station = await a_fraud_warning(dispatch, publisher, monkeypatch)
    assert station.team_id == "own-station"
    await moved(publisher, "own-station", agency_id="ag-other", kind="police")
    await poll_until(lambda: withdrawn(dispatch, station.order_id), "the order taken back")
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "the station's next team")
    assert (third.team_id, third.kind) == ("own-station-2", "dispatch")
    assert OTHER_STATION in kinds_and_details(dispatch, incident_id)


async def test_a_station_team_moved_to_another_station_goes_on_where_any_station_may_judged_once(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A noise complaint is any station's (no zone_station): the car moved to another
    # station goes on; its next statuses do not have the order judged again.
    zones_back(monkeypatch)
    await team(publisher, "own-station", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await moved(publisher, "own-station", agency_id="ag-other", kind="police")
    await poll_until(lambda: _order_field(dispatch, order.order_id, "judged_agency")
                     == "ag-other", "the move judged")
    later = utcnow() + timedelta(seconds=1)
    await moved(publisher, "own-station", agency_id="ag-other", kind="police", at=later)
    await poll_until(lambda: _status_at(dispatch, "own-station") >= later.timestamp() - 0.001,
                     "the next status read")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.zscore(store.TIMERS, f"moved:{order.order_id}") is None
    finally:
        client.close()
    assert withdrawn(dispatch, order.order_id) == []
    assert len(orders_for(dispatch, incident_id)) == 1


async def test_a_station_team_moved_as_its_fraud_warning_is_written_is_judged_too(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The import is read between the search that chose the station's car and the offer
    # that claims it: the offer's own script has the order judged.
    moves = moved_as_offered(monkeypatch, dispatch, "own-station", agency_id="ag-other", kind="police")
    incident_id, station = await a_fraud_warning(dispatch, publisher, monkeypatch)
    assert (moves, station.team_id) == (["own-station"], "own-station")
    await poll_until(lambda: withdrawn(dispatch, station.order_id), "the order taken back")
    third = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2], "the station's next team")
    assert third.team_id == "own-station-2"
