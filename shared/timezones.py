"""A district's local time: an IANA name (Asia/Shanghai) or a fixed offset (+08:00)."""

from __future__ import annotations

import re
from datetime import date, timedelta, timezone, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

DEFAULT_TIMEZONE = "Asia/Shanghai"
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
# The offsets in use on Earth: from Baker Island's -12:00 to Kiribati's +14:00.
WESTMOST, EASTMOST = timedelta(hours=-12), timedelta(hours=14)


def parse_timezone(name: str) -> tzinfo:
    """An IANA name (Asia/Shanghai) or a fixed offset (+08:00, minutes 00-59, from -12:00 to
    +14:00); ValueError otherwise, its message what is wrong (never the value itself)."""
    if m := _OFFSET.match(name):
        hours, minutes = int(m.group(2)), int(m.group(3))
        if minutes >= 60:
            raise ValueError("is not a valid UTC offset: its minutes must be 00 to 59 (+HH:MM)")
        offset = (1 if m.group(1) == "+" else -1) * timedelta(hours=hours, minutes=minutes)
        if not WESTMOST <= offset <= EASTMOST:
            raise ValueError("is not a valid UTC offset: it must be from -12:00 to +14:00")
        return timezone(offset)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("is not a known time zone (an IANA name or +HH:MM)") from exc


def check_timezone(name: str) -> str:
    """`name` if `parse_timezone` takes it; else a validation error with its message alone
    (pydantic would put "Value error, " before a ValueError's)."""
    try:
        parse_timezone(name)
    except ValueError as exc:
        raise PydanticCustomError("invalid_timezone", str(exc)) from None
    return name


# A setting or field naming a time zone: refused when it loads, not when first used.
TimezoneName = Annotated[str, AfterValidator(check_timezone)]


def _calendar_date(value: object) -> object:
    """YYYY-MM-DD alone: pydantic would take a midnight (`...T00:00:00`, with an offset or
    none) or its seconds since 1970 as the date, and the district's day begins at its own
    midnight, not that one."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise PydanticCustomError("calendar_date", "must be a date YYYY-MM-DD, without a "
                                  "time: the district's clock places its day")
    return value


# A date asked for in a query: a calendar day on the district's clock.
CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
