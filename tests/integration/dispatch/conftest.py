"""Fixtures shared by dispatch's integration tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.dispatch.config import Settings
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from services.dispatch.zones import ZoneProjection
from shared import dead_letters, streams
from shared.events import IncidentReported
from shared.policy import load_policy
from tests.helpers import poll_until
from tests.integration.conftest import volunteers_for
from tests.integration.stream_probes import UNREACHABLE
from tools.stack import Service, describe_exit


def settings_for(url: str, **overrides: object) -> Settings:
    options: dict[str, Any] = {"volunteers_url": UNREACHABLE, **overrides}
    return Settings(redis_url=url, admin_token="test-admin-token", claim_idle_ms=500,
                    timer_interval_s=0.05, **options)


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

# How long a dispatch process started by a test may take to answer /readyz: its imports and
# consumer groups, on a loaded 2-core CI machine, not a property of the product (one that
# exits is reported at once, with its log).
STARTUP_S = 120.0


async def processes_ready(services: Sequence[Service], what: str) -> None:
    """Wait until each process answers /readyz with 200; fail at once, naming how and with
    the end of its log, should one exit meanwhile."""
    async with httpx.AsyncClient(timeout=5) as http:
        async def ready() -> bool:
            for service in services:
                if service.proc is not None and service.proc.poll() is not None:
                    log = service.log_path.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{what}: {service.name} "
                                         f"{describe_exit(service.proc.returncode)}:\n{log}")
            try:
                codes = [(await http.get(f"{s.url}/readyz")).status_code for s in services]
            except httpx.HTTPError:
                return False
            return all(code == 200 for code in codes)

        await poll_until(ready, what, STARTUP_S, interval=0.2)


@contextlib.asynccontextmanager
async def console_of(url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch in this process (its lifespan) with `settings`, reached by its HTTP API (the
    command room's)."""
    app = create_app(settings_for(url, **settings))
    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: a failing step answers as it does over a socket
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as client:
            yield client


@pytest.fixture
async def console(clean_redis: str, request: pytest.FixtureRequest
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch in this process, reached by its HTTP API (the command room's). No volunteers
    (its zones unknown), unless the test's `roster` marker stands it in with the districts
    the test makes desk tokens for."""
    async with (volunteers_for(request) as volunteers_url,
                console_of(clean_redis, volunteers_url=volunteers_url) as client):
        yield client


async def bare_engine(stack: contextlib.AsyncExitStack, url: str) -> Dispatcher:
    """Dispatch's engine on `url`'s Redis, closed with `stack`: its steps called as its
    consumers, its timer loop and its HTTP routes call them (nothing runs on its own)."""
    client = Redis.from_url(url, decode_responses=True)
    stack.push_async_callback(client.aclose)
    broker = RedisBroker(url)
    await broker.connect()
    stack.push_async_callback(broker.stop)
    http = await stack.enter_async_context(httpx.AsyncClient())
    zones = ZoneProjection(http=http, volunteers_url="http://127.0.0.1:9", key="x",
                           timeout_s=0.2, refresh_s=10)
    engine = Dispatcher(redis=client, broker=broker, policy=load_policy(),
                        settings=settings_for(url), zones=zones)
    stack.push_async_callback(engine.locks.close)
    return engine


@pytest.fixture
async def two_replicas(clean_redis: str) -> AsyncIterator[tuple[Dispatcher, Dispatcher]]:
    """Two dispatch engines on one Redis, as two replicas are (no consumers running)."""
    async with contextlib.AsyncExitStack() as stack:
        yield (await bare_engine(stack, clean_redis), await bare_engine(stack, clean_redis))


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
              when: Callable[..., bool] = lambda *args, **kwargs: True) -> list[str]:
    """Make the first call of `owner.name` (a store function or a Dispatcher method) whose
    arguments satisfy `when` fail as if Redis went away, before it does anything; the list
    returned records the failure."""
    real = getattr(owner, name)
    failures: list[str] = []

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        if not failures and when(*args, **kwargs):
            failures.append("failed")
            raise RedisConnectionError("Redis went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, fails_once)
    return failures


def fail_a_write_once(monkeypatch: pytest.MonkeyPatch, holding: str = "") -> list[str]:
    """fail_once for the first store.write_incident_step with `holding` in a word of its
    commands (any, if "")."""
    from services.dispatch import store

    return fail_once(monkeypatch, store, "write_incident_step",
                     lambda _redis, commands, **_: any(holding in str(word)
                                                       for c in commands for word in c))


def fill_holding(order_state: str) -> Callable[..., bool]:
    """For fail_once on Dispatcher._fill: a call given a state with an order in
    `order_state`."""
    def when(_engine: Any, _incident_id: str, state: Any = None, **_: Any) -> bool:
        return state is not None and any(o["state"] == order_state for o in state.orders)

    return when


async def dead_lettered(url: str, broker: RedisBroker, event: IncidentReported,
                        monkeypatch: pytest.MonkeyPatch, *, failing: str = "first_step",
                        owner: object = None) -> Callable[[], Awaitable[str]]:
    """The report published, failing on a bug at each try until it is dead-lettered: in
    store.first_step (nothing of it written), or in the store function (or the method of
    `owner`, a Dispatcher) `failing` called for its incident, as `incident_id=` or as the
    first argument after the Redis client or the engine (store.add_waiting: the incident
    created, no team found and none sought); returns the operator's replay once the bug is
    fixed, which puts it back on the stream (the dead letters' POST .../replay)."""
    from services.dispatch import store

    owner = store if owner is None else owner
    broken = [True]
    real: Callable[..., Awaitable[Any]] = getattr(owner, failing)

    async def buggy(*args: Any, **kwargs: Any) -> Any:
        if broken[0] and event.incident_id in (kwargs.get("incident_id"), *args[1:2]):
            raise RuntimeError("a bug")
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, failing, buggy)
    await broker.publish(event, stream=streams.INCIDENT_REPORTED.name)
    client = aioredis.Redis.from_url(url)
    try:
        [(letter_id, _)] = await poll_until(
            lambda: client.xrange(streams.INCIDENT_REPORTED.dead_letters),
            "the report dead-lettered", 30)
    finally:
        await client.aclose()

    async def replay() -> str:
        broken[0] = False
        client = aioredis.Redis.from_url(url)
        try:
            return await dead_letters.replay(client, streams.INCIDENT_REPORTED.name,
                                             letter_id.decode())
        finally:
            await client.aclose()

    return replay
