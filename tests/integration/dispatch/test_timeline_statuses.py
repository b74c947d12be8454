"""DESIGN: an incident's full timeline names each status change, with time and team. The
team's answers moved the incident (acknowledged, on scene, resolved) but only the first
`assigned` was stamped on the timeline: the command room could not read when it changed."""

from __future__ import annotations

from shared import streams
from tests.helpers import poll_until
from tests.integration.stream_probes import (
    ADMIN,
    _is,
    assigned_in_dispatch,
    dispatch_status,
    order_responded,
    running,
)


async def test_the_timeline_names_each_status_the_incident_went_through(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await assigned_in_dispatch(svc, "tl")
        for answer in ("acknowledged", "on_scene", "resolved"):
            await svc.publish(streams.ORDER_RESPONDED,
                              order_responded(order_id, incident_id, team, answer))
            await poll_until(lambda a=answer: _is(dispatch_status(svc, incident_id), a), answer)
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        stamped = [(e["status"], e["team_id"]) for e in r.json()["timeline"] if e["status"]]
        assert [status for status, _ in stamped] == [
            "assigned", "acknowledged", "on_scene", "resolved"]
        assert {who for status, who in stamped if status != "assigned"} == {team}
        # an answer that changes nothing (a second on-scene report) names no status
        kinds = [e["kind"] for e in r.json()["timeline"] if e["status"] == "resolved"]
        assert len(kinds) == 1
