"""Builds volunteers: settings, broker, Redis, HTTP app. Wires; decides nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared import audit, dead_letters
from shared.bus import consumers_ready, consuming, create_broker, create_redis
from shared.http import (
    TELEMETRY,
    AnswerWithin,
    AuthMiddleware,
    RateLimits,
    add_docs_page,
    add_health_routes,
    allow_browsers,
    browser_access,
    install_error_handlers,
)
from shared.metrics import add_metrics_route, observe_streams
from shared.runtime import stop_task

from . import api, handlers
from .api.devices import asked_for_a_caller, device_resolver
from .api.positions import FixesFirst, PositionFastPath
from .api.roster import refused_roster
from .config import Settings
from .domain.roster import InvalidRoster
from .store import check_ins, imports
from .store import points as points_store
from .store.coordinators import CoordinatorTokens
from .store.devices import TokenResolver
from .store.teams import PositionWriter
from .store.zones import ZoneLookup


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    redis = create_redis(settings)
    broker = create_broker(settings)
    handlers.register(broker, redis=redis, settings=settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with consuming(broker, redis, service="volunteers",
                             retention_s=settings.retention_days * 86400):
                stop = asyncio.Event()
                flushing = asyncio.create_task(positions.keep_flushing(stop),
                                               name="position-flush")
                # A roster import whose writer died after committing it is finished here.
                finishing = asyncio.create_task(imports.keep_finishing(redis, stop),
                                                name="roster-import-finish")
                # Check-ins nobody ended (a dead phone) end at the cap, and their teams with them.
                ending = asyncio.create_task(check_ins.keep_ending(
                    redis, stop, limit=settings.check_in_limit(),
                    ledger_ttl_s=points_store.ledger_ttl(settings.retention_days),
                    every_s=settings.checkin_sweep_s), name="check-in-expiry")
                try:
                    yield
                finally:
                    stop.set()
                    await stop_task(flushing, grace_s=2)
                    await stop_task(finishing, grace_s=2)
                    await stop_task(ending, grace_s=2)
        finally:
            await redis.aclose()

    app = FixesFirst(
        title="Lianfang volunteers",
        description="Roster of police, security and volunteer teams; shifts, devices, "
        "positions, status and the volunteer points ledger.",
        version="1.0",
        lifespan=lifespan,
        telemetry=TELEMETRY,
        docs_url=None, redoc_url=None,  # add_docs_page: no CDN
    )
    install_error_handlers(app)
    # A roster import refused, read on its own or against the stored roster: every error.
    app.add_exception_handler(InvalidRoster, refused_roster)
    add_docs_page(app)
    add_metrics_route(app)
    observe_streams("volunteers", settings.redis_url)
    add_health_routes(app, lambda: consumers_ready(broker, redis))
    app.include_router(dead_letters.build_router(redis_url=settings.redis_url, service="volunteers"))
    app.include_router(audit.build_router(redis=redis, service="volunteers"))
    positions = PositionWriter(redis, publish_interval_ms=settings.position_publish_interval_ms)
    app.include_router(api.build_router(
        settings=settings, redis=redis, broker=broker, zones=ZoneLookup(redis),
        positions=positions,
    ))
    tokens = TokenResolver(redis)
    coordinators = CoordinatorTokens(redis)
    rate_limits = RateLimits(settings.rate_limits())
    failures = settings.auth_failures()  # one count for the API and the fixes' fast path
    app.add_middleware(AuthMiddleware, admin_token=settings.admin_token.get_secret_value(),
                       rate_limits=rate_limits, failures=failures,
                       counted_elsewhere=asked_for_a_caller,
                       max_body_bytes=settings.max_body_bytes,
                       body_limits={"/v1/roster/import": settings.import_max_bytes},
                       resolve=device_resolver(tokens, coordinators))
    # Around the authentication too (a device's token is checked in Redis), inside the
    # browsers' access: a 503 a page cannot read would be no answer.
    app.add_middleware(AnswerWithin, timeout_s=settings.request_timeout_s)
    # The member's page: check-in, positions and points from the browser.
    allow_browsers(app, settings.allowed_origins)
    # Ahead of FastAPI: it authenticates position fixes itself (same answers).
    app.fixes = browser_access(AnswerWithin(
        PositionFastPath(positions=positions, tokens=tokens, coordinators=coordinators,
                         settings=settings, rate_limits=rate_limits, failures=failures),
        timeout_s=settings.request_timeout_s), settings.allowed_origins)
    return app
