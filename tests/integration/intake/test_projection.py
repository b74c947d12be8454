"""Intake's view of dispatch's updates, on a real Redis: a read's updates handled at once
keep dispatch's order, and a closed incident leaves the open index."""

from __future__ import annotations

import json
from datetime import timedelta

from redis.asyncio import Redis

from services.intake import store
from shared import streams
from shared.events import Evidence, IncidentClosed, IncidentUpdated, TimelineEntry, utcnow
from shared.scripts import ScriptBatch
from tests.helpers import poll_until
from tests.integration.stream_probes import (
    ADMIN,
    DISTRICT,
    HERE,
    Service,
    envelope,
    intake_incident,
    running,
)


async def reported(svc: Service, n: int) -> list[str]:
    """n incidents a few kilometres apart: none is a duplicate of another."""
    r = await svc.client.post("/v1/systems", headers=ADMIN,
                              json={"name": "110", "districts": [DISTRICT]})
    assert r.status_code == 201, r.text
    key = {"Authorization": f"Bearer {r.json()['api_key']}"}
    ids = []
    for i in range(n):
        r = await svc.client.post("/v1/incidents", headers=key, json={
            "external_ref": f"ref-{i}", "category": "noise", "district": DISTRICT,
            "location": {"lat": HERE[0] + 0.03 * i, "lon": HERE[1]}})
        assert r.status_code == 202 and r.json().get("linked_to") is None, r.text
        ids.append(str(r.json()["incident_id"]))
    return ids


def update(incident_id: str, seq: int, status: str = "assigned") -> IncidentUpdated:
    return IncidentUpdated(district=DISTRICT, incident_id=incident_id, seq=seq, status=status,
                           priority="P4", entry=TimelineEntry(kind="note", detail=str(seq)))


async def test_updates_read_together_keep_their_order_and_apply_once(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        incidents = await reported(svc, 3)
        # 3 x 20 updates, interleaved, written in one round trip: reads of 16 at once
        events = [update(incident_id, seq) for seq in range(1, 21) for incident_id in incidents]
        async with svc.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(streams.INCIDENT_UPDATED.name,
                          {"__data__": await envelope(event.model_dump_json().encode())})
            await pipe.execute()
        await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "all updates read")
        for event in events[:5]:  # delivered again: nothing changes
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "repeats read")
        for incident_id in incidents:
            view = await intake_incident(svc, incident_id)
            assert view["status"] == "assigned"
            assert [e["detail"] for e in view["timeline"] if e["kind"] == "note"] == [
                str(seq) for seq in range(1, 21)]


async def test_an_update_handled_late_takes_its_place_in_the_timeline(clean_redis: str) -> None:
    # The consumer that read seq 1 died; seq 2 was handled by another, seq 1 reclaimed later.
    async with running("intake", clean_redis) as svc:
        [incident_id] = await reported(svc, 1)
        first, second = utcnow() - timedelta(seconds=30), utcnow() - timedelta(seconds=20)
        for seq, at in ((2, second), (1, first)):
            await svc.publish(streams.INCIDENT_UPDATED, IncidentUpdated(
                district=DISTRICT, incident_id=incident_id, seq=seq, status="assigned",
                priority="P4", entry=TimelineEntry(at=at, kind="note", detail=str(seq))))
            await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "read")
        view = await intake_incident(svc, incident_id)
        assert [e["detail"] for e in view["timeline"] if e["kind"] == "note"] == ["1", "2"]


async def test_a_closed_incident_leaves_the_open_index(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        kept, resolved, closed = await reported(svc, 3)
        index = f"intake:open:{DISTRICT}:noise"
        assert await svc.redis.zcard(index) == 3
        await svc.publish(streams.INCIDENT_UPDATED, update(resolved, 1, status="resolved"))
        await svc.publish(streams.INCIDENT_CLOSED, IncidentClosed(
            district=DISTRICT, incident_id=closed, final_status="closed"))

        async def only_kept() -> bool:
            return set(await svc.redis.zrange(index, 0, -1)) == {kept.encode()}

        await poll_until(only_kept, "two left the index")


async def test_a_linked_report_dispatch_sent_out_joins_the_open_index(clean_redis: str) -> None:
    # Linked to an incident dispatch knew had ended: dispatch sends it out as its own, and
    # the next report of the same event is linked to it, not made a third incident.
    async with running("intake", clean_redis) as svc:
        [first] = await reported(svc, 1)
        r = await svc.client.post("/v1/systems", headers=ADMIN,
                                  json={"name": "cameras", "districts": [DISTRICT]})
        key = {"Authorization": f"Bearer {r.json()['api_key']}"}
        near = {"category": "noise", "district": DISTRICT,
                "location": {"lat": HERE[0], "lon": HERE[1] + 0.0005}}
        r = await svc.client.post("/v1/incidents", headers=key,
                                  json={"external_ref": "cam-1", **near})
        assert r.json()["linked_to"] == first, r.text
        second = r.json()["incident_id"]
        await svc.publish(streams.INCIDENT_UPDATED, update(first, 3, status="resolved"))
        await svc.publish(streams.INCIDENT_UPDATED, update(second, 2, status="dispatching"))
        index = f"intake:open:{DISTRICT}:noise"

        async def only_second() -> bool:
            return set(await svc.redis.zrange(index, 0, -1)) == {second.encode()}

        await poll_until(only_second, "the report sent out in the open index")
        r = await svc.client.post("/v1/incidents", headers=key,
                                  json={"external_ref": "cam-2", **near})
        assert r.json()["linked_to"] == second, r.text
        await svc.publish(streams.INCIDENT_UPDATED, update(second, 4, status="resolved"))

        async def none_open() -> bool:
            return await svc.redis.zcard(index) == 0

        await poll_until(none_open, "it leaves once resolved")


async def test_updates_of_an_unknown_incident_change_nothing(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis)
    try:
        batch = ScriptBatch(redis)
        assert await store.apply_update(batch, update("inc_gone", 1, status="resolved")) is False
        await store.apply_closed(batch, IncidentClosed(district=DISTRICT, incident_id="inc_gone",
                                                       final_status="closed"))
        assert await redis.keys("*") == []
    finally:
        await redis.aclose()


async def test_the_reporting_system_never_sees_what_a_team_said(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        [incident_id] = await reported(svc, 1)
        said = "holding a suspect for the station"  # the command room's, not the caller's
        await svc.publish(streams.INCIDENT_UPDATED, IncidentUpdated(
            district=DISTRICT, incident_id=incident_id, seq=1, status="unassigned",
            priority="P4", entry=TimelineEntry(
                kind="response", detail="declined", note=said,
                evidence=(Evidence(kind="video", ref="bwc-the-arrest.mp4"),))))
        await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "update read")
        view = await intake_incident(svc, incident_id)
        [entry] = [e for e in view["timeline"] if e["kind"] == "response"]
        assert entry["detail"] == "declined" and "note" not in entry
        assert "evidence" not in entry
        assert said not in json.dumps(view) and "bwc-the-arrest" not in json.dumps(view)
