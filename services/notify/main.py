"""Builds notify: settings, broker, Redis, HTTP client, hub, channels, HTTP app. Wires; decides nothing."""

from __future__ import annotations

import asyncio
import logging
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
    Principal,
    RateLimits,
    ServiceApp,
    add_docs_page,
    add_health_routes,
    install_error_handlers,
)
from shared.introspect import IntrospectionGuard, Introspector
from shared.metrics import add_metrics_route, observe_streams
from shared.runtime import stop_task
from shared.telemetry import trace_outside_calls
from shared.timezones import parse_timezone

from . import api, handlers, sockets, store
from .channels import Channel
from .channels.public_only import public_only_transport
from .channels.sms import SmsChannel
from .config import Settings
from .fallback import FallbackTimers, TeamShifts
from .hub import Hub
from .service import Orders

log = logging.getLogger(__name__)


def build_channels(settings: Settings, client: httpx.AsyncClient, *,
                   push_client: httpx.AsyncClient) -> tuple[list[Channel], str | None]:
    """The fallback chain in FALLBACK_CHANNELS order; channels not configured are left out."""
    available: dict[str, Channel] = {}
    webpush_key: str | None = None
    if settings.vapid_private_key is not None:
        # Imported here: the push crypto libraries are needed only where Web Push is on.
        from .channels.webpush import WebPushChannel, load_vapid, public_key

        vapid = load_vapid(settings.vapid_private_key.get_secret_value())
        webpush_key = public_key(vapid)
        available["webpush"] = WebPushChannel(
            push_client, vapid=vapid, subject=settings.vapid_subject,
            ttl_s=settings.webpush_ttl_s, timeout_s=settings.channel_timeout_s,
            allow_private=settings.webpush_allow_private_endpoints,
        )
    if settings.sms_gateway_url:
        token = settings.sms_gateway_token
        available["sms"] = SmsChannel(
            client, url=settings.sms_gateway_url,
            token=token.get_secret_value() if token else None,
            timeout_s=settings.channel_timeout_s, tz=parse_timezone(settings.timezone),
            language=settings.sms_language, page_url=settings.device_page_url,
        )
    for name in settings.channel_order:
        if name not in ("webpush", "sms"):
            log.warning("FALLBACK_CHANNELS names an unknown channel %r; known: webpush, sms", name)
        elif name not in available:
            log.info("fallback channel %s is off: not configured", name)
    chain = [available[name] for name in settings.channel_order if name in available]
    return chain, webpush_key


def build_push_client(settings: Settings) -> httpx.AsyncClient:
    """Web Push's own client: its endpoints come from devices, so it connects to public
    addresses only, unless WEBPUSH_ALLOW_PRIVATE_ENDPOINTS."""
    limits = httpx.Limits(max_connections=100)
    transport = (None if settings.webpush_allow_private_endpoints
                 else public_only_transport(limits=limits))
    return httpx.AsyncClient(timeout=settings.channel_timeout_s, limits=limits,
                             transport=transport)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    redis = create_redis(settings)
    # The stream handlers run one script per event, one event at a time: on a connection of
    # their own, each command skips the blocking pool's lock, timeout and connection checks
    # (~0.04 ms of client CPU per order.issued on the bench machine).
    stream_redis = Redis(connection_pool=redis.connection_pool, single_connection_client=True)
    broker = create_broker(settings)
    client = httpx.AsyncClient(timeout=settings.channel_timeout_s,
                               limits=httpx.Limits(max_connections=100))
    HTTPXClientInstrumentor.instrument_client(client)
    # The fallback channels' own client: a push subscription's URL is its credential.
    outside = httpx.AsyncClient(timeout=settings.channel_timeout_s,
                                limits=httpx.Limits(max_connections=100))
    trace_outside_calls(outside)
    push_client = build_push_client(settings)
    trace_outside_calls(push_client)
    introspector = Introspector(client, base_url=settings.volunteers_url,
                                cache_s=settings.introspect_cache_s,
                                timeout_s=settings.introspect_timeout_s)
    # A replay queues its frames at once: at most half the socket's send queue, which a
    # full queue would close ("too slow"), the phone reconnecting to the same replay.
    replay_most = (store.REPLAY_MOST if settings.send_queue <= 0
                   else max(1, min(store.REPLAY_MOST, settings.send_queue // 2)))
    hub = Hub(redis, ttl_s=settings.order_ttl_s, replay_most=replay_most,
              barred_warning_s=settings.barred_warning_s)
    hub.on_revoked.append(introspector.forget_device)
    chain, webpush_key = build_channels(settings, outside, push_client=push_client)
    orders = Orders(redis=redis, stream_redis=stream_redis, broker=broker, hub=hub,
                    settings=settings, fallback_steps=len(chain))
    # A receipt from a member off the team's shift does not end the fallback: volunteers
    # says who is on it (its team view, with the services' key).
    shifts = TeamShifts(client, base_url=settings.volunteers_url, key=settings.service_key(),
                        timeout_s=settings.shift_lookup_timeout_s)
    timers = FallbackTimers(redis=redis, orders=orders, chain=chain, settings=settings,
                            shifts=shifts)
    handlers.register(broker, redis=redis, orders=orders, hub=hub, settings=settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        try:
            async with consuming(broker, redis, service="notify",
                             retention_s=settings.retention_days * 86400):
                ticking = asyncio.create_task(timers.run(), name="notify-fallback")
                log.info("fallback chain: %s",
                         ", ".join(c.name for c in chain) or "none configured")
                try:
                    yield
                finally:
                    await stop_task(ticking)
                    await hub.stop()
        finally:
            await client.aclose()
            await outside.aclose()
            await push_client.aclose()
            await stream_redis.aclose()
            await redis.aclose()

    app = ServiceApp(
        title="Lianfang notify",
        description="Orders to members' devices (WebSocket, Web Push, SMS) and their answers.",
        version="1.0",
        lifespan=lifespan,
        telemetry=TELEMETRY,
        max_body_size=settings.max_body_bytes,
        docs_url=None, redoc_url=None,  # add_docs_page: no CDN
    )
    install_error_handlers(app)
    add_docs_page(app)
    add_metrics_route(app)
    app.include_router(audit.build_router(redis=redis, service="notify"))
    observe_streams("notify", settings.redis_url)
    app.include_router(dead_letters.build_router(redis_url=settings.redis_url, service="notify"))
    add_health_routes(app, lambda: consumers_ready(broker, redis))
    app.include_router(api.build_router(settings=settings, redis=redis, orders=orders,
                                        webpush_key=webpush_key, sms_enabled="sms" in
                                        {c.name for c in chain}))
    app.include_router(api.build_page_router(settings))
    app.include_router(sockets.build_socket_router(redis=redis, hub=hub, orders=orders,
                                                   introspector=introspector, settings=settings))

    async def resolve(token: str) -> Principal | None:  # device tokens; admin is checked first
        return await introspector.resolve(token)

    app.add_middleware(AuthMiddleware, admin_token=settings.admin_token.get_secret_value(),
                       resolve=resolve, public_paths=api.PUBLIC_PATHS,
                       rate_limits=RateLimits(settings.rate_limits()),
                       failures=settings.auth_failures())
    app.add_middleware(IntrospectionGuard)
    # Around the authentication too (a device's token is checked by volunteers, in Redis);
    # a socket's set-up after its accept is bounded in sockets.py.
    app.add_middleware(AnswerWithin, timeout_s=settings.request_timeout_s)
    return app
