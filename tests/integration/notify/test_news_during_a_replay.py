"""News of an order that reaches a connecting socket while its replay reads the team's open orders.

A socket hears its team's fan-out from the moment it is attached; its replay then reads the
team's open orders and sends those it has not had. A teammate's answer or a revision told in
between reaches a socket that does not have the order yet, and the replay then sends the order
as it read it, before the news: the page must still end up showing the order as it stands
(against a real Redis and notify's real sockets, the page's view followed frame by frame).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from services.notify.hub import Hub, withdrawn_message
from shared import streams
from shared.events import OrderAmended
from tests.helpers import poll_until

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, device, issue


def shown(frames: list[dict[str, Any]], order_id: str) -> dict[str, Any] | None:
    """The order as the member's page shows it after `frames` (services/notify/page.py):
    an `order` frame shows it as new, an `order_state` carrying the order shows it where it
    stands; news of an order the page does not show is dropped."""
    view: dict[str, Any] | None = None
    for frame in frames:
        if frame.get("order_id") != order_id:
            continue
        kind = frame["type"]
        if kind == "order":
            if view is None:
                view = {"state": "issued", "priority": frame["priority"],
                        "flags": frame["flags"]}
            else:
                view.update(priority=frame["priority"], flags=frame["flags"])
        elif kind == "order_state":
            if view is None and "order" in frame:
                view = {"state": frame["state"], "priority": frame["order"]["priority"],
                        "flags": frame["order"]["flags"]}
            elif view is not None:
                view["state"] = frame["state"]
        elif kind == "order_update" and view is not None:
            view.update(priority=frame["priority"], flags=frame["flags"])
        elif kind == "order_withdrawn" and view is not None:
            view["state"] = "withdrawn"
    return view


def news_during_the_replay(monkeypatch: pytest.MonkeyPatch, *, told: str,
                           make_news: Callable[[], Awaitable[None]]) -> None:
    """Makes `make_news` happen once the connect's replay has read the team's open orders,
    and returns to the replay only when the socket's replica has heard it (fan-out `told`)."""
    heard = asyncio.Event()
    dispatch = Hub._dispatch

    async def noting(hub: Hub, message: dict[str, Any]) -> None:
        await dispatch(hub, message)
        if message.get("type") == "message" and f'"event": "{told}"' in str(message["data"]):
            heard.set()

    read_open = store.open_orders

    async def news_after_read(redis: Redis, team_id: str, most: int) -> store.LiveOrders:
        records = await read_open(redis, team_id, most=most)
        if records and not heard.is_set():
            await make_news()
            await asyncio.wait_for(heard.wait(), timeout=10)
        return records

    monkeypatch.setattr(Hub, "_dispatch", noting)
    monkeypatch.setattr(store, "open_orders", news_after_read)


async def frames_until_pong(phone: Any) -> list[dict[str, Any]]:
    """Every frame the connect sent: frames go out in order, so all came before the pong."""
    await phone.send({"type": "ping"})
    await phone.next_of("pong")
    frames, phone.frames = phone.frames, []
    return frames


async def stored(http: httpx.AsyncClient, notify: str, order_id: str) -> bool:
    r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
    return r.status_code == 200


async def test_a_teammates_answer_while_a_phone_is_replayed_shows_the_order_taken(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The phone reconnects as a teammate acknowledges the order: the teammate's answer reaches
    # the new socket before the order does, then the replay sends the order as it read it,
    # unanswered. The page showed it NEW, with its alarm, to be acknowledged again, until a
    # heartbeat a minute later.
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory(ping_interval_s=60) as notify:

        async def acknowledged_by_teammate() -> None:
            r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                                headers=teammate.bearer, json={"response": "acknowledged"})
            assert r.status_code == 200, r.text

        await issue(broker, order)
        await poll_until(lambda: stored(http, notify, order.order_id), "the order stored")
        news_during_the_replay(monkeypatch, told="state", make_news=acknowledged_by_teammate)
        async with device(notify, member) as phone:
            frames = await frames_until_pong(phone)

    view = shown(frames, order.order_id)
    assert view is not None and view["state"] == "acknowledged", frames


async def test_a_revision_while_a_phone_is_replayed_shows_the_order_as_revised(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The caller rings back (a knife) as the phone reconnects: the command room raises the
    # incident to P1 with `weapon`. The revision reaches the new socket before the order does,
    # and is dropped there; the replay then sends the order as it read it, P2 without the
    # weapon, and the member goes unwarned until a heartbeat a minute later.
    member = volunteers.enrol("t1", agency_kind="security")
    order = an_order("t1", agency_kind="security", priority="P2", flags=())

    async def raised() -> None:
        await broker.publish(OrderAmended(
            district=order.district, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, priority="P1", flags=("weapon",)),
            stream=streams.ORDER_AMENDED.name)

    async with notify_factory(ping_interval_s=60) as notify:
        await issue(broker, order)
        await poll_until(lambda: stored(http, notify, order.order_id), "the order stored")
        news_during_the_replay(monkeypatch, told="amended", make_news=raised)
        async with device(notify, member) as phone:
            frames = await frames_until_pong(phone)

    view = shown(frames, order.order_id)
    assert view == {"state": "issued", "priority": "P1", "flags": ["weapon"]}, frames


async def test_a_withdrawal_heard_while_two_replays_run_keeps_the_order_off_the_phone(
        notify_factory: NotifyFactory, volunteers: Volunteers, clean_redis: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A heartbeat's replay reads the team's open orders: one the socket never had (its
    # fan-out lost). Before it sends it, the order is withdrawn (the socket hears it), and the
    # page's `holding` frame runs a second replay, which found the order gone and forgot it
    # was told ended. The first replay then sent the withdrawn order as new and live.
    member = volunteers.enrol("t1")
    order = an_order("t1")
    redis = Redis.from_url(clean_redis, decode_responses=True)
    paused, release, held_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    withdrawal_heard = asyncio.Event()
    dispatch, holding = Hub._dispatch, Hub.holding

    async def noting(hub: Hub, message: dict[str, Any]) -> None:
        await dispatch(hub, message)
        if message.get("type") == "message" and '"event": "withdrawn"' in str(message["data"]):
            withdrawal_heard.set()

    async def noting_holding(hub: Hub, conn: Any, order_ids: list[str]) -> None:
        await holding(hub, conn, order_ids)
        held_done.set()

    read_open = store.open_orders

    async def withdrawn_after_read(redis_: Redis, team_id: str, most: int) -> store.LiveOrders:
        records = await read_open(redis_, team_id, most=most)
        if order.order_id in {r.order_id for r in records} and not paused.is_set():
            await store.withdraw_order(
                redis, order_id=order.order_id, team_id=order.team_id,
                incident_id=order.incident_id, district=order.district, reason="timeout",
                ttl_s=600, fan_out=withdrawn_message(order.order_id))
            await asyncio.wait_for(withdrawal_heard.wait(), timeout=10)
            paused.set()
            await asyncio.wait_for(release.wait(), timeout=10)
        return records

    monkeypatch.setattr(Hub, "_dispatch", noting)
    monkeypatch.setattr(Hub, "holding", noting_holding)
    monkeypatch.setattr(store, "open_orders", withdrawn_after_read)
    try:
        async with notify_factory(ping_interval_s=0.5) as notify, device(notify, member) as phone:
            await phone.send({"type": "ping"})  # answered once the connect's replay is done
            await phone.next_of("pong")
            # stored with its fan-out lost: the socket gets it from a heartbeat's replay
            await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=None,
                                    ttl_s=600)
            await asyncio.wait_for(paused.wait(), timeout=10)
            await phone.send({"type": "holding", "order_ids": []})
            await asyncio.wait_for(held_done.wait(), timeout=10)
            release.set()
            await phone.send({"type": "ping"})
            await phone.next_of("pong")
            frames = [f for f in await phone.drain(1.0) if f.get("order_id") == order.order_id]
    finally:
        await redis.aclose()
    assert not [f for f in frames if f["type"] in ("order", "order_state")], frames
