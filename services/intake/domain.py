"""Intake's decisions: what a valid report is, its priority, and whether it duplicates another."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events import (
    Caller,
    CancelReason,
    DistrictName,
    IsoTime,
    Location,
    Number,
    Priority,
    utcnow,
)
from shared.policy import Policy, normalise_flags

from .datums import Datum, to_wgs84

# A report's own time: a system's clock a little ahead is tolerated (kept as it said it);
# one further ahead is a clock that is wrong (drifted without NTP, local time sent as UTC),
# and the report is taken at the time it came (taken_time). A report older than
# MAX_REPORT_AGE is a record to pass on by other means, not an incident to send a team to
# (and the command room's board, which lists the last 30 days by default, would not show it).
CLOCK_SKEW = timedelta(minutes=5)
MAX_REPORT_AGE = timedelta(days=7)

# Redis's GEO commands (the open index, dispatch's candidate search) take latitudes within
# +-85.05112878 (the Web Mercator square) and refuse the rest: such a report failed in the
# record script, answered 503 "retry" for ever. Far north or south of any district: most
# often latitude and longitude swapped (Urumqi, 43.8 N 87.6 E, sent as lat 87.6).
GEO_MAX_LAT = 85.05112878
MAX_FLAG_CHARS = 32
# What a flag may hold at all in a request (a report's retry from before MAX_FLAG_CHARS is
# judged with its ref first): any longer is refused outright.
MAX_FLAG_TEXT = 256

OPEN_STATUSES = frozenset(
    {"reported", "dispatching", "assigned", "acknowledged", "en_route", "on_scene", "unassigned"}
)
# An incident in one of these has ended; dispatch may still add to it (a remark, evidence),
# and a hand-over ends again when its station resolves it.
ENDED_STATUSES = frozenset({"resolved", "handed_over", "closed"})


class ReportedLocation(Location):
    """Where a report happened: a WGS-84 place that the map (Redis GEO) can hold."""

    # Python's json reads NaN and Infinity: told as what they are ("should be a finite
    # number", as volunteers' fixes are), not as a latitude beyond the map or a longitude
    # too large
    lat: Number = Field(description=f"WGS-84 latitude, within +-{GEO_MAX_LAT} (the map's)",
                       allow_inf_nan=False,
                       json_schema_extra={"minimum": -GEO_MAX_LAT, "maximum": GEO_MAX_LAT})
    lon: Number = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS-84 longitude")
    # Read, then dropped: the place is taken to WGS-84 as it is validated (_in_wgs84), so
    # nothing after (the record, the event, a retry's fingerprint) holds another datum.
    datum: Datum | None = Field(
        default=None, exclude=True,
        description="the datum `lat` and `lon` are given in, when not WGS-84: `gcj02` "
        "(AMap, Tencent: a place taken from such a map lies 300-700 m off) or `bd09` "
        "(Baidu), which intake converts to WGS-84; `wgs84` and `cgcs2000` (the national "
        "survey's, police GIS's: WGS-84 within centimetres) are taken as they are. In any "
        "case, with or without a hyphen (`GCJ-02`)")

    @field_validator("lat")
    @classmethod
    def _mappable(cls, value: float) -> float:
        if not -GEO_MAX_LAT <= value <= GEO_MAX_LAT:
            raise ValueError(f"is beyond {GEO_MAX_LAT} degrees north or south, which the map "
                             "cannot hold (latitude and longitude swapped?)")
        return value

    @field_validator("datum", mode="before")
    @classmethod
    def _as_spelt(cls, value: object) -> object:
        # vendors write "GCJ-02", "GCJ02", "gcj_02": one datum, as a flag is one word in any case
        if isinstance(value, str):
            return value.strip().lower().replace("-", "").replace("_", "")
        return value

    @model_validator(mode="after")
    def _in_wgs84(self) -> ReportedLocation:
        if self.datum is None:
            return self
        lon, lat = to_wgs84(self.datum, self.lon, self.lat)
        return self.model_copy(update={"lat": lat, "lon": lon, "datum": None})


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
    # incident's view: never a place for text. MAX_FLAG_CHARS is judged by the handler
    # (overlong_flag), after a retry of a report taken before the limit is recognised;
    # here only what no request may carry.
    flags: list[Annotated[str, Field(max_length=MAX_FLAG_TEXT,
                                     json_schema_extra={"maxLength": MAX_FLAG_CHARS})]] = Field(
        default_factory=list, max_length=16)
    reported_at: IsoTime | None = Field(
        default=None, description="when it was reported (ISO 8601 with its offset; now if "
        "absent): at most 7 days ago. One more than 5 minutes ahead of intake's clock (a "
        "clock running fast, a local time sent as UTC) is taken as the moment the report "
        "came, never refused")

    @field_validator("location", mode="before")
    @classmethod
    def _checked_place(cls, value: object) -> object:
        # a Location built in code (the benchmarks) is checked as a posted one is
        if isinstance(value, Location) and not isinstance(value, ReportedLocation):
            return value.model_dump()
        return value

    @field_validator("flags", mode="before")
    @classmethod
    def _null_is_none(cls, value: object) -> object:
        # Go writes an empty slice as null, many serialisers an absent list likewise: null
        # is "no flags", as null is "absent" for every other optional field of a report
        return [] if value is None else value

    @field_validator("reported_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        # A time ahead is not refused (taken_time): an alarm from a gateway whose clock is
        # wrong is still the only word of a break-in, and a refused one is not sent again.
        now = utcnow()
        if value is not None and value < now - MAX_REPORT_AGE:
            raise ValueError("is more than 7 days ago: pass it to the command room directly")
        if value is not None:
            try:  # (its retry's digest, report_fingerprint, and the board take it in UTC)
                value.astimezone(UTC)
            except OverflowError:
                raise ValueError("is past the last time UTC can name (year 9999)") from None
        return value


class Accepted(BaseModel):
    """What `POST /v1/incidents` answers: 202 for a new report, 200 for a retry of one."""

    incident_id: str
    priority: Priority | None = Field(description="this report's priority (a retry's: the "
                                      "incident's now)")
    status: str = Field(description="reported, or linked (a duplicate: no team is sent for "
                        "it itself; see `linked_to`); a retry's: the incident's status now")
    linked_to: str | None = Field(default=None, description="present while the report is "
                                  "linked: the incident it joined")
    follow_up_of: str | None = Field(default=None, description="a follow-up's: the report "
                                     "it adds to (the incident id in its path)")


class CancelRequestIn(BaseModel):
    """A reporting system's request to cancel its report (the caller says it was a mistake,
    an alert retracted): for the command room, which decides."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_ref: str = Field(min_length=1, max_length=128, description="this system's own "
                              "id for the request (the call back, the retraction): its "
                              "idempotency key")
    reason: CancelReason


class CancelAccepted(BaseModel):
    """What `POST /v1/incidents/{id}/cancel-requests` answers: 202 new, 200 a retry."""

    incident_id: str = Field(description="the report the request names (the path's)")
    request_id: str
    status: str = Field(description="`cancel_requested`: passed to the command room, which "
                        "closes the incident or keeps it open; the incident's own status is "
                        "unchanged (see GET /v1/incidents/{id})")
    linked_to: str | None = Field(default=None, description="for a report linked to another "
                                  "incident: that incident, which the request goes to")


def cancel_fingerprint(body: CancelRequestIn, *, report: str) -> str:
    """What a retry of a cancel request must send again (the report it names and its
    reason), as a digest: the record keeps no copy of the reason."""
    text = json.dumps({"report": report, "reason": body.reason}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SystemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    districts: list[DistrictName] = Field(min_length=1, max_length=64)


def unknown_category_message(policy: Policy) -> str:
    # what the caller sent is not repeated (DESIGN.md: a message never echoes the body)
    return f"category is not one of the policy's: {', '.join(sorted(policy.categories))}"


def how_to_report(policy: Policy) -> str:
    """What POST /v1/incidents says of itself in the OpenAPI document: what a reporting
    system's developer needs beyond the fields, with this deployment's rules (its policy)."""
    radius = f"{policy.duplicate_radius_m:g} m"
    window = f"{policy.duplicate_window_s / 60:g} min"
    raising = ", ".join(policy.raise_to_p1_flags) or "none"
    barring = ", ".join(policy.bar_volunteers_flags) or "none"
    return (
        "**`external_ref`** is the report's idempotency key (this system's own id for it, "
        "one per report): after a timeout or a 503, retry with the same body under the same "
        "ref. Answered 200 with the incident it made if it was kept, 202 if not; a body "
        "that differs under a ref already taken (another time stamped in `reported_at`, a "
        "word added) is 409, naming the incident the ref made (the error's `incident_id`: "
        "a platform whose first try timed out, and that stamps its retry with the time "
        "of the retry, learns there which incident its alert made, to follow it).\n\n"
        "**Priority** is not sent: it is the category's (`GET /v1/categories`), raised to P1 "
        f"by any of the flags {raising}; {barring} sends no volunteer (`GET /v1/flags` lists "
        "the flags these rules read, as written). Other flags (words of at most 32 "
        "characters) reach every team sent, volunteers too, and change nothing.\n\n"
        "**A place** (WGS-84 `lat` and `lon`) is required; `address` goes with it to the "
        "teams. A place taken from a Chinese web map says so: `location.datum` `gcj02` "
        "(AMap, Tencent) or `bd09` (Baidu), which intake converts to WGS-84 (sent as "
        "WGS-84, such a place lies 300-700 m off: another zone's station, not linked to "
        "another system's report of the same scene). `caller` and `description` go to "
        "police teams only.\n\n"
        f"**Linked**: a report of the same category within {radius} and {window} of an open "
        "incident of the district (of when that incident was reported, or of the latest "
        "report linked to it: an alarm repeated for longer stays one incident) is answered "
        "202 with status `linked` and `linked_to`: no team is sent for it; its flags revise "
        "that incident (its priority, its teams' orders), its description is for the command "
        f"room. One made more than {window} after the latest report of the incident, "
        "elsewhere or of another category is an incident of its own, with its own team.\n\n"
        "**Follow-ups**: what a caller adds on calling back (\"he has a knife now\", \"they "
        "went into the mall\"), or a second alert of the same event, is sent as a follow-up "
        "of this system's own report: `POST /v1/incidents/{incident_id}/follow-ups` with the "
        "incident id this report was answered, the same body as a report and a ref of its "
        "own. It joins that report's incident however far and late it comes, while it is "
        "open (see that route).\n\n"
        "**Cancel requests**: a report made by mistake (the caller says so on calling back, "
        "a video alert found false) is not taken back by this system itself: it asks the "
        "command room to, `POST /v1/incidents/{incident_id}/cancel-requests` with a "
        "`reason` and a ref of its own. The command room closes the incident or keeps it "
        "open; its teams go on until it decides (see that route). A report is not changed "
        "over this API: what the caller adds is a follow-up. `GET /v1/incidents/{id}` "
        "follows it."
    )


def how_to_cancel() -> str:
    """What POST /v1/incidents/{incident_id}/cancel-requests says of itself in the OpenAPI
    document."""
    return (
        "Asks the command room to cancel a report of this system's (a member's: of their own) "
        "that was made by mistake: the caller says so on calling back, a video system "
        "retracts a false alert. The path names the report's `incident_id`, as "
        "`POST /v1/incidents` answered it. Nothing is cancelled by the request itself: the "
        "incident is flagged for the command room with the `reason` (this system's words, "
        "1 to 500 characters: for the command room alone, never shown to another system, "
        "never logged), and its teams go on until the command room decides, as a retraction "
        "may be made under duress and a false alert still needs a look. The command room "
        "closes the incident (`GET /v1/incidents/{id}`: status `closed`) or keeps it open "
        "(its timeline: a remark with `detail_code` remark_keeps_open).\n\n"
        "`external_ref` is the request's own (this system's id for the call back or the "
        "retraction), its idempotency key: the same request again is answered 200 with the "
        "same `request_id`, another `reason` under a ref taken is 409. Answered 202 once "
        "Redis took it. A report linked to another incident (status `linked`): the request "
        "goes to that incident, named in `linked_to`, whose command room decides for the "
        "event (other reports of it may stand).\n\n"
        "A report of another system is 403, one intake does not know (or no longer keeps, "
        "RECORDS_DAYS after it ended) 404; an incident that has ended (resolved, handed over, "
        "closed) is 409: nothing is left to cancel."
    )


def flags_read(policy: Policy) -> str:
    """What GET /v1/flags says of itself in the OpenAPI document."""
    return (
        "The flags of a report (`flags` of `POST /v1/incidents`) that this deployment's "
        "dispatch rules read, each with what it does: `raises_to` the priority it raises the "
        "report to (null: none), `bars_volunteers` whether no volunteer team is sent. A flag "
        "is matched as one word, in any case, around spaces trimmed (`Weapon ` is `weapon`); "
        "write it as listed: a word of the caller's language (\"持刀\") or a synonym "
        "(\"knife\") is not one of these. Any other flag (a word of at most "
        f"{MAX_FLAG_CHARS} characters) is accepted and kept: it reaches every team sent, "
        "volunteers too, and the command room, and changes nothing. The list follows the "
        "deployment's policy file, as `GET /v1/categories` does."
    )


def how_to_follow_up(policy: Policy) -> str:
    """What POST /v1/incidents/{incident_id}/follow-ups says of itself in the OpenAPI
    document."""
    raising = ", ".join(policy.raise_to_p1_flags) or "none"
    return (
        "Adds to a report of this system's (a member's: of their own) what the caller says "
        "on calling back (\"he has a knife now\", \"they went into the mall\"), or a "
        "second alert of the same event: the path names the report's `incident_id`, as "
        "`POST /v1/incidents` answered it. The body is a report's; `external_ref` is the "
        "follow-up's own (this system's id for the call back or the alert), its "
        "idempotency key as a report's is (200 for a retry, 409 for another body under a "
        "ref taken). Answered 202 once Redis took it, with its own `incident_id`, status "
        "`linked` and `linked_to`: the report's incident (or, for a report linked to "
        "another, that one), whatever the distance and the time since, unlike a report's "
        "duplicate window and radius. `follow_up_of` names the report.\n\n"
        "While that incident is open, the follow-up joins it: its flags are added (any of "
        f"{raising} raises it to P1; its teams' orders are amended), and its timeline says a "
        "follow-up came. If it has ended (resolved, handed over, closed), the follow-up is "
        "dispatched as an incident of its own (`GET /v1/incidents/{id}` of the follow-up: "
        "its status, no longer `linked`, and its teams).\n\n"
        "A report of another system is 403, one intake does not know (or no longer keeps, "
        "RECORDS_DAYS after it ended) 404; the district is the report's (422 otherwise)."
    )


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
    received_at: datetime | None = Field(default=None, description="when it reached intake")
    latest_at: datetime | None = Field(
        default=None, description="the report time of the latest report linked to it as a "
        "duplicate and still linked (None: none): the event went on until then at least")


def taken_time(reported_at: datetime | None, received_at: datetime) -> datetime:
    """The time a report is recorded and passed on with: the one its system gave (none:
    when it came), unless that is more than CLOCK_SKEW ahead of intake's clock: the
    system's clock is wrong (a door gateway writing Beijing's wall clock with a Z is 8
    hours ahead), and the moment it came is the best word of when it happened. Kept as
    given, the board and the KPIs would place it hours on, and the duplicate rule judge
    it against reports still to come."""
    if reported_at is None or reported_at > received_at + CLOCK_SKEW:
        return received_at
    return reported_at


def report_time(reported_at: datetime, received_at: datetime | None) -> datetime:
    """When a report happened, as the duplicate window judges it: the time its system gave
    (a 110 centre posting a call late means when the call came), but never later than when
    it reached intake: a system whose clock runs ahead (CLOCK_SKEW is tolerated) reported
    nothing still to come, and its minutes ahead would widen the gap to the other reports
    of the same event (as dispatch's `acted_from` counts its times)."""
    return reported_at if received_at is None else min(reported_at, received_at)


def find_duplicate(
    *, new_at: datetime, new_location: Location, candidates: list[OpenIncident], policy: Policy
) -> str | None:
    """The nearest open incident within the duplicate radius (at it included) and time
    window, if any. The candidates may come from a little farther (store.search_radius_m):
    this is where the radius is judged. `new_at` and each candidate's time are
    `report_time`s. The window runs from the incident's own report to the latest report
    still linked to it (`latest_at`: not one the command room unlinked since): an alarm a
    machine repeats (a door held open, a crowd that stays) is one event for as long as each
    repeat comes within the window of the one before, not a new incident, and a second
    team, each window after the first report."""
    window = timedelta(seconds=policy.duplicate_window_s)
    best: tuple[float, str] | None = None
    for c in candidates:
        if c.status not in OPEN_STATUSES:
            continue
        first = report_time(c.reported_at, c.received_at)
        last = max(first, c.latest_at) if c.latest_at is not None else first
        if new_at < first - window or new_at > last + window:
            continue
        d = distance_m(new_location, c.location)
        if d <= policy.duplicate_radius_m + RADIUS_TOLERANCE_M and (best is None or d < best[0]):
            best = (d, c.incident_id)
    return best[1] if best else None


def overlong_flag(flags: Sequence[str]) -> int | None:
    """The index of the first flag longer than a word (MAX_FLAG_CHARS), if any."""
    return next((i for i, flag in enumerate(flags) if len(flag) > MAX_FLAG_CHARS), None)


def report_fingerprint(body: IncidentIn, *, time_as_written: bool = False,
                       follow_up_of: str | None = None) -> str:
    """What a retry of `body` must send again, as one digest: a report under a ref already
    taken is that ref's retry only if its fingerprint is the same (flags in any order or
    spelling the policy reads as the same, each once; `reported_at` the same moment, at
    whatever offset it is written: a system retrying from its outbox may give it in UTC
    where the first attempt gave Beijing time). A digest: the record keeps no copy of the
    caller or the description. `time_as_written`: the digest records made before
    2026-12-07 kept, of the time at its offset as sent (is_retry_of). `follow_up_of`: a
    follow-up's, the report it adds to (a report's digest is as it was before follow-ups):
    the same body sent as a report of its own, or of another report, is not its retry."""
    if body.reported_at is not None and not time_as_written:
        body = body.model_copy(update={"reported_at": body.reported_at.astimezone(UTC)})
    report = body.model_dump(mode="json", exclude={"external_ref"})
    report["flags"] = sorted(normalise_flags(body.flags))
    if follow_up_of:
        report["follow_up_of"] = follow_up_of
    return hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()[:32]


def is_retry_of(fingerprint: str | None, body: IncidentIn, *,
                follow_up_of: str | None = None) -> bool:
    """Whether `body` (a follow-up of `follow_up_of`, if given) is the report a record of
    `fingerprint` was made of: its retry. A record older than fingerprints (none kept)
    takes any report under its ref as one."""
    if not fingerprint:
        return True
    return fingerprint in (report_fingerprint(body, follow_up_of=follow_up_of),
                           report_fingerprint(body, time_as_written=True,
                                              follow_up_of=follow_up_of))


def differing_part(record: Mapping[str, str], body: IncidentIn, *,
                   follow_up_of: str | None = None) -> str:
    """Which part of `body` differs from the report `record` was made of (their fingerprints
    differ), in words for the caller: only what the record keeps can be named."""
    if (record.get("follow_up_of") or None) != follow_up_of:
        return "which report it follows up (a follow-up is sent to its report's follow-ups)"
    if record.get("category") != body.category:
        return "its category"
    if record.get("district") != body.district:
        return "its district"
    if (float(record.get("lat") or "nan"), float(record.get("lon") or "nan")) != (
            body.location.lat, body.location.lon):
        return "its location"
    # (a time taken as when the report came: the record keeps the one the system gave too)
    sent = record.get("reported_at_sent") or record.get("reported_at")
    if body.reported_at is not None and _moment(sent) != body.reported_at:
        return "its reported_at"
    return "its flags, description, caller, address or reported_at"


def _moment(text: str | None) -> datetime | None:
    """A record's time as the moment it names (None: not kept, or not a time)."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


# --- a linked report's view of the incident it joined ----------------------------------

class LinkedTeam(BaseModel):
    """A team sent to the incident a report joined, as that report's system may see it."""

    team_id: str
    team_name: str | None = None
    agency_kind: str = Field(description="police, security or volunteer")
    status: str = Field(description="offered, acknowledged, en_route, on_scene, or how its order "
                        "ended: resolved, handover, declined, withdrawn, timed_out")
    eta_s: float | None = Field(default=None, description="estimated travel time when sent")
    assigned_at: datetime | None = Field(default=None, description="when the order was issued")
    acknowledged_at: datetime | None = Field(
        default=None, description="when the team first took it (any answer but a refusal)")
    en_route_at: datetime | None = None
    on_scene_at: datetime | None = None
    resolved_at: datetime | None = None
    handed_over_at: datetime | None = Field(
        default=None, description="when the team handed it over to the owning police station")


class IncidentTeam(LinkedTeam):
    """A team sent to a report's own incident: its order as dispatch lists it (what the view
    always gave: `order_id`, team, status, `eta_s`; any field dispatch adds to an assignment
    passes as it always did), with the times a linked report is shown of its teams (added
    2026-12)."""

    model_config = ConfigDict(extra="allow")

    order_id: str = Field(description="the team's order (as in the timeline's entries)")


class LinkedIncident(BaseModel):
    """Where the incident a linked report joined stands: what dispatch did for it, never its
    reporting system's words (description, caller, external_ref) nor anyone's notes."""

    incident_id: str = Field(description="the incident the report joined (its `linked_to`)")
    status: str = Field(description="that incident's status, as for any incident")
    priority: Priority = Field(description="that incident's priority (raised by a later report "
                               "or the command room)")
    teams: list[LinkedTeam] = Field(default_factory=list, description="every team sent to "
                                    "it (as dispatch lists them), with its status and times")
    ended_at: datetime | None = Field(
        default=None, description="when it first came to its present status, if that is an "
        "ended one (resolved, handed_over, closed); null while it is open")


# Responses that mean the team took the order (dispatch: any answer but a refusal; a call
# for backup before any acknowledgement acknowledged it, and later ones are later: the
# earliest counts).
TAKING_RESPONSES = frozenset({"acknowledged", "en_route", "on_scene", "resolved", "handover",
                              "reinforce"})
_RESPONSE_TIMES = {"en_route": "en_route_at", "on_scene": "on_scene_at",
                   "resolved": "resolved_at", "handover": "handed_over_at"}


def ended_at_field(status: str) -> str:
    """The projection's field holding when an incident first came to an ended `status`."""
    return f"ended:{status}"


def sent_at_field(order_id: str) -> str:
    """The projection's field holding when an update first listed the order (epoch seconds)."""
    return f"sent:{order_id}"


def sent_teams(*, record: Mapping[str, str],
               timeline: Sequence[Mapping[str, Any]]) -> list[IncidentTeam]:
    """The teams dispatch sent to an incident, from intake's projection of it (its record
    and timeline), each with its times: each the earliest the timeline holds, so dispatch's
    events read out of order or twice change nothing; only dispatch's facts are taken
    (statuses, teams, times), never a timeline entry's words. A team's `assigned_at` is the
    first update that listed its order (dispatch announces several orders with one entry
    naming none), or an earlier entry naming it."""
    assignments = json.loads(record.get("assignments") or "[]")
    times: dict[str, dict[str, datetime]] = {}
    for a in assignments:
        sent = record.get(sent_at_field(a.get("order_id") or ""))
        if sent:
            times.setdefault(a["order_id"], {})["assigned_at"] = datetime.fromtimestamp(
                float(sent), UTC)
    for entry in timeline:
        order_id = entry.get("order_id")
        if not order_id or not entry.get("at"):
            continue
        when = datetime.fromisoformat(entry["at"])
        # An order is on the timeline first when it is issued (offer, manual_assign, ...).
        names = ["assigned_at"]
        if entry.get("kind") == "response":
            said = entry.get("detail") or ""
            if said in TAKING_RESPONSES:
                names.append("acknowledged_at")
            if said in _RESPONSE_TIMES:
                names.append(_RESPONSE_TIMES[said])
        held = times.setdefault(order_id, {})
        for name in names:
            if name not in held or when < held[name]:
                held[name] = when
    return [IncidentTeam.model_validate({**a, **times.get(a.get("order_id") or "", {})})
            for a in assignments]


def linked_incident(*, incident_id: str, record: Mapping[str, str],
                    timeline: Sequence[Mapping[str, Any]]) -> LinkedIncident:
    """What a report linked to `incident_id` is shown of it, from intake's projection of that
    incident (its record and timeline): its teams as `sent_teams` has them, without their
    orders' ids (nor anything else a LinkedTeam does not name)."""
    teams = [LinkedTeam.model_validate(team.model_dump(exclude={"order_id"}))
             for team in sent_teams(record=record, timeline=timeline)]
    status = record["status"]
    ended = record.get(ended_at_field(status)) if status in ENDED_STATUSES else None
    return LinkedIncident(
        incident_id=incident_id, status=status, priority=record["priority"], teams=teams,
        ended_at=datetime.fromtimestamp(float(ended), UTC) if ended else None)


def linked_now(record: Mapping[str, str]) -> str | None:
    """The incident a report is linked to now: the one dispatch linked it to (which may be
    another than intake named: an ended one's report sent on), and none once dispatch sent
    it out as an incident of its own (its timeline says why) or while it was never linked.
    A report sent out still shown "linked to" an ended incident reads as if nobody came."""
    if record.get("status") != "linked":
        return None
    return record.get("linked_to") or None


class IncidentView(BaseModel):
    """`GET /v1/incidents/{id}`: an incident as its reporting system (or the admin) sees it."""

    incident_id: str
    external_ref: str = Field(description="the reporting system's own id for it")
    category: str
    district: str
    priority: Priority = Field(description="this report's priority (for a linked report, as "
                               "classified when it came; see `linked_incident.priority`)")
    status: str = Field(description="reported, dispatching, assigned, acknowledged, en_route, "
                        "on_scene, unassigned, resolved, handed_over, closed, or linked (a "
                        "duplicate joined to `linked_to`: no team is sent for it itself)")
    flagged: bool = Field(description="on the command room's board as needing attention")
    linked_to: str | None = Field(default=None, description="while the report is `linked`: "
                                  "the incident it joined (intake's judgement when it came, or "
                                  "dispatch's: an ended incident's report sent out for the same "
                                  "event); null when it is not linked, including once dispatch "
                                  "sent it out as an incident of its own (its incident had "
                                  "ended, or the command room judged it another event; see "
                                  "`teams`; its "
                                  "timeline says which incident it was first judged a duplicate "
                                  "of)")
    follow_up_of: str | None = Field(
        default=None, description="added 2026-12: a follow-up's, the report it adds to (POST "
        "/v1/incidents/{id}/follow-ups); null for a report of its own")
    reported_at: str
    received_at: str | None = Field(
        default=None, description="added 2026-12: when dispatch received the report (null "
        "until dispatch has taken it up, and for a report it took up before 2026-12-07)")
    late_by_s: int | None = Field(
        default=None, description="added 2026-12: how many seconds after `reported_at` "
        "dispatch received the report, when that was more than 10 minutes (a queue stuck, a "
        "network cut: the scene is that old; the timeline's `reported_late` note says it "
        "too); null when it came in time or is not known yet")
    trace_id: str | None = None
    teams: list[IncidentTeam] = Field(
        description="the teams sent to this incident itself (as dispatch lists them), each with "
        "its order's id, its status and, added 2026-12, when it was assigned, acknowledged "
        "(its first answer that is not a refusal), en route, on scene, resolved or handed "
        "over: each the earliest dispatch reported, null until it does (a team declined, "
        "withdrawn or stood down has none it did not reach), as `linked_incident` gives the "
        "teams of an incident a report joined")
    timeline: list[dict[str, Any]] = Field(
        description="what dispatch did, oldest first: each entry's `at`, `kind` (status, "
        "receipt, response, timeout, manual_assign, note, withdrawn, ...; not dispatch's own "
        "reported and offer entries: `teams` gives each order's team), the `team_id` and "
        "`order_id` it concerns, `detail` in English with its `detail_code` and "
        "`detail_args`; never a team's own words or evidence. A team stood down because "
        "what its order was for ended is a `withdrawn` entry with `detail_code` "
        "stood_down_resolved, stood_down_handed_over, stood_down_closed or "
        "stood_down_backed_order_ended (added 2026-12)")
    linked_incident: LinkedIncident | None = Field(
        default=None, description="added 2026-12: while this report is `linked`, where the "
        "incident it joined stands (that incident's status, priority, teams with their times, "
        "ended_at), kept current as dispatch reports on it. Null when the report is not linked "
        "(or dispatch sent it out as an incident of its own: then see `teams`), and when intake "
        "no longer keeps that incident (RECORDS_DAYS after it ended)")
