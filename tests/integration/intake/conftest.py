"""Intake in-process against a real Redis, with an admin token and the reporting systems'
keys made through its own API, for districts volunteers (stood in) holds: d1, or those of
the test's `roster` marker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.intake.config import Settings
from services.intake.main import create_app
from tests.integration.conftest import volunteers_for

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def intake(clean_redis: str, request: pytest.FixtureRequest
                 ) -> AsyncIterator[httpx.AsyncClient]:
    async with volunteers_for(request, "d1") as volunteers_url:
        app = create_app(Settings(redis_url=clean_redis, admin_token="test-admin-token",
                                  volunteers_url=volunteers_url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://intake") as client:
                yield client


async def system_key(client: httpx.AsyncClient, districts: list[str]) -> dict[str, str]:
    r = await client.post("/v1/systems", headers=ADMIN,
                          json={"name": "110", "districts": districts})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}
