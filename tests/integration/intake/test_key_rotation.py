"""A system's key is replaced within the system (POST /v1/systems/{id}/keys): the new key
is the same system, so the calls a 110 desk has open when it rotates (a leak, a yearly
policy) are still its own to read, retry, follow up and ask to cancel; the old key is
revoked on its own (DELETE /v1/systems/{id}/keys/{key_id}) once the new one is in use."""

from __future__ import annotations

import httpx
import redis

from services.intake.config import Settings
from tests.integration.intake.conftest import ADMIN


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def report(ref: str, **more: object) -> dict[str, object]:
    return {"external_ref": ref, "category": "dispute", "district": "d1",
            "location": {"lat": 22.8170, "lon": 108.3660, "address": "民族大道12号"},
            "caller": {"phone": "13877712345", "name": "黄晓明"}, **more}


async def live_keys(intake: httpx.AsyncClient, system_id: str) -> list[str]:
    listed = (await intake.get("/v1/systems", headers=ADMIN)).json()["systems"]
    (system,) = [s for s in listed if s["system_id"] == system_id]
    return [k["key_id"] for k in system["keys"]]


async def test_a_new_key_of_a_system_follows_the_calls_made_under_its_old_key(intake) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN,
                          json={"name": "110 call-taking", "districts": ["d1"]})
    assert r.status_code == 201, r.text
    system_id, old, old_id = r.json()["system_id"], r.json()["api_key"], r.json()["key_id"]
    assert await live_keys(intake, system_id) == [old_id]
    first = await intake.post("/v1/incidents", headers=bearer(old), json=report("110-0001"))
    assert first.status_code == 202, first.text
    incident_id = first.json()["incident_id"]

    r = await intake.post(f"/v1/systems/{system_id}/keys", headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["system_id"] == system_id
    new, new_id = r.json()["api_key"], r.json()["key_id"]
    assert new != old and new_id != old_id
    assert sorted(await live_keys(intake, system_id)) == sorted([old_id, new_id])

    # Both keys are the one system meanwhile: the old key's open call is the new key's too
    assert (await intake.get(f"/v1/incidents/{incident_id}", headers=bearer(new))).status_code == 200
    retried = await intake.post("/v1/incidents", headers=bearer(new), json=report("110-0001"))
    assert (retried.status_code, retried.json()["incident_id"]) == (200, incident_id)
    r = await intake.post(f"/v1/incidents/{incident_id}/follow-ups", headers=bearer(new),
                          json=report("110-0001-2", flags=["weapon"]))
    assert r.status_code == 202, r.text
    assert r.json()["linked_to"] == incident_id
    r = await intake.post("/v1/incidents", headers=bearer(old), json=report("110-0002"))
    assert r.status_code == 202, r.text

    # The old key revoked on its own: refused at once (also where it was taken from memory)
    r = await intake.delete(f"/v1/systems/{system_id}/keys/{old_id}", headers=ADMIN)
    assert r.status_code == 204, r.text
    assert (await intake.post("/v1/incidents", headers=bearer(old),
                              json=report("110-0003"))).status_code == 401
    assert (await intake.get(f"/v1/incidents/{incident_id}",
                             headers=bearer(old))).status_code == 401
    # ... and the system goes on under the new one
    assert await live_keys(intake, system_id) == [new_id]
    r = await intake.post(f"/v1/incidents/{incident_id}/cancel-requests", headers=bearer(new),
                          json={"external_ref": "110-0001-x", "reason": "报警人称误报"})
    assert r.status_code == 202, r.text
    r = await intake.post("/v1/incidents", headers=bearer(new), json=report("110-0003"))
    assert r.status_code == 202, r.text
    again = await intake.delete(f"/v1/systems/{system_id}/keys/{old_id}", headers=ADMIN)
    assert again.status_code == 204, again.text  # revoked already: left as it was

    audit = (await intake.get("/v1/admin/audit", headers=ADMIN)).json()["entries"]
    assert [e["action"] for e in audit] == ["system.key_revoke", "system.key_create",
                                            "system.create"]


async def test_a_system_s_last_key_is_revoked_with_the_system(intake, clean_redis) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "110", "districts": ["d1"]})
    system_id, old_id = r.json()["system_id"], r.json()["key_id"]
    new = (await intake.post(f"/v1/systems/{system_id}/keys", headers=ADMIN)).json()
    assert (await intake.delete(f"/v1/systems/{system_id}/keys/{old_id}",
                                headers=ADMIN)).status_code == 204

    # its last key: a system without one would stay listed as live and report nothing
    r = await intake.delete(f"/v1/systems/{system_id}/keys/{new['key_id']}", headers=ADMIN)
    assert r.status_code == 409, r.text
    assert f"DELETE /v1/systems/{system_id}" in r.json()["error"]["message"]
    assert (await intake.post("/v1/incidents", headers=bearer(new["api_key"]),
                              json=report("110-1"))).status_code == 202

    # the system revoked (its first key rotated away before): every key of it refused
    assert (await intake.delete(f"/v1/systems/{system_id}", headers=ADMIN)).status_code == 204
    listed = (await intake.get("/v1/systems", headers=ADMIN)).json()["systems"]
    assert [(s["revoked_at"] is not None, s["keys"]) for s in listed] == [(True, [])]
    assert (await intake.post("/v1/incidents", headers=bearer(new["api_key"]),
                              json=report("110-2"))).status_code == 401
    # its keys' record goes with the system's, RECORDS_DAYS on
    sync = redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        records_s = Settings(admin_token="test-admin-token").records_days * 86_400
        assert records_s - 60 < sync.ttl(f"intake:system_keys:{system_id}") <= records_s
    finally:
        sync.close()
    r = await intake.post(f"/v1/systems/{system_id}/keys", headers=ADMIN)
    assert r.status_code == 409, r.text  # a revoked system is not brought back by a key


async def test_keys_of_systems_intake_does_not_know_are_404(intake) -> None:
    assert (await intake.post("/v1/systems/sys_never_made/keys",
                              headers=ADMIN)).status_code == 404
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "110", "districts": ["d1"]})
    system_id, key = r.json()["system_id"], r.json()["api_key"]
    other = await intake.post("/v1/systems", headers=ADMIN,
                              json={"name": "video", "districts": ["d1"]})
    # another system's key id is not this system's to revoke
    r = await intake.delete(f"/v1/systems/{system_id}/keys/{other.json()['key_id']}",
                            headers=ADMIN)
    assert r.status_code == 404, r.text
    assert (await intake.delete(f"/v1/systems/{system_id}/keys/key_nope",
                                headers=ADMIN)).status_code == 404
    # a system's key makes no keys, not even its own system's
    assert (await intake.post(f"/v1/systems/{system_id}/keys",
                              headers=bearer(key))).status_code == 403
