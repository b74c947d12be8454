"""A district's time zone: IANA names and `+HH:MM` offsets that exist, nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from shared.timezones import TimezoneName, parse_timezone


@pytest.mark.parametrize(("name", "hours"), [
    ("+08:00", 8), ("+05:45", 5.75), ("-03:30", -3.5), ("+14:00", 14), ("-12:00", -12),
    ("+00:00", 0), ("-00:00", 0),
])
def test_an_offset_is_read_to_the_minute(name: str, hours: float) -> None:
    assert parse_timezone(name).utcoffset(None) == timedelta(hours=hours)


@pytest.mark.parametrize("name", ["+05:75", "+08:60", "-03:99", "+00:60"])
def test_an_offset_with_minutes_past_59_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="minutes must be 00 to 59"):
        parse_timezone(name)


@pytest.mark.parametrize("name", ["+14:01", "+15:00", "-12:01", "-13:00", "-14:00", "+23:59"])
def test_an_offset_beyond_minus_12_or_plus_14_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="from -12:00 to \\+14:00"):
        parse_timezone(name)


def test_names_are_iana_ones() -> None:
    assert parse_timezone("Asia/Shanghai").utcoffset(None) is None  # depends on the date
    for name in ("Mars/Olympus", "+8:00", "08:00", "+08:00:00", ""):
        with pytest.raises(ValueError):
            parse_timezone(name)


def test_a_field_naming_a_bad_offset_says_what_is_wrong_and_not_the_value() -> None:
    class Plan(BaseModel):
        timezone: TimezoneName

    with pytest.raises(ValidationError) as caught:
        Plan(timezone="+05:75")
    [error] = caught.value.errors()
    assert (error["loc"], error["type"]) == (("timezone",), "invalid_timezone")
    assert error["msg"] == "is not a valid UTC offset: its minutes must be 00 to 59 (+HH:MM)"

