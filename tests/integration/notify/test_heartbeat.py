"""Backstops: heartbeats replay what Pub/Sub lost; open sockets re-check their token."""

from __future__ import annotations

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from services.notify import sockets, store

from .conftest import NotifyFactory, Volunteers, an_order, device, issue


async def test_an_order_whose_fan_out_was_lost_arrives_with_the_next_heartbeat(
        notify_factory: NotifyFactory, volunteers: Volunteers, clean_redis: str) -> None:
    member = volunteers.enrol("t1")
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        assert await phone.next_of("ping", timeout=2) == {"type": "ping"}
        # Stored as the consumer stores it, but its Pub/Sub message never went out.
        order = an_order("t1")
        redis = Redis.from_url(clean_redis, decode_responses=True)
        try:
            await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=None,
                                    ttl_s=60)
        finally:
            await redis.aclose()
        frame = await phone.next_of("order", timeout=2)
        assert frame["order_id"] == order.order_id
        later = await phone.drain(0.8)  # more heartbeats: it is not sent again
        assert [f for f in later if f["type"] == "order"] == []


async def test_a_teammates_answer_whose_fan_out_was_lost_is_told_by_the_next_heartbeat(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # A teammate acknowledged while this replica's fan-out listener was reconnecting (a
    # Redis restart): the `order_state` message was lost. The phone must not keep showing
    # the order as new, with Acknowledge and Decline, for as long as it lives.
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        # the answer's script publishes where nobody listens: a lost Pub/Sub message
        real = store.fanout_channel
        monkeypatch.setattr(store, "fanout_channel", lambda team_id: "nobody:listens")
        try:
            r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                                headers=teammate.bearer, json={"response": "acknowledged"})
        finally:
            monkeypatch.setattr(store, "fanout_channel", real)
        assert r.status_code == 200 and r.json()["state"] == "acknowledged", r.text
        frames = await phone.drain(1.5)  # about five heartbeats
        told = [f for f in frames if f["type"] == "order_state"
                and f["order_id"] == order.order_id]
        assert [(f["state"], f["response"]) for f in told] == [("acknowledged", "acknowledged")]
        assert [f for f in frames if f["type"] == "order"] == []  # no alarm again


async def test_a_socket_whose_token_stopped_working_is_closed_by_the_periodic_check(
        notify_factory: NotifyFactory, volunteers: Volunteers) -> None:
    member = volunteers.enrol("t1")
    async with notify_factory(ping_interval_s=0.2, reauth_interval_s=0.4) as notify, \
            device(notify, member) as phone:
        await phone.next_of("ping", timeout=2)
        volunteers.revoke(member)  # no device.revoked event: only the re-check can notice
        with pytest.raises(ConnectionClosed) as closed:
            await phone.next_of("never", timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_socket_whose_member_is_no_longer_police_is_closed_by_the_periodic_check(
        notify_factory: NotifyFactory, volunteers: Volunteers) -> None:
    # A roster import moved the team from a police agency to a security company (or made
    # its agency another kind): the member's phone keeps its team, so no event closes its
    # socket, which decided at connect that its member is police and so gets a police
    # order's caller and description. The re-check must see the kind too.
    member = volunteers.enrol("t1", agency_kind="police")
    async with notify_factory(ping_interval_s=0.2, reauth_interval_s=0.4) as notify, \
            device(notify, member) as phone:
        await phone.next_of("ping", timeout=2)
        member.agency_kind = "security"
        with pytest.raises(ConnectionClosed) as closed:
            await phone.next_of("never", timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409


async def test_sockets_that_connect_together_beat_at_their_own_phases(
        notify_factory: NotifyFactory, volunteers: Volunteers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of phones reconnecting at once (notify restarted) used to ping, replay and
    # re-check their tokens in step forever after: bursts of introspections to volunteers.
    phases = iter([0.1, 1.5])
    monkeypatch.setattr(sockets, "_first_beat_after", lambda interval_s: next(phases))
    early, late = volunteers.enrol("t1"), volunteers.enrol("t2")
    async with notify_factory(ping_interval_s=5.0) as notify, \
            device(notify, early) as first, device(notify, late) as second:
        # Each beats at its phase, long before the interval: not at connect + interval.
        assert await first.next_of("ping", timeout=1.2) == {"type": "ping"}
        assert [f for f in await second.drain(0.2, heartbeats=True) if f["type"] == "ping"] == []
        assert await second.next_of("ping", timeout=2.5) == {"type": "ping"}


async def test_a_heartbeat_sends_no_order_update_for_an_order_that_was_never_amended(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker) -> None:
    # Every place that records what a socket was told of an order's revision records the
    # same version (priority, flags, ack_by), or a heartbeat sends an update nobody made.
    member = volunteers.enrol("t1")
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        order = an_order("t1")
        await issue(broker, order)
        frame = await phone.next_of("order")
        assert frame["order_id"] == order.order_id
        await phone.send({"type": "received", "order_id": order.order_id})
        later = await phone.drain(1.2)  # about four heartbeats
        updates = [f for f in later if f["type"] == "order_update"]
        assert updates == [], updates
