"""Timer leases (services.dispatch.timers) against a real Redis: a replica killed while it
fires a deadline lets go of it within one short lease, a healthy slow firing keeps its
lease for as long as it runs, and a firing that fails or hangs holds no timer back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import store
from services.dispatch.config import Settings
from services.dispatch.main import create_app
from services.dispatch.timers import run_timers
from shared import streams
from shared.events import OrderWithdrawn, utcnow
from tests.helpers import poll_until, read_stream

from .conftest import STARTUP_S, processes_ready, settings_for
from .test_engine import orders_once, report, team, wait_for_units
from .test_reinforcement import make_due, timer_of

# A P1's next team is asked within a third of its 30 s deadline after the replica that
# held the missed deadline died (the lease it leaves, at most, and the handling).
TAKEOVER_S = 10.0


class Engine:
    """What the loop uses of the dispatcher: its Redis and fire_timer. Timers in `blocking`
    wait until `may_end` is set; those in `failing` raise; `again` maps a timer to the time
    its firing sets it for again (as a handler that reschedules its own timer)."""

    def __init__(self, redis: Redis, fired: list[str]) -> None:
        self.redis = redis
        self.fired = fired
        self.may_end = asyncio.Event()
        self.blocking: set[str] = set()
        self.failing: set[str] = set()
        self.hangs_once: set[str] = set()
        self.again: dict[str, datetime] = {}

    async def fire_timer(self, member: str) -> None:
        self.fired.append(member)
        if member in self.hangs_once:
            self.hangs_once.discard(member)
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        if member in self.blocking:
            await self.may_end.wait()
        if member in self.failing:
            raise RuntimeError("a poison incident")
        if (at := self.again.pop(member, None)) is not None:
            await store.schedule(self.redis, member, at)


@asynccontextmanager
async def timer_loop(engine: Engine, settings: Settings) -> AsyncIterator[None]:
    """A replica's timer loop for the block, stopped as the service stops it."""
    stop = asyncio.Event()
    loop = asyncio.create_task(run_timers(engine, settings, stop))  # type: ignore[arg-type]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)


async def removed(redis: Redis, member: str) -> bool:
    return await redis.zscore(store.TIMERS, member) is None


# --- a replica killed while it fires a deadline ---------------------------------------


async def test_a_p1_deadline_leased_by_a_killed_replica_is_handled_by_another_within_a_third_of_it(
        clean_redis: str, publisher: RedisBroker, tmp_path) -> None:
    # A P1's order goes unanswered. The replica that fires its deadline waits for the
    # incident's lock (a stalled step holds it) and is SIGKILLed meanwhile: the deadline's
    # lease it held must not keep the incident from its next team much longer than the
    # stalled step does (with a 30 s lease, a whole second P1 deadline was lost).
    from tools.redis_server import free_port
    from tools.stack import Service

    url = clean_redis
    first = create_app(settings_for(url, consumer_name="before"))
    async with first.router.lifespan_context(first):
        for team_id, lat in (("near", 22.8171), ("next", 22.8190)):
            await team(publisher, team_id, kind="security", lat=lat, lon=108.3665,
                       skills=("first_aid",))
        await wait_for_units(url, 2)
        incident_id = await report(publisher, "medical", priority="P1")
        (order,) = await orders_once(url, incident_id, 1, "the first order")
    assert order.team_id == "near"
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    member = f"ack:{order.order_id}"
    # Held back until the replica is up: a start slower than the P1's 30 s (a loaded CI
    # machine) must not let the deadline pass before the stalled step below holds it up.
    client.zadd(store.TIMERS, {member: time.time() + 3600})
    lock = f"dispatch:lock:{incident_id}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TIMER_"))}
    env.update({"REDIS_URL": url, "ADMIN_TOKEN": "test-admin-token", "HTTP_PORT": str(free_port()),
                "CONSUMER_NAME": "doomed", "VOLUNTEERS_URL": "http://127.0.0.1:9",
                "PYTHONUNBUFFERED": "1"})  # TIMER_LEASE_S left at its default
    doomed = Service("dispatch", int(env["HTTP_PORT"]), env, tmp_path / "doomed.log")
    doomed.start()
    try:
        await processes_ready([doomed], "the doomed replica ready")
        client.set(lock, "a-stalled-step", px=300_000)  # the step that holds the incident up
        make_due(url, member)  # the deadline passes (its 30 s are not what this is about)
        await poll_until(lambda: (timer_of(url, member) or 0) > time.time() + 1,
                         "the doomed replica firing the deadline (leased)", STARTUP_S)
        survivor = create_app(settings_for(url, consumer_name="survivor"))
        async with survivor.router.lifespan_context(survivor):
            assert doomed.proc is not None
            doomed.proc.send_signal(signal.SIGKILL)
            doomed.proc.wait(10)
            client.delete(lock)  # the stalled step ends
            withdrawn = await poll_until(
                lambda: read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn),
                "the missed deadline handled by the surviving replica", TAKEOVER_S)
            assert [(w.order_id, w.reason) for w in withdrawn] == [(order.order_id, "timeout")]
            orders = await orders_once(url, incident_id, 2, "the next team asked")
            assert [o.team_id for o in orders] == ["near", "next"]
    finally:
        if doomed.alive():
            assert doomed.proc is not None
            doomed.proc.kill()
            doomed.proc.wait(10)
        client.close()


# --- a healthy slow firing -------------------------------------------------------------


async def test_a_slow_firing_keeps_its_lease_and_no_other_replica_fires_it_meanwhile(
        clean_redis: str) -> None:
    # The firing waits several leases (an incident's lock held by a stalled step): its
    # replica renews the lease, so the other replica, scanning all along, never fires it.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    fired: list[str] = []
    slow, other = Engine(redis, fired), Engine(redis, fired)
    slow.blocking = {"ack:slow"}
    # Renewed every third of it: the test's event loop may stall two thirds of a lease (a
    # loaded machine) before a renewal is late; 0.3 s left only 0.2 s, and a CI run lost it.
    lease_s = 1.0
    await redis.zadd(store.TIMERS, {"ack:slow": time.time() - 1})
    try:
        # the slow replica scans once (then only renews), the other every 50 ms
        once = settings_for(clean_redis, timer_lease_s=lease_s).model_copy(
            update={"timer_interval_s": 60})
        async with timer_loop(slow, once):
            await poll_until(lambda: fired == ["ack:slow"], "the slow firing under way", 5)
            async with timer_loop(other, settings_for(clean_redis, timer_lease_s=lease_s)):
                await asyncio.sleep(4 * lease_s)  # four leases: none runs out
                assert fired == ["ack:slow"], "fired again while its first firing ran"
                slow.may_end.set()
                await poll_until(lambda: removed(redis, "ack:slow"), "the slow firing's end", 5)
                await asyncio.sleep(2 * lease_s)
                assert fired == ["ack:slow"]
    finally:
        await redis.aclose()


async def test_a_timer_its_firing_sets_again_sooner_than_the_lease_is_kept(
        clean_redis: str) -> None:
    # A handler that looks again soon (a zone still unknown, a backup nobody was free for)
    # sets its own timer inside its firing: the firing's end must not take that away,
    # however short the wait and however long the lease.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    fired: list[str] = []
    engine = Engine(redis, fired)
    engine.again = {"zone:x": utcnow() + timedelta(seconds=0.3)}
    await redis.zadd(store.TIMERS, {"zone:x": time.time() - 1})
    try:
        async with timer_loop(engine, settings_for(clean_redis, timer_lease_s=30)):
            await poll_until(lambda: fired == ["zone:x", "zone:x"], "the timer fired again", 5)
            await poll_until(lambda: removed(redis, "zone:x"), "then done", 5)
    finally:
        await redis.aclose()


# --- firings that fail or hang ---------------------------------------------------------


async def test_a_hung_firing_is_cut_off_and_its_timer_fires_again(clean_redis: str) -> None:
    # A firing that never ends (a connection that never answers) must not keep its timer,
    # renewed for ever, from ever firing again: it is cancelled after HANDLER_TIMEOUT_S.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    fired: list[str] = []
    engine = Engine(redis, fired)
    engine.hangs_once = {"ack:hung"}
    await redis.zadd(store.TIMERS, {"ack:hung": time.time() - 1})
    try:
        async with timer_loop(engine, settings_for(clean_redis, timer_lease_s=0.3,
                                                   handler_timeout_s=0.5)):
            await poll_until(lambda: fired == ["ack:hung", "ack:hung"],
                             "the timer fired again after its hung firing", 5)
            await poll_until(lambda: removed(redis, "ack:hung"), "then done", 5)
    finally:
        await redis.aclose()


async def test_a_timer_that_keeps_failing_holds_no_other_back_and_waits_a_lease_each_time(
        clean_redis: str) -> None:
    # A poison incident's deadline fails at every firing: the deadlines due after it are
    # handled all the same, and it is tried again once a lease, neither dropped nor spun.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    fired: list[str] = []
    engine = Engine(redis, fired)
    engine.failing = {"ack:poison"}
    lease_s = 0.3
    now = time.time()
    await redis.zadd(store.TIMERS, {"ack:poison": now - 3, "ack:a": now - 2, "ack:b": now - 1})
    try:
        async with timer_loop(engine, settings_for(clean_redis, timer_lease_s=lease_s)):
            await poll_until(lambda: fired.count("ack:poison") >= 2, "the poison retried", 5)
            assert await removed(redis, "ack:a") and await removed(redis, "ack:b")
            tries = fired.count("ack:poison")
            await asyncio.sleep(5 * lease_s)
            # retried each time its lease runs out (five leases), not at every 50 ms scan
            assert 1 <= fired.count("ack:poison") - tries <= 6
        assert await redis.zscore(store.TIMERS, "ack:poison") is not None  # never dropped
    finally:
        await redis.aclose()


async def test_a_stopping_replica_hands_the_timers_it_was_firing_back_at_once(
        clean_redis: str) -> None:
    # A replica stopped (a deploy) while it fires a deadline: the next one takes it at
    # once, not after the lease.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    fired: list[str] = []
    engine = Engine(redis, fired)
    engine.blocking = {"ack:slow"}
    await redis.zadd(store.TIMERS, {"ack:slow": time.time() - 1})
    try:
        async with timer_loop(engine, settings_for(clean_redis, timer_lease_s=30)):
            await poll_until(lambda: fired == ["ack:slow"], "the firing under way", 5)
        score = await redis.zscore(store.TIMERS, "ack:slow")
        assert score is not None and score <= time.time()  # kept, and due now
    finally:
        await redis.aclose()
