"""A check-in nobody ends (the phone died, the member forgot) ends by itself at the patrol cap,
as a check-out would have: team status, unit.status, patrol points up to the cap and nothing
after it; done by volunteers' own sweep, across restarts and replicas (against a real Redis).

Time is driven by checking in "hours ago" (the check-in route's clock, patched for that one
request) and by the settings (`MAX_PATROL_HOURS`, `CHECKIN_GRACE_HOURS`, `CHECKIN_SWEEP_S`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from faststream.redis import RedisBroker

from services.volunteers.api import me as me_api
from shared.events import Location, OrderIssued, OrderResponded, OrderWithdrawn, UnitStatus, utcnow
from tests.helpers import poll_until as poll_every

from .conftest import ADMIN, Volunteers, poll_until, running
from .test_points import backdate

WAIT_S = 30.0  # the machine is shared and loaded: generous bounds, polled
FAST = {"checkin_sweep_s": 0.1}


@pytest.fixture
async def swept(clean_redis: str) -> AsyncIterator[Volunteers]:
    async with running(clean_redis, **FAST) as service:
        yield service


async def check_in_hours_ago(v: Volunteers, device: dict[str, str], hours: float,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The member checks in, as if it were `hours` ago."""
    with monkeypatch.context() as m:
        m.setattr(me_api, "utcnow", lambda: utcnow() - timedelta(hours=hours))
        response = await v.client.post("/v1/me/shift/start", headers=device)
    assert response.status_code == 200, response.text


async def me(v: Volunteers, device: dict[str, str]) -> dict[str, Any]:
    response = await v.client.get("/v1/me", headers=device)
    assert response.status_code == 200, response.text
    return response.json()


async def team_state(v: Volunteers, team_id: str = "t-vol") -> dict[str, Any]:
    return (await v.client.get(f"/v1/teams/{team_id}", headers=ADMIN)).json()["state"]


async def points(v: Volunteers, device: dict[str, str]) -> dict[str, Any]:
    response = await v.client.get("/v1/me/points", headers=device)
    assert response.status_code == 200, response.text
    return response.json()


async def statuses(v: Volunteers, team_id: str = "t-vol") -> list[tuple[str, bool]]:
    return [(e.status, e.on_shift) for e in await v.events("unit.status", UnitStatus)
            if e.unit_id == team_id]


async def until_swept(v: Volunteers, device: dict[str, str]) -> None:
    """Until the sweep has ended the volunteer's check-in in the store: its write pays the
    patrol (the routes' reads show a run-out check-in as over already, sweep or not)."""
    async def paid() -> bool:
        return any(e["reason"] == "patrol" for e in (await points(v, device))["history"])

    # not too often: the member's token has its rate limit
    await poll_every(paid, "the sweep ended the check-in and paid its patrol", timeout=WAIT_S,
                     interval=0.25)


def order(order_id: str) -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id="t-vol", agency_kind="volunteer", category="traffic",
                       priority="P3", location=Location(lat=22.03, lon=108.03))


def fix() -> dict[str, float]:
    return {"lat": 22.031, "lon": 108.031}


async def test_a_check_in_nobody_ended_ends_at_the_cap_paid_up_to_it_and_the_team_goes_off_duty(
        swept: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    await swept.import_district()
    wang = await swept.enrol("m-wang")
    await check_in_hours_ago(swept, wang, 20, monkeypatch)  # and the phone died

    await until_swept(swept, wang)
    state = await team_state(swept)
    assert (state["status"], state["on_shift"]) == ("off_duty", False)
    assert (await statuses(swept))[-1] == ("off_duty", False)  # off dispatch's map
    mine = await me(swept, wang)
    assert mine["checked_in"] is False and mine["checked_in_at"] is None
    assert mine["state"]["status"] == "off_duty"
    history = (await points(swept, wang))["history"]
    # 14 h paid (the cap), not the 20 h, and once
    assert [(e["reason"], e["minutes"], e["points"]) for e in history] == [("patrol", 840, 70)]
    assert "automatically" in history[0]["note"]
    # Her phone, revived, moves no team
    assert (await swept.client.put("/v1/me/position", json=fix(),
                                   headers=wang)).status_code == 409


async def test_an_early_arrival_on_the_fourteen_hour_night_shift_keeps_its_check_in_and_points(
        swept: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    await swept.import_district()
    wang, guard = await swept.enrol("m-wang"), await swept.enrol("m-guard")
    # 17:30 for the 18:00-08:00 shift, now 08:00: 14.5 h on, and about to check out
    await check_in_hours_ago(swept, wang, 14.5, monkeypatch)
    await check_in_hours_ago(swept, guard, 20, monkeypatch)  # forgotten: the sweep's probe

    async def guards_off() -> bool:
        return (await statuses(swept, "t-guards"))[-1] == ("off_duty", False)

    await poll_until(guards_off, "the sweep ended the guard's check-in", timeout=WAIT_S)

    assert (await team_state(swept))["shift_member_ids"] == ["m-wang"]
    assert (await me(swept, wang))["checked_in"] is True
    out = await swept.client.post("/v1/me/shift/end", headers=wang)
    assert out.status_code == 200 and out.json()["points_awarded"] == 70


async def test_a_forgotten_member_leaves_while_teammates_who_checked_in_since_stay_on_shift(
        swept: Volunteers, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    await swept.import_district()
    wang, chen = await swept.enrol("m-wang"), await swept.enrol("m-chen")
    await check_in_hours_ago(swept, wang, 20, monkeypatch)  # yesterday's shift, never ended
    assert (await swept.client.post("/v1/me/shift/start", headers=chen)).status_code == 200

    await until_swept(swept, wang)
    state = await team_state(swept)
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "available", True, ["m-chen"])
    assert (await me(swept, wang))["checked_in"] is False
    assert (await me(swept, chen))["checked_in"] is True
    assert (await swept.client.put("/v1/me/position", json=fix(),
                                   headers=wang)).status_code == 409
    assert (await swept.client.put("/v1/me/position", json=fix(),
                                   headers=chen)).status_code == 200
    assert (await points(swept, wang))["balance"] == 70

    # Chen resolves an order, and misses another: Wang, gone home, earns and loses nothing
    await publisher.publish(order("ord_r"), stream="order.issued")
    await publisher.publish(order("ord_m"), stream="order.issued")
    await swept.consumed("order.issued")
    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_r", incident_id="inc_ord_r", team_id="t-vol",
        member_id="m-chen", response="resolved"), stream="order.responded")
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_m", incident_id="inc_ord_m", team_id="t-vol",
        reason="timeout", delivered=True), stream="order.withdrawn")
    await swept.consumed("order.responded")
    await swept.consumed("order.withdrawn")
    assert (await points(swept, chen))["balance"] == 10 - 2
    wang_history = (await points(swept, wang))["history"]
    assert [e["reason"] for e in wang_history] == ["patrol"]


async def test_a_team_holding_an_order_when_its_last_member_is_swept_goes_off_duty_as_it_ends(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # No grace: her check-in ends at the cap, a few seconds after the order came
    async with running(clean_redis, checkin_grace_hours=0, **FAST) as v:
        await v.import_district()
        wang = await v.enrol("m-wang")
        await check_in_hours_ago(v, wang, 14 - 8 / 3600, monkeypatch)
        await publisher.publish(order("ord_1"), stream="order.issued")
        await v.consumed("order.issued")
        held = await team_state(v)
        assert (held["status"], held["shift_member_ids"]) == ("dispatched", ["m-wang"]), (
            "the order must come before her check-in runs out")

        await until_swept(v, wang)
        held = await team_state(v)
        assert (held["status"], held["on_shift"]) == ("dispatched", True)  # the order holds it
        assert (await me(v, wang))["checked_in"] is False
        await publisher.publish(OrderWithdrawn(
            district="d1", order_id="ord_1", incident_id="inc_ord_1", team_id="t-vol",
            reason="timeout", delivered=True), stream="order.withdrawn")
        await v.consumed("order.withdrawn")
        after = await team_state(v)
        assert (after["status"], after["on_shift"]) == ("off_duty", False)
        assert (await statuses(v))[-1] == ("off_duty", False)
        # paid to the cap; the deadline missed after it costs her nothing
        assert [(e["reason"], e["points"]) for e in (await points(v, wang))["history"]] == [
            ("patrol", 70)]


async def test_checking_in_again_after_a_check_in_ran_out_starts_a_new_stint(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(clean_redis, checkin_sweep_s=3600) as v:  # the sweep is not due
        await v.import_district()
        wang = await v.enrol("m-wang")
        await check_in_hours_ago(v, wang, 20, monkeypatch)
        # what she and notify read: over, though the sweep has not come by
        assert (await me(v, wang))["checked_in"] is False
        assert (await team_state(v))["shift_member_ids"] == []
        back = await v.client.post("/v1/me/shift/start", headers=wang)  # a new phone, today
        assert back.status_code == 200, back.text
        assert back.json()["points_awarded"] == 70  # yesterday's stint, to the cap
        mine = await me(v, wang)
        assert mine["checked_in"] is True
        since = utcnow() - timedelta(minutes=5)
        assert mine["checked_in_at"] is not None and mine["checked_in_at"] > since.isoformat()


async def test_a_forgotten_check_in_is_ended_by_the_next_process_after_a_restart(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(clean_redis, checkin_sweep_s=3600) as before:
        await before.import_district()
        wang = await before.enrol("m-wang")
        await check_in_hours_ago(before, wang, 20, monkeypatch)
    async with running(clean_redis, **FAST) as after:
        await until_swept(after, wang)
        assert (await team_state(after))["status"] == "off_duty"
        assert (await points(after, wang))["balance"] == 70


async def test_a_check_in_stored_before_the_sweep_existed_is_ended_after_the_upgrade(
        clean_redis: str) -> None:
    async with running(clean_redis, checkin_sweep_s=3600) as before:
        await before.import_district()
        wang = await before.enrol("m-wang")
        assert (await before.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
        await backdate(before, "t-vol", "m-wang", 20)  # the state as an older version left it
    async with running(clean_redis, **FAST) as after:
        await until_swept(after, wang)
        assert (await team_state(after))["status"] == "off_duty"
        assert (await points(after, wang))["balance"] == 70


async def test_two_replicas_end_a_forgotten_check_in_once(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = {"checkin_sweep_s": 0.02}
    async with running(clean_redis, **fast) as one, running(clean_redis, **fast) as two:
        await one.import_district()
        wang = await one.enrol("m-wang")
        await check_in_hours_ago(one, wang, 20, monkeypatch)
        await until_swept(two, wang)
        seen = await statuses(two)
        assert seen[seen.index(("available", True)):] == [("available", True), ("off_duty", False)]
        assert [e["entry_id"] for e in (await points(two, wang))["history"]] == [
            e["entry_id"] for e in (await points(one, wang))["history"]]
        assert (await points(one, wang))["balance"] == 70


async def test_an_answer_read_before_the_sweep_came_pays_nobody_whose_check_in_ran_out(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(clean_redis, checkin_sweep_s=3600) as v:  # the sweep is not due
        await v.import_district()
        wang, chen = await v.enrol("m-wang"), await v.enrol("m-chen")
        await check_in_hours_ago(v, chen, 1, monkeypatch)
        await check_in_hours_ago(v, wang, 20, monkeypatch)  # (the request's clock: yesterday)
        await publisher.publish(order("ord_r"), stream="order.issued")
        await v.consumed("order.issued")
        await publisher.publish(OrderResponded(
            district="d1", order_id="ord_r", incident_id="inc_ord_r", team_id="t-vol",
            member_id="m-chen", response="resolved"), stream="order.responded")
        await v.consumed("order.responded")
        assert [(e["reason"], e["points"]) for e in (await points(v, chen))["history"]] == [
            ("resolved_order", 10)]
        # her stint ended with the change, at the cap, and nothing after it
        assert [(e["reason"], e["points"]) for e in (await points(v, wang))["history"]] == [
            ("patrol", 70)]
