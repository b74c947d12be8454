"""Dispatch rules of DESIGN.md, one behaviour per test, against the real default policy."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.dispatch import records
from services.dispatch.domain import (
    ack_deadline,
    asks_as_volunteers,
    backed_up_by_volunteers_only,
    backups_for,
    escort_news,
    escorting_news,
    filing_of,
    incident_status,
    may_escort,
    missing_skills,
    percentile,
    rank_candidates,
    response_allowed,
    short_of_units,
    skills_signature,
    travel_time_s,
    units_wanted,
)
from services.dispatch.store import waiting_score
from tests.unit.dispatch.support import (
    NOW,
    POLICY,
    dispatched,
    incident,
    ranked_ids,
    team,
)

CATEGORY_PRIORITY = {
    "violence": "P1", "theft_in_progress": "P1", "medical": "P1", "fire": "P1",
    "suspicious": "P2", "dispute": "P2", "lost_person": "P2",
    "traffic": "P3", "help_request": "P3", "ebike_theft": "P3",
    "noise": "P4", "hazard_report": "P4", "fraud_warning": "P4",
}
CATEGORY_UNITS = {
    "violence": 2, "theft_in_progress": 2, "medical": 1, "fire": 2, "suspicious": 1,
    "dispute": 1, "lost_person": 2, "traffic": 1, "help_request": 1, "ebike_theft": 1,
    "noise": 1, "hazard_report": 1, "fraud_warning": 2,
}
# Place in the category's list of each kind of team (None: may not answer). A police
# agency without a role counts as a station.
P, S, N, SEC, VOL = "police:patrol", "police:station", "police:none", "security", "volunteer"
WHO_MAY_ANSWER = {
    "violence": {P: 0, S: 0, N: 0, SEC: 1, VOL: None},
    "theft_in_progress": {P: 0, S: 0, N: 0, SEC: 1, VOL: None},
    "medical": {P: 0, S: 0, N: 0, SEC: 0, VOL: 0},
    "fire": {P: 1, S: 1, N: 1, SEC: 0, VOL: None},
    "suspicious": {P: 0, S: 0, N: 0, SEC: 1, VOL: None},
    "dispute": {P: 0, S: 2, N: 2, SEC: 1, VOL: None},
    "lost_person": {P: 0, S: 0, N: 0, SEC: None, VOL: 1},
    "traffic": {P: 0, S: 0, N: 0, SEC: None, VOL: 1},
    "help_request": {P: 1, S: 3, N: 3, SEC: 0, VOL: 2},
    "ebike_theft": {P: 0, S: 0, N: 0, SEC: None, VOL: None},
    "noise": {P: 1, S: 2, N: 2, SEC: 0, VOL: None},
    "hazard_report": {P: None, S: None, N: None, SEC: 1, VOL: 0},
    "fraud_warning": {P: None, S: 0, N: 0, SEC: None, VOL: 1},
}
SPEEDS_KMH = {"foot": 5, "bike": 12, "ebike": 18, "car": 30, "drone": 40}


def _every_kind_at_one_spot(**kw: object) -> list:
    return [
        team(P, "police", role="patrol", **kw),
        team(S, "police", role="station", **kw),
        team(N, "police", role=None, **kw),
        team(SEC, "security", **kw),
        team(VOL, "volunteer", **kw),
    ]


# --- priority -------------------------------------------------------------------------


@pytest.mark.parametrize(("category", "priority"), CATEGORY_PRIORITY.items())
def test_category_without_flags_gets_its_default_priority(category: str, priority: str) -> None:
    assert POLICY.classify(category, ()) == priority
    assert incident(category).priority == priority


@pytest.mark.parametrize("category", CATEGORY_PRIORITY)
@pytest.mark.parametrize("flag", ["weapon", "injury", "in_progress"])
def test_flags_weapon_injury_and_in_progress_raise_any_category_to_p1(category: str,
                                                                       flag: str) -> None:
    assert POLICY.classify(category, (flag,)) == "P1"
    assert POLICY.classify(category, ("child", flag)) == "P1"


@pytest.mark.parametrize("category", CATEGORY_PRIORITY)
def test_other_flags_are_kept_and_change_neither_priority_nor_candidates(category: str) -> None:
    flagged = incident(category, flags=("child", "elderly", "vehicle"))
    plain = incident(category)
    assert flagged.priority == CATEGORY_PRIORITY[category]
    assert flagged.flags == ("child", "elderly", "vehicle")
    units = _every_kind_at_one_spot(skills=("first_aid",))
    assert ranked_ids(units, flagged) == ranked_ids(units, plain)
    assert units_wanted(flagged, POLICY) == units_wanted(plain, POLICY)


def test_flag_weapon_raises_priority_to_p1_and_bars_volunteers() -> None:
    facts = incident("lost_person", flags=("weapon",))
    assert facts.priority == "P1"
    units = [team("vol-near", "volunteer", mode="foot", metres=50),
             team("pol-far", "police", metres=8000)]
    assert ranked_ids(units, facts) == ["pol-far"]
    assert dispatched(units, facts) == ["pol-far"]


def test_flag_weapon_bars_volunteers_even_where_they_are_listed_first() -> None:
    facts = incident("hazard_report", flags=("weapon",))
    units = [team("vol", "volunteer", metres=10), team("sec", "security", metres=5000)]
    assert dispatched(units, facts) == ["sec"]


def test_flag_weapon_bars_first_aid_volunteers_from_a_medical_call() -> None:
    facts = incident("medical", flags=("weapon",))
    units = [team("vol", "volunteer", mode="foot", metres=20, skills=("first_aid",)),
             team("pol", "police", metres=3000, skills=("first_aid",))]
    assert dispatched(units, facts) == ["pol"]


@pytest.mark.parametrize("flag", ["injury", "in_progress"])
def test_flags_other_than_weapon_do_not_bar_volunteers(flag: str) -> None:
    facts = incident("lost_person", flags=(flag,))
    units = [team("vol", "volunteer", mode="foot", metres=50), team("pol", "police")]
    assert set(ranked_ids(units, facts)) == {"vol", "pol"}


# --- who may answer -------------------------------------------------------------------


@pytest.mark.parametrize(("category", "places"), WHO_MAY_ANSWER.items())
def test_category_admits_exactly_its_listed_agency_kinds_at_their_place(category: str,
                                                                        places: dict) -> None:
    units = _every_kind_at_one_spot(skills=("first_aid",))
    ranked = {r.unit.team_id: r.kind_rank for r in
              rank_candidates(units, incident(category), POLICY, NOW)}
    assert ranked == {kind: place for kind, place in places.items() if place is not None}


def test_police_without_a_role_counts_as_a_station() -> None:
    rule = POLICY.categories["dispute"]
    assert rule.kind_rank("police", None) == rule.kind_rank("police", "station") == 2
    assert rule.kind_rank("police", "patrol") == 0
    fraud = POLICY.categories["fraud_warning"]
    assert fraud.kind_rank("police", None) == 0
    assert fraud.kind_rank("police", "patrol") is None


def test_plain_police_entry_admits_both_roles_at_the_same_place() -> None:
    rule = POLICY.categories["violence"]
    assert rule.kind_rank("police", "patrol") == rule.kind_rank("police", "station") == 0


def test_medical_admits_any_kind_with_first_aid_and_nobody_without() -> None:
    facts = incident("medical")
    with_aid = _every_kind_at_one_spot(skills=("first_aid", "radio"))
    without = [team(f"{u.team_id}-no-aid", u.agency_kind, role=u.agency_role)
               for u in with_aid]
    assert set(ranked_ids(with_aid + without, facts)) == {u.team_id for u in with_aid}


def test_skills_do_not_matter_where_the_category_asks_none() -> None:
    facts = incident("suspicious")
    assert ranked_ids([team("pol", "police", skills=())], facts) == ["pol"]


def test_a_team_without_a_skill_its_category_requires_is_told_which() -> None:
    # what the timeline names when an import takes first aid off a team sent to a collapse
    assert missing_skills(POLICY.rule("medical"), ("radio",)) == ["first_aid"]
    assert missing_skills(POLICY.rule("medical"), ("radio", "first_aid")) == []
    assert missing_skills(POLICY.rule("suspicious"), ()) == []


def test_a_teams_skills_signature_is_the_same_in_any_order_and_differs_with_a_skill_less(
        ) -> None:
    # what the projection's scripts compare (an order's team as sent, the team now): a
    # roster import listing the same skills in another order is no change
    assert skills_signature(["radio", "first_aid"]) == skills_signature(("first_aid", "radio"))
    assert skills_signature(["first_aid", "first_aid"]) == skills_signature(["first_aid"])
    assert skills_signature(["radio"]) != skills_signature(["radio", "first_aid"])
    assert skills_signature([]) == ""


# --- ranking --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "kmh"), SPEEDS_KMH.items())
def test_travel_time_is_straight_line_distance_times_1_3_at_the_mode_speed(mode: str,
                                                                          kmh: int) -> None:
    assert travel_time_s(1000.0, mode, POLICY) == pytest.approx(1300.0 / (kmh / 3.6))
    assert travel_time_s(0.0, mode, POLICY) == 0.0


def test_ranked_eta_is_from_the_straight_line_distance_to_the_scene() -> None:
    [ranked] = rank_candidates([team("pol", "police", mode="bike", metres=2000)],
                               incident("suspicious"), POLICY, NOW)
    assert ranked.distance_m == pytest.approx(2000.0, rel=1e-6)
    assert ranked.eta_s == pytest.approx(2000 * 1.3 / (12 / 3.6), rel=1e-6)  # 780 s
    assert ranked.score == pytest.approx(ranked.eta_s)


def test_each_place_below_first_in_the_list_costs_three_minutes() -> None:
    units = [team("patrol", "police", role="patrol", metres=1200),
             team("security", "security", metres=1200),
             team("station", "police", role="station", metres=1200)]
    ranked = rank_candidates(units, incident("dispute"), POLICY, NOW)
    assert [r.unit.team_id for r in ranked] == ["patrol", "security", "station"]
    eta = ranked[0].eta_s
    assert [r.score for r in ranked] == pytest.approx([eta, eta + 180, eta + 360])


def test_lower_listed_kind_wins_only_when_more_than_three_minutes_nearer() -> None:
    facts = incident("dispute")
    patrol = team("patrol", "police", role="patrol", metres=3000)  # 468 s by car
    near_security = team("security", "security", metres=1000)  # 156 s + 180 s
    far_security = team("security", "security", metres=2500)  # 390 s + 180 s
    assert dispatched([patrol, near_security], facts) == ["security"]
    assert dispatched([patrol, far_security], facts) == ["patrol"]


def test_faster_mode_beats_a_nearer_slower_team() -> None:
    units = [team("on-foot", "police", mode="foot", metres=500),  # 468 s
             team("by-car", "police", mode="car", metres=2000)]  # 312 s
    assert ranked_ids(units, incident("suspicious")) == ["by-car", "on-foot"]


def test_every_mode_ranks_at_its_own_speed() -> None:
    # Each mode placed at speed x 100 m: the same ETA (468 s) for all of them.
    units = [team(mode, "police", mode=mode, metres=kmh * 100) for mode, kmh in SPEEDS_KMH.items()]
    scores = {r.unit.team_id: r.score
              for r in rank_candidates(units, incident("suspicious"), POLICY, NOW)}
    assert scores == {mode: pytest.approx(100 * 1.3 * 3.6) for mode in SPEEDS_KMH}


def test_home_zone_breaks_an_exact_tie() -> None:
    # Without the zone the team id decides, and "a-elsewhere" sorts first.
    units = [team("z-home", "police", home_zone="Z1"), team("a-elsewhere", "police")]
    assert ranked_ids(units, incident("suspicious", zone_id="Z1")) == ["z-home", "a-elsewhere"]
    assert ranked_ids(units, incident("suspicious")) == ["a-elsewhere", "z-home"]


def test_home_zone_does_not_beat_a_better_score() -> None:
    units = [team("z-home", "police", home_zone="Z1", metres=1010),
             team("a-elsewhere", "police", metres=1000)]
    assert dispatched(units, incident("suspicious", zone_id="Z1")) == ["a-elsewhere"]


def test_home_zone_never_excludes_a_team_from_another_zone() -> None:
    units = [team("other-zone", "police", home_zone="Z2"), team("no-zone", "police", metres=5000)]
    assert ranked_ids(units, incident("suspicious", zone_id="Z1")) == ["other-zone", "no-zone"]


def test_fix_older_than_ten_minutes_does_not_count() -> None:
    units = [team("stale", "police", metres=100, fix_age_s=601),
             team("fresh", "police", metres=5000, fix_age_s=0)]
    assert ranked_ids(units, incident("suspicious")) == ["fresh"]


def test_fix_exactly_ten_minutes_old_still_counts() -> None:
    assert ranked_ids([team("edge", "police", fix_age_s=600)], incident("suspicious")) == ["edge"]


def test_team_without_a_position_is_not_a_candidate() -> None:
    units = [team("no-fix", "police", fix_age_s=None), team("nowhere", "police", metres=None)]
    assert ranked_ids(units, incident("suspicious")) == []


@pytest.mark.parametrize("status", ["busy", "off_duty"])
def test_team_that_is_not_available_is_not_a_candidate(status: str) -> None:
    units = [team("not-free", "police", metres=10, status=status), team("free", "police")]
    assert ranked_ids(units, incident("suspicious")) == ["free"]


def test_team_off_shift_is_not_a_candidate_even_when_marked_available() -> None:
    units = [team("off-shift", "police", metres=10, on_shift=False), team("on-shift", "police")]
    assert ranked_ids(units, incident("suspicious")) == ["on-shift"]


def test_teams_already_offered_the_incident_are_skipped() -> None:
    units = [team("declined", "police", metres=10), team("timed-out", "police", metres=20),
             team("next", "police", metres=3000)]
    facts = incident("suspicious", excluded=("declined", "timed-out"))
    assert dispatched(units, facts) == ["next"]


def test_nobody_is_sent_when_nobody_is_eligible() -> None:
    units = [team("sec", "security"), team("vol", "volunteer")]
    assert dispatched(units, incident("ebike_theft")) == []


# --- how many and which ---------------------------------------------------------------


@pytest.mark.parametrize(("category", "units"), CATEGORY_UNITS.items())
def test_category_without_flags_wants_its_listed_number_of_units(category: str,
                                                                 units: int) -> None:
    assert units_wanted(incident(category), POLICY) == units


@pytest.mark.parametrize("category", [c for c, n in CATEGORY_UNITS.items()
                                      if n == 1 and CATEGORY_PRIORITY[c] != "P1"])
def test_p1_by_flag_on_a_one_unit_category_gets_two_units(category: str) -> None:
    assert units_wanted(incident(category, flags=("in_progress",)), POLICY) == 2
    assert POLICY.units_for(category, "P1") == 2


def test_p1_category_of_one_unit_keeps_one_unit() -> None:
    assert units_wanted(incident("medical", flags=("injury",)), POLICY) == 1


def test_suspicious_with_weapon_sends_police_and_security() -> None:
    units = [team("pol-1", "police", metres=500), team("pol-2", "police", metres=600),
             team("sec", "security", metres=3000)]
    assert sorted(dispatched(units, incident("suspicious", flags=("weapon",)))) == ["pol-1", "sec"]


def test_one_unit_category_sends_the_best_ranked_team() -> None:
    units = [team("far", "police", metres=4000), team("near", "police", metres=900),
             team("sec", "security", metres=100)]  # 15.6 s + 180 s loses to 140.4 s
    assert dispatched(units, incident("suspicious")) == ["near"]


def test_two_units_are_the_best_of_each_of_the_first_two_kinds() -> None:
    units = [team("pol-1", "police", metres=500), team("pol-2", "police", metres=700),
             team("sec-far", "security", mode="foot", metres=2000),
             team("sec-near", "security", mode="foot", metres=1500)]
    assert dispatched(units, incident("violence")) == ["pol-1", "sec-near"]


def test_fire_joint_response_takes_security_and_police_whatever_is_nearer() -> None:
    units = [team("pol-1", "police", metres=100), team("pol-2", "police", metres=200),
             team("sec", "security", metres=6000)]
    assert sorted(dispatched(units, incident("fire"))) == ["pol-1", "sec"]


def test_two_units_fall_back_to_the_next_best_when_the_second_kind_has_nobody() -> None:
    units = [team("pol-1", "police", metres=500), team("pol-2", "police", metres=700),
             team("pol-3", "police", metres=900)]
    assert dispatched(units, incident("violence")) == ["pol-1", "pol-2"]


def test_two_units_fall_back_to_the_next_best_when_the_first_kind_has_nobody() -> None:
    units = [team("sec-1", "security", metres=500), team("sec-2", "security", metres=700),
             team("vol", "volunteer", metres=10)]
    assert dispatched(units, incident("violence")) == ["sec-1", "sec-2"]


def test_fallback_takes_any_allowed_kind_in_score_order() -> None:
    # fraud_warning: police:station, volunteer. No volunteer: the second station team goes.
    units = [team("st-1", "police", role="station", metres=500),
             team("st-2", "police", role="station", metres=900),
             team("patrol", "police", role="patrol", metres=10)]
    assert dispatched(units, incident("fraud_warning")) == ["st-1", "st-2"]


def test_joint_response_takes_the_police_role_listed_among_the_first_two_kinds() -> None:
    # dispute lists police:patrol, security, police:station; a flag makes it P1 (2 units).
    # The first two kinds are police:patrol and security, even when a station is nearer.
    facts = incident("dispute", flags=("in_progress",))
    units = [team("patrol", "police", role="patrol", metres=4000),  # 624 s
             team("station", "police", role="station", metres=500),  # 78 s + 360 s
             team("security", "security", metres=1000)]  # 156 s + 180 s
    assert sorted(dispatched(units, facts)) == ["patrol", "security"]


def test_refilling_a_joint_response_sends_the_kind_that_is_missing() -> None:
    # violence: police is live, the security team declined; another security team is free.
    facts = incident("violence", excluded=("sec-declined",))
    units = [team("pol-2", "police", metres=500),
             team("sec-2", "security", mode="foot", metres=1500)]
    assert dispatched(units, facts, already=["police"]) == ["sec-2"]


def test_refilling_sends_only_the_units_still_missing() -> None:
    units = [team("pol-2", "police", metres=500), team("pol-3", "police", metres=600)]
    facts = incident("violence")
    assert len(dispatched(units, facts, already=["security"])) == 1
    assert dispatched(units, facts, already=["police", "security"]) == []


def test_volunteer_is_never_the_only_responder_to_a_p1() -> None:
    units = [team("vol", "volunteer", mode="foot", metres=200, skills=("first_aid",)),
             team("pol", "police", metres=3000, skills=("first_aid",)),
             team("sec", "security", metres=5000, skills=("first_aid",))]
    assert dispatched(units, incident("medical")) == ["vol", "pol"]


def test_p1_escort_is_the_best_police_or_security_team() -> None:
    units = [team("vol", "volunteer", mode="foot", metres=200, skills=("first_aid",)),
             team("pol", "police", metres=3000, skills=("first_aid",)),
             team("sec", "security", metres=2000, skills=("first_aid",))]
    assert dispatched(units, incident("medical")) == ["vol", "sec"]


def test_p1_lost_person_sends_police_with_the_volunteers_whenever_police_is_free() -> None:
    # lost_person + injury: P1, two units: police and volunteer. With no police free the
    # two best volunteers go (nobody else may answer); a free police team always goes.
    facts = incident("lost_person", flags=("injury",))
    vols = [team("vol-1", "volunteer", metres=100), team("vol-2", "volunteer", metres=200)]
    assert dispatched(vols, facts) == ["vol-1", "vol-2"]
    assert "pol" in dispatched([*vols, team("pol", "police", metres=9000)], facts)


def test_p1_with_only_a_volunteer_live_gets_an_escort_when_refilled() -> None:
    units = [team("pol", "police", metres=3000, skills=("first_aid",))]
    assert dispatched(units, incident("medical"), already=["volunteer"]) == ["pol"]


def test_p1_volunteer_still_goes_when_no_police_or_security_is_available() -> None:
    units = [team("vol", "volunteer", metres=200, skills=("first_aid",))]
    assert dispatched(units, incident("medical")) == ["vol"]


def test_p1_escort_need_not_have_the_skill_the_category_asks_of_its_answer() -> None:
    # medical asks first aid of whoever answers; the escort only has to be police or security
    units = [team("vol", "volunteer", mode="foot", metres=200, skills=("first_aid",)),
             team("pol", "police", metres=300)]
    facts = incident("medical")
    assert ranked_ids(units, facts) == ["vol"]  # police without first aid does not answer
    assert dispatched(units, facts) == ["vol", "pol"]


def test_p1_escort_may_be_of_a_kind_the_category_does_not_list() -> None:
    # hazard_report lists volunteer, security; traffic lists police, volunteer
    hazard = [team("vol", "volunteer", metres=100), team("pol", "police", metres=3000)]
    assert dispatched(hazard, incident("hazard_report", flags=("injury",))) == ["vol", "pol"]
    traffic = [team("vol", "volunteer", metres=100), team("sec", "security", metres=3000)]
    assert dispatched(traffic, incident("traffic", flags=("injury",))) == ["vol", "sec"]


def test_p1_escort_joins_volunteers_already_on_the_incident_whatever_its_skills() -> None:
    units = [team("pol", "police", metres=3000)]
    assert dispatched(units, incident("medical"), already=["volunteer"]) == ["pol"]


def test_p1_escort_is_the_nearest_by_travel_time_whatever_the_category_asks() -> None:
    units = [team("vol", "volunteer", mode="foot", metres=200, skills=("first_aid",)),
             team("pol-aid", "police", metres=3000, skills=("first_aid",)),  # 468 s
             team("sec", "security", mode="bike", metres=1000)]  # 390 s
    assert dispatched(units, incident("medical")) == ["vol", "sec"]


def test_p1_escort_of_a_kind_the_category_lists_goes_before_one_it_does_not() -> None:
    # fraud_warning (injury: P1, two units) lists the zone's own station, then volunteers.
    # Another station's car may escort the volunteers (place 0 in the list); a patrol car
    # (not listed: after all of it, 2 x 3 min) only when over six minutes nearer.
    facts = dataclasses.replace(incident("fraud_warning", flags=("injury",)),
                                station_agency_id="ag-own-station")
    vols = [team("vol-1", "volunteer", metres=100), team("vol-2", "volunteer", metres=200)]
    other_station = team("other-station", "police", role="station", metres=3000)  # 468 s
    near_patrol = team("patrol", "police", role="patrol", metres=1000)  # 156 s + 360 s
    assert dispatched([*vols, other_station, near_patrol], facts) == [
        "vol-1", "vol-2", "other-station"]
    nearer_patrol = team("patrol", "police", role="patrol", metres=100)  # 15.6 s + 360 s
    assert dispatched([*vols, other_station, nearer_patrol], facts) == [
        "vol-1", "vol-2", "patrol"]


@pytest.mark.parametrize("unfit", [
    {"status": "busy"}, {"on_shift": False}, {"fix_age_s": 601}, {"fix_age_s": None},
    {"metres": None}])
def test_p1_escort_must_be_free_on_shift_and_placed(unfit: dict) -> None:
    units = [team("vol", "volunteer", metres=100, skills=("first_aid",)),
             team("pol", "police", **{"metres": 300, **unfit})]
    assert dispatched(units, incident("medical")) == ["vol"]
    assert not may_escort(units[1], incident("medical"), POLICY, NOW)


def test_p1_escort_is_never_a_team_already_offered_the_incident() -> None:
    units = [team("vol", "volunteer", metres=100, skills=("first_aid",)),
             team("declined", "police", metres=300), team("next", "security", metres=2000)]
    assert dispatched(units, incident("medical", excluded=("declined",))) == ["vol", "next"]


def test_only_a_p1_has_escorts_and_only_police_or_security_may_be_one() -> None:
    units = [team("vol", "volunteer", metres=100), team("pol", "police", metres=300),
             team("sec", "security", metres=400)]
    p1 = rank_candidates(units, incident("hazard_report", flags=("injury",)), POLICY, NOW)
    assert [r.unit.team_id for r in p1.escorts] == ["sec", "pol"]  # police: not listed
    assert [r.kind_rank for r in p1.escorts] == [1, 2]
    assert rank_candidates(units, incident("hazard_report"), POLICY, NOW).escorts == []
    assert not may_escort(units[0], incident("hazard_report", flags=("injury",)), POLICY, NOW)


def test_volunteer_answers_a_p3_alone() -> None:
    units = [team("vol", "volunteer", mode="foot", metres=100),  # 93.6 s + 180 s
             team("pol", "police", metres=3000)]  # 468 s
    assert dispatched(units, incident("traffic")) == ["vol"]


# --- backup (a team's call for reinforcement) -----------------------------------------


def backups(units: list, facts, *, volunteers_asking: bool) -> list[str]:
    # as the engine's _reinforce searches: police and security whatever the category lists
    ranking = rank_candidates(units, facts, POLICY, NOW, escorts=True)
    return [r.unit.team_id for r in backups_for(ranking, volunteers_asking=volunteers_asking)]


def test_a_volunteer_team_s_backup_may_be_security_on_a_category_that_lists_none() -> None:
    # lost_person lists police and volunteers
    units = [team("guard", "security", metres=500)]
    assert backups(units, incident("lost_person"), volunteers_asking=True) == ["guard"]
    # and a police team's: see test_a_police_team_s_backup_...
    assert backups(units, incident("lost_person"), volunteers_asking=False) == ["guard"]


def test_a_volunteer_team_s_backup_is_police_or_security_before_a_nearer_volunteer() -> None:
    units = [team("vol", "volunteer", metres=50), team("guard", "security", metres=3000),
             team("pol", "police", metres=4000)]
    # police (the category's first kind) 4 km away beats a guard 3 km away (not listed:
    # 6 min below first), and both go before the volunteers 50 m away
    assert backups(units, incident("lost_person"), volunteers_asking=True) == [
        "pol", "guard", "vol"]
    # a police team's call: the category's own first, then the guard it does not list
    assert backups(units, incident("lost_person"), volunteers_asking=False) == [
        "vol", "pol", "guard"]


def test_a_police_team_s_backup_may_be_police_or_security_the_category_does_not_list() -> None:
    # A fraud warning lists the zone's own station and volunteers: a station officer whose
    # warning visit turned violent called for backup and got nobody (flagged, looked for
    # again every 20 s) while a patrol car was 200 m away and a guard post at hand.
    units = [team("patrol", "police", role="patrol", metres=200),
             team("guard", "security", metres=300)]
    assert backups(units, incident("fraud_warning"), volunteers_asking=False) == [
        "patrol", "guard"]
    # the category's own teams still come first (another volunteer team, nearer)
    units.append(team("vol", "volunteer", metres=50))
    assert backups(units, incident("fraud_warning"), volunteers_asking=False) == [
        "vol", "patrol", "guard"]


def test_a_volunteer_team_s_backup_needs_no_skill_of_the_category() -> None:
    # the escort of a P1 medical call need not have first aid; a backup of volunteers neither
    units = [team("vol", "volunteer", metres=50, skills=("first_aid",)),
             team("pol", "police", metres=3000)]
    assert backups(units, incident("medical"), volunteers_asking=True) == ["pol", "vol"]


def test_a_volunteer_team_s_backup_is_another_volunteer_team_only_with_nobody_else_free() -> None:
    units = [team("vol", "volunteer", metres=50),
             team("guard", "security", metres=500, status="busy")]
    assert backups(units, incident("lost_person"), volunteers_asking=True) == ["vol"]


def test_a_team_moved_into_volunteers_asks_as_volunteers() -> None:
    assert asks_as_volunteers({"agency_kind": "volunteer"})
    assert not asks_as_volunteers({"agency_kind": "security"})
    assert asks_as_volunteers({"agency_kind": "police", "agency_role": "patrol",
                               "moved_to_volunteers": "1"})


def backup(kind: str, state: str = "offered", **marks: str) -> dict[str, str]:
    return {"order_id": f"ord-{kind}-{state}", "for_order": "ord-asking", "kind": "reinforcement",
            "agency_kind": kind, "state": state, **marks}


ASKING = {"order_id": "ord-asking", "agency_kind": "volunteer", "state": "on_scene"}


def test_a_volunteer_team_s_call_answered_by_volunteers_only_is_still_open() -> None:
    assert backed_up_by_volunteers_only(ASKING, [ASKING, backup("volunteer")])
    # a guard sent too, or instead: answered
    assert not backed_up_by_volunteers_only(
        ASKING, [ASKING, backup("volunteer"), backup("security", "acknowledged")])
    assert not backed_up_by_volunteers_only(ASKING, [ASKING, backup("police")])
    # the guard declined, or left: volunteers only again
    assert backed_up_by_volunteers_only(
        ASKING, [ASKING, backup("volunteer"), backup("security", "declined")])
    # an escort since moved into a volunteer agency counts as volunteers
    assert backed_up_by_volunteers_only(
        ASKING, [ASKING, backup("volunteer"), backup("security", moved_to_volunteers="1")])


def test_a_call_with_no_live_backup_or_not_a_volunteer_team_s_is_not_volunteers_only() -> None:
    # nobody sent (the `backup_wanted` flag says that), or the backup gone
    assert not backed_up_by_volunteers_only(ASKING, [ASKING])
    assert not backed_up_by_volunteers_only(ASKING, [ASKING, backup("volunteer", "resolved")])
    # another order's backup
    other = {**backup("volunteer"), "for_order": "ord-other"}
    assert not backed_up_by_volunteers_only(ASKING, [ASKING, other])
    # a guard's call answered by volunteers (the category's): a guard is there
    guard = {**ASKING, "agency_kind": "security"}
    assert not backed_up_by_volunteers_only(guard, [guard, backup("volunteer")])


# --- what volunteers on a P1 are told of their escort ----------------------------------


def test_volunteers_alone_on_a_p1_are_told_their_escort_is_awaited() -> None:
    assert escort_news("P1", "volunteer", ["volunteer", "volunteer"]) == "awaited"


@pytest.mark.parametrize("escort", ["security", "police:patrol", "police:station"])
def test_volunteers_on_a_p1_with_police_or_security_are_told_it_is_sent(escort: str) -> None:
    assert escort_news("P1", "volunteer", ["volunteer", escort]) == "sent"


@pytest.mark.parametrize(("priority", "team"), [
    ("P2", "volunteer"), ("P4", "volunteer"), ("P1", "security"), ("P1", "police:patrol")])
def test_no_escort_news_for_police_security_or_below_p1(priority: str, team: str) -> None:
    assert escort_news(priority, team, [team]) is None


@pytest.mark.parametrize("escort", ["security", "police:patrol", "police:station"])
def test_an_escort_on_a_p1_is_told_the_volunteer_teams_by_name_and_where_they_are(
        escort: str) -> None:
    live = [(escort, "pol", "offered"), ("volunteer", "riders", "offered"),
            ("volunteer", "aunties", "on_scene"), ("volunteer", "walkers", "acknowledged"),
            ("volunteer", "cyclists", "en_route")]
    assert escorting_news("P1", escort, live) == [
        ("aunties", "on_scene"), ("cyclists", "en_route"), ("riders", "sent"),
        ("walkers", "sent")]


@pytest.mark.parametrize(("priority", "team", "live"), [
    ("P2", "police", [("police", "pol", "offered"), ("volunteer", "aunties", "offered")]),
    ("P1", "volunteer", [("police", "pol", "offered"), ("volunteer", "aunties", "offered")]),
    ("P1", "security", [("security", "guard", "offered"), ("police", "pol", "on_scene")])])
def test_no_escorting_news_below_p1_for_volunteers_or_without_them(
        priority: str, team: str, live: list[tuple[str, str, str]]) -> None:
    assert escorting_news(priority, team, live) is None


# --- responses ------------------------------------------------------------------------

LIVE = ["offered", "acknowledged", "en_route", "on_scene"]
# Finished states, and the two an order has before it is ever offered to a device.
NOT_LIVE = ["resolved", "handover", "declined", "withdrawn", "timed_out", "lost", "claiming"]
ANSWERS = ["acknowledged", "declined", "en_route", "on_scene", "resolved", "handover",
           "reinforce"]
STEP = {state: i for i, state in enumerate(LIVE)}


@pytest.mark.parametrize("state", LIVE)
@pytest.mark.parametrize("response", ["acknowledged", "en_route", "on_scene"])
def test_responses_move_forward_only_and_may_skip_steps(state: str, response: str) -> None:
    allowed, why = response_allowed(state, response)
    if STEP[response] > STEP[state]:
        assert (allowed, why) == (True, "")
    else:
        assert not allowed
        assert "forward only" in why


@pytest.mark.parametrize("state", LIVE)
@pytest.mark.parametrize("response", ["resolved", "handover"])
def test_resolved_and_handover_are_accepted_from_every_live_state(state: str,
                                                                  response: str) -> None:
    assert response_allowed(state, response) == (True, "")


def test_declined_is_accepted_only_before_acknowledged() -> None:
    assert response_allowed("offered", "declined") == (True, "")
    for state in LIVE[1:]:
        allowed, why = response_allowed(state, "declined")
        assert not allowed
        assert "declined" in why


@pytest.mark.parametrize("state", LIVE)
def test_reinforce_is_accepted_while_the_order_is_live(state: str) -> None:
    assert response_allowed(state, "reinforce") == (True, "")


@pytest.mark.parametrize("state", NOT_LIVE)
@pytest.mark.parametrize("response", ANSWERS)
def test_no_response_is_accepted_once_the_order_is_finished(state: str, response: str) -> None:
    allowed, why = response_allowed(state, response)
    assert not allowed
    assert state in why


# --- deadlines ------------------------------------------------------------------------


@pytest.mark.parametrize(("priority", "seconds"), [("P1", 30), ("P2", 60), ("P3", 120),
                                                   ("P4", 300)])
def test_acknowledge_by_is_issue_time_plus_the_priority_deadline(priority: str,
                                                                  seconds: int) -> None:
    assert ack_deadline(NOW, priority, POLICY) == NOW + timedelta(seconds=seconds)


# --- incident status ------------------------------------------------------------------


@pytest.mark.parametrize(("states", "status"), [
    (["offered"], "assigned"),
    (["offered", "acknowledged"], "acknowledged"),
    (["acknowledged", "en_route", "offered"], "en_route"),
    (["on_scene", "offered"], "on_scene"),
    (["timed_out", "declined", "acknowledged"], "acknowledged"),
    (["resolved", "offered"], "assigned"),
])
def test_incident_has_the_status_of_its_most_advanced_live_order(states: list[str],
                                                                 status: str) -> None:
    assert incident_status(states, current="dispatching") == status


@pytest.mark.parametrize("current", ["resolved", "handed_over", "closed", "linked"])
def test_incident_in_a_final_status_keeps_it_without_live_orders(current: str) -> None:
    assert incident_status(["withdrawn", "resolved"], current=current) == current
    assert incident_status([], current=current) == current


def test_incident_whose_order_was_resolved_is_resolved() -> None:
    assert incident_status(["withdrawn", "resolved"], current="on_scene") == "resolved"


def test_incident_whose_order_was_handed_over_is_handed_over() -> None:
    assert incident_status(["withdrawn", "handover"], current="on_scene") == "handed_over"


def test_incident_without_live_orders_is_unassigned_or_still_dispatching() -> None:
    assert incident_status(["declined", "timed_out"], current="assigned") == "unassigned"
    assert incident_status([], current="dispatching") == "unassigned"
    assert incident_status([], current="reported") == "dispatching"


# --- percentile -----------------------------------------------------------------------


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 0.5) is None


def test_percentile_interpolates_between_sorted_values() -> None:
    values = [10.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 1.0) == 10.0
    assert percentile(values, 0.9) == pytest.approx(4.0 + 0.6 * 6.0)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([7.0], 0.95) == 7.0


def test_waiting_incidents_are_ordered_by_priority_then_by_arrival() -> None:
    now = 1_796_000_000.0  # 2026-12
    queue = sorted([("p4-early", waiting_score("P4", now)),
                    ("p1-late", waiting_score("P1", now + 3600)),
                    ("p1-early", waiting_score("P1", now + 60)),
                    ("p2", waiting_score("P2", now + 30))], key=lambda x: x[1])
    assert [name for name, _ in queue] == ["p1-early", "p1-late", "p2", "p4-early"]
    # a year of waiting does not carry an incident past a more urgent one
    assert waiting_score("P2", now) > waiting_score("P1", now + 365 * 86400)


@pytest.mark.parametrize(("category", "already", "short"), [
    ("violence", [], False),  # nobody yet: it waits as unassigned, not as short
    ("violence", ["police:patrol"], True),  # one of the two units it wants
    ("violence", ["police:patrol", "security"], False),
    ("noise", ["security"], False),
    ("medical", ["volunteer"], True),  # a P1: volunteers are never alone there
    ("medical", ["volunteer", "security"], False),
    ("hazard_report", ["volunteer"], False),  # a P4: volunteers alone are fine
])
def test_an_incident_is_short_of_units_until_it_has_what_it_wants(
        category: str, already: list[str], short: bool) -> None:
    assert short_of_units(incident(category), POLICY, already) is short


# --- a hand-over's filing (受立案): which order counts, and when it went overdue ------------

DUE = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def handover_order(order_id: str, state: str, *, due: datetime = DUE,
                   resolved_at: datetime | None = None) -> dict[str, str]:
    order = {"order_id": order_id, "kind": "handover", "state": state,
             "filing_due": due.isoformat()}
    if resolved_at is not None:
        order["resolved_at"] = resolved_at.isoformat()
    return order


def test_a_filing_is_judged_on_the_order_filed_not_on_one_declined_before() -> None:
    orders = [{"order_id": "o0", "kind": "dispatch", "state": "handover"},
              handover_order("o1", "declined", due=DUE - timedelta(minutes=5)),
              handover_order("o2", "resolved", resolved_at=DUE - timedelta(hours=3))]
    filing = filing_of(orders)
    assert filing is not None and filing.order_id == "o2"
    assert not filing.went_overdue(DUE + timedelta(days=3))
    assert not filing.overdue(DUE + timedelta(days=3))


def test_a_filing_made_after_its_due_went_overdue_and_is_owed_no_more() -> None:
    filing = filing_of([handover_order("o1", "resolved", resolved_at=DUE + timedelta(hours=2))])
    assert filing is not None and filing.went_overdue(DUE) and not filing.overdue(DUE)
    on_the_dot = filing_of([handover_order("o1", "resolved", resolved_at=DUE)])
    assert on_the_dot is not None and not on_the_dot.went_overdue(DUE + timedelta(days=1))


def test_a_live_hand_over_order_is_overdue_once_past_its_due() -> None:
    orders = [handover_order("o1", "timed_out", due=DUE - timedelta(hours=1)),
              handover_order("o2", "acknowledged")]
    filing = filing_of(orders)
    assert filing is not None and filing.order_id == "o2" and filing.owed
    assert not filing.overdue(DUE) and not filing.went_overdue(DUE)  # due, not past it
    later = DUE + timedelta(seconds=1)
    assert filing.overdue(later) and filing.went_overdue(later)


def test_a_close_before_the_due_owes_nothing_and_one_after_it_went_overdue() -> None:
    orders = [handover_order("o1", "withdrawn")]
    before = filing_of(orders, closed_at=DUE - timedelta(hours=20))
    assert before is not None and not before.went_overdue(DUE + timedelta(days=2))
    after = filing_of(orders, closed_at=DUE + timedelta(hours=1))
    assert after is not None and after.went_overdue(DUE + timedelta(days=2))
    assert not after.overdue(DUE + timedelta(days=2))  # nothing left to file
    # taken back and not closed: another of the station's orders carries the filing
    assert filing_of(orders) is None


def test_a_hand_over_no_station_team_has_is_still_owed_by_its_newest_order() -> None:
    # every team of the station declined (none on shift to hand it on to): still handed
    # over, the filing is owed by the due the station's orders carried
    declined = [handover_order("o1", "declined"), handover_order("o2", "declined")]
    owed = filing_of(declined, handed_over=True)
    assert owed is not None and owed.order_id == "o2" and owed.owed
    assert not owed.overdue(DUE) and owed.overdue(DUE + timedelta(seconds=1))
    assert owed.went_overdue(DUE + timedelta(seconds=1))
    # closed by the command room a day after that due: it went overdue, nothing is owed
    closed = filing_of(declined, closed_at=DUE + timedelta(days=1))
    assert closed is not None and closed.went_overdue(DUE + timedelta(days=2))
    assert not closed.overdue(DUE + timedelta(days=2))
    # a station order of another kind than a hand-over's is none of it
    assert filing_of([{"order_id": "o0", "kind": "dispatch", "state": "resolved"}]) is None


def test_a_hand_over_no_station_order_was_made_for_is_due_by_the_hand_over() -> None:
    # nobody of the station ever on shift: judged on the hand-over itself, due a day after
    handed = [{"order_id": "o0", "kind": "dispatch", "state": "handover"}]
    owed = filing_of(handed, handed_over=True, due=DUE)
    assert owed is not None and owed.order_id is None and owed.overdue(DUE + timedelta(hours=6))
    closed = filing_of(handed, closed_at=DUE + timedelta(hours=6), due=DUE)
    assert closed is not None and closed.went_overdue(DUE + timedelta(days=2))
    assert not closed.overdue(DUE + timedelta(days=2))
    in_time = filing_of(handed, closed_at=DUE - timedelta(hours=6), due=DUE)
    assert in_time is not None and not in_time.went_overdue(DUE + timedelta(days=2))
    # a hand-over of an earlier version, which kept no due of its own: nothing to judge
    assert filing_of(handed, handed_over=True) is None
    # named by the incident on the inspector's list and in the KPIs
    inc = {"incident_id": "inc1", "status": "handed_over", "handed_over_at": DUE.isoformat(),
           "filing_due": DUE.isoformat()}
    later = DUE + timedelta(hours=6)
    assert records.unfiled_filings(inc, handed, later) == ["inc1"]
    assert records.overdue_filings(inc, handed, later) == ["inc1"]


def test_an_archived_hand_over_reads_its_filing_as_stored() -> None:
    archived = {"handed_over_at": DUE.isoformat(), "archived_at": DUE.isoformat(),
                "filings_overdue": '["o1"]'}
    later = DUE + timedelta(days=100)
    assert records.overdue_filings(archived, [], later) == ["o1"]
    assert records.unfiled_filings(archived, [], later) == []  # no live order once archived
    live = {"handed_over_at": DUE.isoformat()}
    assert records.overdue_filings(live, [handover_order("o2", "on_scene")], later) == ["o2"]
    assert records.unfiled_filings(live, [handover_order("o2", "on_scene")], later) == ["o2"]
    closed = {**live, "closed_at": (DUE - timedelta(hours=1)).isoformat()}
    assert records.overdue_filings(closed, [handover_order("o2", "withdrawn")], later) == []
