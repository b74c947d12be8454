"""The morning review's groupings (DOMAIN.md: yesterday's incidents by place, type and hour;
the weekly trend; who handled what) against an oracle written from DOMAIN's words, on
generated incidents in districts whose clocks change for summer time, and across midnight."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch import review
from shared.timezones import parse_timezone

# Berlin and Santiago change their clocks around the days generated (29 March, 5 April
# 2026); Lord Howe by half an hour; Kathmandu is 5:45 ahead all year.
DISTRICT_ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
                  "+05:45")
START = datetime(2026, 3, 26, tzinfo=UTC)
FORCES = ("police:patrol", "police:station", "security", "volunteer")

OFFSETS = st.sampled_from([0, 480, 345, -240, 630]).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


@st.composite
def incidents(draw: st.DrawFn) -> dict[str, str]:
    """One incident record as dispatch keeps it: reported within two weeks of START (its time
    written in whatever offset the reporting system used), in some state of its life."""
    at = START + timedelta(minutes=draw(st.integers(0, 14 * 24 * 60)))
    record = {"reported_at": at.astimezone(draw(OFFSETS)).isoformat(),
              "category": draw(st.sampled_from(("noise", "dispute", "ebike_theft"))),
              "zone_id": draw(st.sampled_from(("z1", "z2", ""))),
              "status": draw(st.sampled_from(("resolved", "handed_over", "closed", "linked",
                                               "on_scene", "unassigned")))}
    outcome = draw(st.sampled_from(("none", "resolved", "handed_over")))
    force = draw(st.sampled_from((*FORCES, None)))
    if outcome == "resolved":
        record["resolved_at"] = (at + timedelta(minutes=30)).isoformat()
        record["resolved_by_force"] = draw(st.sampled_from(FORCES))
    elif outcome == "handed_over":
        record["handed_over_at"] = (at + timedelta(minutes=30)).isoformat()
    if outcome != "none" and force is not None:
        record["handled_by_force"] = force
    return record


def local(record: dict[str, str], zone: str) -> datetime:
    return datetime.fromisoformat(record["reported_at"]).astimezone(parse_timezone(zone))


def oracle_weeks(records: list[dict[str, str]], zone: str, since: datetime,
                 until: datetime) -> list[dict[str, object]]:
    """Every local Monday-to-Sunday week that has a day of [since, until), and the reports
    of each (a period [since, since) still names the week of `since`)."""
    tz = parse_timezone(zone)
    first_day = since.astimezone(tz).date()
    last_day = (until - timedelta(microseconds=1)).astimezone(tz).date() \
        if until > since else first_day
    mondays: list[date] = []
    day = first_day
    while day <= last_day:
        monday = day - timedelta(days=day.weekday())
        if monday not in mondays:
            mondays.append(monday)
        day += timedelta(days=1)
    counts = Counter(local(r, zone).date() - timedelta(days=local(r, zone).weekday())
                     for r in records)
    return [{"week": m.isoformat(), "count": counts.get(m, 0)} for m in mondays]


def oracle_handled(records: list[dict[str, str]]) -> dict[str, tuple[int, int]]:
    """Per force: (resolved on site, handed over to the station). A hand-over is the
    handing-over team's; an older record without it: a resolution's resolving team, else
    unknown."""
    out: dict[str, list[int]] = {}
    for r in records:
        if r.get("handed_over_at"):
            out.setdefault(r.get("handled_by_force") or "unknown", [0, 0])[1] += 1
        elif r.get("resolved_at"):
            force = r.get("handled_by_force") or r.get("resolved_by_force") or "unknown"
            out.setdefault(force, [0, 0])[0] += 1
    return {force: (done, handed) for force, (done, handed) in out.items()}


@settings(max_examples=200, deadline=None)
@given(records=st.lists(incidents(), max_size=40), zone=st.sampled_from(DISTRICT_ZONES),
       since_minutes=st.integers(0, 14 * 24 * 60), length=st.integers(0, 9 * 24 * 60))
def test_the_reviews_groupings_agree_with_an_oracle_in_summer_time_districts(
        records: list[dict[str, str]], zone: str, since_minutes: int, length: int) -> None:
    tz = parse_timezone(zone)
    since = START + timedelta(minutes=since_minutes)
    until = since + timedelta(minutes=length)
    counted = [r for r in records if r["status"] != "linked"]  # a duplicate counts nowhere

    assert review.by_hour(records, tz) == [
        sum(1 for r in counted if local(r, zone).hour == hour) for hour in range(24)]
    assert review.by_category(records) == dict(Counter(r["category"] for r in counted))
    assert review.by_zone(records) == dict(Counter(r["zone_id"] or "(none)" for r in counted))
    assert review.by_week(records, tz, since=since, until=until) == oracle_weeks(
        counted, zone, since, until)
    handled = oracle_handled(counted)
    total = sum(done + handed for done, handed in handled.values())
    got = review.handled_by_force(records)
    assert {force: (row["resolved_on_site"], row["handed_over"]) for force, row in got.items()} \
        == handled
    for force, row in got.items():
        done, handed = handled[force]
        assert row["handled"] == done + handed
        assert row["share"] == round((done + handed) / total, 3)
        assert row["resolved_on_site_share"] == round(done / (done + handed), 3)
    assert review.resolved_by_force(records) == dict(Counter(
        r["resolved_by_force"] for r in counted
        if r.get("resolved_at") and not r.get("handed_over_at")))


def test_yesterdays_review_in_the_districts_time_counts_a_night_across_midnight_by_its_hours(
) -> None:
    """The morning review of 5 December in Nanning (UTC+8): a night market's incidents from
    22:00 on the 4th to 01:30 on the 5th are the 4th's up to midnight, the 5th's after; the
    day [00:00, 24:00) local is 16:00 to 16:00 UTC."""
    nanning = parse_timezone("Asia/Shanghai")
    night = [datetime(2026, 12, 4, 22, 0, tzinfo=nanning) + timedelta(minutes=30 * n)
             for n in range(8)]  # 22:00 ... 01:30
    records = [{"reported_at": at.astimezone(UTC).isoformat(), "category": "noise",
                "zone_id": "z1", "status": "resolved"} for at in night]
    day = datetime(2026, 12, 5, tzinfo=nanning)
    in_day = [r for r in records
              if day <= datetime.fromisoformat(r["reported_at"]) < day + timedelta(days=1)]
    hours = review.by_hour(in_day, nanning)
    assert (hours[0], hours[1], sum(hours)) == (2, 2, 4)
    assert review.by_week(in_day, nanning, since=day, until=day + timedelta(days=1)) == [
        {"week": "2026-11-30", "count": 4}]
