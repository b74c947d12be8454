"""Whose position fixes move the team: the state the fix's script reads."""

from __future__ import annotations

from datetime import UTC, datetime

from services.volunteers.domain.positions import ANY_MEMBER, fix_senders
from services.volunteers.domain.status import (
    TeamState,
    end_shift,
    leave_shift,
    on_order_issued,
    on_shift_with,
    start_shift,
    unmanned,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def checked_in(*members: str) -> TeamState:
    state = TeamState()
    for member in members:
        state = start_shift(state, member_id=member, now=T0, shift_id="s1").state
    return state


def order(state: TeamState, kind: str = "dispatch") -> TeamState:
    return on_order_issued(state, None, order_id="o1", team_id="t1", incident_id="i1",
                           category="noise", kind=kind).state  # type: ignore[arg-type]


def test_only_the_members_on_the_shift_move_the_team() -> None:
    senders = fix_senders(checked_in("m-wang", "m-chen"))
    assert senders == " m-chen m-wang "
    assert " m-wang " in senders and " m-li " not in senders
    assert " m-che " not in senders  # a prefix of another member's id is not that member
    assert fix_senders(order(checked_in("m-wang"))) == " m-wang "  # an order adds nobody


def test_nobody_moves_a_team_off_duty() -> None:
    assert fix_senders(TeamState()) == ""
    assert fix_senders(end_shift(checked_in("m-wang"), now=T0).state) == ""
    assert fix_senders(order(TeamState(), kind="handover")) == ""  # paperwork: still off duty


def test_any_member_moves_a_team_holding_an_order_with_nobody_on_its_shift() -> None:
    assert fix_senders(order(TeamState())) == ANY_MEMBER  # the order came as the shift ended
    left = leave_shift(order(checked_in("m-wang")), member_id="m-wang", now=T0).state
    assert left.on_shift and fix_senders(left) == ANY_MEMBER  # its last member moved away


def test_each_member_moves_the_team_from_the_device_they_checked_in_with_last() -> None:
    state = start_shift(TeamState(), member_id="m-wang", now=T0, shift_id="s1",
                        device_id="dev_phone").state
    state = start_shift(state, member_id="m-chen", now=T0, shift_id="s1",
                        device_id="dev_chen").state
    assert fix_senders(state) == " m-chen:dev_chen m-wang:dev_phone "
    assert on_shift_with(state, member_id="m-wang", device_id="dev_phone")
    assert not on_shift_with(state, member_id="m-wang", device_id="dev_tablet")
    # checked in again from the tablet: the same stint, the tablet's fixes from now
    switched = start_shift(state, member_id="m-wang", now=T0.replace(hour=9), shift_id="s2",
                           device_id="dev_tablet").state
    assert switched.shift_members == state.shift_members
    assert fix_senders(switched) == " m-chen:dev_chen m-wang:dev_tablet "
    again = start_shift(switched, member_id="m-wang", now=T0, shift_id="s3",
                        device_id="dev_tablet")
    assert again.state == switched  # a retry changes nothing
    # leaving the shift forgets the device: back on it from the phone, the phone's
    gone = leave_shift(switched, member_id="m-wang", now=T0).state
    assert fix_senders(gone) == " m-chen:dev_chen " and "m-wang" not in gone.shift_devices
    assert unmanned(switched).shift_devices == {}


def test_a_member_checked_in_before_devices_were_kept_moves_the_team_from_any_device() -> None:
    state = checked_in("m-wang")  # no device known: a state stored before they were kept
    assert fix_senders(state) == " m-wang "
    assert on_shift_with(state, member_id="m-wang", device_id="dev_tablet")
    assert not on_shift_with(state, member_id="m-chen", device_id="dev_chen")
