"""DESIGN's dispatch rules (DESIGN.md, "Dispatch rules") where the code as built strayed from
them: the policy's defaults and checks, and the district a candidate must be of."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from services.dispatch.domain import may_answer, may_escort
from shared.policy import DEFAULT_POLICY, load_policy
from tests.unit.dispatch.support import NOW, POLICY, dispatched, incident, team

# --- only the command room's assign reaches outside the incident's district ---------------


def test_a_team_of_another_district_is_never_a_candidate() -> None:
    near = dataclasses.replace(team("near", "security", metres=200), district="elsewhere")
    far = team("far", "security", metres=4000)
    assert dispatched([near, far], incident("noise")) == ["far"]
    assert not may_answer(near, incident("noise"), POLICY, NOW)
    assert not may_escort(dataclasses.replace(team("p", "police", metres=200),
                                              district="elsewhere"),
                          incident("medical"), POLICY, NOW)


# --- a deployment's policy file ---------------------------------------------------------


def _deployment_file(tmp_path: Path, drop: tuple[str, ...] = (),
                     **change: object) -> Path:
    """The default policy as a deployment writes its own: some keys left to the defaults
    (`drop`), some changed."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    for key in drop:
        del data[key]
    data.update(change)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_flag_rules_left_to_the_defaults_are_designs(tmp_path: Path) -> None:
    # A deployment that changes its deadlines and says nothing of flags keeps DESIGN's:
    # weapon, injury and in_progress raise to P1, and weapon bars volunteers (never sent
    # into an armed incident); disputes still get their follow-up after 7 days.
    policy = load_policy(_deployment_file(
        tmp_path, drop=("raise_to_p1_flags", "bar_volunteers_flags", "followup_days"),
        deadlines_s={"P1": 20, "P2": 45, "P3": 90, "P4": 240}))
    assert policy.classify("hazard_report", ("weapon",)) == "P1"
    assert policy.classify("noise", ("injury",)) == "P1"
    assert policy.classify("traffic", ("in_progress",)) == "P1"
    assert policy.bar_volunteers_flags == ("weapon",)
    assert policy.followup_days == {"dispute": 7}
    # and what it does say is kept, an empty list too
    assert load_policy(_deployment_file(tmp_path, bar_volunteers_flags=[])
                       ).bar_volunteers_flags == ()


@pytest.mark.parametrize("deadlines", [
    # (a priority left out keeps DESIGN's: tests/integration/dispatch/test_review_today.py)
    {"P1": 0, "P2": 60, "P3": 120, "P4": 300},
    {"P1": 30, "P2": -60},
])
def test_a_policy_without_a_usable_deadline_for_every_priority_is_refused(
        tmp_path: Path, deadlines: dict[str, int]) -> None:
    with pytest.raises(ValidationError, match="deadlines_s"):
        load_policy(_deployment_file(tmp_path, deadlines_s=deadlines))


@pytest.mark.parametrize("speeds", [
    {"foot": 5, "bike": 12, "ebike": 18, "car": 0, "drone": 40},
    {"foot": 5, "bike": -12, "ebike": 18, "car": 30, "drone": 40},
])
def test_a_policy_with_a_speed_that_is_not_positive_is_refused(
        tmp_path: Path, speeds: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="speeds_kmh"):
        load_policy(_deployment_file(tmp_path, speeds_kmh=speeds))
