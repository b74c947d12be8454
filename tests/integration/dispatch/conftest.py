"""Fixtures shared by dispatch's integration tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker

from services.dispatch.config import Settings
from services.dispatch.main import create_app


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(redis_url=url, admin_token="test-admin", claim_idle_ms=500,
                    volunteers_url="http://127.0.0.1:9", timer_interval_s=0.05, **overrides)


@pytest.fixture
async def dispatch(clean_redis: str) -> AsyncIterator[str]:
    """Dispatch in this process (its lifespan: groups, broker, subscribers, timers)."""
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        yield clean_redis



@contextlib.asynccontextmanager
async def dispatch_with_teams(url: str, publisher: RedisBroker, teams: dict[str, tuple[str, float]],
                              **settings: object) -> AsyncIterator[None]:
    """Dispatch in this process (its lifespan) with `teams` on shift and placed: each
    {team id: (agency kind, latitude)}, at the test scene's longitude."""
    from .test_engine import team, wait_for_units

    app = create_app(settings_for(url, **settings))
    async with app.router.lifespan_context(app):
        for team_id, (kind, lat) in teams.items():
            await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
        await wait_for_units(url, len(teams))
        yield

@pytest.fixture
async def publisher(clean_redis: str) -> AsyncIterator[RedisBroker]:
    """A broker that publishes to the test's Redis, as the other services would."""
    broker = RedisBroker(clean_redis)
    await broker.connect()
    yield broker
    await broker.stop()


@pytest.fixture
async def console(clean_redis: str) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch in this process, reached by its HTTP API (the command room's)."""
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: a failing step answers 500, as it does over a socket
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as client:
            yield client


def fail_a_write_once(monkeypatch: pytest.MonkeyPatch, holding: str = "") -> list[str]:
    """Make the first store.write_incident_step with `holding` in a word of its commands
    (any, if "") fail as if Redis went away, before anything is written; the list returned records it."""
    from services.dispatch import store

    write_for_real = store.write_incident_step
    failures: list[str] = []

    async def fails_once(redis: Any, commands: Any, **kwargs: Any) -> bool:
        if not failures and any(holding in str(word) for c in commands for word in c):
            failures.append("failed")
            raise ConnectionError("Redis went away")
        return await write_for_real(redis, commands, **kwargs)

    monkeypatch.setattr(store, "write_incident_step", fails_once)
    return failures
