"""The duplicate window of an incident after the command room unlinks a report from it (on a
real Redis, intake in-process, dispatch's incident.updated published as dispatch would):
the window runs from the incident's own report to the latest report still linked to it, so
a report the command room judged another event no longer draws that event's next reports
to the wrong incident, whatever order dispatch's updates come in and however often."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared import streams
from shared.events import IncidentUpdated, TimelineEntry
from tests.helpers import poll_until
from tests.integration.stream_probes import ADMIN, DISTRICT, HERE, Service, running

NORTH_M = 1 / 111_195  # degrees of latitude to the metre


def north(metres: float) -> dict[str, float]:
    return {"lat": HERE[0] + metres * NORTH_M, "lon": HERE[1]}


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def a_system(svc: Service, name: str) -> dict[str, str]:
    r = await svc.client.post("/v1/systems", headers=ADMIN,
                              json={"name": name, "districts": [DISTRICT]})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


async def report(svc: Service, key: dict[str, str], ref: str, location: dict[str, float],
                 minutes_ago: float) -> dict[str, Any]:
    r = await svc.client.post("/v1/incidents", headers=key, json={
        "external_ref": ref, "category": "dispute", "district": DISTRICT,
        "location": location, "reported_at": ago(minutes_ago)})
    assert r.status_code == 202, r.text
    return dict(r.json())


def update(incident_id: str, seq: int, status: str, linked_to: str | None = None
           ) -> IncidentUpdated:
    kind = "unlinked" if status == "dispatching" else "status"
    return IncidentUpdated(district=DISTRICT, incident_id=incident_id, seq=seq, status=status,
                           priority="P3", linked_to=linked_to,
                           entry=TimelineEntry(kind=kind, status=status))


async def handled(svc: Service, *events: IncidentUpdated) -> None:
    for event in events:
        await svc.publish(streams.INCIDENT_UPDATED, event)
        await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "update read")


async def test_a_report_unlinked_no_longer_holds_the_incidents_window_open(
        clean_redis: str) -> None:
    # A fight at the square, called in 24 minutes ago. 16 minutes ago a camera saw a fight
    # 150 m north, at the next corner, and intake linked it (within 200 m and 10 minutes);
    # the command room saw it was another fight and unlinked it: an incident of its own.
    # A caller 8 minutes ago, between the two (60 m from the square, 90 m from the corner),
    # reports the corner's fight, 16 minutes after the square's only report: it joins the
    # corner's incident, where its team is, not the square's (nearer, but its window ended
    # 14 minutes ago, once the camera's report is not of it).
    async with running("intake", clean_redis) as svc:
        centre, cameras = await a_system(svc, "110"), await a_system(svc, "cameras")
        square = (await report(svc, centre, "110-1", north(0), 24))["incident_id"]
        camera = await report(svc, cameras, "cam-5:1", north(150), 16)
        assert camera["linked_to"] == square, camera
        corner = camera["incident_id"]
        linked = update(corner, 1, "linked", linked_to=square)
        unlinked = update(corner, 2, "dispatching")
        # the unlink read before dispatch's earlier word, then both delivered again, and the
        # corner's team sent (its update after the unlink)
        await handled(svc, unlinked, linked, unlinked, linked, update(corner, 3, "assigned"))

        caller = await report(svc, centre, "110-2", north(60), 8)
        assert (caller["status"], caller.get("linked_to")) == ("linked", corner), caller


async def test_the_reports_still_linked_keep_the_incidents_window(clean_redis: str) -> None:
    # The square's fight again, the corner's camera report unlinked; a second call about the
    # square's fight, 14 minutes ago, stays linked to it: the square's window runs to that
    # call, and a report at the square 7 minutes ago is of the square's fight still (the
    # corner's fight, 150 m off, is within 10 minutes of it too, but farther).
    async with running("intake", clean_redis) as svc:
        centre, cameras = await a_system(svc, "110"), await a_system(svc, "cameras")
        square = (await report(svc, centre, "110-1", north(0), 24))["incident_id"]
        corner = (await report(svc, cameras, "cam-5:1", north(150), 16))["incident_id"]
        again = await report(svc, centre, "110-2", north(10), 14)
        assert again["linked_to"] == square, again
        await handled(svc, update(corner, 1, "dispatching"), update(corner, 1, "dispatching"))

        latest = float(await svc.redis.hget(f"intake:incident:{square}", "latest_ts") or 0)
        assert latest == datetime.fromisoformat(
            (await svc.redis.hget(f"intake:incident:{again['incident_id']}",
                                  "reported_at") or b"").decode()).timestamp()
        later = await report(svc, centre, "110-3", north(0), 7)
        assert (later["status"], later.get("linked_to")) == ("linked", square), later
