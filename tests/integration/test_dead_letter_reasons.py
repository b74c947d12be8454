"""What a dead letter says about an unreadable event, on a real Redis: the field that is
wrong, never what the sender put in it (its reason is also the log line, the span's event,
and what `GET /v1/admin/dead-letters` shows)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from shared import streams
from shared.bus import consume, consuming, create_broker
from shared.events import IncidentReported
from shared.settings import ServiceSettings
from tests.helpers import poll_until
from tests.integration.stream_probes import envelope

PHONE, NAME, ADDRESS = "13800138000", "Wang Xiaoming", "No. 12 Minzu Avenue, flat 3"


def report(incident_id: str, **changes: Any) -> dict[str, Any]:
    body = IncidentReported(
        district="d", incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="dispute", priority="P2", location={"lat": 22.8, "lon": 108.3},
        reported_at=datetime.now(UTC)).model_dump(mode="json")
    return body | changes


# Each unreadable report, with the field its dead letter must name.
UNREADABLE = {
    "a caller's number sent as a key": (
        report("i-key", caller={PHONE: NAME}), "caller"),
    "an address sent as a key of the location": (
        report("i-loc", location={"lat": 22.8, "lon": 108.3, ADDRESS: PHONE}), "location"),
    # a producer of another release (events change only by adding fields: a new version
    # is a change this one cannot read), or no version at all: never acted on as this one
    "a schema version this release does not read": (
        report("i-v2", schema_version=2), "schema_version"),
    "a schema version that is no version": (
        report("i-v0", schema_version=0), "schema_version"),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
async def test_an_unreadable_event_is_dead_lettered_naming_the_field_never_the_sender_s_data(
        clean_redis: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    body, field = UNREADABLE[kind]
    handled: list[str] = []

    async def on_incident_reported(event: IncidentReported) -> None:
        handled.append(event.incident_id)

    cfg = ServiceSettings(redis_url=clean_redis, admin_token="test-admin-token", claim_idle_ms=200,
                          max_deliveries=3, consumer_name="test-consumer")
    broker = create_broker(cfg)
    consume(broker, streams.INCIDENT_REPORTED, IncidentReported, on_incident_reported,
            settings=cfg, group="dispatch")
    redis, client = Redis.from_url(clean_redis), sync_redis.Redis.from_url(clean_redis)
    caplog.set_level(logging.INFO)
    try:
        async with consuming(broker, redis):
            await redis.xadd(streams.INCIDENT_REPORTED.name,
                             {"__data__": await envelope(json.dumps(body).encode())})
            await redis.xadd(streams.INCIDENT_REPORTED.name, {"__data__": await envelope(
                json.dumps(report("i-next")).encode())})
            await poll_until(lambda: handled == ["i-next"], "the next report handled")
            ((_, letter),) = await poll_until(
                lambda: client.xrange(streams.INCIDENT_REPORTED.dead_letters), "a dead letter")
    finally:
        await redis.aclose()
        client.close()
    reason = letter[b"reason"].decode()
    assert reason.startswith(f"invalid IncidentReported: {field}"), reason
    logged = caplog.text
    assert "dead-lettered incident.reported" in logged
    for said in (reason, logged):
        for personal in (PHONE, NAME, ADDRESS):
            assert personal not in said, f"{kind}: {personal!r} in {said!r}"
