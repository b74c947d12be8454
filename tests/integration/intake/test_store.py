"""Intake's record script and publish round trip against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from services.intake import store
from shared import streams
from shared.bus import entry_to_write
from shared.events import IncidentReported, Location, new_id
from tests.helpers import read_stream

HERE = Location(lat=22.8, lon=108.3)
NEAR = Location(lat=22.8009, lon=108.3)  # 100 m north
AT = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def record(redis: Redis, ref: str, *, incident_id: str | None = None,
                 location: Location = HERE, look_m: float | None = 200.0,
                 linked_to: str | None = None) -> tuple[str, store.Recording]:
    incident_id = incident_id or new_id("inc")
    recording = await store.record_incident(
        redis, incident_id=incident_id, system_id="sys_1", external_ref=ref, category="noise",
        priority="P4", district="d1", location=location, reported_at=AT, linked_to=linked_to,
        trace_id=None, unless_near_m=look_m)
    return incident_id, recording


def reported(incident_id: str) -> IncidentReported:
    return IncidentReported(district="d1", incident_id=incident_id, system_id="sys_1",
                            external_ref="r1", category="noise", priority="P4", location=HERE,
                            reported_at=AT)


async def test_a_new_report_is_claimed_recorded_and_indexed_in_one_step(redis) -> None:
    incident_id, recording = await record(redis, "r1")
    assert recording == store.Recording()
    assert await redis.get("intake:ref:sys_1:r1") == incident_id
    data = await store.get_incident(redis, incident_id)
    assert data is not None and data["status"] == "reported" and data["published"] == "0"
    assert await redis.zscore("intake:open:d1:noise", incident_id) is not None


async def test_a_taken_ref_answers_with_its_incident_and_writes_nothing(redis) -> None:
    first, _ = await record(redis, "r1")
    second, recording = await record(redis, "r1", location=Location(lat=23.5, lon=109.0))
    assert recording.existing_id == first and recording.existing["incident_id"] == first
    assert await store.get_incident(redis, second) is None
    assert await redis.zcard("intake:open:d1:noise") == 1


async def test_a_retried_call_that_finds_its_own_record_counts_as_recorded(redis) -> None:
    incident_id, _ = await record(redis, "r1")
    _, again = await record(redis, "r1", incident_id=incident_id)
    assert again == store.Recording()


async def test_looking_first_an_open_incident_nearby_is_returned_and_nothing_written(
        redis) -> None:
    first, _ = await record(redis, "r1")
    second, recording = await record(redis, "r2", location=NEAR)
    assert [(c.incident_id, c.status, c.reported_at) for c in recording.near] == [
        (first, "reported", AT)]
    assert recording.near[0].location == HERE
    assert await redis.get("intake:ref:sys_1:r2") is None
    assert await store.get_incident(redis, second) is None

    _, recorded = await record(redis, "r2", incident_id=second, location=NEAR, look_m=None,
                               linked_to=first)
    assert recorded == store.Recording()
    data = await store.get_incident(redis, second)
    assert data is not None and data["status"] == "linked" and data["linked_to"] == first
    assert await redis.zscore("intake:open:d1:noise", second) is None  # never a candidate


async def test_index_entries_whose_record_is_gone_leave_the_index_on_the_way(redis) -> None:
    await redis.geoadd("intake:open:d1:noise", (HERE.lon, HERE.lat, "inc_gone"))
    incident_id, recording = await record(redis, "r1", location=NEAR)
    assert recording == store.Recording()
    assert await redis.zscore("intake:open:d1:noise", "inc_gone") is None
    assert await redis.zscore("intake:open:d1:noise", incident_id) is not None


async def _record_with_entry(redis: Redis, incident_id: str) -> store.Recording:
    async with entry_to_write(streams.INCIDENT_REPORTED, reported(incident_id),
                              incident_id) as entry:
        return await store.record_incident(
            redis, incident_id=incident_id, system_id="sys_1", external_ref="r1",
            category="noise", priority="P4", district="d1", location=HERE, reported_at=AT,
            linked_to=None, trace_id=None, unless_near_m=200.0, entry=entry)


async def test_a_report_with_its_entry_is_recorded_and_published_in_one_step(
        redis, clean_redis) -> None:
    incident_id = new_id("inc")
    assert await _record_with_entry(redis, incident_id) == store.Recording()
    data = await store.get_incident(redis, incident_id)
    assert data is not None and data["published"] == "1"
    (event,) = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert event.incident_id == incident_id
    # The same report again (a retry) finds it and publishes nothing more.
    again = await _record_with_entry(redis, new_id("inc"))
    assert again.existing_id == incident_id
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1


async def test_confirming_an_unconfirmed_report_marks_it_and_publishes_nothing_again(
        redis, clean_redis) -> None:
    incident_id = new_id("inc")
    assert await _record_with_entry(redis, incident_id) == store.Recording()
    await redis.hset(f"intake:incident:{incident_id}", "published", "0")  # fsync unconfirmed
    assert await store.confirm_reported(redis, incident_id=incident_id)
    data = await store.get_incident(redis, incident_id)
    assert data is not None and data["published"] == "1"
    (event,) = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert event.incident_id == incident_id


async def test_a_refused_entry_writes_nothing_so_the_retry_starts_afresh(
        redis, clean_redis) -> None:
    incident_id = new_id("inc")
    await redis.set(streams.INCIDENT_REPORTED.name, "not a stream")
    with pytest.raises(Exception, match="WRONGTYPE"):
        await _record_with_entry(redis, incident_id)
    assert await redis.get("intake:ref:sys_1:r1") is None
    assert await store.get_incident(redis, incident_id) is None
    await redis.delete(streams.INCIDENT_REPORTED.name)
    assert await _record_with_entry(redis, incident_id) == store.Recording()
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1


async def test_a_report_under_a_key_revoked_meanwhile_writes_nothing(redis, clean_redis) -> None:
    # Intake answers a report's key from memory; the record script is what refuses it once
    # the key is revoked, so that revocation still takes effect at once.
    system_id, api_key = await store.create_system(redis, name="door", districts=["d1"])

    async def report(ref: str) -> store.Recording:
        incident_id = new_id("inc")
        async with entry_to_write(streams.INCIDENT_REPORTED, reported(incident_id),
                                  incident_id) as entry:
            return await store.record_incident(
                redis, incident_id=incident_id, system_id=system_id, external_ref=ref,
                category="noise", priority="P4", district="d1", location=HERE, reported_at=AT,
                linked_to=None, trace_id=None, unless_near_m=200.0, entry=entry,
                key_hash=store.key_hash(api_key))

    assert await report("a") == store.Recording()
    assert await store.revoke_system(redis, system_id, kept_s=86_400) == "revoked"
    assert await report("b") == store.Recording(revoked=True)
    assert await redis.get(f"intake:ref:{system_id}:b") is None
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1
    # A key of another system is not this one's either.
    _, other_key = await store.create_system(redis, name="video", districts=["d1"])
    api_key = other_key
    assert await report("c") == store.Recording(revoked=True)
