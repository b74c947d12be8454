"""A new socket's first frame is its `hello`, and the connect loses no order and sends none twice.

A socket hears its team's fan-out from the moment it is attached, which takes a round trip
(the subscription) before the `hello` is queued: an order issued in that moment must wait
behind the `hello`, not reach the device as its first frame. The connect's replay reads the
team's open orders after the attach: an order issued around either reaches the device once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from services.notify import store
from services.notify.hub import Connection, Hub
from tests.helpers import poll_until

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, device, issue, ws_url


async def frames_until_pong(ws: ClientConnection, *, order_ids: set[str]) -> list[dict[str, Any]]:
    """Every frame, in order, until the orders came and a ping sent then was answered: frames
    go out in order, so whatever the connect queued for the socket came before the pong."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not order_ids <= {f.get("order_id") for f in frames if f["type"] == "order"}:
            frames.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"type": "ping"}))
        while not frames or frames[-1]["type"] != "pong":
            frames.append(json.loads(await ws.recv()))
    return [f for f in frames if f["type"] not in ("ping", "pong")]


async def test_an_order_issued_while_the_socket_attaches_comes_after_its_hello_once(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first socket of its team on the replica: the attach waits for Redis to confirm
    # the team's subscription. An order issued then reached the socket ahead of its hello;
    # a device built to DESIGN.md takes its first frame for the greeting.
    member = volunteers.enrol("t1")
    earlier, meanwhile = an_order("t1"), an_order("t1")
    attaching: list[Connection] = []
    release = asyncio.Event()
    attach = Hub.attach

    async def held_attach(hub: Hub, conn: Connection) -> None:
        await attach(hub, conn)  # registered and hearing the team's fan-out
        attaching.append(conn)
        await asyncio.wait_for(release.wait(), timeout=10)

    monkeypatch.setattr(Hub, "attach", held_attach)
    async with notify_factory(ping_interval_s=60) as notify:
        await issue(broker, earlier)  # before the connect: the replay's
        await poll_until(lambda: stored(http, notify, earlier.order_id), "the order stored")
        async with connect(ws_url(notify), additional_headers=member.bearer) as ws:
            await poll_until(lambda: attaching, "the socket attached")
            conn = attaching[0]
            await issue(broker, meanwhile)
            await poll_until(lambda: meanwhile.order_id in conn.sent,
                             "the order pushed to the attaching socket")
            release.set()
            frames = await frames_until_pong(
                ws, order_ids={earlier.order_id, meanwhile.order_id})

    assert frames[0]["type"] == "hello", frames
    assert [f["type"] for f in frames].count("hello") == 1
    orders = [f["order_id"] for f in frames if f["type"] == "order"]
    assert sorted(orders) == sorted([earlier.order_id, meanwhile.order_id]), frames


async def test_an_order_issued_while_the_connect_replay_reads_arrives_once_after_hello(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay read the team's open orders without the new one; the order is published
    # after that read, to a socket already hearing the fan-out: it comes by Pub/Sub, once.
    member = volunteers.enrol("t1")
    earlier, meanwhile = an_order("t1"), an_order("t1")
    attached: list[Connection] = []
    attach = Hub.attach

    async def noting_attach(hub: Hub, conn: Connection) -> None:
        await attach(hub, conn)
        attached.append(conn)

    read_open = store.open_orders
    reads = 0

    async def issued_once_read(redis: Redis, team_id: str, most: int) -> store.LiveOrders:
        nonlocal reads
        records = await read_open(redis, team_id, most=most)
        reads += 1
        if reads == 1:  # the connect's replay
            assert meanwhile.order_id not in {r.order_id for r in records}
            await issue(broker, meanwhile)
            conn = attached[0]
            await poll_until(lambda: meanwhile.order_id in conn.sent,
                             "the order pushed by the fan-out")
        return records

    monkeypatch.setattr(Hub, "attach", noting_attach)
    async with notify_factory(ping_interval_s=60) as notify:
        await issue(broker, earlier)
        await poll_until(lambda: stored(http, notify, earlier.order_id), "the order stored")
        monkeypatch.setattr(store, "open_orders", issued_once_read)
        async with connect(ws_url(notify), additional_headers=member.bearer) as ws:
            frames = await frames_until_pong(
                ws, order_ids={earlier.order_id, meanwhile.order_id})

    assert reads >= 1
    assert frames[0]["type"] == "hello", frames
    orders = [f["order_id"] for f in frames if f["type"] == "order"]
    assert sorted(orders) == sorted([earlier.order_id, meanwhile.order_id]), frames


async def test_a_socket_of_a_team_already_heard_gets_its_hello_first_too(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A teammate's socket is open on the replica, so the team's subscription is there: the
    # new socket is heard at once; an order issued before its hello still waits behind it.
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    order = an_order("t1")
    attaching: list[Connection] = []
    release = asyncio.Event()
    attach = Hub.attach

    async def held_attach(hub: Hub, conn: Connection) -> None:
        await attach(hub, conn)
        if conn.device_id == member.device_id:
            attaching.append(conn)
            await asyncio.wait_for(release.wait(), timeout=10)

    monkeypatch.setattr(Hub, "attach", held_attach)
    async with notify_factory(ping_interval_s=60) as notify, device(notify, teammate) as other:
        async with connect(ws_url(notify), additional_headers=member.bearer) as ws:
            await poll_until(lambda: attaching, "the socket attached")
            await issue(broker, order)
            await other.next_of("order")
            await poll_until(lambda: order.order_id in attaching[0].sent,
                             "the order pushed to the attaching socket")
            release.set()
            frames = await frames_until_pong(ws, order_ids={order.order_id})

    assert frames[0]["type"] == "hello", frames
    assert [f["order_id"] for f in frames if f["type"] == "order"] == [order.order_id]


async def stored(http: httpx.AsyncClient, notify: str, order_id: str) -> bool:
    r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
    return r.status_code == 200
