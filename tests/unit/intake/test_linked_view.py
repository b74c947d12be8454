"""What a linked report is shown of the incident it joined (domain.linked_incident)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake.domain import ended_at_field, linked_incident, sent_teams

T0 = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def entry(minutes: float, kind: str, order_id: str | None = None, detail: str | None = None,
          **more: Any) -> dict[str, Any]:
    out = {"at": at(minutes).isoformat(), "kind": kind, "order_id": order_id, "detail": detail}
    return {**out, **more}


def record(status: str, *assignments: tuple[str, str, str], **more: str) -> dict[str, str]:
    return {"status": status, "priority": "P2", "system_id": "sys_110",
            "external_ref": "110-0042", "assignments": json.dumps([
                {"order_id": o, "team_id": t, "team_name": None, "agency_kind": "security",
                 "status": s, "eta_s": None} for o, t, s in assignments]), **more}


def test_a_refusal_is_not_taking_the_order_and_a_skipped_step_still_is() -> None:
    view = linked_incident(incident_id="inc_p", record=record(
        "on_scene", ("o1", "near", "declined"), ("o2", "next", "on_scene")), timeline=[
        entry(1, "offer", "o1"), entry(2, "response", "o1", "declined", note="busy"),
        entry(2.5, "offer", "o2"), entry(6, "response", "o2", "on_scene")])
    refused, went = view.teams
    assert refused.assigned_at == at(1) and refused.acknowledged_at is None
    assert went.assigned_at == at(2.5) and went.acknowledged_at == at(6) == went.on_scene_at
    assert view.ended_at is None


def test_a_call_for_backup_before_acknowledging_is_taking_the_order() -> None:
    # dispatch acknowledges the order with the call (the team took it and asks for help)
    view = linked_incident(incident_id="inc_p", record=record(
        "acknowledged", ("o1", "guard", "acknowledged")), timeline=[
        entry(1, "offer", "o1"), entry(2, "response", "o1", "reinforce", status="acknowledged")])
    (guard,) = view.teams
    assert (guard.assigned_at, guard.acknowledged_at) == (at(1), at(2))


def test_the_same_team_sent_twice_has_each_order_s_own_times() -> None:
    view = linked_incident(incident_id="inc_p", record=record(
        "acknowledged", ("o1", "guard", "timeout"), ("o3", "guard", "acknowledged")), timeline=[
        entry(1, "offer", "o1"), entry(3, "timeout", "o1"),
        entry(10, "manual_assign", "o3"), entry(11, "response", "o3", "acknowledged")])
    assert [(t.status, t.assigned_at, t.acknowledged_at) for t in view.teams] == [
        ("timeout", at(1), None), ("acknowledged", at(10), at(11))]


def test_ended_at_is_when_it_first_came_to_its_present_ended_status() -> None:
    ended = {ended_at_field("handed_over"): repr(at(8).timestamp()),
             ended_at_field("resolved"): repr(at(30).timestamp())}
    assert linked_incident(incident_id="inc_p", record=record("resolved", **ended),
                           timeline=[]).ended_at == at(30)
    assert linked_incident(incident_id="inc_p", record=record("handed_over", **ended),
                           timeline=[]).ended_at == at(8)


def test_only_dispatch_s_facts_are_taken_never_words() -> None:
    view = linked_incident(incident_id="inc_p", record=record("assigned", ("o1", "g", "offered"),
                                                              description="Wang Wei, knife"),
                           timeline=[entry(1, "offer", "o1", "dispatch order to g"),
                                     entry(2, "remark", detail="remark by admin", note="Wang")])
    text = view.model_dump_json()
    assert "Wang" not in text and "110-0042" not in text and "remark" not in text


def test_a_report_s_own_teams_have_the_same_times_with_their_orders_a_linked_one_has_neither(
) -> None:
    held = record("on_scene", ("o1", "guard", "on_scene"))
    later = json.loads(held["assignments"])
    later[0]["backup"] = True  # a field dispatch may add to its assignments one day
    held["assignments"] = json.dumps(later)
    timeline = [entry(1, "offer", "o1"), entry(3, "response", "o1", "on_scene", note="Wang")]
    (own,) = sent_teams(record=held, timeline=timeline)
    mine = own.model_dump()
    assert (mine["order_id"], mine["team_id"], mine["backup"]) == ("o1", "guard", True)
    assert (own.assigned_at, own.acknowledged_at, own.on_scene_at) == (at(1), at(3), at(3))
    assert "Wang" not in own.model_dump_json()
    (linked,) = linked_incident(incident_id="inc_p", record=held, timeline=timeline).teams
    assert linked.model_dump() == {k: v for k, v in mine.items()
                                   if k not in ("order_id", "backup")}
