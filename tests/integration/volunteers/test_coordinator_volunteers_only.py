"""A volunteer coordinator runs volunteers: of its own district's roster it acts on volunteer
agencies, their teams and members only. A police officer's or a guard's record, and a police
or security team, are refused it by every route that names one by id (403 naming the kind,
after the 404 of none, before any 409), and nothing is written: a device issued for an
officer's record would receive police orders with the caller's phone and name, and answer for
a police team. Its import changes volunteers' rows only, before and after (police and security
rows pass as stored), else it is refused whole, 403 naming the row, as a zone drawn is."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .conftest import ADMIN, DISTRICT, Volunteers
from .test_coordinator_work import PLAN, Two, status_of
from .test_coordinators import audited, bearer, district_like, make_coordinator

# a police team without members, which the admin could remove (a 204, not the 409 of one
# with members): the coordinator's 403 is its kind's
EMPTY_POLICE_TEAM = {"district": "d1", "teams": [
    {"id": "t-spare", "agency_id": "p-street", "name": "Spare car", "mode": "car"}]}
OFFICERS = {"m-officer": "police", "m-guard": "security"}


@pytest.fixture
async def two(volunteers: Volunteers) -> AsyncIterator[Two]:
    await volunteers.import_district()
    await volunteers.import_district(district_like("d2"))
    made = await make_coordinator(volunteers, "d1")
    yield Two(volunteers, bearer(made["token"]), made["coordinator_id"])


async def refused_as(two: Two, kind: str, method: str, path: str, **kwargs: object) -> None:
    """403 naming the object's kind (no field: the id is no field of the request)."""
    r = await two.volunteers.client.request(method, path, headers=two.ours, **kwargs)
    assert r.status_code == 403, (method, path, r.text)
    error = r.json()["error"]
    assert (error["code"], error.get("field")) == ("forbidden", None), r.text
    assert kind in error["message"], (kind, error["message"])


async def test_a_coordinator_issues_lists_and_revokes_no_officer_s_or_guard_s_devices(
        two: Two) -> None:
    client = two.volunteers.client
    for member, kind in OFFICERS.items():
        issued = (await client.post(f"/v1/members/{member}/devices", headers=ADMIN)).json()
        await refused_as(two, kind, "POST", f"/v1/members/{member}/devices",
                         json={"label": "P40"})
        await refused_as(two, kind, "GET", f"/v1/members/{member}/devices")
        await refused_as(two, kind, "DELETE",
                         f"/v1/members/{member}/devices/{issued['device_id']}")
        await refused_as(two, kind, "DELETE", f"/v1/members/{member}/devices/nope")
        # the admin's device still works; the coordinator made none
        assert (await client.get("/v1/me", headers=bearer(issued["token"]))).status_code == 200
        r = await client.get(f"/v1/members/{member}/devices", headers=ADMIN)
        assert [d["device_id"] for d in r.json()] == [issued["device_id"]]
    assert await status_of(two, "POST", "/v1/members/nope/devices") == 404  # 404 first
    assert [e["who"] for e in await audited(two.volunteers, "device.issue")] == [
        "admin:admin", "admin:admin"]
    assert await audited(two.volunteers, "device.revoke") == []


async def test_a_coordinator_neither_checks_out_nor_removes_officers_guards_or_their_teams(
        two: Two) -> None:
    client = two.volunteers.client
    phones = {m: await two.volunteers.enrol(m) for m in OFFICERS}
    for phone in phones.values():
        assert (await client.post("/v1/me/shift/start", headers=phone)).status_code == 200
    await two.volunteers.import_district(EMPTY_POLICE_TEAM)
    for member, kind in OFFICERS.items():
        await refused_as(two, kind, "POST", f"/v1/members/{member}/check-out")
        await refused_as(two, kind, "DELETE", f"/v1/members/{member}")
        r = await client.get("/v1/me", headers=phones[member])  # still on the roster, on shift
        assert (r.status_code, r.json()["checked_in"]) == (200, True), r.text
    await refused_as(two, "police", "DELETE", "/v1/teams/t-spare")  # the admin's: 204
    await refused_as(two, "security", "DELETE", "/v1/teams/t-guards")  # 403 before its 409
    assert (await client.get("/v1/teams/t-spare", headers=ADMIN)).status_code == 200
    for action in ("member.check_out", "member.delete", "team.delete"):
        assert await audited(two.volunteers, action) == [], action


async def test_a_coordinator_plans_no_police_or_security_team_s_shifts(two: Two) -> None:
    client = two.volunteers.client
    await refused_as(two, "police", "PUT", "/v1/teams/t-patrol/shift-plan", json=PLAN)
    assert (await client.get("/v1/teams/t-patrol/shift-plan", headers=ADMIN)).status_code == 404
    r = await client.put("/v1/teams/t-guards/shift-plan", headers=ADMIN, json=PLAN)
    assert r.status_code == 200, r.text
    await refused_as(two, "security", "PUT", "/v1/teams/t-guards/shift-plan",
                     json={**PLAN, "anchor": "2026-01-06"})
    await refused_as(two, "security", "GET", "/v1/teams/t-guards/shift-plan")
    r = await client.get("/v1/teams/t-guards/shift-plan", headers=ADMIN)
    assert r.json()["anchor"] == "2026-01-05"  # as the admin set it
    # the input first (DESIGN: 422 before 403)
    r = await client.put("/v1/teams/t-patrol/shift-plan", headers=two.ours,
                         json={**PLAN, "rotation": ["late"]})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "rotation")
    assert [e["who"] for e in await audited(two.volunteers, "shift_plan.set")] == ["admin:admin"]


async def test_a_coordinator_reads_no_officer_s_or_guard_s_record_nor_a_police_team_s_view(
        two: Two) -> None:
    """A member's record holds their name, phone and devices; a team's view its live position
    and who is on its shift: an officer's, a guard's, a police patrol's are not the business of
    whoever runs the volunteers (the command room sees the units through dispatch)."""
    for member, kind in OFFICERS.items():
        await refused_as(two, kind, "GET", f"/v1/members/{member}")
        await refused_as(two, kind, "GET", f"/v1/members/{member}/points")
        # for the admin a 409 (points are kept for volunteers): the caller's 403 first
        await refused_as(two, kind, "POST", f"/v1/members/{member}/points",
                         json={"points": 5, "note": "helped at the fair"})
    await refused_as(two, "police", "GET", "/v1/teams/t-patrol")
    await refused_as(two, "security", "GET", "/v1/teams/t-guards")
    r = await two.volunteers.client.post("/v1/members/m-guard/points", headers=ADMIN,
                                         json={"points": 5, "note": "helped at the fair"})
    assert r.status_code == 409
    for path in ("/v1/members/m-wang", "/v1/teams/t-vol", "/v1/agencies/p-station",
                 "/v1/agencies/s-co", "/v1/members/m-wang/points"):
        assert await status_of(two, "GET", path) == 200, path
    assert await audited(two.volunteers, "points.adjust") == []


NEW_VOLUNTEER = {"id": "m-sun", "name": "Sister Sun", "agency_id": "v-red", "team_id": "t-vol",
                 "role": "volunteer", "phone": "+86 138 0000 0003"}


def changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The whole district as stored, a volunteer added (taken alone), and `change` made."""
    doc = copy.deepcopy(DISTRICT)
    doc["members"].append(dict(NEW_VOLUNTEER))
    change(doc)
    return doc


def row_of(doc: dict[str, Any], entity: str, row_id: str) -> dict[str, Any]:
    [found] = [r for r in doc[entity] if r["id"] == row_id]
    return found


def volunteers_made_police(doc: dict[str, Any]) -> None:
    row_of(doc, "agencies", "v-red")["kind"] = "police"
    for member in ("m-wang", "m-chen", "m-sun"):
        row_of(doc, "members", member)["role"] = "auxiliary"


def station_made_patrol(doc: dict[str, Any]) -> None:  # hand-overs would find no station
    row_of(doc, "agencies", "p-street")["role"] = "station"


def station_renamed(doc: dict[str, Any]) -> None:
    row_of(doc, "agencies", "p-station")["name"] = "Station Two"


def security_agency_added(doc: dict[str, Any]) -> None:
    doc["agencies"].append({"id": "s-new", "name": "New guards", "kind": "security"})


def volunteer_team_moved_to_guards(doc: dict[str, Any]) -> None:
    row_of(doc, "teams", "t-vol")["agency_id"] = "s-co"
    for member in ("m-wang", "m-chen", "m-sun"):
        row_of(doc, "members", member).update(agency_id="s-co", role="guard")


def police_team_changed(doc: dict[str, Any]) -> None:
    row_of(doc, "teams", "t-patrol")["mode"] = "foot"


def police_team_added(doc: dict[str, Any]) -> None:
    doc["teams"].append({"id": "t-new", "agency_id": "p-street", "name": "Car 9", "mode": "car"})


def police_team_moved_to_volunteers(doc: dict[str, Any]) -> None:
    row_of(doc, "teams", "t-patrol")["agency_id"] = "v-red"
    row_of(doc, "members", "m-officer").update(agency_id="v-red", role="volunteer")


def officer_s_phone_changed(doc: dict[str, Any]) -> None:
    row_of(doc, "members", "m-officer")["phone"] = "+86 138 9999 9999"


def guard_added(doc: dict[str, Any]) -> None:
    doc["members"].append({"id": "m-new", "name": "Guard Ma", "agency_id": "s-co",
                           "team_id": "t-guards", "role": "guard"})


def volunteer_made_guard(doc: dict[str, Any]) -> None:
    row_of(doc, "members", "m-wang").update(agency_id="s-co", team_id="t-guards", role="guard")


def guard_made_volunteer(doc: dict[str, Any]) -> None:
    row_of(doc, "members", "m-guard").update(agency_id="v-red", team_id="t-vol",
                                             role="volunteer")


@pytest.mark.parametrize(("change", "path", "kind"), [
    (volunteers_made_police, "agencies.3", "police"),
    (station_made_patrol, "agencies.1", "police"),
    (station_renamed, "agencies.0", "police"),
    (security_agency_added, "agencies.4", "security"),
    (volunteer_team_moved_to_guards, "teams.2", "security"),
    (police_team_changed, "teams.0", "police"),
    (police_team_added, "teams.3", "police"),
    (police_team_moved_to_volunteers, "teams.0", "police"),
    (officer_s_phone_changed, "members.0", "police"),
    (guard_added, "members.5", "security"),
    (volunteer_made_guard, "members.2", "security"),
    (guard_made_volunteer, "members.1", "security"),
])
async def test_a_coordinator_s_import_changing_police_or_security_rows_is_refused_whole(
        two: Two, change: Callable[[dict[str, Any]], None], path: str, kind: str) -> None:
    """Rows of police and security agencies, their teams and members, may come in its
    import as stored (a whole district's file imports); any change to one, or a volunteer
    row moved into or out of such an agency, is refused whole: 403 naming the row, as a zone
    drawn is (a volunteer patrol made police would be sent into violence as police; a
    station made a patrol takes no more hand-overs)."""
    client = two.volunteers.client
    before = {e: (await client.get(f"/v1/{e}", params={"district": "d1"},
                                   headers=ADMIN)).json()["items"]
              for e in ("agencies", "teams", "members")}
    r = await client.post("/v1/roster/import", headers=two.ours, json=changed(change))
    assert (r.status_code, r.json()["error"]["field"]) == (403, path), r.text
    message = r.json()["error"]["message"]
    assert message.startswith(f"nothing was imported: {path} ") and kind in message, message
    assert r.json()["error"]["errors"][0]["path"] == path  # each row refused, listed
    after = {e: (await client.get(f"/v1/{e}", params={"district": "d1"},
                                  headers=ADMIN)).json()["items"]
             for e in ("agencies", "teams", "members")}
    assert after == before  # the volunteer added with it neither
    assert [e["who"] for e in await audited(two.volunteers, "roster.import")] == [
        "admin:admin"] * 2
    # the admin's to make
    r = await client.post("/v1/roster/import", headers=ADMIN, json=changed(change))
    assert r.status_code == 200, r.text


async def test_a_whole_district_s_file_with_its_police_and_security_as_stored_imports(
        two: Two) -> None:
    client = two.volunteers.client
    r = await client.post("/v1/roster/import", headers=two.ours, json=changed(lambda _: None))
    assert r.status_code == 200, r.text
    counts = r.json()["counts"]
    assert (counts["agencies"]["unchanged"], counts["teams"]["unchanged"],
            counts["members"]["unchanged"], counts["members"]["created"]) == (4, 3, 4, 1)
    # a volunteer agency, team and member of its own making; a volunteer moved to it
    r = await client.post("/v1/roster/import", headers=two.ours, json={
        "district": "d1",
        "agencies": [{"id": "v-blue", "name": "Blue vests", "kind": "volunteer"}],
        "teams": [{"id": "t-blue", "agency_id": "v-blue", "name": "Blue 1", "mode": "foot"}],
        "members": [{**NEW_VOLUNTEER, "agency_id": "v-blue", "team_id": "t-blue"},
                    {"id": "m-lin", "name": "Lin", "agency_id": "v-blue", "team_id": "t-blue",
                     "role": "volunteer"}]})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["members"] == {"created": 1, "updated": 1, "unchanged": 0}


async def test_a_coordinator_s_csv_changing_a_guard_is_refused_naming_its_line(
        two: Two) -> None:
    client = two.volunteers.client
    members = ("id,name,agency_id,team_id,role,phone\n"
               "m-wang,Auntie Wang,v-red,t-vol,volunteer,+86 138 0000 0002\n"
               "m-guard,Guard Zhao Jr,s-co,t-guards,guard,\n")
    r = await client.post("/v1/roster/import", headers=two.ours, data={"district": "d1"},
                          files={"members": ("members.csv", members.encode(), "text/csv")})
    assert (r.status_code, r.json()["error"]["field"]) == (403, "members"), r.text
    assert "members line 3" in r.json()["error"]["message"]
    assert [(e["line"], e["entity"]) for e in r.json()["error"]["errors"]] == [(3, "members")]
    r = await client.get("/v1/members/m-guard", headers=ADMIN)
    assert r.json()["name"] == "Guard Zhao"


async def test_a_coordinator_s_import_is_told_its_422s_then_its_403_then_its_409(
        two: Two) -> None:
    client = two.volunteers.client
    r = await client.post("/v1/roster/import", headers=ADMIN,
                          json={"district": "d1", "as_of": "2026-01-05T08:00:00+08:00"})
    assert r.status_code == 200, r.text
    doc = changed(police_team_changed)
    doc["as_of"] = "2026-01-04T08:00:00+08:00"  # older: the 409's
    doc["members"].append({**NEW_VOLUNTEER, "id": "m-lin", "team_id": "no-such-team"})
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert (r.status_code, r.json()["error"]["field"]) == (422, "members.5.team_id"), r.text
    doc["members"].pop()
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert (r.status_code, r.json()["error"]["field"]) == (403, "teams.0"), r.text
    del doc["as_of"]
    row_of(doc, "teams", "t-patrol")["mode"] = "car"
    doc["as_of"] = "2026-01-04T08:00:00+08:00"
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert (r.status_code, r.json()["error"]["field"]) == (409, "as_of"), r.text


async def test_a_coordinator_s_import_names_the_volunteers_it_left_out_not_the_officers(
        two: Two) -> None:
    """`not_in_import` names the stored rows to remove on purpose: a coordinator removes
    volunteers only, and an officer's or guard's id is none of its business."""
    client = two.volunteers.client
    r = await client.post("/v1/roster/import", headers=two.ours,
                          json={"district": "d1", "members": [NEW_VOLUNTEER]})
    assert r.status_code == 200, r.text
    assert r.json()["not_in_import"]["members"] == {"count": 2, "ids": ["m-chen", "m-wang"]}
    r = await client.post("/v1/roster/import", headers=ADMIN,
                          json={"district": "d1", "members": [NEW_VOLUNTEER]})
    assert r.json()["not_in_import"]["members"]["ids"] == [
        "m-chen", "m-guard", "m-officer", "m-wang"]


async def test_a_coordinator_lists_its_volunteers_not_the_officers_and_guards_beside_them(
        two: Two) -> None:
    """Whom it calls are its volunteers (with their phones); officers' and guards' names and
    phones are their agencies' business. Agencies and teams are the district's structure, no
    person in them: listed whole, as a district's file holds them."""
    client = two.volunteers.client
    r = await client.get("/v1/members", params={"district": "d1"}, headers=two.ours)
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["items"]] == ["m-chen", "m-wang"]
    assert "Officer Li" not in r.text and "+86 138 0000 0001" not in r.text
    pages, cursor = [], None
    while True:  # a page at a time, the officers and guards between them passed over
        params = {"district": "d1", "limit": 1} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/members", params=params, headers=two.ours)
        pages.append([m["id"] for m in r.json()["items"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == [["m-chen"], ["m-wang"]]
    r = await client.get("/v1/members", params={"district": "d1"}, headers=ADMIN)
    assert len(r.json()["items"]) == 4  # the admin's: everyone
    for entity, ids in (("agencies", ["p-station", "p-street", "s-co", "v-red"]),
                        ("teams", ["t-guards", "t-patrol", "t-vol"])):
        r = await client.get(f"/v1/{entity}", params={"district": "d1"}, headers=two.ours)
        assert [i["id"] for i in r.json()["items"]] == ids, entity


ALL_DAY = {"shifts": {"day": {"start": "00:00", "end": "24:00"}}, "rotation": ["day"],
           "anchor": "2026-01-05"}


async def test_a_coordinator_s_shifts_are_its_volunteer_teams_not_police_or_guards_on_duty(
        two: Two) -> None:
    """Who of a police patrol or a guard post is checked in now, and their names, are the
    command room's (dispatch shows the desks their own): a coordinator's shifts of a date and
    those worked now list its volunteer teams."""
    client = two.volunteers.client
    for team in ("t-patrol", "t-guards", "t-vol"):
        r = await client.put(f"/v1/teams/{team}/shift-plan", headers=ADMIN, json=ALL_DAY)
        assert r.status_code == 200, r.text
    for path, params in (("/v1/shifts", {"district": "d1", "date": "2026-01-05"}),
                         ("/v1/shifts/now", {"district": "d1"})):
        r = await client.get(path, params=params, headers=ADMIN)
        assert [t["team_id"] for t in r.json()["teams"]] == ["t-guards", "t-patrol", "t-vol"]
        r = await client.get(path, params=params, headers=two.ours)
        assert r.status_code == 200, r.text
        assert [t["team_id"] for t in r.json()["teams"]] == ["t-vol"], path
        assert "Officer Li" not in r.text and "Guard Zhao" not in r.text
