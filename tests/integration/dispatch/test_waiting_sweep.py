"""The sweep of the waiting queues (WAITING_SWEEP_S, services/dispatch/waiting.py) against a
real Redis: an incident left waiting while a team is free in dispatch's view, with no event
to offer it, gets the team; a district whose waiting incidents no free team may answer runs
no search for them; two replicas sweeping at once give a team one order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import engine, store
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared.events import IncidentReported, UnitPosition, new_id, utcnow
from tests.helpers import poll_until

from .conftest import console_of, fail_once, settings_for
from .test_close import ADMIN, offered
from .test_engine import DISTRICT, SCENE, orders_for, orders_once, report

SWEEP_S = 0.1


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


def sweeping(url: str) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    """Dispatch in this process, sweeping every SWEEP_S, reached by its HTTP API."""
    return console_of(url, waiting_sweep_s=SWEEP_S)


async def free_in_view(redis: Redis, team_id: str, *, kind: str, lat: float) -> None:
    """The team available, on shift and placed in dispatch's projection, written there
    directly: no unit.status or unit.position event offers it to the waiting incidents."""
    now = utcnow()
    await store.save_unit_status(redis, at=now, fields={
        "team_id": team_id, "district": DISTRICT, "status": "available", "name": team_id,
        "agency_id": f"ag-{kind}", "agency_kind": kind, "agency_role": "", "mode": "car",
        "skills": "[]", "home_zone_id": "", "on_shift": "1"})
    await store.save_unit_position(redis, team_id=team_id, lat=lat, lon=SCENE.lon, at=now)


async def free_in_view_of(redis: Redis, district: str, team_id: str) -> None:
    """free_in_view, in `district`."""
    now = utcnow()
    await store.save_unit_status(redis, at=now, fields={
        "team_id": team_id, "district": district, "status": "available", "name": team_id,
        "agency_id": "ag-security", "agency_kind": "security", "agency_role": "",
        "mode": "car", "skills": "[]", "home_zone_id": "", "on_shift": "1"})
    await store.save_unit_position(redis, team_id=team_id, lat=22.8172, lon=SCENE.lon, at=now)


async def waiting(redis: Redis, *incident_ids: str) -> bool:
    scores = await redis.zmscore(f"dispatch:waiting:{DISTRICT}", list(incident_ids))
    return all(score is not None for score in scores)


async def test_a_waiting_incident_gets_a_team_free_in_dispatch_s_view_that_no_event_offered(
        clean_redis: str, publisher: RedisBroker, redis: Redis) -> None:
    # The team's status and fix were handled while the incident was not yet waiting, or
    # their offer failed; volunteers is away: no status or fix comes again to offer it.
    async with sweeping(clean_redis):
        incident_id = await report(publisher, "noise", priority="P4")
        await poll_until(lambda: waiting(redis, incident_id),
                         "the incident waiting: nobody is on shift")
        await free_in_view(redis, "guard", kind="security", lat=22.8172)
        (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                    "the incident given the free team by the sweep")
    assert order.team_id == "guard"


async def test_the_team_a_close_freed_goes_to_the_waiting_incident_though_its_offer_failed(
        clean_redis: str, publisher: RedisBroker, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The close is written, then Redis fails as its freed team is offered to the incidents
    # waiting: the command room's close asked again is a 409 (closed already), and
    # volunteers never said the team busy, so no `available` comes either.
    async with sweeping(clean_redis) as console:
        closing, _ = await offered(clean_redis, publisher)
        waiting_id = await report(publisher, "noise", priority="P4")
        await poll_until(lambda: waiting(redis, waiting_id),
                         "the second incident waiting: its only team is busy")
        failures = fail_once(monkeypatch, Dispatcher, "retry_waiting")
        r = await console.post(f"/v1/incidents/{closing}/close", headers=ADMIN)
        assert r.status_code == 503 and failures == ["failed"], r.text
        again = await console.post(f"/v1/incidents/{closing}/close", headers=ADMIN)
        assert again.status_code == 409
        (order,) = await poll_until(lambda: orders_for(clean_redis, waiting_id),
                                    "the waiting incident given the team the close freed")
    assert order.team_id == "t1"


async def test_a_fight_short_of_its_security_unit_gets_a_guard_free_in_dispatch_s_view(
        clean_redis: str, publisher: RedisBroker, redis: Redis) -> None:
    # The fight got its police and waits for the security unit it also wants: queued by
    # the police order's own script, which names its district among those the sweep reads.
    async with sweeping(clean_redis):
        await free_in_view(redis, "pol", kind="police", lat=22.8175)
        fight = await report(publisher, "violence", priority="P1")
        await orders_once(clean_redis, fight, 1, "the police order")
        assert await waiting(redis, fight)
        await free_in_view(redis, "guard", kind="security", lat=22.8172)
        orders = await orders_once(clean_redis, fight, 2, "the guard sent by the sweep")
    assert [o.team_id for o in orders] == ["pol", "guard"]


async def test_the_queues_of_an_earlier_version_are_swept_too(
        clean_redis: str, publisher: RedisBroker, redis: Redis) -> None:
    # An earlier version kept no list of the districts with incidents waiting: their
    # queues join it once.
    incident_id = await report(publisher, "noise", priority="P4")
    async with sweeping(clean_redis):
        await poll_until(lambda: waiting(redis, incident_id),
                         "the incident waiting: nobody is on shift")
        await redis.delete(store.WAITING_DISTRICTS, store.WAITING_DISTRICTS_INDEXED)
        await free_in_view(redis, "guard", kind="security", lat=22.8172)
        (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                    "the incident given the free team by the sweep")
    assert order.team_id == "guard"


async def test_an_odd_record_in_one_district_s_queue_stops_no_other_district_s_sweep(
        clean_redis: str, publisher: RedisBroker, redis: Redis) -> None:
    # A district swept before this one holds, in its queue, an incident whose record is
    # spoilt (its district and status, none of its other fields), and a team free: its
    # sweep fails on it, each round. This district's waiting incident still gets the team
    # free for it.
    odd = new_id("inc")
    await redis.zadd("dispatch:waiting:anning", {odd: 1.0})
    await redis.hset(store.incident_key(odd), mapping={"district": "anning",
                                                       "status": "unassigned"})
    await free_in_view_of(redis, "anning", "guard-anning")
    async with sweeping(clean_redis):
        incident_id = await report(publisher, "noise", priority="P4")
        await poll_until(lambda: waiting(redis, incident_id),
                         "the incident waiting: nobody is on shift")
        assert await store.waiting_districts(redis) == ["anning", DISTRICT]
        await free_in_view(redis, "guard", kind="security", lat=22.8172)
        (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                    "the incident given the free team by the sweep")
    assert order.team_id == "guard"


async def test_an_odd_record_ahead_in_a_district_s_queue_keeps_no_team_from_those_behind(
        clean_redis: str, publisher: RedisBroker, redis: Redis) -> None:
    # The odd record is in this district's queue, ahead of the waiting incident: the sweep
    # passes over it (left queued) to the incident behind, each round.
    odd = new_id("inc")
    await redis.zadd(f"dispatch:waiting:{DISTRICT}", {odd: 0.0})
    await redis.hset(store.incident_key(odd), mapping={"district": DISTRICT,
                                                       "status": "unassigned"})
    async with sweeping(clean_redis):
        incident_id = await report(publisher, "noise", priority="P4")
        await poll_until(lambda: waiting(redis, incident_id),
                         "the incident waiting: nobody is on shift")
        await free_in_view(redis, "guard", kind="security", lat=22.8172)
        (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                    "the incident given the free team past the odd record")
    assert order.team_id == "guard"
    assert await waiting(redis, odd)


def in_the_sweep(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """The districts swept, a round each, and the candidate searches the sweep ran (those
    of its task: not the reports' own)."""
    rounds: list[str] = []
    searches: list[str] = []
    real_sweep, real_search = Dispatcher.sweep_waiting, store.candidates

    async def sweep(engine: Dispatcher, district: str, **kwargs: Any) -> float | None:
        try:
            return await real_sweep(engine, district, **kwargs)
        finally:
            rounds.append(district)

    async def search(redis: Any, query: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "waiting-sweep":
            searches.append(query.district)
        return await real_search(redis, query)

    monkeypatch.setattr(Dispatcher, "sweep_waiting", sweep)
    monkeypatch.setattr(store, "candidates", search)
    return rounds, searches


async def test_a_district_whose_waiting_incidents_no_free_team_may_answer_runs_no_search(
        clean_redis: str, publisher: RedisBroker, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A backlog of P1 fights nobody is free for, then a volunteer team free (volunteers may
    # not go to a fight, nor escort): each round looks at the district and searches for
    # none of them. Police coming free then is sent by the sweep.
    rounds, searches = in_the_sweep(monkeypatch)
    async with sweeping(clean_redis):
        fights = [await report(publisher, "violence", priority="P1") for _ in range(5)]
        await poll_until(lambda: waiting(redis, *fights), "the fights waiting: nobody is on shift")

        async def swept(times: int) -> None:
            start = len(rounds)
            await poll_until(lambda: len(rounds) >= start + times, f"{times} more sweeps")

        await swept(3)
        assert searches == []
        await free_in_view(redis, "riders", kind="volunteer", lat=22.8171)
        await swept(3)
        assert searches == []
        assert all(orders_for(clean_redis, fight) == [] for fight in fights)
        await free_in_view(redis, "pol", kind="police", lat=22.8175)
        (order,) = await poll_until(lambda: orders_for(clean_redis, fights[0]),
                                    "the longest waiting fight given the police by the sweep")
    assert order.team_id == "pol" and searches


async def test_an_incident_behind_what_a_round_looks_at_gets_its_team_a_later_round(
        clean_redis: str, publisher: RedisBroker, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A round looks at SWEEP_LOOK incidents at most (10 here): P1 fights a volunteer team
    # may not go to fill them, and the traffic incident it may take waits behind. The next
    # round looks on from where the last stopped, not at the same fights again.
    monkeypatch.setattr(engine, "SWEEP_LOOK", 10)
    async with sweeping(clean_redis):
        fights = [await report(publisher, "violence", priority="P1") for _ in range(15)]
        traffic = await report(publisher, "traffic", priority="P3")
        await poll_until(lambda: waiting(redis, *fights, traffic),
                         "every incident waiting: nobody is on shift")
        await free_in_view(redis, "red-armband", kind="volunteer", lat=22.8171)
        (order,) = await poll_until(lambda: orders_for(clean_redis, traffic),
                                    "the traffic incident given the volunteers by the sweep")
    assert order.team_id == "red-armband"
    assert all(orders_for(clean_redis, fight) == [] for fight in fights)


async def test_two_replicas_sweeping_at_once_give_each_free_team_one_order(
        redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher]) -> None:
    first, second = two_replicas
    incidents = []
    for _ in range(4):  # noise complaints while nobody is on shift: they wait
        incident_id = new_id("inc")
        await first.on_incident_reported(IncidentReported(
            district=DISTRICT, incident_id=incident_id, system_id="sys",
            external_ref=incident_id, category="noise", priority="P4", location=SCENE,
            reported_at=utcnow()))
        incidents.append(incident_id)
    assert await waiting(redis, *incidents)
    await free_in_view(redis, "guard-near", kind="security", lat=22.8172)
    await free_in_view(redis, "guard-far", kind="security", lat=22.8190)
    await asyncio.gather(first.sweep_waiting(DISTRICT, again_after_s=60),
                         second.sweep_waiting(DISTRICT, again_after_s=60))
    # and again, each, once no sweep has tried anything lately
    await first.sweep_waiting(DISTRICT, again_after_s=0.001)
    await second.sweep_waiting(DISTRICT, again_after_s=0.001)
    orders = [o for i in incidents for o in await store.orders_of(redis, i)]
    assert sorted(o["team_id"] for o in orders) == ["guard-far", "guard-near"]
    assert len({o["incident_id"] for o in orders}) == 2
    for order in orders:
        assert await store.claim_of(redis, order["team_id"]) == order["order_id"]


async def test_a_waiting_sweep_of_zero_runs_no_sweep(clean_redis: str) -> None:
    for every_s, runs in ((0, False), (30, True)):
        app = create_app(settings_for(clean_redis, waiting_sweep_s=every_s))
        async with app.router.lifespan_context(app):
            names = {task.get_name() for task in asyncio.all_tasks()}
        assert ("waiting-sweep" in names) is runs, every_s


async def reported(engine_: Dispatcher, category: str, priority: str) -> str:
    """An incident reported to a bare engine (as its consumer would hand it over)."""
    incident_id = new_id("inc")
    await engine_.on_incident_reported(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category=category, priority=priority, location=SCENE, reported_at=utcnow()))
    return incident_id


async def fix(engine_: Dispatcher, team_id: str, *, lat: float) -> None:
    """The team's position fix, handled as dispatch's consumer hands it over."""
    await engine_.on_unit_positions([UnitPosition(district=DISTRICT, unit_id=team_id, lat=lat,
                                                  lon=SCENE.lon, at=utcnow())])


async def test_a_waiting_incident_whose_record_is_gone_leaves_the_queue_when_met(
        redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher]) -> None:
    # Incidents still queued whose records retention removed (and one whose record is only
    # a leftover key: a field written after it went), more urgent than a noise complaint
    # waiting: a free team's look pages over them. Met, they leave the queue; left, they
    # stayed for ever, each look paid for them again, and as many as a look reads hid the
    # complaint behind them from every team's look.
    dispatcher, _ = two_replicas
    gone = [new_id("inc") for _ in range(engine.WAITING_PAGES * engine.WAITING_PAGE)]
    await redis.zadd(f"dispatch:waiting:{DISTRICT}", {i: float(n) for n, i in enumerate(gone)})
    await redis.hset(store.incident_key(gone[-1]), "sent_on_as", new_id("inc"))
    noise = await reported(dispatcher, "noise", "P4")
    assert await waiting(redis, noise, *gone)
    await free_in_view(redis, "guard", kind="security", lat=22.8172)
    await fix(dispatcher, "guard", lat=22.8172)  # a look as long as its bound: all gone ones
    assert await redis.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1) == [noise]
    await fix(dispatcher, "guard", lat=22.8173)
    (order,) = await store.orders_of(redis, noise)
    assert order["team_id"] == "guard"


async def test_the_sweep_takes_off_the_queue_an_incident_whose_record_is_gone(
        redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher]) -> None:
    dispatcher, _ = two_replicas
    gone = new_id("inc")
    await redis.zadd(f"dispatch:waiting:{DISTRICT}", {gone: 1.0})
    noise = await reported(dispatcher, "noise", "P4")
    await free_in_view(redis, "guard", kind="security", lat=22.8172)
    await dispatcher.sweep_waiting(DISTRICT, again_after_s=60)
    assert await redis.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1) == []
    (order,) = await store.orders_of(redis, noise)
    assert order["team_id"] == "guard"
