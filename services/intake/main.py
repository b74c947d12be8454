"""Builds intake: settings, broker, Redis, HTTP app. Wires; decides nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

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
    allow_browsers,
    install_error_handlers,
)
from shared.introspect import IntrospectionGuard, Introspector
from shared.metrics import add_metrics_route, observe_streams
from shared.policy import load_policy

from . import api, deadline, handlers
from .config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    policy = load_policy(settings.policy_file)
    redis = create_redis(settings)
    broker = create_broker(settings)
    handlers.register(broker, redis=redis, settings=settings)
    client = httpx.AsyncClient()
    # the token check, in the report's trace; also the roster's districts, asked for a new key
    HTTPXClientInstrumentor.instrument_client(client)
    # No cache: api.token_resolver asks volunteers afresh for every device token.
    devices = Introspector(client, base_url=settings.volunteers_url, cache_s=0.0,
                           timeout_s=settings.introspect_timeout_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with consuming(broker, redis, service="intake",
                             retention_s=settings.retention_days * 86400):
            yield
        await client.aclose()
        await redis.aclose()

    app = ServiceApp(
        title="Lianfang intake",
        description="Incidents from other systems (110 call-taking, video analytics, door access).",
        version="1.0",
        lifespan=lifespan,
        telemetry=TELEMETRY,
        docs_url=None, redoc_url=None,  # add_docs_page: no CDN
    )
    install_error_handlers(app)
    add_docs_page(app)
    add_metrics_route(app)
    observe_streams("intake", settings.redis_url)
    app.include_router(dead_letters.build_router(redis_url=settings.redis_url, service="intake"))
    add_health_routes(app, lambda: consumers_ready(broker, redis))
    keys = api.SystemKeys(redis)
    api.refuse_revoked_keys_first(app, keys)
    app.include_router(api.build_router(settings=settings, redis=redis, broker=broker,
                                        policy=policy, keys=keys, http=client))
    app.include_router(audit.build_router(redis=redis, service="intake"))

    # System keys and device tokens; the admin token is checked first.
    app.add_middleware(AuthMiddleware, admin_token=settings.admin_token.get_secret_value(),
                       rate_limits=RateLimits(settings.rate_limits()),
                       failures=settings.auth_failures(),
                       max_body_bytes=settings.max_body_bytes,
                       resolve=api.token_resolver(keys, devices,
                                                  timeout_s=settings.report_timeout_s),
                       cached=keys.cached)
    app.add_middleware(IntrospectionGuard)
    # A report's bound (REPORT_TIMEOUT_S) from its arrival, around the authentication: its
    # key's lookup and its record share it.
    app.add_middleware(deadline.ReportDeadlines, timeout_s=settings.report_timeout_s,
                       is_report=api.is_report)
    # Around the authentication too; a report has its own bound (above) and its own answer
    # (the retry with the same external_ref tells whether it was kept).
    app.add_middleware(AnswerWithin, timeout_s=settings.request_timeout_s,
                       unbounded=api.is_report)
    allow_browsers(app, settings.allowed_origins)  # the member's page: reports from the street
    return app
