"""A linked report's view of a joint response (DESIGN: two units, the nearest security post
and police): dispatch announces several orders, or a take-back's replacement, with one
`status` entry that names no order, so when each team was sent comes from the update that
first listed it. Driven by dispatch's events through intake's consumers on a real Redis."""

from __future__ import annotations

from datetime import datetime

from shared import streams
from shared.events import Assignment, IncidentUpdated, TimelineEntry
from tests.integration.intake.test_linked_view import (
    a_call_and_a_door_alarm,
    at,
    guard,
    read_all,
    updated,
    view,
    when,
)
from tests.integration.stream_probes import running


def police(status: str, order_id: str = "ord-2", team_id: str = "police-3") -> Assignment:
    return Assignment(order_id=order_id, team_id=team_id, team_name="Patrol car 3",
                      agency_kind="police", status=status, eta_s=240.0)


def joint_response(parent: str) -> list[IncidentUpdated]:
    """A fire: a guard post and a patrol car sent together; the guard acknowledges; the
    command room takes the car back and dispatch sends the next one; the guard resolves."""
    return [
        updated(parent, 1, "assigned", TimelineEntry(at=at(1), kind="status"),
                assignments=(guard("offered"), police("offered")), priority="P1"),
        updated(parent, 2, "acknowledged", TimelineEntry(
            at=at(2), kind="response", team_id="guard-7", order_id="ord-1",
            detail="acknowledged"), assignments=(guard("acknowledged"), police("offered")),
            priority="P1"),
        updated(parent, 3, "acknowledged", TimelineEntry(
            at=at(3), kind="withdrawn", team_id="police-3", order_id="ord-2",
            detail="taken back by admin:duty"),
            assignments=(guard("acknowledged"), police("withdrawn")), priority="P1"),
        updated(parent, 4, "acknowledged", TimelineEntry(at=at(3.2), kind="status"),
                assignments=(guard("acknowledged"), police("withdrawn"),
                             police("offered", "ord-5", "police-5")), priority="P1"),
        updated(parent, 5, "on_scene", TimelineEntry(
            at=at(7), kind="response", team_id="police-5", order_id="ord-5",
            detail="on_scene"), assignments=(guard("acknowledged"), police("withdrawn"),
                                             police("on_scene", "ord-5", "police-5")),
            priority="P1"),
    ]


def sent_at(teams: list[dict[str, object]]) -> dict[str, datetime | None]:
    return {str(t["team_id"]): when(t["assigned_at"]) for t in teams}  # type: ignore[arg-type]


async def test_each_team_of_a_joint_response_says_when_it_was_sent(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, doors, parent, child = await a_call_and_a_door_alarm(svc)
        for event in joint_response(parent):
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)
        joined = (await view(svc, doors, child))["linked_incident"]
        assert joined["status"] == "on_scene"
        assert [(t["team_id"], t["status"]) for t in joined["teams"]] == [
            ("guard-7", "acknowledged"), ("police-3", "withdrawn"), ("police-5", "on_scene")]
        assert sent_at(joined["teams"]) == {"guard-7": at(1), "police-3": at(1),
                                            "police-5": at(3.2)}


async def test_read_backwards_and_twice_the_teams_keep_the_newest_status_and_first_times(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, doors, parent, child = await a_call_and_a_door_alarm(svc)
        events = joint_response(parent)
        for event in [*reversed(events), *events]:
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)
        joined = (await view(svc, doors, child))["linked_incident"]
        # never the car taken back shown as coming, nor the one sent after it as offered
        assert [(t["team_id"], t["status"]) for t in joined["teams"]] == [
            ("guard-7", "acknowledged"), ("police-3", "withdrawn"), ("police-5", "on_scene")]
        assert sent_at(joined["teams"]) == {"guard-7": at(1), "police-3": at(1),
                                            "police-5": at(3.2)}
        [car] = [t for t in joined["teams"] if t["team_id"] == "police-5"]
        assert when(car["on_scene_at"]) == at(7) and when(car["acknowledged_at"]) == at(7)
