"""docs/operations.md, "Back up and restore": a restore brings back a key or token revoked
after the copy, and the audit trail with it (it is in Redis too), so each revocation is also
in the revoking service's log, which a restore leaves alone: the operator revokes again what
the logs name."""

from __future__ import annotations

import logging

import pytest

from tests.integration.notify.conftest import roster_of
from tests.integration.stream_probes import ADMIN, DISTRICT, running


def logged(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


async def test_a_system_key_s_revocation_is_in_intake_s_log(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running("intake", clean_redis) as svc:
        r = await svc.client.post("/v1/systems", headers=ADMIN,
                                  json={"name": "110", "districts": [DISTRICT]})
        assert r.status_code == 201, r.text
        system_id = r.json()["system_id"]
        r = await svc.client.delete(f"/v1/systems/{system_id}", headers=ADMIN)
        assert r.status_code == 204, r.text
    assert logged(caplog, f"system {system_id} revoked")


async def test_one_key_of_a_system_revoked_alone_is_in_intake_s_log(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    # a key replaced (POST /v1/systems/{id}/keys) and revoked: a restore would bring it back
    caplog.set_level(logging.INFO)
    async with running("intake", clean_redis) as svc:
        r = await svc.client.post("/v1/systems", headers=ADMIN,
                                  json={"name": "110", "districts": [DISTRICT]})
        system_id, key_id = r.json()["system_id"], r.json()["key_id"]
        r = await svc.client.post(f"/v1/systems/{system_id}/keys", headers=ADMIN)
        assert r.status_code == 201, r.text
        r = await svc.client.delete(f"/v1/systems/{system_id}/keys/{key_id}", headers=ADMIN)
        assert r.status_code == 204, r.text
    assert logged(caplog, f"system {system_id}: key {key_id} revoked")


async def test_a_dispatcher_token_s_revocation_is_in_dispatch_s_log(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with roster_of(DISTRICT) as volunteers, running(
            "dispatch", clean_redis, volunteers_url=volunteers.url) as svc:
        r = await svc.client.post("/v1/dispatchers", headers=ADMIN,
                                  json={"name": "Desk 1", "districts": [DISTRICT]})
        assert r.status_code == 201, r.text
        dispatcher_id = r.json()["dispatcher_id"]
        r = await svc.client.delete(f"/v1/dispatchers/{dispatcher_id}", headers=ADMIN)
        assert r.status_code == 204, r.text
    assert logged(caplog, f"dispatcher {dispatcher_id} revoked")


async def test_a_coordinator_token_s_revocation_is_in_volunteers_log(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running("volunteers", clean_redis) as svc:
        r = await svc.client.post("/v1/roster/import", headers=ADMIN, json={
            "district": DISTRICT, "agencies": [
                {"id": "coordinated-vol", "name": "Red armbands", "kind": "volunteer"}]})
        assert r.status_code == 200, r.text
        r = await svc.client.post("/v1/coordinators", headers=ADMIN,
                                  json={"name": "Officer Li", "districts": [DISTRICT]})
        assert r.status_code == 201, r.text
        coordinator_id = r.json()["coordinator_id"]
        r = await svc.client.delete(f"/v1/coordinators/{coordinator_id}", headers=ADMIN)
        assert r.status_code == 204, r.text
    assert logged(caplog, f"coordinator {coordinator_id} revoked")
    assert not logged(caplog, "Officer Li")
