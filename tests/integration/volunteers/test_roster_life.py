"""The roster, shifts and points as a district's volunteer coordinator and members live them:
re-imports over a running district, and points paid to those who were there."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.redis import RedisBroker

from services.volunteers.store.devices import TokenResolver
from shared.events import Location, OrderIssued, OrderResponded, OrderWithdrawn, UnitStatus

from .conftest import ADMIN, DISTRICT, Volunteers


def vol_order(order_id: str, team_id: str = "t-vol",
              category: str = "help_request") -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id=team_id, agency_kind="volunteer", category=category,
                       priority="P3", location=Location(lat=22.03, lon=108.03))


async def test_a_station_owning_zones_cannot_become_a_patrol_or_another_kind_alone(
    volunteers: Volunteers,
) -> None:
    # The stored zones z-territory and z-cell are owned by p-station: re-roled to a street
    # patrol (or re-kinded) without giving its zones to another station, dispatch would hand
    # its territory's incidents over to a patrol, and its fraud warnings to no station.
    await volunteers.import_district()
    station = next(a for a in DISTRICT["agencies"] if a["id"] == "p-station")
    for changed in ({**station, "role": "patrol"}, {**station, "kind": "security",
                                                      "role": None}):
        doc = {"district": "d1", "agencies": [changed]}
        r = await volunteers.client.post("/v1/roster/import", json=doc, headers=ADMIN)
        assert r.status_code == 422, r.text
        [error] = r.json()["error"]["errors"]
        assert error["path"] in ("agencies.0.role", "agencies.0.kind")
        assert "z-cell" in error["message"] and "z-territory" in error["message"]
        stored = (await volunteers.client.get("/v1/agencies/p-station", headers=ADMIN)).json()
        assert (stored["kind"], stored["role"]) == ("police", "station")

    # with its zones given to another station in the same document: accepted
    moved = copy.deepcopy(DISTRICT)
    moved["agencies"].append({"id": "p-two", "name": "Station Two", "kind": "police"})
    moved["agencies"][0] = {**station, "role": "patrol"}
    for zone in moved["zones"]:
        zone["owner_agency_id"] = "p-two"
    await volunteers.import_district(moved)
    zone = (await volunteers.client.get("/v1/zones/z-cell", headers=ADMIN)).json()
    assert zone["owner_agency_id"] == "p-two"


async def test_an_agency_without_teams_can_be_given_another_kind(volunteers: Volunteers) -> None:
    # An agency imported with the wrong kind, before any team was given to it.
    doc = copy.deepcopy(DISTRICT)
    doc["agencies"].append({"id": "v-new", "name": "New patrol", "kind": "security"})
    await volunteers.import_district(doc)
    fixed = {"district": "d1", "agencies": [{"id": "v-new", "name": "New patrol",
                                             "kind": "volunteer"}]}
    result = await volunteers.import_district(fixed)
    assert result["counts"]["agencies"]["updated"] == 1
    stored = (await volunteers.client.get("/v1/agencies/v-new", headers=ADMIN)).json()
    assert stored["kind"] == "volunteer"


async def test_an_answer_read_late_pays_and_penalises_only_those_on_the_shift_when_it_came(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Volunteers was behind (a restart, a backlog): the team's resolution and a timed-out
    # order are read after Chen checked in. Chen was not there for either.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    for order_id in ("ord_r", "ord_t"):
        await publisher.publish(vol_order(order_id), stream="order.issued")
    await volunteers.consumed("order.issued")
    answered_at = datetime.now(UTC)
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200

    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_r", incident_id="inc_ord_r", team_id="t-vol",
        member_id="m-wang", response="resolved", occurred_at=answered_at),
        stream="order.responded")
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_t", incident_id="inc_ord_t", team_id="t-vol",
        reason="timeout", delivered=True, occurred_at=answered_at), stream="order.withdrawn")
    await volunteers.consumed("order.responded")
    await volunteers.consumed("order.withdrawn")

    mine = (await volunteers.client.get("/v1/me/points", headers=wang)).json()
    assert sorted((e["reason"], e["points"]) for e in mine["history"]) == [
        ("missed_order", -2), ("resolved_order", 10)]
    theirs = (await volunteers.client.get("/v1/me/points", headers=chen)).json()
    assert (theirs["balance"], theirs["history"]) == (0, [])


async def test_a_zone_of_a_wrong_agency_row_is_not_reported_a_second_time(
    volunteers: Volunteers,
) -> None:
    doc = {"district": "d2",
           "agencies": [{"id": "p-new", "name": "Station Nine", "kind": "polis"}],
           "zones": [{"id": "z-new", "name": "Nine", "owner_agency_id": "p-new",
                      "polygon": [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1]]}]}
    r = await volunteers.client.post("/v1/roster/import", json=doc, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["error"]["errors"]] == ["agencies.0.kind"]


async def test_the_audit_names_each_member_an_import_moved_and_where(
    volunteers: Volunteers,
) -> None:
    # Moving Chen takes him off his team's shift and reconnects his phone: the coordinator
    # must find in the audit who moved him, when, and from which team to which.
    await volunteers.import_district()
    moved = copy.deepcopy(DISTRICT)
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    await volunteers.import_district(moved)  # re-run: nothing moves again

    entries = (await volunteers.client.get("/v1/admin/audit", headers=ADMIN)).json()["entries"]
    moves = [e for e in entries if e["action"] == "member.move"]
    assert [(e["target"], e["detail"]) for e in moves] == [("m-chen", "t-vol -> t-vol2")]
    assert moves[0]["who"].startswith("admin")
    assert [e["action"] for e in entries].count("roster.import") == 3


async def test_a_check_in_that_crossed_an_import_moving_its_member_does_not_join_the_old_team(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chen taps "check in" as the coordinator's import moves him to t-vol2: his token was
    # resolved (team t-vol) just before the import committed. He must not land on t-vol's
    # shift (t-vol on shift with nobody of its own, Chen paid by two teams at once).
    await volunteers.import_district()
    chen = await volunteers.enrol("m-chen")
    moved = copy.deepcopy(DISTRICT)
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)

    resolve = TokenResolver.resolve

    async def resolved_before_the_import(self: TokenResolver, token: str) -> Any:
        identity = await resolve(self, token)
        return dataclasses.replace(identity, team_id="t-vol") if identity else None

    monkeypatch.setattr(TokenResolver, "resolve", resolved_before_the_import)
    for path in ("/v1/me/shift/start", "/v1/me/shift/end"):
        r = await volunteers.client.post(path, headers=chen)
        assert r.status_code == 409, r.text
        assert "t-vol2" not in r.text and "moved" in r.json()["error"]["message"]
    state = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()["state"]
    assert (state["on_shift"], state["shift_member_ids"]) == (False, [])

    monkeypatch.setattr(TokenResolver, "resolve", resolve)  # the retry: his new team
    r = await volunteers.client.post("/v1/me/shift/start", headers=chen)
    assert r.status_code == 200 and r.json()["team_id"] == "t-vol2"


async def test_a_team_on_an_order_left_with_no_member_goes_off_shift_for_the_command_room(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # t-vol is on its way to an incident. An import (the whole roster re-sent from the
    # spreadsheet) moves Wang, the only one on its shift, to t-vol2: her phone is t-vol2's
    # now, and nobody on t-vol's shift is left to answer its order. Dispatch must hear t-vol
    # off shift, still holding the order (it takes an offer back, or flags the incident for
    # the command room), not see it on its way for ever, as when her phone is revoked or
    # she is removed; Chen, on t-vol's roster but never checked in, was no answer to it.
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    await publisher.publish(vol_order("ord_live"), stream="order.issued")
    await volunteers.consumed("order.issued")

    moved = copy.deepcopy(DISTRICT)
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-wang")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    assert await last_status(volunteers, "t-vol") == ("dispatched", False, "ord_live")

    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)  # its roster empty too: nothing more to end
    assert await last_status(volunteers, "t-vol") == ("dispatched", False, "ord_live")
    state = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()["state"]
    assert (state["on_shift"], state["open_orders"]) == (
        False, [{"order_id": "ord_live", "stage": "dispatched"}])

    # the command room takes it back: the team is free, off duty
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_live", incident_id="inc_ord_live", team_id="t-vol",
        reason="reassigned", delivered=True), stream="order.withdrawn")
    await volunteers.consumed("order.withdrawn")
    assert await last_status(volunteers, "t-vol") == ("off_duty", False, None)


async def test_removing_the_last_member_of_a_team_on_an_order_tells_dispatch_it_is_off_shift(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    await volunteers.import_district()
    officer = await volunteers.enrol("m-officer")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=officer)).status_code \
        == 200
    await publisher.publish(vol_order("ord_p", team_id="t-patrol", category="dispute"),
                            stream="order.issued")
    await volunteers.consumed("order.issued")
    assert (await volunteers.client.delete("/v1/members/m-officer", headers=ADMIN)).status_code \
        == 204
    assert await last_status(volunteers, "t-patrol") == ("dispatched", False, "ord_p")


async def last_status(volunteers: Volunteers, team_id: str) -> tuple[str, bool, str | None]:
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == team_id][-1]
    return last.status, last.on_shift, last.order_id
