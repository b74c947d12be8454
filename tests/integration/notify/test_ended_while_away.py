"""A phone is told of every order it shows that has ended, also when the news never reached
it: the order was withdrawn while it was away, or the withdrawal's Pub/Sub message was lost
(against a real Redis and notify's real sockets)."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from services.notify.hub import amended_message, withdrawn_message
from shared.events import OrderIssued, utcnow
from tests.helpers import poll_until

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, device, issue, withdraw


async def withdrawn(http: httpx.AsyncClient, notify: str, order_id: str) -> bool:
    r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
    return r.status_code == 200 and r.json()["withdrawn"]


async def withdraw_losing_the_message(url: str, order: OrderIssued) -> None:
    """notify's own withdrawal script, its PUBLISH to a channel nobody listens on: what a
    Pub/Sub message lost (a Redis restart, the listener resubscribing) looks like."""
    redis = Redis.from_url(url, decode_responses=True)
    try:
        await redis.eval(store._WITHDRAW, 8, store._order(order.order_id),
                         store._open(order.team_id), store.FALLBACK, "nobody:listens",
                         *store._records(order.order_id),
                         order.order_id, order.team_id, order.incident_id, order.district,
                         "reassigned", "600", utcnow().isoformat(),
                         withdrawn_message(order.order_id), repr(utcnow().timestamp()))
    finally:
        await redis.aclose()


async def test_a_page_back_after_a_drop_is_told_the_order_it_shows_was_withdrawn(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory(ping_interval_s=60) as notify:
        async with device(notify, member) as phone:
            await issue(broker, order)
            await phone.next_of("order")  # the page shows it
        # the phone lost its socket (a tunnel); meanwhile the deadline passed: withdrawn
        await withdraw(broker, order)
        await poll_until(lambda: withdrawn(http, notify, order.order_id), "withdrawn")
        async with device(notify, member) as phone:  # the page reconnects, keeping its list
            await phone.send({"type": "holding", "order_ids": [order.order_id]})
            told = await phone.next_of("order_withdrawn", timeout=3)
            assert told["order_id"] == order.order_id
            # named again (another reconnect of the same page), nothing is said twice
            await phone.send({"type": "holding", "order_ids": [order.order_id]})
            assert not [f for f in await phone.drain(0.5) if f["type"] == "order_withdrawn"]


async def test_a_lost_withdrawal_of_an_acknowledged_order_is_told_by_the_heartbeat(
        notify_factory: NotifyFactory, volunteers: Volunteers, clean_redis: str,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        await phone.send({"type": "response", "order_id": order.order_id,
                          "response": "acknowledged"})
        await phone.next_of("order_state")
        await withdraw_losing_the_message(clean_redis, order)
        assert await withdrawn(http, notify, order.order_id)
        told = await phone.next_of("order_withdrawn", timeout=3)  # at the next heartbeat
        assert told["order_id"] == order.order_id


async def test_a_page_is_not_told_of_another_teams_order(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    theirs = an_order("t2")
    await issue(broker, theirs)
    await withdraw(broker, theirs)
    member = volunteers.enrol("t1")
    async with notify_factory(ping_interval_s=60) as notify, device(notify, member) as phone:
        await poll_until(lambda: withdrawn(http, notify, theirs.order_id), "withdrawn")
        await phone.send({"type": "holding", "order_ids": [theirs.order_id]})
        assert not [f for f in await phone.drain(0.5) if f.get("order_id") == theirs.order_id]


async def test_a_lost_amendment_is_told_by_the_heartbeat(
        notify_factory: NotifyFactory, volunteers: Volunteers, clean_redis: str,
        broker: RedisBroker) -> None:
    # The caller rang back (a knife): the order was amended to P1 with `weapon`, and the
    # fan-out message was lost. The phone must not keep the old priority.
    member = volunteers.enrol("t1", agency_kind="security")
    order = an_order("t1", agency_kind="security", priority="P4", flags=())
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        await issue(broker, order)
        assert (await phone.next_of("order"))["priority"] == "P4"
        amended = order.model_copy(update={"priority": "P1", "flags": ("weapon",)})
        redis = Redis.from_url(clean_redis, decode_responses=True)
        try:  # notify's own amendment script, its PUBLISH to a channel nobody listens on
            await store.run_script(redis, store._AMEND,
                                   [store._order(order.order_id), "nobody:listens",
                                    store.FALLBACK],
                                   [amended.model_dump_json(), utcnow().isoformat(),
                                    amended_message(amended), repr(utcnow().timestamp()),
                                    "", order.order_id])
        finally:
            await redis.aclose()
        update = await phone.next_of("order_update", timeout=3)  # at the next heartbeat
        assert (update["priority"], update["flags"]) == ("P1", ["weapon"])
        later = await phone.drain(1.0)  # told once, not at every heartbeat
        assert not [f for f in later if f["type"] in ("order_update", "order")]
