"""The roster's rules: what a valid agency, zone, team and member is, and what an import changes.

Parsing collects every wrong row with its location (a JSON path such as `teams.3.mode`, or a
CSV file and line) before anything is written, so an import is all or nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import shapely
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from shapely import STRtree
from shapely.geometry import Polygon

from shared.events import AgencyKind, AgencyRole, Mode
from shared.fieldnames import describe_field_error, is_field_name

Entity = Literal["agencies", "zones", "teams", "members"]
ENTITIES: tuple[Entity, ...] = ("agencies", "zones", "teams", "members")

EntityId = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Skill = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z0-9_\-]{1,40}$")
]
MemberRole = Literal["officer", "auxiliary", "guard", "volunteer"]

# Which member roles each agency kind has: an auxiliary officer is police staff, a guard
# works for a security company.
ROLES_BY_KIND: dict[str, frozenset[str]] = {
    "police": frozenset({"officer", "auxiliary"}),
    "security": frozenset({"guard"}),
    "volunteer": frozenset({"volunteer"}),
}

MAX_ROWS = 50_000
MAX_ERRORS = 100


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgencyRow(_Row):
    id: EntityId
    name: Name
    kind: AgencyKind
    role: AgencyRole | None = Field(
        default=None, description="police only: station (default) or patrol"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_role(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "police" and data.get("role") is None:
            return {**data, "role": "station"}
        return data

    @model_validator(mode="after")
    def _role(self) -> AgencyRow:
        if self.kind != "police" and self.role is not None:
            raise ValueError("role: only police agencies have a role")
        return self


class ZoneRow(_Row):
    id: EntityId
    name: Name
    owner_agency_id: EntityId
    polygon: tuple[tuple[float, float], ...] = Field(description="[[lon, lat], ...]")

    @field_validator("polygon", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        if (why := not_a_ring(value)) is not None:
            raise ValueError(why)
        return value

    @field_validator("polygon")
    @classmethod
    def _shape(cls, value: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        return normalise_ring(value)


class TeamRow(_Row):
    id: EntityId
    agency_id: EntityId
    name: Name
    mode: Mode
    skills: tuple[Skill, ...] = Field(default=(), max_length=32)
    home_zone_id: EntityId | None = None

    @field_validator("skills")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))


class MemberRow(_Row):
    id: EntityId
    name: Name
    agency_id: EntityId
    team_id: EntityId
    role: MemberRole
    phone: (
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9+\-() ]{3,40}$")]
        | None
    ) = None


ROW_MODELS: dict[Entity, type[_Row]] = {
    "agencies": AgencyRow,
    "zones": ZoneRow,
    "teams": TeamRow,
    "members": MemberRow,
}


# Redis's GEO commands place nothing beyond these latitudes, so intake refuses reports there:
# a zone reaching past them holds no incident. Most often it is [lat, lon] by mistake, which
# east of 90 E fails the -90..90 check anyway, but not around Urumqi (43.8 N 87.6 E).
GEO_MAX_LAT = 85.05112878


def _depth(value: Any) -> int:
    """How deep lists nest in `value` along its first items: 2 for a ring of points."""
    depth = 0
    while isinstance(value, list | tuple):
        depth += 1
        if not value:
            break
        value = value[0]
    return depth


ONE_RING = "a zone is one ring, [[lon, lat], ...]"
HOLES = ("holes are not kept: draw the ground in a hole as a zone of its own (a place in two "
         "zones goes to the smaller), or leave it in the zone")


def not_a_ring(value: Any) -> str | None:
    """Why a polygon as sent is not a ring of [lon, lat] points, said of what a GIS exports
    (GeoJSON geometries and features, rings with holes, multipolygons, points with an
    altitude); None when it is one."""
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "Feature" or kind == "FeatureCollection":
            return (f"is a GeoJSON {kind}: {ONE_RING}, its geometry's coordinates[0] (a "
                    "FeatureCollection: one zone a feature)")
        if kind in ("Polygon", "MultiPolygon"):
            value = value.get("coordinates")
        else:
            return f"must be a list of [lon, lat] pairs ({ONE_RING}), not an object"
    if isinstance(value, str):
        return ("is text: a JSON import's polygon is a list of [lon, lat] pairs (WKT is taken "
                "in a CSV file's cell)")
    if not isinstance(value, list | tuple):
        return "must be a list of [lon, lat] pairs"
    depth = _depth(value)
    if depth == 3:
        if len(value) > 1:
            return (f"is a GeoJSON Polygon with {len(value) - 1} hole(s) ({len(value)} "
                    f"rings): {ONE_RING}, its coordinates[0]; {HOLES}")
        return f"is a GeoJSON Polygon's coordinates (a list of rings): {ONE_RING}, coordinates[0]"
    if depth == 4:
        return (f"is a GeoJSON MultiPolygon of {len(value)} parts: {ONE_RING}; import each "
                "part as a zone of its own, of the same station")
    for i, point in enumerate(value):
        if not isinstance(point, list | tuple):
            return "must be a list of [lon, lat] pairs"
        if len(point) == 3:
            return (f"point {i} has 3 numbers: points are [lon, lat] (drop the altitude a GIS "
                    "export adds)")
        if len(point) != 2:
            return f"point {i} should be [lon, lat]: a list of [lon, lat] pairs"
        if any(isinstance(x, bool) for x in point):
            # pydantic reads true as 1.0: a point off the coast of Africa
            return f"point {i} should be two numbers [lon, lat], not true or false"
    return None


def _where_invalid(shape: Polygon) -> str:
    """ " near [lon, lat]" of where a polygon goes wrong, as GEOS tells it; else ""."""
    reason = shapely.is_valid_reason(shape) or ""
    found = re.search(r"\[(-?[0-9.eE+-]+) (-?[0-9.eE+-]+)\]", reason)
    if found is None:
        return ""
    lon, lat = (float(found.group(k)) for k in (1, 2))
    return f" near [{lon:.6f}, {lat:.6f}]"


def normalise_ring(points: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """An open ring of valid [lon, lat] points forming a valid polygon, or ValueError."""
    ring = [(float(lon), float(lat)) for lon, lat in points]
    for i, (lon, lat) in enumerate(ring):
        # Python's json reads NaN and Infinity: no place, neither beyond the map nor swapped
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise ValueError(f"point {i} should be two finite numbers [lon, lat], not NaN or "
                             "Infinity")
        if not -180 <= lon <= 180:
            raise ValueError(f"point {i} is outside the valid lon/lat range")
        if not -GEO_MAX_LAT <= lat <= GEO_MAX_LAT:
            raise ValueError(f"point {i} is beyond {GEO_MAX_LAT} degrees north or south, where "
                             "no incident can be: is it [lat, lon]? points are [lon, lat]")
    lons = [lon for lon, _ in ring]
    if ring and max(lons) - min(lons) > 180:
        # Read as lon/lat, such a ring goes the long way round the globe: a strip that holds
        # its neighbours "inside" it and every gap around them.
        raise ValueError("spans more than 180 degrees of longitude: a longitude's sign left "
                         "off? (a zone across the 180th meridian is not supported)")
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    if len(set(ring)) < 3:
        raise ValueError("needs at least 3 distinct points")
    if len(ring) > 10_000:
        raise ValueError("has more than 10000 points: simplify it (a tolerance of a metre or "
                         "two keeps the border where it is)")
    shape = Polygon(ring)
    if not shape.is_valid:
        raise ValueError(f"is not a valid polygon (it crosses itself{_where_invalid(shape)})")
    return tuple(ring)


# --- locations and errors ---------------------------------------------------------------

# A key or a header cell unlike a field or column name (shared.fieldnames) is the sender's
# data (a members file exported without its header row: a member's name and phone), named
# in no error.
NOT_SHOWN = "(a key not shown)"
UNNAMED = "(not shown: it is no field name)"


def shown(key: object) -> str:
    """`key` as an error may name it: itself if it looks like a field name, else not."""
    return key if isinstance(key, str) and is_field_name(key) else NOT_SHOWN


@dataclass(frozen=True, slots=True)
class RowError:
    """One wrong field of one row: where (JSON index or CSV line) and what, never the value."""

    entity: str
    field: str
    message: str
    index: int | None = None
    line: int | None = None

    @property
    def path(self) -> str:
        if self.line is not None:
            return f"{self.entity}.{self.field}" if self.field else self.entity
        parts = [self.entity]
        if self.index is not None:
            parts.append(str(self.index))
        if self.field:
            parts.append(self.field)
        return ".".join(parts)

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"{self.entity} line {self.line}" + (f", {self.field}" if self.field else "")
        return self.path

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"entity": self.entity, "field": self.field or None,
                               "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        else:
            out["path"] = self.path
        return out


@dataclass(frozen=True, slots=True)
class Loc:
    """Where a row came from: its index in the JSON list, or its CSV line."""

    index: int | None = None
    line: int | None = None

    def error(self, entity: str, field_: str, message: str) -> RowError:
        return RowError(entity, field_, message, index=self.index, line=self.line)


@dataclass(slots=True)
class RosterDoc:
    district: str
    # When the sender's roster was taken (optional): an import older than the district's
    # last one is refused (`stale_import`), so a retried document never rolls it back.
    as_of: datetime | None = None
    agencies: list[AgencyRow] = field(default_factory=list)
    zones: list[ZoneRow] = field(default_factory=list)
    teams: list[TeamRow] = field(default_factory=list)
    members: list[MemberRow] = field(default_factory=list)
    locs: dict[str, list[Loc]] = field(default_factory=lambda: {e: [] for e in ENTITIES})
    # Errors found while parsing; the reference check adds its own and raises them all.
    errors: list[RowError] = field(default_factory=list)
    # Ids of rows that did not parse: references to them are not reported a second time.
    invalid_ids: dict[str, set[str]] = field(default_factory=lambda: {e: set() for e in ENTITIES})
    # The entities the import sends a list (or a CSV file) of, even an empty one: the stored
    # rows of the district it leaves out are named in the answer (`not_in_import`).
    sent: set[str] = field(default_factory=set)

    def rows(self, entity: Entity) -> list[Any]:
        return getattr(self, entity)

    def raise_errors(self, more: list[RowError] | None = None) -> None:
        errors = self.errors + (more or [])
        if errors:
            raise InvalidRoster(sorted(errors, key=_error_order))


def _error_order(error: RowError) -> tuple[int, int, str]:
    rank = ENTITIES.index(error.entity) + 1 if error.entity in ENTITIES else 0  # type: ignore[arg-type]
    return rank, error.line if error.line is not None else (error.index or 0), error.field


class InvalidRoster(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors[:MAX_ERRORS]
        self.total = len(errors)

    def summary(self) -> str:
        first = self.errors[0]
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        return f"nothing was imported: {first.where}: {first.message}{more}"


# what a roster's ids and names may hold; every other error in the API's words
_OWN_WORDS = {"string_pattern_mismatch": "has characters or a length that are not allowed"}


def describe(err: Mapping[str, Any]) -> str:
    """What is wrong with a row's field, as the HTTP answers say it."""
    return describe_field_error(err, _OWN_WORDS)


def _validation_errors(entity: str, loc: Loc, exc: ValidationError) -> list[RowError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        parts = [str(p) if isinstance(p, int) else shown(p) for p in err["loc"]]
        message = describe(err)
        if not parts and ":" in message:  # a model validator names its field first
            name, _, message = message.partition(":")
            parts = [name.strip()]
            message = message.strip()
        out.append(loc.error(entity, ".".join(parts), message))
    return out


def parse_row(entity: Entity, data: Any, loc: Loc, doc: RosterDoc) -> None:
    """Validate one row into `doc`, or record its errors (and its id, if it has one)."""
    if not isinstance(data, dict):
        doc.errors.append(loc.error(entity, "", "must be an object"))
        return
    try:
        row = ROW_MODELS[entity].model_validate(data)
    except ValidationError as exc:
        doc.errors.extend(_validation_errors(entity, loc, exc))
        if isinstance(data.get("id"), str):
            doc.invalid_ids[entity].add(data["id"].strip())
        return
    doc.rows(entity).append(row)
    doc.locs[entity].append(loc)


def check_district(value: Any, errors: list[RowError], *, line: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.append(RowError("district", "", "is required", line=line))
        return ""
    district = value.strip()
    if len(district) > 64 or not all(c.isalnum() or c in "_.-" for c in district):
        errors.append(RowError("district", "", "has characters or a length that are not allowed",
                               line=line))
    return district


# An `as_of` this far ahead of our clock is a sender's mistake (a year mistyped), not clock
# skew: taken, it would refuse every later import of the district until that time came.
AS_OF_MAX_AHEAD = timedelta(minutes=5)
AS_OF_FORMAT = "a time with its UTC offset (ISO 8601, e.g. 2026-12-07T08:00:00+08:00)"


def check_as_of(value: Any, errors: list[RowError], *, line: int | None = None
                ) -> datetime | None:
    """The document's `as_of`, in UTC: None when it gives none (or a wrong one: its error is
    added to `errors`, never echoing the value)."""
    if value is None:
        return None
    parsed = None
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        errors.append(RowError("as_of", "", f"must be {AS_OF_FORMAT}", line=line))
        return None
    return parsed.astimezone(UTC)


def as_of_ahead(doc: RosterDoc, now: datetime) -> RowError | None:
    """The error of an `as_of` that lies ahead of `now` by more than AS_OF_MAX_AHEAD."""
    if doc.as_of is None or doc.as_of <= now + AS_OF_MAX_AHEAD:
        return None
    return RowError("as_of", "", "lies in the future: it is when the roster was taken, "
                    f"{AS_OF_FORMAT}")


def shown_as_of(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def stale_import(doc: RosterDoc, last: datetime | None) -> str | None:
    """Why the import is refused as older than the district's last one (its `as_of`
    before `last`), or None. The same `as_of` again is a retry, taken (it changes nothing
    if the document is the same); an import without one is taken as it comes."""
    if doc.as_of is None or last is None or doc.as_of >= last:
        return None
    return (f"this roster is as of {shown_as_of(doc.as_of)}, older than the one imported last "
            f"for district {doc.district} (as of {shown_as_of(last)}): nothing was imported, "
            "as it would undo a newer roster; allowed: a roster as of then or later (or "
            "without as_of, taken as it comes)")


def parse_document(data: Any) -> RosterDoc:
    """A JSON roster document (DESIGN.md's format) -> RosterDoc with any errors it holds.

    Row errors stay on the document (`doc.errors`) so that `check_references` reports them
    together with the reference errors; InvalidRoster only when the body is not an object.
    """
    if not isinstance(data, dict):
        raise InvalidRoster([RowError("(body)", "", "must be a JSON object")])
    doc = RosterDoc(district="")
    errors = doc.errors
    for key in data:
        if key not in ("district", "as_of", *ENTITIES):
            errors.append(RowError(key, "", "is not a known field") if is_field_name(key) else
                          RowError("(body)", "", f"holds a key that is no known field {UNNAMED}"))
    doc.district = check_district(data.get("district"), errors)
    doc.as_of = check_as_of(data.get("as_of"), errors)
    for entity in ENTITIES:
        rows = data.get(entity, [])
        if rows is None:
            rows = []
        elif entity in data:
            doc.sent.add(entity)
        if not isinstance(rows, list):
            errors.append(RowError(entity, "", "must be a list"))
            continue
        if len(rows) > MAX_ROWS:
            errors.append(RowError(entity, "", f"has more than {MAX_ROWS} rows"))
            continue
        for i, raw in enumerate(rows):
            parse_row(entity, raw, Loc(index=i), doc)
    check_document(doc, errors)
    return doc


def check_document(doc: RosterDoc, errors: list[RowError]) -> None:
    """Rules inside one document: ids unique per entity; no ground two stations claim."""
    for entity in ENTITIES:
        seen: set[str] = set()
        for row, loc in zip(doc.rows(entity), doc.locs[entity], strict=True):
            if row.id in seen:
                errors.append(loc.error(entity, "id", "appears twice in this import"))
            seen.add(row.id)
    for earlier, later in conflicting_claims(doc.zones):
        other = doc.zones[earlier]
        errors.append(doc.locs["zones"][later].error(
            "zones", "polygon", f"overlaps zone {other.id} of station {other.owner_agency_id}: "
            "zones of two stations may share a border, or one lie inside the other, but not "
            "claim the same ground"))


# Of the smaller zone: overlaps up to this share are slivers along a shared border (two
# drawings of one street), and a zone this much inside a larger one lies inside it.
OVERLAP_TOLERANCE = 0.01


def conflicting_claims(zones: Sequence[ZoneRow]) -> list[tuple[int, int]]:
    """Pairs (earlier, later) of zones of different stations that claim the same ground.

    A place in two zones goes to the smaller (shared/zones.py): right for a community's grid
    cell inside a station's territory, but for two zones that only partly overlap, or are
    the same shape, the station an incident is handed to would be an accident of their
    areas or of their ids' order."""
    shapes = [Polygon(zone.polygon) for zone in zones]
    tree = STRtree(shapes)
    pairs = tree.query(tree.geometries, predicate="intersects")
    conflicts = []
    for i, j in sorted({(min(a, b), max(a, b)) for a, b in pairs.T.tolist() if a != b}):
        if zones[i].owner_agency_id == zones[j].owner_agency_id:
            continue
        small, large = sorted((shapes[i].area, shapes[j].area))
        shared = shapes[i].intersection(shapes[j]).area
        border = shared <= OVERLAP_TOLERANCE * small
        inside = (shared >= (1 - OVERLAP_TOLERANCE) * small
                  and small <= (1 - OVERLAP_TOLERANCE) * large)
        if not border and not inside:
            conflicts.append((i, j))
    return conflicts


# --- references against the document and what is stored ---------------------------------


def referenced_ids(doc: RosterDoc) -> dict[Entity, set[str]]:
    """Every id of each entity that the import defines or refers to: what the store must read."""
    ids: dict[Entity, set[str]] = {e: {r.id for r in doc.rows(e)} for e in ENTITIES}
    ids["agencies"] |= {z.owner_agency_id for z in doc.zones}
    ids["agencies"] |= {t.agency_id for t in doc.teams} | {m.agency_id for m in doc.members}
    ids["zones"] |= {t.home_zone_id for t in doc.teams if t.home_zone_id}
    ids["teams"] |= {m.team_id for m in doc.members}
    return ids


Stored = Mapping[str, Mapping[str, Mapping[str, str]]]  # entity -> id -> stored record


def check_references(doc: RosterDoc, stored: Stored) -> None:
    """Rules across rows and against stored data; raises InvalidRoster with every error
    (the document's own parsing errors included)."""
    if not doc.district:
        doc.raise_errors()
    errors: list[RowError] = []
    district = doc.district

    for entity in ENTITIES:
        for row, loc in zip(doc.rows(entity), doc.locs[entity], strict=True):
            old = stored.get(entity, {}).get(row.id)
            if old and old.get("district") != district:
                errors.append(loc.error(entity, "id", "is already used in another district"))

    in_doc = {e: {row.id: row for row in doc.rows(e)} for e in ENTITIES}

    def lookup(entity: Entity, entity_id: str) -> Mapping[str, str] | None:
        if entity_id in doc.invalid_ids[entity]:
            return _UNKNOWN  # its own row is already reported
        if (row := in_doc[entity].get(entity_id)) is not None:
            return record_of(entity, row, district)
        old = stored.get(entity, {}).get(entity_id)
        return old if old and old.get("district") == district else None

    for zone, loc in zip(doc.zones, doc.locs["zones"], strict=True):
        owner = lookup("agencies", zone.owner_agency_id)
        if owner is None:
            errors.append(loc.error("zones", "owner_agency_id", "names no agency of this district"))
        elif owner is not _UNKNOWN and (owner["kind"] != "police"
                                        or owner.get("role") != "station"):
            errors.append(loc.error("zones", "owner_agency_id",
                                    "must name a police agency with role station"))
    for team, loc in zip(doc.teams, doc.locs["teams"], strict=True):
        if lookup("agencies", team.agency_id) is None:
            errors.append(loc.error("teams", "agency_id", "names no agency of this district"))
        if team.home_zone_id and lookup("zones", team.home_zone_id) is None:
            errors.append(loc.error("teams", "home_zone_id", "names no zone of this district"))
    for member, loc in zip(doc.members, doc.locs["members"], strict=True):
        agency = lookup("agencies", member.agency_id)
        team = lookup("teams", member.team_id)
        if agency is None:
            errors.append(loc.error("members", "agency_id", "names no agency of this district"))
        elif agency is not _UNKNOWN and member.role not in ROLES_BY_KIND[agency["kind"]]:
            allowed = ", ".join(sorted(ROLES_BY_KIND[agency["kind"]]))
            errors.append(loc.error("members", "role",
                                    f"is not a role of a {agency['kind']} agency ({allowed})"))
        if team is None:
            errors.append(loc.error("members", "team_id", "names no team of this district"))
        elif (agency is not None and team is not _UNKNOWN
              and team["agency_id"] != member.agency_id):
            errors.append(loc.error("members", "team_id", "names a team of another agency"))
    doc.raise_errors(errors)


# A stand-in for a referenced row that failed its own validation.
_UNKNOWN: Mapping[str, str] = {}


# --- records and the import plan --------------------------------------------------------


def record_of(entity: Entity, row: Any, district: str) -> dict[str, str]:
    """The stored form of a row: a flat Redis hash of strings."""
    if entity == "agencies":
        return {"id": row.id, "district": district, "name": row.name, "kind": row.kind,
                "role": row.role or ""}
    if entity == "zones":
        return {"id": row.id, "district": district, "name": row.name,
                "owner_agency_id": row.owner_agency_id,
                "polygon": json.dumps([list(p) for p in row.polygon], separators=(",", ":"))}
    if entity == "teams":
        return {"id": row.id, "district": district, "agency_id": row.agency_id, "name": row.name,
                "mode": row.mode, "skills": json.dumps(list(row.skills)),
                "home_zone_id": row.home_zone_id or ""}
    return {"id": row.id, "district": district, "name": row.name, "agency_id": row.agency_id,
            "team_id": row.team_id, "role": row.role, "phone": row.phone or ""}


@dataclass(frozen=True, slots=True)
class Write:
    entity: Entity
    id: str
    record: dict[str, str]
    previous: Mapping[str, str] | None


@dataclass(slots=True)
class ImportPlan:
    district: str
    counts: dict[str, dict[str, int]]
    writes: list[Write]
    # Teams whose UnitStatus profile changed: created or changed rows, and the stored teams
    # of agencies whose kind or role changed.
    teams_changed: set[str]
    agencies_profile_changed: set[str]
    zones_changed: bool


def plan_import(doc: RosterDoc, stored: Stored) -> ImportPlan:
    counts = {e: {"created": 0, "updated": 0, "unchanged": 0} for e in ENTITIES}
    writes: list[Write] = []
    teams_changed: set[str] = set()
    agencies_changed: set[str] = set()
    zones_changed = False
    for entity in ENTITIES:
        for row in doc.rows(entity):
            record = record_of(entity, row, doc.district)
            old = stored.get(entity, {}).get(row.id) or None
            if old is None:
                counts[entity]["created"] += 1
            elif {k: old.get(k, "") for k in record} == record:
                counts[entity]["unchanged"] += 1
                continue
            else:
                counts[entity]["updated"] += 1
            writes.append(Write(entity, row.id, record, old))
            if entity == "teams":
                teams_changed.add(row.id)
            elif entity == "zones":
                zones_changed = True
            elif entity == "agencies" and old is not None and (
                old.get("kind") != record["kind"] or old.get("role", "") != record["role"]
            ):
                agencies_changed.add(row.id)
    return ImportPlan(doc.district, counts, writes, teams_changed, agencies_changed, zones_changed)


# --- what a coordinator's import may not do ---------------------------------------------

ZONES_ARE_THE_ADMIN_S = ("creates or changes a zone: zones are the police stations' territory "
                         "(a place's hand-overs go to its zone's station), drawn and changed "
                         "by the admin; a coordinator's import names the district's zones as "
                         "they are stored, or leaves them out")


def zones_drawn(doc: RosterDoc, plan: ImportPlan) -> list[RowError]:
    """The zones a planned import creates or changes, each where the document has it (a
    coordinator's import may do neither)."""
    drawn = {w.id for w in plan.writes if w.entity == "zones"}
    return [loc.error("zones", "", ZONES_ARE_THE_ADMIN_S)
            for zone, loc in zip(doc.zones, doc.locs["zones"], strict=True) if zone.id in drawn]


VOLUNTEERS_ONLY = ("a coordinator's import creates and changes volunteer agencies, their "
                   "teams and members only; police and security rows come in it as they are "
                   "stored, or are left out (the admin changes them)")


def _changed_beyond_volunteers(write: Write, kinds: Mapping[str, str],
                               after: Mapping[str, str]) -> str | None:
    """What a written row does beyond volunteers' rows (None: nothing): `kinds`, the stored
    agencies' kinds; `after`, the kinds the import leaves them (the document's over them)."""
    def kind(found: str | None) -> str:
        return found or "no longer known"

    volunteer = "volunteer"
    if write.entity == "agencies":
        old_kind = write.previous.get("kind") if write.previous is not None else None
        new_kind = write.record["kind"]
        if old_kind is None:
            return None if new_kind == volunteer else f"creates a {new_kind} agency"
        if old_kind != volunteer:
            return f"changes a {kind(old_kind)} agency"
        return None if new_kind == volunteer else f"makes a volunteer agency {new_kind}"
    what = write.entity.removesuffix("s")
    new_agency = write.record["agency_id"]
    new_kind = after.get(new_agency, kinds.get(new_agency))
    if write.previous is None:
        return None if new_kind == volunteer else f"creates a {what} of a {kind(new_kind)} agency"
    old_agency = write.previous.get("agency_id", "")
    old_kind = kinds.get(old_agency)
    if old_kind != volunteer:
        if old_agency == new_agency:
            return f"changes a {what} of a {kind(old_kind)} agency"
        return f"moves a {what} out of a {kind(old_kind)} agency"
    if new_kind == volunteer:
        return None
    return (f"moves a volunteer {what} into a {kind(new_kind)} agency" if old_agency != new_agency
            else f"makes a volunteer {what} {kind(new_kind)} (its agency's kind)")


def agencies_to_know(plan: ImportPlan) -> set[str]:
    """The agencies whose stored kind `beyond_volunteers` asks: those of the teams and
    members the import writes, before and after."""
    return {a for w in plan.writes if w.entity in ("teams", "members")
            for a in (w.record["agency_id"], (w.previous or {}).get("agency_id"))
            if a}


def beyond_volunteers(doc: RosterDoc, plan: ImportPlan,
                      kinds: Mapping[str, str]) -> list[RowError]:
    """What a coordinator's import may not do, each where the document has it, in its
    order: draw a zone (`zones_drawn`), or create or change a row that is not a volunteer
    agency's, before and after (`kinds`: the stored kinds of `agencies_to_know`). A
    volunteer patrol made police, or moved into a security company, is sent into violence
    as one; a station made a patrol takes no more hand-overs; an officer's row is their
    agency's. Rows of police and security as stored change nothing and pass (a whole
    district's file)."""
    after = {a.id: a.kind for a in doc.agencies}
    writes = {(w.entity, w.id): w for w in plan.writes}
    errors = zones_drawn(doc, plan)
    for entity in ("agencies", "teams", "members"):
        for row, loc in zip(doc.rows(entity), doc.locs[entity], strict=True):
            write = writes.get((entity, row.id))
            why = _changed_beyond_volunteers(write, kinds, after) if write else None
            if why:
                errors.append(loc.error(entity, "", f"{why}: {VOLUNTEERS_ONLY}"))
    return sorted(errors, key=_error_order)
