"""Volunteers' settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import BrowserCalls
from shared.timezones import DEFAULT_TIMEZONE, TimezoneName


class Settings(BrowserCalls):
    service_name: str = "volunteers"
    default_port: int = 8003
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
