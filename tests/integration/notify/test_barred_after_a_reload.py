"""A page that did not show an order when its team was taken off it because a weapon was
reported (reloaded while the 4G was down, a browser restarted, a teammate's second phone
connecting later) is warned all the same when it connects: the volunteer may be standing at
the scene. Once per device: after the member has read the warning (`warning_read`), a
reconnect says nothing more; and only for a bounded time after the withdrawal (against a
real Redis and notify's real sockets)."""

from __future__ import annotations

import asyncio

import httpx
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderWithdrawn
from tests.helpers import poll_until

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, device, issue
from .test_barred_withdrawal import barred


async def withdrawn(http: httpx.AsyncClient, notify: str, order_id: str) -> bool:
    r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
    return r.status_code == 200 and r.json()["withdrawn"]


def warnings(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f["type"] == "order_withdrawn"]


async def test_a_reloaded_page_is_warned_until_its_member_has_read_it(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1", agency_kind="volunteer")
    teammate = volunteers.enrol("t1", agency_kind="volunteer")
    order = an_order("t1", agency_kind="volunteer", category="help_request")
    async with notify_factory(ping_interval_s=0.3) as notify:
        async with device(notify, member) as phone:
            await issue(broker, order)
            await phone.next_of("order")
            await phone.send({"type": "response", "order_id": order.order_id,
                              "response": "on_scene"})
            await phone.next_of("order_state")
        # on scene, the phone offline; the browser reloads (its list of orders is gone);
        # meanwhile the caller rang back: a knife, volunteers taken off
        await barred(broker, order)
        await poll_until(lambda: withdrawn(http, notify, order.order_id), "withdrawn")

        async with device(notify, member) as phone:  # the reloaded page: holds nothing
            told = await phone.next_of("order_withdrawn", timeout=3)
            assert told["order_id"] == order.order_id
            assert told["barred_by"] == ["weapon"]
            # what the page needs to say which scene: it no longer has the order
            assert told["order"]["address"] == "Minzu Ave 88"
            assert told["order"]["category"] == "help_request"
            assert told["withdrawn_at"]
            # told once on this socket, not at every heartbeat
            assert not warnings(await phone.drain(1.0))

        async with device(notify, member) as phone:  # not read yet: warned again
            await phone.next_of("order_withdrawn", timeout=3)
            await phone.send({"type": "warning_read", "order_id": order.order_id})
            assert not [f for f in await phone.drain(0.5) if f["type"] == "error"]

        async with device(notify, member) as phone:  # read: a reconnect says nothing
            assert not warnings(await phone.drain(1.0))

        async with device(notify, teammate) as other:  # another phone of the team: warned
            told = await other.next_of("order_withdrawn", timeout=3)
            assert told["order_id"] == order.order_id and told["barred_by"] == ["weapon"]


async def test_a_page_that_was_told_live_is_not_told_twice_on_the_same_socket(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker) -> None:
    member = volunteers.enrol("t1", agency_kind="volunteer")
    order = an_order("t1", agency_kind="volunteer")
    async with notify_factory(ping_interval_s=0.3) as notify, device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        await barred(broker, order)
        await phone.next_of("order_withdrawn", timeout=5)
        assert not warnings(await phone.drain(1.0))


async def test_no_warning_for_a_withdrawal_without_a_flag_or_of_another_team(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1", agency_kind="volunteer")
    ours = an_order("t1", agency_kind="volunteer")
    theirs = an_order("t2", agency_kind="volunteer")
    async with notify_factory(ping_interval_s=60) as notify:
        await issue(broker, ours)
        await issue(broker, theirs)
        await broker.publish(
            OrderWithdrawn(district=ours.district, order_id=ours.order_id,
                           incident_id=ours.incident_id, team_id=ours.team_id,
                           reason="closed"), stream=streams.ORDER_WITHDRAWN.name)
        await barred(broker, theirs)
        for o in (ours, theirs):
            await poll_until(lambda o=o: withdrawn(http, notify, o.order_id), "withdrawn")
        async with device(notify, member) as phone:
            assert not warnings(await phone.drain(1.0))


async def test_no_warning_once_the_withdrawal_is_long_past(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1", agency_kind="volunteer")
    order = an_order("t1", agency_kind="volunteer")
    async with notify_factory(ping_interval_s=60, barred_warning_s=1) as notify:
        await issue(broker, order)
        await barred(broker, order)
        await poll_until(lambda: withdrawn(http, notify, order.order_id), "withdrawn")
        await asyncio.sleep(1.5)  # the warning's time (BARRED_WARNING_S) is over
        async with device(notify, member) as phone:
            assert not warnings(await phone.drain(1.0))
