"""An incident whose place no team of its district has been near (its coordinates at 0, 0
from a camera without a fix, swapped, or of another city): the timeline said "no suitable
team available; waiting", as for a district whose teams are all busy, and the command room
waited for a free team that the search would never find. It says that no team of the
district is known within the search's radius of the place, so the location is checked."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker

from shared import streams
from shared.events import IncidentReported, Location, new_id, utcnow
from tests.helpers import poll_until

from .test_close import ADMIN
from .test_engine import DISTRICT, orders_once, report, team, wait_for_units


async def reported_at(broker: RedisBroker, place: Location) -> str:
    incident_id = new_id("inc")
    await broker.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=place, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    return incident_id


async def unassigned_entry(console: httpx.AsyncClient, incident_id: str) -> dict:
    async def entry() -> dict | None:
        r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        if r.status_code != 200:
            return None
        return next((e for e in r.json()["timeline"] if e["kind"] == "unassigned"), None)

    return await poll_until(entry, "the incident unassigned")


async def test_a_place_no_team_was_ever_near_says_so(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    null_island = await reported_at(publisher, Location(lat=0.0, lon=0.0))
    entry = await unassigned_entry(console, null_island)
    assert entry["detail_code"] == "no_team_in_reach", entry
    assert entry["detail"] == ("no team of the district is known within 10 km of the place: "
                               "is the location right? waiting")

    # a district whose teams near the place are all busy still waits for one to be free
    first = await report(publisher, "noise", priority="P4")
    await orders_once(clean_redis, first, 1, "the guard's order")
    second = await report(publisher, "noise", priority="P4")
    assert (await unassigned_entry(console, second))["detail_code"] == "no_team"


async def test_a_district_no_team_of_which_has_a_fix_yet_waits_without_doubting_the_place(
        console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A roster just imported, no phone yet on shift sharing its position: every incident
    of the first morning was told "is the location right?" for places that were right.
    With no team of the district placed anywhere, nothing says the place is wrong."""
    incident_id = await reported_at(publisher, Location(lat=22.8171, lon=108.3665))
    assert (await unassigned_entry(console, incident_id))["detail_code"] == "no_team"
