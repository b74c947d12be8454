"""What a valid position fix from a device is, and whose fixes move the team."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from shared.events import IsoTime

from .status import TeamState

ANY_MEMBER = "*"  # not a member id (EntityId has no "*")


class PositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="WGS-84 latitude")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS-84 longitude")
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    at: IsoTime | None = Field(default=None, description="when the fix was taken (a time "
                               "slightly ahead of the server's clock counts as now)")


def fix_time(fix: PositionIn, *, now: datetime, max_future_s: float) -> datetime:
    """The fix's time (now when the device sent none); ValueError when it lies further in
    the future than a phone's clock may run fast. A fix stamped ahead within that was taken
    by now at the latest: kept as now, so it neither outranks a teammate's later fix (older
    fixes are ignored) nor counts as fresh at dispatch longer than it is."""
    at = fix.at or now
    if at - now > timedelta(seconds=max_future_s):
        raise ValueError("is in the future")
    return min(at, now)


def fix_senders(state: TeamState) -> str:
    """Whose fixes move the team on dispatch's map, as the fix's script reads them (the
    state's `fixes_from`): the members on its shift, as " m1 m2 " (ids have no spaces: the
    script looks for " <member> "); any member of the team (`ANY_MEMBER`) while it holds an
    order with nobody on its shift (an order that came as the shift ended, or that outlasted
    its last member); nobody ("") otherwise. A member of the team who has not checked in
    (at home, the page open) does not move it."""
    if state.shift_members:
        return f" {' '.join(sorted(state.shift_members))} "
    return ANY_MEMBER if state.orders else ""
