"""Audit of shifts and check-ins: a check-in that ran out, read by events in either order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.volunteers.domain.status import (
    CheckInLimit,
    TeamState,
    expire_check_ins,
    on_order_issued,
    on_order_responded,
    on_shift_at,
    start_shift,
)

NIGHT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 18:00 in Asia/Shanghai
LIMIT = CheckInLimit.of(max_hours=14, grace_hours=2)
H = timedelta(hours=1)


def _on_order(joined: datetime) -> TeamState:
    state = start_shift(TeamState(), member_id="m-wang", now=joined, shift_id="s1").state
    return on_order_issued(state, None, order_id="o1", team_id="t-vol", incident_id="i1",
                           category="lost_person", kind="dispatch").state


def test_an_answer_in_the_grace_pays_the_same_whether_read_before_or_after_the_sweep() -> None:
    # Auntie Wang checked in at 17:30 for the night shift and resolved an order at 07:45,
    # 14 h 15 min later (in the grace: her check-in still held, the team available for it);
    # her phone died before she could check out. Read at once, the resolution pays her; read
    # after the sweep ended her check-in (volunteers restarted, a backlog), it must too.
    joined = NIGHT - H / 2
    answered_at = joined + 14 * H + H / 4
    state = _on_order(joined)
    prompt = on_order_responded(state, None, order_id="o1", team_id="t-vol", incident_id="i1",
                                response="resolved", at=answered_at, member_id="m-wang")
    assert prompt.record is not None and prompt.record.members == ("m-wang",)

    swept = expire_check_ins(state, now=joined + 17 * H, limit=LIMIT)
    assert swept.state.shift_members == {}
    late = on_order_responded(swept.state, None, order_id="o1", team_id="t-vol",
                              incident_id="i1", response="resolved", at=answered_at,
                              member_id="m-wang")
    assert late.record is not None and late.record.members == ("m-wang",)


def test_a_check_in_ended_by_the_sweep_was_on_the_shift_until_it_ran_out() -> None:
    # An order's deadline in the grace found her on the shift (read at once, it costs her
    # the missed-order 2): read after the sweep, the same.
    joined = NIGHT
    state = start_shift(TeamState(), member_id="m-wang", now=joined, shift_id="s1").state
    out = expire_check_ins(state, now=joined + 20 * H, limit=LIMIT)
    assert on_shift_at(state, joined + 15 * H) == ("m-wang",)
    assert on_shift_at(out.state, joined + 15 * H) == ("m-wang",)
    assert on_shift_at(out.state, joined + 16 * H + timedelta(seconds=1)) == ()
    # her patrol is paid to the cap, and says so
    [ended] = out.ended
    assert (ended.ended_at, ended.expired) == (joined + 14 * H, True)
