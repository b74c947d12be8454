"""A linked report's view once dispatch has judged the link itself: the incident intake named
had ended, so dispatch sent the report out as an incident of its own, or followed the ended
one on to the report sent out for the same event (its incident.updated carries the new
`linked_to`). Driven by dispatch's events through intake's consumers on a real Redis."""

from __future__ import annotations

from typing import Any

from shared import streams
from shared.events import Assignment, IncidentUpdated, TimelineEntry
from tests.integration.intake.test_linked_view import (
    NEAR,
    a_system,
    at,
    guard,
    guard_goes,
    read_all,
    report,
    view,
)
from tests.integration.stream_probes import DISTRICT, HERE, Service, running

CAMERA_SPOT = {"lat": HERE[0] + 0.0003, "lon": HERE[1]}  # 33 m away: the same event


def of(incident_id: str, seq: int, status: str, entry: TimelineEntry, *,
       linked_to: str | None, assignments: tuple[Assignment, ...] = ()) -> IncidentUpdated:
    """An incident.updated as dispatch writes it for a report intake had linked."""
    return IncidentUpdated(district=DISTRICT, incident_id=incident_id, seq=seq, status=status,
                           priority="P2", assignments=assignments, entry=entry,
                           linked_to=linked_to)


async def an_event_reported_three_times(svc: Service) -> tuple[dict[str, str], dict[str, str],
                                                                str, str, str]:
    """A 110 call, then a door alarm and a camera alert of the same event that intake links to
    it before it has read that the call's incident ended."""
    call_110 = await a_system(svc, "110")
    doors = await a_system(svc, "door access")
    cameras = await a_system(svc, "video analytics")
    parent = (await report(svc, call_110, "110-20261205-0042"))["incident_id"]
    door = await report(svc, doors, "door-17", NEAR)
    camera = await report(svc, cameras, "cam-88", CAMERA_SPOT)
    assert door["linked_to"] == camera["linked_to"] == parent
    return doors, cameras, parent, door["incident_id"], camera["incident_id"]


async def sent_out(svc: Service, parent: str, door: str) -> None:
    """Dispatch's word: the call's incident had ended; the door alarm goes out as its own."""
    await svc.publish(streams.INCIDENT_UPDATED, guard_goes(parent)[3])  # resolved
    await svc.publish(streams.INCIDENT_UPDATED, of(door, 1, "dispatching", TimelineEntry(
        at=at(10), kind="note", detail=f"reported as a duplicate of {parent}, which had ended "
        "(resolved): dispatched as an incident of its own"), linked_to=parent))
    await svc.publish(streams.INCIDENT_UPDATED, of(door, 2, "assigned", TimelineEntry(
        at=at(10.5), kind="offer", team_id="guard-9", order_id="ord-9"), linked_to=parent,
        assignments=(guard("offered", "ord-9", "guard-9"),)))


async def test_a_report_dispatch_followed_on_to_the_report_sent_out_follows_that_one(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, cameras, parent, door, camera = await an_event_reported_three_times(svc)
        await sent_out(svc, parent, door)
        # dispatch came to the camera's report after: the call's incident named the door
        # alarm as sent on (`sent_on_as`), so the camera alert joined that one instead
        await svc.publish(streams.INCIDENT_UPDATED, of(camera, 1, "linked", TimelineEntry(
            at=at(11), kind="linked", detail=f"duplicate report of {door}"), linked_to=door))
        await read_all(svc)

        mine = await view(svc, cameras, camera)
        assert (mine["status"], mine["linked_to"]) == ("linked", door), mine
        joined: dict[str, Any] = mine["linked_incident"]
        assert joined["incident_id"] == door
        # the guard on its way to the event, not the ended call's "resolved"
        assert (joined["status"], joined["ended_at"]) == ("assigned", None), joined
        assert [(t["team_id"], t["status"]) for t in joined["teams"]] == [("guard-9", "offered")]
        # its retry is answered with where it stands now
        r = await svc.client.post("/v1/incidents", headers=cameras, json={
            "external_ref": "cam-88", "category": "suspicious", "district": DISTRICT,
            "location": CAMERA_SPOT})
        assert r.status_code == 200 and r.json()["linked_to"] == door, r.text


async def test_a_late_older_update_never_takes_the_report_back_to_the_ended_incident(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, cameras, parent, door, camera = await an_event_reported_three_times(svc)
        await sent_out(svc, parent, door)
        # a command-room remark on the camera's report (seq 2) read before the link (seq 1)
        await svc.publish(streams.INCIDENT_UPDATED, of(camera, 2, "linked", TimelineEntry(
            at=at(12), kind="remark", detail="remark by admin:duty"), linked_to=door))
        await svc.publish(streams.INCIDENT_UPDATED, of(camera, 1, "linked", TimelineEntry(
            at=at(11), kind="linked", detail=f"duplicate report of {parent}"), linked_to=parent))
        await read_all(svc)
        mine = await view(svc, cameras, camera)
        assert mine["linked_to"] == door and mine["linked_incident"]["incident_id"] == door


async def test_a_report_sent_out_as_its_own_no_longer_reads_as_linked(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        doors, _, parent, door, _ = await an_event_reported_three_times(svc)
        await sent_out(svc, parent, door)
        await read_all(svc)

        mine = await view(svc, doors, door)
        assert mine["status"] == "assigned"
        # not "a duplicate of the call" (whose incident was over) with nobody sent: its own
        # team, and the timeline says why it went out on its own
        assert (mine["linked_to"], mine["linked_incident"]) == (None, None), mine
        assert [(t["team_id"], t["status"]) for t in mine["teams"]] == [("guard-9", "offered")]
        assert any(e["kind"] == "note" and parent in e["detail"] for e in mine["timeline"])
        r = await svc.client.post("/v1/incidents", headers=doors, json={
            "external_ref": "door-17", "category": "suspicious", "district": DISTRICT,
            "location": NEAR})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "assigned" and "linked_to" not in r.json(), r.text
