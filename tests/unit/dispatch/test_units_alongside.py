"""The live orders that are an incident's units and those that only go with them (a backup,
a P1's escort that does not answer the category): only the first count as what it wants."""

from __future__ import annotations

import pytest

from services.dispatch.domain import choose_units, rank_candidates, short_of_units
from tests.unit.dispatch.support import NOW, POLICY, incident, team


def test_an_escort_left_alone_on_a_medical_p1_is_joined_by_a_first_aider() -> None:
    # The volunteers declined; their escort, a police car without first aid, is still on
    # its way: it is no unit of the call, so the nearest first-aider goes.
    facts = incident("medical", excluded=("aunties",))
    ranked = rank_candidates([team("guards", "security", metres=900, skills=("first_aid",))],
                             facts, POLICY, NOW)
    chosen = choose_units(ranked, facts, POLICY, wanted=1, alongside=["police"])
    assert [r.unit.team_id for r in chosen] == ["guards"]


def test_a_backup_is_no_unit_of_the_joint_response() -> None:
    # A fight's security unit declined while a police backup was on its way: the joint
    # response's security unit is sent again, and no escort for anyone.
    facts = incident("violence")
    ranked = rank_candidates([team("pol3", "police", metres=300),
                              team("sec2", "security", metres=2000)], facts, POLICY, NOW)
    chosen = choose_units(ranked, facts, POLICY, wanted=2, already=["police"],
                          alongside=["police"])
    assert [r.unit.team_id for r in chosen] == ["sec2"]


def test_volunteers_with_a_police_backup_need_no_escort() -> None:
    facts = incident("medical")
    ranked = rank_candidates([team("pol", "police", metres=300)], facts, POLICY, NOW)
    assert choose_units(ranked, facts, POLICY, wanted=1, already=["volunteer"],
                        alongside=["police"]) == []


@pytest.mark.parametrize(("category", "already", "alongside", "short"), [
    ("medical", [], ["police"], True),  # only the escort of volunteers who declined
    ("violence", ["police"], ["police"], True),  # a backup: still one unit of two
    ("violence", ["police", "security"], ["police"], False),
    ("medical", ["volunteer"], ["police"], False),  # escorted by a backup
])
def test_an_incident_is_short_of_units_it_wants_whoever_goes_with_them(
        category: str, already: list[str], alongside: list[str], short: bool) -> None:
    assert short_of_units(incident(category), POLICY, already, alongside) is short
