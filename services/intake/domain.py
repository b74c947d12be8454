"""Intake's decisions: what a valid report is, its priority, and whether it duplicates another."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events import Caller, DistrictName, IsoTime, Location, Priority, utcnow
from shared.policy import Policy

# A report's own time: a system's clock a little ahead is tolerated; a report older than
# this is a record to pass on by other means, not an incident to send a team to (and the
# command room's board, which lists the last 30 days by default, would not show it).
CLOCK_SKEW = timedelta(minutes=5)
MAX_REPORT_AGE = timedelta(days=7)

# Redis's GEO commands (the open index, dispatch's candidate search) take latitudes within
# +-85.05112878 (the Web Mercator square) and refuse the rest: such a report failed in the
# record script, answered 503 "retry" for ever. Far north or south of any district: most
# often latitude and longitude swapped (Urumqi, 43.8 N 87.6 E, sent as lat 87.6).
GEO_MAX_LAT = 85.05112878
MAX_FLAG_CHARS = 32

OPEN_STATUSES = frozenset(
    {"reported", "dispatching", "assigned", "acknowledged", "en_route", "on_scene", "unassigned"}
)


class ReportedLocation(Location):
    """Where a report happened: a WGS-84 place that the map (Redis GEO) can hold."""

    lat: float = Field(description=f"WGS-84 latitude, within +-{GEO_MAX_LAT} (the map's)",
                       json_schema_extra={"minimum": -GEO_MAX_LAT, "maximum": GEO_MAX_LAT})

    @field_validator("lat")
    @classmethod
    def _mappable(cls, value: float) -> float:
        if not -GEO_MAX_LAT <= value <= GEO_MAX_LAT:
            raise ValueError(f"is beyond {GEO_MAX_LAT} degrees north or south, which the map "
                             "cannot hold (latitude and longitude swapped?)")
        return value


class IncidentIn(BaseModel):
    """What another system posts."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_ref: str = Field(min_length=1, max_length=128, description="the caller's own id")
    category: str = Field(min_length=1, max_length=64)
    location: ReportedLocation
    district: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=2000)
    caller: Caller | None = None
    # Each a word, as the command room's own (dispatch's revise, 32 characters): flags go
    # with every order to every team, volunteers too, and a linked report's into the other
    # incident's view: never a place for text.
    flags: list[Annotated[str, Field(max_length=MAX_FLAG_CHARS)]] = Field(
        default_factory=list, max_length=16)
    reported_at: IsoTime | None = Field(
        default=None, description="when it was reported (ISO 8601 with its offset; now if "
        "absent): at most 5 minutes ahead of intake's clock and at most 7 days ago")

    @field_validator("location", mode="before")
    @classmethod
    def _checked_place(cls, value: object) -> object:
        # a Location built in code (the benchmarks) is checked as a posted one is
        if isinstance(value, Location) and not isinstance(value, ReportedLocation):
            return value.model_dump()
        return value

    @field_validator("reported_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        now = utcnow()
        if value is not None and value > now + CLOCK_SKEW:
            raise ValueError("is in the future (more than 5 minutes ahead of intake's clock)")
        if value is not None and value < now - MAX_REPORT_AGE:
            raise ValueError("is more than 7 days ago: pass it to the command room directly")
        return value


class SystemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    districts: list[DistrictName] = Field(min_length=1, max_length=64)


def unknown_category_message(policy: Policy) -> str:
    # what the caller sent is not repeated (DESIGN.md: a message never echoes the body)
    return f"category is not one of the policy's: {', '.join(sorted(policy.categories))}"


def classify(category: str, flags: tuple[str, ...], policy: Policy) -> Priority:
    return policy.classify(category, flags)


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6_371_000.0
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


# A report at the radius is within it: the haversine of a point placed exactly 200 m away
# comes out a fraction of a nanometre either side (floating point), far below any fix.
RADIUS_TOLERANCE_M = 1e-6


class OpenIncident(BaseModel):
    incident_id: str
    status: str
    reported_at: datetime
    location: Location


def find_duplicate(
    *, new_at: datetime, new_location: Location, candidates: list[OpenIncident], policy: Policy
) -> str | None:
    """The nearest open incident within the duplicate radius (at it included) and time
    window, if any. The candidates may come from a little farther (store.search_radius_m):
    this is where the radius is judged."""
    window = timedelta(seconds=policy.duplicate_window_s)
    best: tuple[float, str] | None = None
    for c in candidates:
        if c.status not in OPEN_STATUSES:
            continue
        if abs(new_at - c.reported_at) > window:
            continue
        d = distance_m(new_location, c.location)
        if d <= policy.duplicate_radius_m + RADIUS_TOLERANCE_M and (best is None or d < best[0]):
            best = (d, c.incident_id)
    return best[1] if best else None
