"""A district's local time: an IANA name (Asia/Shanghai) or a fixed offset (+08:00)."""

from __future__ import annotations

import re
from datetime import timedelta, timezone, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

DEFAULT_TIMEZONE = "Asia/Shanghai"
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def parse_timezone(name: str) -> tzinfo:
    """An IANA name (Asia/Shanghai) or a fixed offset (+08:00); ValueError otherwise."""
    if m := _OFFSET.match(name):
        sign = 1 if m.group(1) == "+" else -1
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        if delta > timedelta(hours=14):
            raise ValueError("is not a valid UTC offset")
        return timezone(sign * delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("is not a known time zone (an IANA name or +HH:MM)") from exc


def _checked(name: str) -> str:
    parse_timezone(name)
    return name


# A setting or field naming a time zone: refused when it loads, not when first used.
TimezoneName = Annotated[str, AfterValidator(_checked)]
