"""A receipt that reaches notify after its order ended (a page's delayed retry, a receipt
crossing the withdrawal) is kept in the order's record, never published: the command room's
timeline would show the team getting an order after it was taken back or finished."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderDelivered
from tests.helpers import poll_until, read_stream

from .conftest import ADMIN, Volunteers, an_order, device, issue, withdraw


def delivered(url: str) -> list[str]:
    return [e.order_id for e in read_stream(url, streams.ORDER_DELIVERED.name, OrderDelivered)]


async def test_a_receipt_after_the_order_ended_is_recorded_but_never_reaches_dispatch(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    withdrawn, resolved, live = an_order("t1"), an_order("t1"), an_order("t1")
    async with device(notify, member) as phone:
        for order in (withdrawn, resolved, live):
            await issue(broker, order)
            await phone.next_of("order", where=lambda f, o=order: f["order_id"] == o.order_id)
        await withdraw(broker, withdrawn)
        await phone.next_of("order_withdrawn")
        for order, answer in ((resolved, "resolved"), (live, "acknowledged")):
            r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                                headers=teammate.bearer, json={"response": answer})
            assert r.status_code == 200, r.text
        # the page's receipts, retried late: after the end of two of the orders
        for order in (withdrawn, resolved, live):
            await phone.send({"type": "received", "order_id": order.order_id})
        await phone.send({"type": "ping"})
        await phone.next_of("pong")  # frames are handled in order: the receipts are done
        # taken without a word: an error would make the page complain of an ended order
        assert [f for f in await phone.drain(0.5) if f["type"] == "error"] == []

    assert delivered(clean_redis) == [live.order_id]  # the live order's receipt only
    for order in (withdrawn, resolved):
        async def recorded(o: str = order.order_id) -> bool:
            r = await http.get(f"{notify}/v1/orders/{o}/deliveries", headers=ADMIN)
            return member.device_id in r.json()["received"]

        await poll_until(recorded, "the late receipt kept in the order's record")
        r = await http.get(f"{notify}/v1/orders/{order.order_id}/deliveries", headers=ADMIN)
        [late] = [a for a in r.json()["attempts"] if a["outcome"] == "received"]
        assert "after the order ended" in late["detail"]
