"""DESIGN's dispatch rules against the search as built (real Redis): an oracle written from
DESIGN's words ("Dispatch rules"), not from the code, compared with store.candidates +
domain.rank_candidates + domain.choose_units, as Dispatcher._fill runs them, over generated
districts and at the rules' boundaries."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis as sync_redis
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.dispatch import domain, store
from shared.policy import load_policy
from tests.helpers import poll_until

from .test_engine import orders_once, team, wait_for_units
from .test_reinforcement import on_scene_asking_for_backup

POLICY = load_policy()
SCENE = (22.8170, 108.3665)
DISTRICT = "d"
EARTH_M = 6_371_000.0
METRES_PER_DEGREE_LAT = math.pi * EARTH_M / 180

# --- the oracle: DESIGN.md, "Dispatch rules", in its own words ---------------------------

# category: (priority, who may answer in order of preference, units, skills)
TABLE: dict[str, tuple[str, tuple[str, ...], int, tuple[str, ...]]] = {
    "violence": ("P1", ("police", "security"), 2, ()),
    "theft_in_progress": ("P1", ("police", "security"), 2, ()),
    "medical": ("P1", ("any",), 1, ("first_aid",)),
    "fire": ("P1", ("security", "police"), 2, ()),
    "suspicious": ("P2", ("police", "security"), 1, ()),
    "dispute": ("P2", ("police:patrol", "security", "police:station"), 1, ()),
    "lost_person": ("P2", ("police", "volunteer"), 2, ()),
    "traffic": ("P3", ("police", "volunteer"), 1, ()),
    "help_request": ("P3", ("security", "police:patrol", "volunteer", "police:station"), 1, ()),
    "ebike_theft": ("P3", ("police",), 1, ()),
    "noise": ("P4", ("security", "police:patrol", "police:station"), 1, ()),
    "hazard_report": ("P4", ("volunteer", "security"), 1, ()),
    "fraud_warning": ("P4", ("police:station", "volunteer"), 2, ()),
}
SPEED_KMH = {"foot": 5, "bike": 12, "ebike": 18, "car": 30, "drone": 40}
RAISING = {"weapon", "injury", "in_progress"}
RADIUS_M = 10_000
FIX_MAX_AGE = timedelta(minutes=10)


@dataclass(frozen=True)
class T:
    """A team as the oracle sees it."""

    team_id: str
    kind: str
    role: str | None  # police: "station" (the default) or "patrol"
    agency_id: str = "ag-a"
    district: str = DISTRICT
    mode: str = "car"
    skills: tuple[str, ...] = ()
    status: str = "available"
    on_shift: bool = True
    fix_age_s: float | None = 60  # None: no fix ever
    claimed: bool = False  # holds another incident's order
    home: str = ""
    north_m: float = 1000.0
    east_m: float = 0.0

    @property
    def lat(self) -> float:
        return SCENE[0] + self.north_m / METRES_PER_DEGREE_LAT

    @property
    def lon(self) -> float:
        return SCENE[1] + self.east_m / (METRES_PER_DEGREE_LAT * math.cos(math.radians(self.lat)))


def _straight_line_m(t: T) -> float:
    p1, p2 = math.radians(SCENE[0]), math.radians(t.lat)
    dp, dl = p2 - p1, math.radians(t.lon - SCENE[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


def _place(answer: tuple[str, ...], t: T) -> int | None:
    """Place of the team's kind in the list; `police` is either role."""
    for i, entry in enumerate(answer):
        kind, _, role = entry.partition(":")
        if entry == "any" or (kind == t.kind and (not role or role == (t.role or "station"))):
            return i
    return None


def _matches(entry: str, t: T) -> bool:
    return _place((entry,), t) == 0


def _score(t: T, place: int) -> float:
    return _straight_line_m(t) * 1.3 / (SPEED_KMH.get(t.mode, 5) / 3.6) + 180 * place


def _free_near_fresh(t: T, excluded: set[str], now: datetime) -> bool:
    return (t.district == DISTRICT and t.status == "available" and t.on_shift
            and not t.claimed and t.team_id not in excluded and t.fix_age_s is not None
            and timedelta(seconds=t.fix_age_s) <= FIX_MAX_AGE
            and _straight_line_m(t) <= RADIUS_M)


def oracle(teams: list[T], category: str, flags: tuple[str, ...], *, zone: str = "",
           station: str = "", excluded: set[str] = frozenset(),  # type: ignore[assignment]
           already: tuple[tuple[str, str | None], ...] = (), now: datetime) -> list[str]:
    """Whom to send now, given the kinds (kind, role) of the teams on it already (a
    refill after a refusal or a missed deadline: the next candidate, of the kind missing)."""
    prio, answer, units, skills = TABLE[category]
    raised = bool(RAISING & set(flags))
    priority = "P1" if raised else prio
    # (extension as built: a category raised to P1 by a flag wants at least two units)
    wanted = max(units, 2) if raised and prio != "P1" else units

    def key(pair: tuple[T, float]) -> tuple[float, bool, str]:
        t, s = pair
        return round(s, 3), t.home != zone or not zone, t.team_id

    allowed = []
    for t in teams:
        place = _place(answer, t)
        if place is None or not _free_near_fresh(t, excluded, now):
            continue
        if not set(skills) <= set(t.skills):
            continue
        if t.kind == "volunteer" and "weapon" in flags:
            continue
        if (category == "fraud_warning" and station and t.kind == "police"
                and (t.role or "station") == "station" and t.agency_id != station):
            continue  # police:station (the zone's)
        allowed.append((t, _score(t, place)))
    allowed.sort(key=key)
    ranked = [t for t, _ in allowed]
    chosen: list[T] = []
    on_it = [T("", kind, role) for kind, role in already]
    missing = wanted - len(on_it)
    if missing <= 0:
        pass
    elif wanted == 1:
        chosen = ranked[:1]
    else:
        kinds: list[str] = []
        for entry in answer:
            if entry != "any" and entry not in kinds:
                kinds.append(entry)
        uncovered = list(on_it)
        for entry in kinds[:wanted]:
            cover = next((t for t in uncovered if _matches(entry, t)), None)
            if cover is not None:
                uncovered.remove(cover)
                continue
            best = next((t for t in ranked if t not in chosen and _matches(entry, t)), None)
            if best is not None:
                chosen.append(best)
        for t in ranked:
            if len(chosen) >= missing:
                break
            if t not in chosen:
                chosen.append(t)
        chosen = chosen[:missing]
    sent = on_it + chosen
    if priority == "P1" and sent and all(t.kind == "volunteer" for t in sent):
        # the best police or security unit goes too (as built: whatever the category
        # lists, a kind it does not list one place below all it does)
        escorts = sorted(((t, _score(t, p if (p := _place(answer, t)) is not None
                                     else len(answer)))
                          for t in teams if t.kind in ("police", "security")
                          and _free_near_fresh(t, excluded, now)), key=key)
        if escorts:
            chosen.append(escorts[0][0])
    return [t.team_id for t in chosen]


# --- the code as built --------------------------------------------------------------------


async def _load(r: aioredis.Redis, teams: list[T], now: datetime) -> None:
    for t in teams:
        await store.save_unit_status(r, at=now, fields={
            "team_id": t.team_id, "district": t.district, "status": t.status,
            "name": t.team_id, "agency_id": t.agency_id, "agency_kind": t.kind,
            "agency_role": t.role or "", "mode": t.mode, "skills": json.dumps(list(t.skills)),
            "home_zone_id": t.home, "on_shift": "1" if t.on_shift else "0"})
        if t.fix_age_s is not None:
            await store.save_unit_position(r, team_id=t.team_id, lat=t.lat, lon=t.lon,
                                           at=now - timedelta(seconds=t.fix_age_s))
        if t.claimed:
            await r.set(f"dispatch:claim:{t.team_id}", "ord-elsewhere")


def _facts(category: str, flags: tuple[str, ...], *, zone: str = "", station: str = "",
           excluded: set[str] = frozenset()) -> domain.IncidentFacts:  # type: ignore[assignment]
    return domain.IncidentFacts(
        incident_id="inc", district=DISTRICT, category=category,
        priority=POLICY.classify(category, flags), flags=flags, lat=SCENE[0], lon=SCENE[1],
        zone_id=zone or None, station_agency_id=station or None,
        excluded=frozenset(excluded))


async def built(url: str, teams: list[T], category: str, flags: tuple[str, ...], *,
                zone: str = "", station: str = "", excluded: set[str] = frozenset(),  # type: ignore[assignment]
                already: tuple[tuple[str, str | None], ...] = (), now: datetime) -> list[str]:
    """What Dispatcher._fill sends: the Redis search, then rank and choose."""
    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await r.flushdb()
        await _load(r, teams, now)
        facts = _facts(category, flags, zone=zone, station=station, excluded=excluded)
        found = await store.candidates(r, domain.candidate_query(facts, POLICY, now))
        ranked = domain.rank_candidates(found, facts, POLICY, now)
        chosen = domain.choose_units(ranked, facts, POLICY,
                                     wanted=domain.units_wanted(facts, POLICY),
                                     already=[domain.sent_as(*a) for a in already])
        return [c.unit.team_id for c in chosen]
    finally:
        await r.aclose()


def test_the_policy_file_is_designs_table() -> None:
    for category, (priority, answer, units, skills) in TABLE.items():
        rule = POLICY.categories[category]
        assert (rule.priority, rule.answer, rule.units, rule.skills) == (
            priority, answer, units, skills), category
    assert set(POLICY.categories) == set(TABLE)
    assert POLICY.speeds_kmh == SPEED_KMH
    assert POLICY.deadlines_s == {"P1": 30, "P2": 60, "P3": 120, "P4": 300}
    assert (POLICY.road_factor, POLICY.rank_step_s, POLICY.search_radius_km,
            POLICY.fix_max_age_s) == (1.3, 180, 10, 600)
    assert set(POLICY.raise_to_p1_flags) == RAISING
    assert POLICY.bar_volunteers_flags == ("weapon",)
    assert POLICY.flag_after_misses == 2 and POLICY.handover_filing_h == 24
    assert POLICY.followup_days == {"dispute": 7}


KINDS = [("police", "station"), ("police", "patrol"), ("police", None), ("security", None),
         ("volunteer", None)]


@st.composite
def districts(draw: st.DrawFn) -> list[T]:
    n = draw(st.integers(min_value=0, max_value=24))
    out = []
    for i in range(n):
        kind, role = draw(st.sampled_from(KINDS))
        # whole metres, away from the 10 km edge (tested on its own below, where Lua's
        # floating point and Python's may differ in the last digit)
        north = draw(st.integers(-12_000, 12_000) | st.sampled_from([0, 150, 150, 1200]))
        east = draw(st.integers(-6_000, 6_000) | st.just(0))
        if abs(math.hypot(north, east) - RADIUS_M) < 50:
            north += 100 if north >= 0 else -100
        out.append(T(
            team_id=f"t{i:02d}", kind=kind, role=role,
            agency_id=draw(st.sampled_from(["ag-a", "ag-b"])),
            district=draw(st.sampled_from([DISTRICT] * 6 + ["other"])),
            mode=draw(st.sampled_from(["foot", "bike", "ebike", "car", "drone"])),
            skills=draw(st.sampled_from([(), ("first_aid",), ("first_aid", "rescue")])),
            status=draw(st.sampled_from(["available"] * 5 + ["busy", "off_duty"])),
            on_shift=draw(st.sampled_from([True] * 5 + [False])),
            fix_age_s=draw(st.sampled_from([None, 0, 30, 300, 590, 610, 3600] + [60] * 4)),
            claimed=draw(st.sampled_from([False] * 6 + [True])),
            home=draw(st.sampled_from(["", "z1", "z2"])),
            north_m=north, east_m=east))
    return out


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(teams=districts(), category=st.sampled_from(sorted(TABLE)),
       flags=st.sampled_from([(), ("weapon",), ("injury",), ("in_progress",), ("drunk",)]),
       station=st.sampled_from(["", "ag-a"]), excluded=st.integers(0, 3),
       already=st.sampled_from([(), (("police", "patrol"),), (("police", None),),
                                (("security", None),), (("volunteer", None),)]))
def test_the_search_sends_whom_design_says(clean_redis: str, teams: list[T], category: str,
                                           flags: tuple[str, ...], station: str,
                                           excluded: int,
                                           already: tuple[tuple[str, str | None], ...]) -> None:
    now = datetime.now(UTC)
    out = {t.team_id for t in teams[:excluded]}
    expected = oracle(teams, category, flags, zone="z1", station=station, excluded=out,
                      already=already, now=now)
    got = asyncio.run(built(clean_redis, teams, category, flags, zone="z1", station=station,
                            excluded=out, already=already, now=now))
    assert got == expected


# --- boundaries -------------------------------------------------------------------------


def _both(url: str, teams: list[T], category: str, flags: tuple[str, ...] = (),
          **kw: object) -> tuple[list[str], list[str]]:
    now = datetime.now(UTC)
    return (oracle(teams, category, flags, now=now, **kw),  # type: ignore[arg-type]
            asyncio.run(built(url, teams, category, flags, now=now, **kw)))  # type: ignore[arg-type]


def test_a_fix_exactly_ten_minutes_old_still_counts(clean_redis: str) -> None:
    for age in (600, 599.999, 600.001):
        expected, got = _both(clean_redis, [T("a", "security", None, fix_age_s=age)], "noise")
        assert got == expected, age


def test_a_team_just_inside_ten_km_is_a_candidate(clean_redis: str) -> None:
    for metres in (9_990, 9_997, 9_999, 9_999.9, 10_000.1, 10_001, 10_010):
        expected, got = _both(clean_redis, [T("a", "security", None, north_m=metres)], "noise")
        assert got == expected, metres


def test_a_team_that_moved_to_another_district_gets_none_of_this_districts_incidents(
        clean_redis: str) -> None:
    # A team of this district, removed from its roster and imported again into the
    # neighbouring district under the same id (the only way a team changes district: ids
    # are global), patrols 2 km from the scene. Only the command room's assignment reaches
    # outside the incident's district: the search here does not send it.
    async def run() -> list[str]:
        r = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            await r.flushdb()
            now = datetime.now(UTC)
            was = T("moved", "security", None, north_m=500)
            await _load(r, [was], now - timedelta(hours=2))
            await _load(r, [T("moved", "security", None, district="other", north_m=2000)],
                        now - timedelta(seconds=60))
            facts = _facts("noise", ())
            found = await store.candidates(r, domain.candidate_query(facts, POLICY, now))
            ranked = domain.rank_candidates(found, facts, POLICY, now)
            return [c.unit.team_id for c in domain.choose_units(ranked, facts, POLICY,
                                                                wanted=1)]
        finally:
            await r.aclose()

    assert asyncio.run(run()) == []


def test_a_team_that_moved_to_another_district_leaves_the_old_districts_lists_and_map(
        clean_redis: str) -> None:
    # The old district's dispatchers saw it in their unit list and on their map, free and
    # 500 m from their scene, though their assignment could no longer reach it.
    async def run() -> tuple[list[str], list[str], float | None, float | None]:
        r = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            await r.flushdb()
            now = datetime.now(UTC)
            await _load(r, [T("moved", "security", None, north_m=500)],
                        now - timedelta(hours=2))
            await _load(r, [T("moved", "security", None, district="other", north_m=2000)],
                        now - timedelta(seconds=60))
            return ([u.team_id for u, _ in await store.units_in(r, DISTRICT)],
                    [u.team_id for u, _ in await store.units_in(r, "other")],
                    await r.zscore(f"dispatch:geo:{DISTRICT}", "moved"),
                    await r.zscore("dispatch:geo:other", "moved"))
        finally:
            await r.aclose()

    old_list, new_list, old_map, new_map = asyncio.run(run())
    assert old_list == [] and old_map is None
    assert new_list == ["moved"] and new_map is not None


def test_the_home_zone_breaks_a_tie_whatever_the_ids(clean_redis: str) -> None:
    teams = [T("a", "security", None, north_m=800), T("b", "security", None, north_m=800,
                                                        home="z1")]
    expected, got = _both(clean_redis, teams, "noise", zone="z1")
    assert got == expected == ["b"]
    # and never excludes: a team of another zone, nearer, wins
    teams = [T("a", "security", None, north_m=700, home="z2"),
             T("b", "security", None, north_m=800, home="z1")]
    expected, got = _both(clean_redis, teams, "noise", zone="z1")
    assert got == expected == ["a"]


def test_a_team_with_no_fix_is_no_candidate(clean_redis: str) -> None:
    teams = [T("nofix", "police", "patrol", fix_age_s=None), T("far", "police", "patrol",
                                                               north_m=9000)]
    expected, got = _both(clean_redis, teams, "ebike_theft")
    assert got == expected == ["far"]


def test_a_joint_response_whose_second_kind_has_nobody_free_takes_the_next_best(
        clean_redis: str) -> None:
    teams = [T("p1", "police", "patrol", north_m=3000), T("p2", "police", "station",
                                                          north_m=4000),
             T("s-busy", "security", None, north_m=100, status="busy"),
             T("s-claimed", "security", None, north_m=200, claimed=True),
             T("s-stale", "security", None, north_m=300, fix_age_s=601)]
    expected, got = _both(clean_redis, teams, "violence")
    assert got == expected == ["p1", "p2"]


def test_a_first_aid_call_goes_only_to_teams_with_first_aid(clean_redis: str) -> None:
    teams = [T("no-skill", "security", None, north_m=100),
             T("medic", "volunteer", None, north_m=900, mode="foot", skills=("first_aid",)),
             T("pol", "police", "patrol", north_m=2000)]
    expected, got = _both(clean_redis, teams, "medical")
    # the volunteer with first aid, and (a P1) the best police or security team with it
    assert got == expected == ["medic", "no-skill"]


# --- through the dispatcher -------------------------------------------------------------


async def test_backup_comes_from_anywhere_in_the_district_and_never_from_another(
        dispatch: str, publisher: RedisBroker) -> None:
    # The guard on scene asks for backup. The only free team of the district is 25 km
    # away (beyond the 10 km of a first search: a backup comes from anywhere in the
    # district). A team that was of this district and now patrols the next one, 1 km
    # away, is not this district's to send.
    await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "moved", kind="security", lat=22.8180, lon=108.3665)
    await wait_for_units(dispatch, 2)
    await team(publisher, "moved", kind="security", lat=22.8260, lon=108.3665,
               district="next-door")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        await poll_until(lambda: client.hget("dispatch:unit:moved", "lat") == repr(22.8260),
                         "the moved team's fix in dispatch's view")
    finally:
        client.close()
    await team(publisher, "far", kind="security", lat=22.8170 + 0.225, lon=108.3665)
    await wait_for_units(dispatch, 2)  # first and far: the moved team left this district's map
    incident_id, first = await on_scene_asking_for_backup(dispatch, publisher)
    assert first.team_id == "first"
    orders = await orders_once(dispatch, incident_id, 2, "the reinforcement")
    assert [(o.team_id, o.kind) for o in orders] == [("first", "dispatch"),
                                                     ("far", "reinforcement")]
