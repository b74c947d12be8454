"""The times a period is asked for in (since, until on the board, KPIs and heat map): ISO 8601
with an offset, from 1970 to the end of 9998, so every sum over them stays a date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from services.dispatch.api import Instant

INSTANT = TypeAdapter(Instant)


@pytest.mark.parametrize(("text", "meant"), [
    ("2026-12-05T00:00:00Z", datetime(2026, 12, 5, tzinfo=UTC)),
    ("2026-12-05T08:00:00+08:00", datetime(2026, 12, 5, 8, tzinfo=timezone(timedelta(hours=8)))),
    ("2026-12-05T08:00:00.250+08:00", datetime(2026, 12, 5, 0, 0, 0, 250_000, tzinfo=UTC)),
    ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
    ("1970-01-01T08:00:00+08:00", datetime(1970, 1, 1, tzinfo=UTC)),
    ("9998-12-31T23:59:59.999999Z", datetime(9998, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ("9999-01-01T13:59:59+14:00", datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_an_iso_time_with_its_offset_is_taken_as_written(text: str, meant: datetime) -> None:
    taken = INSTANT.validate_python(text)
    assert taken == meant  # the same instant
    assert taken.isoformat().startswith(text[:19])  # as written: the answer echoes it


@pytest.mark.parametrize("value", [
    "0.5", "1700000000", 1_700_000_000, 0.5,  # pydantic would read seconds since 1970
    "2026-12-05T00:00:00",  # no offset: whose midnight?
    "2026-12-05", "tomorrow", "",
])
def test_what_is_not_an_iso_time_with_an_offset_is_refused(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        INSTANT.validate_python(value)
    assert refused.value.errors()[0]["type"] == "iso_instant"
    assert "ISO 8601" in refused.value.errors()[0]["msg"]


@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00Z",  # a day, a year before: no such date
    "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00+00:01",  # a minute before 1970 in UTC
    "9999-01-01T00:00:00Z",
    "9998-12-31T23:59:59-01:00",  # 9999 in UTC
    "9999-12-31T23:59:59-23:59",  # the year 10000 in UTC: compared without converting
    "0001-01-01T00:00:00+23:59",  # the year 0 in UTC
])
def test_a_time_before_1970_or_after_9998_is_refused(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        INSTANT.validate_python(text)
    assert refused.value.errors()[0]["type"] == "instant_range"


@pytest.mark.parametrize("text", [
    "2026-12-05T08:00:00 08:00",  # ?since=2026-12-05T08:00:00+08:00 typed into curl
    "2026-12-05T08:00:00.250 08:00",
    "2026-12-05 08:00:00 08:00",
    "2026-12-05T08:00 0800",
])
def test_an_offset_whose_plus_the_address_turned_into_a_space_is_taken_as_meant(
        text: str) -> None:
    """In a query string `+` reads as a space: a time with the district's offset written
    into an address by hand (curl, a browser's bar) came as `...08:00:00 08:00`, and was
    refused with a message whose own example, `+08:00`, is what had been written."""
    taken = INSTANT.validate_python(text)
    assert taken.utcoffset() == timedelta(hours=8)
    assert taken.astimezone(UTC).hour == 0
