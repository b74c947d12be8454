"""The team state machine: shifts, device choices, dispatch's orders, redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.volunteers.domain.status import (
    DEVICE_TRANSITIONS,
    OrderRecord,
    Refused,
    TeamState,
    end_shift,
    leave_shift,
    on_order_issued,
    on_order_responded,
    on_order_withdrawn,
    set_status,
    start_shift,
    unit_status,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def on_shift(member: str = "m1") -> TeamState:
    return start_shift(TeamState(), member_id=member, now=T0, shift_id="s1").state


def issued(state: TeamState, order: str = "o1", record: OrderRecord | None = None,
           kind: str = "dispatch"):
    return on_order_issued(state, record, order_id=order, team_id="t1", incident_id="i1",
                           category="noise", kind=kind)  # type: ignore[arg-type]


def responded(state: TeamState, record: OrderRecord | None, response: str, order: str = "o1"):
    return on_order_responded(state, record, order_id=order, team_id="t1", incident_id="i1",
                              response=response)  # type: ignore[arg-type]


def test_checking_in_makes_the_team_available_and_records_the_member() -> None:
    state = on_shift()
    assert (state.status, state.on_shift, state.shift_id) == ("available", True, "s1")
    assert state.shift_members == {"m1": T0}


def test_a_second_member_joins_the_running_shift_and_the_same_check_in_is_a_no_op() -> None:
    state = on_shift()
    later = T0 + timedelta(minutes=30)
    joined = start_shift(state, member_id="m2", now=later, shift_id="s2").state
    assert joined.shift_id == "s1" and joined.shift_members == {"m1": T0, "m2": later}
    assert start_shift(joined, member_id="m2", now=later, shift_id="s3").state == joined


def test_device_transitions_follow_the_table() -> None:
    state = on_shift()
    busy = set_status(state, "busy", member_id="m1", now=T0, shift_id="x").state
    assert busy.status == "busy"
    back = set_status(busy, "available", member_id="m1", now=T0, shift_id="x").state
    assert back.status == "available"
    off = set_status(back, "off_duty", member_id="m1", now=T0, shift_id="x")
    assert off.state.status == "off_duty" and not off.state.on_shift
    assert off.ended is not None and off.ended.members == {"m1": T0}
    assert DEVICE_TRANSITIONS["off_duty"] == ("available",)


def test_setting_the_status_the_team_already_has_changes_nothing() -> None:
    state = on_shift()
    assert set_status(state, "available", member_id="m1", now=T0, shift_id="x").state is state
    off = TeamState()
    assert set_status(off, "off_duty", member_id="m1", now=T0, shift_id="x").state is off


@pytest.mark.parametrize("target", ["off_duty", "busy"])
def test_a_member_not_on_the_running_shift_cannot_set_the_team_s_status(target: str) -> None:
    # m2 never checked in (at home, the page open): "off_duty" ended m1's patrol and took the
    # team out of dispatch, "busy" kept it from its incidents, while m1 was on the street.
    state = on_shift("m1")
    with pytest.raises(Refused, match="a shift you are not on.*check in"):
        set_status(state, target, member_id="m2", now=T0, shift_id="x")  # type: ignore[arg-type]
    busy = set_status(state, "busy", member_id="m1", now=T0, shift_id="x").state
    with pytest.raises(Refused, match="a shift you are not on"):
        set_status(busy, "available", member_id="m2", now=T0, shift_id="x")
    # the status the team already has stays a no-op for anyone (DESIGN: 200)
    assert set_status(busy, "busy", member_id="m2", now=T0, shift_id="x").state is busy


def test_busy_from_off_duty_is_refused_naming_what_is_allowed() -> None:
    with pytest.raises(Refused, match="off_duty; allowed from off_duty: available"):
        set_status(TeamState(), "busy", member_id="m1", now=T0, shift_id="x")


def test_available_from_off_duty_starts_a_shift() -> None:
    out = set_status(TeamState(), "available", member_id="m1", now=T0, shift_id="s9")
    assert out.state.on_shift and out.state.shift_id == "s9"


def test_an_order_makes_the_team_dispatched_and_progress_moves_forward_only() -> None:
    step = issued(on_shift())
    assert step.state.status == "dispatched" and step.state.open_order == "o1"
    step = responded(step.state, step.record, "on_scene")
    assert step.state.status == "on_scene"
    late = responded(step.state, step.record, "en_route")
    assert late.state.status == "on_scene"
    ack = responded(step.state, step.record, "acknowledged")
    assert ack.state.status == "on_scene"


@pytest.mark.parametrize("final", ["resolved", "handover", "declined"])
def test_a_finished_order_frees_the_team_on_shift(final: str) -> None:
    step = issued(on_shift())
    done = responded(step.state, step.record, final)
    assert done.state.status == "available" and done.finished == final
    assert done.record is not None and not done.record.open and done.record.final == final


def test_an_order_finished_after_the_shift_ended_leaves_the_team_off_duty() -> None:
    step = issued(TeamState())  # dispatch's projection was stale: the team was off duty
    assert step.state.status == "dispatched" and not step.state.on_shift
    done = responded(step.state, step.record, "resolved")
    assert done.state.status == "off_duty"


def test_withdrawn_order_makes_the_team_available() -> None:
    step = issued(on_shift())
    out = on_order_withdrawn(step.state, step.record, order_id="o1", team_id="t1",
                             incident_id="i1")
    assert out.state.status == "available" and out.finished == "withdrawn"


def test_redelivered_events_change_nothing() -> None:
    step = issued(on_shift())
    again = issued(step.state, record=step.record)
    assert again.state == step.state and again.record == step.record
    done = responded(step.state, step.record, "resolved")
    twice = responded(done.state, done.record, "resolved")
    assert twice.state == done.state and twice.finished is None
    # an order.issued redelivered after the order finished does not reopen it
    reopened = issued(done.state, record=done.record)
    assert reopened.state.status == "available"


def test_a_response_that_overtakes_its_order_issued_still_counts() -> None:
    step = responded(on_shift(), None, "en_route")
    assert step.state.status == "en_route" and step.record is not None
    late_issue = issued(step.state, record=step.record)
    assert late_issue.state.status == "en_route" and late_issue.record.category == "noise"


def test_the_team_shows_its_most_advanced_order() -> None:
    a = issued(on_shift(), "o1")
    b = issued(a.state, "o2")
    c = responded(b.state, b.record, "on_scene", order="o2")
    assert c.state.status == "on_scene" and c.state.open_order == "o2"
    d = responded(c.state, c.record, "resolved", order="o2")
    assert d.state.status == "dispatched" and d.state.open_order == "o1"


def test_check_out_and_status_changes_are_refused_while_an_order_is_open() -> None:
    step = issued(on_shift(), "ord_42")
    with pytest.raises(Refused, match="dispatched with open order ord_42"):
        end_shift(step.state, now=T0)
    with pytest.raises(Refused, match="ord_42"):
        set_status(step.state, "busy", member_id="m1", now=T0, shift_id="x")


def test_events_of_another_teams_order_are_ignored() -> None:
    record = OrderRecord(team_id="other", incident_id="i1")
    state = on_shift()
    assert responded(state, record, "en_route").state is state


def test_unit_status_carries_the_team_profile() -> None:
    step = issued(on_shift())
    event = unit_status(
        team={"id": "t1", "district": "d1", "agency_id": "p2", "name": "Patrol 1",
              "mode": "car", "home_zone_id": "z1"},
        agency={"kind": "police", "role": "patrol"}, state=step.state, skills=["first_aid"],
    )
    assert (event.unit_id, event.status, event.agency_kind, event.agency_role) == (
        "t1", "dispatched", "police", "patrol")
    assert event.on_shift and event.order_id == "o1" and event.skills == ("first_aid",)
    assert event.home_zone_id == "z1" and event.mode == "car"


def test_a_member_who_left_the_team_leaves_its_shift_and_only_they_are_counted() -> None:
    both = start_shift(on_shift("m1"), member_id="m2", now=T0 + timedelta(hours=1),
                       shift_id="s2").state
    later = T0 + timedelta(hours=3)
    out = leave_shift(both, member_id="m2", now=later)
    assert out.state.on_shift and set(out.state.shift_members) == {"m1"}
    assert out.ended is not None and out.ended.members == {"m2": T0 + timedelta(hours=1)}
    assert (out.ended.shift_id, out.ended.ended_at) == ("s1", later)
    assert leave_shift(out.state, member_id="m2", now=later).ended is None  # gone already


def test_a_shift_left_with_nobody_ends_unless_it_holds_an_open_order() -> None:
    alone = on_shift("m1")
    out = leave_shift(alone, member_id="m1", now=T0 + timedelta(hours=2))
    assert (out.state.status, out.state.on_shift) == ("off_duty", False)
    assert out.ended is not None and out.ended.members == {"m1": T0}
    busy = issued(alone).state
    kept = leave_shift(busy, member_id="m1", now=T0 + timedelta(hours=2))
    assert kept.state.on_shift and kept.state.orders and kept.state.shift_members == {}
    assert leave_shift(TeamState(), member_id="m1", now=T0).state == TeamState()  # off duty


def test_a_resolved_order_keeps_who_was_on_the_shift_and_its_order_arriving_late_keeps_them(
) -> None:
    state = start_shift(on_shift("m1"), member_id="m2", now=T0, shift_id="s1").state
    step = responded(state, None, "resolved")  # overtook its order.issued
    assert (step.record.final, step.record.members) == ("resolved", ("m1", "m2"))
    late = issued(step.state, record=step.record)
    assert (late.record.category, late.record.members) == ("noise", ("m1", "m2"))
    handed = responded(issued(state).state, issued(state).record, "handover")
    assert handed.record.members is None  # only a resolution pays a confirmation


@pytest.mark.parametrize("kind", ["handover", "followup"])
def test_a_station_task_is_recorded_but_leaves_the_team_free_and_able_to_check_out(
        kind: str) -> None:
    state = on_shift()
    step = issued(state, "ho", kind=kind)
    assert step.state == state and step.state.open_order is None
    assert step.record is not None and (step.record.kind, step.record.open) == (kind, True)
    assert end_shift(step.state, now=T0).state.status == "off_duty"  # no 409
    # redelivered: nothing changes; its responses move nothing but finish it, once
    assert issued(step.state, "ho", record=step.record, kind=kind).record == step.record
    going = responded(step.state, step.record, "on_scene", order="ho")
    assert going.state == state and going.record == step.record
    done = responded(going.state, going.record, "resolved", order="ho")
    assert done.state == state and done.finished == "resolved"
    assert (done.record.final, done.record.members) == ("resolved", ("m1",))


def test_a_station_task_beside_an_emergency_leaves_the_emergency_in_charge() -> None:
    emergency = issued(on_shift(), "o1")
    task = issued(emergency.state, "ho", kind="handover")
    assert task.state.open_order == "o1" and set(task.state.orders) == {"o1"}
    done = responded(task.state, task.record, "resolved", order="ho")
    assert done.state.status == "dispatched" and done.state.open_order == "o1"


def test_a_call_for_backup_before_acknowledging_keeps_the_team_on_its_order() -> None:
    # The call takes the order (notify and dispatch acknowledge it with the call): the team
    # stays busy with it, whatever order the call, its redelivery and a teammate's
    # acknowledgement come in, and it is free again only once the order ends.
    step = issued(on_shift())
    for answers in (["reinforce", "reinforce", "acknowledged"], ["acknowledged", "reinforce"]):
        state, record = step.state, step.record
        for response in answers:
            moved = responded(state, record, response)
            state, record = moved.state, moved.record
            assert (state.status, state.open_order, record.open) == ("dispatched", "o1", True)
    ahead = responded(on_shift(), None, "reinforce")  # read before its order.issued
    assert (ahead.state.status, ahead.state.open_order) == ("dispatched", "o1")
    late = issued(ahead.state, record=ahead.record)
    assert late.state == ahead.state
    assert responded(late.state, late.record, "resolved").state.status == "available"


@pytest.mark.parametrize("kind", ["dispatch", "reinforcement", "manual"])
def test_orders_dispatch_claims_the_team_for_make_it_dispatched(kind: str) -> None:
    step = issued(on_shift(), kind=kind)
    assert step.state.status == "dispatched" and step.record.kind == kind


def test_a_response_that_overtook_a_station_task_stops_holding_the_team_once_its_kind_is_known(
) -> None:
    ahead = responded(on_shift(), None, "en_route", order="ho")  # kind not known yet
    assert ahead.state.status == "en_route"
    late = issued(ahead.state, "ho", record=ahead.record, kind="handover")
    assert (late.state.status, late.state.orders) == ("available", {})
    assert (late.record.kind, late.record.category) == ("handover", "noise")


def test_an_order_recorded_without_a_kind_still_holds_the_team_until_it_ends() -> None:
    # Recorded before kinds were kept: a hand-over then held the team like any order. It
    # still finishes as it began, and an order.issued redelivered with its kind frees it.
    state = on_shift()
    old = OrderRecord(team_id="t1", incident_id="i1", category="dispute")
    held = state.model_copy(update={"orders": {"ho": "dispatched"}, "status": "dispatched"})
    assert old.kind is None and old.claims
    with pytest.raises(Refused, match="ho"):
        end_shift(held, now=T0)
    assert responded(held, old, "resolved", order="ho").state.status == "available"
    freed = issued(held, "ho", record=old, kind="handover")
    assert freed.state.status == "available" and freed.record.kind == "handover"
    kept = issued(held, "ho", record=old, kind="dispatch")
    assert kept.state == held and kept.record.kind == "dispatch"
    assert OrderRecord.model_validate_json(old.model_dump_json(exclude={"kind"})) == old


def test_a_resolution_read_after_the_state_forgot_its_shift_pays_those_who_answered(
) -> None:
    # m1 acknowledged and m2 resolved an order on the day shift (T0); dispatch took the
    # order back as m2's "resolved" was on its way, and that answer reached volunteers only
    # days later (replayed from dlq.order.responded). Two shifts have ended since, both of
    # them on the last (the state keeps only its stints): it no longer knows who was on the
    # shift at T0, nor that either was off it. Both answered: both are paid, as one the
    # state never heard of is (before, having worked since made them "known" and paid
    # nobody; one on the shift since and one not was paid the other way round).
    answered_at = T0 + timedelta(hours=1)
    state = start_shift(on_shift("m1"), member_id="m2", now=T0, shift_id="s1").state
    step = issued(state)
    step = on_order_responded(step.state, step.record, order_id="o1", team_id="t1",
                              incident_id="i1", response="acknowledged",
                              at=T0 + timedelta(minutes=5), member_id="m1")
    step = on_order_withdrawn(step.state, step.record, order_id="o1", team_id="t1",
                              incident_id="i1")
    later = step.state
    for day in (1, 2):  # two more shifts, ended
        start = T0 + timedelta(days=day)
        later = start_shift(later, member_id="m1", now=start, shift_id=f"s{day + 1}").state
        later = start_shift(later, member_id="m2", now=start, shift_id=f"s{day + 1}").state
        later = end_shift(later, now=start + timedelta(hours=10)).state
    record = step.record.model_copy(update={"answered_by": ("m1", "m2")})
    late = on_order_responded(later, record, order_id="o1", team_id="t1", incident_id="i1",
                              response="resolved", at=answered_at, member_id="m2")
    assert (late.finished, late.record.members) == ("resolved", ("m1", "m2"))
    # m1 on a shift running now, m2 not: both still
    running = start_shift(later, member_id="m1", now=T0 + timedelta(days=3), shift_id="s4")
    late = on_order_responded(running.state, record, order_id="o1", team_id="t1",
                              incident_id="i1", response="resolved", at=answered_at,
                              member_id="m2")
    assert late.record.members == ("m1", "m2")


def test_a_resolution_pays_no_answerer_the_state_knows_had_left_the_shift_by_then() -> None:
    # m1 acknowledged on the shift and checked out; m2 resolved it, called in while nobody
    # was on it: m1 is known to have been off the shift then (their stint ended before).
    state = start_shift(on_shift("m1"), member_id="m2", now=T0, shift_id="s1").state
    step = issued(state)
    step = on_order_responded(step.state, step.record, order_id="o1", team_id="t1",
                              incident_id="i1", response="acknowledged",
                              at=T0 + timedelta(minutes=5), member_id="m1")
    gone = leave_shift(step.state, member_id="m1", now=T0 + timedelta(hours=1)).state
    gone = leave_shift(gone, member_id="m2", now=T0 + timedelta(hours=1)).state
    late = on_order_responded(gone, step.record, order_id="o1", team_id="t1", incident_id="i1",
                              response="resolved", at=T0 + timedelta(hours=2), member_id="m2")
    assert late.record.members == ("m2",)
