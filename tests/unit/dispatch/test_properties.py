"""Invariants of ranking and choosing, over generated teams and incidents (real policy).

The one about claims ("no team ever holds two open orders") lives where it can be proved,
against a real Redis: tests/integration/dispatch/test_claims.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.domain import (
    IncidentFacts,
    Ranked,
    Ranking,
    Unit,
    choose_units,
    distance_m,
    is_eligible,
    rank_candidates,
    travel_time_s,
    units_wanted,
)
from shared.policy import CategoryRule
from tests.unit.dispatch.support import (
    DISTRICT,
    LAT,
    LON,
    METRES_PER_DEGREE_LAT,
    NOW,
    POLICY,
)

SMALL = settings(max_examples=200, deadline=None)
# A coarse grid of distances makes exact ties (and so the home-zone tie-break) common.
DISTANCES = st.one_of(st.sampled_from([0.0, 100.0, 500.0, 1000.0, 3000.0]),
                      st.floats(min_value=0, max_value=10_000, allow_nan=False))
SCORE_SLACK = 1e-3  # the ranking sorts on scores rounded to the millisecond


@st.composite
def units(draw: st.DrawFn) -> list[Unit]:
    out: list[Unit] = []
    for i in range(draw(st.integers(min_value=0, max_value=10))):
        kind = draw(st.sampled_from(["police", "security", "volunteer"]))
        role = draw(st.sampled_from(["patrol", "station", None])) if kind == "police" else None
        metres = draw(DISTANCES)
        bearing = draw(st.sampled_from([0.0, 90.0, 180.0, 270.0]))
        d_lat = metres * math.cos(math.radians(bearing)) / METRES_PER_DEGREE_LAT
        d_lon = (metres * math.sin(math.radians(bearing))
                 / (METRES_PER_DEGREE_LAT * math.cos(math.radians(LAT))))
        fix_age = draw(st.sampled_from([60] * 4 + [0, 600, 601, 1800, None]))
        out.append(Unit(
            team_id=f"t{i}", agency_id=f"ag-{kind}-{role}", agency_kind=kind, agency_role=role,
            mode=draw(st.sampled_from(sorted(POLICY.speeds_kmh))), district=DISTRICT,
            status=draw(st.sampled_from(["available"] * 6 + ["busy", "off_duty"])),
            on_shift=draw(st.sampled_from([True] * 7 + [False])),
            skills=draw(st.sampled_from([(), ("first_aid",), ("first_aid", "radio")])),
            home_zone_id=draw(st.sampled_from([None, "Z1", "Z2"])),
            lat=LAT + d_lat, lon=LON + d_lon,
            fix_at=None if fix_age is None else NOW - timedelta(seconds=fix_age),
        ))
    return out


CATEGORIES = sorted(POLICY.categories)
# Where volunteers may answer at all: the weapon bar and the P1 escort are about these.
VOLUNTEER_CATEGORIES = sorted(c for c, rule in POLICY.categories.items()
                              if {"volunteer", "any"} & set(rule.answer))
ANY_FLAGS = st.lists(st.sampled_from(["weapon", "injury", "in_progress", "child"]),
                     unique=True, max_size=2).map(tuple)


@st.composite
def situations(draw: st.DrawFn, categories: Sequence[str] = tuple(CATEGORIES),
               flags: st.SearchStrategy[tuple[str, ...]] = ANY_FLAGS,
               ) -> tuple[list[Unit], IncidentFacts, list[str]]:
    """Teams, an incident, and the agency kinds of the incident's live orders."""
    teams = draw(units())
    category = draw(st.sampled_from(categories))
    drawn_flags = draw(flags)
    ids = [u.team_id for u in teams]
    excluded = draw(st.frozensets(st.sampled_from(ids))) if ids else frozenset()
    facts = IncidentFacts(
        incident_id="inc-p", district=DISTRICT, category=category,
        priority=POLICY.classify(category, drawn_flags), flags=drawn_flags, lat=LAT, lon=LON,
        zone_id=draw(st.sampled_from([None, "Z1"])), excluded=excluded,
    )
    already = draw(st.one_of(st.just([]), st.lists(
        st.sampled_from(["police", "security", "volunteer"]), max_size=2)))
    return teams, facts, already


def _eligible_by_design(unit: Unit, facts: IncidentFacts) -> bool:
    """DESIGN.md's candidate rules, written out again independently of `is_eligible`."""
    rule = POLICY.categories[facts.category]
    return (unit.status == "available" and unit.on_shift
            and unit.team_id not in facts.excluded
            and any(entry == "any" or _matches(entry, unit) for entry in rule.answer)
            and not (unit.agency_kind == "volunteer" and "weapon" in facts.flags)
            and set(rule.skills) <= set(unit.skills)
            and unit.lat is not None and unit.fix_at is not None
            and NOW - unit.fix_at <= timedelta(minutes=10))


def _may_escort_by_design(unit: Unit, facts: IncidentFacts) -> bool:
    """"Volunteers are never the only responders to a P1: ... the best police or security
    unit goes too": any police or security team free, placed and not already offered the
    incident, whatever the category's kinds and skills."""
    return (facts.priority == "P1" and unit.agency_kind in ("police", "security")
            and unit.status == "available" and unit.on_shift
            and unit.team_id not in facts.excluded
            and unit.lat is not None and unit.fix_at is not None
            and NOW - unit.fix_at <= timedelta(minutes=10))


def _escort_key_by_design(unit: Unit, facts: IncidentFacts) -> tuple[float, bool, str]:
    """The escorts' order: ETA plus 3 minutes per place below first in the category's list
    (a kind it lacks: below all of it), then the home zone, then the id."""
    rule = POLICY.categories[facts.category]
    places = [i for i, entry in enumerate(rule.answer) if entry == "any" or _matches(entry, unit)]
    assert unit.lat is not None and unit.lon is not None
    eta = travel_time_s(distance_m(facts.lat, facts.lon, unit.lat, unit.lon), unit.mode, POLICY)
    score = eta + (places[0] if places else len(rule.answer)) * POLICY.rank_step_s
    return round(score, 3), unit.home_zone_id != facts.zone_id or facts.zone_id is None, \
        unit.team_id


def _matches(entry: str, unit: Unit) -> bool:
    """Whether a team is of a list entry's kind: `police` either role, no role = station."""
    kind, _, role = entry.partition(":")
    return kind == unit.agency_kind and (not role or role == (unit.agency_role or "station"))


def _rank(teams: list[Unit], facts: IncidentFacts) -> Ranking:
    return rank_candidates(teams, facts, POLICY, NOW)


def _choose(ranked: list[Ranked], facts: IncidentFacts, already: list[str]) -> list[Ranked]:
    return choose_units(ranked, facts, POLICY, wanted=units_wanted(facts, POLICY),
                        already=already)


# --- (a) ranking ----------------------------------------------------------------------


@SMALL
@given(situations())
def test_ranking_holds_exactly_the_eligible_teams_sorted_by_score(
        situation: tuple[list[Unit], IncidentFacts, list[str]]) -> None:
    teams, facts, _ = situation
    rule = POLICY.categories[facts.category]
    ranked = _rank(teams, facts)

    assert all(is_eligible(r.unit, rule, facts, POLICY, NOW) for r in ranked)
    assert sorted(r.unit.team_id for r in ranked) == sorted(
        u.team_id for u in teams if _eligible_by_design(u, facts))
    for r in ranked:
        assert r.kind_rank == rule.kind_rank(r.unit.agency_kind, r.unit.agency_role)
        assert math.isclose(r.score, r.eta_s + r.kind_rank * POLICY.rank_step_s)
    for a, b in zip(ranked, ranked[1:], strict=False):
        assert a.score <= b.score + SCORE_SLACK
        if round(a.score, 3) == round(b.score, 3) and b.home_zone:
            assert a.home_zone, "the home zone breaks exact ties"
    escorts = sorted((u for u in teams if _may_escort_by_design(u, facts)),
                     key=lambda u: _escort_key_by_design(u, facts))
    assert [r.unit.team_id for r in ranked.escorts] == [u.team_id for u in escorts]


# --- (b) choosing ---------------------------------------------------------------------


@SMALL
@given(situations())
def test_choice_never_sends_a_team_twice_nor_one_unranked_and_fills_what_it_can(
        situation: tuple[list[Unit], IncidentFacts, list[str]]) -> None:
    teams, facts, already = situation
    ranked = _rank(teams, facts)
    chosen = _choose(ranked, facts, already)
    missing = max(0, units_wanted(facts, POLICY) - len(already))
    ids = [c.unit.team_id for c in chosen]

    assert len(ids) == len(set(ids)), "a team is sent once"
    unranked = [c for c in chosen if c not in ranked]
    assert len(unranked) <= 1 and all(c in ranked.escorts for c in unranked), (
        "only ranked (eligible) teams are sent, and a P1's escort")
    # As many as are missing while there are candidates; one more only as a P1 escort.
    assert min(missing, len(ranked)) <= len(chosen) <= missing + 1


@SMALL
@given(situations(VOLUNTEER_CATEGORIES,
                  ANY_FLAGS.map(lambda flags: tuple(sorted({"weapon", *flags})))))
def test_choice_never_sends_volunteers_to_an_armed_incident(
        situation: tuple[list[Unit], IncidentFacts, list[str]]) -> None:
    teams, facts, already = situation
    chosen = _choose(_rank(teams, facts), facts, already)
    assert [c.unit.team_id for c in chosen if c.unit.agency_kind == "volunteer"] == []


@SMALL
@given(situations(VOLUNTEER_CATEGORIES, st.sampled_from([("injury",), ("in_progress",),
                                                         ("injury", "child")])))
def test_p1_never_gets_only_volunteers_when_police_or_security_is_free(
        situation: tuple[list[Unit], IncidentFacts, list[str]]) -> None:
    """Whatever the category's kinds and skills: the escort need not be one that may
    answer the incident."""
    teams, facts, already = situation
    assert facts.priority == "P1"
    ranked = _rank(teams, facts)
    chosen = _choose(ranked, facts, already)
    sent = [*already, *(c.unit.agency_kind for c in chosen)]
    if sent and any(_may_escort_by_design(u, facts) for u in teams):
        assert any(kind != "volunteer" for kind in sent), "volunteers alone on a P1"


@SMALL
@given(situations(VOLUNTEER_CATEGORIES, st.sampled_from([("injury",), ("in_progress",),
                                                         ("injury", "child")])))
def test_p1_escort_is_the_best_free_police_or_security_team(
        situation: tuple[list[Unit], IncidentFacts, list[str]]) -> None:
    """The choice is that among the teams that may answer, and at most one escort more:
    the best police or security team free, when volunteers alone would go."""
    teams, facts, already = situation
    ranked = _rank(teams, facts)
    chosen = _choose(ranked, facts, already)
    answering = _choose(Ranking(ranked, escorts=[]), facts, already)
    assert chosen[:len(answering)] == answering and len(chosen) <= len(answering) + 1
    if len(chosen) > len(answering):
        sent = [*already, *(c.unit.agency_kind for c in answering)]
        assert sent and all(kind == "volunteer" for kind in sent)
        best = min((u for u in teams if _may_escort_by_design(u, facts)),
                   key=lambda u: _escort_key_by_design(u, facts))
        assert chosen[-1].unit.team_id == best.team_id


# --- (c) nobody better is left behind -------------------------------------------------


def _first_two_kinds(rule: CategoryRule) -> list[Callable[[Unit], bool]]:
    """The joint response's two kinds, in both readings of the design: the first two
    agency kinds of the list (`police` = either role), or its first two entries."""
    agency_kinds: list[str] = []
    for entry in rule.answer:
        kind = entry.partition(":")[0]
        if kind != "any" and kind not in agency_kinds:
            agency_kinds.append(kind)
    groups: list[Callable[[Unit], bool]] = [
        lambda u, k=k: u.agency_kind == k for k in agency_kinds[:2]]
    groups += [lambda u, e=e: _matches(e, u) for e in rule.answer[:2] if e != "any"]
    return groups


def _best_of(group: Callable[[Unit], bool], ranked: Sequence[Ranked]) -> Ranked | None:
    return next((r for r in ranked if group(r.unit)), None)


@SMALL
@given(situations())
def test_no_team_sent_is_beaten_by_one_left_behind_except_for_the_joint_response(
        situation: tuple[list[Unit], IncidentFacts, list[str]]) -> None:
    """For every team sent `c` and every ranked team left behind `x`, score(x) >= score(c)
    (score = ETA + 3 min per place below first), unless
    (J) the incident wants two or more units and `c` is the best-ranked team of one of
        the first two kinds of the category's list (a joint response), or
    (E) the incident is P1, `x` is a volunteer team and `c` is the best police or
        security team free (the escort volunteers need on a P1, which need not be ranked).
    """
    teams, facts, already = situation
    rule = POLICY.categories[facts.category]
    ranked = _rank(teams, facts)
    chosen = _choose(ranked, facts, already)
    wanted = units_wanted(facts, POLICY)
    best_escort = ranked.escorts[0].unit.team_id if ranked.escorts else None

    for c in chosen:
        joint = wanted >= 2 and any(group(c.unit) and _best_of(group, ranked) == c
                                    for group in _first_two_kinds(rule))
        escort = facts.priority == "P1" and c.unit.team_id == best_escort
        for x in ranked:
            if x in chosen or x.score >= c.score - SCORE_SLACK:
                continue
            assert joint or (escort and x.unit.agency_kind == "volunteer"), (
                f"{c.unit.team_id} ({c.score:.1f}) sent before {x.unit.team_id} ({x.score:.1f})")
