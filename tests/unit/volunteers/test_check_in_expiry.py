"""Check-ins nobody ended: when they run out, and what ending them does to the team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.volunteers.domain.points import award_patrol
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


def checked_in(*joins: tuple[str, datetime]) -> TeamState:
    state = TeamState()
    for member, at in joins:
        state = start_shift(state, member_id=member, now=at, shift_id="s1").state
    return state


def test_an_early_arrival_still_on_the_night_shift_when_it_ends_keeps_its_check_in() -> None:
    early = checked_in(("m1", NIGHT - H / 2))  # 17:30 for 18:00-08:00
    out = expire_check_ins(early, now=NIGHT + 14 * H + H, limit=LIMIT)  # 09:00, no check-out
    assert out.ended == () and out.state == early


def test_a_check_in_past_the_cap_and_the_grace_ends_at_the_cap_with_14_hours_paid() -> None:
    state = checked_in(("m1", NIGHT))
    out = expire_check_ins(state, now=NIGHT + 30 * H, limit=LIMIT)
    assert (out.state.status, out.state.on_shift, out.state.shift_members) == (
        "off_duty", False, {})
    [ended] = out.ended
    assert (ended.members, ended.ended_at, ended.expired) == ({"m1": NIGHT}, NIGHT + 14 * H, True)
    [entry] = award_patrol(ended=ended, team_id="t1", district="d1", agency_kind="volunteer",
                           max_hours=14)
    assert (entry.points, entry.minutes) == (70, 840) and entry.note
    # the same state ends the same stint at the same time: a second replica pays nothing more
    again = expire_check_ins(state, now=NIGHT + 31 * H, limit=LIMIT)
    assert again.ended == out.ended and again.state == out.state


def test_only_the_run_out_check_in_ends_and_later_answers_count_only_those_still_on() -> None:
    state = checked_in(("m1", NIGHT), ("m2", NIGHT + 20 * H))
    out = expire_check_ins(state, now=NIGHT + 21 * H, limit=LIMIT)
    assert (out.state.status, out.state.on_shift, list(out.state.shift_members)) == (
        "available", True, ["m2"])
    assert [e.members for e in out.ended] == [{"m1": NIGHT}]
    assert on_shift_at(out.state, NIGHT + 13 * H) == ("m1",)  # before the cap: still hers
    assert on_shift_at(out.state, NIGHT + 21 * H) == ("m2",)


def test_a_team_whose_last_check_in_ran_out_during_an_order_goes_off_duty_when_it_ends() -> None:
    state = on_order_issued(checked_in(("m1", NIGHT)), None, order_id="o1", team_id="t1",
                            incident_id="i1", category="noise", kind="dispatch").state
    out = expire_check_ins(state, now=NIGHT + 17 * H, limit=LIMIT)
    assert (out.state.status, out.state.on_shift, out.state.shift_members) == (
        "dispatched", True, {})
    step = on_order_responded(out.state, None, order_id="o1", team_id="t1", incident_id="i1",
                              response="resolved", at=NIGHT + 17 * H)
    assert (step.state.status, step.state.on_shift) == ("off_duty", False)
    assert step.record is not None and step.record.members == ()  # nobody to pay
