"""A Redis that stops answering without going away (its disk stalled under `appendfsync
always`, the process frozen): a report is answered 503 within REPORT_TIMEOUT_S, and /readyz
says "not ready" within its own bound, where both were held for as long as Redis stayed so;
once Redis answers again, the report's retry with the same ref finds the incident if the
first attempt was kept, and exactly one incident is made. The bound counts from the report's
arrival: its key's lookup (or its device token's check at volunteers) and its record share
it. In-process, against a real redis-server of the test's own, stopped with SIGSTOP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.intake import deadline
from shared import streams
from shared.events import IncidentReported
from shared.tokens import DEVICE_TOKEN_PREFIX
from tests.helpers import freezable_redis, poll_until, read_stream, serving
from tests.integration.stream_probes import ADMIN, DISTRICT, HERE, running


async def test_a_report_is_answered_while_redis_does_not_answer(tmp_path: Path) -> None:
    with freezable_redis(tmp_path / "redis") as server:
        async with running("intake", server.url, report_timeout_s=0.5) as svc:
            r = await svc.client.post("/v1/systems", headers=ADMIN,
                                      json={"name": "110", "districts": [DISTRICT]})
            assert r.status_code == 201, r.text
            key = {"Authorization": f"Bearer {r.json()['api_key']}"}
            report = {"external_ref": "110-0001", "category": "noise", "district": DISTRICT,
                      "location": {"lat": HERE[0], "lon": HERE[1]}}
            # the system's key in intake's memory, as after its first report (SystemKeys)
            warm = await svc.client.post("/v1/incidents", headers=key, json={
                **report, "external_ref": "110-0000", "location": {"lat": 22.9, "lon": 108.4}})
            assert warm.status_code == 202, warm.text

            server.freeze()
            r = await svc.client.post("/v1/incidents", headers=key, json=report)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] and "same external_ref" in r.text
            assert (await svc.client.get("/readyz")).status_code == 503

            server.thaw()
            for _ in range(50):  # redis-py's reconnects, then the retry's answer
                try:
                    r = await svc.client.post("/v1/incidents", headers=key, json=report)
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code in (200, 202):
                    break
                await asyncio.sleep(0.2)
            assert r is not None
            assert r.status_code in (200, 202), r.text
            incident_id = r.json()["incident_id"]
            again = await svc.client.post("/v1/incidents", headers=key, json=report)
            assert (again.status_code, again.json()["incident_id"]) == (200, incident_id)
            published = read_stream(server.url, streams.INCIDENT_REPORTED.name, IncidentReported)
            assert [e.incident_id for e in published
                    if e.external_ref == "110-0001"] == [incident_id]
            assert (await svc.client.get("/readyz")).status_code == 200


async def test_a_key_not_yet_known_is_answered_while_redis_does_not_answer(
        tmp_path: Path) -> None:
    """A system's key intake has not looked up since it started (a new key, or any key after
    intake's restart) is read from Redis before the report: that read is bounded as the
    report's is, answered 503 (ask again), not held for as long as Redis stays frozen
    (redis-py's read timeout, tried again: about 100 s)."""
    with freezable_redis(tmp_path / "redis") as server:
        async with running("intake", server.url, report_timeout_s=0.5) as svc:
            r = await svc.client.post("/v1/systems", headers=ADMIN,
                                      json={"name": "110", "districts": [DISTRICT]})
            assert r.status_code == 201, r.text
            key = {"Authorization": f"Bearer {r.json()['api_key']}"}
            report = {"external_ref": "110-0001", "category": "noise", "district": DISTRICT,
                      "location": {"lat": HERE[0], "lon": HERE[1]}}

            server.freeze()
            r = await asyncio.wait_for(
                svc.client.post("/v1/incidents", headers=key, json=report), timeout=4.5)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"]
            # the other routes read the key the same way
            r = await asyncio.wait_for(
                svc.client.get("/v1/incidents/inc_nope", headers=key), timeout=4.5)
            assert r.status_code == 503, r.text

            server.thaw()
            for _ in range(50):  # redis-py's reconnects, then the report taken
                try:
                    r = await svc.client.post("/v1/incidents", headers=key, json=report)
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code in (200, 202):
                    break
                await asyncio.sleep(0.2)
            assert r is not None
            assert r.status_code in (200, 202), r.text


class StillClock:
    """The report deadlines' clock (services.intake.deadline's `monotonic`): it stands still
    until the test moves it, and counts its reads."""

    def __init__(self) -> None:
        self.now, self.reads = 1000.0, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def test_a_key_looked_up_and_its_report_share_one_bound_from_the_report_s_arrival(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key not yet in intake's memory is read from Redis before the report, and the report
    then had REPORT_TIMEOUT_S of its own afresh: a 110 system could wait about twice the
    bound. Here the lookup takes the whole bound (by the deadlines' clock, moved while Redis
    is frozen under the lookup) and is answered just after it: the report is then answered
    503 at once, nothing written, not given the bound again."""
    clock = StillClock()
    monkeypatch.setattr(deadline, "monotonic", clock)
    with freezable_redis(tmp_path / "redis") as server:
        async with running("intake", server.url, report_timeout_s=60) as svc:
            r = await svc.client.post("/v1/systems", headers=ADMIN,
                                      json={"name": "110", "districts": [DISTRICT]})
            assert r.status_code == 201, r.text
            key = {"Authorization": f"Bearer {r.json()['api_key']}"}
            report = {"external_ref": "110-0001", "category": "noise", "district": DISTRICT,
                      "location": {"lat": HERE[0], "lon": HERE[1]}}

            server.freeze()
            clock.reads = 0
            sent = asyncio.create_task(svc.client.post("/v1/incidents", headers=key,
                                                       json=report))
            # its arrival, then its key's lookup, waiting on the frozen Redis
            await poll_until(lambda: clock.reads >= 2 or sent.done(), "the key's lookup")
            assert not sent.done()
            clock.now += 60.5
            server.thaw()
            r = await sent
            assert r.status_code == 503, r.text
            assert "no answer within 60 s" in r.text and "same external_ref" in r.text
            published = read_stream(server.url, streams.INCIDENT_REPORTED.name, IncidentReported)
            assert not [e for e in published if e.external_ref == "110-0001"]

            # the key is known now; asked again, the report has its bound, and is made
            r = await svc.client.post("/v1/incidents", headers=key, json=report)
            assert r.status_code == 202, r.text


async def test_a_report_refused_while_redis_does_not_answer_is_answered_within_its_bound(
        tmp_path: Path) -> None:
    """A report refused before its record (422: its category unknown, or a field FastAPI
    refuses) with a key taken from memory asks Redis whether the key was revoked since (401
    comes first): that question waited on a frozen Redis outside any bound (redis-py's read
    timeout, tried again: about 100 s). Asked within what is left of the report's bound, its
    answer not known, the refusal stands."""
    with freezable_redis(tmp_path / "redis") as server:
        async with running("intake", server.url, report_timeout_s=0.5) as svc:
            r = await svc.client.post("/v1/systems", headers=ADMIN,
                                      json={"name": "110", "districts": [DISTRICT]})
            assert r.status_code == 201, r.text
            key = {"Authorization": f"Bearer {r.json()['api_key']}"}
            report = {"external_ref": "110-0001", "category": "noise", "district": DISTRICT,
                      "location": {"lat": HERE[0], "lon": HERE[1]}}
            warm = await svc.client.post("/v1/incidents", headers=key, json=report)
            assert warm.status_code == 202, warm.text

            server.freeze()
            for wrong in ({"category": "no-such-category"},  # refused by the route
                          {"location": {"lat": 91, "lon": HERE[1]}}):  # by FastAPI
                r = await asyncio.wait_for(svc.client.post(
                    "/v1/incidents", headers=key, json={**report, **wrong}), timeout=30)
                assert r.status_code == 422, r.text


async def test_a_member_s_report_is_answered_within_its_bound_while_volunteers_is_slow(
        clean_redis: str) -> None:
    """A member's report asks volunteers about the device's token first (INTROSPECT_TIMEOUT_S,
    3 s by default), and the report had its own bound after: the token's check counts in the
    report's bound now. Volunteers here takes the call and does not answer."""
    asked, release = asyncio.Event(), asyncio.Event()
    volunteers = FastAPI()

    @volunteers.get("/v1/devices/introspect")
    async def introspect() -> JSONResponse:
        asked.set()
        await release.wait()
        return JSONResponse({"error": {"code": "unauthorized", "message": "no"}},
                            status_code=401)

    async with serving(volunteers) as volunteers_url, running(
            "intake", clean_redis, volunteers_url=volunteers_url, report_timeout_s=0.5,
            introspect_timeout_s=60) as svc:
        try:
            r = await asyncio.wait_for(svc.client.post(
                "/v1/incidents", headers={"Authorization": f"Bearer {DEVICE_TOKEN_PREFIX}x"},
                json={"external_ref": "street-1", "category": "hazard_report",
                      "district": DISTRICT, "location": {"lat": HERE[0], "lon": HERE[1]}}),
                timeout=30)
            assert asked.is_set()
            assert r.status_code == 503, r.text
            assert "device tokens cannot be checked" in r.text
        finally:
            release.set()
