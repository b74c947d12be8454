"""Bad input to volunteers' routes is a 400 or a 422 naming the field, never a 500; and
`GET /v1/zones` is one route, documented as it answers."""

from __future__ import annotations

from services.dispatch.zones import ZoneProjection
from shared.tokens import service_key

from .conftest import ADMIN, ADMIN_TOKEN, CELL, SQUARE, Volunteers

DEEP_ARRAY = b"[" * 1500 + b"]" * 1500
DEEP_OBJECT = b'{"a":' * 1500 + b"1" + b"}" * 1500
JSON = {"Content-Type": "application/json"}


async def test_a_deeply_nested_roster_import_is_broken_json(volunteers: Volunteers) -> None:
    for body in (DEEP_ARRAY, DEEP_OBJECT):
        r = await volunteers.client.post("/v1/roster/import", content=body,
                                         headers=ADMIN | JSON)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bad_json"


async def test_a_deeply_nested_position_fix_is_broken_json(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    for who in (device, ADMIN):  # the fast path parses the body for both, before the 403
        r = await volunteers.client.put("/v1/me/position", content=DEEP_ARRAY,
                                        headers=who | JSON)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bad_json"


async def test_a_points_page_beyond_the_bound_is_a_422_naming_offset(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    for offset in ("99999999999999999999", "1000001"):
        r = await volunteers.client.get("/v1/me/points", params={"offset": offset},
                                        headers=device)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "offset"
    far = await volunteers.client.get("/v1/me/points", params={"offset": 1_000_000},
                                      headers=device)
    assert far.status_code == 200 and far.json()["history"] == []
    too_many = await volunteers.client.get("/v1/me/points", params={"limit": 201},
                                           headers=device)
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "limit"


async def test_a_rotation_naming_no_shift_is_a_422_naming_rotation(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    plan = {"shifts": {"main": {"start": "08:00", "end": "18:00"}}, "rotation": ["nope"],
            "anchor": "2026-11-23"}
    r = await volunteers.client.put("/v1/teams/t-patrol/shift-plan", json=plan, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_field"
    assert r.json()["error"]["field"] == "rotation"
    assert "nope" not in r.json()["error"]["message"]  # never echoes the body
    # a wrong shift is named as such, not blamed on the rotation that names it
    bad_shift = plan | {"shifts": {"main": {"start": "8 o'clock", "end": "18:00"}},
                        "rotation": ["main"]}
    r = await volunteers.client.put("/v1/teams/t-patrol/shift-plan", json=bad_shift,
                                    headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "shifts.main.start"
    good = plan | {"rotation": ["main", "off", None]}
    r = await volunteers.client.put("/v1/teams/t-patrol/shift-plan", json=good, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["rotation"] == ["main", "off", None]


async def test_one_route_serves_a_districts_zones_as_dispatch_reads_them(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    r = await client.get("/v1/zones", params={"district": "d1"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {"district": "d1", "zones": [
        {"zone_id": "z-cell", "name": "Grid cell 7", "owner_agency_id": "p-station",
         "polygon": CELL},
        {"zone_id": "z-territory", "name": "Station territory",
         "owner_agency_id": "p-station", "polygon": SQUARE},
    ]}
    missing = await client.get("/v1/zones", headers=ADMIN)
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "district"
    # dispatch's own reader, unchanged, against this app
    projection = ZoneProjection(http=client, volunteers_url=str(client.base_url).rstrip("/"),
                                key=service_key(ADMIN_TOKEN), timeout_s=5, refresh_s=60)
    assert [z.zone_id for z in await projection.zones_of("d1")] == ["z-cell", "z-territory"]
    held = await projection.lookup("d1", lat=22.03, lon=108.03)
    assert held is not None and held.zone_id == "z-cell"

    # the document describes this route, not a paginated list it never answers with
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/zones"]["get"]
    assert [(p["name"], p["required"]) for p in operation["parameters"]] == [("district", True)]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    shape = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(shape["properties"]) == {"district", "zones"}


async def test_a_deeply_nested_body_fastapi_reads_is_bad_json(volunteers: Volunteers) -> None:
    # FastAPI's own parse gives up with a 400 of its own ("There was an error parsing the
    # body"): the shared error body calls it what it is
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    r = await volunteers.client.put("/v1/me/status", content=DEEP_OBJECT, headers=device | JSON)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_json"


PHONE, NAME = "13800138000", "Wang Wei"


async def test_a_roster_import_refused_never_echoes_members_details(
    volunteers: Volunteers,
) -> None:
    # A message never echoes the body: a members file exported without its header row was
    # refused with each cell of its first row named as an unknown column ("members line 1,
    # 13800138000: is not a known column"), a member's phone and name in the answer; so was
    # a key that is no field name, in a document or among its CSV texts. A misspelt
    # column or field is still named, so that the sheet can be fixed.
    headerless = f"m1,{NAME},v1,t1,volunteer,{PHONE}\n"
    bodies = [
        {"json": {"district": "d1", "csv": {"members": headerless}}},
        {"files": {"district": (None, "d1"), "members": ("members.csv", headerless)}},
        {"json": {"district": "d1", "csv": {f"{NAME} {PHONE}": "id\n"}}},
        {"json": {"district": "d1", "csv": {"members": "id\n"}, PHONE: NAME}},
        {"json": {"district": "d1", PHONE: NAME}},
        {"json": {"district": "d1", "members": [
            {"id": "m1", "name": "A", "agency_id": "v1", "team_id": "t1",
             "role": "volunteer", PHONE: NAME}]}},
    ]
    for body in bodies:
        r = await volunteers.client.post("/v1/roster/import", headers=ADMIN, **body)
        assert r.status_code == 422, r.text
        assert PHONE not in r.text and NAME.lower() not in r.text.lower(), r.text
    misspelt = {"district": "d1", "csv": {"members": "id,name,agency,team_id,role\n"}}
    r = await volunteers.client.post("/v1/roster/import", headers=ADMIN, json=misspelt)
    assert r.status_code == 422 and "agency" in {e["field"] for e in r.json()["error"]["errors"]}


async def test_a_value_outside_a_list_of_choices_is_told_the_choices(
    volunteers: Volunteers,
) -> None:
    """A coordinator who wrote the role as 志愿者, the mode as 步行 or the kind as 志愿队 was
    told "is not one of the allowed values", and left to guess them: the answer names them
    (the schema's values, never the cell's)."""
    await volunteers.import_district()
    files = {
        "agencies": "id,name,kind,role\nv-red,Red armbands,志愿队,\n",
        "teams": "id,agency_id,name,mode,skills,home_zone_id\nt-vol,v-red,Aunties,步行,,\n",
        "members": "id,name,agency_id,team_id,role,phone\n"
                   "m-wang,Auntie Wang,v-red,t-vol,志愿者,\n",
    }
    r = await volunteers.client.post("/v1/roster/import", headers=ADMIN,
                                     json={"district": "d1", "csv": files})
    assert r.status_code == 422, r.text
    told = {e["field"]: e["message"] for e in r.json()["error"]["errors"]}
    assert told["kind"] == "must be 'police', 'security' or 'volunteer'"
    assert told["mode"].startswith("must be 'foot', ")
    assert told["role"] == "must be 'officer', 'auxiliary', 'guard' or 'volunteer'"
    assert all(word not in r.text for word in ("志愿队", "步行", "志愿者"))
    r = await volunteers.client.put("/v1/me/status", headers=await volunteers.enrol("m-wang"),
                                    json={"status": "休息"})
    assert r.json()["error"]["message"] == \
        "status must be 'available', 'busy' or 'off_duty'", r.text
