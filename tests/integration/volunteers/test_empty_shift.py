"""What dispatch is told of a team stays true (against a real Redis): a shift with nobody
left on it ends, and a team's agency profile changed by an import is not overwritten by a
transition that read the old one."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from faststream.redis import RedisBroker

from services.volunteers.store import teams
from shared.events import Location, OrderIssued, OrderResponded, UnitStatus
from tests.integration.volunteers.conftest import ADMIN, DISTRICT, Volunteers


def an_order(order_id: str) -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id="t-vol", agency_kind="volunteer", category="noise",
                       priority="P4", location=Location(lat=22.03, lon=108.03))


async def team_state(v: Volunteers, team: str) -> dict[str, Any]:
    return (await v.client.get(f"/v1/teams/{team}", headers=ADMIN)).json()["state"]


async def last_status(v: Volunteers, team: str) -> tuple[str, bool]:
    last = [e for e in await v.events("unit.status", UnitStatus) if e.unit_id == team][-1]
    return last.status, last.on_shift


async def test_a_shift_whose_last_member_moved_during_an_order_ends_with_the_order(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    await volunteers.import_district()
    chen = await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    await publisher.publish(an_order("ord_1"), stream="order.issued")
    await volunteers.consumed("order.issued")
    moved = copy.deepcopy(DISTRICT)  # the import moves Chen to another team meanwhile
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    # nobody on the shift is left to answer: it ends under the order, which stays open
    # (dispatch takes back an offer, flags a taken one); an answer Chen gave before the
    # move (read after it) still ends the order, and the team is off duty
    state = await team_state(volunteers, "t-vol")
    assert (state["status"], state["on_shift"]) == ("dispatched", False)
    assert await last_status(volunteers, "t-vol") == ("dispatched", False)
    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_1", incident_id="inc_ord_1", team_id="t-vol",
        member_id="m-chen", response="resolved"), stream="order.responded")
    await volunteers.consumed("order.responded")
    after = await team_state(volunteers, "t-vol")
    assert (after["status"], after["on_shift"]) == ("off_duty", False)
    assert await last_status(volunteers, "t-vol") == ("off_duty", False)


async def test_removing_the_last_member_on_shift_ends_the_shift(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    chen = await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    assert await last_status(volunteers, "t-vol") == ("available", True)
    assert (await volunteers.client.delete("/v1/members/m-chen", headers=ADMIN)).status_code == 204
    after = await team_state(volunteers, "t-vol")
    assert (after["status"], after["on_shift"]) == ("off_duty", False)
    assert await last_status(volunteers, "t-vol") == ("off_duty", False)


async def test_a_transition_that_read_the_old_agency_profile_does_not_publish_it_after_an_import(
        volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    await volunteers.import_district()
    officer = await volunteers.enrol("m-officer")
    read = teams._view_reply
    imported: list[int] = []

    async def read_then_an_import(redis: Any, team_id: str, order_key: str) -> Any:
        reply = await read(redis, team_id, order_key)
        if not imported:  # the import lands between the check-in's read and its write
            r = await volunteers.client.post("/v1/roster/import", headers=ADMIN, json={
                "district": "d1", "agencies": [{"id": "p-street", "name": "Station",
                                                "kind": "police", "role": "station"}]})
            assert r.status_code == 200, r.text
            imported.append(r.json()["unit_status_published"])
        return reply

    monkeypatch.setattr(teams, "_view_reply", read_then_an_import)
    assert (await volunteers.client.post("/v1/me/shift/start", headers=officer)).status_code == 200
    assert imported == [1]
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == "t-patrol"][-1]
    assert (last.status, last.agency_role) == ("available", "station")
