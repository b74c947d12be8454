"""A volunteer coordinator's work at volunteers, of its own districts only: the roster's import
and reads (members' phones with them), members' devices, check-outs by hand, shift plans, the shifts,
points and the leaderboard, removals of members and teams. Another district's: 403 naming the
field for one it names, 403 for an object of it (after the 404 of none: DESIGN's order), and
nothing written. Its actions are audited as its own."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from .conftest import ADMIN, DISTRICT, Volunteers
from .test_coordinators import audited, bearer, district_like, make_coordinator

PLAN = {"shifts": {"main": {"start": "08:00", "end": "18:00"}}, "rotation": ["main"],
        "anchor": "2026-01-05"}


@dataclass
class Two:
    """d1 and d2 imported; `ours`: d1's coordinator's headers."""

    volunteers: Volunteers
    ours: dict[str, str]
    coordinator_id: str


@pytest.fixture
async def two(volunteers: Volunteers) -> AsyncIterator[Two]:
    await volunteers.import_district()
    await volunteers.import_district(district_like("d2"))
    made = await make_coordinator(volunteers, "d1")
    yield Two(volunteers, bearer(made["token"]), made["coordinator_id"])


async def status_of(two: Two, method: str, path: str, **kwargs: object) -> int:
    r = await two.volunteers.client.request(method, path, headers=two.ours, **kwargs)
    return r.status_code


async def refusal(two: Two, method: str, path: str, **kwargs: object) -> tuple[int, str | None]:
    r = await two.volunteers.client.request(method, path, headers=two.ours, **kwargs)
    assert r.status_code == 403, (path, r.text)
    assert r.json()["error"]["code"] == "forbidden"
    return r.status_code, r.json()["error"].get("field")


async def test_a_coordinator_reads_its_district_s_roster_with_the_members_phones(
        two: Two) -> None:
    client = two.volunteers.client
    r = await client.get("/v1/members", params={"district": "d1"}, headers=two.ours)
    assert r.status_code == 200, r.text
    phones = {m["id"]: m["phone"] for m in r.json()["items"]}
    assert phones["m-wang"] == "+86 138 0000 0002"  # whom the coordinator calls
    for entity in ("agencies", "teams"):
        r = await client.get(f"/v1/{entity}", params={"district": "d1"}, headers=two.ours)
        assert r.status_code == 200 and r.json()["items"], r.text
    for path in ("/v1/agencies/v-red", "/v1/teams/t-vol", "/v1/members/m-wang",
                 "/v1/zones/z-cell", "/v1/zones?district=d1",
                 "/v1/zones/lookup?district=d1&lat=22.03&lon=108.03"):
        assert await status_of(two, "GET", path) == 200, path


async def test_a_coordinator_is_refused_another_district_s_roster(two: Two) -> None:
    for entity in ("agencies", "teams", "members"):
        assert await refusal(two, "GET", f"/v1/{entity}?district=d2") == (403, "district")
        # a district the roster does not hold is none of its own either: not told which are
        assert await refusal(two, "GET", f"/v1/{entity}?district=d9") == (403, "district")
        r = await two.volunteers.client.get(f"/v1/{entity}", headers=two.ours)
        assert (r.status_code, r.json()["error"]["field"]) == (422, "district")
    for path in ("/v1/agencies/d2-v-red", "/v1/teams/d2-t-vol", "/v1/members/d2-m-wang",
                 "/v1/zones/d2-z-cell"):
        assert await refusal(two, "GET", path) == (403, None)
    for path in ("/v1/zones?district=d2", "/v1/zones/lookup?district=d2&lat=22.03&lon=108.03"):
        assert await refusal(two, "GET", path) == (403, "district")
    for path in ("/v1/agencies/nope", "/v1/teams/nope", "/v1/members/nope", "/v1/zones/nope"):
        assert await status_of(two, "GET", path) == 404, path  # 404 before 403
    # the roster's district names are the admin's and the services'
    assert await refusal(two, "GET", "/v1/districts") == (403, None)


async def test_a_coordinator_issues_lists_and_revokes_its_members_devices_only(
        two: Two) -> None:
    client = two.volunteers.client
    r = await client.post("/v1/members/m-wang/devices", headers=two.ours, json={"label": "P40"})
    assert r.status_code == 201, r.text
    device = r.json()
    r = await client.get("/v1/members/m-wang/devices", headers=two.ours)
    assert [d["device_id"] for d in r.json()] == [device["device_id"]]
    phone = bearer(device["token"])
    assert (await client.get("/v1/me", headers=phone)).status_code == 200
    r = await client.delete(f"/v1/members/m-wang/devices/{device['device_id']}", headers=two.ours)
    assert r.status_code == 204, r.text
    assert (await client.get("/v1/me", headers=phone)).status_code == 401

    theirs = (await client.post("/v1/members/d2-m-wang/devices", headers=ADMIN)).json()
    assert await refusal(two, "POST", "/v1/members/d2-m-wang/devices") == (403, None)
    assert await refusal(two, "GET", "/v1/members/d2-m-wang/devices") == (403, None)
    assert await refusal(
        two, "DELETE", f"/v1/members/d2-m-wang/devices/{theirs['device_id']}") == (403, None)
    assert (await client.get("/v1/me", headers=bearer(theirs["token"]))).status_code == 200
    r = await client.get("/v1/members/d2-m-wang/devices", headers=ADMIN)
    assert [d["device_id"] for d in r.json()] == [theirs["device_id"]]  # none made, none gone
    assert await status_of(two, "POST", "/v1/members/nope/devices") == 404

    issued = await audited(two.volunteers, "device.issue")
    assert [e["who"] for e in issued] == ["admin:admin", f"coordinator:{two.coordinator_id}"]
    [revoked] = await audited(two.volunteers, "device.revoke")
    assert revoked["who"] == f"coordinator:{two.coordinator_id}"


async def test_a_coordinator_checks_out_its_own_members_only(two: Two) -> None:
    client = two.volunteers.client
    for member in ("m-wang", "d2-m-wang"):
        phone = await two.volunteers.enrol(member)
        assert (await client.post("/v1/me/shift/start", headers=phone)).status_code == 200
    r = await client.post("/v1/members/m-wang/check-out", headers=two.ours)
    assert r.status_code == 200, r.text
    assert r.json()["checked_out"] is True
    assert await refusal(two, "POST", "/v1/members/d2-m-wang/check-out") == (403, None)
    team = (await client.get("/v1/teams/d2-t-vol", headers=ADMIN)).json()
    assert team["state"]["shift_member_ids"] == ["d2-m-wang"]  # still on it
    assert await status_of(two, "POST", "/v1/members/nope/check-out") == 404
    [entry] = await audited(two.volunteers, "member.check_out")
    assert (entry["who"], entry["target"]) == (f"coordinator:{two.coordinator_id}", "m-wang")


async def test_a_coordinator_sets_and_reads_its_teams_shift_plans_and_shifts(two: Two) -> None:
    client = two.volunteers.client
    r = await client.put("/v1/teams/t-vol/shift-plan", headers=two.ours, json=PLAN)
    assert r.status_code == 200, r.text
    assert await status_of(two, "GET", "/v1/teams/t-vol/shift-plan") == 200
    assert await refusal(two, "PUT", "/v1/teams/d2-t-vol/shift-plan", json=PLAN) == (403, None)
    assert (await client.get("/v1/teams/d2-t-vol/shift-plan", headers=ADMIN)).status_code == 404
    r = await client.put("/v1/teams/d2-t-vol/shift-plan", headers=ADMIN, json=PLAN)
    assert r.status_code == 200
    assert await refusal(two, "GET", "/v1/teams/d2-t-vol/shift-plan") == (403, None)
    assert await status_of(two, "PUT", "/v1/teams/nope/shift-plan", json=PLAN) == 404
    r = await client.put("/v1/teams/d2-t-vol/shift-plan", headers=two.ours,
                         json={**PLAN, "rotation": ["late"]})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "rotation")  # the input first

    r = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-01-05"},
                         headers=two.ours)
    assert r.status_code == 200, r.text
    assert [t["team_id"] for t in r.json()["teams"]] == ["t-vol"]
    assert await status_of(two, "GET", "/v1/shifts/now?district=d1") == 200
    assert await refusal(two, "GET", "/v1/shifts?district=d2&date=2026-01-05") == (
        403, "district")
    assert await refusal(two, "GET", "/v1/shifts/now?district=d2") == (403, "district")
    [entry] = [e for e in await audited(two.volunteers, "shift_plan.set") if e["target"] == "t-vol"]
    assert entry["who"] == f"coordinator:{two.coordinator_id}"


async def test_a_coordinator_awards_and_reads_its_volunteers_points_only(two: Two) -> None:
    client = two.volunteers.client
    r = await client.post("/v1/members/m-wang/points", headers=two.ours,
                          json={"points": 5, "note": "found a lost child"})
    assert r.status_code == 201, r.text
    r = await client.get("/v1/members/m-wang/points", headers=two.ours)
    assert (r.status_code, r.json()["balance"]) == (200, 5)
    r = await client.get("/v1/points/leaderboard", params={"district": "d1"}, headers=two.ours)
    assert [(e["member_id"], e["points"]) for e in r.json()["entries"]] == [("m-wang", 5)]
    r = await client.get("/v1/points/leaderboard", params={"district": "d1", "month": "2026-01"},
                         headers=two.ours)
    assert r.status_code == 200, r.text

    assert await refusal(two, "POST", "/v1/members/d2-m-wang/points",
                         json={"points": 5, "note": "found a lost child"}) == (403, None)
    # another district's guard: 403 for the caller, before 409 for the member's kind
    assert await refusal(two, "POST", "/v1/members/d2-m-guard/points",
                         json={"points": 5, "note": "x"}) == (403, None)
    r = await client.get("/v1/members/d2-m-wang/points", headers=ADMIN)
    assert r.json()["balance"] == 0
    assert await refusal(two, "GET", "/v1/members/d2-m-wang/points") == (403, None)
    assert await refusal(two, "GET", "/v1/points/leaderboard?district=d2") == (403, "district")
    r = await client.get("/v1/points/leaderboard", params={"district": "d2", "month": "2026-13"},
                         headers=two.ours)
    assert (r.status_code, r.json()["error"]["field"]) == (422, "month")  # the input first
    # its own district's guard: no volunteer of its (the admin hears the 409: no points are
    # kept for guards)
    assert await refusal(two, "POST", "/v1/members/m-guard/points",
                         json={"points": 5, "note": "x"}) == (403, None)
    [entry] = await audited(two.volunteers, "points.adjust")
    assert (entry["who"], entry["target"]) == (f"coordinator:{two.coordinator_id}", "m-wang")


async def test_a_coordinator_removes_its_members_and_teams_and_no_zone(two: Two) -> None:
    client = two.volunteers.client
    assert await refusal(two, "DELETE", "/v1/members/d2-m-chen") == (403, None)
    assert await refusal(two, "DELETE", "/v1/teams/d2-t-patrol") == (403, None)
    assert (await client.get("/v1/members/d2-m-chen", headers=ADMIN)).status_code == 200
    assert await status_of(two, "DELETE", "/v1/members/nope") == 404
    assert await status_of(two, "DELETE", "/v1/teams/nope") == 404

    assert await status_of(two, "DELETE", "/v1/teams/t-vol") == 409  # it has members
    for member in ("m-chen", "m-wang"):
        assert await status_of(two, "DELETE", f"/v1/members/{member}") == 204
    assert await status_of(two, "DELETE", "/v1/teams/t-vol") == 204
    assert (await client.get("/v1/teams/t-vol", headers=ADMIN)).status_code == 404
    # a zone is a police station's territory (where hand-overs go): the admin's to remove
    assert await refusal(two, "DELETE", "/v1/zones/z-territory") == (403, None)
    assert (await client.get("/v1/zones/z-territory", headers=ADMIN)).status_code == 200
    who = f"coordinator:{two.coordinator_id}"
    assert [(e["who"], e["target"]) for e in await audited(two.volunteers, "member.delete")] == [
        (who, "m-wang"), (who, "m-chen")]  # newest first
    assert [(e["who"], e["target"]) for e in await audited(two.volunteers, "team.delete")] == [
        (who, "t-vol")]


NEW_VOLUNTEER = {"id": "m-sun", "name": "Sister Sun", "agency_id": "v-red", "team_id": "t-vol",
                 "role": "volunteer", "phone": "+86 138 0000 0003"}
MEMBERS_CSV = ("id,name,agency_id,team_id,role,phone\n"
               "m-zhou,Brother Zhou,v-red,t-vol,volunteer,+86 138 0000 0004\n")


async def test_a_coordinator_imports_its_district_s_roster_as_json_and_csv(two: Two) -> None:
    client = two.volunteers.client
    # the whole district sent back as it is (its zones unchanged), a volunteer added
    doc = copy.deepcopy(DISTRICT)
    doc["members"].append(NEW_VOLUNTEER)
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["members"]["created"] == 1
    assert r.json()["counts"]["zones"]["unchanged"] == 2
    r = await client.post("/v1/roster/import", headers=two.ours,
                          data={"district": "d1"},
                          files={"members": ("members.csv", MEMBERS_CSV.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    r = await client.post("/v1/roster/import", headers=two.ours, json={
        "district": "d1", "csv": {"members": MEMBERS_CSV.replace("Brother", "Uncle")}})
    assert (r.status_code, r.json()["counts"]["members"]["updated"]) == (200, 1)
    r = await client.get("/v1/members/m-zhou", headers=two.ours)
    assert r.json()["name"] == "Uncle Zhou"
    imports = await audited(two.volunteers, "roster.import")
    assert [e["who"] for e in imports] == [  # newest first
        f"coordinator:{two.coordinator_id}"] * 3 + ["admin:admin"] * 2


async def test_a_coordinator_s_import_of_another_district_is_refused_naming_it(
        two: Two) -> None:
    client = two.volunteers.client
    theirs = {"district": "d2", "members": [{**NEW_VOLUNTEER, "agency_id": "d2-v-red",
                                              "team_id": "d2-t-vol"}]}
    assert await refusal(two, "POST", "/v1/roster/import", json=theirs) == (403, "district")
    assert await refusal(two, "POST", "/v1/roster/import", json={**theirs, "district": "d9"}) == (
        403, "district")
    r = await client.post("/v1/roster/import", headers=two.ours, data={"district": "d2"},
                          files={"members": ("members.csv", MEMBERS_CSV.encode(), "text/csv")})
    assert (r.status_code, r.json()["error"]["field"]) == (403, "district")
    assert (await client.get("/v1/members/m-sun", headers=ADMIN)).status_code == 404
    # a document wrong on its own is told so first (DESIGN: 422 before 403), never what
    # another district's stored roster would refuse of it
    broken = {"district": "d2", "teams": [{"id": "d2-t-new", "agency_id": "no-such-agency",
                                           "name": "New", "mode": "rocket"}]}
    r = await client.post("/v1/roster/import", headers=two.ours, json=broken)
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["error"]["errors"]] == ["teams.0.mode"]
    broken["teams"][0]["mode"] = "foot"  # sound on its own: the 403
    assert await refusal(two, "POST", "/v1/roster/import", json=broken) == (403, "district")


async def test_a_coordinator_s_import_naming_another_district_s_rows_is_refused_whole(
        two: Two) -> None:
    """Ids are global: a row of another district's id, or a reference to another district's
    agency or team, refuses the whole import, naming the row (as the admin's: 422)."""
    client = two.volunteers.client
    doc = {"district": "d1", "members": [
        NEW_VOLUNTEER,
        {**NEW_VOLUNTEER, "id": "d2-m-wang"},
        {**NEW_VOLUNTEER, "id": "m-lin", "agency_id": "d2-v-red", "team_id": "d2-t-vol"}]}
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert r.status_code == 422, r.text
    errors = [(e["path"], e["message"]) for e in r.json()["error"]["errors"]]
    assert errors == [("members.1.id", "is already used in another district"),
                      ("members.2.agency_id", "names no agency of this district"),
                      ("members.2.team_id", "names no team of this district")]
    assert "d2" not in r.text  # nor says whose
    csv = MEMBERS_CSV + "d2-m-wang,Auntie Wang,v-red,t-vol,volunteer,\n"
    r = await client.post("/v1/roster/import", headers=two.ours, data={"district": "d1"},
                          files={"members": ("members.csv", csv.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    [error] = r.json()["error"]["errors"]
    assert (error["line"], error["field"]) == (3, "id")
    for member in ("m-sun", "m-lin", "m-zhou"):  # nothing of either written
        assert (await client.get(f"/v1/members/{member}", headers=ADMIN)).status_code == 404
    r = await client.get("/v1/members/d2-m-wang", headers=ADMIN)
    assert r.json()["district"] == "d2"


async def test_a_coordinator_s_import_leaves_the_zones_as_the_admin_drew_them(
        two: Two) -> None:
    """A zone is a police station's territory (the station a place's hand-overs go to): a
    coordinator's import names the stored zones as they are, or leaves them out; one that
    draws a new zone or changes one is refused whole (403 naming the row), as removing one
    is the admin's."""
    client = two.volunteers.client
    doc = copy.deepcopy(DISTRICT)
    doc["members"].append(NEW_VOLUNTEER)
    doc["zones"][1]["polygon"] = [[108.02, 22.02], [108.05, 22.02], [108.05, 22.05],
                                  [108.02, 22.05]]
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert (r.status_code, r.json()["error"]["field"]) == (403, "zones.1"), r.text
    assert "zones.1" in r.json()["error"]["message"], r.json()["error"]["message"]
    added = copy.deepcopy(DISTRICT)
    added["zones"].append({"id": "z-new", "name": "Grid cell 8", "owner_agency_id": "p-station",
                           "polygon": [[108.06, 22.06], [108.08, 22.06], [108.08, 22.08],
                                       [108.06, 22.08]]})
    assert await refusal(two, "POST", "/v1/roster/import", json=added) == (403, "zones.2")
    zones_csv = ('id,name,owner_agency_id,polygon\n'
                 'z-cell,Grid cell 7 renamed,p-station,"[[108.02,22.02],[108.04,22.02],'
                 '[108.04,22.04],[108.02,22.04]]"\n')
    r = await client.post("/v1/roster/import", headers=two.ours, data={"district": "d1"},
                          files={"zones": ("zones.csv", zones_csv.encode(), "text/csv")})
    assert (r.status_code, r.json()["error"]["field"]) == (403, "zones"), r.text
    assert "zones line 2" in r.json()["error"]["message"]
    # wrong as well as that: the 422s first, every one
    doc["members"].append({**NEW_VOLUNTEER, "id": "m-lin", "team_id": "no-such-team"})
    r = await client.post("/v1/roster/import", headers=two.ours, json=doc)
    assert r.status_code == 422, r.text
    assert (await client.get("/v1/members/m-sun", headers=ADMIN)).status_code == 404
    stored = (await client.get("/v1/zones/z-cell", headers=ADMIN)).json()
    assert (stored["name"], stored["polygon"][1]) == ("Grid cell 7", [108.04, 22.02])
    assert (await client.get("/v1/zones/z-new", headers=ADMIN)).status_code == 404
    doc["members"].pop()
    r = await client.post("/v1/roster/import", headers=ADMIN, json=doc)  # the admin's to draw
    assert r.status_code == 200, r.text
