"""Device tokens: issued once, stored hashed, introspected for notify, revoked everywhere at once."""

from __future__ import annotations

import hashlib

from shared.events import DeviceRevoked

from .conftest import ADMIN, Volunteers


async def test_a_device_token_is_shown_once_stored_hashed_and_introspected(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    created = await client.post("/v1/members/m-wang/devices", headers=ADMIN)
    assert created.status_code == 201
    device_id, token = created.json()["device_id"], created.json()["token"]
    assert set(created.json()) == {"device_id", "token"}

    digest = hashlib.sha256(token.encode()).hexdigest()
    assert await volunteers.redis.exists(f"roster:token:{digest}")
    for key in await volunteers.redis.keys("roster:*"):
        assert token.encode() not in key
        if await volunteers.redis.type(key) == b"hash":
            assert token.encode() not in (await volunteers.redis.hgetall(key)).values()

    response = await client.get("/v1/devices/introspect",
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "device_id": device_id, "member_id": "m-wang", "member_name": "Auntie Wang",
        "team_id": "t-vol", "agency_id": "v-red", "agency_kind": "volunteer", "district": "d1",
    }
    member = (await client.get("/v1/members/m-wang", headers=ADMIN)).json()
    assert [d["device_id"] for d in member["devices"]] == [device_id]
    assert token not in str(member)


async def test_a_revoked_token_stops_at_once_and_notify_hears_of_it(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    created = (await client.post("/v1/members/m-officer/devices", headers=ADMIN)).json()
    device = {"Authorization": f"Bearer {created['token']}"}
    other = await volunteers.enrol("m-officer")
    assert (await client.get("/v1/devices/introspect", headers=device)).status_code == 200

    url = f"/v1/members/m-officer/devices/{created['device_id']}"
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    response = await client.get("/v1/devices/introspect", headers=device)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized",
                                         "message": "unknown or revoked token"}}
    assert (await client.get("/v1/me", headers=device)).status_code == 401
    assert (await client.get("/v1/devices/introspect", headers=other)).status_code == 200

    [event] = await volunteers.events("device.revoked", DeviceRevoked)
    assert (event.device_id, event.member_id, event.team_id, event.district) == (
        created["device_id"], "m-officer", "t-patrol", "d1")
    # revoking again is a quiet no-op; another member's path finds no such device
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    assert await volunteers.redis.xlen("device.revoked") == 1
    wrong = f"/v1/members/m-wang/devices/{created['device_id']}"
    assert (await client.delete(wrong, headers=ADMIN)).status_code == 404


async def test_introspection_refuses_what_is_not_a_live_device_token(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    assert (await client.get("/v1/devices/introspect")).status_code == 401
    bogus = {"Authorization": "Bearer lfd_not-a-real-token"}
    assert (await client.get("/v1/devices/introspect", headers=bogus)).status_code == 401
    admin = await client.get("/v1/devices/introspect", headers=ADMIN)
    assert admin.status_code == 403 and admin.json()["error"]["code"] == "forbidden"
    missing = await client.post("/v1/members/m-nobody/devices", headers=ADMIN)
    assert missing.status_code == 404
