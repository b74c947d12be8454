"""A re-cut of a district's zones written in several of the import's steps: the district's
zones (dispatch's projection reads them whole) and the lookups never hold some zones new and
others old, which would leave dispatch a map with a gap or an overlap two stations claim
until its next refresh."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.volunteers.store import imports

from .conftest import ADMIN, Volunteers, running


def box(x0: float, x1: float) -> list[list[float]]:
    return [[x0, 22.0], [x1, 22.0], [x1, 22.1], [x0, 22.1]]


def cut(border: float) -> dict[str, Any]:
    """Two stations' zones meeting at `border` (lon), the grown one first in the document."""
    return {"district": "recut",
            "agencies": [{"id": "rc-p1", "name": "West station", "kind": "police"},
                         {"id": "rc-p2", "name": "East station", "kind": "police"}],
            "zones": [{"id": "rc-west", "name": "West", "owner_agency_id": "rc-p1",
                       "polygon": box(108.0, border)},
                      {"id": "rc-east", "name": "East", "owner_agency_id": "rc-p2",
                       "polygon": box(border, 108.2)}]}


async def test_zones_are_never_read_half_re_cut(
    volunteers: Volunteers, clean_redis: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service that read the map before serves it until the import's zones are all
    written; a replica (or a restarted one) that never read it answers 503 meanwhile."""
    client = volunteers.client
    await volunteers.import_district(cut(108.1))

    async def district_map(client: Any = client) -> tuple[int, Any]:
        r = await client.get("/v1/zones", headers=ADMIN, params={"district": "recut"})
        if r.status_code != 200:
            return r.status_code, r.headers.get("retry-after")
        return 200, {z["zone_id"]: json.dumps(z["polygon"]) for z in r.json()["zones"]}

    before = await district_map()
    assert (await client.get("/v1/zones/lookup", headers=ADMIN, params={
        "district": "recut", "lat": 22.05, "lon": 108.12})).json()["zone_id"] == "rc-east"
    monkeypatch.setattr(imports, "STEP_COMMANDS", 5)  # a row a step: a city's re-cut
    seen: list[tuple[int, Any]] = []
    fresh: list[tuple[int, Any]] = []
    looked_up: list[tuple[int, str | None]] = []
    original = imports.apply_step

    async def reading_between_steps(*args: Any, **kwargs: Any) -> int:
        announced = await original(*args, **kwargs)
        if await volunteers.redis.exists("roster:import:journal"):
            seen.append(await district_map())
            async with running(clean_redis) as replica:  # its cache empty
                fresh.append(await district_map(replica.client))
            r = await client.get("/v1/zones/lookup", headers=ADMIN, params={
                "district": "recut", "lat": 22.05, "lon": 108.12})
            looked_up.append((r.status_code, r.json().get("zone_id")))
        return announced

    monkeypatch.setattr(imports, "apply_step", reading_between_steps)
    await volunteers.import_district(cut(108.15))
    monkeypatch.undo()
    after = await district_map()
    assert after[0] == 200 and after != before
    assert seen, "the import was written in one step: the test proves nothing"
    for status, zones in seen:
        # the map as it was (cached, complete) or a 503 to ask again, never half of each
        assert (status, zones) == before or (status, zones) == (503, "1"), (status, zones)
    assert all(found in ((200, "rc-east"), (503, None)) for found in looked_up), looked_up
    assert fresh and all(answer == (503, "1") for answer in fresh), fresh
