"""Shift plans: named shifts and a daily rotation, e.g. main 08:00-18:00 and secondary
18:00-08:00 swapping every day (DOMAIN.md), and which shifts are worked on a given date.

A plan is `{"timezone"?, "shifts": {"main": {"start": "08:00", "end": "18:00"}, ...},
"rotation": ["main", "secondary"], "anchor": "2026-11-23"}`: on the anchor date the team
works rotation[0], the next day rotation[1], and so on, cycling; `"off"` (or null) is a
day off. A shift whose end is not after its start ends the next day.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.timezones import check_timezone, parse_timezone

OFF = "off"
# The validation context of a plan read back from the store: its time zone was checked when
# it was sent, by the rules of that day (see `plan_timezone`).
STORED = {"stored": True}
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
# A slot's time of day on the plan's clock: HH:MM (or HH:MM:SS), no offset, not a number.
_LOCAL_TIME = re.compile(r"\d{2}:\d{2}(:\d{2})?")
_END_OF_DAY = ("24:00", "24:00:00")


class ShiftSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time = Field(description="local time, HH:MM")
    end: time = Field(description="local time, HH:MM; not after start = the next day "
                      "(24:00: midnight at the day's end, as 00:00)")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _local(cls, value: object, info: ValidationInfo) -> object:
        # The plan's time zone places the slot. An offset given with the time ("18:00Z")
        # would be dropped (the shift shown hours away from what was meant), and a number
        # is read as seconds from midnight UTC: both refused. A plan stored before reads
        # as it did.
        if (info.context or {}).get("stored"):
            return value
        if not isinstance(value, str) or not _LOCAL_TIME.fullmatch(value):
            raise PydanticCustomError(
                "local_time", "must be a local time HH:MM, without an offset: the plan's "
                "timezone places it")
        # A duty roster ends the evening (or the whole day) at 24:00: midnight at the day's
        # end, which an end not after its start already means (00:00).
        if value in _END_OF_DAY:
            if info.field_name == "start":
                raise PydanticCustomError(
                    "end_of_day", "24:00 ends a day: a shift starting at midnight starts "
                    "at 00:00")
            return "00:00"
        return value


class ShiftPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str | None = Field(default=None, description="IANA name or +HH:MM")
    shifts: dict[str, ShiftSlot] = Field(min_length=1, max_length=8)
    rotation: list[str | None] = Field(min_length=1, max_length=56)
    anchor: date = Field(description="the date on which rotation[0] is worked")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not (info.context or {}).get("stored"):
            check_timezone(value)
        return value

    @field_validator("shifts")
    @classmethod
    def _names(cls, value: dict[str, ShiftSlot]) -> dict[str, ShiftSlot]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9_\-]{1,32}", name) or name == OFF:
                raise ValueError("shift names are 1-32 of a-z, 0-9, _ and - (and not 'off')")
        return value

    @model_validator(mode="after")
    def _rotation(self) -> ShiftPlan:
        for entry in self.rotation:
            if entry is not None and entry != OFF and entry not in self.shifts:
                raise ValueError("rotation: every entry must name a shift of the plan, or 'off'")
        return self


class PlannedShift(BaseModel):
    model_config = ConfigDict(frozen=True)

    shift: str
    start: datetime
    end: datetime


def plan_timezone(plan: ShiftPlan, *, default_tz: tzinfo) -> tzinfo:
    """The plan's time zone (`default_tz` if it names none). A `+HH:MM` offset stored before
    offsets were checked (minutes 60-99, or west of -12:00) reads as it did then, minutes
    carried into hours, so stored plans keep the times they showed; sending the plan again
    is refused until its offset is corrected."""
    if plan.timezone is None:
        return default_tz
    try:
        return parse_timezone(plan.timezone)
    except ValueError:
        m = _OFFSET.match(plan.timezone)
        if m is None:
            raise
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def planned_on(plan: ShiftPlan, day: date, *, default_tz: tzinfo) -> PlannedShift | None:
    """The shift the plan puts on `day` (the one starting that day), or None for a day off."""
    entry = plan.rotation[(day - plan.anchor).days % len(plan.rotation)]
    if entry is None or entry == OFF:
        return None
    slot = plan.shifts[entry]
    tz = plan_timezone(plan, default_tz=default_tz)
    start = datetime.combine(day, slot.start, tzinfo=tz)
    end = datetime.combine(day, slot.end, tzinfo=tz)
    if end <= start:
        end += timedelta(days=1)
    return PlannedShift(shift=entry, start=start, end=end)


def shifts_during(plan: ShiftPlan, day: date, *, day_tz: tzinfo,
                  default_tz: tzinfo) -> list[PlannedShift]:
    """The plan's shifts worked during `day` on the district's clock (`day_tz`): each started
    before the day's end and ending after its start, so the night shift begun the evening
    before is one of the day's until it ends in the morning (at 02:00 it is the one on the
    street); one ending at midnight is not. Earliest first."""
    day_start = datetime.combine(day, time(), tzinfo=day_tz)
    day_end = datetime.combine(day + timedelta(days=1), time(), tzinfo=day_tz)
    # The day's dates on the plan's clock, and the one before: a shift lasts at most a day.
    tz = plan_timezone(plan, default_tz=default_tz)
    first = day_start.astimezone(tz).date() - timedelta(days=1)
    last = (day_end.astimezone(tz) - timedelta(microseconds=1)).date()
    shifts = (planned_on(plan, first + timedelta(days=n), default_tz=default_tz)
              for n in range((last - first).days + 1))
    return [s for s in shifts if s is not None and s.start < day_end and s.end > day_start]


def shifts_at(plan: ShiftPlan, at: datetime, *, default_tz: tzinfo) -> list[PlannedShift]:
    """The plan's shifts being worked at the instant `at`: started at or before it and
    ending after it (the night shift begun the evening before, at 02:00; not the main shift
    at 07:59, nor at 18:00 when it ends). Usually one or none; earliest first. No day is
    asked for: an instant is the same on every clock."""
    tz = plan_timezone(plan, default_tz=default_tz)
    today = at.astimezone(tz).date()
    shifts = (planned_on(plan, day, default_tz=default_tz)
              for day in (today - timedelta(days=1), today))  # a shift lasts at most a day
    return [s for s in shifts if s is not None and s.start <= at < s.end]
