"""A team freed by the end of its order goes to the incident waiting for it, whichever of the
two events that free it (volunteers' unit.status, the order's end) dispatch handles last."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import engine, store
from services.dispatch.engine import Dispatcher
from shared import streams
from tests.helpers import poll_until
from tests.integration import stream_probes as probes
from tests.integration.stream_probes import (
    _is,
    assigned_in_dispatch,
    dispatch_status,
    incident_reported,
    order_responded,
    running,
    unit_status,
)
from tools.benchmarks.monitor import CommandCounter

from .test_engine import DISTRICT, SCENE, orders_for, orders_once, report, team, wait_for_units
from .test_take_back import respond
from .test_waiting_sweep import fix, free_in_view, reported


async def test_a_waiting_incident_gets_the_team_whose_order_ends_after_it_said_available(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        team, first, order_id = await assigned_in_dispatch(svc, "w1")
        await svc.publish(streams.INCIDENT_REPORTED, incident_reported("inc-w2"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-w2"), "unassigned"),
                         "the second incident waiting: its only team is busy")
        # volunteers' `available` overtakes the order's end, which dispatch handles after it
        await svc.publish(streams.UNIT_STATUS, unit_status(team))
        await poll_until(lambda: svc.drained(streams.UNIT_STATUS.name), "status handled")
        assert await dispatch_status(svc, "inc-w2") == "unassigned"  # still claimed
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, first, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-w2"), "assigned"),
                         "the waiting incident given the team its order freed")


async def test_a_freed_team_goes_to_the_most_urgent_waiting_incident_not_the_oldest(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        team, first, order_id = await assigned_in_dispatch(svc, "u1")
        await svc.publish(streams.INCIDENT_REPORTED, incident_reported("inc-noise"))  # P4
        await poll_until(lambda: _is(dispatch_status(svc, "inc-noise"), "unassigned"),
                         "the noise complaint waiting")
        theft = incident_reported("inc-theft", "theft_in_progress").model_copy(
            update={"priority": "P1"})
        await svc.publish(streams.INCIDENT_REPORTED, theft)
        await poll_until(lambda: _is(dispatch_status(svc, "inc-theft"), "unassigned"),
                         "the theft in progress waiting too, behind it")
        await svc.publish(streams.UNIT_STATUS, unit_status(team))
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, first, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-theft"), "assigned"),
                         "the P1 given the freed team")
        assert await dispatch_status(svc, "inc-noise") == "unassigned"


async def test_a_freed_team_finds_the_incident_it_may_answer_behind_a_page_it_may_not(
        dispatch: str, publisher: RedisBroker) -> None:
    # A long backlog of P1 fights (volunteers may not go) ahead of one traffic incident (a
    # P3 they may take): the volunteer team coming on shift must find it, not stop at the
    # first page of the queue.
    fights = [await report(publisher, "violence", priority="P1")
              for _ in range(engine.WAITING_PAGE + 5)]
    traffic = await report(publisher, "traffic", priority="P3")
    client = aioredis.Redis.from_url(dispatch, decode_responses=True)
    try:
        async def all_waiting() -> bool:
            return await client.zcard(f"dispatch:waiting:{DISTRICT}") == len(fights) + 1

        await poll_until(all_waiting, "every incident waiting: nobody is on shift", 20)
    finally:
        await client.aclose()
    await team(publisher, "red-armband", kind="volunteer", lat=22.8171, lon=108.3665)
    (order,) = await poll_until(lambda: orders_for(dispatch, traffic), "the traffic incident's order")
    assert order.team_id == "red-armband"
    assert all(orders_for(dispatch, fight) == [] for fight in fights)


async def test_an_ended_incident_left_in_the_queue_is_taken_off_it(clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        team, first, order_id = await assigned_in_dispatch(svc, "e1")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, first, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, first), "resolved"), "resolved")
        await svc.redis.zadd(f"dispatch:waiting:{probes.DISTRICT}", {first: 1.0})  # left there
        await svc.publish(streams.UNIT_STATUS, unit_status(team))  # the team free again

        async def queue_empty() -> bool:
            return await svc.redis.zcard(f"dispatch:waiting:{probes.DISTRICT}") == 0

        await poll_until(queue_empty, "the ended incident off the queue")
        assert await dispatch_status(svc, first) == "resolved"


async def test_a_team_taken_off_by_its_partner_s_resolution_goes_to_the_incident_waiting(
        dispatch: str, publisher: RedisBroker) -> None:
    # A fight's police resolve it while the guard sent with them is still on it: the guard's
    # order is withdrawn with the incident's end, and the guard, free in dispatch's view
    # (volunteers never said it busy: away, or it read the withdrawal first), goes to the
    # hazard report waiting for a team (volunteers or security: not the police), as the
    # police would go to one they may answer.
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8172, lon=108.3665, mode="foot")
    await wait_for_units(dispatch, 2)
    fight = await report(publisher, "violence", priority="P1")
    orders = await orders_once(dispatch, fight, 2, "the fight's two orders")
    hazard = await report(publisher, "hazard_report", priority="P4")
    client = aioredis.Redis.from_url(dispatch, decode_responses=True)
    try:
        async def waiting() -> bool:
            return await client.zscore(f"dispatch:waiting:{DISTRICT}", hazard) is not None

        await poll_until(waiting, "the hazard report waiting: both teams are on the fight")
        await respond(publisher, next(o for o in orders if o.team_id == "pol"), "resolved")
        (order,) = await poll_until(lambda: orders_for(dispatch, hazard),
                                    "the hazard report given the guard the resolution freed")
        assert order.team_id == "sec"
        assert await client.hget(f"dispatch:incident:{fight}", "status") == "resolved"
    finally:
        await client.aclose()


async def test_a_free_team_s_fixes_read_one_page_of_a_backlog_whatever_its_length(
        clean_redis: str, two_replicas: tuple[Dispatcher, Dispatcher]) -> None:
    # Three pages of noise complaints the guard declined (it is never offered them again)
    # wait, and the guard is free: its fixes come every 5 s. Each read them all (their
    # records, then whether the guard was offered each), on every fix of every free team,
    # as a backlog grew. One fix in FIX_LOOKS_ON_EVERY_S reads on past the first page;
    # the others read that page and no more.
    dispatcher, _ = two_replicas
    declined = [await reported(dispatcher, "noise", "P4") for _ in range(3 * engine.WAITING_PAGE)]
    for incident_id in declined:
        await dispatcher.redis.sadd(store.offered_key(incident_id), "guard")
    await free_in_view(dispatcher.redis, "guard", kind="security", lat=22.8172)
    await fix(dispatcher, "guard", lat=22.8172)  # the one that reads on
    counter = CommandCounter(clean_redis)
    counter.start()
    try:
        for n in range(FIXES := 3):
            await fix(dispatcher, "guard", lat=22.8173 + n / 10_000)
    finally:
        sent = counter.stop()
    # each: its record's write and read, one page of the queue (its records, each one's
    # offered check), and no more than a few other commands
    assert sum(sent["?"].values()) <= FIXES * (2 * engine.WAITING_PAGE + 6), sent
    assert [i for i in declined if await store.orders_of(dispatcher.redis, i)] == []


async def test_a_free_team_come_within_reach_of_an_incident_further_down_is_sent_by_a_later_fix(
        two_replicas: tuple[Dispatcher, Dispatcher], monkeypatch: pytest.MonkeyPatch) -> None:
    # A page of P1 fights (volunteers may not go) ahead of a traffic incident volunteers may
    # take, and volunteers free beyond the search's reach. They ride towards it: a fix
    # reads the first page only, until FIX_LOOKS_ON_EVERY_S after the last fix that read
    # on, and the next reads on and finds the traffic incident.
    monkeypatch.setattr(engine, "FIX_LOOKS_ON_EVERY_S", 0.2)
    dispatcher, _ = two_replicas
    fights = [await reported(dispatcher, "violence", "P1") for _ in range(engine.WAITING_PAGE)]
    traffic = await reported(dispatcher, "traffic", "P3")
    far = SCENE.lat + 0.2  # some 22 km
    await free_in_view(dispatcher.redis, "red-armband", kind="volunteer", lat=far)
    await fix(dispatcher, "red-armband", lat=far)  # reads on: nothing within reach
    await fix(dispatcher, "red-armband", lat=SCENE.lat + 0.0001)
    await asyncio.sleep(engine.FIX_LOOKS_ON_EVERY_S)
    await fix(dispatcher, "red-armband", lat=SCENE.lat + 0.0002)
    (order,) = await store.orders_of(dispatcher.redis, traffic)
    assert order["team_id"] == "red-armband"
    assert [i for i in fights if await store.orders_of(dispatcher.redis, i)] == []


async def test_an_odd_record_ahead_in_the_queue_keeps_no_freed_team_from_the_incidents_behind(
        clean_redis: str) -> None:
    # Ahead of the waiting incident, the district's queue holds one whose record is spoilt
    # (its district and status, none of its other fields): judging it fails. The team the
    # order's end frees still goes to the incident behind it, and the odd one stays queued
    # (it may be a real incident: somebody must look at it, not the queue forget it).
    async with running("dispatch", clean_redis) as svc:
        team, first, order_id = await assigned_in_dispatch(svc, "o1")
        await svc.publish(streams.INCIDENT_REPORTED, incident_reported("inc-o2"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-o2"), "unassigned"),
                         "the second incident waiting: its only team is busy")
        redis = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            await redis.hset(store.incident_key("inc-odd"),
                             mapping={"district": probes.DISTRICT, "status": "unassigned"})
            await redis.zadd(f"dispatch:waiting:{probes.DISTRICT}", {"inc-odd": 0.0})
            await svc.publish(streams.UNIT_STATUS, unit_status(team))
            await svc.publish(streams.ORDER_RESPONDED,
                              order_responded(order_id, first, team, "resolved"))
            await poll_until(lambda: _is(dispatch_status(svc, "inc-o2"), "assigned"),
                             "the waiting incident given the freed team past the odd record")
            assert await redis.zscore(f"dispatch:waiting:{probes.DISTRICT}", "inc-odd") == 0.0
        finally:
            await redis.aclose()
