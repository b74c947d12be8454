"""Roster import (JSON and CSV), upsert counts, all-or-nothing errors, reads, removals."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.volunteers.domain.status import TeamState
from services.volunteers.store import teams
from shared.events import DeviceRevoked, UnitStatus

from .conftest import ADMIN, DISTRICT, Volunteers

CSV = {
    "agencies": "id,name,kind,role\n"
                "p-station,Station One,police,\n"
                "p-street,Street service station,police,patrol\n"
                "s-co,Guard company,security,\n"
                "v-red,Red armbands,volunteer,\n",
    "zones": "id,name,owner_agency_id,polygon\n"
             'z-territory,Station territory,p-station,'
             '"POLYGON ((108 22, 108.1 22, 108.1 22.1, 108 22.1, 108 22))"\n'
             'z-cell,Grid cell 7,p-station,'
             '"[[108.02,22.02],[108.04,22.02],[108.04,22.04],[108.02,22.04]]"\n',
    "teams": "id,agency_id,name,mode,skills,home_zone_id\n"
             "t-patrol,p-street,Patrol 1,car,first_aid,z-territory\n"
             "t-guards,s-co,Post 3,foot,,z-cell\n"
             "t-vol,v-red,Aunties,ebike,first_aid,z-cell\n",
    "members": "id,name,agency_id,team_id,role,phone\n"
               "m-officer,Officer Li,p-street,t-patrol,officer,+86 138 0000 0001\n"
               "m-guard,Guard Zhao,s-co,t-guards,guard,\n"
               "m-wang,Auntie Wang,v-red,t-vol,volunteer,+86 138 0000 0002\n"
               "m-chen,Uncle Chen,v-red,t-vol,volunteer,\n",
}

CREATED = {"agencies": {"created": 4, "updated": 0, "unchanged": 0},
           "zones": {"created": 2, "updated": 0, "unchanged": 0},
           "teams": {"created": 3, "updated": 0, "unchanged": 0},
           "members": {"created": 4, "updated": 0, "unchanged": 0}}
UNCHANGED = {"agencies": {"created": 0, "updated": 0, "unchanged": 4},
             "zones": {"created": 0, "updated": 0, "unchanged": 2},
             "teams": {"created": 0, "updated": 0, "unchanged": 3},
             "members": {"created": 0, "updated": 0, "unchanged": 4}}


async def test_json_import_creates_the_roster_and_announces_every_team(
    volunteers: Volunteers,
) -> None:
    result = await volunteers.import_district()
    assert result["counts"] == CREATED and result["unit_status_published"] == 3

    team = (await volunteers.client.get("/v1/teams/t-patrol", headers=ADMIN)).json()
    assert (team["name"], team["mode"], team["skills"]) == ("Patrol 1", "car", ["first_aid"])
    assert team["state"]["status"] == "off_duty" and team["member_ids"] == ["m-officer"]

    events = {e.unit_id: e for e in await volunteers.events("unit.status", UnitStatus)}
    assert set(events) == {"t-patrol", "t-guards", "t-vol"}
    patrol = events["t-patrol"]
    assert (patrol.agency_kind, patrol.agency_role, patrol.mode, patrol.skills) == (
        "police", "patrol", "car", ("first_aid",))
    assert (patrol.status, patrol.on_shift, patrol.home_zone_id) == ("off_duty", False,
                                                                     "z-territory")
    assert events["t-vol"].agency_kind == "volunteer" and events["t-vol"].agency_role is None


async def test_reimport_is_an_upsert_that_counts_and_never_duplicates(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    again = await volunteers.import_district()
    assert again["counts"] == UNCHANGED and again["unit_status_published"] == 0

    changed = copy.deepcopy(DISTRICT)
    changed["teams"][2]["mode"] = "bike"
    changed["members"][3]["phone"] = "+86 139 0000 0003"
    changed["agencies"].append({"id": "v-blue", "name": "Blue riders", "kind": "volunteer"})
    result = await volunteers.import_district(changed)
    assert result["counts"]["teams"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert result["counts"]["members"] == {"created": 0, "updated": 1, "unchanged": 3}
    assert result["counts"]["agencies"] == {"created": 1, "updated": 0, "unchanged": 4}

    teams = (await volunteers.client.get("/v1/teams?district=d1", headers=ADMIN)).json()
    assert [t["id"] for t in teams["items"]] == ["t-guards", "t-patrol", "t-vol"]
    events = await volunteers.events("unit.status", UnitStatus)
    assert [e.unit_id for e in events[3:]] == ["t-vol"] and events[-1].mode == "bike"


async def test_a_reimport_names_the_stored_rows_its_files_left_out_and_keeps_them(
    volunteers: Volunteers,
) -> None:
    """The coordinator sends the members file again with Wang, who quit, deleted from the
    spreadsheet. The import upserts (removals are DELETE's), so Wang, on shift with a phone
    and points, stays on the roster: the answer says so by name, for each file sent, so
    that they can be removed on purpose, not left by a silence that read as done."""
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    members = "\n".join(line for line in CSV["members"].splitlines()
                         if not line.startswith("m-wang,")) + "\n"
    response = await volunteers.client.post("/v1/roster/import", headers=ADMIN, json={
        "district": "d1", "csv": {"members": members}})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["counts"]["members"] == {"created": 0, "updated": 0, "unchanged": 3}
    assert result["not_in_import"] == {"members": {"count": 1, "ids": ["m-wang"]}}
    # kept as it was: on the roster, on shift, their phone still theirs
    assert (await volunteers.client.get("/v1/me", headers=wang)).json()["checked_in"] is True

    # a JSON document names what it sends the same way; an entity it leaves out, nothing
    doc = {"district": "d1", "agencies": DISTRICT["agencies"],
           "teams": [t for t in DISTRICT["teams"] if t["id"] != "t-guards"], "members": []}
    result = await volunteers.import_district(doc)
    assert result["not_in_import"] == {
        "agencies": {"count": 0, "ids": []},
        "teams": {"count": 1, "ids": ["t-guards"]},
        "members": {"count": 4, "ids": ["m-chen", "m-guard", "m-officer", "m-wang"]}}
    # another district's rows are never this one's
    other = copy.deepcopy(DISTRICT)
    other["district"] = "d2"
    for entity in ("agencies", "zones", "teams", "members"):
        other[entity] = [{k: (f"d2-{v}" if k in ("id", "agency_id", "team_id",
                                                  "owner_agency_id", "home_zone_id") else v)
                          for k, v in row.items()} for row in DISTRICT[entity]]
    for zone in other["zones"]:  # its own ground, far from d1's
        zone["polygon"] = [[lon + 1, lat] for lon, lat in zone["polygon"]]
    result = await volunteers.import_district(other)
    assert all(v == {"count": 0, "ids": []} for v in result["not_in_import"].values())


async def test_an_agency_kind_change_republishes_its_stored_teams(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    result = await volunteers.import_district({"district": "d1", "agencies": [
        {"id": "p-street", "name": "Special patrol brigade", "kind": "police",
         "role": "station"}]})
    assert result["unit_status_published"] == 1
    last = (await volunteers.events("unit.status", UnitStatus))[-1]
    assert (last.unit_id, last.agency_role) == ("t-patrol", "station")


async def test_csv_files_as_multipart_upload_import_the_same_roster(
    volunteers: Volunteers,
) -> None:
    files = {name: (f"{name}.csv", text.encode(), "text/csv") for name, text in CSV.items()}
    response = await volunteers.client.post("/v1/roster/import", headers=ADMIN,
                                            data={"district": "d1"}, files=files)
    assert response.status_code == 200, response.text
    assert response.json()["counts"] == CREATED
    # the same district as a JSON document changes nothing: both formats mean the same
    assert (await volunteers.import_district())["counts"] == UNCHANGED
    zone = (await volunteers.client.get("/v1/zones/z-territory", headers=ADMIN)).json()
    assert zone["polygon"] == SQUARE_OPEN


SQUARE_OPEN = [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1], [108.0, 22.1]]


async def test_a_csv_file_excel_saved_on_a_chinese_windows_imports_and_a_workbook_is_told(
    volunteers: Volunteers,
) -> None:
    """Excel's "CSV (逗号分隔)" on a Chinese Windows writes GBK, not UTF-8 ("CSV UTF-8" is
    another entry of its list): the coordinator's export of the spreadsheet is taken as it
    comes, Chinese names and all. A workbook sent as it is (.xlsx) is told to be saved as
    CSV, not "not UTF-8"."""
    await volunteers.import_district()
    members = ("id,name,agency_id,team_id,role,phone\n"
               "m-wang,王秀英,v-red,t-vol,volunteer,13800000002\n"
               'm-chen,"陈建国, 老陈",v-red,t-vol,volunteer,\n')
    for encoding in ("gbk", "gb18030", "utf-8-sig"):
        files = {"members": ("members.csv", members.encode(encoding), "text/csv")}
        r = await volunteers.client.post("/v1/roster/import", headers=ADMIN,
                                         data={"district": "d1"}, files=files)
        assert r.status_code == 200, (encoding, r.text)
        wang = (await volunteers.client.get("/v1/members/m-wang", headers=ADMIN)).json()
        chen = (await volunteers.client.get("/v1/members/m-chen", headers=ADMIN)).json()
        assert (wang["name"], chen["name"]) == ("王秀英", "陈建国, 老陈"), encoding

    workbook = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256))
    old_workbook = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256))
    for data in (workbook, old_workbook):
        r = await volunteers.client.post("/v1/roster/import", headers=ADMIN,
                                         data={"district": "d1"},
                                         files={"members": ("members.xlsx", data, "text/csv")})
        assert (r.status_code, r.json()["error"]["field"]) == (422, "members"), r.text
        assert "Excel workbook" in r.json()["error"]["message"]
        assert "save it as CSV" in r.json()["error"]["message"]
    r = await volunteers.client.post("/v1/roster/import", headers=ADMIN, data={"district": "d1"},
                                     files={"members": ("members.csv", b"id\xff\xfe", "text/csv")})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "members"), r.text
    assert "UTF-8 or GBK" in r.json()["error"]["message"]


async def test_a_csv_with_empty_columns_left_by_excel_imports_and_a_stray_value_is_told(
    volunteers: Volunteers,
) -> None:
    """Excel writes every column of the sheet's used range: a column typed in once and
    cleared comes out as an empty header cell and a trailing comma on every row. Nothing is
    in it, so it is passed over; a value under no header is the sender's to look at."""
    await volunteers.import_district()
    members = ("id,name,agency_id,team_id,role,phone,,\n"
               "m-wang,Auntie Wang,v-red,t-vol,volunteer,+86 138 0000 0002,,\n"
               "m-chen,Uncle Chen,v-red,t-vol,volunteer,, ,\n")
    r = await volunteers.client.post("/v1/roster/import", headers=ADMIN, json={
        "district": "d1", "csv": {"members": members}})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["members"] == {"created": 0, "updated": 0, "unchanged": 2}

    stray = members.replace("m-chen,Uncle Chen,v-red,t-vol,volunteer,, ,",
                            "m-chen,Uncle Chen,v-red,t-vol,volunteer,,13900000000,")
    r = await volunteers.client.post("/v1/roster/import", headers=ADMIN, json={
        "district": "d1", "csv": {"members": stray}})
    assert r.status_code == 422, r.text
    [error] = r.json()["error"]["errors"]
    assert (error["entity"], error["line"]) == ("members", 3)
    assert "column 7" in error["message"] and "no header" in error["message"]
    assert "13900000000" not in r.text  # the value is never echoed


async def test_csv_texts_in_a_json_body_import_too(volunteers: Volunteers) -> None:
    response = await volunteers.client.post("/v1/roster/import", headers=ADMIN,
                                            json={"district": "d1", "csv": CSV})
    assert response.status_code == 200, response.text
    assert response.json()["counts"] == CREATED


async def test_bad_json_rows_are_reported_by_path_and_nothing_is_half_imported(
    volunteers: Volunteers,
) -> None:
    bad = copy.deepcopy(DISTRICT)
    bad["teams"][1]["mode"] = "hovercraft"
    bad["members"][2]["team_id"] = "t-nowhere"
    response = await volunteers.client.post("/v1/roster/import", json=bad, headers=ADMIN)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_roster" and error["field"] == "teams.1.mode"
    assert {(e["path"], e["field"]) for e in error["errors"]} == {
        ("teams.1.mode", "mode"), ("members.2.team_id", "team_id")}
    assert "hovercraft" not in response.text and "Auntie" not in response.text
    # the valid agencies and zones of the same document were not written either
    assert (await volunteers.client.get("/v1/agencies/p-station", headers=ADMIN)).status_code \
        == 404
    assert await volunteers.redis.keys("roster:*") == []
    assert await volunteers.redis.xlen("unit.status") == 0


async def test_bad_csv_rows_are_reported_by_line_and_a_stored_roster_stays_as_it_was(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    csv = dict(CSV)
    csv["teams"] = CSV["teams"].replace("Post 3,foot", "Post 3 renamed,foot")
    csv["members"] = CSV["members"] + "m-new,New,v-red,t-vol,guard,\n"
    response = await volunteers.client.post("/v1/roster/import", headers=ADMIN,
                                            json={"district": "d1", "csv": csv})
    assert response.status_code == 422
    errors = response.json()["error"]["errors"]
    assert [(e["entity"], e["line"], e["field"]) for e in errors] == [("members", 6, "role")]
    team = (await volunteers.client.get("/v1/teams/t-guards", headers=ADMIN)).json()
    assert team["name"] == "Post 3"
    assert (await volunteers.client.get("/v1/members/m-new", headers=ADMIN)).status_code == 404


async def test_import_checks_run_in_order(volunteers: Volunteers) -> None:
    client = volunteers.client
    assert (await client.post("/v1/roster/import", json=DISTRICT)).status_code == 401
    response = await client.post("/v1/roster/import", content=b"{not json", headers={
        **ADMIN, "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_json"
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    # The request's own input before the caller's kind (DESIGN: 400/422, then 403): a
    # device's token is told what the admin's is of a malformed roster, JSON or CSV.
    wrong_mode = copy.deepcopy(DISTRICT)
    wrong_mode["teams"][0]["mode"] = "rocket"
    for asked, expected in (
        ({"content": b"{not json", "headers": {"content-type": "application/json"}},
         (400, "bad_json", None)),
        ({"json": wrong_mode}, (422, "invalid_roster", "teams.0.mode")),
        ({"json": {"district": "d1", "csv": CSV, "note": "x"}}, (422, "invalid_field", "note")),
        ({"json": {"district": "d1", "csv": {"teams": 3}}}, (422, "invalid_field", "csv")),
    ):
        answers = []
        for who in (ADMIN, device):
            r = await client.post("/v1/roster/import", **{
                **asked, "headers": {**asked.get("headers", {}), **who}})
            error = r.json()["error"]
            assert (r.status_code, error["code"], error.get("field")) == expected, r.text
            answers.append(r.json())
        assert answers[0] == answers[1], answers
    # Checked against the stored roster only for the admin, who hears both together: a
    # device is told its document's own errors, then its 403, never what is stored.
    no_team = copy.deepcopy(DISTRICT)
    no_team["members"][2]["team_id"] = "t-nowhere"
    both = copy.deepcopy(no_team)
    both["teams"][1]["mode"] = "hovercraft"
    for doc, admin_told, device_told in (
        (both, {"teams.1.mode", "members.2.team_id"}, {"teams.1.mode"}),
        (no_team, {"members.2.team_id"}, None),
    ):
        r = await client.post("/v1/roster/import", json=doc, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert {e["path"] for e in r.json()["error"]["errors"]} == admin_told, r.text
        r = await client.post("/v1/roster/import", json=doc, headers=device)
        if device_told is None:
            assert r.status_code == 403, r.text
        else:
            assert r.status_code == 422, r.text
            assert {e["path"] for e in r.json()["error"]["errors"]} == device_told, r.text
    assert (await client.post("/v1/roster/import", json=DISTRICT, headers=device)).status_code \
        == 403


async def test_lists_are_paginated_by_cursor_with_a_cap(volunteers: Volunteers) -> None:
    doc = copy.deepcopy(DISTRICT)
    doc["teams"] += [{"id": f"t-extra-{i}", "agency_id": "s-co", "name": f"Extra {i}",
                      "mode": "foot"} for i in range(4)]
    await volunteers.import_district(doc)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"district": "d1", "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await volunteers.client.get("/v1/teams", params=params, headers=ADMIN)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(t["id"] for t in doc["teams"])
    too_many = await volunteers.client.get("/v1/teams", params={"limit": 501}, headers=ADMIN)
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "limit"
    # another district holds none of d1's; one the roster does not hold is named
    await volunteers.import_district({"district": "d2", "agencies": [
        {"id": "d2-ps", "name": "Station Two", "kind": "police"}]})
    other = await volunteers.client.get("/v1/members", params={"district": "d2"}, headers=ADMIN)
    assert other.json() == {"items": [], "next_cursor": None}
    none = await volunteers.client.get("/v1/members", params={"district": "d3"}, headers=ADMIN)
    assert none.status_code == 422 and none.json()["error"]["field"] == "district"


async def test_lookups_of_each_entity(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    client = volunteers.client
    agency = (await client.get("/v1/agencies/p-street", headers=ADMIN)).json()
    assert (agency["kind"], agency["role"], agency["team_ids"]) == ("police", "patrol",
                                                                   ["t-patrol"])
    member = (await client.get("/v1/members/m-wang", headers=ADMIN)).json()
    assert (member["team_id"], member["role"], member["devices"]) == ("t-vol", "volunteer", [])
    assert (await client.get("/v1/zones/nope", headers=ADMIN)).status_code == 404


async def test_removing_a_member_revokes_devices_and_a_team_goes_only_when_empty(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    device = await volunteers.enrol("m-guard")
    refused = await client.delete("/v1/teams/t-guards", headers=ADMIN)
    assert refused.status_code == 409 and "member" in refused.json()["error"]["message"]

    assert (await client.delete("/v1/members/m-guard", headers=ADMIN)).status_code == 204
    assert (await client.get("/v1/devices/introspect", headers=device)).status_code == 401
    [revoked] = await volunteers.events("device.revoked", DeviceRevoked)
    assert (revoked.member_id, revoked.team_id) == ("m-guard", "t-guards")

    assert (await client.delete("/v1/teams/t-guards", headers=ADMIN)).status_code == 204
    assert (await client.get("/v1/teams/t-guards", headers=ADMIN)).status_code == 404
    last = (await volunteers.events("unit.status", UnitStatus))[-1]
    assert (last.unit_id, last.status, last.on_shift) == ("t-guards", "off_duty", False)
    assert (await client.delete("/v1/members/m-guard", headers=ADMIN)).status_code == 404
    # a later import does not resurrect what it does not name
    assert json.dumps(DISTRICT)  # the fixture document still names them; re-import restores
    result = await volunteers.import_district()
    assert result["counts"]["teams"]["created"] == 1


async def test_zone_lookup_finds_the_most_specific_zone_and_follows_imports(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client

    async def lookup(lat: float, lon: float):
        return await client.get("/v1/zones/lookup", headers=ADMIN,
                                params={"district": "d1", "lat": lat, "lon": lon})

    inside_cell = await lookup(22.03, 108.03)
    assert inside_cell.json() == {"zone_id": "z-cell", "zone_name": "Grid cell 7",
                                  "owner_agency_id": "p-station"}
    assert (await lookup(22.08, 108.08)).json()["zone_id"] == "z-territory"
    missing = await lookup(23.5, 108.08)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = await lookup(95, 108.0)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "lat"

    moved = copy.deepcopy(DISTRICT)
    moved["zones"][1]["polygon"] = [[108.06, 22.06], [108.08, 22.06], [108.08, 22.08],
                                    [108.06, 22.08]]
    await volunteers.import_district(moved)
    assert (await lookup(22.03, 108.03)).json()["zone_id"] == "z-territory"
    assert (await lookup(22.07, 108.07)).json()["zone_id"] == "z-cell"

    device = await volunteers.enrol("m-wang")
    assert (await client.get("/v1/zones/lookup", headers=device, params={
        "district": "d1", "lat": 22.03, "lon": 108.03})).status_code == 403


async def test_moving_a_member_to_another_team_tells_notify_of_each_of_its_devices(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    chen = await volunteers.enrol("m-chen")
    await volunteers.enrol("m-wang")  # stays in t-vol: nothing said of it
    r = await volunteers.client.post("/v1/me/shift/start", headers=chen)
    assert r.status_code == 200 and r.json()["on_shift"] is True
    moved = copy.deepcopy(DISTRICT)
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)

    [event] = await volunteers.events("device.revoked", DeviceRevoked)
    assert (event.member_id, event.team_id, event.reason) == ("m-chen", "t-vol2", "team_changed")
    # not revoked: the token is good, for the new team
    r = await volunteers.client.get("/v1/devices/introspect", headers=chen)
    assert r.status_code == 200 and r.json()["team_id"] == "t-vol2"
    await volunteers.import_district(moved)  # the same roster again: nobody moved
    assert len(await volunteers.events("device.revoked", DeviceRevoked)) == 1
    # Chen was t-vol's only member on shift: the team went off duty with him, so dispatch
    # sends it nothing it cannot answer.
    last = [e for e in await volunteers.events("unit.status", UnitStatus) if e.unit_id == "t-vol"][-1]
    assert (last.status, last.on_shift) == ("off_duty", False)
    r = await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)
    assert r.json()["state"]["on_shift"] is False


async def checked_in_an_hour_ago(volunteers: Volunteers, team_id: str, member_id: str) -> None:
    """Backdate a member's check-in, so that leaving the shift pays patrol points."""
    key = f"roster:state:{team_id}"
    state = TeamState.model_validate_json(await volunteers.redis.hget(key, "state"))
    members = {**state.shift_members, member_id: datetime.now(UTC) - timedelta(hours=1)}
    await volunteers.redis.hset(key, "state", state.model_copy(
        update={"shift_members": members}).model_dump_json())


async def test_a_member_moved_by_an_import_is_off_the_old_shift_even_if_nothing_runs_after_it(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Leaving the old shift is part of the import's own write: with every later team step
    # failing (Redis gone, or the process killed, right after the import), Chen and then
    # Wang are still off t-vol's shift, paid for their patrol, and the emptied shift ends.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    for device in (wang, chen):
        assert (await volunteers.client.post("/v1/me/shift/start", headers=device)).status_code \
            == 200
    await checked_in_an_hour_ago(volunteers, "t-vol", "m-chen")

    async def redis_gone(*_: Any, **__: Any) -> None:
        raise ConnectionError("Redis went away after the import")

    monkeypatch.setattr(teams, "transition", redis_gone)
    moved = copy.deepcopy(DISTRICT)
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)

    state = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()["state"]
    assert (state["on_shift"], state["shift_member_ids"]) == (True, ["m-wang"])
    points = (await volunteers.client.get("/v1/me/points", headers=chen)).json()
    assert [(e["reason"], e["team_id"], e["minutes"]) for e in points["history"]] == [
        ("patrol", "t-vol", 60)]
    assert points["balance"] == 5

    next(m for m in moved["members"] if m["id"] == "m-wang")["team_id"] = "t-vol2"
    result = await volunteers.import_district(moved)  # the last member on shift moves
    await off_duty_and_dispatch_told(volunteers, "t-vol")
    assert result["unit_status_published"] == 1  # that one
    assert (await volunteers.client.get("/v1/teams/t-vol2", headers=ADMIN)).json()[
        "state"]["shift_member_ids"] == []  # they check in to their new team themselves


async def off_duty_and_dispatch_told(volunteers: Volunteers, team_id: str) -> None:
    state = (await volunteers.client.get(f"/v1/teams/{team_id}", headers=ADMIN)).json()["state"]
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "off_duty", False, [])
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == team_id][-1]
    assert (last.status, last.on_shift) == ("off_duty", False)


async def test_a_removed_member_is_off_the_shift_even_if_nothing_runs_after_the_removal(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await volunteers.import_district()
    chen = await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    await checked_in_an_hour_ago(volunteers, "t-vol", "m-chen")

    async def redis_gone(*_: Any, **__: Any) -> None:
        raise ConnectionError("Redis went away after the removal")

    monkeypatch.setattr(teams, "transition", redis_gone)
    assert (await volunteers.client.delete("/v1/members/m-chen", headers=ADMIN)).status_code \
        == 204
    await off_duty_and_dispatch_told(volunteers, "t-vol")
    # paid in the removal's write: the ledger has the entry (the balance went with Chen)
    [paid] = [k async for k in volunteers.redis.scan_iter(match="roster:ledger:patrol:*:m-chen")]
    assert json.loads(await volunteers.redis.get(paid))["points"] == 5


async def test_a_team_or_agency_changed_without_its_members_is_refused(
    volunteers: Volunteers,
) -> None:
    # Stored members the document does not name would keep the team's old agency, or a role
    # the agency's new kind does not have (a guard in a volunteer patrol).
    await volunteers.import_district()
    only = {"district": "d1", "agencies": [], "zones": [], "members": []}
    guards = next(t for t in DISTRICT["teams"] if t["id"] == "t-guards")
    async def refused(doc: dict[str, Any]) -> dict[str, Any]:
        r = await volunteers.client.post("/v1/roster/import", json=doc, headers=ADMIN)
        assert r.status_code == 422, r.text
        [error] = r.json()["error"]["errors"]
        assert "m-guard" in error["message"]
        return dict(error)

    moved = {**only, "teams": [{**guards, "agency_id": "v-red"}]}
    error = await refused(moved)
    assert (error["path"], error["field"]) == ("teams.0.agency_id", "agency_id")

    company = next(a for a in DISTRICT["agencies"] if a["id"] == "s-co")
    rekinded = {**only, "teams": [], "agencies": [{**company, "kind": "volunteer"}]}
    error = await refused(rekinded)
    assert (error["path"], error["field"]) == ("agencies.0.kind", "kind")

    # with the members moved, or given their new roles, in the same document: accepted
    guard = next(m for m in DISTRICT["members"] if m["id"] == "m-guard")
    for doc in ({**rekinded, "members": [{**guard, "role": "volunteer"}]},
                {**moved, "members": [{**guard, "agency_id": "v-red", "role": "volunteer"}]}):
        await volunteers.import_district(doc)


async def test_the_districts_are_those_whose_roster_was_imported(volunteers: Volunteers) -> None:
    """What intake and dispatch ask before they make a reporting system's key or a desk's
    token: a district no import named, or a refused import's, is none of them."""
    client = volunteers.client
    r = await client.get("/v1/districts", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"districts": []}, r.text
    await volunteers.import_district()
    await volunteers.import_district({"district": "Chaoyang", "agencies": [
        {"id": "cy-ps", "name": "Chaoyang station", "kind": "police"}]})
    refused = await client.post("/v1/roster/import", headers=ADMIN, json={
        "district": "nowhere", "agencies": [{"id": "nw-ps", "name": "x", "kind": "navy"}]})
    assert refused.status_code == 422, refused.text
    r = await client.get("/v1/districts", headers=ADMIN)
    assert r.json() == {"districts": ["Chaoyang", "d1"]}, r.text


async def test_a_team_whose_agency_kind_changes_tells_notify_of_each_of_its_devices(
    volunteers: Volunteers,
) -> None:
    # The team keeps its id and its members theirs: only its agency's kind changes. notify
    # decided at each socket's connect what its member may read (a police order's caller),
    # and hears of it only by device.revoked (agency_changed); else not until the socket's
    # token re-check, 300 s later.
    await volunteers.import_district()
    client = volunteers.client

    async def device_of(member_id: str) -> str:
        tokens[member_id] = await volunteers.enrol(member_id)
        r = await client.get("/v1/devices/introspect", headers=tokens[member_id])
        return str(r.json()["device_id"])

    tokens: dict[str, dict[str, str]] = {}
    officer, guard, wang = (await device_of("m-officer"), await device_of("m-guard"),
                            await device_of("m-wang"))

    async def told() -> set[tuple[str, str, str, str | None]]:
        return {(e.reason, e.device_id, e.member_id, e.team_id)
                for e in await volunteers.events("device.revoked", DeviceRevoked)}

    # the police patrol t-patrol moved into the guard company
    doc = copy.deepcopy(DISTRICT)
    patrol = next(t for t in doc["teams"] if t["id"] == "t-patrol")
    patrol["agency_id"] = "s-co"
    li = next(m for m in doc["members"] if m["id"] == "m-officer")
    li.update(agency_id="s-co", role="guard")
    await volunteers.import_district(doc)
    assert await told() == {("agency_changed", officer, "m-officer", "t-patrol")}
    r = await client.get("/v1/devices/introspect", headers=tokens["m-officer"])
    assert (r.json()["team_id"], r.json()["agency_kind"]) == ("t-patrol", "security")

    # the same roster again, and a team moved to another agency of its kind: nothing
    await volunteers.import_district(doc)
    doc["agencies"].append({"id": "v-blue", "name": "Blue riders", "kind": "volunteer"})
    next(t for t in doc["teams"] if t["id"] == "t-vol")["agency_id"] = "v-blue"
    for member in doc["members"]:
        if member["team_id"] == "t-vol":
            member["agency_id"] = "v-blue"
    await volunteers.import_district(doc)
    assert len(await volunteers.events("device.revoked", DeviceRevoked)) == 1

    # the guard company itself becomes a volunteer agency: each device of its two teams
    company = next(a for a in doc["agencies"] if a["id"] == "s-co")
    company["kind"] = "volunteer"
    for member in doc["members"]:
        if member["agency_id"] == "s-co":
            member["role"] = "volunteer"
    await volunteers.import_district(doc)
    assert await told() == {("agency_changed", officer, "m-officer", "t-patrol"),
                            ("agency_changed", guard, "m-guard", "t-guards")}
    assert len(await volunteers.events("device.revoked", DeviceRevoked)) == 3
    assert wang not in {e.device_id for e in
                        await volunteers.events("device.revoked", DeviceRevoked)}
