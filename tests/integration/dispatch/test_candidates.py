"""The candidate search prunes a district's teams in Redis (store.candidates): whatever it
drops, choose_units would never have sent. Checked against the reference, rank_candidates
and choose_units over every team of the projection, on random districts (real Redis)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.dispatch import domain, store
from shared.events import utcnow
from shared.policy import load_policy

POLICY = load_policy()
CENTRE = (22.8170, 108.3665)
KINDS = [("police", "station"), ("police", "patrol"), ("security", None), ("volunteer", None)]
# Categories volunteers may answer: on a P1 those may need an escort of police or security.
VOLUNTEER_CATEGORIES = sorted(c for c, rule in POLICY.categories.items()
                              if {"volunteer", "any"} & set(rule.answer))


@st.composite
def teams(draw: st.DrawFn, kinds: st.SearchStrategy[tuple[str, str | None]] = st.sampled_from(
        KINDS)) -> list[dict[str, object]]:
    n = draw(st.integers(min_value=0, max_value=40))
    out = []
    for i in range(n):
        kind, role = draw(kinds)
        out.append({
            "team_id": f"t{i:02d}", "kind": kind, "role": role,
            "agency_id": draw(st.sampled_from(["ag-a", "ag-b"])),
            "mode": draw(st.sampled_from(["foot", "bike", "ebike", "car", "drone", "boat"])),
            "skills": draw(st.sampled_from([(), ("first_aid",), ("first_aid", "rescue")])),
            "status": draw(st.sampled_from(["available"] * 4 + ["busy", "off_duty"])),
            "on_shift": draw(st.booleans() | st.just(True)),
            "fix_age_s": draw(st.sampled_from([5, 60, 599, 700])),
            "claimed": draw(st.booleans() if i % 5 == 0 else st.just(False)),
            "home": draw(st.sampled_from(["z1", "z2", ""])),
            # within ~6 km, some at exactly the same place (ties)
            "dlat": draw(st.sampled_from([0.0, 0.001, -0.003]) | st.floats(-0.05, 0.05)),
            "dlon": draw(st.sampled_from([0.0, 0.002]) | st.floats(-0.05, 0.05)),
        })
    return out


async def _compare(url: str, units: list[dict[str, object]], category: str,
                   flags: tuple[str, ...], station: str | None, excluded: int) -> None:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await r.flushdb()
        now = utcnow()
        for u in units:
            team_id = str(u["team_id"])
            await store.save_unit_status(r, at=now, fields={
                "team_id": team_id, "district": "d", "status": str(u["status"]),
                "name": team_id, "agency_id": str(u["agency_id"]), "agency_kind": str(u["kind"]),
                "agency_role": str(u["role"] or ""), "mode": str(u["mode"]),
                "skills": json.dumps(list(u["skills"])),  # type: ignore[arg-type]
                "home_zone_id": str(u.get("home", "")),
                "on_shift": "1" if u["on_shift"] else "0"})
            await store.save_unit_position(
                r, team_id=team_id, lat=CENTRE[0] + float(u["dlat"]),  # type: ignore[arg-type]
                lon=CENTRE[1] + float(u["dlon"]),  # type: ignore[arg-type]
                at=now - timedelta(seconds=int(u["fix_age_s"])))  # type: ignore[call-overload]
            if u["claimed"]:
                await r.set(f"dispatch:claim:{team_id}", "ord-elsewhere")
        rule = POLICY.categories[category]
        facts = domain.IncidentFacts(
            incident_id="inc", district="d", category=category,
            priority=POLICY.classify(category, flags), flags=flags, lat=CENTRE[0],
            lon=CENTRE[1], zone_id="z1", station_agency_id=station,
            excluded=frozenset(str(u["team_id"]) for u in units[:excluded]))
        wanted = domain.units_wanted(facts, POLICY)
        every = [unit for unit, claim in await store.units_in(r, "d") if claim is None]
        reference = domain.rank_candidates(every, facts, POLICY, now)
        pruned = await store.candidates(r, domain.candidate_query(facts, POLICY, now))
        ranked = domain.rank_candidates(pruned, facts, POLICY, now)
        for already in ([], [rule.answer[0]], ["volunteer"]):
            expected = domain.choose_units(reference, facts, POLICY, wanted=wanted,
                                           already=already)
            got = domain.choose_units(ranked, facts, POLICY, wanted=wanted, already=already)
            assert [c.unit.team_id for c in got] == [c.unit.team_id for c in expected]
        # every team the search returned is one the reference ranks (nothing ineligible),
        # as one that may answer or (a P1) as an escort
        assert {u.team_id for u in pruned} <= {c.unit.team_id
                                                for c in [*reference, *reference.escorts]}
        # a team's call for backup (the engine's _reinforce: the best 3, escorts too):
        # the same backup as from every team
        for volunteers_asking in (False, True):
            escorts = True
            query = domain.candidate_query(facts, POLICY, now, keep=3, radius_km=1000,
                                           escorts=escorts)
            ranking = domain.rank_candidates(await store.candidates(r, query), facts, POLICY,
                                             now, escorts=escorts)
            full = domain.rank_candidates(every, facts, POLICY, now, escorts=escorts)
            got_backup = domain.backups_for(ranking, volunteers_asking=volunteers_asking)[:1]
            best = domain.backups_for(full, volunteers_asking=volunteers_asking)[:1]
            assert [c.unit.team_id for c in got_backup] == [c.unit.team_id for c in best]
    finally:
        await r.aclose()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(units=teams(), category=st.sampled_from(sorted(POLICY.categories)),
       flags=st.sampled_from([(), ("weapon",), ("injury",)]),
       station=st.sampled_from([None, "ag-a"]), excluded=st.integers(0, 3))
def test_pruning_never_drops_a_team_choose_units_would_send(
        clean_redis: str, units: list[dict[str, object]], category: str,
        flags: tuple[str, ...], station: str | None, excluded: int) -> None:
    asyncio.run(_compare(clean_redis, units, category, flags, station, excluded))


# Mostly volunteers, some police and security, often without the category's skills or not
# of its kinds: P1s whose best answer is volunteers, so that their escort is looked for
# among teams that may not answer the incident themselves.
VOLUNTEERS_MOSTLY = st.sampled_from([("volunteer", None)] * 5 + KINDS[:3])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(units=teams(VOLUNTEERS_MOSTLY), category=st.sampled_from(VOLUNTEER_CATEGORIES),
       flags=st.sampled_from([("injury",), ("in_progress",)]),
       station=st.sampled_from([None, "ag-a"]), excluded=st.integers(0, 3))
def test_pruning_never_drops_the_escort_volunteers_need_on_a_p1(
        clean_redis: str, units: list[dict[str, object]], category: str,
        flags: tuple[str, ...], station: str | None, excluded: int) -> None:
    asyncio.run(_compare(clean_redis, units, category, flags, station, excluded))


def test_the_escort_is_found_behind_many_volunteers_whatever_the_categorys_skills(
        clean_redis: str) -> None:
    # Thirty first-aid volunteers near a P1 medical call, a police car without first aid
    # 2 km away: the search reads past the volunteers until it has the escort.
    def placed(team_id: str, kind: str, skills: tuple[str, ...], dlat: float
               ) -> dict[str, object]:
        return {"team_id": team_id, "kind": kind, "role": None, "agency_id": "ag-a",
                "mode": "car" if kind == "police" else "foot", "skills": skills,
                "status": "available", "on_shift": True, "fix_age_s": 5, "claimed": False,
                "dlat": dlat, "dlon": 0.0}

    units = [placed(f"v{i:02d}", "volunteer", ("first_aid",), 0.0002 * i) for i in range(30)]
    units.append(placed("pol", "police", (), 0.018))
    asyncio.run(_compare(clean_redis, units, "medical", (), None, 0))

    async def sent() -> list[str]:
        r = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        facts = domain.IncidentFacts(incident_id="i", district="d", category="medical",
                                     priority="P1", flags=(), lat=CENTRE[0], lon=CENTRE[1])
        now = utcnow()
        found = await store.candidates(r, domain.candidate_query(facts, POLICY, now))
        await r.aclose()
        ranked = domain.rank_candidates(found, facts, POLICY, now)
        return [c.unit.team_id for c in domain.choose_units(ranked, facts, POLICY, wanted=1)]

    assert asyncio.run(sent()) == ["v00", "pol"]
    redis.Redis.from_url(clean_redis).flushdb()


def test_a_district_of_hundreds_returns_a_handful(clean_redis: str) -> None:
    units = [{"team_id": f"t{i:03d}", "kind": KINDS[i % 4][0], "role": KINDS[i % 4][1],
              "agency_id": "ag-a", "mode": ["foot", "car", "ebike"][i % 3], "skills": (),
              "status": "available", "on_shift": True, "fix_age_s": 5, "claimed": False,
              "dlat": (i % 20) * 0.001, "dlon": (i // 20) * 0.001} for i in range(400)]
    asyncio.run(_compare(clean_redis, units, "dispute", (), None, 0))

    async def count() -> int:
        r = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        facts = domain.IncidentFacts(incident_id="i", district="d", category="dispute",
                                     priority="P2", flags=(), lat=CENTRE[0], lon=CENTRE[1])
        found = await store.candidates(r, domain.candidate_query(facts, POLICY, utcnow(),
                                                                 keep=4))
        await r.aclose()
        return len(found)

    assert asyncio.run(count()) <= 4 * 5  # keep per group: three kinds, escort, overall
    redis.Redis.from_url(clean_redis).flushdb()


def test_a_fast_team_far_away_is_found_when_every_near_team_is_slow(clean_redis: str) -> None:
    # Four guards on foot ~600 m away and one security car ~3.5 km away, which gets there
    # first. The search stops reading farther teams by the fastest mode seen in the
    # district: the car's status put "car" among them, so the car is read and sent.
    def guard(i: int, mode: str, dlat: float) -> dict[str, object]:
        return {"team_id": f"g{i}", "kind": "security", "role": None, "agency_id": "ag-s",
                "mode": mode, "skills": (), "status": "available", "on_shift": True,
                "fix_age_s": 5, "claimed": False, "dlat": dlat, "dlon": 0.0001 * i}

    units = [guard(i, "foot", 0.0054) for i in range(4)] + [guard(9, "car", 0.0315)]
    asyncio.run(_compare(clean_redis, units, "noise", (), None, 0))
