"""Removing a zone (a zone drawn by mistake, a test zone, territory given up): the lookups
and the district's zones (dispatch's projection) no longer hold it, and no team keeps it as
its home zone."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest

from services.volunteers.store import imports

from .conftest import ADMIN, DISTRICT, Volunteers

CELL_POINT = {"district": "d1", "lat": 22.03, "lon": 108.03}  # in z-cell, in z-territory


def teams_homed(homes: dict[str, str | None]) -> dict[str, Any]:
    """DISTRICT's teams with these home zones (None: no home zone), alone in a document."""
    teams = [dict(t, home_zone_id=homes.get(t["id"], t["home_zone_id"]))
             for t in DISTRICT["teams"]]
    return {"district": "d1", "teams": teams}


async def zone_ids(client: httpx.AsyncClient) -> list[str]:
    r = await client.get("/v1/zones", headers=ADMIN, params={"district": "d1"})
    assert r.status_code == 200, r.text
    return [z["zone_id"] for z in r.json()["zones"]]


async def test_a_zone_no_team_is_at_home_in_is_removed_from_lookups_and_the_district(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    await volunteers.import_district(teams_homed({"t-guards": "z-territory", "t-vol": None}))
    assert (await client.get("/v1/zones/lookup", headers=ADMIN,
                             params=CELL_POINT)).json()["zone_id"] == "z-cell"  # cached

    assert (await client.delete("/v1/zones/z-cell", headers=ADMIN)).status_code == 204
    assert (await client.get("/v1/zones/z-cell", headers=ADMIN)).status_code == 404
    assert await zone_ids(client) == ["z-territory"]
    lookup = await client.get("/v1/zones/lookup", headers=ADMIN, params=CELL_POINT)
    assert lookup.json()["zone_id"] == "z-territory"  # the station's territory around it
    assert (await client.delete("/v1/zones/z-cell", headers=ADMIN)).status_code == 404
    entries = (await client.get("/v1/admin/audit", headers=ADMIN)).json()["entries"]
    removed = [e for e in entries if e["action"] == "zone.delete"]
    assert [(e["target"], e["detail"]) for e in removed] == [("z-cell", "d1 p-station")]

    # gone from the roster: a team may no longer name it as its home
    r = await client.post("/v1/roster/import", headers=ADMIN,
                          json=teams_homed({"t-guards": "z-territory", "t-vol": "z-cell"}))
    assert r.status_code == 422 and r.json()["error"]["field"] == "teams.2.home_zone_id"


async def test_a_zone_that_is_a_team_s_home_is_refused_naming_the_teams(
    volunteers: Volunteers,
) -> None:
    # Dispatch breaks ties by the home zone: a team left at home in a zone that is gone
    # would hold a reference that no import accepts (it refuses a home zone that names no
    # zone), so the teams are given another home (or none) first, as members are moved
    # before their team is removed.
    await volunteers.import_district()
    client = volunteers.client
    refused = await client.delete("/v1/zones/z-cell", headers=ADMIN)
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "t-guards" in message and "t-vol" in message and "t-patrol" not in message
    assert await zone_ids(client) == ["z-cell", "z-territory"]
    assert (await client.get("/v1/zones/lookup", headers=ADMIN,
                             params=CELL_POINT)).json()["zone_id"] == "z-cell"

    await volunteers.import_district(teams_homed({"t-guards": "z-territory"}))
    refused = await client.delete("/v1/zones/z-cell", headers=ADMIN)
    assert refused.status_code == 409 and "t-guards" not in refused.json()["error"]["message"]
    await volunteers.import_district(teams_homed({"t-guards": "z-territory", "t-vol": None}))
    assert (await client.delete("/v1/zones/z-cell", headers=ADMIN)).status_code == 204
    team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert team["home_zone_id"] is None


async def test_a_zone_removal_waits_for_an_import_giving_a_team_it_as_home(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The import found the zone and gives a new team it as home; a removal between the
    import's writes would leave the team at home in a zone that is gone. It waits for the
    import, and then refuses: the team is at home there."""
    spare = {"id": "z-spare", "name": "Spare", "owner_agency_id": "p-station",
             "polygon": [[108.2, 22.0], [108.3, 22.0], [108.3, 22.1], [108.2, 22.1]]}
    doc = copy.deepcopy(DISTRICT)
    doc["zones"].append(spare)
    await volunteers.import_district(doc)
    doc["teams"].append({"id": "t-spare", "agency_id": "s-co", "name": "Post 9",
                         "mode": "foot", "home_zone_id": "z-spare"})
    removal: list[asyncio.Task[httpx.Response]] = []
    original = imports.apply_step

    async def removing_meanwhile(*args: Any, **kwargs: Any) -> int:
        if not removal:  # the import has validated and is writing
            removal.append(asyncio.create_task(
                volunteers.client.delete("/v1/zones/z-spare", headers=ADMIN)))
        await asyncio.sleep(0)
        return await original(*args, **kwargs)

    monkeypatch.setattr(imports, "apply_step", removing_meanwhile)
    await volunteers.import_district(doc)
    removed = await removal[0]
    assert removed.status_code == 409 and "t-spare" in removed.json()["error"]["message"]
    assert "z-spare" in await zone_ids(volunteers.client)
