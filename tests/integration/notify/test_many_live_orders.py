"""A team with more live orders than one replay sends (a police station's hand-over orders
acknowledged and waiting weeks to be filed, a backlog after an outage) still gets every
order nobody has answered when a phone connects (against a real Redis and notify's real
sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from services.notify.domain.orders import state_frame
from services.notify.domain.responses import Decision, decide_response
from services.notify.hub import state_message, withdrawn_message
from shared.events import OrderIssued, OrderResponded, Response, utcnow
from tests.helpers import poll_until
from tools.benchmarks.monitor import CommandCounter

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, device, issue


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def stored(redis: Redis, *orders: OrderIssued) -> None:
    """The orders as notify stores an order.issued, their fan-out gone long ago."""
    await store.save_orders(redis, [store.NewOrder(o, {}) for o in orders],
                            fallback_after_s=None, ttl_s=600)


async def answered(redis: Redis, order: OrderIssued, response: Response = "acknowledged"
                   ) -> None:
    """The station desk's answer as notify applies it (and tells the team's sockets)."""
    def decide(record: store.OrderRecord) -> tuple[Decision, OrderResponded | None]:
        decision = decide_response(state=record.state, response=response,
                                   last_reinforce_at=None, now=utcnow(), reinforce_repeat_s=30)
        return decision, OrderResponded(
            district=record.district, order_id=record.order_id,
            incident_id=record.incident_id, team_id=record.team_id, member_id="mem_desk",
            device_id="dev_desk", response=response)

    def fan_out(decision: Decision) -> str:
        return state_message(state_frame(order.order_id, state=decision.state, answered=True,
                                         response=response), origin=None)
    outcome = await store.apply_response(
        redis, order.order_id, decide=decide, fan_out=fan_out, response=response,
        member_id="mem_desk", device_id="dev_desk", ttl_s=600)
    assert outcome is not None and outcome.event_id is not None


async def hand_overs_waiting_to_be_filed(redis: Redis, team_id: str, count: int
                                         ) -> list[OrderIssued]:
    """`count` orders the station acknowledged, oldest first (each issued after the last)."""
    orders = [an_order(team_id, category="dispute", priority="P3") for _ in range(count)]
    for order in orders:
        await stored(redis, order)
        await answered(redis, order)
    return orders


async def test_a_phone_connecting_gets_a_new_order_behind_two_hundred_taken_ones(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        redis: Redis, http: httpx.AsyncClient) -> None:
    # The station's desk has 200 hand-overs acknowledged and not yet filed; a fight is
    # ordered to the station while the duty officer's phone is out of reach.
    member = volunteers.enrol("station")
    hand_overs = await hand_overs_waiting_to_be_filed(redis, "station", 200)
    fight = an_order("station", category="fight", priority="P1")
    async with notify_factory(ping_interval_s=60) as notify:
        await issue(broker, fight)

        async def known() -> bool:
            r = await http.get(f"{notify}/v1/orders/{fight.order_id}", headers=ADMIN)
            return r.status_code == 200
        await poll_until(known, "the fight's order stored")
        async with device(notify, member) as phone:  # the phone is back
            order = await phone.next_of("order", timeout=5)
            assert (order["order_id"], order["priority"]) == (fight.order_id, "P1")
            # with as many of the hand-overs as a replay sends, and how many it left out
            told = await phone.next_of("orders_left_out")
            assert (told["count"], told["unanswered"]) == (101, 0)
            taken = [f for f in phone.frames if f["type"] in ("order", "order_state")]
            newest = hand_overs[-(store.REPLAY_MOST - 1):]
            assert [f["order_id"] for f in taken] == [o.order_id for o in newest]
            assert all(f["state"] == "acknowledged" for f in taken)


async def test_a_phone_is_told_when_no_live_order_is_left_out_any_more(
        notify_factory: NotifyFactory, volunteers: Volunteers, redis: Redis) -> None:
    member = volunteers.enrol("station")
    hand_overs = await hand_overs_waiting_to_be_filed(redis, "station", store.REPLAY_MOST + 2)
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        told = await phone.next_of("orders_left_out")
        assert (told["count"], told["unanswered"]) == (2, 0)
        await answered(redis, hand_overs[0], "resolved")  # the station files two
        await answered(redis, hand_overs[1], "resolved")
        told = await phone.next_of("orders_left_out", timeout=5,  # at a heartbeat
                                   where=lambda f: f["count"] == 0)
        assert told["unanswered"] == 0
        # a heartbeat between the two answers may have told one left out first
        between = [f for f in phone.frames if f["type"] == "orders_left_out"]
        assert all((f["count"], f["unanswered"]) == (1, 0) for f in between)
        phone.frames = [f for f in phone.frames if f["type"] != "orders_left_out"]
        # told once, not at every heartbeat
        assert not [f for f in await phone.drain(1.0) if f["type"] == "orders_left_out"]


async def test_a_team_with_no_order_left_out_is_told_nothing_of_it(
        notify_factory: NotifyFactory, volunteers: Volunteers, redis: Redis) -> None:
    member = volunteers.enrol("station")
    await hand_overs_waiting_to_be_filed(redis, "station", store.REPLAY_MOST)
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        frames = await phone.drain(1.0)
        assert len([f for f in frames if f["type"] == "order_state"]) == store.REPLAY_MOST
        assert not [f for f in frames if f["type"] == "orders_left_out"]


async def test_a_page_holding_a_taken_order_the_replay_left_out_is_not_told_it_ended(
        notify_factory: NotifyFactory, volunteers: Volunteers, redis: Redis) -> None:
    # A small send queue: a replay sends 10 orders at most. The page still shows the oldest
    # hand-over, acknowledged and live, that the replay now leaves out.
    member = volunteers.enrol("station")
    oldest, *_ = await hand_overs_waiting_to_be_filed(redis, "station", 12)
    async with notify_factory(ping_interval_s=0.3, send_queue=20) as notify, \
            device(notify, member) as phone:
        told = await phone.next_of("orders_left_out")
        assert (told["count"], told["unanswered"]) == (2, 0)
        assert oldest.order_id not in {f.get("order_id") for f in phone.frames}
        await phone.send({"type": "holding", "order_ids": [oldest.order_id]})
        later = await phone.drain(1.0)  # the holding frame's replay, and heartbeats'
        assert not [f for f in later if f.get("order_id") == oldest.order_id]


async def test_a_replay_chooses_the_unanswered_orders_first_the_newest_first(
        redis: Redis) -> None:
    old_taken, new_taken = await hand_overs_waiting_to_be_filed(redis, "t1", 2)
    waiting = [an_order("t1") for _ in range(5)]
    for order in waiting:  # each issued after the last
        await stored(redis, order)
    live = await store.open_orders(redis, "t1", most=3)
    assert [r.order_id for r in live] == [o.order_id for o in waiting[2:]]  # oldest first
    assert (live.left_out, live.unanswered_left_out) == (4, 2)
    assert live[0].order == waiting[2] and not live[0].answered
    live = await store.open_orders(redis, "t1", most=6)
    assert [r.order_id for r in live] == [new_taken.order_id, *(o.order_id for o in waiting)]
    assert (live.left_out, live.unanswered_left_out) == (1, 0)
    assert live[0].state == "acknowledged" and live[0].answered
    live = await store.open_orders(redis, "t1")
    assert [r.order_id for r in live] == [o.order_id for o in (old_taken, new_taken, *waiting)]
    assert (live.left_out, live.unanswered_left_out) == (0, 0)


async def test_a_replay_takes_the_orders_that_ended_or_expired_out_of_the_open_set(
        redis: Redis) -> None:
    kept, filed, gone, withdrawn, declined = await hand_overs_waiting_to_be_filed(redis, "t1", 5)
    await answered(redis, filed, "resolved")
    await redis.delete(store._order(gone.order_id))  # expired
    await store.withdraw_order(redis, order_id=withdrawn.order_id, team_id="t1",
                               incident_id=withdrawn.incident_id, district="d1",
                               reason="timeout", ttl_s=600,
                               fan_out=withdrawn_message(withdrawn.order_id))
    await redis.hset(store._order(declined.order_id), "state", "declined")  # left in the set
    waiting = an_order("t1")
    await stored(redis, waiting)
    live = await store.open_orders(redis, "t1", most=1)
    assert [r.order_id for r in live] == [waiting.order_id]
    assert (live.left_out, live.unanswered_left_out) == (1, 0)
    assert await redis.zrange(store._open("t1"), 0, -1) == [kept.order_id, waiting.order_id]


async def test_a_replay_reads_the_team_s_live_orders_in_one_command_however_many(
        redis: Redis, clean_redis: str) -> None:
    await hand_overs_waiting_to_be_filed(redis, "t1", 150)
    await stored(redis, an_order("t1"))
    notify = Redis.from_url(clean_redis, decode_responses=True, client_name="notify")
    try:
        await notify.ping()  # connected (and named) before counting starts
        counter = CommandCounter(clean_redis)
        counter.start()
        try:
            live = await store.open_orders(notify, "t1")
        finally:
            sent = counter.stop()
    finally:
        await notify.aclose()
    assert (len(live), live.left_out) == (store.REPLAY_MOST, 51)
    assert sum(sent["notify"].values()) == 1, sent["notify"]
