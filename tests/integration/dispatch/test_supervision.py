"""What an inspector hunts on the board (DOMAIN.md, "Supervision"): incidents whose order
timed out unacknowledged, and hand-overs the station has not filed in time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch.main import create_app

from .conftest import settings_for
from .test_engine import offered_twice
from .test_handover import hand_over

ADMIN = {"Authorization": "Bearer test-admin"}


@asynccontextmanager
async def board(url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(url))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://dispatch") as client:
            yield client


async def problems(client: httpx.AsyncClient, problem: str) -> list[dict[str, object]]:
    r = await client.get(f"/v1/incidents?problem={problem}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["incidents"])


async def test_the_board_lists_the_incidents_whose_order_timed_out(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id, _ = await offered_twice(clean_redis, publisher, monkeypatch)
    async with board(clean_redis) as client:
        assert [i["incident_id"] for i in await problems(client, "routing_timeout")] == [
            incident_id]
        assert await problems(client, "filing_overdue") == []
        r = await client.get("/v1/incidents?problem=late", headers=ADMIN)
        assert r.status_code == 422 and "problem" in r.text


async def test_the_board_lists_a_hand_over_once_its_filing_is_overdue(
        clean_redis: str, publisher: RedisBroker) -> None:
    incident_id, orders = await hand_over(clean_redis, publisher)
    station_order = orders[1].order_id
    async with board(clean_redis) as client:
        assert await problems(client, "filing_overdue") == []  # due in 24 h
        # a day later, the station has not filed
        client_redis = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            client_redis.hset(f"dispatch:order:{station_order}", "filing_due",
                              (datetime.now(UTC) - timedelta(minutes=1)).isoformat())
        finally:
            client_redis.close()
        [overdue] = await problems(client, "filing_overdue")
        assert overdue["incident_id"] == incident_id
        assert overdue["filings_overdue"] == [station_order]
        assert await problems(client, "routing_timeout") == []
        kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
        assert kpis["filings_overdue"] == 1 and kpis["handed_over"] == 1


async def test_a_callers_reference_finds_its_incidents_whenever_they_were_reported(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    from shared import streams
    from shared.events import IncidentReported, utcnow
    from tests.helpers import poll_until

    from .test_engine import DISTRICT, SCENE

    ref = "110-20261005-0042"  # the 110 call-taker's number, two months on
    reports = [("inc-old", DISTRICT, ref, 60), ("inc-new", DISTRICT, ref, 0),
               ("inc-else", "xixiangtang", ref, 0), ("inc-other", DISTRICT, "110-x", 0)]
    for incident_id, district, external_ref, days_ago in reports:
        await publisher.publish(IncidentReported(
            district=district, incident_id=incident_id, system_id="sys-110",
            external_ref=external_ref, category="noise", priority="P4", location=SCENE,
            reported_at=utcnow() - timedelta(days=days_ago)), stream=streams.INCIDENT_REPORTED.name)

    async def found() -> list[dict] | None:
        r = await console.get("/v1/incidents", headers=ADMIN,
                              params={"district": DISTRICT, "ref": ref})
        assert r.status_code == 200, r.text
        return r.json()["incidents"] if r.json()["count"] == 2 else None

    rows = await poll_until(found, "both of the district's incidents of that reference")
    assert [(i["incident_id"], i["external_ref"], i["system_id"]) for i in rows] == [
        ("inc-new", ref, "sys-110"), ("inc-old", ref, "sys-110")]  # the newest first
    r = await console.get("/v1/incidents", headers=ADMIN, params={"ref": ref})
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"
