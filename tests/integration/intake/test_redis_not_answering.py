"""A Redis that stops answering without going away (its disk stalled under `appendfsync
always`, the process frozen): a report is answered 503 within REPORT_TIMEOUT_S, and /readyz
says "not ready" within its own bound, where both were held for as long as Redis stayed so;
once Redis answers again, the report's retry with the same ref finds the incident if the
first attempt was kept, and exactly one incident is made. In-process, against a real
redis-server of the test's own, stopped with SIGSTOP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from shared import streams
from shared.events import IncidentReported
from tests.helpers import freezable_redis, read_stream
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
