"""A notify replica that stops (a deploy, a restart) while its hub records a push: the stop
ends, and the push is in the order's delivery history.

On Python 3.11 (the services' image) a task cancelled while redis-py writes a command can
carry on as if nothing happened: `asyncio.wait_for`, around every command's write, returns
the write's result when the write ends in the same turn of the event loop as the
cancellation (CPython gh-86296, fixed in 3.12). The hub's stop cancelled its delivery
recorder once and waited for it: a recorder writing just then went back to wait for the
next push, and the stop waited for ever (the state machine's restart rule hung so). A
recorder the cancellation did reach dropped what it was writing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from services.notify import store
from services.notify.config import Settings
from services.notify.hub import Hub
from shared.bus import create_redis

from .conftest import ADMIN_TOKEN

STOP_BOUND_S = 30  # a stop takes milliseconds; past this one it never ends
# The push is noted 0, 1, ... turns of the event loop after the stop began: at one of them
# the recorder is writing as the stop ends it (which turn depends on redis-py's version)
TURNS = range(12)


@dataclass
class Stop:
    ended: bool
    noted_before_the_end: bool
    attempts: list[dict[str, Any]]


async def stop_while_a_push_is_noted(url: str, turns: int, *, settled: bool) -> Stop:
    """The hub stopped (`settled`: once it ran a moment, its fan-out listener waiting for
    messages; else just after its start) with a push noted `turns` turns into the stop."""
    settings = Settings(redis_url=url, admin_token=ADMIN_TOKEN)
    redis = create_redis(settings)
    hub = Hub(redis, ttl_s=settings.order_ttl_s)
    await hub.start()
    if settled:
        await redis.ping()
    order_id = f"ord-stop-{turns}"
    stopping = asyncio.create_task(hub.stop())
    try:
        for _ in range(turns):
            await asyncio.sleep(0)
        in_time = not stopping.done()
        hub._attempts.add(order_id, channel="websocket", outcome="sent", device_id="d1",
                          member_id="m1")
        done, _ = await asyncio.wait({stopping}, timeout=STOP_BOUND_S)
        if not done:
            return Stop(ended=False, noted_before_the_end=in_time, attempts=[])
        stopping.result()
        attempts = list((await store.deliveries(redis, order_id))["attempts"])
        return Stop(ended=True, noted_before_the_end=in_time, attempts=attempts)
    finally:
        if not stopping.done():  # the recorder carried on: cancelled again, it ends
            assert hub._attempt_writer is not None
            hub._attempt_writer.cancel()
            await stopping
        await redis.aclose(close_connection_pool=True)


@pytest.mark.parametrize("settled", [True, False], ids=["running", "just_started"])
async def test_a_hub_stopped_while_it_records_a_push_stops(clean_redis: str, settled: bool) -> None:
    for turns in TURNS:
        stop = await stop_while_a_push_is_noted(clean_redis, turns, settled=settled)
        assert stop.ended, f"the hub's stop never ended (the push noted {turns} turns in)"


@pytest.mark.parametrize("settled", [True, False], ids=["running", "just_started"])
async def test_a_push_noted_as_the_hub_stops_is_in_the_delivery_history(
        clean_redis: str, settled: bool) -> None:
    for turns in TURNS:
        stop = await stop_while_a_push_is_noted(clean_redis, turns, settled=settled)
        if not stop.noted_before_the_end:
            break  # the stop ends in fewer turns: a push after it is not the hub's to keep
        assert stop.ended
        assert [(a["channel"], a["outcome"], a["device_id"]) for a in stop.attempts] == [
            ("websocket", "sent", "d1")], f"the push noted {turns} turns into the stop"
