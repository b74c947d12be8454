"""Builds dispatch: settings, broker, Redis, engine, timers, HTTP app. Wires; decides nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from redis.asyncio import Redis

from shared import audit, dead_letters
from shared.bus import consumers_ready, consuming, create_broker, create_redis
from shared.http import (
    TELEMETRY,
    AnswerWithin,
    AuthMiddleware,
    RateLimits,
    ServiceApp,
    add_docs_page,
    add_health_routes,
    install_error_handlers,
)
from shared.metrics import add_metrics_route, observe_streams
from shared.policy import load_policy
from shared.runtime import stop_task
from shared.timezones import parse_timezone

from . import agency_page, api, console, handlers, records, store, waiting
from .config import Settings
from .engine import Dispatcher, observe_incidents
from .timers import run_timers
from .zones import ZoneProjection


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    policy = load_policy(settings.policy_file)
    redis = create_redis(settings)
    broker = create_broker(settings)
    http = httpx.AsyncClient()
    HTTPXClientInstrumentor.instrument_client(http)
    zones = ZoneProjection(http=http, volunteers_url=settings.volunteers_url,
                           key=settings.service_key(),
                           timeout_s=settings.zone_lookup_timeout_s,
                           refresh_s=settings.zones_refresh_s)
    engine = Dispatcher(redis=redis, broker=broker, policy=policy, settings=settings, zones=zones)
    # bytes: a dead letter's payload is a binary envelope (the board counts lost reports)
    letters = Redis.from_url(settings.redis_url, client_name="dispatch")
    handlers.register(broker, engine=engine, settings=settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with consuming(broker, redis, service="dispatch",
                             retention_s=settings.retention_days * 86400):
            stop = asyncio.Event()
            timers = asyncio.create_task(run_timers(engine, settings, stop))
            refreshing = asyncio.create_task(
                zones.keep_fresh(stop, on_changed=engine.on_zones_changed,
                                 districts=lambda: store.districts_with_claims(redis)),
                name="zones-refresh")
            sweeping = asyncio.create_task(records.keep_sweeping(
                redis, engine.locks, records_days=settings.records_days,
                kpi_days=settings.kpi_days, stop=stop), name="records-sweep")
            # A backstop: the waiting incidents no event offered a free team (0: none).
            backstop = (asyncio.create_task(waiting.keep_sweeping(
                engine, stop, every_s=settings.waiting_sweep_s), name="waiting-sweep")
                if settings.waiting_sweep_s else None)
            try:
                yield
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(timers, timeout=5)
                await stop_task(refreshing, grace_s=2)
                await stop_task(sweeping, grace_s=2)
                if backstop is not None:
                    await stop_task(backstop, grace_s=2)
                await engine.locks.close()
        await http.aclose()
        await letters.aclose()
        await redis.aclose()

    app = ServiceApp(
        title="Lianfang dispatch",
        description="The command room's API: the board, timelines, manual assignment, KPIs.",
        version="1.0",
        lifespan=lifespan,
        telemetry=TELEMETRY,
        docs_url=None, redoc_url=None,  # add_docs_page: no CDN
    )
    install_error_handlers(app)
    add_docs_page(app)
    add_metrics_route(app)
    observe_streams("dispatch", settings.redis_url)
    observe_incidents(settings.redis_url)
    app.include_router(dead_letters.build_router(redis_url=settings.redis_url, service="dispatch"))
    add_health_routes(app, lambda: consumers_ready(broker, redis))
    app.include_router(api.build_router(settings=settings, redis=redis, engine=engine,
                                        tz=parse_timezone(settings.timezone), letters=letters,
                                        http=http))
    app.include_router(audit.build_router(redis=redis, service="dispatch"))
    app.include_router(console.build_console_router())
    app.include_router(agency_page.build_agency_page_router())

    async def resolve(token: str):  # dispatcher tokens; the admin token is checked first
        return await api.resolve_dispatcher(redis, token)

    app.add_middleware(AuthMiddleware, admin_token=settings.admin_token.get_secret_value(),
                       rate_limits=RateLimits(settings.rate_limits()), public_paths=("/console", "/agency"),
                       failures=settings.auth_failures(),
                       max_body_bytes=settings.max_body_bytes, resolve=resolve)
    # Around the authentication too: a token is checked in Redis.
    app.add_middleware(AnswerWithin, timeout_s=settings.request_timeout_s)
    return app
