"""Points rules: resolved orders, confirmed hazard reports, patrol time in quarter-hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.volunteers.config import Settings
from services.volunteers.domain.points import (
    award_confirmed_hazard,
    award_patrol,
    award_resolved_order,
    confirmed_for_reporter,
    hazard_confirmers,
    patrol_entry_id,
    patrol_quarters,
)
from services.volunteers.domain.status import EndedShift

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def resolved(kind: str = "volunteer", members=("m1", "m2")):
    return award_resolved_order(order_id="o1", incident_id="i1", team_id="t1", district="d1",
                                agency_kind=kind, members_on_shift=members, at=T0)


def test_each_member_on_shift_of_a_volunteer_team_gets_ten_per_resolved_order() -> None:
    entries = resolved()
    assert [(e.member_id, e.points, e.reason) for e in entries] == [
        ("m1", 10, "resolved_order"), ("m2", 10, "resolved_order")]
    assert [e.entry_id for e in entries] == ["resolved:o1:m1", "resolved:o1:m2"]


def test_police_and_security_teams_earn_no_points() -> None:
    assert resolved(kind="police") == [] and resolved(kind="security") == []


def test_nobody_on_shift_earns_nothing() -> None:
    assert resolved(members=()) == []


def test_a_confirmed_hazard_report_pays_three_keyed_by_incident() -> None:
    # the resolution's own entries are the order's 10: the 3 wait for the confirmation
    assert [(e.entry_id, e.points) for e in resolved(members=("m1",))] == [("resolved:o1:m1", 10)]
    # the same entry id from the resolution's path and the closing's: awarded once
    entries = award_confirmed_hazard(incident_id="i1", team_id="t1", district="d1",
                                     agency_kind="volunteer", members_on_shift=["m1"], at=T0,
                                     order_id="o1")
    assert [(e.entry_id, e.points, e.reason) for e in entries] == [
        ("hazard:i1:m1", 3, "hazard_report")]


def test_a_hazard_report_is_confirmed_only_by_a_team_other_than_its_reporters() -> None:
    assert hazard_confirmers(resolved_by=("t-own",), reporter_team="t-own") == ()
    assert hazard_confirmers(resolved_by=("t-own", "t-2"), reporter_team="t-own") == ("t-2",)
    # a system's report, or a reporter not found on the roster: every resolving team
    assert hazard_confirmers(resolved_by=("t-own",), reporter_team=None) == ("t-own",)

    def for_reporter(final_status: str, resolved_by: tuple[str, ...]) -> bool:
        return confirmed_for_reporter(final_status=final_status, resolved_by=resolved_by,
                                      reporter_team="t-own")

    assert for_reporter("resolved", ("t-2",))
    assert not for_reporter("resolved", ("t-own",))  # their own team's word alone
    assert not for_reporter("closed", ())  # the command room's close confirms nothing
    assert for_reporter("resolved", ())  # resolved, naming nobody's team


def test_patrol_time_counts_in_whole_quarter_hours() -> None:
    assert patrol_quarters(T0, T0 + timedelta(minutes=14), max_hours=12) == 0
    assert patrol_quarters(T0, T0 + timedelta(minutes=15), max_hours=12) == 1
    assert patrol_quarters(T0, T0 + timedelta(minutes=130), max_hours=12) == 8
    assert patrol_quarters(T0, T0 + timedelta(hours=30), max_hours=12) == 48


def test_patrol_points_are_five_per_hour_from_each_members_own_check_in() -> None:
    ended = EndedShift(shift_id="s1", started_at=T0, ended_at=T0 + timedelta(hours=2, minutes=20),
                       members={"m1": T0, "m2": T0 + timedelta(hours=1, minutes=50),
                                "m3": T0 + timedelta(hours=1)})
    entries = award_patrol(ended=ended, team_id="t1", district="d1", agency_kind="volunteer",
                           max_hours=12)
    by_member = {e.member_id: (e.points, e.minutes) for e in entries}
    assert by_member == {"m1": (11.25, 135), "m2": (2.5, 30), "m3": (6.25, 75)}
    assert {e.entry_id for e in entries} == {"patrol:s1:20261123T080000.000000Z:m1",
                                             "patrol:s1:20261123T095000.000000Z:m2",
                                             "patrol:s1:20261123T090000.000000Z:m3"}


def test_two_stints_of_one_member_in_one_shift_are_two_awards_each_paid_once() -> None:
    # Moved to another team and back within the shift: each stint is its own entry, and a
    # stint ended again (a redelivery, a retried decision) gives the very same id.
    first = EndedShift(shift_id="s1", started_at=T0, ended_at=T0 + timedelta(hours=2),
                       members={"m1": T0})
    back = T0 + timedelta(hours=3, microseconds=250)
    second = EndedShift(shift_id="s1", started_at=T0, ended_at=back + timedelta(hours=1),
                        members={"m1": back})

    def ids(ended: EndedShift) -> list[str]:
        return [e.entry_id for e in award_patrol(ended=ended, team_id="t1", district="d1",
                                                 agency_kind="volunteer", max_hours=12)]

    assert ids(first) != ids(second) and ids(second) == ids(second)
    assert ids(second) == ["patrol:s1:20261123T110000.000250Z:m1"]
    # the same instant in another zone is the same check-in
    east = timezone(timedelta(hours=8))
    assert patrol_entry_id(shift_id="s1", member_id="m1", joined=back.astimezone(east)) == (
        ids(second)[0])


def test_patrol_points_stop_at_the_cap_and_skip_other_kinds() -> None:
    ended = EndedShift(shift_id="s1", started_at=T0, ended_at=T0 + timedelta(days=2),
                       members={"m1": T0})
    [entry] = award_patrol(ended=ended, team_id="t1", district="d1", agency_kind="volunteer",
                           max_hours=12)
    assert entry.points == 60
    assert award_patrol(ended=ended, team_id="t1", district="d1", agency_kind="police",
                        max_hours=12) == []


def test_a_missed_order_costs_each_volunteer_on_the_shift_and_nobody_else() -> None:
    from services.volunteers.domain import points as rules

    at = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
    entries = rules.penalise_missed_order(
        order_id="o1", incident_id="i1", team_id="t", district="d", agency_kind="volunteer",
        members_on_shift={"m2", "m1"}, at=at)
    assert [(e.entry_id, e.points) for e in entries] == [("missed:o1:m1", -2), ("missed:o1:m2", -2)]
    assert rules.penalise_missed_order(
        order_id="o1", incident_id="i1", team_id="t", district="d", agency_kind="security",
        members_on_shift={"m1"}, at=at) == []


def test_an_adjustment_is_never_zero_nor_beyond_the_cap() -> None:
    from services.volunteers.domain import points as rules

    at = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
    entry = rules.adjustment(adjustment_id="a1", member_id="m1", team_id="t", district="d",
                             points=-5, note="late", at=at)
    assert (entry.entry_id, entry.points, entry.reason, entry.note) == (
        "adjust:a1", -5, "adjustment", "late")
    for points in (0, 101, -101):
        with pytest.raises(ValueError):
            rules.adjustment(adjustment_id="a1", member_id="m1", team_id="t", district="d",
                             points=points, note="x", at=at)


def test_the_night_shift_is_paid_whole_by_default() -> None:
    # DOMAIN: the secondary shift covers the night, 18:00-08:00; a cap of 12 hours paid 60
    # points for its 14.
    night = Settings(admin_token="t" * 32).max_patrol_hours
    assert patrol_quarters(T0, T0 + timedelta(hours=14), max_hours=night) * 5 / 4 == 70
