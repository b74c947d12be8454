"""What a valid position fix from a device is."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class PositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="WGS-84 latitude")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS-84 longitude")
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    at: AwareDatetime | None = Field(default=None, description="when the fix was taken")

    @field_validator("at", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        # pydantic would take a number for Unix time: `"at": 0` was a fix of 1970
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 time with its offset, as text")
        return value


def fix_time(fix: PositionIn, *, now: datetime, max_future_s: float) -> datetime:
    """The fix's time (now when the device sent none); ValueError when it lies in the future."""
    at = fix.at or now
    if at - now > timedelta(seconds=max_future_s):
        raise ValueError("is in the future")
    return at
