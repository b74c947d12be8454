"""A member's check-out ends their own stint; the team's shift ends with its last member.

A patrol of three: one goes home at 21:00, the other two stay on the street. Their phones
must keep their orders, dispatch must keep the team, and the one who left must earn and
lose nothing of what the team does after (against a real Redis)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from faststream.redis import RedisBroker

from shared.events import Location, OrderIssued, OrderResponded, OrderWithdrawn, UnitStatus, utcnow

from .conftest import ADMIN, Volunteers
from .test_points import backdate

FIX = {"lat": 22.031, "lon": 108.031}


def order(order_id: str = "ord_1", *, ack_in_s: float | None = None) -> OrderIssued:
    ack_by = utcnow() + timedelta(seconds=ack_in_s) if ack_in_s is not None else None
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id="t-vol", agency_kind="volunteer", category="traffic",
                       priority="P3", location=Location(lat=22.03, lon=108.03), ack_by=ack_by)


async def team_state(v: Volunteers) -> dict[str, Any]:
    return (await v.client.get("/v1/teams/t-vol", headers=ADMIN)).json()["state"]


async def statuses(v: Volunteers) -> list[tuple[str, bool, str | None]]:
    return [(e.status, e.on_shift, e.order_id)
            for e in await v.events("unit.status", UnitStatus) if e.unit_id == "t-vol"]


async def history(v: Volunteers, device: dict[str, str]) -> list[tuple[str, float]]:
    r = await v.client.get("/v1/me/points", headers=device)
    assert r.status_code == 200, r.text
    return sorted((e["reason"], e["points"]) for e in r.json()["history"])


async def checked_in(v: Volunteers, device: dict[str, str]) -> bool:
    r = await v.client.get("/v1/me", headers=device)
    assert r.status_code == 200, r.text
    return bool(r.json()["checked_in"])


async def wang_and_chen_on_shift(v: Volunteers) -> tuple[dict[str, str], dict[str, str]]:
    await v.import_district()
    wang, chen = await v.enrol("m-wang"), await v.enrol("m-chen")
    for device in (wang, chen):
        assert (await v.client.post("/v1/me/shift/start", headers=device)).status_code == 200
    return wang, chen


async def test_a_member_checking_out_leaves_the_shift_and_the_teammates_stay_on_duty(
        volunteers: Volunteers) -> None:
    v = volunteers
    wang, chen = await wang_and_chen_on_shift(v)
    await backdate(v, "t-vol", "m-wang", 2)
    published = await statuses(v)

    out = await v.client.post("/v1/me/shift/end", headers=wang)
    assert out.status_code == 200, out.text
    body = out.json()
    # what her page needs to tell her: she is out, the team's shift goes on with Chen
    assert (body["on_shift"], body["status"], body["shift_member_ids"]) == (
        True, "available", ["m-chen"])
    assert body["checked_out"] is True
    assert body["points_awarded"] == 10  # her own 2 h, paid now

    state = await team_state(v)
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "available", True, ["m-chen"])
    assert await statuses(v) == published  # dispatch sees the same team, still available
    assert await checked_in(v, chen) and not await checked_in(v, wang)
    # Chen's phone still moves the team; Wang's, on her way home, does not
    assert (await v.client.put("/v1/me/position", json=FIX, headers=chen)).status_code == 200
    assert (await v.client.put("/v1/me/position", json=FIX, headers=wang)).status_code == 409
    assert await history(v, wang) == [("patrol", 10)]
    assert await history(v, chen) == []  # his stint goes on, unpaid until it ends


async def test_the_last_member_checking_out_ends_the_shift_and_dispatch_hears_it(
        volunteers: Volunteers) -> None:
    v = volunteers
    wang, chen = await wang_and_chen_on_shift(v)
    assert (await v.client.post("/v1/me/shift/end", headers=wang)).status_code == 200
    await backdate(v, "t-vol", "m-chen", 1)

    out = await v.client.post("/v1/me/shift/end", headers=chen)
    assert out.status_code == 200, out.text
    body = out.json()
    assert (body["checked_out"], body["on_shift"], body["status"]) == (True, False, "off_duty")
    assert body["shift_member_ids"] == [] and body["points_awarded"] == 5
    assert (await statuses(v))[-1] == ("off_duty", False, None)


async def test_a_member_may_leave_a_team_holding_an_order_and_the_one_still_on_it_carries_it(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    v = volunteers
    wang, chen = await wang_and_chen_on_shift(v)
    await publisher.publish(order("ord_1"), stream="order.issued")
    await v.consumed("order.issued")

    await backdate(v, "t-vol", "m-wang", 1)
    out = await v.client.post("/v1/me/shift/end", headers=wang)
    assert out.status_code == 200, out.text
    assert (out.json()["status"], out.json()["shift_member_ids"]) == ("dispatched", ["m-chen"])
    assert (await statuses(v))[-1] == ("dispatched", True, "ord_1")

    # Chen, the last on the shift, may not leave the order without anybody: as before
    refused = await v.client.post("/v1/me/shift/end", headers=chen)
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "dispatched" in message and "ord_1" in message and "last on its shift" in message
    assert (await team_state(v))["shift_member_ids"] == ["m-chen"]

    # Chen resolves it: the resolution is his alone, Wang had gone home
    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_1", incident_id="inc_ord_1", team_id="t-vol",
        member_id="m-chen", response="resolved"), stream="order.responded")
    await v.consumed("order.responded")
    assert await history(v, chen) == [("resolved_order", 10)]
    assert await history(v, wang) == [("patrol", 5)]
    assert (await team_state(v))["status"] == "available"

    end = await v.client.post("/v1/me/shift/end", headers=chen)
    assert end.status_code == 200 and end.json()["on_shift"] is False
    assert (await statuses(v))[-1] == ("off_duty", False, None)


async def test_a_deadline_missed_after_a_member_left_costs_only_those_still_on_the_shift(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    v = volunteers
    wang, chen = await wang_and_chen_on_shift(v)
    await publisher.publish(order("ord_m", ack_in_s=600), stream="order.issued")
    await v.consumed("order.issued")
    await backdate(v, "t-vol", "m-wang", 1)
    assert (await v.client.post("/v1/me/shift/end", headers=wang)).status_code == 200

    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_m", incident_id="inc_ord_m", team_id="t-vol",
        reason="timeout", delivered=True), stream="order.withdrawn")
    await v.consumed("order.withdrawn")
    assert await history(v, chen) == [("missed_order", -2)]
    assert await history(v, wang) == [("patrol", 5)]


async def test_a_member_not_checked_in_takes_nobody_off_duty_by_checking_out(
        volunteers: Volunteers) -> None:
    # Chen's phone shows the team on shift (Wang checked in); he never did. His check-out
    # (or a retry of one whose answer was lost) changes nothing for Wang.
    v = volunteers
    await v.import_district()
    wang, chen = await v.enrol("m-wang"), await v.enrol("m-chen")
    assert (await v.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    published = await statuses(v)

    out = await v.client.post("/v1/me/shift/end", headers=chen)
    assert out.status_code == 200, out.text
    assert (out.json()["on_shift"], out.json()["shift_member_ids"]) == (True, ["m-wang"])
    assert out.json()["checked_out"] is False
    assert await statuses(v) == published
    assert await checked_in(v, wang)


async def test_status_off_duty_still_takes_the_whole_team_off_and_pays_everyone(
        volunteers: Volunteers) -> None:
    v = volunteers
    wang, chen = await wang_and_chen_on_shift(v)
    await backdate(v, "t-vol", "m-wang", 1)
    await backdate(v, "t-vol", "m-chen", 1)
    r = await v.client.put("/v1/me/status", json={"status": "off_duty"}, headers=chen)
    assert r.status_code == 200 and r.json()["on_shift"] is False
    assert (await statuses(v))[-1] == ("off_duty", False, None)
    assert await history(v, wang) == [("patrol", 5)]
    assert await history(v, chen) == [("patrol", 5)]
