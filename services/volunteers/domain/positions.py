"""What a valid position fix from a device is, and whose fixes move the team."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from shared.events import IsoTime, Number

from .roster import GEO_MAX_LAT
from .status import TeamState

ANY_MEMBER = "*"  # not a member id (EntityId has no "*")


class PositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Within what Redis's GEO index (dispatch's map) holds: a fix beyond it, most often
    # latitude and longitude swapped (Urumqi, 43.8 N 87.6 E), would be a dead letter there.
    lat: Number = Field(ge=-GEO_MAX_LAT, le=GEO_MAX_LAT, allow_inf_nan=False,
                       description="WGS-84 latitude")
    lon: Number = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS-84 longitude")
    accuracy_m: Number | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
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


def check_accuracy(fix: PositionIn, *, max_accuracy_m: float) -> None:
    """ValueError when the fix is too coarse to place the team: a network or IP position
    kilometres wide would move it far from where it is, and dispatch, which ranks teams by
    their distance, would send it to incidents it is far from (or pass it over for ones it
    is near). A fix without `accuracy_m` is taken as precise."""
    if fix.accuracy_m is not None and fix.accuracy_m > max_accuracy_m:
        raise ValueError(f"is coarser than {max_accuracy_m:g} m: such a fix cannot place the "
                         "team; send a fix from the phone's GPS")


def fix_senders(state: TeamState) -> str:
    """Whose fixes move the team on dispatch's map, as the fix's script reads them (the
    state's `fixes_from`): the members on its shift, each from the device they checked in
    with last, as " m1:dev_a m2:dev_b " (ids have neither spaces nor colons: the script
    looks for " <member>:<device> "; a member checked in before devices were kept is there
    alone, " m3 ", and any of their devices moves the team, as then); any member of the
    team (`ANY_MEMBER`) while it holds an order with nobody on its shift (an order that
    came as the shift ended, or that outlasted its last member); nobody ("") otherwise. A
    member of the team who has not checked in (at home, the page open) does not move it,
    nor does another device of a member on the shift (a tablet left at home with the page
    open)."""
    if state.shift_members:
        senders = (f"{m}:{state.shift_devices[m]}" if m in state.shift_devices else m
                   for m in sorted(state.shift_members))
        return f" {' '.join(senders)} "
    return ANY_MEMBER if state.orders else ""
