"""Two notify replicas on one Redis: need to know holds on every path a frame takes to a
phone, and an order that ended is not told of again (real Redis, real sockets)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import redis as redis_sync
from faststream.redis import RedisBroker

from shared import streams
from shared.events import Caller, OrderAmended, OrderIssued, OrderResponded
from tests.helpers import poll_until, read_stream

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, device, issue

CALLER = Caller(phone="13877001234", name="Ms Liang")
DESCRIPTION = "her ex-husband is at the door with a knife"


def caller_data(frame: dict[str, Any]) -> list[str]:
    """What of the caller, in any form, a frame carries."""
    text = str(frame)
    return [x for x in ("caller", "description", CALLER.phone, CALLER.name, DESCRIPTION)
            if x and x in text]


def responded(url: str) -> list[OrderResponded]:
    return read_stream(url, streams.ORDER_RESPONDED.name, OrderResponded)


def handled_all(url: str, stream: str) -> bool:
    """Whether notify's group has read and acknowledged every entry of `stream`."""
    client = redis_sync.Redis.from_url(url)  # bytes: the entries are binary envelopes
    try:
        last = client.xrevrange(stream, count=1)
        group = next(g for g in client.xinfo_groups(stream) if g["name"] == b"notify")
        return bool(last) and group["last-delivered-id"] == last[0][0] and group["pending"] == 0
    finally:
        client.close()


async def stored(http: httpx.AsyncClient, notify: str, order_id: str) -> None:
    async def known() -> bool:
        r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
        return r.status_code == 200
    await poll_until(known, f"notify has stored {order_id}")


async def test_a_team_no_longer_police_gets_no_caller_data_on_any_replica(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    # A roster import moved team t1 from the police to a security company (its members
    # given guard roles). The orders it holds were issued to a police team, with the caller
    # and the description; a guard's phone connecting now must get neither, in any frame:
    # the unanswered order replayed, the taken one shown as it stands, nor a new order that
    # dispatch issued before its projection heard of the change.
    officer = volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        one = await exits.enter_async_context(notify_factory())
        two = await exits.enter_async_context(notify_factory())
        taken = an_order("t1", caller=CALLER, description=DESCRIPTION)
        waiting = an_order("t1", caller=CALLER, description=DESCRIPTION)
        async with device(one, officer) as phone:
            for order in (taken, waiting):
                await issue(broker, order)
                assert caller_data(await phone.next_of(
                    "order", where=lambda f, o=order: f["order_id"] == o.order_id))
        r = await http.post(f"{one}/v1/orders/{taken.order_id}/responses",
                            headers=officer.bearer, json={"response": "acknowledged"})
        assert r.status_code == 200, r.text

        for member in volunteers.members.values():  # the import: t1 is security now
            member.agency_kind = "security"
        guard = volunteers.enrol("t1", agency_kind="security")
        phone = await exits.enter_async_context(device(two, guard))
        replayed = await phone.next_of("order")
        assert replayed["order_id"] == waiting.order_id
        assert caller_data(replayed) == []
        shown = await phone.next_of("order_state")
        assert shown["order_id"] == taken.order_id and shown["order"]["order_id"] == taken.order_id
        assert caller_data(shown) == []

        late = an_order("t1", caller=CALLER, description=DESCRIPTION)  # agency_kind police
        await issue(broker, late)
        frame = await phone.next_of("order", where=lambda f: f["order_id"] == late.order_id)
        assert caller_data(frame) == []


async def amend(broker: RedisBroker, order: OrderIssued) -> None:
    await broker.publish(OrderAmended(
        district=order.district, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, priority="P1", flags=("weapon",)),
        stream=streams.ORDER_AMENDED.name)


async def test_an_order_the_team_ended_is_not_revised_on_its_phones(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, clean_redis: str) -> None:
    # The command room raised the incident to P1 (a knife) as the team's answer ended its
    # order: dispatch, not having read the answer yet, amended the order it still took for
    # live. The phones, on either replica, must not ring for an order that is over.
    a, b = volunteers.enrol("t1"), volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        one = await exits.enter_async_context(notify_factory())
        two = await exits.enter_async_context(notify_factory())
        phone_a = await exits.enter_async_context(device(one, a))
        phone_b = await exits.enter_async_context(device(two, b))
        declined, resolved = an_order("t1"), an_order("t1")
        answers = {declined.order_id: {"response": "declined", "note": "van broken down"},
                   resolved.order_id: {"response": "resolved"}}
        for order in (declined, resolved):
            await issue(broker, order)
            await stored(http, one, order.order_id)
            r = await http.post(f"{two}/v1/orders/{order.order_id}/responses",
                                headers=b.bearer, json=answers[order.order_id])
            assert r.status_code == 200, r.text
            for phone in (phone_a, phone_b):
                await phone.next_of("order_state",
                                    where=lambda f, o=order: f["order_id"] == o.order_id)

        for order in (declined, resolved):
            await amend(broker, order)
        await poll_until(lambda: handled_all(clean_redis, streams.ORDER_AMENDED.name),
                         "notify has handled both amendments")
        for phone in (phone_a, phone_b):
            assert [f for f in await phone.drain(0.3) if f["type"] == "order_update"] == []
        for order in (declined, resolved):
            r = await http.get(f"{one}/v1/orders/{order.order_id}", headers=ADMIN)
            assert r.json()["state"] == answers[order.order_id]["response"]


async def test_answers_crossing_on_two_replicas_reach_dispatch_once_and_every_phone_agrees(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, clean_redis: str) -> None:
    # Two members of one team, their phones on two replicas, answer the same order at the
    # same moment: one acknowledges over HTTP at replica one (and again on its socket at
    # replica two), the other declines on its socket at replica two. Dispatch hears one
    # answer; the loser is refused, and both phones end up showing the winner's.
    a, b = volunteers.enrol("t1"), volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        one = await exits.enter_async_context(notify_factory())
        two = await exits.enter_async_context(notify_factory())
        phone_a = await exits.enter_async_context(device(two, a))
        phone_b = await exits.enter_async_context(device(two, b))
        order = an_order("t1")
        await issue(broker, order)
        for phone in (phone_a, phone_b):
            await phone.next_of("order")

        await phone_b.send({"type": "response", "order_id": order.order_id,
                            "response": "declined", "note": "van broken down"})
        await phone_a.send({"type": "response", "order_id": order.order_id,
                            "response": "acknowledged"})
        r = await http.post(f"{one}/v1/orders/{order.order_id}/responses",
                            headers=a.bearer, json={"response": "acknowledged"})
        await poll_until(lambda: responded(clean_redis), "an order.responded")
        await phone_a.send({"type": "ping"})
        await phone_a.next_of("pong")
        await phone_b.send({"type": "ping"})
        await phone_b.next_of("pong")
        [event] = responded(clean_redis)
        final = (await http.get(f"{one}/v1/orders/{order.order_id}", headers=ADMIN)).json()
        assert final["state"] == event.response
        assert r.status_code == (200 if event.response == "acknowledged" else 409), r.text
        for phone in (phone_a, phone_b):
            told = [f for f in await phone.drain(0.3)
                    if f["type"] == "order_state" and f["order_id"] == order.order_id]
            assert told and told[-1]["state"] == event.response
