"""Volunteers in-process against the real Redis fixture: the app with its lifespan (groups,
broker, subscribers), an httpx client on the ASGI app, and a FastStream publisher acting as
dispatch and notify."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

import httpx
import pytest
from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import BaseModel
from redis.asyncio import Redis

from services.volunteers.api.positions import FixesFirst
from services.volunteers.config import Settings
from services.volunteers.main import create_app

ADMIN_TOKEN = "admin-token-for-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
M = TypeVar("M", bound=BaseModel)

SQUARE = [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1], [108.0, 22.1]]
CELL = [[108.02, 22.02], [108.04, 22.02], [108.04, 22.04], [108.02, 22.04]]

# A small district: a police station owning the territory, a street police station, a
# security company and a volunteer patrol, one team each.
DISTRICT: dict[str, Any] = {
    "district": "d1",
    "agencies": [
        {"id": "p-station", "name": "Station One", "kind": "police"},
        {"id": "p-street", "name": "Street service station", "kind": "police",
         "role": "patrol"},
        {"id": "s-co", "name": "Guard company", "kind": "security"},
        {"id": "v-red", "name": "Red armbands", "kind": "volunteer"},
    ],
    "zones": [
        {"id": "z-territory", "name": "Station territory", "owner_agency_id": "p-station",
         "polygon": SQUARE},
        {"id": "z-cell", "name": "Grid cell 7", "owner_agency_id": "p-station",
         "polygon": CELL},
    ],
    "teams": [
        {"id": "t-patrol", "agency_id": "p-street", "name": "Patrol 1", "mode": "car",
         "skills": ["first_aid"], "home_zone_id": "z-territory"},
        {"id": "t-guards", "agency_id": "s-co", "name": "Post 3", "mode": "foot",
         "skills": [], "home_zone_id": "z-cell"},
        {"id": "t-vol", "agency_id": "v-red", "name": "Aunties", "mode": "ebike",
         "skills": ["first_aid"], "home_zone_id": "z-cell"},
    ],
    "members": [
        {"id": "m-officer", "name": "Officer Li", "agency_id": "p-street",
         "team_id": "t-patrol", "role": "officer", "phone": "+86 138 0000 0001"},
        {"id": "m-guard", "name": "Guard Zhao", "agency_id": "s-co", "team_id": "t-guards",
         "role": "guard"},
        {"id": "m-wang", "name": "Auntie Wang", "agency_id": "v-red", "team_id": "t-vol",
         "role": "volunteer", "phone": "+86 138 0000 0002"},
        {"id": "m-chen", "name": "Uncle Chen", "agency_id": "v-red", "team_id": "t-vol",
         "role": "volunteer"},
    ],
}


@dataclass
class Volunteers:
    client: httpx.AsyncClient
    redis: Redis  # raw bytes, as another service would read the streams
    settings: Settings
    app: FixesFirst | None = None

    async def import_district(self, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post("/v1/roster/import", json=doc or DISTRICT,
                                          headers=ADMIN)
        assert response.status_code == 200, response.text
        return response.json()

    async def enrol(self, member_id: str) -> dict[str, str]:
        response = await self.client.post(f"/v1/members/{member_id}/devices", headers=ADMIN)
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    async def events(self, stream: str, model: type[M]) -> list[M]:
        return await stream_events(self.redis, stream, model)

    async def consumed(self, stream: str, group: str = "volunteers") -> None:
        """Wait until the group has read and acknowledged everything in the stream."""

        async def done() -> bool:
            for g in await self.redis.xinfo_groups(stream):
                if g["name"] == group.encode():
                    return g["pending"] == 0 and g["lag"] == 0
            return False

        await poll_until(done, f"{group} consumed {stream}")


async def stream_events(redis: Redis, stream: str, model: type[M]) -> list[M]:
    out = []
    for _, fields in await redis.xrange(stream):
        body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
        out.append(model.model_validate_json(body))
    return out


async def poll_until(check: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting until {what}")


@asynccontextmanager
async def running(redis_url: str, **overrides: Any) -> AsyncIterator[Volunteers]:
    options: dict[str, Any] = {"position_publish_interval_ms": 0,
                               "consumer_name": f"test-{uuid4().hex[:8]}", **overrides}
    settings = Settings(redis_url=redis_url, admin_token=ADMIN_TOKEN, **options)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://volunteers") as client:
            redis = Redis.from_url(redis_url)
            try:
                yield Volunteers(client, redis, settings, app)
            finally:
                await redis.aclose()


@pytest.fixture
async def volunteers(clean_redis: str) -> AsyncIterator[Volunteers]:
    async with running(clean_redis) as service:
        yield service


