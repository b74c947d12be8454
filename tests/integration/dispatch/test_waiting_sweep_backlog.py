"""What one round of the sweep of a long waiting queue costs (Dispatcher.sweep_waiting), in
Redis commands and round trips, with many teams free: a few a page, however many teams are
free, and each team still sent where it was. The look at each waiting incident asked, one
round trip each, whether each free team had been offered it, and read the state of one
short of a unit once for each free team that might join it."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from services.dispatch import engine, store
from services.dispatch.engine import Dispatcher
from shared.events import utcnow

from .test_engine import DISTRICT, SCENE
from .test_freed_team_backlog import commands, offer_measured
from .test_waiting_sweep import free_in_view, reported

BACKLOG = 240  # more than four pages (WAITING_PAGE), fewer than a round looks at
GUARDS = 20  # free, each a guard a noise complaint may be sent to
SHORT = 30  # P1s short of a unit, each with the one team sent that was free
CARS = 10  # teams free besides


@pytest.fixture
async def redis(clean_redis: str) -> Any:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


def pages(incidents: int) -> int:
    """The pages a round reads of a queue that long (all of it: fewer than SWEEP_LOOK)."""
    return incidents // engine.WAITING_PAGE + 1


async def test_a_sweep_of_a_backlog_every_free_team_was_offered_costs_a_few_commands_a_page(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Noise complaints wait; each was offered to every free guard (notify away: they missed
    # every deadline) but the last one, which one guard was never offered: the sweep sends
    # it there, and nowhere else. The look at each incident asked of each guard, one round
    # trip each, whether it had been offered it: thousands a round.
    dispatcher, _ = two_replicas
    noise = [await reported(dispatcher, "noise", "P4") for _ in range(BACKLOG)]
    guards = [f"guard-{n}" for n in range(GUARDS)]
    for incident_id in noise:
        await redis.sadd(store.offered_key(incident_id), *guards)
    await redis.srem(store.offered_key(noise[-1]), guards[7])
    for n, team_id in enumerate(guards):
        await free_in_view(redis, team_id, kind="security", lat=22.8172 + n * 0.0001)
    async with offer_measured(clean_redis, monkeypatch, "the sweep") as sent:
        await dispatcher.sweep_waiting(DISTRICT, again_after_s=60)
    (order,) = await store.orders_of(redis, noise[-1])
    assert order["team_id"] == guards[7]
    assert [i for i in noise if await store.orders_of(redis, i)] == [noise[-1]]
    # the free teams; a page: the queue, then its records and offers read in one go; the
    # order's search and writes, and the free teams again; no more than a few others
    bound = 2 * pages(BACKLOG) + 30
    assert commands(sent) <= bound, sent
    assert sent["round trips"] <= bound, sent


async def test_a_sweep_of_fights_short_of_a_unit_every_free_car_declined_reads_no_state(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Fights that got one police car wait for the second unit they want; the police cars
    # free near were offered each fight before (they declined, or missed its deadline).
    # The look at each fight read its state (orders and offered teams) once for each car
    # to find it out.
    dispatcher, _ = two_replicas
    fights = await short_of_a_unit(dispatcher, redis, "violence", kind="police")
    cars = [f"car-{n}" for n in range(CARS)]
    for fight in fights:
        await redis.sadd(store.offered_key(fight), *cars)
    for team_id in cars:
        await free_in_view(redis, team_id, kind="police", lat=22.8172)
    async with offer_measured(clean_redis, monkeypatch, "the sweep") as sent:
        await dispatcher.sweep_waiting(DISTRICT, again_after_s=60)
    assert [len(await store.orders_of(redis, fight)) for fight in fights] == [1] * SHORT
    # the free teams; a page: the queue, then its records and offers read in one go
    bound = 2 * pages(SHORT) + 5
    assert commands(sent) <= bound, sent
    assert sent["round trips"] <= bound, sent


async def test_a_sweep_of_p1s_with_volunteers_alone_reads_each_one_s_state_once(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Medical P1s that got a volunteer team each wait for an escort (police or security:
    # volunteers are never a P1's only responders); only other volunteer teams with first
    # aid are free, near. Each may answer a medical P1, so the look reads its orders to see
    # that the team is no escort: it read them once for each team free.
    dispatcher, _ = two_replicas
    calls = await short_of_a_unit(dispatcher, redis, "medical", kind="volunteer")
    teams = [f"riders-{n}" for n in range(CARS)]
    for team_id in teams:
        await free_with_first_aid(redis, team_id, kind="volunteer")
    async with offer_measured(clean_redis, monkeypatch, "the sweep") as sent:
        await dispatcher.sweep_waiting(DISTRICT, again_after_s=60)
    assert [len(await store.orders_of(redis, call)) for call in calls] == [1] * SHORT
    assert all([await store.claim_of(redis, team_id) is None for team_id in teams])
    # the free teams; a page: the queue, then its records and offers; a call's state once
    bound = 2 * pages(SHORT) + SHORT + 5
    assert commands(sent) <= bound, sent
    assert sent["round trips"] <= bound, sent


async def free_with_first_aid(redis: Redis, team_id: str, *, kind: str) -> None:
    """free_in_view, the team trained in first aid (it may answer a medical call)."""
    now = utcnow()
    await store.save_unit_status(redis, at=now, fields={
        "team_id": team_id, "district": DISTRICT, "status": "available", "name": team_id,
        "agency_id": f"ag-{kind}", "agency_kind": kind, "agency_role": "", "mode": "car",
        "skills": '["first_aid"]', "home_zone_id": "", "on_shift": "1"})
    await store.save_unit_position(redis, team_id=team_id, lat=22.8172, lon=SCENE.lon, at=now)


async def short_of_a_unit(dispatcher: Dispatcher, redis: Redis, category: str, *,
                          kind: str) -> list[str]:
    """SHORT P1s of the category reported each while one team of `kind` (trained in first
    aid) was free: each sent it, and waits short of a unit."""
    incidents = []
    for n in range(SHORT):
        await free_with_first_aid(redis, f"first-{n}", kind=kind)
        incidents.append(await reported(dispatcher, category, "P1"))
        (order,) = await store.orders_of(redis, incidents[-1])
        assert order["team_id"] == f"first-{n}"
    assert await redis.zcard(f"dispatch:waiting:{DISTRICT}") == SHORT
    return incidents


async def test_a_team_freed_during_a_sweep_round_goes_to_a_waiting_incident_it_was_not_offered(
        redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two noise complaints wait, the first offered the near guard before (it declined),
    # the second the far guard; only the far guard is free when the round reads the page,
    # and it goes to the first. The near guard comes free as that search runs: the round's
    # look at the second complaint judges it too, though the page's offers were read for
    # the far guard only, and sends it there. One the near guard was offered would not be.
    dispatcher, _ = two_replicas
    first, second = [await reported(dispatcher, "noise", "P4") for _ in range(2)]
    await redis.sadd(store.offered_key(first), "guard-near")
    await redis.sadd(store.offered_key(second), "guard-far")
    await free_in_view(redis, "guard-far", kind="security", lat=22.8190)
    real_fill = Dispatcher._fill

    async def fill_then_free_the_near_guard(self: Dispatcher, incident_id: str,
                                            *args: Any, **kwargs: Any) -> Any:
        try:
            return await real_fill(self, incident_id, *args, **kwargs)
        finally:
            if incident_id == first:
                await free_in_view(redis, "guard-near", kind="security", lat=22.8172)

    monkeypatch.setattr(Dispatcher, "_fill", fill_then_free_the_near_guard)
    await dispatcher.sweep_waiting(DISTRICT, again_after_s=60)
    assert [o["team_id"] for o in await store.orders_of(redis, first)] == ["guard-far"]
    assert [o["team_id"] for o in await store.orders_of(redis, second)] == ["guard-near"]


async def test_a_sweep_sends_no_free_team_to_a_waiting_incident_it_was_offered(
        redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Both guards declined the complaint that waits longest: no search runs for it. The near
    # guard declined the next, the far guard the last: each goes to the other, though the
    # near guard is nearer to both.
    dispatcher, _ = two_replicas
    declined, first, second = [await reported(dispatcher, "noise", "P4") for _ in range(3)]
    await redis.sadd(store.offered_key(first), "guard-near")
    await redis.sadd(store.offered_key(second), "guard-far")
    await redis.sadd(store.offered_key(declined), "guard-near", "guard-far")
    await free_in_view(redis, "guard-near", kind="security", lat=22.8172)
    await free_in_view(redis, "guard-far", kind="security", lat=22.8190)
    searched: list[str] = []
    real_fill = Dispatcher._fill

    async def fill(self: Dispatcher, incident_id: str, *args: Any, **kwargs: Any) -> Any:
        searched.append(incident_id)
        return await real_fill(self, incident_id, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_fill", fill)
    await dispatcher.sweep_waiting(DISTRICT, again_after_s=60)
    assert [o["team_id"] for o in await store.orders_of(redis, first)] == ["guard-far"]
    assert [o["team_id"] for o in await store.orders_of(redis, second)] == ["guard-near"]
    assert await store.orders_of(redis, declined) == []
    assert searched == [first, second]
