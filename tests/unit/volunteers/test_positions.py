"""Whose position fixes move the team: the state the fix's script reads."""

from __future__ import annotations

from datetime import UTC, datetime

from services.volunteers.domain.positions import ANY_MEMBER, fix_senders
from services.volunteers.domain.status import (
    TeamState,
    end_shift,
    leave_shift,
    on_order_issued,
    start_shift,
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
