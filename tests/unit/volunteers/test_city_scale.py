"""A city's roster import cut into steps: each small, together the whole plan once, in order
(rows before the teams' states, references before the rows naming them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.volunteers.domain.roster import parse_document, plan_import
from services.volunteers.store.imports import (
    STEP_COMMANDS,
    STEP_ITEMS,
    TeamChange,
    in_steps,
    journal_steps,
)


def city(members: int = 11_000, teams: int = 3_000) -> dict[str, Any]:
    square = [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1], [108.0, 22.1]]
    return {
        "district": "city",
        "agencies": [{"id": "ps", "name": "Station", "kind": "police"},
                     {"id": "v", "name": "Volunteers", "kind": "volunteer"}],
        "zones": [{"id": "z", "name": "Territory", "owner_agency_id": "ps", "polygon": square}],
        "teams": [{"id": f"t{i:05d}", "agency_id": "v", "name": f"Team {i}", "mode": "foot",
                   "skills": [], "home_zone_id": "z"} for i in range(teams)],
        "members": [{"id": f"m{i:05d}", "name": f"Member {i}", "agency_id": "v",
                     "team_id": f"t{i % teams:05d}", "role": "volunteer"}
                    for i in range(members)],
    }


def test_steps_take_every_item_once_in_order_within_the_budget() -> None:
    costs = [5] * 1_000 + [60] + [7] * 10
    runs = in_steps(costs, budget=100, most=15)
    assert [i for run in runs for i in run] == list(range(len(costs)))
    for run in runs:
        assert len(run) <= 15 and sum(costs[i] for i in run) <= 100


def test_an_item_costing_more_than_a_step_is_a_step_of_its_own() -> None:
    assert in_steps([1, 500, 1], budget=100, most=10) == [range(0, 1), range(1, 2), range(2, 3)]
    assert in_steps([], budget=100, most=10) == []


def test_a_city_is_written_in_small_steps_rows_first_then_the_teams() -> None:
    doc = parse_document(city())
    plan = plan_import(doc, {})
    changes = [TeamChange(t, announce=True) for t in sorted(plan.teams_changed)]
    steps = journal_steps(plan, changes, now=datetime(2026, 12, 6, 9, tzinfo=UTC),
                          max_patrol_hours=14, ledger_ttl_s=60)
    kinds = [step["do"] for step in steps]
    assert kinds == ["rows"] * kinds.count("rows") + ["teams"] * kinds.count("teams")
    rows = [(entity, entity_id) for step in steps if step["do"] == "rows"
            for entity, entity_id, *_ in step["rows"]]
    assert rows == [(w.entity, w.id) for w in plan.writes]  # agencies, zones, teams, members
    teams = [team[0] for step in steps if step["do"] == "teams" for team in step["teams"]]
    assert teams == sorted(plan.teams_changed) and len(teams) == 3_000
    for step in steps:
        items = step["rows"] if step["do"] == "rows" else step["teams"]
        assert len(items) <= STEP_ITEMS
        assert len(items) * 3 <= STEP_COMMANDS  # a row or a team costs at least three
        assert json.loads(json.dumps(step)) == step  # as the journal keeps it
