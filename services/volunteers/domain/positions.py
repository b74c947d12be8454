"""What a valid position fix from a device is."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from shared.events import IsoTime


class PositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="WGS-84 latitude")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS-84 longitude")
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    at: IsoTime | None = Field(default=None, description="when the fix was taken")


def fix_time(fix: PositionIn, *, now: datetime, max_future_s: float) -> datetime:
    """The fix's time (now when the device sent none); ValueError when it lies in the future."""
    at = fix.at or now
    if at - now > timedelta(seconds=max_future_s):
        raise ValueError("is in the future")
    return at
