"""A revoked system's record leaves Redis RECORDS_DAYS after its revocation (its incidents'
records, which name it, are kept no longer), and its key stays refused before and after."""

from __future__ import annotations

import redis

from services.intake.config import Settings
from tests.integration.intake.conftest import ADMIN

DAY_S = 86_400


def report(ref: str) -> dict[str, object]:
    return {"external_ref": ref, "category": "noise", "district": "d1",
            "location": {"lat": 22.8, "lon": 108.3}}


async def test_a_revoked_system_s_record_expires_after_records_days_and_its_key_stays_refused(
        intake, clean_redis) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "door", "districts": ["d1"]})
    assert r.status_code == 201, r.text
    system_id, key = r.json()["system_id"], {"Authorization": f"Bearer {r.json()['api_key']}"}
    assert (await intake.post("/v1/incidents", headers=key, json=report("a"))).status_code == 202
    sync = redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        record = f"intake:system:{system_id}"
        assert sync.ttl(record) == -1  # a live system stays while it reports

        assert (await intake.delete(f"/v1/systems/{system_id}", headers=ADMIN)).status_code == 204
        records_s = Settings(admin_token="test-admin-token").records_days * DAY_S
        assert records_s - 60 < sync.ttl(record) <= records_s
        listed = (await intake.get("/v1/systems", headers=ADMIN)).json()["systems"]
        assert [s["revoked_at"] is not None for s in listed if s["system_id"] == system_id] == [
            True]
        assert (await intake.post("/v1/incidents", headers=key,
                                  json=report("b"))).status_code == 401

        # RECORDS_DAYS on, the record has gone: the key is refused all the same
        sync.delete(record)
        assert (await intake.post("/v1/incidents", headers=key,
                                  json=report("c"))).status_code == 401
        assert (await intake.get("/v1/categories", headers=key)).status_code == 401
        assert (await intake.get("/v1/systems", headers=ADMIN)).json()["count"] == 0
    finally:
        sync.close()


async def test_revoking_a_revoked_system_again_is_done_not_unknown(intake, clean_redis) -> None:
    # GET /v1/systems lists it as revoked: DELETE must not answer that it does not exist
    # (an admin's second click, or a script run again, as volunteers' device revocation)
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "video", "districts": ["d1"]})
    system_id = r.json()["system_id"]
    assert (await intake.delete(f"/v1/systems/{system_id}", headers=ADMIN)).status_code == 204
    sync = redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        revoked_at = sync.hget(f"intake:system:{system_id}", "revoked_at")
        ttl = sync.ttl(f"intake:system:{system_id}")
        again = await intake.delete(f"/v1/systems/{system_id}", headers=ADMIN)
        assert again.status_code == 204, again.text
        # the first revocation stands: its time, and the record's remaining life
        assert sync.hget(f"intake:system:{system_id}", "revoked_at") == revoked_at
        assert ttl - 5 <= sync.ttl(f"intake:system:{system_id}") <= ttl
        audit = (await intake.get("/v1/admin/audit", headers=ADMIN)).json()["entries"]
        assert [e["action"] for e in audit] == ["system.revoke", "system.create"]
    finally:
        sync.close()
    r = await intake.delete("/v1/systems/sys_never_made", headers=ADMIN)
    assert r.status_code == 404
