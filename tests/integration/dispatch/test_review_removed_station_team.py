"""Review of the hand-on of a removed station team's orders: the removal and the team's own
answers come on two streams, so dispatch may read the removal first (a backlog of answers,
dispatch back after an outage). A station team that filed its case and was then removed
from the roster has filed it: the case is not handed on to another team as unfiled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderResponded
from tests.helpers import poll_until

from .conftest import settings_for
from .test_handover import handover_orders
from .test_station_orders_of_a_removed_team import (
    handed_over_to,
    incident,
    station_team_removed,
    timer_due,
    withdrawn,
)
from .test_take_back import respond


def answers_of_an_order_held_until_its_removed_timer_fired(
        monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], list[str]]:
    """Dispatch's answers to the order named in the dict returned (key "order") handled
    only once that order's `removed:` timer has fired once, as when the answer waits behind
    a backlog; the timers of that order fired, in order."""
    hold: dict[str, str] = {}
    fired: list[str] = []
    one_fired = asyncio.Event()
    real_fire: Callable[..., Awaitable[Any]] = Dispatcher.fire_timer
    real_answer: Callable[..., Awaitable[None]] = Dispatcher.on_order_responded

    async def fire(engine: Dispatcher, member: str) -> Any:
        try:
            return await real_fire(engine, member)
        finally:
            if hold.get("order") and member == f"removed:{hold['order']}":
                fired.append(member)
                one_fired.set()

    async def answer(engine: Dispatcher, event: OrderResponded) -> None:
        if event.order_id == hold.get("order"):
            # bounded: a timer that never fires fails the asserts, not hangs the test
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(one_fired.wait(), 10)
        await real_answer(engine, event)

    monkeypatch.setattr(Dispatcher, "fire_timer", fire)
    monkeypatch.setattr(Dispatcher, "on_order_responded", answer)
    return hold, fired


async def test_a_station_team_that_filed_its_case_and_was_then_removed_keeps_it_filed(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The station's car files the handed-over noise case (resolves its hand-over order),
    # then the admin removes the team from the roster. Dispatch reads the removal before
    # the filing (two streams): the order must not be withdrawn and the case handed to the
    # station's other car as unfiled, nor the filing lost.
    hold, fired = answers_of_an_order_held_until_its_removed_timer_fired(monkeypatch)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        app = create_app(settings_for(clean_redis))
        async with app.router.lifespan_context(app):
            incident_id, station = await handed_over_to(
                clean_redis, publisher, ("station-car", 22.8300), ("station-car-2", 22.8400))
            assert station.team_id == "station-car"
            hold["order"] = station.order_id
            await respond(publisher, station, "acknowledged", "resolved")
            await station_team_removed(publisher, "station-car")
            await poll_until(lambda: client.xpending(streams.ORDER_RESPONDED.name, "dispatch")
                             ["pending"] == 0 and client.xinfo_groups(
                                 streams.ORDER_RESPONDED.name)[0]["lag"] == 0,
                             "the station's answers handled", 30)
            await poll_until(lambda: timer_due(clean_redis, f"removed:{station.order_id}")
                             is None, "the removed team's order looked at", 30)
            fields = incident(clean_redis, incident_id)
            orders = handover_orders(clean_redis, incident_id)
            gone = withdrawn(clean_redis, station.order_id)
    finally:
        client.close()
    assert fired and fired[0] == f"removed:{station.order_id}"  # the removal came first
    assert orders == [("station-car", "resolved")]
    assert gone == []
    assert fields["status"] == "resolved"
    assert fields.get("handover_order", "") in ("", station.order_id)
