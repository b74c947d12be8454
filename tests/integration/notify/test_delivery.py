"""Orders reach every connected member of the team, once; reconnects replay what is unanswered."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime, timedelta

import httpx
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared import streams
from shared.events import Caller, OrderAmended, OrderDelivered, OrderIssued, utcnow
from tests.helpers import poll_until, read_stream

from .conftest import ADMIN, Volunteers, an_order, device, devices, issue, withdraw


async def test_an_order_reaches_every_member_of_its_team_and_no_one_else(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    a, b = volunteers.enrol("t-police"), volunteers.enrol("t-police")
    guard = volunteers.enrol("t-sec", agency_kind="security")
    async with AsyncExitStack() as exits:
        phone_a, phone_b, phone_guard = await devices(exits, notify, a, b, guard)
        order = an_order("t-police", caller=Caller(phone="13877001234", name="Ms Liang"),
                         description="two neighbours arguing")
        await issue(broker, order)

        for phone in (phone_a, phone_b):
            frame = await phone.next_of("order")
            assert frame["order_id"] == order.order_id
            assert frame["incident_id"] == order.incident_id
            assert (frame["category"], frame["priority"], frame["kind"]) == ("dispute", "P2",
                                                                             "dispatch")
            assert frame["location"] == {"lat": 22.817, "lon": 108.3665}
            assert frame["address"] == "Minzu Ave 88" and frame["instructions"] == "north gate"
            assert frame["flags"] == ["in_progress"]
            assert frame["caller"] == {"phone": "13877001234", "name": "Ms Liang"}
            assert frame["description"] == "two neighbours arguing"
        assert await phone_guard.drain(0.5) == []

        # An order to a security team never carries caller data, even when the event does.
        sec_order = an_order("t-sec", agency_kind="security", caller=Caller(phone="13877001234"),
                             description="private")
        await issue(broker, sec_order)
        frame = await phone_guard.next_of("order")
        assert frame["order_id"] == sec_order.order_id
        assert "caller" not in frame and "description" not in frame


async def test_each_device_confirms_receipt_once(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str) -> None:
    a, b = volunteers.enrol("t1"), volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        phone_a, phone_b = await devices(exits, notify, a, b)
        order = an_order("t1")
        await issue(broker, order)
        await phone_a.next_of("order")
        await phone_b.next_of("order")
        for _ in range(3):
            await phone_a.send({"type": "received", "order_id": order.order_id})
        await phone_b.send({"type": "received", "order_id": order.order_id})

        def delivered() -> list[OrderDelivered]:
            return read_stream(clean_redis, streams.ORDER_DELIVERED.name, OrderDelivered)

        await poll_until(lambda: len(delivered()) >= 2, "two order.delivered events")
        await phone_a.drain(0.5)
        events = delivered()
        assert sorted(e.device_id for e in events) == sorted([a.device_id, b.device_id])
        assert {(e.order_id, e.team_id, e.channel) for e in events} == {
            (order.order_id, "t1", "websocket")}
        assert {e.member_id for e in events} == {a.member_id, b.member_id}


async def test_a_redelivered_order_issued_is_stored_and_pushed_once(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    member = volunteers.enrol("t1")
    async with device(notify, member) as phone:
        order = an_order("t1")
        await issue(broker, order)
        await issue(broker, order)  # at-least-once: the same order again
        await issue(broker, order.model_copy(update={"event_id": "another-delivery"}))
        first = await phone.next_of("order")
        assert first["order_id"] == order.order_id
        assert [f for f in await phone.drain(1.0) if f["type"] == "order"] == []
    # and a reconnect offers it once
    async with device(notify, member) as phone:
        assert [f["order_id"] for f in await phone.drain(0.5) if f["type"] == "order"] == [
            order.order_id]


async def test_a_reconnect_replays_unanswered_orders_tells_of_taken_ones_never_ended_ones(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    answered, unanswered, withdrawn, resolved = (an_order("t1"), an_order("t1"),
                                                 an_order("t1"), an_order("t1"))
    # Issued while no device of the team is connected.
    for order in (answered, unanswered, withdrawn, resolved):
        await issue(broker, order)

    async with device(notify, member) as phone:
        got = set()
        for _ in range(4):
            got.add((await phone.next_of("order"))["order_id"])
        assert got == {answered.order_id, unanswered.order_id, withdrawn.order_id,
                       resolved.order_id}
        await phone.send({"type": "response", "order_id": resolved.order_id,
                          "response": "resolved"})
        await phone.next_of("order_state", where=lambda f: f["order_id"] == resolved.order_id)
        await phone.send({"type": "received", "order_id": answered.order_id})
        await phone.send({"type": "response", "order_id": answered.order_id,
                          "response": "acknowledged"})
        state = await phone.next_of("order_state")
        assert state == {"type": "order_state", "order_id": answered.order_id,
                         "state": "acknowledged", "answered": True, "response": "acknowledged"}
        await withdraw(broker, withdrawn)
        assert (await phone.next_of("order_withdrawn")) == {"type": "order_withdrawn",
                                                             "order_id": withdrawn.order_id}

    # Another member of the team, then the same member again (a reloaded page): the order
    # still to answer, as an order, and the one the team is working on as where it stands,
    # with the order to show (not an order sent again: no alarm), so that it can still be
    # answered from there; never the ended or the withdrawn one.
    for who, state, answer in ((teammate, "acknowledged", "on_scene"),
                               (member, "on_scene", "resolved")):
        async with device(notify, who, query=True) as phone:
            frames = await phone.drain(0.7)
            assert [f["order_id"] for f in frames if f["type"] == "order"] == [
                unanswered.order_id]
            [taken] = [f for f in frames if f["type"] == "order_state"]
            assert (taken["order_id"], taken["state"], taken["answered"]) == (
                answered.order_id, state, True)
            assert taken["order"]["order_id"] == answered.order_id
            assert taken["order"]["location"]["lat"] == answered.location.lat
            await phone.send({"type": "response", "order_id": answered.order_id,
                              "response": answer})
            await phone.next_of("order_state", where=lambda f, a=answer: f["state"] == a)
    async with device(notify, teammate, query=True) as phone:  # the worked order has ended
        frames = [f for f in await phone.drain(0.7) if f["type"] == "order"]
        assert [f["order_id"] for f in frames] == [unanswered.order_id]


async def test_an_order_withdrawn_before_notify_saw_it_issued_is_never_offered(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    await withdraw(broker, order, reason="closed")

    async def withdrawn() -> bool:
        r = await http.get(f"{notify}/v1/orders/{order.order_id}", headers=ADMIN)
        return r.status_code == 200 and r.json()["state"] == "withdrawn"

    await poll_until(withdrawn, "the withdrawal recorded")
    async with device(notify, member) as phone:
        await issue(broker, order)
        assert [f for f in await phone.drain(1.0) if f["type"] == "order"] == []
    r = await http.get(f"{notify}/v1/orders/{order.order_id}", headers=ADMIN)
    assert r.json()["state"] == "withdrawn"


async def test_an_order_issued_longer_ago_than_notify_keeps_orders_never_reaches_a_phone(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    # Streams are kept RETENTION_DAYS (30), orders ORDER_TTL_S (14 days): a group that reads
    # order.issued again from 0 (re-created), or a replayed dead letter, brings orders notify
    # has forgotten. They are acknowledged and dropped, not rung as new; so is an amendment
    # of one (it would otherwise be retried into a dead letter).
    member = volunteers.enrol("t1")
    stale = an_order("t1", occurred_at=utcnow() - timedelta(days=15))
    async with device(notify, member) as phone:
        await issue(broker, stale)
        await amend(broker, stale, "P1", ("weapon",), "stale-amendment",
                    at=utcnow() - timedelta(days=15))
        fresh = an_order("t1")
        await issue(broker, fresh)
        assert (await phone.next_of("order"))["order_id"] == fresh.order_id
        assert [f for f in await phone.drain(0.5) if f["type"] == "order"] == []

    async def acknowledged() -> bool:  # read to the end, nothing pending
        for stream in (streams.ORDER_ISSUED.name, streams.ORDER_AMENDED.name):
            [last] = await redis.xrevrange(stream, count=1)
            [group] = [g for g in await redis.xinfo_groups(stream) if g["name"] == b"notify"]
            if group["pending"] or group["last-delivered-id"] != last[0]:
                return False
        return True

    redis = Redis.from_url(clean_redis)  # bytes: the entries are binary envelopes
    try:
        await poll_until(acknowledged, "both acknowledged")
        assert not await redis.exists(streams.ORDER_AMENDED.dead_letters)
    finally:
        await redis.aclose()
    r = await http.get(f"{notify}/v1/orders/{stale.order_id}", headers=ADMIN)
    assert r.status_code == 404  # never stored


async def amend(broker: RedisBroker, order: OrderIssued, priority: str,
                flags: tuple[str, ...], event_id: str, at: datetime | None = None,
                escort: str | None = None) -> None:
    await broker.publish(OrderAmended(
        event_id=event_id, district=order.district, order_id=order.order_id,
        incident_id=order.incident_id, team_id=order.team_id, priority=priority,  # type: ignore[arg-type]
        flags=flags, occurred_at=at or utcnow(), escort=escort),  # type: ignore[arg-type]
        stream=streams.ORDER_AMENDED.name)


async def test_volunteers_alone_on_a_p1_are_told_to_wait_and_then_that_an_escort_is_sent(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    # dispatch's order.issued says no police or security is on the way yet; its
    # order.amended, once one is: the phones that have the order, and those that connect
    # later, show it as it stands.
    a, b = volunteers.enrol("t-vol", agency_kind="volunteer"), volunteers.enrol("t-vol",
                                                                                 agency_kind="volunteer")
    async with AsyncExitStack() as exits:
        [phone_a] = await devices(exits, notify, a)
        order = an_order("t-vol", agency_kind="volunteer", category="medical", priority="P1",
                         flags=("injury",), escort="awaited")
        await issue(broker, order)
        assert (await phone_a.next_of("order"))["escort"] == "awaited"
        await amend(broker, order, "P1", ("injury",), "escort-sent", escort="sent")
        update = await phone_a.next_of("order_update")
        assert (update["priority"], update["flags"], update["escort"]) == ("P1", ["injury"],
                                                                           "sent")
        [phone_b] = await devices(exits, notify, b)  # a teammate's phone, connecting now
        assert (await phone_b.next_of("order"))["escort"] == "sent"
        # a revision of priority or flags alone (no `escort`) leaves what it said
        await amend(broker, order, "P1", ("injury", "weapon"), "weapon")
        assert (await phone_a.next_of("order_update"))["escort"] == "sent"
        # lowered below P1: nothing to say of an escort any more
        await amend(broker, order, "P2", ("injury", "weapon"), "lowered", escort="none")
        update = await phone_a.next_of("order_update")
        assert (update["priority"], update["escort"]) == ("P2", None)
    async with device(notify, volunteers.enrol("t-vol", agency_kind="volunteer")) as phone:
        assert "escort" not in await phone.next_of("order")


async def test_an_amendment_retried_after_a_later_one_is_not_applied_over_it(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    # The command room raised the order to P1, then lowered it to P3; the first amendment
    # failed once and is retried after the second: the order stays as last revised.
    member, later = volunteers.enrol("t1", agency_kind="security"), volunteers.enrol("t1")
    order = an_order("t1", agency_kind="security", priority="P4", flags=())
    async with device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        raised_at = utcnow()
        await amend(broker, order, "P3", (), "lowered", at=raised_at + timedelta(seconds=5))
        assert (await phone.next_of("order_update"))["priority"] == "P3"
        await amend(broker, order, "P1", ("weapon",), "raised", at=raised_at)  # the retry
        assert [f for f in await phone.drain(0.5) if f["type"] == "order_update"] == []
    async with device(notify, later) as phone:  # what is stored: the last revision
        frame = await phone.next_of("order")
        assert (frame["priority"], frame["flags"]) == ("P3", [])


async def test_a_revised_order_reaches_the_phones_that_have_it_and_those_that_connect_later(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    a, b = volunteers.enrol("t1", agency_kind="security"), volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        [phone_a] = await devices(exits, notify, a)
        order = an_order("t1", agency_kind="security", priority="P4", flags=())
        await issue(broker, order)
        assert (await phone_a.next_of("order"))["priority"] == "P4"

        await amend(broker, order, "P1", ("weapon",), "amended-1")
        update = await phone_a.next_of("order_update")
        assert update == {"type": "order_update", "order_id": order.order_id,
                          "priority": "P1", "flags": ["weapon"], "escort": None}
        await amend(broker, order, "P1", ("weapon",), "amended-1")  # delivered again
        [phone_b] = await devices(exits, notify, b)  # a teammate's phone, connecting now
        frame = await phone_b.next_of("order")
        assert (frame["priority"], frame["flags"]) == ("P1", ["weapon"])
        assert [f for f in await phone_a.drain(0.5) if f["type"] == "order_update"] == []

        await withdraw(broker, order)
        await phone_a.next_of("order_withdrawn")
        await amend(broker, order, "P2", (), "amended-2")  # over: nobody is told
        assert [f for f in await phone_a.drain(0.5) if f["type"] == "order_update"] == []
