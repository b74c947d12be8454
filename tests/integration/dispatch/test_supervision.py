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
