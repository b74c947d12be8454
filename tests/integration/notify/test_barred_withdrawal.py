"""An order taken back from a volunteer team because the incident's flags now bar volunteers
(a weapon reported: dispatch's `barred_by`) tells the team's phones why, on the socket and
when a page that was away comes back: a volunteer on scene must learn of the knife and leave,
not read "do not go" alone (against a real Redis and notify's real sockets)."""

from __future__ import annotations

import json

import httpx
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderIssued, OrderWithdrawn
from tests.helpers import poll_until

from .conftest import ADMIN, Gateway, NotifyFactory, Volunteers, an_order, device, issue
from .test_fallback import settings_for


async def barred(broker: RedisBroker, order: OrderIssued) -> None:
    await broker.publish(
        OrderWithdrawn(district=order.district, order_id=order.order_id,
                       incident_id=order.incident_id, team_id=order.team_id,
                       reason="reassigned", barred_by=("weapon",)),
        stream=streams.ORDER_WITHDRAWN.name,
    )


async def test_a_phone_on_the_socket_is_told_the_flag_that_took_its_team_off(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory() as notify, device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        await phone.send({"type": "response", "order_id": order.order_id,
                          "response": "on_scene"})
        await phone.next_of("order_state")
        await barred(broker, order)
        told = await phone.next_of("order_withdrawn", timeout=5)
        assert told == {"type": "order_withdrawn", "order_id": order.order_id,
                        "barred_by": ["weapon"]}


async def test_a_page_back_after_a_drop_is_told_the_flag_too(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")

    async def withdrawn() -> bool:
        r = await http.get(f"{notify}/v1/orders/{order.order_id}", headers=ADMIN)
        return r.status_code == 200 and r.json()["withdrawn"]

    async with notify_factory(ping_interval_s=60) as notify:
        async with device(notify, member) as phone:
            await issue(broker, order)
            await phone.next_of("order")
        # the 4G dropped; meanwhile the caller rang back: a knife, volunteers taken off
        await barred(broker, order)
        await poll_until(withdrawn, "withdrawn")
        async with device(notify, member) as phone:
            await phone.send({"type": "holding", "order_ids": [order.order_id]})
            told = await phone.next_of("order_withdrawn", timeout=3)
            assert told["barred_by"] == ["weapon"]


async def test_an_order_taken_back_for_another_reason_names_no_flag(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory() as notify, device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        await broker.publish(
            OrderWithdrawn(district=order.district, order_id=order.order_id,
                           incident_id=order.incident_id, team_id=order.team_id,
                           reason="closed"), stream=streams.ORDER_WITHDRAWN.name)
        told = await phone.next_of("order_withdrawn", timeout=5)
        assert told == {"type": "order_withdrawn", "order_id": order.order_id}


async def test_a_volunteer_texted_the_order_is_texted_the_weapon_and_to_leave(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # The page closed, a flaky 4G: the volunteer had the order by SMS and set off. The
    # second SMS said "withdrawn, do not go" alone, to someone who may be there already.
    member = volunteers.enrol("t1", agency_kind="volunteer")
    settings = settings_for(gateway, 0.2)
    settings.pop("vapid_private_key")  # SMS only
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": "+8613800000001"})
        assert r.status_code == 200, r.text
        order = an_order("t1", agency_kind="volunteer", category="help_request")
        await issue(broker, order)
        await poll_until(lambda: gateway.at("/sms"), "the order's SMS")

        await barred(broker, order)

        texts = await poll_until(lambda: gateway.at("/sms")[1:], "a second SMS")
        body = json.loads(texts[0].body)
        assert body["kind"] == "withdrawn" and body["order_id"] == order.order_id
        assert "持械" in body["text"] and "立即离开" in body["text"], body["text"]
