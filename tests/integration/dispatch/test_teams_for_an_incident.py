"""GET /v1/incidents/{id}/teams, in-process against a real Redis: the teams the command room
is offered to send by hand, nearest suitable first, as dispatch's projection holds them."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker

from .test_engine import orders_once, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}
LON = 108.3665
METRES_PER_DEGREE = 111_195.0  # of latitude, along the scene's meridian


def north(metres: float) -> float:
    """The latitude `metres` north of the test scene (22.8170)."""
    return 22.8170 + metres / METRES_PER_DEGREE


async def test_a_third_team_for_a_fight_is_the_far_police_car_not_the_volunteers_next_door(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A fight: dispatch sends the nearest police and security teams. The command room wants
    a third: offered first is the police car 4 km off, then the volunteer patrol 100 m off,
    marked as a kind the category does not list (DOMAIN.md: volunteers are never sent alone
    into violence); the teams already on it are not offered."""
    await team(publisher, "vol", kind="volunteer", mode="foot", lat=north(100), lon=LON)
    await team(publisher, "guard", kind="security", lat=north(800), lon=LON)
    await team(publisher, "police-near", kind="police", lat=north(600), lon=LON)
    await team(publisher, "police-far", kind="police", lat=north(4000), lon=LON)
    await wait_for_units(clean_redis, 4)
    incident_id = await report(publisher, "violence", priority="P1")
    sent = await orders_once(clean_redis, incident_id, 2, "the joint response")
    assert {o.team_id for o in sent} == {"police-near", "guard"}

    r = await console.get(f"/v1/incidents/{incident_id}/teams", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["team_id"] for t in body["teams"]] == ["police-far", "vol"]
    far, vol = body["teams"]
    assert far["warnings"] == [] and far["position_counts"] is True
    assert abs(far["distance_m"] - 4000) < 5
    assert abs(far["eta_s"] - far["distance_m"] * 1.3 / (30 / 3.6)) <= 1  # a car: 30 km/h
    # police and security are on it: the warning is the category's, not "alone"
    assert vol["warnings"] == ["kind_not_listed"] and abs(vol["distance_m"] - 100) < 2
    assert (body["count"], body["total"]) == (2, 2)

    first = await console.get(f"/v1/incidents/{incident_id}/teams", headers=ADMIN,
                              params={"limit": 1})
    assert [t["team_id"] for t in first.json()["teams"]] == ["police-far"]
    assert (first.json()["count"], first.json()["total"]) == (1, 2)


async def test_an_incident_dispatch_does_not_know_is_a_404(console: httpx.AsyncClient) -> None:
    r = await console.get("/v1/incidents/inc_nope/teams", headers=ADMIN)
    assert r.status_code == 404
    r = await console.get("/v1/incidents/inc_nope/teams", headers=ADMIN, params={"limit": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
