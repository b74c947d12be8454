"""The morning review and the heat map: local hours, places, who resolved, the hottest cells."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import h3
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.dispatch import review
from shared.timezones import parse_timezone

SHANGHAI = parse_timezone("Asia/Shanghai")
MARKET = (22.8170, 108.3665)  # a night market
NEAR_MARKET = (22.8172, 108.3667)  # ~30 m away: the same block
STATION = (22.8500, 108.4000)  # ~5 km away


def incident(at: str, where: tuple[float, float] = MARKET, *, category: str = "noise",
             zone: str = "z1", **extra: str) -> dict[str, str]:
    return {"reported_at": at, "lat": repr(where[0]), "lon": repr(where[1]),
            "category": category, "zone_id": zone, "status": "resolved", **extra}


def test_hours_are_the_districts_local_hours_of_the_report() -> None:
    # 23:30 UTC is 07:30 in Shanghai; 16:00 UTC is midnight there
    counts = review.by_hour([incident("2026-12-04T23:30:00+00:00"),
                             incident("2026-12-04T16:00:00+00:00"),
                             incident("2026-12-05T07:30:00+08:00")], SHANGHAI)
    assert len(counts) == 24 and sum(counts) == 3
    assert counts[7] == 2 and counts[0] == 1
    assert review.by_hour([incident("2026-12-04T23:30:00+00:00")],
                          parse_timezone("+00:00"))[23] == 1


def test_a_duplicate_report_linked_to_another_counts_nowhere() -> None:
    linked = incident("2026-12-04T12:00:00+00:00", status="linked")
    assert sum(review.by_hour([linked], SHANGHAI)) == 0
    assert review.by_zone([linked]) == {}
    assert review.heat_map([linked], SHANGHAI, resolution=8, limit=10)["incidents"] == 0


def test_zones_the_busiest_first_and_incidents_outside_every_zone_counted_apart() -> None:
    at = "2026-12-04T12:00:00+00:00"
    zones = review.by_zone([incident(at, zone="z2"), incident(at, zone="z1"),
                            incident(at, zone="z2"), incident(at, zone="")])
    assert list(zones.items()) == [("z2", 2), ("z1", 1), (review.NO_ZONE, 1)]
    # reported while the zones could not be loaded, over before they came back: not known
    # to be outside them; a zone found later (the pending mark left behind) is the zone
    zones = review.by_zone([incident(at, zone="", zone_pending="1"), incident(at, zone=""),
                            incident(at, zone="z1", zone_pending="1")])
    assert zones == {review.UNKNOWN_ZONE: 1, review.NO_ZONE: 1, "z1": 1}
    # given up on after the engine's ZONE_WAIT (no longer pending): unknown all the same
    zones = review.by_zone([incident(at, zone="", zone_pending="", zone_unknown="1")])
    assert zones == {review.UNKNOWN_ZONE: 1}


def test_resolved_on_site_by_force_leaves_out_hand_overs_and_the_unfinished() -> None:
    at = "2026-12-04T12:00:00+00:00"
    done = "2026-12-04T12:20:00+00:00"
    forces = review.resolved_by_force([
        incident(at, resolved_at=done, resolved_by_force="police:patrol"),
        incident(at, resolved_at=done, resolved_by_force="police:patrol"),
        incident(at, resolved_at=done, resolved_by_force="volunteer"),
        incident(at, resolved_at=done, handed_over_at=done, resolved_by_force="security"),
        incident(at),  # still open
    ])
    assert forces == {"police:patrol": 2, "volunteer": 1}
    assert review.force_of("police", "patrol") == "police:patrol"
    assert review.force_of("security", None) == review.force_of("security", "") == "security"


def test_who_handled_it_counts_hand_overs_for_the_force_that_handed_over() -> None:
    at = "2026-12-04T12:00:00+00:00"
    done = "2026-12-04T12:20:00+00:00"
    forces = review.handled_by_force([
        incident(at, resolved_at=done, handled_by_force="police:patrol"),
        incident(at, resolved_at=done, handled_by_force="police:patrol"),
        incident(at, resolved_at=done, handled_by_force="police:patrol"),
        # handed over by a patrol, filed by the station: the patrol handled it
        incident(at, handed_over_at=done, resolved_at=done, handled_by_force="police:patrol",
                 resolved_by_force="police:station"),
        incident(at, handed_over_at=done, handled_by_force="security"),
        incident(at, resolved_at=done, resolved_by_force="volunteer"),  # stored before
        incident(at, handed_over_at=done),  # stored before: who handed over is not known
        incident(at),  # still open
        incident(at, resolved_at=done, handled_by_force="security", status="linked"),
    ])
    assert list(forces) == ["police:patrol", "security", "unknown", "volunteer"]
    assert forces["police:patrol"] == {"handled": 4, "share": round(4 / 7, 3),
                                       "resolved_on_site": 3, "handed_over": 1,
                                       "resolved_on_site_share": 0.75}
    assert forces["security"] == {"handled": 1, "share": round(1 / 7, 3),
                                  "resolved_on_site": 0, "handed_over": 1,
                                  "resolved_on_site_share": 0.0}
    assert forces["volunteer"]["resolved_on_site"] == forces["unknown"]["handed_over"] == 1
    assert review.handled_by_force([incident(at)]) == {}


@pytest.mark.parametrize(("zone", "day", "since", "until"), [
    ("Asia/Shanghai", date(2026, 12, 4), "2026-12-04T00:00:00+08:00",
     "2026-12-05T00:00:00+08:00"),
    # the day the clocks go forward: 23 hours
    ("America/New_York", date(2026, 3, 8), "2026-03-08T00:00:00-05:00",
     "2026-03-09T00:00:00-04:00"),
    ("+08:00", date(2026, 2, 28), "2026-02-28T00:00:00+08:00", "2026-03-01T00:00:00+08:00"),
])
def test_a_day_runs_from_the_districts_midnight_to_its_next(
        zone: str, day: date, since: str, until: str) -> None:
    """Yesterday's review on the district's clock: in Nanning a UTC day would begin at 08:00."""
    first, last = review.local_day(day, parse_timezone(zone))
    assert (first.isoformat(), last.isoformat()) == (since, until)
    assert first == datetime.fromisoformat(since) and last == datetime.fromisoformat(until)


def test_a_period_ending_at_a_mondays_midnight_lists_no_week_after_it() -> None:
    monday = datetime.fromisoformat("2026-11-30T00:00+08:00")
    weeks = review.by_week([incident("2026-11-29T23:59:59+08:00")], SHANGHAI,
                           since=monday - timedelta(days=7), until=monday)
    assert weeks == [{"week": "2026-11-23", "count": 1}]
    assert review.by_week([], SHANGHAI, since=monday, until=monday) == [
        {"week": "2026-11-30", "count": 0}]  # an empty period: its one week


@pytest.mark.parametrize(("spec", "hours"), [
    ("19-2", {19, 20, 21, 22, 23, 0, 1, 2}), ("8-17", set(range(8, 18))), ("22", {22}),
    ("0-23", set(range(24))), (" 5-5 ", {5}),
])
def test_hours_ranges_run_across_midnight(spec: str, hours: set[int]) -> None:
    assert review.parse_hours(spec) == hours


@pytest.mark.parametrize("spec", ["24", "-1", "19-", "night", "3-30", "1-2-3", ""])
def test_hours_that_are_no_range_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        review.parse_hours(spec)


def test_the_heat_map_puts_the_hottest_cell_first_with_its_hours_and_categories() -> None:
    night = "2026-12-04T13:30:00+00:00"  # 21:30 local
    noon = "2026-12-04T04:10:00+00:00"  # 12:10 local
    incidents = [incident(night), incident(night, NEAR_MARKET, category="fight"),
                 incident(noon, NEAR_MARKET), incident(night, STATION, category="theft")]
    heat = review.heat_map(incidents, SHANGHAI, resolution=8, limit=10)
    assert heat["incidents"] == 4 and heat["cells"] == 2
    hottest, other = heat["hottest"]
    assert hottest["cell"] == h3.latlng_to_cell(*MARKET, 8)
    assert hottest["count"] == 3 and hottest["peak_hour"] == 21
    assert hottest["by_hour"][21] == 2 and hottest["by_hour"][12] == 1
    assert hottest["by_category"] == {"noise": 2, "fight": 1}
    assert abs(hottest["lat"] - MARKET[0]) < 0.01 and abs(hottest["lon"] - MARKET[1]) < 0.01
    assert other["count"] == 1 and other["by_category"] == {"theft": 1}


def test_the_heat_map_keeps_only_the_hours_and_category_asked_for_and_at_most_limit_cells(
) -> None:
    night, noon = "2026-12-04T13:30:00+00:00", "2026-12-04T04:10:00+00:00"
    incidents = [incident(night), incident(noon), incident(night, STATION, category="theft")]
    evening = review.heat_map(incidents, SHANGHAI, resolution=8, limit=10,
                              hours=review.parse_hours("19-2"))
    assert evening["incidents"] == 2 and evening["cells"] == 2
    thefts = review.heat_map(incidents, SHANGHAI, resolution=8, limit=10, category="theft")
    assert thefts["incidents"] == 1 and thefts["hottest"][0]["cell"] == h3.latlng_to_cell(
        *STATION, 8)
    one = review.heat_map(incidents, SHANGHAI, resolution=8, limit=1)
    assert one["cells"] == 2 and [c["count"] for c in one["hottest"]] == [2]


def test_a_coarser_resolution_puts_two_places_a_kilometre_apart_in_one_cell() -> None:
    at = "2026-12-04T13:30:00+00:00"
    incidents = [incident(at), incident(at, (MARKET[0] + 0.008, MARKET[1]))]  # ~900 m north
    assert review.heat_map(incidents, SHANGHAI, resolution=8, limit=10)["cells"] == 2
    coarse = review.heat_map(incidents, SHANGHAI, resolution=6, limit=10)
    assert coarse["cells"] == 1 and coarse["hottest"][0]["count"] == 2


def test_weeks_are_local_mondays_to_sundays_every_week_of_the_period_listed() -> None:
    from datetime import datetime

    # Sunday 2026-11-29 20:00 UTC is Monday 04:00 in Shanghai: the week of 30 November
    thefts = [incident("2026-11-29T20:00:00+00:00", category="ebike_theft"),
              incident("2026-11-24T12:00:00+08:00", category="ebike_theft"),
              incident("2026-11-25T12:00:00+08:00", category="ebike_theft")]
    weeks = review.by_week(thefts, SHANGHAI, since=datetime.fromisoformat("2026-11-10T00:00+08:00"),
                           until=datetime.fromisoformat("2026-12-05T00:00+08:00"))
    assert weeks == [{"week": "2026-11-09", "count": 0}, {"week": "2026-11-16", "count": 0},
                     {"week": "2026-11-23", "count": 2}, {"week": "2026-11-30", "count": 1}]


def test_a_year_earlier_and_the_categories_most_frequent_first() -> None:
    from datetime import datetime

    assert review.a_year_earlier(datetime.fromisoformat("2026-12-05T08:00+08:00")).isoformat() \
        == "2025-12-05T08:00:00+08:00"
    assert review.a_year_earlier(datetime.fromisoformat("2028-02-29T08:00+08:00")).isoformat() \
        == "2027-02-28T08:00:00+08:00"
    counts = review.by_category([incident("2026-12-04T12:00:00+00:00", category="noise"),
                                 incident("2026-12-04T13:00:00+00:00", category="ebike_theft"),
                                 incident("2026-12-04T14:00:00+00:00", category="ebike_theft"),
                                 incident("2026-12-04T15:00:00+00:00", status="linked")])
    assert list(counts.items()) == [("ebike_theft", 2), ("noise", 1)]


def test_an_incident_whose_time_has_no_local_time_is_left_out_of_hours_weeks_and_cells() -> None:
    # stored before intake refused such times: 23:00 UTC on the last day of 9999 is the
    # year 10000 in Shanghai; and a record whose time cannot be read at all
    beyond, unreadable = incident("9999-12-31T23:00:00+00:00"), incident("not a time")
    good = incident("2026-12-04T23:30:00+00:00")
    assert review.local_hour(beyond, SHANGHAI) is None
    assert review.local_hour(unreadable, SHANGHAI) is None
    assert review.local_hour(good, SHANGHAI) == 7
    counts = review.by_hour([beyond, good, unreadable], SHANGHAI)
    assert sum(counts) == 1 and counts[7] == 1
    weeks = review.by_week([beyond, good, unreadable], SHANGHAI,
                           since=datetime.fromisoformat("2026-11-30T00:00+08:00"),
                           until=datetime.fromisoformat("2026-12-05T00:00+08:00"))
    assert weeks == [{"week": "2026-11-30", "count": 1}]
    heat = review.heat_map([beyond, good, unreadable], SHANGHAI, resolution=8, limit=10)
    assert heat["incidents"] == 1 and heat["hottest"][0]["by_hour"][7] == 1
    # the same time has a local hour where the district's clock is behind UTC's
    assert review.local_hour(beyond, parse_timezone("-05:00")) == 18


OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


EAST, WEST = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))
FIRST, LAST = review.EARLIEST.replace(tzinfo=None), review.LATEST.replace(tzinfo=None)


@settings(max_examples=300, deadline=None)
@example(start=FIRST, span=timedelta(0), district=WEST, asked_in=WEST)
@example(start=FIRST, span=timedelta(days=1), district=EAST, asked_in=EAST)
@example(start=LAST, span=timedelta(0), district=EAST, asked_in=WEST)
@example(start=LAST - timedelta(days=366), span=timedelta(days=366), district=EAST,
         asked_in=EAST)
@given(start=st.datetimes(min_value=FIRST, max_value=LAST),
       span=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=366)),
       district=OFFSETS, asked_in=OFFSETS)
def test_every_period_dispatch_accepts_has_its_weeks_a_year_earlier_and_local_hours(
        start: datetime, span: timedelta, district: timezone, asked_in: timezone) -> None:
    # the bounds the API holds since and until to (a year at most between them), as asked
    # with any offset, in a district of any offset: nothing runs out of datetime's years
    since = start.replace(tzinfo=UTC).astimezone(asked_in)
    until = min(since + span, review.LATEST).astimezone(asked_in)
    last = max(since, until - timedelta(microseconds=1))  # [since, until): until is not in it
    reports = [incident(since.isoformat()), incident(last.isoformat())]
    weeks = review.by_week(reports, district, since=since, until=until)
    assert 1 <= len(weeks) <= 54 and sum(w["count"] for w in weeks) == 2
    assert None not in [review.local_hour(r, district) for r in reports]
    assert review.a_year_earlier(since) < since and review.a_year_earlier(until) < until


DEADLINES = {"P1": 30, "P2": 60, "P3": 120, "P4": 300}  # DESIGN's acknowledge-by deadlines
RECEIVED = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)


def waiting(priority: str = "P3", *, after_s: float | None = None, status: str = "unassigned",
            **extra: str) -> dict[str, str]:
    """An incident dispatch received at RECEIVED, its first team sent `after_s` later (None:
    never)."""
    sent = ({"first_assigned_at": (RECEIVED + timedelta(seconds=after_s)).isoformat()}
            if after_s is not None else {})
    return incident(RECEIVED.isoformat(), priority=priority, status=status,
                    received_at=RECEIVED.isoformat(), **sent, **extra)


def test_an_incident_sent_its_first_team_after_its_prioritys_deadline_is_assigned_late() -> None:
    """The time to assign counts only the incidents that got a team; those that got one
    later than their priority's acknowledge deadline after dispatch received them are
    counted apart, each by its own priority's deadline."""
    later = RECEIVED + timedelta(hours=1)
    incidents = [waiting("P1", after_s=31, status="resolved"),  # late for a P1
                 waiting("P1", after_s=30, status="resolved"),  # at the deadline: in time
                 waiting("P4", after_s=290, status="on_scene"),  # in time for a P4
                 waiting("P3", after_s=121, status="closed"),  # late, closed since
                 waiting("P3", status="linked", after_s=500)]  # a duplicate: counts nowhere
    assert review.assigned_after_deadline(incidents, DEADLINES, later) == 2
    assert review.never_assigned(incidents, DEADLINES, later) == {
        "incidents": 0, "open": 0, "ended": 0, "past_deadline": 0}


def test_incidents_no_team_was_sent_to_are_counted_open_or_ended_and_past_their_deadline(
) -> None:
    """An overloaded night: incidents that waited with no team at all, still on the board
    or closed by the command room without one, are none of the time to assign's."""
    now = RECEIVED + timedelta(seconds=100)
    incidents = [
        waiting("P1"),  # still waiting, 100 s: past a P1's 30 s
        waiting("P4", status="dispatching"),  # still waiting, within a P4's 300 s
        waiting("P2", status="closed",  # closed after 90 s with no team: past its 60 s
                closed_at=(RECEIVED + timedelta(seconds=90)).isoformat()),
        waiting("P2", status="closed",  # closed within its deadline (a hoax call)
                closed_at=(RECEIVED + timedelta(seconds=20)).isoformat()),
        waiting("P2", after_s=10, status="resolved"),  # sent a team in time: not counted
    ]
    assert review.never_assigned(incidents, DEADLINES, now) == {
        "incidents": 4, "open": 2, "ended": 2, "past_deadline": 2}
    assert [review.no_team_by_deadline(inc, DEADLINES, now) for inc in incidents] == [
        True, False, True, False, False]
    # the one still waiting within its deadline goes past it as time goes on
    assert review.no_team_by_deadline(incidents[1], DEADLINES, now + timedelta(seconds=201))


def test_a_late_report_waits_for_a_team_from_when_dispatch_received_it() -> None:
    """A report that reached dispatch 50 min after it was made (a 110 system's queue stuck:
    its `late_by_s`) was sent a team 20 s after it came: no routing delay of dispatch's; a
    record of before dispatch kept its receipt counts from its report."""
    reported = RECEIVED - timedelta(minutes=50)
    late = waiting("P1", after_s=20, status="resolved", reported_at=reported.isoformat())
    assert review.waited_for_a_team_s(late, RECEIVED) == 20
    assert not review.no_team_by_deadline(late, DEADLINES, RECEIVED)
    old = {**late, "received_at": ""}
    assert review.waited_for_a_team_s(old, RECEIVED) == 50 * 60 + 20
    assert review.no_team_by_deadline(old, DEADLINES, RECEIVED)


def test_a_record_whose_times_cannot_be_read_is_not_judged_late() -> None:
    broken = waiting("P1", first_assigned_at="not a time")
    assert review.waited_for_a_team_s(broken, RECEIVED) is None
    ended_without_a_time = waiting("P1", status="closed")
    assert review.waited_for_a_team_s(ended_without_a_time, RECEIVED) is None
    unknown_priority = waiting("P9")
    later = RECEIVED + timedelta(days=1)
    assert not review.no_team_by_deadline(unknown_priority, DEADLINES, later)
    assert review.never_assigned([broken, ended_without_a_time, unknown_priority],
                                 DEADLINES, later) == {
        "incidents": 2, "open": 1, "ended": 1, "past_deadline": 0}


def test_a_team_s_refusal_read_after_its_deadline_is_a_decline_on_its_record() -> None:
    """Dispatch read the team's refusal only after the deadline had timed the order out (its
    answers behind): no deadline the team missed, but a refusal all the same, as the KPIs
    count it (`declines`), not an order taken back. The coordinator looking for the team
    that keeps refusing must find this one among its declines."""
    inc = {"incident_id": "inc-1", "reported_at": "2026-12-04T20:00:00+00:00",
           "status": "resolved"}

    def timed_out(team_id: str, answered: str | None) -> dict[str, str]:
        return {"team_id": team_id, "team_name": team_id, "agency_kind": "volunteer",
                "state": "timed_out", **({"answered_in_time": answered} if answered else {})}

    lines = {line["team_id"]: line for line in review.team_record(
        [inc], [[timed_out("t-refused", "declined"), timed_out("t-took", "acknowledged"),
                 timed_out("t-silent", None)]])}
    assert (lines["t-refused"]["declined"], lines["t-refused"]["timed_out"],
            lines["t-refused"]["withdrawn"]) == (1, 0, 0)
    assert (lines["t-took"]["declined"], lines["t-took"]["timed_out"],
            lines["t-took"]["withdrawn"]) == (0, 0, 1)
    assert (lines["t-silent"]["declined"], lines["t-silent"]["timed_out"]) == (0, 1)
