"""Authentication, roles, limits and the audit trail of intake and dispatch (real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.main import create_app as dispatch_app
from services.intake.config import Settings as IntakeSettings
from services.intake.main import create_app as intake_app
from shared.tokens import DEVICE_TOKEN_PREFIX
from tests.integration.conftest import volunteers_for

ADMIN = {"Authorization": "Bearer test-admin-token"}


# Volunteers is nobody, unless a test's `roster` marker stands it in (keys, desk tokens).
@pytest.fixture
async def intake(clean_redis: str, request: pytest.FixtureRequest
                 ) -> AsyncIterator[httpx.AsyncClient]:
    async with volunteers_for(request) as volunteers_url:
        app = intake_app(IntakeSettings(redis_url=clean_redis, admin_token="test-admin-token",
                                        rate_limit_system="5/second", max_body_bytes=4096,
                                        volunteers_url=volunteers_url))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://intake") as client:
                yield client


@pytest.fixture
async def dispatch(clean_redis: str, request: pytest.FixtureRequest
                   ) -> AsyncIterator[httpx.AsyncClient]:
    async with volunteers_for(request) as volunteers_url:
        app = dispatch_app(DispatchSettings(redis_url=clean_redis,
                                            admin_token="test-admin-token",
                                            volunteers_url=volunteers_url))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://dispatch") as client:
                yield client


def incident(ref: str) -> dict[str, object]:
    return {"external_ref": ref, "category": "noise", "district": "d1",
            "location": {"lat": 22.8, "lon": 108.3}}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": "Basic dGVzdDp0ZXN0"}])
async def test_every_endpoint_wants_a_valid_token(intake, dispatch, headers) -> None:
    for client, path in ((intake, "/v1/categories"), (intake, "/v1/incidents/x"),
                         (intake, "/v1/admin/audit"), (dispatch, "/v1/incidents"),
                         (dispatch, "/v1/kpis"), (dispatch, "/v1/heatmap"),
                         (dispatch, "/v1/admin/dead-letters")):
        r = await client.get(path, headers=headers)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
    assert (await intake.get("/healthz")).status_code == 200


@pytest.mark.roster("d1")
async def test_a_revoked_system_key_stops_working_at_once(intake) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "door", "districts": ["d1"]})
    system_id, key = r.json()["system_id"], {"Authorization": f"Bearer {r.json()['api_key']}"}
    assert (await intake.post("/v1/incidents", headers=key, json=incident("a"))).status_code == 202
    assert (await intake.delete(f"/v1/systems/{system_id}", headers=ADMIN)).status_code == 204
    # The report's key is known from the first report; its script finds it revoked.
    r = await intake.post("/v1/incidents", headers=key, json=incident("b"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"] == {"code": "unauthorized", "message": "unknown or revoked token"}
    assert (await intake.post("/v1/incidents", headers=key, json=incident("c"))).status_code == 401
    assert (await intake.get("/v1/categories", headers=key)).status_code == 401
    assert (await intake.delete(f"/v1/systems/{system_id}", headers=key)).status_code == 401
    audit = (await intake.get("/v1/admin/audit", headers=ADMIN)).json()["entries"]
    assert [(e["action"], e["target"], e["who"]) for e in audit] == [
        ("system.revoke", system_id, "admin:admin"), ("system.create", system_id, "admin:admin")]


async def test_a_device_token_intake_cannot_check_now_is_neither_yes_nor_no(intake) -> None:
    # A member's report with a device token: volunteers (here: nobody) owns the token. Not
    # knowing is a 503 to retry, never a 401 that would tell the member the token is bad.
    r = await intake.post("/v1/incidents", headers={"Authorization": "Bearer lfd_some-device"},
                          json=incident("dev"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "unavailable"


async def test_a_key_or_desk_volunteers_cannot_check_now_is_not_made(intake, dispatch) -> None:
    # Which districts the roster holds is volunteers' (here: nobody) to say. Not knowing,
    # nothing is made unchecked: a 503 to ask again.
    for client, path in ((intake, "/v1/systems"), (dispatch, "/v1/dispatchers")):
        r = await client.post(path, headers=ADMIN, json={"name": "x", "districts": ["d1"]})
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        error = r.json()["error"]
        assert error["code"] == "unavailable" and "volunteers" in error["message"], error
        assert "ask again" in error["message"], error
        assert (await client.get(path, headers=ADMIN)).json()["count"] == 0


@pytest.mark.roster("d1")
async def test_flooding_a_key_gets_429_with_retry_after_and_others_go_on(intake) -> None:
    keys = []
    for name in ("a", "b"):
        r = await intake.post("/v1/systems", headers=ADMIN,
                              json={"name": name, "districts": ["d1"]})
        keys.append({"Authorization": f"Bearer {r.json()['api_key']}"})
    codes = [(await intake.get("/v1/categories", headers=keys[0])).status_code
             for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3
    r = await intake.get("/v1/categories", headers=keys[0])
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2
    assert r.json()["error"]["code"] == "rate_limited"
    assert (await intake.get("/v1/categories", headers=keys[1])).status_code == 200


async def test_an_oversized_body_gets_413(intake) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "x" * 5000,
                                                              "districts": ["d1"]})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


@pytest.mark.roster("d1")
async def test_a_dispatcher_sees_and_acts_on_their_districts_only(dispatch) -> None:
    r = await dispatch.post("/v1/dispatchers", headers=ADMIN,
                            json={"name": "Night desk", "districts": ["d1"]})
    assert r.status_code == 201
    dispatcher_id = r.json()["dispatcher_id"]
    # a desk's token is never mistaken for a device's (which other services send on to
    # volunteers to check)
    assert not r.json()["token"].startswith(DEVICE_TOKEN_PREFIX)
    desk = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await dispatch.get("/v1/incidents", headers=desk)).status_code == 200
    assert (await dispatch.get("/v1/incidents?district=d2", headers=desk)).status_code == 403
    assert (await dispatch.get("/v1/units?district=d2", headers=desk)).status_code == 403
    assert (await dispatch.get("/v1/kpis?district=d1", headers=desk)).status_code == 200
    assert (await dispatch.get("/v1/heatmap?district=d1", headers=desk)).status_code == 200
    assert (await dispatch.get("/v1/heatmap?district=d2", headers=desk)).status_code == 403
    assert (await dispatch.get("/v1/heatmap", headers=desk)).status_code == 422  # which district?
    # roster-like and token actions need the admin
    assert (await dispatch.post("/v1/dispatchers", headers=desk,
                                json={"name": "x", "districts": ["d1"]})).status_code == 403
    assert (await dispatch.get("/v1/admin/audit", headers=desk)).status_code == 403
    assert (await dispatch.delete(f"/v1/dispatchers/{dispatcher_id}",
                                  headers=ADMIN)).status_code == 204
    assert (await dispatch.get("/v1/incidents", headers=desk)).status_code == 401
    actions = [e["action"] for e in (await dispatch.get("/v1/admin/audit",
                                                        headers=ADMIN)).json()["entries"]]
    assert actions == ["dispatcher.revoke", "dispatcher.create"]


async def test_a_chunked_body_over_the_limit_gets_413(intake) -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = await intake.post("/v1/systems", headers={**ADMIN, "content-type": "application/json"},
                          content=chunks())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


async def test_the_admin_reads_dead_letters_and_others_may_not(dispatch) -> None:
    r = await dispatch.get("/v1/admin/dead-letters", headers=ADMIN)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert (listed["dead_letters"], listed["count"], listed["total"], listed["next_before"]) == (
        [], 0, 0, None)
    r = await dispatch.get("/v1/admin/dead-letters?stream=nope", headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "stream"


async def test_roster_and_device_actions_are_audited_and_revocation_is_immediate(
        clean_redis: str) -> None:
    from services.volunteers.config import Settings as VolunteersSettings
    from services.volunteers.main import create_app as volunteers_app
    from tests.e2e.journey import district_roster

    app = volunteers_app(VolunteersSettings(redis_url=clean_redis, admin_token="test-admin-token"))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://volunteers") as client:
        r = await client.post("/v1/roster/import", headers=ADMIN,
                              json=district_roster("d9", (22.8, 108.3)))
        assert r.status_code == 200, r.text
        r = await client.post("/v1/members/d9-m-vol/devices", headers=ADMIN)
        device_id, token = r.json()["device_id"], r.json()["token"]
        me = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/v1/me", headers=me)).status_code == 200
        # a device may not do admin work, nor read another member's points
        assert (await client.post("/v1/members/d9-m-vol/devices", headers=me)).status_code == 403
        assert (await client.get("/v1/admin/audit", headers=me)).status_code == 403
        r = await client.delete(f"/v1/members/d9-m-vol/devices/{device_id}", headers=ADMIN)
        assert r.status_code == 204
        assert (await client.get("/v1/me", headers=me)).status_code == 401
        entries = (await client.get("/v1/admin/audit", headers=ADMIN)).json()["entries"]
        assert [(e["action"], e["target"]) for e in entries] == [
            ("device.revoke", device_id), ("device.issue", device_id), ("roster.import", "d9")]
        assert all(e["who"] == "admin:admin" for e in entries)
        assert "Volunteer Zhou" not in str(entries)
