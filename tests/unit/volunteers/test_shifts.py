"""Shift plans: the main/secondary rotation swapping daily, overnight shifts, days off."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from services.volunteers.config import Settings
from services.volunteers.domain.shifts import (
    STORED,
    ShiftPlan,
    planned_on,
    shifts_at,
    shifts_during,
)
from shared.timezones import parse_timezone

CST = timezone(timedelta(hours=8))

PLAN = ShiftPlan.model_validate({
    "timezone": "+08:00",
    "shifts": {"main": {"start": "08:00", "end": "18:00"},
               "secondary": {"start": "18:00", "end": "08:00"}},
    "rotation": ["main", "secondary"],
    "anchor": "2026-11-23",
})


def test_main_and_secondary_swap_every_day() -> None:
    first = planned_on(PLAN, date(2026, 11, 23), default_tz=UTC)
    second = planned_on(PLAN, date(2026, 11, 24), default_tz=UTC)
    third = planned_on(PLAN, date(2026, 11, 25), default_tz=UTC)
    assert first is not None and second is not None and third is not None
    assert (first.shift, second.shift, third.shift) == ("main", "secondary", "main")
    assert first.start == datetime(2026, 11, 23, 8, tzinfo=CST)
    assert first.end == datetime(2026, 11, 23, 18, tzinfo=CST)


def test_a_night_shift_ends_the_next_morning_and_dates_before_the_anchor_cycle_too() -> None:
    night = planned_on(PLAN, date(2026, 11, 22), default_tz=UTC)
    assert night is not None and night.shift == "secondary"
    assert night.end == datetime(2026, 11, 23, 8, tzinfo=CST)


@pytest.mark.parametrize("at, expected", [
    # the duty dispatcher's 08:10: the main shift began at 08:00
    (datetime(2026, 11, 23, 8, 10, tzinfo=CST), [("main", datetime(2026, 11, 23, 8, tzinfo=CST))]),
    (datetime(2026, 11, 23, 8, tzinfo=CST), [("main", datetime(2026, 11, 23, 8, tzinfo=CST))]),
    # the night before's, until 08:00
    (datetime(2026, 11, 23, 7, 59, tzinfo=CST),
     [("secondary", datetime(2026, 11, 22, 18, tzinfo=CST))]),
    # after midnight: the night shift begun the evening before
    (datetime(2026, 11, 25, 2, tzinfo=CST),
     [("secondary", datetime(2026, 11, 24, 18, tzinfo=CST))]),
    # the main shift over, the team's next is the night of the 24th: nobody of it is due
    (datetime(2026, 11, 23, 18, tzinfo=CST), []),
    (datetime(2026, 11, 24, 2, tzinfo=CST), []),
    # the same instant on another clock
    (datetime(2026, 11, 23, 0, 10, tzinfo=UTC), [("main", datetime(2026, 11, 23, 8, tzinfo=CST))]),
])
def test_the_shift_worked_at_an_instant(at: datetime, expected: list) -> None:
    assert [(s.shift, s.start) for s in shifts_at(PLAN, at, default_tz=UTC)] == expected


def test_days_off_plan_nothing() -> None:
    plan = PLAN.model_copy(update={"rotation": ["main", "off", None]})
    assert planned_on(plan, date(2026, 11, 24), default_tz=UTC) is None
    assert planned_on(plan, date(2026, 11, 25), default_tz=UTC) is None


def test_a_plan_without_time_zone_uses_the_default() -> None:
    plan = PLAN.model_copy(update={"timezone": None})
    shift = planned_on(plan, date(2026, 11, 23), default_tz=parse_timezone("Asia/Shanghai"))
    assert shift is not None and shift.start.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize("bad", [
    {"rotation": ["main", "night"]},
    {"timezone": "Mars/Olympus"},
    {"timezone": "+05:75"},
    {"timezone": "-13:00"},
    {"shifts": {}},
    {"rotation": []},
])
def test_invalid_plans_are_refused(bad: dict) -> None:
    data = PLAN.model_dump(mode="json") | bad
    with pytest.raises(ValidationError):
        ShiftPlan.model_validate(data)


def test_a_plan_offset_with_impossible_minutes_is_refused_naming_what_is_wrong() -> None:
    with pytest.raises(ValidationError) as caught:
        ShiftPlan.model_validate(PLAN.model_dump(mode="json") | {"timezone": "+08:60"})
    [error] = caught.value.errors()
    assert error["loc"] == ("timezone",)
    assert error["msg"] == "is not a valid UTC offset: its minutes must be 00 to 59 (+HH:MM)"


def test_a_plan_stored_with_such_an_offset_still_reads_as_it_did() -> None:
    # Stored before offsets were checked: GET /v1/shifts keeps answering (with the times it
    # showed then, the minutes carried into the hours) until the plan is sent again.
    raw = PLAN.model_dump_json().replace('"+08:00"', '"+05:75"')
    stored = ShiftPlan.model_validate_json(raw, context=STORED)
    shift = planned_on(stored, date(2026, 11, 23), default_tz=UTC)
    assert shift is not None and shift.start.utcoffset() == timedelta(hours=6, minutes=15)
    with pytest.raises(ValidationError):
        ShiftPlan.model_validate_json(raw)


def test_a_timezone_setting_with_impossible_minutes_stops_the_service_at_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEZONE", "+08:60")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "timezone\n  is not a valid UTC offset: its minutes must be 00 to 59" in str(
        caught.value)


@pytest.mark.parametrize("start", ["18:00Z", "10:00+00:00", "18:00+08:00", 36000])
def test_a_slot_time_with_an_offset_or_as_a_number_is_refused_naming_it(start: object) -> None:
    # "18:00Z" was taken as 18:00 on the plan's clock (Asia/Shanghai), its offset dropped,
    # and 36000 as 10:00: the board showed the shift hours away from what was sent.
    data = PLAN.model_dump(mode="json")
    data["shifts"]["secondary"] = {"start": start, "end": "08:00"}
    with pytest.raises(ValidationError) as caught:
        ShiftPlan.model_validate(data)
    [error] = caught.value.errors()
    assert error["loc"] == ("shifts", "secondary", "start")
    assert error["msg"] == ("must be a local time HH:MM, without an offset: the plan's "
                            "timezone places it")


def test_a_plan_stored_with_an_offset_on_a_slot_still_reads_as_it_did() -> None:
    raw = PLAN.model_dump_json().replace('"18:00:00"', '"18:00:00Z"')
    stored = ShiftPlan.model_validate_json(raw, context=STORED)
    shift = planned_on(stored, date(2026, 11, 24), default_tz=UTC)
    assert shift is not None and shift.start == datetime(2026, 11, 24, 18, tzinfo=CST)



def one_shift(start: str, end: str, timezone: str = "+08:00") -> ShiftPlan:
    """A plan working one shift on the anchor date, 2026-11-23, and off the next."""
    return ShiftPlan.model_validate({"timezone": timezone,
                                     "shifts": {"late": {"start": start, "end": end}},
                                     "rotation": ["late", "off"], "anchor": "2026-11-23"})


def during(plan: ShiftPlan, day: date) -> list[tuple[str, datetime]]:
    return [(s.shift, s.start) for s in shifts_during(plan, day, day_tz=CST, default_tz=UTC)]


def test_the_night_shift_begun_the_evening_before_is_one_of_the_days_shifts() -> None:
    # 2026-11-24 starts with the 23rd's secondary (on the street till 08:00); the 23rd's
    # main ended at 18:00 that day: not the 24th's
    assert during(PLAN, date(2026, 11, 24)) == [
        ("secondary", datetime(2026, 11, 24, 18, tzinfo=CST))]
    assert during(PLAN, date(2026, 11, 25)) == [
        ("secondary", datetime(2026, 11, 24, 18, tzinfo=CST)),
        ("main", datetime(2026, 11, 25, 8, tzinfo=CST))]


def test_a_shift_ending_at_midnight_is_not_the_next_days() -> None:
    assert during(one_shift("16:00", "00:00"), date(2026, 11, 24)) == []


def test_the_day_is_the_districts_a_plan_on_another_clock_is_placed_on_it() -> None:
    # 20:00-23:00 at -05:00 on the 23rd is 09:00-12:00 on the 24th in the district (+08:00)
    far = one_shift("20:00", "23:00", timezone="-05:00")
    assert during(far, date(2026, 11, 23)) == []
    assert [start.astimezone(CST) for _, start in during(far, date(2026, 11, 24))] == [
        datetime(2026, 11, 24, 9, tzinfo=CST)]
