"""What a reporting system's follow-up adds to an incident ("he has a knife now") reaches the
police team already on it with an order.amended (its `description`), on the phones that have
the order and on those that connect later; never a guard's or a volunteer's phone (need to
know), even should an amendment carry it to another team's order."""

from __future__ import annotations

from contextlib import AsyncExitStack

from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderAmended, OrderIssued, utcnow

from .conftest import Volunteers, an_order, device, devices, issue

FIRST = "two men fighting outside the bank"
NOW = FIRST + "\nhe has a knife now"


async def amend_words(broker: RedisBroker, order: OrderIssued, event_id: str) -> None:
    await broker.publish(OrderAmended(
        event_id=event_id, district=order.district, order_id=order.order_id,
        incident_id=order.incident_id, team_id=order.team_id, priority=order.priority,
        flags=order.flags, ack_by=order.ack_by, description=NOW, occurred_at=utcnow()),
        stream=streams.ORDER_AMENDED.name)


async def test_a_follow_ups_words_reach_the_police_phones_that_have_the_order_and_later_ones(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    a, b = volunteers.enrol("t-police"), volunteers.enrol("t-police")
    order = an_order("t-police", description=FIRST)
    async with AsyncExitStack() as exits:
        [phone_a] = await devices(exits, notify, a)
        await issue(broker, order)
        assert (await phone_a.next_of("order"))["description"] == FIRST
        await amend_words(broker, order, "words-1")
        update = await phone_a.next_of("order_update")
        assert update["description"] == NOW
        assert (update["priority"], update["flags"]) == (order.priority, list(order.flags))
        [phone_b] = await devices(exits, notify, b)  # a teammate's phone, connecting now
        assert (await phone_b.next_of("order"))["description"] == NOW


async def test_a_follow_ups_words_never_reach_a_guards_phone(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    guard, later = (volunteers.enrol("t-guard", agency_kind="security"),
                    volunteers.enrol("t-guard", agency_kind="security"))
    order = an_order("t-guard", agency_kind="security", priority="P2")
    async with device(notify, guard) as phone:
        await issue(broker, order)
        assert "description" not in await phone.next_of("order")
        await amend_words(broker, order, "words-guard")
        frames = await phone.drain(1.0)
        assert not any("description" in f or "knife" in str(f) for f in frames), frames
    async with device(notify, later) as phone:
        frame = await phone.next_of("order")
        assert "description" not in frame and "knife" not in str(frame)
