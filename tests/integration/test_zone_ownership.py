"""Who owns a place, through volunteers' roster import against a real Redis: its refusals
of zones that would send an incident to the wrong station or to none (a zone no report can
fall in, two stations claiming the same ground)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.volunteers.conftest import ADMIN, running

from .dispatch.test_engine import DISTRICT, SCENE

LAT, LON = SCENE.lat, SCENE.lon


def square(lat: float, lon: float, half: float) -> list[list[float]]:
    """A closed [lon, lat] ring around (lat, lon)."""
    return [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half], [lon - half, lat - half]]


def roster(*, zones: list[dict[str, Any]]) -> dict[str, Any]:
    """Two police stations (ps-old, ps-new), a security company; a team and an officer or
    guard each."""
    return {
        "district": DISTRICT,
        "agencies": [
            {"id": "ps-old", "name": "Old Station", "kind": "police", "role": "station"},
            {"id": "ps-new", "name": "New Station", "kind": "police", "role": "station"},
            {"id": "sec", "name": "Guard company", "kind": "security"},
        ],
        "zones": zones,
        "teams": [
            {"id": "t-old", "agency_id": "ps-old", "name": "Old car", "mode": "car"},
            {"id": "t-new", "agency_id": "ps-new", "name": "New car", "mode": "car"},
            {"id": "t-guard", "agency_id": "sec", "name": "Post 3", "mode": "foot"},
        ],
        "members": [
            {"id": "m-old", "name": "Officer Li", "agency_id": "ps-old", "team_id": "t-old",
             "role": "officer"},
            {"id": "m-new", "name": "Officer Wu", "agency_id": "ps-new", "team_id": "t-new",
             "role": "officer"},
            {"id": "m-guard", "name": "Guard Zhao", "agency_id": "sec", "team_id": "t-guard",
             "role": "guard"},
        ],
    }


def zone(zone_id: str, owner: str, polygon: list[list[float]]) -> dict[str, Any]:
    return {"id": zone_id, "name": zone_id, "owner_agency_id": owner, "polygon": polygon}


async def import_roster(client: httpx.AsyncClient, doc: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/roster/import", json=doc, headers=ADMIN)


URUMQI = (43.8, 87.6)  # lat, lon: a district east of 85 E, where a swap stays within +-90


async def test_a_zone_given_as_lat_lon_where_no_report_can_fall_is_refused(
        clean_redis: str) -> None:
    lat, lon = URUMQI
    swapped = [[y, x] for x, y in square(lat, lon, 0.02)]  # [lat, lon] by mistake
    async with running(clean_redis) as volunteers:
        r = await import_roster(volunteers.client, roster(zones=[zone("z-1", "ps-old",
                                                                      swapped)]))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "zones.0.polygon"
        assert "[lat, lon]" in error["message"]
        # the same zone as [lon, lat] is what the station owns
        r = await import_roster(volunteers.client, roster(zones=[
            zone("z-1", "ps-old", square(lat, lon, 0.02))]))
        assert r.status_code == 200, r.text


async def test_two_stations_claiming_the_same_ground_are_refused(clean_redis: str) -> None:
    block = square(LAT, LON, 0.01)
    async with running(clean_redis) as volunteers:
        # the same block under two stations: which one has its incidents would be the
        # zone ids' alphabetical order
        r = await import_roster(volunteers.client, roster(zones=[
            zone("z-a", "ps-old", block), zone("z-b", "ps-new", block)]))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "zones.1.polygon"
        assert "z-a" in error["message"] and "ps-old" in error["message"]
        # half of one lies in the other: which has it would be whichever is smaller
        r = await import_roster(volunteers.client, roster(zones=[
            zone("z-a", "ps-old", block),
            zone("z-b", "ps-new", square(LAT, LON + 0.015, 0.01))]))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "zones.1.polygon"
        # neighbours sharing a border, a grid cell inside another station's territory, and
        # the same block twice for one station are all fine
        r = await import_roster(volunteers.client, roster(zones=[
            zone("z-a", "ps-old", block),
            zone("z-b", "ps-new", square(LAT, LON + 0.02, 0.01)),
            zone("z-cell", "ps-new", square(LAT, LON, 0.002)),
            zone("z-a2", "ps-old", block)]))
        assert r.status_code == 200, r.text
        lookup = await volunteers.client.get("/v1/zones/lookup", headers=ADMIN, params={
            "district": DISTRICT, "lat": LAT, "lon": LON})
        assert lookup.json()["owner_agency_id"] == "ps-new"  # the cell: the most specific



async def test_a_zone_over_a_stored_zone_of_another_station_is_refused(
        clean_redis: str) -> None:
    # Zones cannot be deleted: re-cutting territory under a new id left the old zone
    # claiming the same block, and the lookup kept giving it to the old station.
    block = square(LAT, LON, 0.01)
    async with running(clean_redis) as volunteers:
        r = await import_roster(volunteers.client, roster(zones=[zone("z-a", "ps-old", block)]))
        assert r.status_code == 200, r.text
        r = await import_roster(volunteers.client, roster(zones=[zone("z-b", "ps-new", block)]))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "zones.0.polygon" and "z-a" in error["message"]
        # the old zone re-cut in the same import (handed to the new station) is fine, as is a
        # grid cell of another station inside it, or a neighbour sharing its border
        r = await import_roster(volunteers.client, roster(zones=[
            zone("z-a", "ps-new", block), zone("z-b", "ps-new", block)]))
        assert r.status_code == 200, r.text
        r = await import_roster(volunteers.client, roster(zones=[
            zone("z-cell", "ps-old", square(LAT, LON, 0.002)),
            zone("z-east", "ps-old", square(LAT, LON + 0.02, 0.01))]))
        assert r.status_code == 200, r.text
