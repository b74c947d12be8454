"""A member's check-out (`check_out`): their own stint ends; the shift ends with its last
member, and not while an order holds the team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.volunteers.domain.positions import fix_senders
from services.volunteers.domain.status import (
    Refused,
    TeamState,
    check_out,
    device_revoked,
    on_order_issued,
    on_shift_at,
    start_shift,
)

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def patrol(*members: str) -> TeamState:
    state = TeamState()
    for member in members:
        state = start_shift(state, member_id=member, now=T0, shift_id="s1").state
    return state


def holding(state: TeamState, kind: str = "dispatch") -> TeamState:
    return on_order_issued(state, None, order_id="o1", team_id="t1", incident_id="i1",
                           category="traffic", kind=kind).state  # type: ignore[arg-type]


def test_one_of_three_going_home_leaves_the_other_two_on_shift_and_is_paid_alone() -> None:
    out = check_out(patrol("wang", "chen", "li"), member_id="wang", now=T0 + 3 * HOUR)
    assert (out.state.status, out.state.on_shift) == ("available", True)
    assert set(out.state.shift_members) == {"chen", "li"}
    assert out.ended is not None and out.ended.members == {"wang": T0}
    assert fix_senders(out.state) == " chen li "  # her phone no longer moves the team
    # an answer after she left pays the two still on it, not her
    assert on_shift_at(out.state, T0 + 4 * HOUR) == ("chen", "li")
    assert on_shift_at(out.state, T0 + 2 * HOUR) == ("chen", "li", "wang")


def test_a_member_may_leave_while_the_team_holds_an_order_that_the_others_carry() -> None:
    out = check_out(holding(patrol("wang", "chen")), member_id="wang", now=T0 + HOUR)
    assert (out.state.status, out.state.open_order) == ("dispatched", "o1")
    assert set(out.state.shift_members) == {"chen"}
    assert out.ended is not None and set(out.ended.members) == {"wang"}


def test_the_last_member_cannot_leave_an_order_with_nobody_and_is_told_why() -> None:
    with pytest.raises(Refused, match="dispatched with open order o1") as refused:
        check_out(holding(patrol("chen")), member_id="chen", now=T0 + HOUR)
    assert "once its orders are resolved, handed over, declined or withdrawn" in (
        refused.value.message)


def test_the_last_member_out_ends_the_shift_as_a_check_out_always_did() -> None:
    left = check_out(patrol("wang", "chen"), member_id="wang", now=T0 + HOUR).state
    out = check_out(left, member_id="chen", now=T0 + 2 * HOUR)
    assert out.state.visible() == ("off_duty", False, None)
    assert out.ended is not None and out.ended.members == {"chen": T0}
    # both stints are remembered for an answer read late
    assert on_shift_at(out.state, T0 + HOUR / 2) == ("chen", "wang")
    # a station's hand-over does not hold the shift
    assert check_out(holding(patrol("sun"), kind="handover"), member_id="sun",
                     now=T0).state.on_shift is False


def test_a_member_not_on_the_shift_ends_nobody_else_s() -> None:
    state = patrol("wang")
    out = check_out(state, member_id="chen", now=T0 + HOUR)
    assert out.state == state and out.ended is None
    busy = holding(state)
    assert check_out(busy, member_id="chen", now=T0 + HOUR).state == busy  # no 409 either
    assert check_out(TeamState(), member_id="chen", now=T0).state == TeamState()


def test_a_shift_with_nobody_recorded_on_it_ends_at_any_member_s_check_out() -> None:
    # a state stored before members were recorded on the shift: nobody else's to keep
    legacy = TeamState(status="available", on_shift=True, shift_id="s0", shift_started_at=T0)
    assert check_out(legacy, member_id="wang", now=T0 + HOUR).state.on_shift is False


def with_devices(**devices: str) -> TeamState:
    state = TeamState()
    for member, device in devices.items():
        state = start_shift(state, member_id=member, now=T0, shift_id="s1",
                            device_id=device).state
    return state


def test_revoking_the_device_a_member_is_on_the_shift_with_ends_their_stint() -> None:
    state = with_devices(wang="dev_phone", chen="dev_chen")
    other = device_revoked(state, member_id="wang", device_id="dev_tablet",
                           now=T0 + HOUR, last_device=False)
    assert other.state == state and other.ended is None  # her tablet at home: she stays on
    out = device_revoked(state, member_id="wang", device_id="dev_phone", now=T0 + 2 * HOUR,
                         last_device=False)
    assert out == check_out(state, member_id="wang", now=T0 + 2 * HOUR)
    assert set(out.state.shift_members) == {"chen"} and "wang" not in out.state.shift_devices


def test_revoking_the_last_ones_device_ends_the_shift_even_under_an_order() -> None:
    alone = with_devices(wang="dev_phone")
    off = device_revoked(alone, member_id="wang", device_id="dev_phone", now=T0 + HOUR,
                         last_device=True)
    assert (off.state.status, off.state.on_shift) == ("off_duty", False)
    held = holding(alone)
    with pytest.raises(Refused):
        check_out(held, member_id="wang", now=T0 + HOUR)
    out = device_revoked(held, member_id="wang", device_id="dev_phone", now=T0 + HOUR,
                         last_device=True)
    assert (out.state.status, out.state.on_shift, out.state.shift_members) == (
        "dispatched", False, {})
    assert out.ended is not None and out.ended.members == {"wang": T0}
    assert fix_senders(out.state) == "*"  # whoever of the team goes keeps the map right


def test_a_member_checked_in_before_devices_were_kept_loses_the_shift_with_their_last_device(
) -> None:
    state = patrol("wang", "chen")  # no devices known
    kept = device_revoked(state, member_id="wang", device_id="dev_a", now=T0 + HOUR,
                          last_device=False)
    assert kept.state == state  # another device of hers may be the one she carries
    out = device_revoked(state, member_id="wang", device_id="dev_a", now=T0 + HOUR,
                         last_device=True)
    assert set(out.state.shift_members) == {"chen"}
