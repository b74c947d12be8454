"""Several notify replicas: a device on any replica gets its team's orders (fan-out via Redis)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from faststream.redis import RedisBroker

from .conftest import NotifyFactory, Volunteers, an_order, device, issue, withdraw


async def test_devices_on_two_replicas_get_the_order_that_one_replica_consumed(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker) -> None:
    a, b = volunteers.enrol("t1"), volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        one = await exits.enter_async_context(notify_factory())
        two = await exits.enter_async_context(notify_factory())
        phone_a = await exits.enter_async_context(device(one, a))
        phone_b = await exits.enter_async_context(device(two, b))

        orders = [an_order("t1") for _ in range(4)]  # the group spreads them over replicas
        for order in orders:
            await issue(broker, order)
        for phone in (phone_a, phone_b):
            got = [(await phone.next_of("order"))["order_id"] for _ in orders]
            assert sorted(got) == sorted(o.order_id for o in orders)
            assert [f for f in await phone.drain(0.5) if f["type"] == "order"] == []

        # An answer on one replica reaches the teammate's socket on the other.
        await phone_b.send({"type": "response", "order_id": orders[0].order_id,
                            "response": "acknowledged"})
        seen = await phone_a.next_of("order_state")
        assert (seen["order_id"], seen["state"], seen["answered"]) == (
            orders[0].order_id, "acknowledged", True)
        # the answering socket gets its reply once, not again through the fan-out
        assert (await phone_b.next_of("order_state"))["order_id"] == orders[0].order_id
        assert [f for f in await phone_b.drain(0.5) if f["type"] == "order_state"] == []

        await withdraw(broker, orders[1])
        for phone in (phone_a, phone_b):
            assert (await phone.next_of("order_withdrawn"))["order_id"] == orders[1].order_id
