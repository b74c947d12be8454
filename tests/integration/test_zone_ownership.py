"""Who owns a place, against a real Redis: volunteers' roster import refusing zones that
would send an incident to the wrong station or to none (a zone no report can fall in, two
stations claiming the same ground), and dispatch handing over to the station that owns the
place at the hand-over, after a re-import or a zone's removal."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from faststream.redis import RedisBroker

from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.main import create_app as create_dispatch
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as create_volunteers
from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until
from tests.integration.notify.conftest import serving
from tests.integration.volunteers.conftest import ADMIN, running

from .dispatch.test_engine import DISTRICT, SCENE, orders_for, report, wait_for_units
from .dispatch.test_followup import incident_fields, kinds_and_details
from .dispatch.test_followup_stuck import make_due
from .dispatch.test_station_orders_of_a_removed_team import timer_due
from .dispatch.test_take_back import respond

LAT, LON = SCENE.lat, SCENE.lon


def square(lat: float, lon: float, half: float) -> list[list[float]]:
    """A closed [lon, lat] ring around (lat, lon)."""
    return [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half], [lon - half, lat - half]]


def roster(*, zones: list[dict[str, Any]], old_role: str = "station") -> dict[str, Any]:
    """Two police stations (ps-old, ps-new), a security company; a team and an officer or
    guard each."""
    return {
        "district": DISTRICT,
        "agencies": [
            {"id": "ps-old", "name": "Old Station", "kind": "police", "role": old_role},
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
    # Re-cutting territory under a new id, the old zone neither re-cut nor removed, left it
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


async def test_a_removed_zone_claims_no_ground_in_later_imports(clean_redis: str) -> None:
    # A zone drawn by mistake over another station's ground: once removed, the block is
    # drawn again for the station that owns it, and the lookup gives it to that station.
    block = square(LAT, LON, 0.01)
    async with running(clean_redis) as volunteers:
        r = await import_roster(volunteers.client, roster(zones=[zone("z-a", "ps-old", block)]))
        assert r.status_code == 200, r.text
        r = await volunteers.client.delete("/v1/zones/z-a", headers=ADMIN)
        assert r.status_code == 204, r.text
        r = await import_roster(volunteers.client, {"district": DISTRICT, "zones": [
            zone("z-b", "ps-new", block)]})
        assert r.status_code == 200, r.text
        lookup = await volunteers.client.get("/v1/zones/lookup", headers=ADMIN, params={
            "district": DISTRICT, "lat": LAT, "lon": LON})
        assert (lookup.json()["zone_id"], lookup.json()["owner_agency_id"]) == ("z-b", "ps-new")


# --- dispatch and a re-import ---------------------------------------------------------------

ADMIN_TOKEN = ADMIN["Authorization"].removeprefix("Bearer ")


@contextlib.asynccontextmanager
async def volunteers_and_dispatch(
        url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Volunteers served on a port (dispatch reads its zones over HTTP) and dispatch in this
    process, reading them again every 0.2 s; a client on each."""
    volunteers = create_volunteers(VolunteersSettings(
        redis_url=url, admin_token=ADMIN_TOKEN, position_publish_interval_ms=0,
        consumer_name="volunteers-zones"))
    async with serving(volunteers) as volunteers_url, \
            httpx.AsyncClient(base_url=volunteers_url, timeout=10) as client:
        dispatch = create_dispatch(DispatchSettings(
            redis_url=url, admin_token=ADMIN_TOKEN, volunteers_url=volunteers_url,
            claim_idle_ms=500, timer_interval_s=0.05, zones_refresh_s=0.2))
        transport = httpx.ASGITransport(app=dispatch)
        async with dispatch.router.lifespan_context(dispatch), httpx.AsyncClient(
                transport=transport, base_url="http://dispatch", headers=ADMIN) as console:
            yield client, console


async def on_shift_at(client: httpx.AsyncClient, member_id: str, lat: float) -> None:
    """The member's phone enrolled, their shift started and their team placed at `lat`."""
    r = await client.post(f"/v1/members/{member_id}/devices", headers=ADMIN)
    assert r.status_code == 201, r.text
    phone = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.post("/v1/me/shift/start", headers=phone)
    assert r.status_code == 200, r.text
    r = await client.put("/v1/me/position", headers=phone, json={"lat": lat, "lon": LON})
    assert r.status_code in (200, 202, 204), r.text


def station_of(url: str, incident_id: str) -> str:
    return incident_fields(url, incident_id).get("station_agency_id", "")


async def owned_in_dispatch(console: httpx.AsyncClient, owners: dict[str, str]) -> bool:
    """Whether dispatch knows the zones' owners as `owners` (its command room's map)."""
    r = await console.get("/v1/zones", params={"district": DISTRICT})
    return r.status_code == 200 and {
        z["zone_id"]: z["station_agency_id"] for z in r.json()["zones"]} == owners


def orders_of_kind(url: str, incident_id: str, kind: str) -> list[OrderIssued]:
    return [o for o in orders_for(url, incident_id) if o.kind == kind]


async def noise_with_both_stations_cars(url: str, client: httpx.AsyncClient,
                                        publisher: RedisBroker) -> tuple[str, OrderIssued]:
    """The guard, the old station's car and the new one's on shift (the old one nearer the
    scene than the new), and a noise near the guard: its id and the guard's order."""
    await on_shift_at(client, "m-guard", LAT + 0.0001)
    await on_shift_at(client, "m-old", LAT + 0.01)
    await on_shift_at(client, "m-new", LAT + 0.012)
    await wait_for_units(url, 3)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    assert order.team_id == "t-guard"
    return incident_id, order


async def test_a_handover_goes_to_the_station_that_owns_the_zone_at_the_handover(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The hand-over went to the station stored when the incident was reported, though an
    # import had since given the zone to another and made the old one a street patrol.
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[zone("z-1", "ps-old", territory)]))
        assert r.status_code == 200, r.text
        incident_id, order = await noise_with_both_stations_cars(clean_redis, client,
                                                                  publisher)
        assert station_of(clean_redis, incident_id) == "ps-old"

        # The old station becomes a street patrol station; its territory goes to the new one.
        r = await import_roster(client, roster(zones=[zone("z-1", "ps-new", territory)],
                                               old_role="patrol"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-new"}),
                         "dispatch's zones read again")

        for response in ("acknowledged", "handover"):
            await publisher.publish(OrderResponded(
                district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
                team_id="t-guard", member_id="m-guard", response=response),
                stream=streams.ORDER_RESPONDED.name)
        orders = await poll_until(lambda: orders_of_kind(clean_redis, incident_id, "handover"),
                                  "the hand-over order")
    assert [o.team_id for o in orders] == ["t-new"]  # not the patrol station's car


async def test_a_fraud_warning_waiting_for_a_team_goes_to_the_station_that_owns_the_zone_now(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A fraud warning (the zone's own station only) waits with nobody on shift; an import
    # meanwhile gives the zone to another station. When both stations' cars come on shift,
    # the old station's nearer one must not get it: the place is the new station's now, as
    # for a hand-over.
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[zone("z-1", "ps-old", territory)]))
        assert r.status_code == 200, r.text
        incident_id = await report(publisher, "fraud_warning", priority="P4")
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("status")
                         == "unassigned", "the warning waiting for a team")
        assert station_of(clean_redis, incident_id) == "ps-old"

        r = await import_roster(client, roster(zones=[zone("z-1", "ps-new", territory)]))
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-new"}),
                         "dispatch's zones read again")
        await on_shift_at(client, "m-old", LAT + 0.001)
        await wait_for_units(clean_redis, 1)
        await on_shift_at(client, "m-new", LAT + 0.01)
        orders = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                  "the warning's order")
    assert [o.team_id for o in orders] == ["t-new"]


async def test_a_handover_after_a_zone_was_removed_does_not_go_to_its_old_station(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A zone drawn by mistake for the old station over the new one's ground is removed and
    # drawn again for the new one (same polygon: were the old one kept, the zone ids' order
    # would give the place to it). Dispatch, reading the zones again, drops it: the guard's
    # hand-over goes to the new station, not to the old station's nearer car.
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[zone("z-1", "ps-old", territory)]))
        assert r.status_code == 200, r.text
        incident_id, order = await noise_with_both_stations_cars(clean_redis, client,
                                                                  publisher)
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-old"}),
                         "dispatch holding the zone")

        r = await client.delete("/v1/zones/z-1", headers=ADMIN)
        assert r.status_code == 204, r.text
        r = await import_roster(client, {"district": DISTRICT, "zones": [
            zone("z-2", "ps-new", territory)]})
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-2": "ps-new"}),
                         "dispatch's zones read again, without the removed one")

        for response in ("acknowledged", "handover"):
            await publisher.publish(OrderResponded(
                district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
                team_id="t-guard", member_id="m-guard", response=response),
                stream=streams.ORDER_RESPONDED.name)
        orders = await poll_until(lambda: orders_of_kind(clean_redis, incident_id, "handover"),
                                  "the hand-over order")
    assert [o.team_id for o in orders] == ["t-new"]


async def test_a_follow_up_due_after_its_stations_zone_was_removed_is_flagged_not_dropped(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A dispute in the old station's zone, handed over and filed by its car; a week on, its
    # follow-up visit is due, but the zone (drawn by mistake, or ground given up) has been
    # removed and no zone holds the place. The visit the case still owes was dropped with a
    # note on a filed case nobody looks at: the command room is told, as of a visit no team
    # of the station could be given, and it is looked for again (a station given the ground
    # then gets it).
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[zone("z-1", "ps-old", territory)]))
        assert r.status_code == 200, r.text
        await on_shift_at(client, "m-guard", LAT + 0.0001)
        await on_shift_at(client, "m-old", LAT + 0.01)
        await wait_for_units(clean_redis, 2)
        incident_id = await report(publisher, "dispute", priority="P3")
        (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                    "the guard's order")
        await respond(publisher, order, "acknowledged", "handover")
        (station,) = await poll_until(
            lambda: orders_of_kind(clean_redis, incident_id, "handover"), "the station's order",
            30)
        assert station.team_id == "t-old"
        await respond(publisher, station, "acknowledged", "resolved")
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("status")
                         == "resolved", "the case filed")
        assert timer_due(clean_redis, f"followup:{incident_id}") is not None

        r = await client.delete("/v1/zones/z-1", headers=ADMIN)
        assert r.status_code == 204, r.text
        await poll_until(lambda: owned_in_dispatch(console, {}),
                         "dispatch's zones read again, without the removed one")
        make_due(clean_redis, f"followup:{incident_id}")
        await poll_until(lambda: (timer_due(clean_redis, f"followup:{incident_id}") or 0)
                         > time.time() + 59 * 60, "the visit looked for again in an hour", 20)
    assert incident_fields(clean_redis, incident_id)["flagged"] == "1"
    assert not orders_of_kind(clean_redis, incident_id, "followup")
    assert [d for k, d, _ in kinds_and_details(clean_redis, incident_id)
            if d.startswith("follow-up visit due:")] == [  # come due (not "due by": planned)
        "follow-up visit due: no police station owns the place any more (its zone was removed "
        "or re-cut); ordered again in an hour until one does, or the case is closed"]


async def noise_handed_over_by_the_guard(url: str, client: httpx.AsyncClient,
                                        publisher: RedisBroker, *, category: str = "noise",
                                        priority: str = "P4") -> str:
    """A noise (or `category`) near the guard, handed over by the guard with no station's
    car to take it: the incident's id once the hand-over waits for one (flagged, its retry
    timer set)."""
    await on_shift_at(client, "m-guard", LAT + 0.0001)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, category, priority=priority)
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    await respond(publisher, order, "acknowledged", "handover")
    await poll_until(lambda: timer_due(url, f"handover:{incident_id}") is not None,
                     "the hand-over waiting for a car of a station, tried again")
    assert incident_fields(url, incident_id)["flagged"] == "1"
    return incident_id


async def the_ground_given_to_the_new_station(
        url: str, client: httpx.AsyncClient, console: httpx.AsyncClient, incident_id: str,
        territory: list[list[float]], owners: dict[str, str]) -> None:
    """An import draws zone z-2 over `territory` for the new station (dispatch then knows
    `owners`), one of its cars comes on shift, and the hand-over's next try gives that car
    the order; the board's flag goes with it."""
    r = await import_roster(client, {"district": DISTRICT, "zones": [
        zone("z-2", "ps-new", territory)]})
    assert r.status_code == 200, r.text
    await poll_until(lambda: owned_in_dispatch(console, owners),
                     "dispatch's zones read again, with the new one")
    await on_shift_at(client, "m-new", LAT + 0.01)
    await wait_for_units(url, 2)
    make_due(url, f"handover:{incident_id}")
    orders = await poll_until(lambda: orders_of_kind(url, incident_id, "handover"),
                              "the hand-over order", 20)
    assert [o.team_id for o in orders] == ["t-new"]
    await poll_until(lambda: incident_fields(url, incident_id)["flagged"] == "0",
                     "the flag gone with the order")


STATION_GONE = ("no police station owns the place now (its zone was removed or re-cut, or "
                "none holds it); the hand-over is tried again every 15 min until one does and "
                "has a team on shift")


def station_notes(url: str, incident_id: str) -> list[str]:
    return [d for k, d, _ in kinds_and_details(url, incident_id)
            if k == "note" and "police station" in d]


async def test_a_hand_over_waiting_for_a_station_whose_zone_was_removed_is_still_retried(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A noise in the old station's zone, handed over by the guard while none of the
    # station's cars is on shift: flagged, and tried again every 15 min, says its note. The
    # zone is removed meanwhile (drawn by mistake, or ground given up): the retry stopped
    # for good, its note untrue, and a station given the ground later never got the case.
    # It stays flagged, says once that no station owns the place, and is tried again.
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[zone("z-1", "ps-old", territory)]))
        assert r.status_code == 200, r.text
        incident_id = await noise_handed_over_by_the_guard(clean_redis, client, publisher)
        timer = f"handover:{incident_id}"

        r = await client.delete("/v1/zones/z-1", headers=ADMIN)
        assert r.status_code == 204, r.text
        await poll_until(lambda: owned_in_dispatch(console, {}),
                         "dispatch's zones read again, without the removed one")
        for _ in range(2):  # tried again twice: noted once
            make_due(clean_redis, timer)
            await poll_until(lambda: (timer_due(clean_redis, timer) or 0)
                             > time.time() + 14 * 60, "the hand-over tried again in 15 min", 20)
        assert incident_fields(clean_redis, incident_id)["flagged"] == "1"
        assert station_notes(clean_redis, incident_id) == [
            "no on-shift team of the owning police station found; tried again every 15 min "
            "until one is", STATION_GONE]

        # the ground given to the new station, one of its cars on shift: the next try
        await the_ground_given_to_the_new_station(clean_redis, client, console, incident_id,
                                                  territory, {"z-2": "ps-new"})


async def test_a_hand_over_of_a_place_no_station_owns_is_retried_until_a_station_is_given_it(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A noise just outside the district's zones (the old station's ground ends a street
    # away), handed over by the guard: no station owns the place. It was flagged with a
    # note and never tried again: the import that then draws a zone there for the new
    # station, one of whose cars is on shift, left the case with nobody. It is flagged, says
    # once that it is tried again every 15 min, and the next try after the import gives the
    # new station's car the order.
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[
            zone("z-1", "ps-old", square(LAT, LON + 0.05, 0.02))]))
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-old"}),
                         "dispatch holding the zones, none over the scene")
        incident_id = await noise_handed_over_by_the_guard(clean_redis, client, publisher)
        assert station_notes(clean_redis, incident_id) == [STATION_GONE]

        timer = f"handover:{incident_id}"
        make_due(clean_redis, timer)  # tried again with no station yet: noted once
        await poll_until(lambda: (timer_due(clean_redis, timer) or 0) > time.time() + 14 * 60,
                         "the hand-over tried again in 15 min", 20)
        assert incident_fields(clean_redis, incident_id)["flagged"] == "1"
        assert station_notes(clean_redis, incident_id) == [STATION_GONE]

        await the_ground_given_to_the_new_station(
            clean_redis, client, console, incident_id, territory,
            {"z-1": "ps-old", "z-2": "ps-new"})


async def test_a_dispute_handed_over_where_no_station_owns_the_place_keeps_its_follow_up(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A dispute outside every zone, handed over by the guard: tried again until a station
    # is given the ground. Its follow-up visit a week on was set only where a station owned
    # the place at the hand-over, so the station that took the case later never visited
    # (the mediated agreement never checked).
    territory = square(LAT, LON, 0.02)
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, roster(zones=[
            zone("z-1", "ps-old", square(LAT, LON + 0.05, 0.02))]))
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-old"}),
                         "dispatch holding the zones, none over the scene")
        incident_id = await noise_handed_over_by_the_guard(
            clean_redis, client, publisher, category="dispute", priority="P3")
        # Planned after the hand-over's own write (and its retry timer) in the same step.
        await poll_until(lambda: timer_due(clean_redis, f"followup:{incident_id}") is not None,
                         "the follow-up visit planned at the hand-over")
        await the_ground_given_to_the_new_station(
            clean_redis, client, console, incident_id, territory,
            {"z-1": "ps-old", "z-2": "ps-new"})
        (station,) = orders_of_kind(clean_redis, incident_id, "handover")
        await respond(publisher, station, "acknowledged", "resolved")
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("status")
                         == "resolved", "the case filed by the new station's car")
        make_due(clean_redis, f"followup:{incident_id}")
        (visit,) = await poll_until(
            lambda: orders_of_kind(clean_redis, incident_id, "followup"), "the visit", 20)
    assert visit.team_id == "t-new"
