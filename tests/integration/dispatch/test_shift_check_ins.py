"""The teams planned for the shift being worked and not checked in, for the command room
(DOMAIN.md: at 08:10 the duty dispatcher calls them). Volunteers owns the plans and the
check-ins; dispatch asks it (GET /v1/shifts/now, admin token) and answers a desk for its own
districts only: the four services in this process on one real Redis, and dispatch alone
with volunteers out of reach."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.journey import district_roster
from tests.integration.four_services import four_services

from .test_close import ADMIN as DISPATCH_ONLY_ADMIN

ADMIN_TOKEN = f"roll-call-admin-{secrets.token_hex(8)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCENE = {"d1": (22.83, 108.33), "d2": (22.93, 108.43)}


def _hour(from_now: int) -> str:
    return f"{(datetime.now(UTC) + timedelta(hours=from_now)).hour:02d}:00"


# On UTC's clock whatever the hour the test runs at: a shift of the whole day, every day
# (being worked now), and one of an hour from two hours on (not yet, nor still).
ALL_DAY = {"timezone": "UTC", "shifts": {"day": {"start": "00:00", "end": "00:00"}},
           "rotation": ["day"], "anchor": "2026-01-05"}
LATER = {"timezone": "UTC", "shifts": {"later": {"start": _hour(2), "end": _hour(3)}},
         "rotation": ["later"], "anchor": "2026-01-05"}
PLANS = {"d1-patrol-near": ALL_DAY, "d1-sec-1": ALL_DAY, "d1-vol-1": ALL_DAY,
         "d1-patrol-far": LATER, "d2-sec-1": ALL_DAY}


async def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    return r.json()


async def test_a_desk_sees_who_was_planned_for_the_shift_and_has_not_checked_in(
        redis_url: str) -> None:
    async with four_services(redis_url, ADMIN_TOKEN) as urls, \
            httpx.AsyncClient(timeout=10) as http:
        volunteers, dispatch = urls["volunteers"], urls["dispatch"]
        for district, scene in SCENE.items():
            await _ok(await http.post(f"{volunteers}/v1/roster/import", headers=ADMIN,
                                      json=district_roster(district, scene)))
        for team, plan in PLANS.items():
            await _ok(await http.put(f"{volunteers}/v1/teams/{team}/shift-plan",
                                     headers=ADMIN, json=plan))
        device = await _ok(await http.post(f"{volunteers}/v1/members/d1-m-near-1/devices",
                                           headers=ADMIN))
        phone = {"Authorization": f"Bearer {device['token']}"}
        await _ok(await http.post(f"{volunteers}/v1/me/shift/start", headers=phone))
        desks = {}
        for role in ("dispatcher", "inspector"):
            made = await _ok(await http.post(f"{dispatch}/v1/dispatchers", headers=ADMIN, json={
                "name": f"{role} d1", "districts": ["d1"], "role": role}))
            desks[role] = {"Authorization": f"Bearer {made['token']}"}

        async def asked(headers: dict[str, str], district: str) -> httpx.Response:
            return await http.get(f"{dispatch}/v1/shift-check-ins", headers=headers,
                                  params={"district": district})

        for desk in desks.values():
            r = await asked(desk, "d1")
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["district"], body["planned"], body["not_checked_in"]) == ("d1", 3, 2)
            # whom to call first: those not in (by name), then those in
            assert [(t["team_id"], t["team_name"], t["agency_kind"], t["checked_in"])
                    for t in body["teams"]] == [
                ("d1-vol-1", "Aunties 1", "volunteer", False),
                ("d1-sec-1", "Guard post 3", "security", False),
                ("d1-patrol-near", "Patrol 1", "police", True)]
            assert body["teams"][1]["agency_name"] == "Hengan Security"
            assert all(t["shift"] == "day" for t in body["teams"])
            # another district's teams: not this desk's to see
            r = await asked(desk, "d2")
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        # the security company's own desk: its own team, whom its duty manager calls
        made = await _ok(await http.post(f"{dispatch}/v1/dispatchers", headers=ADMIN, json={
            "name": "Hengan duty manager", "districts": ["d1"], "role": "agency",
            "agency_id": "d1-sec"}))
        company = {"Authorization": f"Bearer {made['token']}"}
        body = (await _ok(await asked(company, "d1")))
        assert (body["planned"], body["not_checked_in"]) == (1, 1)
        assert [t["team_id"] for t in body["teams"]] == ["d1-sec-1"]
        assert (await asked(company, "d2")).status_code == 403
        r = await asked(ADMIN, "d2")
        assert [(t["team_id"], t["checked_in"]) for t in r.json()["teams"]] == [
            ("d2-sec-1", False)]
        # a district the roster does not hold: named, not "volunteers did not answer"
        r = await asked(ADMIN, "D2")
        assert r.status_code == 422 and r.json()["error"]["field"] == "district", r.text
        assert "d1, d2" in r.json()["error"]["message"], r.text
        r = await asked(desks["dispatcher"], "D2")  # no desk of it: 403 as before
        assert r.status_code == 403, r.text
        # a member's phone is no desk: dispatch does not know its token
        assert (await asked(phone, "d1")).status_code == 401
        r = await http.get(f"{dispatch}/v1/shift-check-ins", headers=desks["dispatcher"])
        assert r.status_code == 422 and r.json()["error"]["field"] == "district"


async def test_volunteers_out_of_reach_is_a_503_to_ask_again(
        console: httpx.AsyncClient) -> None:
    """Who is due on shift is volunteers' to say: not answering is neither "everyone is
    in" nor "nobody is", and the console says it could not be read."""
    r = await console.get("/v1/shift-check-ins", headers=DISPATCH_ONLY_ADMIN,
                          params={"district": "d1"})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] and r.json()["error"]["code"] == "unavailable"
    assert "volunteers" in r.json()["error"]["message"]
