"""A check-out by a member no longer on the shift changes nothing, also while the team holds
an order: it is answered 200 (`checked_out` false), not refused as if it ended the shift.

Against a real Redis: a check-out whose answer was lost, retried after the command room
called the (now off-duty) team in; a check-out after the member's check-in ran out while the
team was on an order."""

from __future__ import annotations

from faststream.redis import RedisBroker

from .conftest import Volunteers
from .test_checking_out import history, order, statuses, team_state
from .test_points import backdate


async def test_a_retried_check_out_after_the_team_was_called_in_is_answered_as_a_repeat(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    v = volunteers
    await v.import_district()
    wang = await v.enrol("m-wang")
    assert (await v.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    first = await v.client.post("/v1/me/shift/end", headers=wang)  # its answer lost
    assert first.status_code == 200 and first.json()["on_shift"] is False
    # the command room calls the off-duty team in
    await publisher.publish(order("ord_call"), stream="order.issued")
    await v.consumed("order.issued")
    published = await statuses(v)

    retry = await v.client.post("/v1/me/shift/end", headers=wang)
    assert retry.status_code == 200, retry.text
    assert retry.json()["checked_out"] is False
    assert [o["order_id"] for o in retry.json()["open_orders"]] == ["ord_call"]
    assert await statuses(v) == published
    assert (await team_state(v))["status"] == "dispatched"


async def test_checking_out_after_the_check_in_ran_out_on_an_order_ends_it_and_is_not_refused(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    v = volunteers
    await v.import_district()
    wang = await v.enrol("m-wang")
    assert (await v.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    await publisher.publish(order("ord_long"), stream="order.issued")
    await v.consumed("order.issued")
    await backdate(v, "t-vol", "m-wang", 17)  # past MAX_PATROL_HOURS + grace, not swept yet

    out = await v.client.post("/v1/me/shift/end", headers=wang)
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["checked_out"] is False  # her check-in had already ended, at the cap
    assert body["shift_member_ids"] == [] and body["status"] == "dispatched"
    assert await history(v, wang) == [("patrol", 70)]  # paid to the 14 h cap, once
    again = await v.client.post("/v1/me/shift/end", headers=wang)
    assert again.status_code == 200, again.text
    assert await history(v, wang) == [("patrol", 70)]
