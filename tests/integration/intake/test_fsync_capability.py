"""Whether Redis can confirm an fsync (WAITAOF, Redis >= 7.2 with AOF on) is found again when
a WAITAOF is refused; in-process against a real Redis. This machine's Redis (7.0) has no
WAITAOF: it stands for a server replaced, under a running intake, by one without it (or
whose AOF was switched off), the first one having been found to have it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from shared import streams
from shared.events import IncidentReported
from tests.helpers import read_stream
from tests.integration.intake.conftest import system_key


def incident(ref: str, lat: float) -> dict[str, object]:
    return {"external_ref": ref, "category": "noise", "district": "d1",
            "location": {"lat": lat, "lon": 108.3}}


async def test_reports_are_answered_as_recorded_once_redis_no_longer_does_waitaof(
        intake, clean_redis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Intake found Redis 7.4 with AOF; Redis was then replaced by one without WAITAOF (here:
    # the real 7.0, which answers "unknown command"). Every report was recorded and
    # dispatched, yet answered 503 "not accepted; retry", and its retry 200: the 110 system
    # told its operator each call had failed.
    info = Redis.info
    first = {"server": {"redis_version": "7.4.11"}, "persistence": {"aof_enabled": 1}}

    async def found_at_start(self: Redis, section: str | None = None, *args: Any) -> Any:
        if section in first:
            return first.pop(section)
        return await info(self, section, *args)

    monkeypatch.setattr(Redis, "info", found_at_start)
    caplog.set_level(logging.WARNING, logger="services.intake.api")
    key = await system_key(intake, ["d1"])
    answers = [await intake.post("/v1/incidents", headers=key, json=incident(f"c{n}", 22 + n))
               for n in range(3)]
    assert [r.status_code for r in answers] == [202, 202, 202], [r.text for r in answers]
    events = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert [e.incident_id for e in events] == [r.json()["incident_id"] for r in answers]
    sync = redis.Redis.from_url(clean_redis, decode_responses=True)
    for r in answers:
        assert sync.hget(f"intake:incident:{r.json()['incident_id']}", "published") == "1"
    sync.close()
    # found again at the refusal: the later reports did not ask a server that cannot
    assert first == {}
    assert len([r for r in caplog.records if "refused WAITAOF" in r.getMessage()]) == 1
