"""A report whose first attempt is recorded but not confirmed durable (WAITAOF timed out:
the incident is left unmarked, `published` 0, and that attempt answered 503) is confirmed,
with its own fsync wait, by whichever retry of the same ref finds it, before that retry
answers 200; its event stays the one recorded; in-process against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from services.intake import store
from shared import streams
from shared.events import IncidentReported
from tests.helpers import read_stream
from tests.integration.intake.conftest import system_key


def incident(ref: str, lat: float) -> dict[str, object]:
    return {"external_ref": ref, "category": "noise", "district": "d1",
            "location": {"lat": lat, "lon": 108.3}}


async def test_a_retry_that_meets_its_first_attempt_while_linking_confirms_it(
        intake, clean_redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # The 110 system's first POST of call 0042 timed out on its side; it sends it again
    # at once. The retry looks first and finds an open incident near; while it judges
    # that, the first attempt records the call, but its fsync is not confirmed (503 to a
    # client that has gone). The retry then finds the ref taken: its 200 promises the
    # incident is kept, so it must first confirm it (and wait for the fsync), as a retry
    # that finds the ref at its first look does.
    key = await system_key(intake, ["d1"])
    assert (await intake.post("/v1/incidents", headers=key,
                              json=incident("open", 22.8))).status_code == 202
    record = store.record_incident
    first: dict[str, Any] = {}
    call = incident("0042", 22.8009)  # 100 m from the open one: a retry sends it as it was

    async def first_attempt_lands_meanwhile(redis_: Any, **kw: Any) -> store.Recording:
        out = await record(redis_, **kw)
        if out.near and not first:
            first["started"] = True  # (the first attempt finds the open incident near too)
            r = await intake.post("/v1/incidents", headers=key, json=call)
            assert r.status_code == 202, r.text
            first["incident_id"] = r.json()["incident_id"]
            sync = redis.Redis.from_url(clean_redis)
            sync.hset(f"intake:incident:{first['incident_id']}", "published", "0")
            sync.close()
        return out

    monkeypatch.setattr(store, "record_incident", first_attempt_lands_meanwhile)
    retry = await intake.post("/v1/incidents", headers=key, json=call)
    assert retry.status_code == 200, retry.text
    assert retry.json()["incident_id"] == first["incident_id"]
    sync = redis.Redis.from_url(clean_redis, decode_responses=True)
    assert sync.hget(f"intake:incident:{first['incident_id']}", "published") == "1"
    sync.close()
    published = [e for e in read_stream(clean_redis, streams.INCIDENT_REPORTED.name,
                                        IncidentReported) if e.external_ref == "0042"]
    # the first attempt's entry, which the record's script wrote: nothing published again
    assert [e.incident_id for e in published] == [first["incident_id"]]


async def test_a_retry_with_another_body_confirms_the_recorded_event_not_its_own(
        intake, clean_redis) -> None:
    # The door-access gateway's first POST of alarm 7 (a noise complaint, 22.8 N) was recorded
    # and its incident.reported written, but the fsync was not confirmed (503). Its "retry"
    # carries another body (the gateway rebuilt it: a fire with a weapon, elsewhere). The
    # incident is what intake recorded: the retry confirms that event, dispatch never gets a
    # second, different event for the same incident id, and the gateway is told its fire was
    # not taken (409 naming the ref), not answered with the noise complaint's incident.
    key = await system_key(intake, ["d1"])
    first = await intake.post("/v1/incidents", headers=key, json={
        **incident("door-7", 22.8), "description": "loud music", "flags": ["night"]})
    assert first.status_code == 202, first.text
    incident_id = first.json()["incident_id"]
    sync = redis.Redis.from_url(clean_redis, decode_responses=True)
    sync.hset(f"intake:incident:{incident_id}", "published", "0")  # WAITAOF timed out
    [recorded] = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)

    retry = await intake.post("/v1/incidents", headers=key, json={
        **incident("door-7", 23.5), "category": "fire", "flags": ["weapon"],
        "description": "smoke", "caller": {"name": "Li"}})
    assert retry.status_code == 409, retry.text
    error = retry.json()["error"]
    assert error["field"] == "external_ref" and incident_id in error["message"], error
    assert "category" in error["message"], error
    assert sync.hget(f"intake:incident:{incident_id}", "published") == "1"
    sync.close()
    published = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert published and all(e == recorded for e in published), [
        (e.event_id, e.category, e.priority, e.flags) for e in published]
