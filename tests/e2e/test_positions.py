"""A team that moves is dispatched from where it is now: volunteers -> unit.position ->
dispatch's index, with every service running."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from tests.e2e.journey import (
    admin,
    bearer,
    connect_device,
    district_roster,
    enrol,
    on_shift_at,
    register_system,
    unique_district,
)
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8600, 108.3000)


async def test_the_next_incident_goes_to_the_team_at_its_new_position(stack: Stack) -> None:
    district = unique_district()
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200
        near = await enrol(client, stack, f"{district}-m-near-1")
        far = await enrol(client, stack, f"{district}-m-far")
        near_phone = await connect_device(stack, near, exits)
        far_phone = await connect_device(stack, far, exits)
        # Patrol 1 starts 4 km away, patrol 2 at 2 km: patrol 2 is the nearer one.
        await on_shift_at(client, stack, near, lat + 0.036, lon)
        await on_shift_at(client, stack, far, lat + 0.018, lon)

        async def positions() -> dict[str, float]:
            r = await client.get(f"{stack.url('dispatch')}/v1/units", headers=admin(stack),
                                 params={"district": district, "status": "available"})
            return {u["team_id"]: u["position"]["lat"] for u in r.json()["units"]
                    if u["position"]}

        await poll_until(lambda: _count(positions(), 2), "both patrols known to dispatch")
        # Patrol 1 drives to 300 m from the scene and reports it.
        r = await client.put(f"{stack.url('volunteers')}/v1/me/position", headers=bearer(near),
                             json={"lat": lat + 0.0027, "lon": lon, "accuracy_m": 5})
        assert r.status_code in (200, 202, 204), r.text
        r = await client.get(f"{stack.url('volunteers')}/v1/teams/{district}-patrol-near",
                             headers=admin(stack))
        assert abs(r.json()["position"]["lat"] - (lat + 0.0027)) < 1e-9

        async def moved() -> bool:
            return abs((await positions()).get(f"{district}-patrol-near", 0) -
                       (lat + 0.0027)) < 1e-6

        await poll_until(moved, "dispatch seeing patrol 1's new position", timeout=15)
        key = await register_system(client, stack, district)
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"pos-{district}", "category": "dispute", "district": district,
            "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 202
        order = await near_phone.next_of("order", timeout=15)
        assert order["incident_id"] == r.json()["incident_id"]
        assert [f for f in await far_phone.drain(0.5) if f.get("type") == "order"] == []


async def _count(value, n: int) -> bool:
    return len(await value) == n
