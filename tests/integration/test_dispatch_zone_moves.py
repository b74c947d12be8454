"""What a roster import that gives a zone to another police station does to the live orders
of a category sent to its zone's own station only (a fraud warning: DESIGN's "police:station
(the zone's)"), against a real Redis, volunteers serving its zones over HTTP and dispatch
reading them: the station team of the old owner on its way is taken off as a team moved to
another station is, the timeline saying why, and the new owner's team offered; at the scene
it goes on. A team moved together with its ground stays on. And a hand-over waiting for a
station when no station owns its place any more."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app as create_dispatch
from services.dispatch.zones import ZoneProjection
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as create_volunteers
from shared.events import OrderIssued
from shared.policy import load_policy
from shared.tokens import service_key
from tests.helpers import poll_until
from tests.integration.notify.conftest import serving
from tests.integration.volunteers.conftest import ADMIN

from .dispatch.conftest import settings_for
from .dispatch.test_engine import DISTRICT, orders_for, report, wait_for_units
from .dispatch.test_followup import incident_fields, kinds_and_details
from .dispatch.test_followup_stuck import make_due
from .dispatch.test_station_orders_of_a_removed_team import timer_due, withdrawn
from .dispatch.test_take_back import respond
from .test_zone_ownership import (
    ADMIN_TOKEN,
    LAT,
    LON,
    STATION_GONE,
    import_roster,
    noise_handed_over_by_the_guard,
    on_shift_at,
    orders_of_kind,
    owned_in_dispatch,
    square,
    station_notes,
    the_ground_given_to_the_new_station,
    zone,
)
from .test_zone_ownership import roster as guards_roster
from .test_zone_ownership import volunteers_and_dispatch as guards_volunteers_and_dispatch

TERRITORY = square(LAT, 108.3665, 0.02)


def roster(*, owner: str, old_car_of: str = "ps-old") -> dict[str, Any]:
    """Two police stations (ps-old, ps-new) and a residents' patrol: z-1 over the scene owned
    by `owner`; a car of each station (the old one's of `old_car_of`) and the patrol."""
    return {
        "district": DISTRICT,
        "agencies": [
            {"id": "ps-old", "name": "Old Station", "kind": "police", "role": "station"},
            {"id": "ps-new", "name": "New Station", "kind": "police", "role": "station"},
            {"id": "residents", "name": "Red armbands", "kind": "volunteer"},
        ],
        "zones": [zone("z-1", owner, TERRITORY)],
        "teams": [
            {"id": "t-old", "agency_id": old_car_of, "name": "Old car", "mode": "car"},
            {"id": "t-new", "agency_id": "ps-new", "name": "New car", "mode": "car"},
            {"id": "t-vol", "agency_id": "residents", "name": "Aunties", "mode": "foot"},
        ],
        "members": [
            {"id": "m-old", "name": "Officer Li", "agency_id": old_car_of, "team_id": "t-old",
             "role": "officer"},
            {"id": "m-new", "name": "Officer Wu", "agency_id": "ps-new", "team_id": "t-new",
             "role": "officer"},
            {"id": "m-vol", "name": "Auntie Zhou", "agency_id": "residents", "team_id": "t-vol",
             "role": "volunteer"},
        ],
    }


@contextlib.asynccontextmanager
async def volunteers_and_dispatch(
        url: str, *, zones_refresh_s: float = 0.2, rezoned_grace_s: float = 0.2,
        ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Volunteers served on a port and dispatch in this process, reading its zones again
    every `zones_refresh_s` and judging the orders of a zone given to another station
    `rezoned_grace_s` after; a client on each."""
    async with volunteers_serving(url) as (client, volunteers_url), dispatch_running(
            url, volunteers_url, zones_refresh_s=zones_refresh_s,
            rezoned_grace_s=rezoned_grace_s) as console:
        yield client, console


@contextlib.asynccontextmanager
async def volunteers_serving(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """Volunteers served on a port: a client on it, and its address."""
    volunteers = create_volunteers(VolunteersSettings(
        redis_url=url, admin_token=ADMIN_TOKEN, position_publish_interval_ms=0,
        consumer_name="volunteers-zone-moves"))
    async with serving(volunteers) as volunteers_url, \
            httpx.AsyncClient(base_url=volunteers_url, timeout=10) as client:
        yield client, volunteers_url


@contextlib.asynccontextmanager
async def dispatch_running(url: str, volunteers_url: str, *, zones_refresh_s: float = 0.2,
                           rezoned_grace_s: float = 0.2, claim_idle_ms: int = 500,
                           ) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch in this process, reading its zones from `volunteers_url`: its console."""
    dispatch = create_dispatch(DispatchSettings(
        redis_url=url, admin_token=ADMIN_TOKEN, volunteers_url=volunteers_url,
        claim_idle_ms=claim_idle_ms, timer_interval_s=0.05, zones_refresh_s=zones_refresh_s,
        rezoned_grace_s=rezoned_grace_s))
    transport = httpx.ASGITransport(app=dispatch)
    async with dispatch.router.lifespan_context(dispatch), httpx.AsyncClient(
            transport=transport, base_url="http://dispatch", headers=ADMIN) as console:
        yield console


async def a_fraud_warning(url: str, client: httpx.AsyncClient, publisher: RedisBroker
                          ) -> tuple[str, OrderIssued]:
    """The three teams on shift (the old station's car the nearest of the cars), and a fraud
    warning in z-1: its id and the old station's order (the aunties have the other)."""
    r = await import_roster(client, roster(owner="ps-old"))
    assert r.status_code == 200, r.text
    await on_shift_at(client, "m-vol", LAT + 0.0005)
    await on_shift_at(client, "m-old", LAT + 0.001)
    await on_shift_at(client, "m-new", LAT + 0.01)
    await wait_for_units(url, 3)
    incident_id = await report(publisher, "fraud_warning", priority="P4")
    sent = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2
                            and orders_for(url, incident_id), "the station's car and the aunties")
    assert sorted(o.team_id for o in sent) == ["t-old", "t-vol"]
    return incident_id, next(o for o in sent if o.team_id == "t-old")


ZONE_MOVED = ("withdrawn", "zone z-1 is now a zone of ps-new: fraud_warning goes to its "
                           "zone's own station: Old car of ps-old taken off", None)


async def test_a_zone_given_to_another_station_takes_the_old_stations_car_off_its_fraud_warning(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The import gives z-1 to the new station: the old station's car on its way to warn the
    # residents is not the zone's station's any more. No status of the car comes (it did not
    # move), and nothing judged its order: the old station warned the new one's residents,
    # whom the new station visits a week later without knowing them.
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        await respond(publisher, old, "acknowledged")
        r = await import_roster(client, roster(owner="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: withdrawn(clean_redis, old.order_id), "the old car taken off",
                         20)
        third = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 3
                                 and orders_for(clean_redis, incident_id)[2],
                                 "the new station's car")
    assert (third.team_id, third.kind) == ("t-new", "dispatch")
    assert ZONE_MOVED in kinds_and_details(clean_redis, incident_id)
    assert withdrawn(clean_redis, next(o.order_id for o in orders_for(clean_redis, incident_id)
                                       if o.team_id == "t-vol")) == []  # the aunties go on
    assert incident_fields(clean_redis, incident_id)["flagged"] == "0"


async def test_a_zone_given_to_another_station_while_dispatch_was_down_is_judged_at_its_start(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Dispatch stopped (a deploy, a crash) while its fraud warning's car of the old station
    # held the order; the import gave z-1 to the new station meanwhile. Back, dispatch read
    # a district's zones only when an incident or the console map first wanted them: on a
    # quiet night none came for hours, and the old station's car went on warning the new
    # station's residents. Its districts with live orders are read at start.
    async with volunteers_serving(clean_redis) as (client, volunteers_url):
        async with dispatch_running(clean_redis, volunteers_url):
            incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
            await respond(publisher, old, "acknowledged")
            await poll_until(lambda: _order_state(clean_redis, old.order_id) == "acknowledged",
                             "the car's acknowledgement read")
        r = await import_roster(client, roster(owner="ps-new"))
        assert r.status_code == 200, r.text
        async with dispatch_running(clean_redis, volunteers_url):  # no incident comes
            await poll_until(lambda: withdrawn(clean_redis, old.order_id),
                             "the old car taken off", 20)
            third = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 3
                                     and orders_for(clean_redis, incident_id)[2],
                                     "the new station's car")
    assert (third.team_id, third.kind) == ("t-new", "dispatch")
    assert ZONE_MOVED in kinds_and_details(clean_redis, incident_id)


def _order_state(url: str, order_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(f"dispatch:order:{order_id}", "state")
    finally:
        client.close()


async def test_a_station_car_at_the_scene_goes_on_when_its_zone_is_given_to_another_station(
        clean_redis: str, publisher: RedisBroker) -> None:
    # At the scene, warning the residents: the same people are there; the new station
    # follows up. Nothing is taken off, as for a car moved to another station at the scene.
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        await respond(publisher, old, "acknowledged", "on_scene")
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("status")
                         == "on_scene", "the car at the scene")
        r = await import_roster(client, roster(owner="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-new"}),
                         "dispatch's zones read again")
        # judged against the zones read (the order marked with what it was judged as)
        await poll_until(lambda: _judged_agency(clean_redis, old.order_id) == "ps-old",
                         "the car's order judged", 20)
    assert withdrawn(clean_redis, old.order_id) == []
    assert len(orders_for(clean_redis, incident_id)) == 2


def _judged_agency(url: str, order_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(f"dispatch:order:{order_id}", "judged_agency")
    finally:
        client.close()


async def test_a_station_car_moved_with_its_ground_to_another_station_stays_on_its_warning(
        clean_redis: str, publisher: RedisBroker) -> None:
    # One import gives z-1 and the old station's car to the new station (the car goes with
    # its ground). The car's new status is read before dispatch reads the zones again: it
    # was judged against the zones as they were, as another station's car, and taken off,
    # the warning offered to the old station, which owns the ground no more.
    async with volunteers_and_dispatch(clean_redis, zones_refresh_s=3600) as (client, console):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        r = await import_roster(client, roster(owner="ps-new", old_car_of="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: _agency_of(clean_redis, "t-old") == "ps-new",
                         "the car's move read")
        await poll_until(lambda: _judged_agency(clean_redis, old.order_id) == "ps-new",
                         "the car's order judged", 20)
    assert withdrawn(clean_redis, old.order_id) == []
    assert len(orders_for(clean_redis, incident_id)) == 2


def _agency_of(url: str, team_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(f"dispatch:unit:{team_id}", "agency_id")
    finally:
        client.close()


async def test_a_station_car_whose_move_is_read_after_its_new_zones_stays_on_its_warning(
        clean_redis: str, publisher: RedisBroker) -> None:
    # One import gives z-1 and the old station's car to the new station; volunteers writes
    # the import's zones before its teams and publishes the car's status after, so that
    # dispatch's refresh may read the new zones first. The car's order was judged at once,
    # against the car as dispatch still held it, the old station's: taken off, though it goes
    # with its ground, and the warning offered again. A fraud warning waits for the status.
    async with volunteers_and_dispatch(clean_redis, rezoned_grace_s=600) as (client, console):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        # the import's zones, read by dispatch before its teams are
        r = await import_roster(client, roster(owner="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: _rezoned(clean_redis, old.order_id)
                         or withdrawn(clean_redis, old.order_id), "the new zones read", 20)
        # the car's status, published after them
        r = await import_roster(client, roster(owner="ps-new", old_car_of="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: _agency_of(clean_redis, "t-old") == "ps-new",
                         "the car's move read")
        _rezoned_due_now(clean_redis, old.order_id)  # the grace over
        await poll_until(lambda: not _rezoned(clean_redis, old.order_id), "the order judged",
                         20)
    assert withdrawn(clean_redis, old.order_id) == []
    assert len(orders_for(clean_redis, incident_id)) == 2
    assert _judged_agency(clean_redis, old.order_id) == "ps-new"


async def test_a_station_car_whose_move_dispatch_has_not_handled_yet_stays_on_its_warning(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Dispatch is behind on unit.status (back after an outage, a backlog): the grace is over
    # and the status moving the car with its ground still waits in its group (here held by a
    # consumer that died, until it is reclaimed). The car was judged as dispatch still held
    # it, the old station's, and taken off.
    async with volunteers_serving(clean_redis) as (client, volunteers_url):
        async with dispatch_running(clean_redis, volunteers_url, rezoned_grace_s=600):
            incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
            r = await import_roster(client, roster(owner="ps-new"))
            assert r.status_code == 200, r.text
            await poll_until(lambda: _rezoned(clean_redis, old.order_id), "the new zones read",
                             20)
        r = await import_roster(client, roster(owner="ps-new", old_car_of="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: _held_by_a_dead_consumer(clean_redis, "t-old", "ps-new"),
                         "the car's move taken by a consumer that dies")
        _rezoned_due_now(clean_redis, old.order_id)  # the grace over while dispatch was away
        async with dispatch_running(clean_redis, volunteers_url, rezoned_grace_s=600,
                                    claim_idle_ms=5000):
            await poll_until(lambda: not _rezoned(clean_redis, old.order_id)
                             and _agency_of(clean_redis, "t-old") == "ps-new",
                             "the car's move read and its order judged", 30)
    assert withdrawn(clean_redis, old.order_id) == []
    assert len(orders_for(clean_redis, incident_id)) == 2
    assert _judged_agency(clean_redis, old.order_id) == "ps-new"


def _held_by_a_dead_consumer(url: str, team_id: str, agency_id: str) -> bool:
    """Whether a consumer of dispatch's group that never acknowledges has read the team's
    status of `agency_id` (reading every unit.status not read yet)."""
    client = sync_redis.Redis.from_url(url)
    try:
        read = client.xreadgroup("dispatch", "dead", {"unit.status": ">"}, count=100) or []
        return any(team_id.encode() in value and agency_id.encode() in value
                   for _, entries in read for _, fields in entries
                   for value in fields.values())
    finally:
        client.close()


def _rezoned(url: str, order_id: str) -> bool:
    """Whether the order's `rezoned` timer is set."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.zscore("dispatch:timers", f"rezoned:{order_id}") is not None
    finally:
        client.close()


def _rezoned_due_now(url: str, order_id: str) -> None:
    """The order's `rezoned` timer, if set, due now."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.zadd("dispatch:timers", {f"rezoned:{order_id}": time.time()}, xx=True)
    finally:
        client.close()


async def test_the_by_hand_list_warns_of_the_old_station_once_its_zone_is_another_stations(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The engine sends a fraud warning to the station owning its zone now; the list of teams
    # the command room may send by hand read the station stored at the report: the old
    # station's car came without a warning, as the zone's own station's would.
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        r = await import_roster(client, roster(owner="ps-new"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: withdrawn(clean_redis, old.order_id), "the old car taken off",
                         20)
        await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 3,
                         "the new station's car")
        r = await console.get(f"/v1/incidents/{incident_id}/teams")
        assert r.status_code == 200, r.text
    assert [(t["team_id"], t["warnings"]) for t in r.json()["teams"]] == [
        ("t-old", ["other_station"])]


async def test_a_hand_over_whose_station_had_it_says_again_when_no_station_owns_the_place(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A noise outside every zone, handed over by the guard: noted once that no station owns
    # the place. The ground given to the new station, its car got the case (the timeline
    # says so); the car declined it, and the ground was taken away again (the zone deleted):
    # the retry found no station owning the place, and the timeline said nothing of it, its
    # last word the new station's refusal (the mark of the first note was never cleared).
    territory = square(LAT, LON, 0.02)
    async with guards_volunteers_and_dispatch(clean_redis) as (client, console):
        r = await import_roster(client, guards_roster(zones=[
            zone("z-1", "ps-old", square(LAT, LON + 0.05, 0.02))]))
        assert r.status_code == 200, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-old"}),
                         "dispatch holding the zones, none over the scene")
        incident_id = await noise_handed_over_by_the_guard(clean_redis, client, publisher)
        assert station_notes(clean_redis, incident_id) == [STATION_GONE]
        await the_ground_given_to_the_new_station(
            clean_redis, client, console, incident_id, territory,
            {"z-1": "ps-old", "z-2": "ps-new"})
        (station,) = orders_of_kind(clean_redis, incident_id, "handover")
        await respond(publisher, station, "declined")
        timer = f"handover:{incident_id}"
        await poll_until(lambda: incident_fields(clean_redis, incident_id)["flagged"] == "1",
                         "the refusal flagged")
        r = await client.delete("/v1/zones/z-2", headers=ADMIN)
        assert r.status_code == 204, r.text
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-old"}),
                         "dispatch's zones read again, without the removed one")
        make_due(clean_redis, timer)
        await poll_until(lambda: (timer_due(clean_redis, timer) or 0) > time.time() + 14 * 60,
                         "the hand-over tried again in 15 min", 20)
    assert station_notes(clean_redis, incident_id) == [STATION_GONE, STATION_GONE]
    assert incident_fields(clean_redis, incident_id)["flagged"] == "1"


async def test_a_zone_given_back_to_the_old_station_offers_its_car_the_warning_again(
        clean_redis: str, publisher: RedisBroker) -> None:
    # One import gives z-1 to the new station (the old station's car taken off, the new
    # one's offered the warning), the next gives it back: the new station's car is taken
    # off. The old station's car, free and the owner's again, was never offered the warning
    # again (a team once on the incident is never offered it again, as one that declined
    # it): the incident waited, flagged, its station's car free. Dispatch took the car off
    # itself, for a reason that holds no more: it is offered the warning again.
    async with volunteers_and_dispatch(clean_redis) as (client, console):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        r = await import_roster(client, roster(owner="ps-new"))
        assert r.status_code == 200, r.text
        new = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 3
                               and orders_for(clean_redis, incident_id)[2],
                               "the new station's car", 20)
        assert new.team_id == "t-new"
        r = await import_roster(client, roster(owner="ps-old"))
        assert r.status_code == 200, r.text
        await poll_until(lambda: withdrawn(clean_redis, new.order_id), "the new car taken off",
                         20)
        again = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 4
                                 and orders_for(clean_redis, incident_id)[3],
                                 "the old station's car offered the warning again", 20)
    assert (again.team_id, again.kind) == ("t-old", "dispatch")
    assert len(withdrawn(clean_redis, old.order_id)) == 1
    assert incident_fields(clean_redis, incident_id)["flagged"] == "0"


@contextlib.asynccontextmanager
async def a_replica(url: str, volunteers_url: str, *, refresh_s: float = 3600,
                    **settings: object) -> AsyncIterator[Dispatcher]:
    """Another replica's engine (nothing of it runs on its own): its zones read when it is
    first asked, and not again (by keep_fresh, if the test runs it: every `refresh_s`)."""
    async with contextlib.AsyncExitStack() as stack:
        client = Redis.from_url(url, decode_responses=True)
        stack.push_async_callback(client.aclose)
        broker = RedisBroker(url)
        await broker.connect()
        stack.push_async_callback(broker.stop)
        http = await stack.enter_async_context(httpx.AsyncClient())
        zones = ZoneProjection(http=http, volunteers_url=volunteers_url,
                               key=service_key(ADMIN_TOKEN), timeout_s=5,
                               refresh_s=refresh_s)
        engine = Dispatcher(redis=client, broker=broker, policy=load_policy(),
                            settings=settings_for(url, **settings), zones=zones)
        stack.push_async_callback(engine.locks.close)
        yield engine


async def test_a_replica_whose_zones_are_older_than_a_take_off_does_not_offer_the_car_again(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Another replica read the zones before the import that gave z-1 to the new station
    # (up to ZONES_REFRESH_S behind): by them the old station's car, taken off and free,
    # may have the warning. Offered it, it would be taken off again once they are read.
    async with volunteers_serving(clean_redis) as (client, volunteers_url), dispatch_running(
            clean_redis, volunteers_url):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        async with a_replica(clean_redis, volunteers_url) as behind:
            assert await behind.zones.lookup(DISTRICT, lat=LAT, lon=108.3665) is not None
            r = await import_roster(client, roster(owner="ps-new"))
            assert r.status_code == 200, r.text
            new = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 3
                                   and orders_for(clean_redis, incident_id)[2],
                                   "the new station's car", 20)
            await respond(publisher, new, "declined")
            await poll_until(lambda: _order_state(clean_redis, new.order_id) == "declined",
                             "the new station's car declined")
            async with behind.locks.hold(incident_id):
                await behind._fill(incident_id)
    assert [o.team_id for o in orders_for(clean_redis, incident_id)] == [
        "t-old", "t-vol", "t-new"]


async def test_a_replica_whose_zones_are_older_than_the_import_judges_a_rezoned_car_by_new_ones(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The replica that read the zone change set the car's rezoned timer; another, whose
    # zones were read before the import (up to ZONES_REFRESH_S behind), takes it when due.
    # By its zones the zone is still the car's station's: it kept the car on and the timer
    # was spent, the car judged again only when that replica's own refresh saw the change.
    async with volunteers_serving(clean_redis) as (client, volunteers_url), dispatch_running(
            clean_redis, volunteers_url, rezoned_grace_s=600):
        incident_id, old = await a_fraud_warning(clean_redis, client, publisher)
        await respond(publisher, old, "acknowledged")
        async with a_replica(clean_redis, volunteers_url) as behind:
            assert await behind.zones.lookup(DISTRICT, lat=LAT, lon=108.3665) is not None
            r = await import_roster(client, roster(owner="ps-new"))
            assert r.status_code == 200, r.text
            await poll_until(lambda: timer_due(clean_redis, f"rezoned:{old.order_id}"),
                             "the rezoned timer set by the replica that read the change", 20)
            await behind.on_moved_team_order_due(old.order_id, timer="rezoned")
        assert withdrawn(clean_redis, old.order_id) != []
        assert ZONE_MOVED in kinds_and_details(clean_redis, incident_id)


async def test_a_fraud_warning_offered_by_old_zones_just_after_the_change_was_judged_is_judged(
        clean_redis: str, publisher: RedisBroker) -> None:
    # A replica whose zones are older than the import (up to ZONES_REFRESH_S behind, or
    # this one mid-search) offers the old station's car a fraud warning just after the
    # replica that read the change judged the live orders: the change was judged once, and
    # the car's order never (no status of the car comes, the zones do not change again). A
    # change is judged once more at the next round.
    async with volunteers_serving(clean_redis) as (client, volunteers_url), dispatch_running(
            clean_redis, volunteers_url, zones_refresh_s=3600) as console:
        r = await import_roster(client, roster(owner="ps-old"))
        assert r.status_code == 200, r.text
        await on_shift_at(client, "m-vol", LAT + 0.0005)
        await on_shift_at(client, "m-old", LAT + 0.001)
        await on_shift_at(client, "m-new", LAT + 0.01)
        await wait_for_units(clean_redis, 3)
        # this process's dispatch is the replica behind: its zones read before the import
        await poll_until(lambda: owned_in_dispatch(console, {"z-1": "ps-old"}),
                         "dispatch holding the zones before the import")
        async with a_replica(clean_redis, volunteers_url, refresh_s=0.1,
                             rezoned_grace_s=0.2) as reading:
            assert await reading.zones.lookup(DISTRICT, lat=LAT, lon=108.3665) is not None
            judged, offered = asyncio.Event(), asyncio.Event()

            async def on_changed(district: str) -> int:
                timers = await reading.on_zones_changed(district)
                zone = await reading.zones.lookup(district, lat=LAT, lon=108.3665)
                if zone is not None and zone.owner_agency_id == "ps-new" and not judged.is_set():
                    judged.set()  # the live orders looked at: the offer is written now
                    await offered.wait()
                return timers

            stop = asyncio.Event()
            refreshing = asyncio.create_task(reading.zones.keep_fresh(stop, on_changed=on_changed))
            try:
                r = await import_roster(client, roster(owner="ps-new"))
                assert r.status_code == 200, r.text
                await asyncio.wait_for(judged.wait(), timeout=20)
                incident_id = await report(publisher, "fraud_warning", priority="P4")
                sent = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 2
                                        and orders_for(clean_redis, incident_id),
                                        "the old station's car and the aunties")
                assert sorted(o.team_id for o in sent) == ["t-old", "t-vol"]
                old = next(o for o in sent if o.team_id == "t-old")
                offered.set()
                await poll_until(lambda: withdrawn(clean_redis, old.order_id),
                                 "the old car taken off", 20)
                third = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 3
                                         and orders_for(clean_redis, incident_id)[2],
                                         "the new station's car")
            finally:
                stop.set()
                offered.set()
                await asyncio.wait_for(refreshing, timeout=10)
    assert (third.team_id, third.kind) == ("t-new", "dispatch")
    assert ZONE_MOVED in kinds_and_details(clean_redis, incident_id)
