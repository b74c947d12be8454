"""Builders for dispatch's domain values: teams placed at a distance from one fixed scene."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from services.dispatch.domain import (
    IncidentFacts,
    Unit,
    choose_units,
    rank_candidates,
    units_wanted,
)
from shared.policy import load_policy

POLICY = load_policy()
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
DISTRICT = "qingxiu"
LAT, LON = 22.8170, 108.3665
# Along a meridian the haversine distance is exactly R x the latitude difference.
METRES_PER_DEGREE_LAT = math.pi * 6_371_000.0 / 180


def team(team_id: str, kind: str, *, role: str | None = None, mode: str = "car",
         metres: float | None = 1000.0, skills: Sequence[str] = (),
         home_zone: str | None = None, fix_age_s: float | None = 60,
         status: str = "available", on_shift: bool = True) -> Unit:
    """A team `metres` due north of the scene, its fix `fix_age_s` old at NOW."""
    placed = metres is not None
    return Unit(
        team_id=team_id, agency_id=f"ag-{kind}-{role}", agency_kind=kind, agency_role=role,
        mode=mode, district=DISTRICT, status=status, on_shift=on_shift, skills=tuple(skills),
        home_zone_id=home_zone, name=team_id,
        lat=LAT + metres / METRES_PER_DEGREE_LAT if placed else None,
        lon=LON if placed else None,
        fix_at=NOW - timedelta(seconds=fix_age_s) if fix_age_s is not None else None,
    )


def incident(category: str, *, flags: Iterable[str] = (), zone_id: str | None = None,
             excluded: Iterable[str] = ()) -> IncidentFacts:
    """An incident at the scene, its priority classified by the real policy."""
    flags = tuple(flags)
    return IncidentFacts(
        incident_id="inc-1", district=DISTRICT, category=category,
        priority=POLICY.classify(category, flags), flags=flags, lat=LAT, lon=LON,
        zone_id=zone_id, excluded=frozenset(excluded),
    )


def ranked_ids(units: Iterable[Unit], facts: IncidentFacts) -> list[str]:
    return [r.unit.team_id for r in rank_candidates(units, facts, POLICY, NOW)]


def dispatched(units: Iterable[Unit], facts: IncidentFacts, *,
               already: Sequence[str] = ()) -> list[str]:
    """Team ids dispatch would send now, given the agency kinds of the live orders."""
    ranked = rank_candidates(units, facts, POLICY, NOW)
    chosen = choose_units(ranked, facts, POLICY, wanted=units_wanted(facts, POLICY),
                          already=list(already))
    return [r.unit.team_id for r in chosen]
