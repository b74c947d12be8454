"""Volunteers' settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import BrowserCalls
from shared.timezones import DEFAULT_TIMEZONE, TimezoneName

from .domain.status import CheckInLimit


class Settings(BrowserCalls):
    service_name: ClassVar[str] = "volunteers"
    default_port: ClassVar[int] = 8003
    timezone: TimezoneName = Field(
        default=DEFAULT_TIMEZONE,
        description="TIMEZONE: of shift plans that name none (IANA name or +HH:MM)",
    )
    position_publish_interval_ms: int = Field(
        default=2000,
        ge=0,
        description="POSITION_PUBLISH_INTERVAL_MS: at most one unit.position per team this often; "
        "every fix still overwrites the team's latest position",
    )
    position_max_future_s: float = Field(
        default=30, description="POSITION_MAX_FUTURE_S: fixes further ahead are refused"
    )
    position_max_accuracy_m: float = Field(
        default=1000, gt=0,
        description="POSITION_MAX_ACCURACY_M: coarser fixes (accuracy_m above it) are refused: "
        "they cannot place a team for dispatch's ranking",
    )
    import_max_bytes: int = Field(
        default=32 * 1024 * 1024, description="IMPORT_MAX_BYTES: largest roster import body"
    )
    # DOMAIN's secondary shift covers the night, 18:00-08:00: 14 hours, all of them paid.
    max_patrol_hours: float = Field(
        default=14,
        description="MAX_PATROL_HOURS: patrol points of one shift stop here (a forgotten check-out)",
    )
    # An early arrival on the night shift (17:30 for 18:00-08:00) checks out 14.5 h later:
    # the grace keeps such a check-in, and a late check-out, from being ended under them.
    checkin_grace_hours: float = Field(
        default=2, ge=0,
        description="CHECKIN_GRACE_HOURS: a check-in nobody ended is ended this long after "
        "MAX_PATROL_HOURS ran out, as if checked out at MAX_PATROL_HOURS",
    )
    checkin_sweep_s: float = Field(
        default=60, gt=0,
        description="CHECKIN_SWEEP_S: how often the check-ins that ran out are looked for",
    )

    def check_in_limit(self) -> CheckInLimit:
        return CheckInLimit.of(max_hours=self.max_patrol_hours,
                               grace_hours=self.checkin_grace_hours)
