"""Intake's rules: priorities and duplicate reports."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone

from services.intake.domain import (
    IncidentIn,
    OpenIncident,
    classify,
    distance_m,
    find_duplicate,
    is_retry_of,
    report_fingerprint,
    report_time,
)
from services.intake.store import search_radius_m
from shared.events import Location
from shared.policy import load_policy, normalise_flags

POLICY = load_policy()
NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
HERE = Location(lat=22.8170, lon=108.3665)


def open_incident(incident_id: str, *, dlat: float = 0.0, minutes_ago: float = 1,
                  status: str = "assigned") -> OpenIncident:
    return OpenIncident(incident_id=incident_id, status=status,
                        reported_at=NOW - timedelta(minutes=minutes_ago),
                        location=Location(lat=HERE.lat + dlat, lon=HERE.lon))


def test_flags_that_mean_danger_raise_priority_to_p1() -> None:
    assert classify("noise", (), POLICY) == "P4"
    for flag in ("weapon", "injury", "in_progress"):
        assert classify("noise", (flag,), POLICY) == "P1"
    assert classify("noise", ("drunk",), POLICY) == "P4"


def test_flags_are_normalised_once_each() -> None:
    assert normalise_flags([" Weapon", "weapon", "", "injury"]) == ("weapon", "injury")


def test_a_report_within_200_m_and_10_min_of_an_open_incident_is_a_duplicate() -> None:
    found = find_duplicate(new_at=NOW, new_location=HERE, policy=POLICY,
                           candidates=[open_incident("far", dlat=0.003),
                                       open_incident("near", dlat=0.001)])
    assert found == "near"  # 111 m; "far" is 333 m away


def test_old_or_finished_incidents_are_not_duplicates() -> None:
    candidates = [open_incident("old", minutes_ago=11),
                  open_incident("resolved", status="resolved"),
                  open_incident("handed", status="handed_over"),
                  open_incident("closed", status="closed")]
    assert find_duplicate(new_at=NOW, new_location=HERE, candidates=candidates,
                          policy=POLICY) is None


def test_the_window_runs_to_the_latest_report_linked_to_the_incident() -> None:
    # Reported 25 minutes ago, its latest duplicate (a door still held open) 8 minutes ago:
    # a report now is within 10 minutes of that one, and of the incident's event. Nothing
    # linked since 11 minutes ago: a report now is of another event.
    going_on = open_incident("going", minutes_ago=25).model_copy(
        update={"latest_at": NOW - timedelta(minutes=8)})
    stopped = open_incident("stopped", minutes_ago=25).model_copy(
        update={"latest_at": NOW - timedelta(minutes=11)})
    assert find_duplicate(new_at=NOW, new_location=HERE, candidates=[going_on],
                          policy=POLICY) == "going"
    assert find_duplicate(new_at=NOW, new_location=HERE, candidates=[stopped],
                          policy=POLICY) is None
    # a late report is judged against the incident's whole span: 9 minutes before its first
    assert find_duplicate(new_at=NOW - timedelta(minutes=34), new_location=HERE,
                          candidates=[going_on], policy=POLICY) == "going"


def test_the_search_for_neighbours_reaches_past_what_redis_measures_as_the_radius() -> None:
    # Redis measures on a 6,372,797.56 m Earth, intake on 6,371,000 m: a neighbour intake
    # puts at exactly the radius is that much farther for Redis, plus a geohash's rounding
    # (well under a metre); find_duplicate then judges the radius on intake's own measure
    redis_ratio = 6_372_797.560856 / 6_371_000
    radius = POLICY.duplicate_radius_m
    assert search_radius_m(radius) >= radius * redis_ratio + 0.5
    assert search_radius_m(radius) <= radius + 2  # a margin, not another radius
    at_the_radius = Location(lat=HERE.lat + radius / (2 * math.pi * 6_371_000 / 360),
                             lon=HERE.lon)
    assert round(distance_m(HERE, at_the_radius), 6) == radius
    found = find_duplicate(new_at=NOW, new_location=at_the_radius, policy=POLICY,
                           candidates=[open_incident("edge")])
    assert found == "edge"


def test_a_time_ahead_of_intake_s_clock_counts_as_when_the_report_came() -> None:
    # The candidate's system said 20:04 when it reached intake at 20:00 (a clock 4 min
    # ahead); the new report, from a good clock, says 19:51: 9 minutes apart, not 13.
    ahead = open_incident("ahead", minutes_ago=-4).model_copy(update={"received_at": NOW})
    at = NOW - timedelta(minutes=9)
    assert find_duplicate(new_at=at, new_location=HERE, candidates=[ahead],
                          policy=POLICY) == "ahead"
    assert report_time(NOW + timedelta(minutes=4), NOW) == NOW
    assert report_time(NOW - timedelta(minutes=9), NOW) == NOW - timedelta(minutes=9)


def test_a_report_s_fingerprint_is_of_its_moment_not_of_the_offset_it_was_written_at() -> None:
    def report(at: datetime) -> IncidentIn:
        return IncidentIn.model_validate({
            "external_ref": "110-1", "category": "noise", "district": "d1",
            "location": {"lat": 22.8, "lon": 108.3}, "reported_at": at.isoformat()})

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    beijing, utc = report(at.astimezone(timezone(timedelta(hours=8)))), report(at)
    later = report(at + timedelta(seconds=1))
    assert report_fingerprint(beijing) == report_fingerprint(utc)
    assert report_fingerprint(later) != report_fingerprint(utc)
    # a record made before kept the digest of the time as it was written: its report sent
    # again as it was is still its retry, and a report of another moment is not
    as_written = beijing.model_dump(mode="json", exclude={"external_ref"})
    old = hashlib.sha256(json.dumps(as_written, sort_keys=True).encode()).hexdigest()[:32]
    assert old != report_fingerprint(beijing)
    assert is_retry_of(old, beijing) and is_retry_of(report_fingerprint(utc), beijing)
    assert not is_retry_of(old, later)
    assert is_retry_of(None, beijing) and is_retry_of("", beijing)  # older than digests
