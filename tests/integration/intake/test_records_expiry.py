"""An ended incident's keys at intake expire RECORDS_DAYS after it ended (Redis keeps all in
memory and, full, refuses new incidents), on a real Redis with intake in-process."""

from __future__ import annotations

from typing import Any

from services.intake.api import REPORT_PATH
from shared import streams
from shared.events import IncidentClosed
from tests.helpers import poll_until
from tests.integration.intake.test_projection import update
from tests.integration.stream_probes import ADMIN, DISTRICT, HERE, Service, running

DAY_S = 86400
NEAR = {"lat": HERE[0], "lon": HERE[1] + 0.0005}  # 50 m away: a duplicate report


async def system_key(svc: Service) -> dict[str, str]:
    r = await svc.client.post("/v1/systems", headers=ADMIN,
                              json={"name": "110", "districts": [DISTRICT]})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


async def report(svc: Service, key: dict[str, str], ref: str,
                 location: dict[str, float] | None = None) -> dict[str, Any]:
    r = await svc.client.post(REPORT_PATH, headers=key, json={
        "external_ref": ref, "category": "noise", "district": DISTRICT,
        "location": location or {"lat": HERE[0], "lon": HERE[1]}})
    assert r.status_code in (200, 202), r.text
    return dict(r.json())


async def ttls(svc: Service, incident_id: str, ref: str) -> dict[str, int]:
    """Each of the incident's keys: its TTL in seconds (-1: kept, -2: absent)."""
    system_id = (await svc.redis.hget(f"intake:incident:{incident_id}", "system_id")).decode()
    names = {"incident": f"intake:incident:{incident_id}",
             "timeline": f"intake:timeline:{incident_id}",
             "seen": f"intake:seen:{incident_id}", "ref": f"intake:ref:{system_id}:{ref}"}
    return {what: await svc.redis.ttl(key) for what, key in names.items()}


def about(ttl_s: float) -> range:
    return range(int(ttl_s) - 60, int(ttl_s) + 1)


async def read_all(svc: Service) -> None:
    for stream in (streams.INCIDENT_UPDATED.name, streams.INCIDENT_CLOSED.name):
        await poll_until(lambda s=stream: svc.drained(s), f"{stream} read")


async def an_assigned_incident(svc: Service) -> str:
    """An incident reported as ref-1 and assigned, as intake's view has it."""
    key = await system_key(svc)
    incident_id = str((await report(svc, key, "ref-1"))["incident_id"])
    await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 1, status="assigned"))
    await read_all(svc)
    return incident_id


async def expire_in_two_days(svc: Service, incident_id: str) -> None:
    left = await ttls(svc, incident_id, "ref-1")
    assert all(ttl in about(2 * DAY_S) for ttl in left.values()), left


async def test_an_incident_is_kept_while_open_and_expires_records_days_after_it_ended(
        clean_redis: str) -> None:
    async with running("intake", clean_redis, records_days=2) as svc:
        incident_id = await an_assigned_incident(svc)
        kept = await ttls(svc, incident_id, "ref-1")
        assert (kept["incident"], kept["timeline"], kept["ref"]) == (-1, -1, -1)

        await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 2, status="resolved"))
        await read_all(svc)
        await expire_in_two_days(svc, incident_id)


async def test_the_closing_read_before_the_last_update_starts_the_clock_too(
        clean_redis: str) -> None:
    async with running("intake", clean_redis, records_days=2) as svc:
        incident_id = await an_assigned_incident(svc)
        await svc.publish(streams.INCIDENT_CLOSED, IncidentClosed(
            district=DISTRICT, incident_id=incident_id, final_status="closed"))
        await read_all(svc)
        await expire_in_two_days(svc, incident_id)


async def test_a_linked_report_expires_unless_dispatch_sends_it_out(clean_redis: str) -> None:
    async with running("intake", clean_redis, records_days=2, retention_days=3) as svc:
        key = await system_key(svc)
        first = (await report(svc, key, "ref-1"))["incident_id"]
        linked = await report(svc, key, "cam-1", NEAR)
        assert linked["linked_to"] == first
        # dispatch's word may never come: recorded, it expires after RECORDS_DAYS + RETENTION_DAYS
        recorded = await ttls(svc, linked["incident_id"], "cam-1")
        assert recorded["incident"] in about(5 * DAY_S) and recorded["ref"] in about(5 * DAY_S)

        await svc.publish(streams.INCIDENT_UPDATED,
                          update(linked["incident_id"], 1, status="linked"))
        await read_all(svc)
        assert all(ttl in about(2 * DAY_S) for ttl in
                   (await ttls(svc, linked["incident_id"], "cam-1")).values())

        # another, which dispatch sends out as its own (the first ended before dispatch came
        # to it): kept while it is open, and expires once it ends
        sent = await report(svc, key, "cam-2", NEAR)
        assert sent["linked_to"] == first
        await svc.publish(streams.INCIDENT_UPDATED, update(first, 1, status="resolved"))
        await svc.publish(streams.INCIDENT_UPDATED,
                          update(sent["incident_id"], 1, status="dispatching"))
        await read_all(svc)
        kept = await ttls(svc, sent["incident_id"], "cam-2")
        assert (kept["incident"], kept["timeline"], kept["ref"]) == (-1, -1, -1)
        await svc.publish(streams.INCIDENT_UPDATED,
                          update(sent["incident_id"], 2, status="handed_over"))
        await read_all(svc)
        assert all(ttl in about(2 * DAY_S) for ttl in
                   (await ttls(svc, sent["incident_id"], "cam-2")).values())


async def test_after_records_days_the_incident_is_gone_and_its_ref_makes_a_new_one(
        clean_redis: str) -> None:
    async with running("intake", clean_redis, records_days=1 / DAY_S) as svc:  # one second
        key = await system_key(svc)
        incident_id = (await report(svc, key, "ref-1"))["incident_id"]
        await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 1, status="resolved"))
        await read_all(svc)

        async def gone() -> bool:
            r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=key)
            return r.status_code == 404

        await poll_until(gone, "the ended incident's record expired")
        again = await report(svc, key, "ref-1")
        assert again["incident_id"] != incident_id


async def test_a_report_dispatch_never_took_up_expires_and_is_kept_once_dispatch_takes_it(
        clean_redis: str) -> None:
    # A report whose incident.reported dispatch dead-lettered, and nobody replayed (dead
    # letters are trimmed after RETENTION_DAYS): dispatch never says a word of it, so nothing
    # ended its record, its ref and its place in the open index: kept for ever.
    async with running("intake", clean_redis, records_days=2, retention_days=3) as svc:
        key = await system_key(svc)
        incident_id = (await report(svc, key, "ref-1"))["incident_id"]
        recorded = await ttls(svc, incident_id, "ref-1")
        assert recorded["incident"] in about(5 * DAY_S) and recorded["ref"] in about(5 * DAY_S)

        # dispatch's first word (a replay, or a late read): kept while it is open
        await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 1, status="dispatching"))
        await read_all(svc)
        kept = await ttls(svc, incident_id, "ref-1")
        assert (kept["incident"], kept["timeline"], kept["ref"]) == (-1, -1, -1)
        await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 2, status="resolved"))
        await read_all(svc)
        await expire_in_two_days(svc, incident_id)


async def test_the_duplicates_an_incident_holds_expire_with_it(clean_redis: str) -> None:
    # The reports linked to an incident, kept for its duplicate window (intake:joined:), go
    # with its record: unheard as it is, kept once dispatch takes it up, RECORDS_DAYS after
    # it ended.
    async with running("intake", clean_redis, records_days=2) as svc:
        key = await system_key(svc)
        incident_id = str((await report(svc, key, "ref-1"))["incident_id"])
        assert (await report(svc, key, "cam-1", NEAR))["linked_to"] == incident_id
        joined = f"intake:joined:{incident_id}"
        unheard = await svc.redis.ttl(f"intake:incident:{incident_id}")
        assert unheard > 0 and await svc.redis.ttl(joined) in range(unheard - 1, unheard + 1)
        await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 1, status="assigned"))
        await read_all(svc)
        assert await svc.redis.ttl(joined) == -1
        assert (await report(svc, key, "cam-2", NEAR))["linked_to"] == incident_id
        assert await svc.redis.zcard(joined) == 2 and await svc.redis.ttl(joined) == -1
        await svc.publish(streams.INCIDENT_UPDATED, update(incident_id, 2, status="resolved"))
        await read_all(svc)
        assert await svc.redis.ttl(joined) in about(2 * DAY_S)
