"""A simulated district: agencies, teams spread over a square, members, and incident places.

Deterministic (seeded), so every run and every figure uses the same district.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CENTRE = (22.8170, 108.3665)  # Nanning, Minzu Avenue
SIDE_KM = 16.0  # the district is a square this wide; incidents and teams fall inside it
GRID_M = 250.0  # incident places lie this far apart: more than the 200 m duplicate radius
# Categories that want one unit (so each incident gives exactly one order) and between them
# reach every kind of agency.
ONE_UNIT_CATEGORIES = ("suspicious", "dispute", "traffic", "help_request", "noise",
                       "hazard_report")

# (agency id suffix, kind, role, share of teams, modes)
AGENCIES = (
    ("ps-1", "police", "station", 0.05, ("car", "ebike")),
    ("ps-2", "police", "station", 0.05, ("car", "ebike")),
    ("ps-3", "police", "station", 0.05, ("car", "ebike")),
    ("ps-4", "police", "station", 0.05, ("car", "ebike")),
    ("sps-1", "police", "patrol", 0.10, ("car", "ebike", "foot")),
    ("sps-2", "police", "patrol", 0.10, ("car", "ebike", "foot")),
    ("sec-1", "security", None, 0.15, ("foot", "ebike", "bike")),
    ("sec-2", "security", None, 0.15, ("foot", "ebike", "bike")),
    ("vol-1", "volunteer", None, 0.15, ("foot", "bike")),
    ("vol-2", "volunteer", None, 0.15, ("foot", "bike")),
)
MEMBER_ROLE = {"police": "officer", "security": "guard", "volunteer": "volunteer"}


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = north_m / 111_320.0
    dlon = east_m / (111_320.0 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    agency_id: str
    kind: str
    role: str | None
    mode: str
    skills: tuple[str, ...]
    lat: float
    lon: float
    members: tuple[str, ...]


def teams(district: str, count: int, members_per_team: int, seed: int = 7) -> list[Team]:
    rng = random.Random(f"{seed}-{district}")
    half = SIDE_KM * 1000 / 2
    out: list[Team] = []
    plan: list[tuple[str, str, str | None, tuple[str, ...]]] = []
    for suffix, kind, role, share, modes in AGENCIES:
        plan += [(f"{district}-{suffix}", kind, role, modes)] * max(1, round(share * count))
    rng.shuffle(plan)
    for i, (agency_id, kind, role, modes) in enumerate(plan[:count]):
        team_id = f"{district}-t{i:04d}"
        lat, lon = offset(*CENTRE, rng.uniform(-half, half), rng.uniform(-half, half))
        out.append(Team(
            id=team_id, agency_id=agency_id, kind=kind, role=role, mode=rng.choice(modes),
            skills=("first_aid",) if i % 3 == 0 else (), lat=lat, lon=lon,
            members=tuple(f"{team_id}-m{j:02d}" for j in range(members_per_team)),
        ))
    return out


def roster(district: str, team_list: list[Team]) -> dict[str, Any]:
    """The `POST /v1/roster/import` document for the district."""
    half = SIDE_KM / 2 * 1000
    sw = offset(*CENTRE, -half, -half)
    ne = offset(*CENTRE, half, half)
    stations = [a for a in AGENCIES if a[2] == "station"]
    zones = []
    # One zone per police station: vertical strips across the square.
    width = (ne[1] - sw[1]) / len(stations)
    for i, (suffix, *_rest) in enumerate(stations):
        west, east = sw[1] + i * width, sw[1] + (i + 1) * width
        zones.append({"id": f"{district}-z{i + 1}", "name": f"Zone {i + 1}",
                      "owner_agency_id": f"{district}-{suffix}",
                      "polygon": [[west, sw[0]], [east, sw[0]], [east, ne[0]], [west, ne[0]],
                                  [west, sw[0]]]})
    agencies = []
    for suffix, kind, role, *_ in AGENCIES:
        agency: dict[str, Any] = {"id": f"{district}-{suffix}", "name": suffix.upper(),
                                  "kind": kind}
        if role:
            agency["role"] = role
        agencies.append(agency)
    return {
        "district": district,
        "agencies": agencies,
        "zones": zones,
        "teams": [{"id": t.id, "agency_id": t.agency_id, "name": t.id, "mode": t.mode,
                   "skills": list(t.skills), "home_zone_id": zone_of(t.lon, zones)}
                  for t in team_list],
        "members": [{"id": m, "name": m, "agency_id": t.agency_id, "team_id": t.id,
                     "role": MEMBER_ROLE[t.kind]} for t in team_list for m in t.members],
    }


def roster_parts(district: str, team_list: list[Team], members_per_part: int = 2_000
                 ) -> list[dict[str, Any]]:
    """The same roster as several imports (an import upserts only what it names): agencies,
    zones and teams first, then the members in parts, each under the services' 1 MB body
    limit (MAX_BODY_BYTES), which a 10,000-member document exceeds."""
    whole = roster(district, team_list)
    members = whole.pop("members")
    parts = [whole]
    for first in range(0, len(members), members_per_part):
        parts.append({"district": district, "members": members[first:first + members_per_part]})
    return parts


def zone_of(lon: float, zones: list[dict[str, Any]]) -> str:
    for zone in zones:
        west, east = zone["polygon"][0][0], zone["polygon"][1][0]
        if west <= lon <= east:
            return zone["id"]
    return zones[-1]["id"]


def incident_places(seed: int = 11) -> Iterator[tuple[str, float, float]]:
    """(category, lat, lon) for incident after incident, never the same category within
    GRID_M of a previous one until every (grid point, category) pair has been used; then
    again in a new order (the earlier incidents are long resolved by then)."""
    cells = int(SIDE_KM * 1000 // GRID_M)
    rng = random.Random(seed)
    half = SIDE_KM * 1000 / 2
    pairs = [(c, i, j) for c in ONE_UNIT_CATEGORIES for i in range(cells) for j in range(cells)]
    while True:
        rng.shuffle(pairs)
        for category, i, j in pairs:
            lat, lon = offset(*CENTRE, -half + (i + 0.5) * GRID_M, -half + (j + 0.5) * GRID_M)
            yield category, lat, lon
