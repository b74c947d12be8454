"""Position fixes: validated, kept as the team's latest, published on unit.position."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.redis import RedisBroker
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.volunteers.store.teams import PositionWriter
from shared.events import Location, OrderIssued, UnitPosition, utcnow
from tests.helpers import read_stream

from .conftest import ADMIN, Volunteers, running

NOT_ON_SHIFT = ("you are not on the team's shift: its position comes only from members on "
                "shift; allowed: check in (POST /v1/me/shift/start) first")


async def test_a_fix_is_kept_as_the_latest_position_and_published(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    client = volunteers.client
    off = await client.put("/v1/me/position", json={"lat": 22.03, "lon": 108.03},
                           headers=device)
    assert off.status_code == 409 and "off_duty" in off.json()["error"]["message"]
    await client.post("/v1/me/shift/start", headers=device)

    at = utcnow().replace(microsecond=0) - timedelta(seconds=3)
    response = await client.put("/v1/me/position", headers=device, json={
        "lat": 22.031, "lon": 108.032, "accuracy_m": 8.5, "at": at.isoformat()})
    assert response.status_code == 200
    assert response.json() == {"accepted": True, "published": True}

    [event] = await volunteers.events("unit.position", UnitPosition)
    assert (event.unit_id, event.district, event.lat, event.lon, event.accuracy_m) == (
        "t-vol", "d1", 22.031, 108.032, 8.5)
    assert event.at == at
    team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert team["position"] == {"lat": 22.031, "lon": 108.032, "accuracy_m": 8.5,
                                "at": at.isoformat()}

    older = await client.put("/v1/me/position", headers=device, json={
        "lat": 22.05, "lon": 108.05, "at": (at - timedelta(seconds=30)).isoformat()})
    assert older.json()["accepted"] is False
    team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert team["position"]["lat"] == 22.031
    assert await volunteers.redis.xlen("unit.position") == 1


async def test_invalid_fixes_are_refused_naming_the_field(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    client = volunteers.client
    await client.post("/v1/me/shift/start", headers=device)

    async def field_of(body: dict) -> str:
        response = await client.put("/v1/me/position", json=body, headers=device)
        assert response.status_code == 422, response.text
        return response.json()["error"]["field"]

    assert await field_of({"lat": 91, "lon": 108.0}) == "lat"
    assert await field_of({"lat": 22.0, "lon": -180.5}) == "lon"
    assert await field_of({"lat": 22.0}) == "lon"
    assert await field_of({"lat": 22.0, "lon": 108.0, "accuracy_m": -1}) == "accuracy_m"
    # a page's `fix && fix.lat` sends false: never the equator or the prime meridian
    assert await field_of({"lat": False, "lon": 108.0}) == "lat"
    assert await field_of({"lat": 22.0, "lon": True}) == "lon"
    assert await field_of({"lat": 22.0, "lon": 108.0, "accuracy_m": True}) == "accuracy_m"
    future = (utcnow() + timedelta(minutes=5)).isoformat()
    assert await field_of({"lat": 22.0, "lon": 108.0, "at": future}) == "at"
    assert await field_of({"lat": 22.0, "lon": 108.0, "at": "2026-11-23T08:00:00"}) == "at"
    assert await field_of({"lat": 22.0, "lon": 108.0, "at": 0}) == "at"  # not Unix time
    slightly_ahead = (utcnow() + timedelta(seconds=10)).isoformat()
    ok = await client.put("/v1/me/position", headers=device,
                          json={"lat": 22.0, "lon": 108.0, "at": slightly_ahead})
    assert ok.status_code == 200
    assert await volunteers.redis.xlen("unit.position") == 1
    broken = await client.put("/v1/me/position", content=b'{"lat": 22', headers=device)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "bad_json"
    not_object = await client.put("/v1/me/position", json=[22.0, 108.0], headers=device)
    assert not_object.status_code == 422 and not_object.json()["error"]["field"] == "(body)"
    assert (await client.put("/v1/me/position", json={"lat": 1, "lon": 1},
                             headers=ADMIN)).status_code == 403
    assert (await client.put("/v1/me/position", json={"lat": 1, "lon": 1})).status_code == 401



async def test_a_fix_with_a_key_that_is_no_field_name_is_refused_without_echoing_it(
    volunteers: Volunteers,
) -> None:
    # The fast path answers as the app's own handler would (shared.http): a key that is no
    # field name (a number, a name) is the sender's data, named by where it is, never echoed;
    # the fast path named it ("13800138000 is not a known field").
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    await volunteers.client.post("/v1/me/shift/start", headers=device)
    for who in (device, ADMIN):  # the body is judged before the admin's 403 too
        r = await volunteers.client.put("/v1/me/position", headers=who, json={
            "lat": 22.0, "lon": 108.0, "13800138000": "Wang Wei"})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "(body)"
        assert "13800138000" not in r.text and "Wang" not in r.text, r.text
    misspelt = await volunteers.client.put("/v1/me/position", headers=device,
                                           json={"lat": 22.0, "lon": 108.0, "accuracy": 5})
    assert misspelt.status_code == 422 and misspelt.json()["error"]["field"] == "accuracy"

@pytest.mark.parametrize("path", ["fast path", "FastAPI route"])
async def test_a_fix_the_settings_refuse_is_a_422_before_a_wrong_kinds_403(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch, path: str,
) -> None:
    """DESIGN's order (401, 400/422 naming the field, 404, 403, 409): a fix too coarse or
    too far ahead (POSITION_MAX_ACCURACY_M, POSITION_MAX_FUTURE_S) is the request's own
    input, as a latitude out of range is, and the admin's token was told 403 for it. Also
    by the FastAPI route the fast path stands in front of."""
    if path == "FastAPI route":
        assert volunteers.app is not None
        monkeypatch.setattr(volunteers.app, "fixes", None)
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    await volunteers.client.post("/v1/me/shift/start", headers=device)
    coarse = {"lat": 22.0, "lon": 108.0, "accuracy_m": 5000}
    ahead = {"lat": 22.0, "lon": 108.0, "at": (utcnow() + timedelta(minutes=5)).isoformat()}
    for body, field in ((coarse, "accuracy_m"), (ahead, "at")):
        for who in (device, ADMIN):
            r = await volunteers.client.put("/v1/me/position", headers=who, json=body)
            assert r.status_code == 422, (field, r.text)
            assert r.json()["error"]["field"] == field, r.text
    r = await volunteers.client.put("/v1/me/position", headers=ADMIN,
                                    json={"lat": 22.0, "lon": 108.0, "accuracy_m": 5})
    assert r.status_code == 403, r.text
    r = await volunteers.client.put("/v1/me/position", headers=device,
                                    json={"lat": 22.0, "lon": 108.0, "accuracy_m": 5})
    assert r.json() == {"accepted": True, "published": True}
    assert await volunteers.redis.xlen("unit.position") == 1


async def test_fixes_are_coalesced_per_team_but_the_latest_is_always_kept(
    clean_redis: str,
) -> None:
    async with running(clean_redis, position_publish_interval_ms=60_000) as volunteers:
        await volunteers.import_district()
        wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
        for device in (wang, chen):
            await volunteers.client.post("/v1/me/shift/start", headers=device)
        first = await volunteers.client.put("/v1/me/position", headers=wang,
                                            json={"lat": 22.01, "lon": 108.01})
        second = await volunteers.client.put("/v1/me/position", headers=chen,
                                             json={"lat": 22.02, "lon": 108.02})
        assert first.json() == {"accepted": True, "published": True}
        assert second.json() == {"accepted": True, "published": False}
        assert await volunteers.redis.xlen("unit.position") == 1
        team = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()
        assert team["position"]["lat"] == 22.02


async def test_a_trailing_fix_stamped_in_the_same_millisecond_as_the_published_one_goes_out(
    clean_redis: str,
) -> None:
    # Phones stamp fixes in whole seconds, and a team's position is any of its members':
    # a second fix of the same stamp, another place, is still the team's latest and must
    # reach dispatch at the end of the interval (the published fix is told by its stamp
    # and its place, not its stamp alone).
    at = (utcnow() - timedelta(seconds=1)).replace(microsecond=0).isoformat()
    async with running(clean_redis, position_publish_interval_ms=400) as volunteers:
        await volunteers.import_district()
        wang = await volunteers.enrol("m-wang")
        await volunteers.client.post("/v1/me/shift/start", headers=wang)
        first = await volunteers.client.put("/v1/me/position", headers=wang,
                                            json={"lat": 22.01, "lon": 108.01, "at": at})
        second = await volunteers.client.put("/v1/me/position", headers=wang,
                                             json={"lat": 22.03, "lon": 108.03, "at": at})
        assert first.json()["published"] is True and second.json()["published"] is False

        async def latest_published() -> bool:
            events = await volunteers.events("unit.position", UnitPosition)
            return len(events) == 2 and (events[-1].lat, events[-1].lon) == (22.03, 108.03)

        from .conftest import poll_until

        await poll_until(latest_published, "the trailing fix of the same stamp published")


async def test_a_coalesced_fix_is_still_published_when_its_interval_ends(
    clean_redis: str,
) -> None:
    # A team that reports once and then stands still must not stay, for dispatch, where it
    # was before: the suppressed fix goes out at the end of the interval.
    async with running(clean_redis, position_publish_interval_ms=400) as volunteers:
        await volunteers.import_district()
        wang = await volunteers.enrol("m-wang")
        await volunteers.client.post("/v1/me/shift/start", headers=wang)
        first = await volunteers.client.put("/v1/me/position", headers=wang,
                                            json={"lat": 22.01, "lon": 108.01})
        second = await volunteers.client.put("/v1/me/position", headers=wang,
                                             json={"lat": 22.03, "lon": 108.03})
        assert first.json()["published"] is True and second.json()["published"] is False

        async def latest_published() -> bool:
            events = await volunteers.events("unit.position", UnitPosition)
            return len(events) == 2 and (events[-1].lat, events[-1].lon) == (22.03, 108.03)

        from .conftest import poll_until

        await poll_until(latest_published, "the trailing fix published")
        assert await volunteers.redis.zcard("roster:pos-pending") == 0


async def test_a_fix_stored_while_the_trailing_edge_is_flushed_still_goes_out(
        clean_redis: str) -> None:
    # The flusher reads the team's latest fix; a newer one is stored before its script
    # runs (its own ZADD NX finds the pending entry there): that newer fix is published by
    # the next flush, not dropped with the entry.
    async with running(clean_redis, position_publish_interval_ms=60_000) as volunteers:
        await volunteers.import_district()
        wang = await volunteers.enrol("m-wang")
        await volunteers.client.post("/v1/me/shift/start", headers=wang)

        async def put(lat: float) -> dict[str, Any]:
            r = await volunteers.client.put("/v1/me/position", headers=wang,
                                            json={"lat": lat, "lon": 108.01})
            return r.json()

        assert (await put(22.01))["published"] is True  # the leading edge
        assert (await put(22.02))["published"] is False  # coalesced: pending
        redis = Redis.from_url(clean_redis, decode_responses=True)
        writer = PositionWriter(redis, publish_interval_ms=60_000)
        read = redis.hgetall
        stored: list[dict[str, Any]] = []

        async def hgetall_then_a_fix(key: str) -> Any:
            data = await read(key)
            if key.startswith("roster:pos:") and not stored:
                stored.append(await put(22.03))
            return data

        redis.hgetall = hgetall_then_a_fix  # type: ignore[method-assign]
        later = utcnow() + timedelta(seconds=61)
        try:
            assert await writer.flush_due(later) == 0  # 22.02 is no longer the latest
            redis.hgetall = read  # type: ignore[method-assign]
            assert await writer.flush_due(later) == 1
        finally:
            await redis.aclose()
        events = await volunteers.events("unit.position", UnitPosition)
        assert [e.lat for e in events] == [22.01, 22.03]
        assert await volunteers.redis.zcard("roster:pos-pending") == 0


async def test_a_member_not_on_the_shift_does_not_move_the_team_until_they_check_in(
        volunteers: Volunteers) -> None:
    """Auntie Wang checks in and patrols; Uncle Chen, of the same team, has not checked in
    and is at home with the member page open. Were his fixes taken, his home would become
    the team's position: dispatch would rank the team by where Chen sits, send it to
    incidents near his home and pass it over for ones near Wang."""
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    client = volunteers.client
    assert (await client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    at = utcnow().replace(microsecond=0) - timedelta(seconds=5)
    r = await client.put("/v1/me/position", headers=wang, json={
        "lat": 22.031, "lon": 108.031, "at": at.isoformat()})
    assert r.status_code == 200 and r.json()["accepted"] is True
    home = {"lat": 22.095, "lon": 108.095, "at": (at + timedelta(seconds=2)).isoformat()}
    r = await client.put("/v1/me/position", headers=chen, json=home)
    assert r.status_code == 409 and r.json()["error"] == {"code": "conflict",
                                                          "message": NOT_ON_SHIFT}
    team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert team["state"]["shift_member_ids"] == ["m-wang"]
    published = [(e.lat, e.lon) for e in await volunteers.events("unit.position", UnitPosition)
                 if e.unit_id == "t-vol"]
    assert (team["position"]["lat"], published) == (22.031, [(22.031, 108.031)]), (
        "a fix from a member not on the shift moved the team")

    # Checked in, he is on the shift: his fixes count.
    assert (await client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    assert (await client.put("/v1/me/position", headers=chen, json=home)).status_code == 200
    team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert team["position"]["lat"] == 22.095


async def test_a_state_stored_before_its_senders_were_kept_refuses_members_not_on_the_shift(
        volunteers: Volunteers) -> None:
    # A team's state written by an earlier version has no `fixes_from`: the script reads
    # who is on the shift from the state itself, until the state's next change writes it.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    client = volunteers.client
    await client.post("/v1/me/shift/start", headers=wang)
    assert await volunteers.redis.hdel("roster:state:t-vol", "fixes_from") == 1
    fix = {"lat": 22.03, "lon": 108.03}
    r = await client.put("/v1/me/position", headers=chen, json=fix)
    assert r.status_code == 409 and r.json()["error"]["message"] == NOT_ON_SHIFT
    assert (await client.put("/v1/me/position", headers=wang, json=fix)).status_code == 200


async def test_a_team_holding_an_order_with_nobody_on_its_shift_is_moved_by_any_member(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    # An order that reached the team as its shift ended (dispatch's view was stale) still
    # holds it: whoever of the team goes keeps dispatch's map right until the order ends.
    await volunteers.import_district()
    chen = await volunteers.enrol("m-chen")
    fix = {"lat": 22.03, "lon": 108.03}
    assert (await volunteers.client.put("/v1/me/position", headers=chen,
                                        json=fix)).status_code == 409  # off duty
    await publisher.publish(OrderIssued(
        district="d1", order_id="ord_late", incident_id="inc_late", team_id="t-vol",
        agency_kind="volunteer", category="noise", priority="P4",
        location=Location(lat=22.05, lon=108.05)), stream="order.issued")
    await volunteers.consumed("order.issued")
    r = await volunteers.client.put("/v1/me/position", headers=chen, json=fix)
    assert r.status_code == 200 and r.json()["accepted"] is True


async def test_a_revoked_token_stops_reporting_positions_at_once(volunteers: Volunteers) -> None:
    # The fast path keeps each device's identity in memory; the fix's script still checks
    # the token in Redis, so a revocation takes effect on the very next fix.
    await volunteers.import_district()
    client = volunteers.client
    created = (await client.post("/v1/members/m-wang/devices", headers=ADMIN)).json()
    device = {"Authorization": f"Bearer {created['token']}"}
    await client.post("/v1/me/shift/start", headers=device)
    fix = {"lat": 22.03, "lon": 108.03}
    assert (await client.put("/v1/me/position", headers=device, json=fix)).status_code == 200
    url = f"/v1/members/m-wang/devices/{created['device_id']}"
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    refused = await client.put("/v1/me/position", headers=device, json=fix)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == {"error": {"code": "unauthorized",
                                        "message": "unknown or revoked token"}}
    assert (await client.put("/v1/me/position", headers={"Authorization": "Bearer lfd_nope"},
                             json=fix)).status_code == 401


async def test_a_member_moved_to_another_team_reports_for_the_new_team(
    volunteers: Volunteers,
) -> None:
    from .conftest import DISTRICT

    await volunteers.import_district()
    client = volunteers.client
    wang = await volunteers.enrol("m-wang")
    await client.post("/v1/me/shift/start", headers=wang)
    assert (await client.put("/v1/me/position", headers=wang,
                             json={"lat": 22.01, "lon": 108.01})).status_code == 200
    moved = {**DISTRICT, "members": [
        {**m, "team_id": "t-guards", "agency_id": "s-co", "role": "guard"}
        if m["id"] == "m-wang" else m
        for m in DISTRICT["members"]]}
    await volunteers.import_district(moved)
    await client.post("/v1/me/shift/start", headers=wang)  # now the guards' shift
    response = await client.put("/v1/me/position", headers=wang,
                                json={"lat": 22.05, "lon": 108.05})
    assert response.status_code == 200, response.text
    guards = (await client.get("/v1/teams/t-guards", headers=ADMIN)).json()
    assert guards["position"]["lat"] == 22.05
    vol = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert vol["position"]["lat"] == 22.01


async def test_a_device_flooding_fixes_gets_429_with_retry_after(clean_redis: str) -> None:
    async with running(clean_redis, rate_limit_device="3/second") as volunteers:
        await volunteers.import_district()
        wang = await volunteers.enrol("m-wang")
        await volunteers.client.post("/v1/me/shift/start", headers=wang)
        codes = []
        for _ in range(5):
            r = await volunteers.client.put("/v1/me/position", headers=wang,
                                            json={"lat": 22.01, "lon": 108.01})
            codes.append(r.status_code)
        assert codes[-1] == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "rate_limited"
        assert codes.count(200) in (2, 3)  # the shift start took one of the three


async def fix_while_writes_raise(volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
                                 error: Exception) -> tuple[httpx.Response, dict[str, str]]:
    """A member on shift sends a fix while the position writer raises `error`: the answer,
    and the device's headers."""
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    await volunteers.client.post("/v1/me/shift/start", headers=device)

    async def raises(*_: object, **__: object) -> int:
        raise error

    monkeypatch.setattr(PositionWriter, "write", raises)
    response = await volunteers.client.put("/v1/me/position", headers=device,
                                           json={"lat": 22.03, "lon": 108.03})
    return response, device


async def test_a_fix_that_fails_unexpectedly_gets_the_apps_own_500(
        volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    response, _ = await fix_while_writes_raise(volunteers, monkeypatch,
                                               RuntimeError("the writer broke"))
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert "unhandled error: RuntimeError" in caplog.text
    assert "22.03" not in caplog.text  # the fix itself is not logged


async def test_a_fix_s_unexpected_failure_is_logged_without_the_values_it_quotes(
        volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    class Member(BaseModel):
        phone: str = Field(pattern=r"^\+86")

    phone = "13912345678"
    try:
        Member(phone=phone)  # (the traceback shows this line)
    except ValidationError as exc:
        error = exc
    response, _ = await fix_while_writes_raise(volunteers, monkeypatch, error)
    assert response.status_code == 500
    assert "unhandled error: ValidationError in PUT /v1/me/position" in caplog.text
    assert "phone: string_pattern_mismatch" in caplog.text
    assert phone not in caplog.text


async def test_a_fix_while_redis_is_not_answering_gets_503_with_retry_after(
        volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the app's own routes answer (shared.http): the phone sends its next fix later.
    response, device = await fix_while_writes_raise(
        volunteers, monkeypatch, RedisConnectionError("Connection refused"))
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert response.json()["error"] == {"code": "unavailable",
                                        "message": "the store is not answering; ask again"}
    monkeypatch.undo()
    again = await volunteers.client.put("/v1/me/position", headers=device,
                                        json={"lat": 22.03, "lon": 108.03})
    assert again.status_code == 200


async def test_fixes_are_answered_before_fastapi_and_its_telemetry_see_them(
        volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    # FastAPI's native telemetry runs in FastAPI.__call__: a fix that never gets there
    # leaves no span and costs none of its per-request work.
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    await volunteers.client.post("/v1/me/shift/start", headers=device)
    reached: list[str] = []
    through = FastAPI.__call__

    async def counting(app: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        reached.append(f"{scope.get('method')} {scope.get('path')}")
        await through(app, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", counting)
    fix = await volunteers.client.put("/v1/me/position", headers=device,
                                      json={"lat": 22.03, "lon": 108.03})
    team = await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)
    assert fix.status_code == 200 and team.status_code == 200
    assert reached == ["GET /v1/teams/t-vol"]


async def test_a_pending_fix_past_the_maps_latitudes_is_dropped_and_the_others_go_out(
        clean_redis: str) -> None:
    # A fix an earlier version stored (and coalesced) before fixes were held to the map's
    # latitudes is no valid unit.position now: the flush drops it, and goes on publishing
    # the other teams' trailing fixes instead of stopping for good.
    from services.volunteers.store import keys
    from services.volunteers.store.teams import PENDING

    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        at = utcnow() - timedelta(seconds=5)
        for team_id, lat in (("t-north", 86.0), ("t-ok", 22.01)):
            await redis.hset(keys.position(team_id), mapping={
                "at_ms": int(at.timestamp() * 1000), "lat": repr(lat), "lon": "108.01",
                "accuracy_m": "", "at": at.isoformat(), "district": "d1", "pub_ms": 0})
            await redis.zadd(PENDING, {team_id: 0})
        writer = PositionWriter(redis, publish_interval_ms=1000)
        assert await writer.flush_due(utcnow()) == 1
        assert await redis.zcard(PENDING) == 0
    finally:
        await redis.aclose()
    assert [e.unit_id for e in read_stream(clean_redis, "unit.position", UnitPosition)] == [
        "t-ok"]


async def test_a_trailing_fix_flushed_by_two_workers_at_once_is_published_once(
        clean_redis: str) -> None:
    # HTTP_WORKERS=2 (operations.md, "Scaling out"): each worker runs the flush loop. Both
    # read the same due team; the first publishes its trailing fix, the second's script
    # found the interval not yet over and put the team back as pending, so the very same
    # fix went out again an interval later (a duplicate unit.position of one fix).
    from services.volunteers.store import keys
    from services.volunteers.store.teams import PENDING

    first, second = (Redis.from_url(clean_redis, decode_responses=True) for _ in range(2))
    try:
        at = utcnow() - timedelta(seconds=5)
        await first.hset(keys.position("t-ok"), mapping={
            "at_ms": int(at.timestamp() * 1000), "lat": "22.01", "lon": "108.01",
            "accuracy_m": "", "at": at.isoformat(), "district": "d1", "pub_ms": 0})
        await first.zadd(PENDING, {"t-ok": 0})
        one = PositionWriter(first, publish_interval_ms=1000)
        two = PositionWriter(second, publish_interval_ms=1000)
        now = utcnow()
        read = second.hgetall
        flushed: list[int] = []

        async def read_then_the_other_worker_flushes(key: str) -> Any:
            data = await read(key)
            if not flushed:
                flushed.append(await one.flush_due(now))
            return data

        second.hgetall = read_then_the_other_worker_flushes  # type: ignore[method-assign]
        assert await two.flush_due(now) == 0
        assert flushed == [1]
        assert await one.flush_due(now + timedelta(seconds=2)) == 0
        assert await first.zcard(PENDING) == 0
    finally:
        await first.aclose()
        await second.aclose()
    assert len(read_stream(clean_redis, "unit.position", UnitPosition)) == 1


async def test_another_device_of_a_checked_in_member_does_not_move_the_team(
        volunteers: Volunteers) -> None:
    """Auntie Wang checks in on her phone and patrols; the tablet at home, the member's page
    open on it, shares its position too. Taken by member, its fixes moved the team 6 km to
    her home, and dispatch ranked it from there. Only the device she checked in with moves
    it; checking in from the tablet makes it the one (she took the tablet out instead)."""
    await volunteers.import_district()
    phone, tablet = await volunteers.enrol("m-wang"), await volunteers.enrol("m-wang")
    client = volunteers.client
    checked_in = await client.post("/v1/me/shift/start", headers=phone)
    assert checked_in.status_code == 200 and checked_in.json()["checked_in_here"] is True
    at = utcnow().replace(microsecond=0) - timedelta(seconds=10)
    street = {"lat": 22.031, "lon": 108.031, "at": at.isoformat()}
    assert (await client.put("/v1/me/position", headers=phone, json=street)).json() == {
        "accepted": True, "published": True}

    home = {"lat": 22.085, "lon": 108.031, "at": (at + timedelta(seconds=2)).isoformat()}
    r = await client.put("/v1/me/position", headers=tablet, json=home)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "not_this_device"
    assert "not the one you checked in with" in r.json()["error"]["message"]

    async def team_at() -> tuple[float, list[float]]:
        team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
        published = [e.lat for e in await volunteers.events("unit.position", UnitPosition)
                     if e.unit_id == "t-vol"]
        return team["position"]["lat"], published

    assert await team_at() == (22.031, [22.031]), "the tablet at home moved the team"
    # What each page reads: the member is checked in, from the phone, not the tablet.
    on_tablet = (await client.get("/v1/me", headers=tablet)).json()
    on_phone = (await client.get("/v1/me", headers=phone)).json()
    assert (on_tablet["checked_in"], on_tablet["checked_in_here"]) == (True, False)
    assert (on_phone["checked_in"], on_phone["checked_in_here"]) == (True, True)

    # Checked in again from the tablet: it is the one now, her stint goes on.
    switched = await client.post("/v1/me/shift/start", headers=tablet)
    assert switched.status_code == 200, switched.text
    assert (switched.json()["shift_member_ids"], switched.json()["checked_in_here"]) == (
        ["m-wang"], True)
    assert (await client.get("/v1/me", headers=tablet)).json()["checked_in_at"] == \
        on_tablet["checked_in_at"]
    r = await client.put("/v1/me/position", headers=tablet, json=home)
    assert r.status_code == 200 and r.json()["accepted"] is True
    later = {"lat": 22.032, "lon": 108.032, "at": (at + timedelta(seconds=4)).isoformat()}
    r = await client.put("/v1/me/position", headers=phone, json=later)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_this_device"
    assert await team_at() == (22.085, [22.031, 22.085])
    assert (await client.get("/v1/me", headers=phone)).json()["checked_in_here"] is False


async def test_a_state_stored_before_its_senders_were_kept_refuses_another_device_too(
        volunteers: Volunteers) -> None:
    # The script works `fixes_from` out of the state itself for a state written before it
    # was kept, by the same rule: the member's device on the shift, not another of theirs.
    await volunteers.import_district()
    phone, tablet = await volunteers.enrol("m-wang"), await volunteers.enrol("m-wang")
    client = volunteers.client
    await client.post("/v1/me/shift/start", headers=phone)
    assert await volunteers.redis.hdel("roster:state:t-vol", "fixes_from") == 1
    fix = {"lat": 22.03, "lon": 108.03}
    r = await client.put("/v1/me/position", headers=tablet, json=fix)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_this_device"
    assert (await client.put("/v1/me/position", headers=phone, json=fix)).status_code == 200


async def test_a_member_checked_in_before_devices_were_kept_moves_the_team_from_any_device(
        volunteers: Volunteers) -> None:
    # A shift stored by an earlier version knows its members, not their devices: each of a
    # member's devices moves the team, as then, until they check in again.
    await volunteers.import_district()
    phone, tablet = await volunteers.enrol("m-wang"), await volunteers.enrol("m-wang")
    client = volunteers.client
    await client.post("/v1/me/shift/start", headers=phone)
    phone_id = (await client.get("/v1/me", headers=phone)).json()["device_id"]
    raw = json.loads(await volunteers.redis.hget("roster:state:t-vol", "state"))
    assert raw.pop("shift_devices") == {"m-wang": phone_id}
    await volunteers.redis.hset("roster:state:t-vol", mapping={
        "state": json.dumps(raw), "fixes_from": " m-wang "})
    fix = {"lat": 22.03, "lon": 108.03}
    for device in (tablet, phone):
        assert (await client.put("/v1/me/position", headers=device, json=fix)).status_code == 200
    assert (await client.get("/v1/me", headers=tablet)).json()["checked_in_here"] is True
