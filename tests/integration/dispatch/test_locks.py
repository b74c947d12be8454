"""Incident locks against a real Redis: one holder at a time, kept while a step runs, freed
by a dead holder's TTL, released in a step's last transaction, taken by a report's first
round trip."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import locks, store
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared import streams
from shared.events import IncidentReported, OrderIssued, new_id, utcnow
from tests.helpers import poll_until, read_stream
from tests.integration.dispatch.conftest import settings_for
from tests.integration.dispatch.test_engine import (
    DISTRICT,
    SCENE,
    report,
    team,
    wait_for_units,
)


@pytest.fixture
async def redis(clean_redis: str):
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_second_holder_waits_until_the_first_is_done(redis: Redis) -> None:
    first, second = locks.IncidentLocks(redis), locks.IncidentLocks(redis)
    order: list[str] = []

    async def later() -> None:
        async with second.hold("inc_a"):
            order.append("second in")

    async with first.hold("inc_a"):
        waiting = asyncio.create_task(later())
        await asyncio.sleep(0.2)
        assert order == []  # still waiting for the lock
        order.append("first out")
    await asyncio.wait_for(waiting, 5)
    assert order == ["first out", "second in"]
    assert await redis.exists(locks.key("inc_a")) == 0
    await first.close()
    await second.close()


async def test_a_held_lock_is_renewed_past_its_ttl(redis: Redis) -> None:
    short = locks.IncidentLocks(redis, ttl_s=0.3)
    other = locks.IncidentLocks(redis, wait_s=0.2)
    async with short.hold("inc_b") as held:
        await asyncio.sleep(1.0)  # three TTLs
        assert await redis.get(locks.key("inc_b")) == held.token
        with pytest.raises(TimeoutError):
            async with other.hold("inc_b"):
                pass
    assert await redis.exists(locks.key("inc_b")) == 0
    await short.close()


async def test_a_dead_holders_lock_frees_after_its_ttl(redis: Redis) -> None:
    await redis.set(locks.key("inc_c"), "dead-worker", px=300)
    mine = locks.IncidentLocks(redis, wait_s=3)
    async with mine.hold("inc_c") as held:
        assert await redis.get(locks.key("inc_c")) == held.token
    await mine.close()


_WRITE_AND_RELEASE = """
redis.call('SET', 'written-with-it', '1')
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""


async def test_a_lock_released_by_the_last_script_is_not_released_twice(
        redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    mine = locks.IncidentLocks(redis)
    with caplog.at_level(logging.WARNING, logger="services.dispatch.locks"):
        async with mine.hold("inc_d") as held:
            lock_key, token = mine.release_in_script(held)
            await redis.eval(_WRITE_AND_RELEASE, 1, lock_key, token)
            assert await redis.exists(locks.key("inc_d")) == 0
            await redis.set(locks.key("inc_d"), "theirs")  # another worker took it at once
    assert await redis.get(locks.key("inc_d")) == "theirs"
    assert await redis.get("written-with-it") == "1"
    assert "expired before release" not in caplog.text
    await mine.close()


async def test_an_expired_lock_taken_by_another_worker_stays_theirs(
        redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    mine = locks.IncidentLocks(redis)
    with caplog.at_level(logging.WARNING, logger="services.dispatch.locks"):
        async with mine.hold("inc_f"):
            await redis.set(locks.key("inc_f"), "theirs")  # ours expired, theirs now
    assert await redis.get(locks.key("inc_f")) == "theirs"
    assert "expired before release" in caplog.text
    await mine.close()


async def test_a_lock_released_at_the_end_of_its_step_while_a_renewal_is_under_way_is_not_reported_lost(
        redis: Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = locks.IncidentLocks(redis, ttl_s=0.3)  # renewed every 100 ms
    renewing, released = asyncio.Event(), asyncio.Event()
    real = locks.run_script

    async def run_script(client, script, keys, args):  # the renewal reaches Redis late
        if script is locks._RENEW and not released.is_set():
            renewing.set()
            await released.wait()
        return await real(client, script, keys, args)

    monkeypatch.setattr(locks, "run_script", run_script)
    with caplog.at_level(logging.WARNING, logger="services.dispatch.locks"):
        async with mine.hold("inc_h"):
            await asyncio.wait_for(renewing.wait(), 5)  # the renewer has taken its list
        assert await redis.exists(locks.key("inc_h")) == 0  # released by the step's end
        released.set()
        for _ in range(50):  # until the renewal's answer has been read
            await asyncio.sleep(0.01)
            if mine._renewer is None or mine._renewer.done():
                break
    assert "lost before the step ended" not in caplog.text
    assert "expired before release" not in caplog.text
    await mine.close()


async def test_a_report_first_step_writes_nothing_while_another_worker_holds_the_lock(
        redis: Redis) -> None:
    fields = {"district": "d1", "status": "dispatching", "category": "noise"}

    async def first_step(token: str) -> int:
        created, _ = await store.first_step(
            redis, incident_id="inc_e", district="d1", reported_ts=1.0, received_ts=2.0,
            fields=fields, entries=[], lock_key=locks.key("inc_e"), token=token, ttl_ms=5000,
            query=None)
        return created

    await redis.set(locks.key("inc_e"), "another", px=5000)
    assert await first_step("mine") == -1
    assert await store.get_incident(redis, "inc_e") is None
    await redis.delete(locks.key("inc_e"))
    assert await first_step("mine") == 1  # lock taken, incident created
    assert await redis.get(locks.key("inc_e")) == "mine"
    assert await first_step("mine") == 0  # its own lock: carries on, the incident exists
    assert (await store.get_incident(redis, "inc_e") or {}).get("district") == "d1"


async def test_a_step_whose_releasing_script_failed_still_frees_the_lock(
        redis: Redis) -> None:
    mine = locks.IncidentLocks(redis)
    with pytest.raises(RuntimeError):
        async with mine.hold("inc_g") as held:
            mine.release_in_script(held)
            raise RuntimeError("the script never ran")  # e.g. Redis went away
    assert await redis.exists(locks.key("inc_g")) == 0
    await mine.close()


async def test_an_answer_takes_the_lock_and_reads_the_state_together_or_nothing(
        redis: Redis) -> None:
    await redis.hset("dispatch:incident:inc_h", mapping={"incident_id": "inc_h",
                                                         "district": "d1", "status": "assigned"})
    await redis.set(locks.key("inc_h"), "another", px=5000)
    assert await store.lock_and_state(redis, "inc_h", lock_key=locks.key("inc_h"), token="mine",
                                      ttl_ms=5000, seen="responded:e1") is None
    assert await redis.get(locks.key("inc_h")) == "another"  # untouched
    await redis.delete(locks.key("inc_h"))
    state = await store.lock_and_state(redis, "inc_h", lock_key=locks.key("inc_h"),
                                       token="mine", ttl_ms=5000, seen="responded:e1")
    assert state is not None and state.incident is not None
    assert state.incident["status"] == "assigned" and not state.seen
    assert await redis.get(locks.key("inc_h")) == "mine"
    assert 0 < await redis.pttl(locks.key("inc_h")) <= 5000


async def test_a_lock_released_by_the_order_script_while_a_renewal_is_under_way_is_not_reported_lost(
        clean_redis: str, publisher: RedisBroker, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A new incident's order script also releases its lock (store.LastWrites). A renewal
    # that took its list before that script ran finds the lock gone; if its answer is read
    # before the step has marked the lock released, it must not report the lock lost (seen
    # as WARNINGs in the 500/s runs of `make bench`).
    renewing, applied, checked = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_offer, real_run = store.offer_order, locks.run_script

    async def offer_order(*args, **kwargs):  # the order's script runs while a renewal waits
        await asyncio.wait_for(renewing.wait(), 10)
        result = await real_offer(*args, **kwargs)
        applied.set()
        await asyncio.wait_for(checked.wait(), 10)  # the renewal's answer was read first
        return result

    async def run_script(client, script, keys, args):
        if script is not locks._RENEW or checked.is_set():
            return await real_run(client, script, keys, args)
        renewing.set()
        await asyncio.wait_for(applied.wait(), 10)
        kept = await real_run(client, script, keys, args)
        asyncio.get_running_loop().call_soon(checked.set)  # after the renewer read `kept`
        return kept

    monkeypatch.setattr(store, "offer_order", offer_order)
    monkeypatch.setattr(locks, "run_script", run_script)
    app = create_app(settings_for(clean_redis))
    with caplog.at_level(logging.WARNING, logger="services.dispatch.locks"):
        async with app.router.lifespan_context(app):
            await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
            await wait_for_units(clean_redis, 1)
            incident_id = await report(publisher, "noise", priority="P4")

            def ordered() -> list[OrderIssued] | None:
                orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
                return orders or None

            orders = await poll_until(ordered, "the incident's order", 20)
            # The order is in its stream once the script ran, which may be before the
            # renewal's answer is read (on a busy machine): wait for that too.
            await poll_until(checked.is_set, "the interleaving: the renewal's answer read "
                                             "while the order's script had run", 20)
    assert [o.incident_id for o in orders] == [incident_id]
    assert "lost before the step ended" not in caplog.text


async def free_guard(redis: Redis, team_id: str, lat: float) -> None:
    now = utcnow()
    await store.save_unit_status(redis, at=now, fields={
        "team_id": team_id, "district": DISTRICT, "status": "available", "name": team_id,
        "agency_id": "ag-security", "agency_kind": "security", "agency_role": "",
        "mode": "car", "skills": "[]", "home_zone_id": "", "on_shift": "1"})
    await store.save_unit_position(redis, team_id=team_id, lat=lat, lon=SCENE.lon, at=now)


async def test_a_step_that_stalled_past_its_lock_writes_no_second_order(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = two_replicas
    incident_id = new_id("inc")  # a noise complaint while nobody is on shift: it waits
    await first.on_incident_reported(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow()))
    await free_guard(redis, "guard-near", 22.8172)
    await free_guard(redis, "guard-far", 22.8190)
    # Replica 1's step stalls after its search, past its lock's TTL (its renewer with it:
    # the event loop or its Redis connection stalled).
    first.locks.ttl_s = 0.5

    async def stalled() -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(first.locks, "_renew", stalled)
    search = store.candidates
    in_search = asyncio.Event()

    async def slow_search(client: Any, query: Any) -> Any:
        found = await search(client, query)
        if client is first.scripts and not in_search.is_set():
            in_search.set()
            await asyncio.sleep(1.5)
        return found

    monkeypatch.setattr(store, "candidates", slow_search)

    async def step(engine: Dispatcher) -> None:  # as a freed team's offer to waiting ones
        async with engine._locked(incident_id):
            await engine._fill(incident_id)

    stale = asyncio.create_task(step(first))
    await in_search.wait()
    await asyncio.sleep(0.8)  # replica 1's lock has expired
    await step(second)  # replica 2 takes it and gives the incident its one team
    with pytest.raises(locks.LockLost):
        await asyncio.wait_for(stale, 10)  # the stale step wrote nothing (it is made again)
    orders = [o for o in read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
              if o.incident_id == incident_id]
    assert [o.team_id for o in orders] == ["guard-near"]
    assert await redis.llen(f"dispatch:orders:{incident_id}") == 1
