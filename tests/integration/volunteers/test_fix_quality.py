"""Fixes that cannot place a team on dispatch's map are refused, naming the field, before
they become the team's position or a unit.position dispatch cannot use."""

from __future__ import annotations

from .conftest import ADMIN, Volunteers


async def on_shift(volunteers: Volunteers) -> dict[str, str]:
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=device)).status_code == 200
    return device


async def test_a_fix_beyond_the_latitudes_dispatch_can_map_is_refused_naming_lat(
    volunteers: Volunteers,
) -> None:
    device = await on_shift(volunteers)
    good = await volunteers.client.put("/v1/me/position", headers=device,
                                       json={"lat": 43.8, "lon": 87.6})
    assert good.json() == {"accepted": True, "published": True}

    # Urumqi's fix with latitude and longitude swapped: within -90..90, yet beyond what
    # Redis's GEO index (dispatch's map) holds, where it would only be a dead letter.
    swapped = await volunteers.client.put("/v1/me/position", headers=device,
                                          json={"lat": 87.6, "lon": 43.8})
    assert swapped.status_code == 422, swapped.text
    assert swapped.json()["error"]["field"] == "lat"
    south = await volunteers.client.put("/v1/me/position", headers=device,
                                        json={"lat": -86.0, "lon": 43.8})
    assert south.status_code == 422 and south.json()["error"]["field"] == "lat"

    assert await volunteers.redis.xlen("unit.position") == 1
    team = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert (team["position"]["lat"], team["position"]["lon"]) == (43.8, 87.6)


async def test_a_fix_too_coarse_to_place_the_team_is_refused_naming_accuracy_m(
    volunteers: Volunteers,
) -> None:
    device = await on_shift(volunteers)
    precise = await volunteers.client.put("/v1/me/position", headers=device,
                                          json={"lat": 22.03, "lon": 108.03, "accuracy_m": 8})
    assert precise.json() == {"accepted": True, "published": True}

    # A position from the network or the IP address (kilometres wide) taken after a GPS
    # fix: it would move the team kilometres from where it is, and dispatch would send it
    # to incidents it is far from.
    for accuracy_m in (20_000, volunteers.settings.position_max_accuracy_m + 1):
        coarse = await volunteers.client.put(
            "/v1/me/position", headers=device,
            json={"lat": 22.2, "lon": 108.2, "accuracy_m": accuracy_m})
        assert coarse.status_code == 422, coarse.text
        assert coarse.json()["error"]["field"] == "accuracy_m"

    assert await volunteers.redis.xlen("unit.position") == 1
    team = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert team["position"] == {"lat": 22.03, "lon": 108.03, "accuracy_m": 8.0,
                                "at": team["position"]["at"]}

    edge = await volunteers.client.put(
        "/v1/me/position", headers=device,
        json={"lat": 22.031, "lon": 108.031,
              "accuracy_m": volunteers.settings.position_max_accuracy_m})
    assert edge.json()["accepted"] is True
