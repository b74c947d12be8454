"""Backstops: heartbeats replay what Pub/Sub lost; open sockets re-check their token."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from services.notify import store

from .conftest import NotifyFactory, Volunteers, an_order, device


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
