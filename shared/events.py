"""The event models: the contract between the services. Change them only by adding fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import uuid4

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

Priority = Literal["P1", "P2", "P3", "P4"]
# A district's name, wherever one is given (events, the districts a key or desk covers)
DistrictName = Annotated[str, Field(min_length=1, max_length=64)]


def _iso_text(value: object) -> object:
    # pydantic would take a number for Unix time: 0 or -1 passed as 1970
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 time with its offset, as text")
    return value


# A time a caller sends over HTTP (JSON): ISO 8601 text with its offset, never a number.
IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
AgencyKind = Literal["police", "security", "volunteer"]
AgencyRole = Literal["station", "patrol"]
Mode = Literal["foot", "bike", "ebike", "car", "drone"]
IncidentStatus = Literal[
    "reported",
    "dispatching",
    "assigned",
    "acknowledged",
    "en_route",
    "on_scene",
    "resolved",
    "handed_over",
    "closed",
    "linked",
    "unassigned",
]
Response = Literal[
    "acknowledged", "declined", "en_route", "on_scene", "resolved", "handover", "reinforce"
]
UnitState = Literal["off_duty", "available", "busy", "dispatched", "en_route", "on_scene"]
OrderKind = Literal["dispatch", "handover", "followup", "reinforcement", "manual"]
# What a volunteer team's phone is told of the police or security going with it to a P1
# (DESIGN: volunteers are never the only responders to one): `awaited`, none was free, the
# team waits for one at a safe distance; `sent`, one's order is issued; `none` (an
# amendment only), no longer its concern (the incident lowered below P1, or the team no
# longer counted as volunteers).
EscortNews = Literal["awaited", "sent", "none"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:20]}"


def _not_true_or_false(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# A number that is not a JSON true or false: pydantic reads false as 0.0 and true as 1.0, a
# place on the equator or the prime meridian where no team of any district is (a page's
# `fix && fix.lat` sends false).
Number = Annotated[float, BeforeValidator(_not_true_or_false)]


class Location(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lat: Number = Field(ge=-90, le=90, description="WGS-84 latitude")
    lon: Number = Field(ge=-180, le=180, description="WGS-84 longitude")
    address: str | None = Field(default=None, max_length=300)


class Caller(BaseModel):
    """Personal data: travels only to police orders, never into logs or spans."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone: str | None = Field(default=None, max_length=40)
    name: str | None = Field(default=None, max_length=100)


EvidenceKind = Literal["video", "photo", "audio", "document"]
MAX_EVIDENCE = 10  # records with one answer or one attachment


class Evidence(BaseModel):
    """A record kept by the system that holds the media (the body-camera docking station's
    evidence store, a photo archive): what it is and where to find it, never the media."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: EvidenceKind
    ref: str = Field(min_length=1, max_length=200,
                     description="its id or address in the system that keeps it")
    taken_at: AwareDatetime | None = None


# What a team says with its answer, as every model that carries it declares it: its own
# words (a decline's reason, what the station should know) and its records. Both are the
# command room's (and the station's), never shown to the reporting system.
TeamNote = Annotated[str | None, Field(
    max_length=500, description="the team's own words for the command room; required with "
    "declined (why), read by the station with handover")]
EvidenceRecords = Annotated[tuple[Evidence, ...] | None, Field(
    max_length=MAX_EVIDENCE, description="records of the scene kept elsewhere (body-camera "
    "video, photos): references to the system that keeps them, never the media")]


class Event(BaseModel):
    """The common envelope. `event_id` is the idempotency key of the event itself."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(default_factory=lambda: uuid4().hex)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    # Events change only by adding fields, which an older reader ignores: a new version is a
    # change it cannot read, and an event of a version it does not know is dead-lettered
    # (naming this field), never acted on as if it were this one.
    schema_version: Literal[1] = Field(default=1, description="the envelope's version: 1")
    district: str = Field(min_length=1, max_length=64, description="shard key")


class IncidentReported(Event):
    incident_id: str
    system_id: str
    system_name: str | None = Field(
        default=None, description="the reporting system's name as registered at intake "
        "(POST /v1/systems: \"Skynet video analytics\", \"110 call-taking\"), by which the "
        "command room tells a camera's alert from a caller's report; None for a member's "
        "report (`system_id` `member:<id>`) and from an intake before 2026-12-08")
    external_ref: str
    category: str
    priority: Priority
    flags: tuple[str, ...] = ()
    location: Location
    description: str | None = None
    caller: Caller | None = None
    reported_at: AwareDatetime
    trace_id: str | None = Field(default=None, description="the trace the incident started")
    linked_to: str | None = Field(
        default=None, description="a duplicate report of this open incident: no order is issued"
    )
    reporter_team_id: str | None = Field(
        default=None, description="a member's report from the street (`system_id` "
        "`member:<id>`): the team they were on when they reported, as their device token "
        "said; None for a system's report (and from an intake before 2026-12-07)")
    follow_up_of: str | None = Field(
        default=None, description="a follow-up: the incident id of the reporter's own "
        "earlier report it adds to (POST /v1/incidents/{id}/follow-ups); `linked_to` is the "
        "incident that report is part of, whatever the distance and the time since: the "
        "follow-up joins it while it is open, else is an incident of its own. None: a "
        "report of its own (and from an intake before 2026-12-07)")


# Why a reporting system asks to cancel its report: its own words ("the caller says he
# dialled by mistake", "false alert: a delivery rider"), which may name people. The command
# room's to read, as a team's note is: never logged, traced, or shown to another system.
CancelReason = Annotated[str, Field(
    min_length=1, max_length=500, description="the reporting system's words on why: for "
    "the command room only")]


class IncidentCancelRequested(Event):
    """A reporting system asks to cancel its report (the caller says it was a mistake, a
    video system retracts a false alert). Nothing is cancelled by it: dispatch flags the
    incident for the command room (`cancel_requested`), which closes it or keeps it open."""

    incident_id: str = Field(description="the incident the request is for: the report's "
                             "own, or, for a report linked to another, that one")
    report_id: str = Field(description="the report the reporting system named; the same as "
                           "`incident_id` unless that report is linked")
    system_id: str = Field(description="who reported (`member:<id>` for a member's report)")
    external_ref: str = Field(description="the request's own id at its reporting system "
                              "(intake's idempotency key for it)")
    reason: CancelReason
    requested_at: AwareDatetime


class TimelineEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: AwareDatetime = Field(default_factory=utcnow)
    kind: str = Field(description="offer, receipt, response, timeout, status, note, ...")
    status: IncidentStatus | None = None
    team_id: str | None = None
    order_id: str | None = None
    detail: str | None = None
    detail_code: str | None = Field(
        default=None, description="what `detail` says, as a code of dispatch's timeline texts "
        "(services/dispatch/timeline_text.py), which a reader says in its own language; none "
        "on a team's answer (its detail is the answer) and on entries written before codes")
    detail_args: dict[str, str] | None = Field(
        default=None, description="the values `detail` fills in, by name: ids, names, counts, "
        "an instant as ISO 8601")
    note: TeamNote = None
    evidence: EvidenceRecords = None


class Assignment(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    team_id: str
    team_name: str | None = None
    agency_kind: AgencyKind
    status: str = Field(description="offered, acknowledged, en_route, ... or a final state")
    eta_s: float | None = None


class IncidentUpdated(Event):
    """Dispatch's view of an incident after a change: status, teams, and what happened."""

    incident_id: str
    seq: int = Field(ge=1, description="per incident, increasing: projections keep the newest")
    status: IncidentStatus
    priority: Priority
    flagged: bool = False
    assignments: tuple[Assignment, ...] = ()
    entry: TimelineEntry
    linked_to: str | None = None
    # The report's arrival at dispatch, said once, on the incident's first update: dispatch
    # writes it on its timeline with the incident itself, which no update carries.
    received_at: AwareDatetime | None = Field(
        default=None, description="when dispatch received the incident's report: on the "
        "incident's first update (seq 1) only; None on the others (or from a dispatch before "
        "2026-12-07)")
    late_by_s: int | None = Field(
        default=None, description="on the first update: how many seconds after its "
        "`reported_at` dispatch received the report, when that was more than dispatch's "
        "LATE_REPORT (10 min: the scene is that old); None when it came in time")
    late_note: TimelineEntry | None = Field(
        default=None, description="on the first update of a report that came late: the note "
        "dispatch wrote on its timeline as it received it (`reported_late`)")


class EscortedTeam(BaseModel):
    """A volunteer team a police or security team escorts on a P1, as its order says it:
    the team's name only (never its members'), and where dispatch knows it is: `sent` (its
    order issued or acknowledged: not known to be moving), `en_route`, `on_scene`."""
    model_config = ConfigDict(frozen=True)

    team: str
    state: Literal["sent", "en_route", "on_scene"]


class OrderIssued(Event):
    order_id: str
    incident_id: str
    team_id: str
    agency_kind: AgencyKind
    kind: OrderKind = "dispatch"
    category: str
    priority: Priority
    location: Location
    flags: tuple[str, ...] = ()
    instructions: str | None = None
    ack_by: AwareDatetime | None = Field(default=None, description="None: no deadline")
    filing_due: AwareDatetime | None = None
    eta_s: float | None = None
    # Need to know: only orders to police teams carry these.
    caller: Caller | None = None
    description: str | None = None
    escort: Literal["awaited", "sent"] | None = Field(
        default=None, description="an order to a team counted as volunteers on a P1: "
        "`awaited` when no police or security team is on the incident with them yet (wait "
        "for one at a safe distance; order.amended says `sent` once one's order is issued), "
        "`sent` when one is; None: no escort concerns the order (or a dispatch before "
        "2026-12-07 issued it)")
    escorting: tuple[EscortedTeam, ...] | None = Field(
        default=None, description="an order to a police or security team on a P1 where "
        "volunteer teams have live orders: it escorts them (each team's name, and whether it "
        "is on the way or on scene, as dispatch knows); None: it escorts nobody (or a "
        "dispatch before 2026-12-08 issued it)")


class OrderWithdrawn(Event):
    order_id: str
    incident_id: str
    team_id: str
    reason: Literal["timeout", "declined", "closed", "reassigned"]
    barred_by: tuple[str, ...] = Field(
        default=(), description="the incident's flags that took the team off it (`weapon`: "
        "volunteers are never sent into violence); its phones are told, so that a volunteer "
        "on the way or on scene learns why and leaves. Empty for any other withdrawal (and "
        "from a dispatch before 2026-12-07)")
    delivered: bool | None = Field(
        default=None, description="whether a device of the team had received the order")
    ack_by: AwareDatetime | None = Field(
        default=None, description="the order's acknowledge-by when it was withdrawn (a "
        "timeout: the deadline it missed, sooner than order.issued's if order.amended brought "
        "it forward); None: the order has none (or a dispatch before 2026-12-06 sent it)")
    entry: TimelineEntry | None = Field(
        default=None, description="the entry dispatch wrote on the incident's timeline for "
        "this withdrawal when no incident.updated carries one: the team stood down because "
        "what its order was for ended (the incident resolved or handed over by another team, "
        "closed by the command room; the order it came to back ended), which intake shows "
        "the reporting system. None for a withdrawal whose own update says it (a routing "
        "timeout, a take-back), or from a dispatch before 2026-12-07")


class OrderAmended(Event):
    """A live order's incident revised by the command room (or by a report that joined it),
    or its volunteer team's escort to a P1 changed (`escort`): what its team must now know.
    Never a note: the command room's words may name the caller, which only police read (as
    they read the reporting system's, `description`)."""

    order_id: str
    incident_id: str
    team_id: str
    priority: Priority
    flags: tuple[str, ...] = ()
    ack_by: AwareDatetime | None = Field(
        default=None, description="the order's acknowledge-by, sooner when the incident "
        "became more urgent; None: the order has none (or a dispatch before 2026-12-05 sent it)")
    escort: EscortNews | None = Field(
        default=None, description="the police or security going with the order's volunteer "
        "team to a P1 as it stands now (order.issued's `escort`): `awaited`, `sent`, or "
        "`none` (no longer concerns the order); None: unchanged by this amendment (a "
        "revision of priority or flags only, or a dispatch before 2026-12-07)")
    escorting: tuple[EscortedTeam, ...] | None = Field(
        default=None, description="the volunteer teams the order's police or security team "
        "escorts on a P1 as they stand now (order.issued's `escorting`): empty when it "
        "escorts none any more (withdrawn, the incident lowered below P1); None: unchanged "
        "by this amendment (or a dispatch before 2026-12-08)")
    # Need to know: only amendments of orders to police teams carry it.
    description: str | None = Field(
        default=None, description="the incident's description now, when a follow-up of its "
        "reporting system added its words (the first report's, then each follow-up's, a line "
        "each); only to a police team's order. None: unchanged (or the order's team may not "
        "read it; or a dispatch before 2026-12-07 sent it)")


class OrderEscalated(Event):
    order_id: str
    incident_id: str
    team_id: str
    reason: str
    misses: int = 0


class OrderDelivered(Event):
    order_id: str
    incident_id: str
    team_id: str
    member_id: str
    device_id: str
    channel: str = "websocket"


class OrderResponded(Event):
    order_id: str
    incident_id: str
    team_id: str
    member_id: str
    device_id: str | None = None
    response: Response
    note: TeamNote = None
    evidence: EvidenceRecords = None


class IncidentHandedOver(Event):
    incident_id: str
    station_agency_id: str
    order_id: str | None = None


class IncidentClosed(Event):
    incident_id: str
    final_status: IncidentStatus
    resolved_by: tuple[str, ...] = Field(default=(), description="team ids that resolved it")
    category: str | None = None
    reported_by_member: str | None = Field(
        default=None, description="the member who reported it from the street, if one did")
    reporter_team_id: str | None = Field(
        default=None, description="that member's team when they reported it "
        "(`incident.reported`'s), which a roster may have moved them from since; None: not "
        "known (a system's report, or an incident reported before 2026-12-07)")


class UnitStatus(Event):
    """A team's state with its profile, so that dispatch's projection needs nothing else."""

    unit_id: str
    status: UnitState
    name: str | None = None
    agency_id: str
    agency_kind: AgencyKind
    agency_role: AgencyRole | None = None
    mode: Mode
    skills: tuple[str, ...] = ()
    home_zone_id: str | None = None
    on_shift: bool = False
    order_id: str | None = None
    removed: bool = Field(
        default=False,
        description="the team was removed from the roster (its last word): dispatch drops it "
        "from its projection, and no older status or fix of it brings it back",
    )


# Redis's GEO index (dispatch's map of the teams) holds latitudes within this, and refuses
# the rest.
GEO_MAX_LAT = 85.05112878


class UnitPosition(Event):
    unit_id: str
    # A fix past the map's latitudes, taken by dispatch, was half written (its record held
    # it, its map not) and failed every later status of the team: a dead letter at once.
    lat: float = Field(ge=-GEO_MAX_LAT, le=GEO_MAX_LAT,
                       description=f"WGS-84 latitude, within +-{GEO_MAX_LAT} (the map's)")
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = None
    at: AwareDatetime


class DeviceRevoked(Event):
    """A device's token stops (`revoked`), or its member moved to another team
    (`team_changed`, `team_id` the new team; the token stays good): notify closes the
    device's sockets at once, so it never gets another team's orders. `agency_changed`:
    the member's team stayed (`team_id`), but its agency's kind changed (the team moved
    to an agency of another kind, or its agency's kind changed; the token stays good):
    notify closes the sockets whose token was checked before it applied the event, so no
    socket keeps reading orders as its member's former kind (a police order's caller)."""

    device_id: str
    member_id: str
    team_id: str | None = None
    reason: Literal["revoked", "team_changed", "agency_changed"] = "revoked"
