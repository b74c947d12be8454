"""A volunteer coordinator runs volunteers: of its own district's roster it acts on volunteer
agencies, their teams and members only. A police officer's or a guard's record, and a police
or security team, are refused it by every route that names one by id (403 naming the kind,
after the 404 of none, before any 409), and nothing is written: a device issued for an
officer's record would receive police orders with the caller's phone and name, and answer for
a police team."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .conftest import ADMIN, Volunteers
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
