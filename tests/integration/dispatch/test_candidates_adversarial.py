"""The candidate search (store.candidates, real Redis) against the reference
(domain.rank_candidates and choose_units over every team the rules allow), on adversarial
districts: teams spread to beyond the search radius, near its edge, crowds of slow teams
in front of a few fast ones, fixes at the edge of their age, teams of another district."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import timedelta

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.dispatch import domain, store
from shared.events import utcnow
from shared.policy import CategoryRule, Policy, load_policy

POLICY = load_policy()
CENTRE = (22.8170, 108.3665)
R = 6_371_000.0
KINDS = [("police", "station"), ("police", "patrol"), ("security", None), ("volunteer", None)]
CATEGORIES = [*sorted(POLICY.categories), "gas_leak"]  # one the policy does not have


def _place(metres: float, bearing: float) -> tuple[float, float]:
    """The point `metres` from the scene on `bearing` (degrees), on the domain's sphere."""
    d, b = metres / R, math.radians(bearing)
    lat1, lon1 = math.radians(CENTRE[0]), math.radians(CENTRE[1])
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(b))
    lon2 = lon1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(lat1),
                             math.cos(d) - math.sin(lat1) * math.sin(lat2))
    return math.degrees(lat2), math.degrees(lon2)


@st.composite
def teams(draw: st.DrawFn) -> list[dict[str, object]]:
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=30))):
        kind, role = draw(st.sampled_from(KINDS))
        out.append({
            "team_id": f"t{i:02d}", "kind": kind, "role": role,
            "agency_id": draw(st.sampled_from(["ag-a", "ag-b"])),
            "mode": draw(st.sampled_from(["foot", "foot", "bike", "car", "drone"])),
            "skills": draw(st.sampled_from([(), ("first_aid",)])),
            "status": draw(st.sampled_from(["available"] * 5 + ["busy"])),
            "district": draw(st.sampled_from(["d"] * 6 + ["e"])),
            "fix_age_s": draw(st.sampled_from([5, 590, 700])),
            "home": draw(st.sampled_from(["z1", ""])),
            "metres": draw(st.sampled_from([0.0, 400.0, 9_990.0, 9_999.0, 10_001.0, 10_050.0])
                           | st.floats(0, 15_000)),
            "bearing": draw(st.sampled_from([0.0, 45.0, 90.0, 180.0, 270.0])),
        })
    return out


async def _compare(url: str, units: list[dict[str, object]], category: str,
                   flags: tuple[str, ...], station: str | None, *,
                   policy: Policy = POLICY) -> None:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await r.flushdb()
        now = utcnow()
        for u in units:
            team_id = str(u["team_id"])
            await store.save_unit_status(r, at=now, fields={
                "team_id": team_id, "district": str(u["district"]), "status": str(u["status"]),
                "name": team_id, "agency_id": str(u["agency_id"]), "agency_kind": str(u["kind"]),
                "agency_role": str(u["role"] or ""), "mode": str(u["mode"]),
                "skills": json.dumps(list(u["skills"])),  # type: ignore[arg-type]
                "home_zone_id": str(u["home"]), "on_shift": "1"})
            lat, lon = _place(float(u["metres"]), float(u["bearing"]))  # type: ignore[arg-type]
            await store.save_unit_position(
                r, team_id=team_id, lat=lat, lon=lon,
                at=now - timedelta(seconds=int(u["fix_age_s"])))  # type: ignore[call-overload]
        facts = domain.IncidentFacts(
            incident_id="inc", district="d", category=category,
            priority=(policy.classify(category, flags) if category in policy.categories
                      else "P1" if flags else "P4"),
            flags=flags, lat=CENTRE[0], lon=CENTRE[1], zone_id="z1", station_agency_id=station)
        wanted = domain.units_wanted(facts, policy)
        reach = policy.search_radius_km * 1000
        every = [unit for unit, _ in await store.units_in(r, "d")
                 if unit.lat is not None and unit.lon is not None
                 and domain.distance_m(CENTRE[0], CENTRE[1], unit.lat, unit.lon) <= reach]
        reference = domain.rank_candidates(every, facts, policy, now)
        pruned = await store.candidates(r, domain.candidate_query(facts, policy, now))
        ranked = domain.rank_candidates(pruned, facts, policy, now)
        assert {u.team_id for u in pruned} <= {c.unit.team_id
                                                for c in [*reference, *reference.escorts]}
        for already in ([], ["volunteer"], ["police:station"]):
            expected = domain.choose_units(reference, facts, policy, wanted=wanted,
                                           already=already)
            got = domain.choose_units(ranked, facts, policy, wanted=wanted, already=already)
            assert [c.unit.team_id for c in got] == [c.unit.team_id for c in expected]
    finally:
        await r.aclose()


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(units=teams(), category=st.sampled_from(CATEGORIES),
       flags=st.sampled_from([(), ("weapon",), ("in_progress",)]),
       station=st.sampled_from([None, "ag-a"]))
def test_search_sends_what_the_reference_sends_within_the_radius(
        clean_redis: str, units: list[dict[str, object]], category: str,
        flags: tuple[str, ...], station: str | None) -> None:
    asyncio.run(_compare(clean_redis, units, category, flags, station))


# A deployment changes the rules in its policy file, not in code: the search must prune
# as the reference ranks under any file the policy accepts, not only under DESIGN's.
ENTRIES = ["police", "police:patrol", "police:station", "security", "volunteer", "any"]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    answer: list[str] = []
    for entry in draw(st.lists(st.sampled_from(ENTRIES), min_size=1, max_size=4, unique=True)):
        try:  # only lists the policy accepts (each kind once, the narrower first)
            CategoryRule(priority="P2", answer=(*answer, entry), units=1)  # type: ignore[arg-type]
        except ValidationError:
            continue
        answer.append(entry)
    data = POLICY.model_dump()
    data.update(
        categories={"c": {"priority": draw(st.sampled_from(["P1", "P2", "P4"])),
                          "answer": answer, "units": draw(st.integers(1, 3)),
                          "skills": draw(st.sampled_from([[], ["first_aid"]])),
                          "zone_station": draw(st.booleans())}},
        followup_days={}, followup_resolved_days={},
        rank_step_s=draw(st.sampled_from([0, 60, 180, 1000])),
        road_factor=draw(st.sampled_from([1.0, 1.3, 2.5])),
        p1_min_units=draw(st.integers(1, 3)))
    return Policy.model_validate(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(units=teams(), policy=policies(),
       flags=st.sampled_from([(), ("weapon",), ("injury",)]),
       station=st.sampled_from([None, "ag-a"]))
def test_search_sends_what_the_reference_sends_under_any_policy_file(
        clean_redis: str, units: list[dict[str, object]], policy: Policy,
        flags: tuple[str, ...], station: str | None) -> None:
    asyncio.run(_compare(clean_redis, units, "c", flags, station, policy=policy))
