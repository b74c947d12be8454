"""A district's volunteer coordinator: a token the admin makes at volunteers for some districts
(`POST /v1/coordinators`), shown once, listed without it, revoked at once."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from shared.tokens import COORDINATOR_TOKEN_PREFIX, issued_shape

from .conftest import ADMIN, DISTRICT, Volunteers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def district_like(name: str) -> dict[str, Any]:
    """DISTRICT under another name, every id prefixed with it (ids are global)."""
    doc = copy.deepcopy(DISTRICT)
    doc["district"] = name
    for entity in ("agencies", "zones", "teams", "members"):
        for row in doc[entity]:
            row["id"] = f"{name}-{row['id']}"
            for ref in ("agency_id", "owner_agency_id", "team_id", "home_zone_id"):
                if row.get(ref):
                    row[ref] = f"{name}-{row[ref]}"
    return doc


async def make_coordinator(volunteers: Volunteers, *districts: str,
                           name: str = "Officer Li") -> dict[str, Any]:
    r = await volunteers.client.post("/v1/coordinators", headers=ADMIN,
                                     json={"name": name, "districts": list(districts or ["d1"])})
    assert r.status_code == 201, r.text
    return r.json()


async def audited(volunteers: Volunteers, action: str) -> list[dict[str, str]]:
    r = await volunteers.client.get("/v1/admin/audit", headers=ADMIN)
    assert r.status_code == 200, r.text
    return [e for e in r.json()["entries"] if e["action"] == action]


async def test_the_admin_makes_a_coordinator_token_shown_once_and_listed_without_it(
        volunteers: Volunteers) -> None:
    await volunteers.import_district()
    await volunteers.import_district(district_like("d2"))
    made = await make_coordinator(volunteers, "d2", "d1", "d1")
    assert set(made) == {"coordinator_id", "token"}
    token = made["token"]
    assert token.startswith(COORDINATOR_TOKEN_PREFIX) and issued_shape(token)

    r = await volunteers.client.get("/v1/coordinators", headers=ADMIN)
    assert r.status_code == 200, r.text
    [listed] = r.json()["coordinators"]
    assert listed["coordinator_id"] == made["coordinator_id"]
    assert (listed["name"], listed["districts"], listed["revoked_at"]) == (
        "Officer Li", ["d1", "d2"], None)
    assert listed["created_at"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token not in r.text and digest not in r.text
    for key in await volunteers.redis.keys("roster:*"):  # stored as its hash only
        assert token.encode() not in key
        if await volunteers.redis.type(key) == b"hash":
            assert token.encode() not in (await volunteers.redis.hgetall(key)).values()
    [entry] = await audited(volunteers, "coordinator.create")
    assert (entry["who"], entry["target"], entry["detail"]) == (
        "admin:admin", made["coordinator_id"], "districts d1,d2")
    assert "Officer Li" not in entry["detail"]  # a person's name: no audit line holds one


async def test_a_coordinator_is_made_for_districts_of_the_roster_only(
        volunteers: Volunteers) -> None:
    await volunteers.import_district()
    r = await volunteers.client.post("/v1/coordinators", headers=ADMIN,
                                     json={"name": "Officer Li", "districts": ["d1", "D1"]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "districts.1"
    assert "the roster holds d1" in error["message"] and "D1" not in error["message"]
    r = await volunteers.client.post("/v1/coordinators", headers=ADMIN,
                                     json={"name": "Officer Li", "districts": []})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "districts")
    listed = await volunteers.client.get("/v1/coordinators", headers=ADMIN)
    assert listed.json()["coordinators"] == []


async def test_a_revoked_coordinator_s_token_is_refused_at_once(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    made = await make_coordinator(volunteers)
    other = await make_coordinator(volunteers, name="Officer Wu")
    coordinator = bearer(made["token"])
    # known to volunteers: refused what is not its (403), not unknown (401)
    assert (await volunteers.client.get("/v1/admin/audit",
                                        headers=coordinator)).status_code == 403

    url = f"/v1/coordinators/{made['coordinator_id']}"
    assert (await volunteers.client.delete(url, headers=ADMIN)).status_code == 204
    r = await volunteers.client.get("/v1/admin/audit", headers=coordinator)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["message"] == "unknown or revoked token"
    assert (await volunteers.client.get("/v1/admin/audit",
                                        headers=bearer(other["token"]))).status_code == 403
    # asked again (its answer lost): done already, nothing more
    assert (await volunteers.client.delete(url, headers=ADMIN)).status_code == 204
    assert (await volunteers.client.delete("/v1/coordinators/crd_nope",
                                           headers=ADMIN)).status_code == 404

    # kept in the list, revoked: who `coordinator:<id>` in the audit trail was
    listed = (await volunteers.client.get("/v1/coordinators", headers=ADMIN)).json()
    revoked = {c["coordinator_id"]: c["revoked_at"] for c in listed["coordinators"]}
    assert revoked[made["coordinator_id"]] and revoked[other["coordinator_id"]] is None
    kept = await volunteers.redis.ttl(f"roster:coordinator:{made['coordinator_id']}")
    assert 0 < kept <= volunteers.settings.kpi_days * 86400  # then it goes (nothing for ever)
    assert await volunteers.redis.ttl(f"roster:coordinator:{other['coordinator_id']}") == -1
    [entry] = await audited(volunteers, "coordinator.revoke")
    assert (entry["who"], entry["target"], entry["detail"]) == (
        "admin:admin", made["coordinator_id"], "districts d1")


async def test_a_coordinator_s_token_sending_a_fix_is_refused_as_another_kind(
        volunteers: Volunteers) -> None:
    """The fixes' fast path knows the coordinator's token as the API does: a 403 (it is no
    phone), not a 401 counted as a failed authentication; once revoked, a 401."""
    await volunteers.import_district()
    made = await make_coordinator(volunteers)
    fix = {"lat": 22.05, "lon": 108.05}
    r = await volunteers.client.put("/v1/me/position", headers=bearer(made["token"]), json=fix)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    r = await volunteers.client.put("/v1/me/position", headers=bearer(made["token"]),
                                    json={"lat": 95, "lon": 108.05})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "lat")  # the input first
    await volunteers.client.delete(f"/v1/coordinators/{made['coordinator_id']}", headers=ADMIN)
    r = await volunteers.client.put("/v1/me/position", headers=bearer(made["token"]), json=fix)
    assert r.status_code == 401, r.text


async def test_only_the_admin_makes_lists_and_revokes_coordinators(
        volunteers: Volunteers) -> None:
    await volunteers.import_district()
    made = await make_coordinator(volunteers)
    coordinator = bearer(made["token"])
    client = volunteers.client
    r = await client.post("/v1/coordinators", headers=coordinator,
                          json={"name": "Officer Li", "districts": ["d1"]})
    assert r.status_code == 403, r.text
    r = await client.post("/v1/coordinators", headers=coordinator, json={"districts": ["d1"]})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "name")  # the input first
    assert (await client.get("/v1/coordinators", headers=coordinator)).status_code == 403
    r = await client.delete(f"/v1/coordinators/{made['coordinator_id']}", headers=coordinator)
    assert r.status_code == 403


async def test_a_coordinator_asks_who_it_is_and_which_districts_it_covers(
        volunteers: Volunteers) -> None:
    """A coordinator's page or script asks its token's own record (the lists need one of its
    districts); nobody else's, and no token in it."""
    await volunteers.import_district()
    await volunteers.import_district(district_like("d2"))
    made = await make_coordinator(volunteers, "d2", "d1", name="Officer Li")
    client = volunteers.client
    r = await client.get("/v1/coordinators/me", headers=bearer(made["token"]))
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["coordinator_id"], me["name"], me["districts"]) == (
        made["coordinator_id"], "Officer Li", ["d1", "d2"])
    assert me["created_at"] and made["token"] not in r.text
    assert set(me) == {"coordinator_id", "name", "districts", "created_at"}
    # the admin is no coordinator, nor is a member's phone
    assert (await client.get("/v1/coordinators/me", headers=ADMIN)).status_code == 403
    phone = await volunteers.enrol("m-wang")
    assert (await client.get("/v1/coordinators/me", headers=phone)).status_code == 403
    await client.delete(f"/v1/coordinators/{made['coordinator_id']}", headers=ADMIN)
    r = await client.get("/v1/coordinators/me", headers=bearer(made["token"]))
    assert r.status_code == 401, r.text
