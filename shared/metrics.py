"""Metrics: OpenTelemetry instruments, read by Prometheus at `/metrics` (admin token) and,
when asked for (`OTEL_METRICS_EXPORTER=otlp` or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT), pushed
over OTLP too. OTEL_EXPORTER_OTLP_ENDPOINT alone sends spans only: it is what compose sets,
and its collector takes traces only.

Every service observes its streams (length, and lag and pending entries of its own
consumer groups). FastStream's telemetry middleware adds messaging durations and counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Response
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shared import streams
from shared.http import Principal, require

log = logging.getLogger(__name__)


def pushes_over_otlp(env: Mapping[str, str]) -> bool:
    """Whether metrics are pushed over OTLP as well as served at `/metrics`: only when the
    environment asks for it (OpenTelemetry's own variables)."""
    exporters = {e.strip().lower() for e in env.get("OTEL_METRICS_EXPORTER", "").split(",")}
    return "otlp" in exporters or bool(env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


# Bucket boundaries of the histograms of times, in seconds. The SDK's default (0, 5, 10, 25,
# … 10000) is made for milliseconds: with it every time to assign of a healthy night fell in
# 0–5 s and Prometheus's p90 read 4.5 s, the P1 acknowledgements around its 30 s deadline
# fell in 25–50 s and a response time of 3 or 5 minutes in 100–250 or 250–500 s.
# The time an entry takes to handle (up to HANDLER_TIMEOUT_S, 120 s):
HANDLING_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                      2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# An incident's times from its report: to its first order (milliseconds when well), to an
# acknowledgement (the P1 deadline, 30 s; P4's 300 s) and to the scene (minutes):
RESPONSE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
                      90.0, 120.0, 180.0, 240.0, 300.0, 420.0, 600.0, 900.0, 1800.0, 3600.0)
# FastStream's own histograms, which it makes without boundaries of its own.
_FASTSTREAM_DURATIONS = ("messaging.process.duration", "messaging.publish.duration")


def setup_metrics(service_name: str, *, workers: int = 1) -> MeterProvider:
    """Install the global meter provider; call once per process, before building the app.

    `workers`: the service's HTTP_WORKERS. Above 1, each worker process has figures of its
    own and answers the scrapes that reach it: its series carry `service_instance_id` (its
    host and pid), so that each worker's counters are series of their own (summed on a
    dashboard) instead of one series jumping between the workers' values at every scrape.
    With one worker the series have no such label (a new pid at each restart would start
    new series)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    attributes = {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
    if workers > 1:
        attributes["service.instance.id"] = f"{socket.gethostname()}-{os.getpid()}"
    readers: list = [PrometheusMetricReader(
        resource_attribute_filter=(lambda key: key == "service.instance.id")
        if workers > 1 else None)]
    if pushes_over_otlp(os.environ):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    provider = MeterProvider(
        resource=Resource.create(attributes), metric_readers=readers,
        views=[View(instrument_name=instrument,
                    aggregation=ExplicitBucketHistogramAggregation(HANDLING_BUCKETS_S))
               for instrument in _FASTSTREAM_DURATIONS])
    metrics.set_meter_provider(provider)
    return provider


def meter(name: str) -> metrics.Meter:
    return metrics.get_meter(f"lianfang.{name}")


def observe_streams(service: str, redis_url: str, *,
                    meter_provider: MeterProvider | None = None) -> None:
    """Gauges read at collection time: the length of the streams the service reads or
    writes, and the lag and pending entries of its own groups and of every consumer group
    (shared.streams) of the streams it writes. A service that is down serves no /metrics:
    its group's lag, growing, is what says so, and only the stream's producer can report it
    (dispatch shows notify's lag on order.issued). Every process reporting a group's lag
    reads the same figure from Redis."""
    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                  client_name=service)  # CLIENT LIST names it
    watched = {s.name: s for s in (*streams.consumed_by(service), *streams.produced_by(service))}
    consumed = [s.name for s in streams.consumed_by(service)]
    groups_of = {s.name: {service} for s in streams.consumed_by(service)}
    for stream in streams.produced_by(service):
        groups_of.setdefault(stream.name, set()).update(stream.consumers)

    def _groups() -> Iterable[tuple[str, str, dict]]:
        for name, wanted in groups_of.items():
            if not wanted:
                continue
            try:
                infos = client.xinfo_groups(name)
            except redis.RedisError:
                continue
            for info in infos:
                group = _text(info["name"])
                if group in wanted:
                    yield name, group, info

    def lengths(_: CallbackOptions) -> Iterable[Observation]:
        for name in watched:
            try:
                yield Observation(client.xlen(name), {"stream": name})
            except redis.RedisError:
                return

    def lag(_: CallbackOptions) -> Iterable[Observation]:
        for name, group, info in _groups():
            try:
                unread = unread_by_group(client, name, info)
            except redis.RedisError:
                continue
            yield Observation(unread, {"stream": name, "group": group})

    def pending(_: CallbackOptions) -> Iterable[Observation]:
        for name, group, info in _groups():
            yield Observation(int(info.get("pending", 0)), {"stream": name, "group": group})

    def dead(_: CallbackOptions) -> Iterable[Observation]:
        for name in consumed:
            try:
                yield Observation(client.xlen(f"dlq.{name}"), {"stream": name})
            except redis.RedisError:
                return

    m = meter_provider.get_meter("lianfang.streams") if meter_provider else meter("streams")
    m.create_observable_gauge("lianfang.stream.length", callbacks=[lengths],
                              description="entries in the stream")
    m.create_observable_gauge("lianfang.stream.lag", callbacks=[lag],
                              description="entries not yet delivered to the group")
    m.create_observable_gauge("lianfang.stream.pending", callbacks=[pending],
                              description="entries delivered to the group and not acknowledged")
    m.create_observable_gauge("lianfang.stream.dead_letters", callbacks=[dead],
                              description="entries in the stream's dead-letter stream")


# A group's entries still to read are counted one by one up to this many: beyond it, Redis's
# lag (capped at the stream's length) tells that the group is far behind.
COUNTED_LAG = 100


def unread_by_group(client: redis.Redis, stream: str, info: Mapping[str, Any]) -> int:
    """Entries of `stream` not yet delivered to the group of `info` (its XINFO GROUPS
    entry), read with a synchronous client (count_unread says how they are counted)."""
    if info.get("lag") == 0:
        return 0
    after = client.xrange(stream, min=after_delivered(info), count=COUNTED_LAG + 1)
    return count_unread(info, after, lambda: client.xlen(stream))


def after_delivered(info: Mapping[str, Any]) -> str:
    """XRANGE's start for the entries after the group's last delivered one (its XINFO
    GROUPS entry `info`): what the group has still to read, read COUNTED_LAG + 1 at most."""
    return f"({_text(info['last-delivered-id'])}"


def count_unread(info: Mapping[str, Any], after: Sequence[Any],
                 length: Callable[[], int]) -> int:
    """Entries not yet delivered to the group of `info` (its XINFO GROUPS entry), from
    `after`: the entries after its last delivered one (XRANGE from after_delivered, COUNT
    COUNTED_LAG + 1; not read when Redis's lag is 0), and the stream's length, asked for only
    when more than COUNTED_LAG follow. Redis's own lag also counts, for ever, the entries
    trimmed (MAXLEN) before the group read them: a dispatch that fell behind on unit.position
    showed a lag once caught up, with nothing left to read. So a lag Redis gives above 0 is
    checked against the entries after the group's last delivered one, counted up to
    COUNTED_LAG; past that, Redis's lag, never more than the stream holds. -1: Redis cannot
    tell (entries deleted) and the group is more than COUNTED_LAG behind. Apart from the
    reading, so that async code (dispatch's GET /v1/pipeline) counts as the gauges do."""
    lag = info.get("lag")
    if lag == 0:
        return 0
    if len(after) <= COUNTED_LAG:
        return len(after)
    return -1 if lag is None else min(int(lag), length())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def add_metrics_route(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def prometheus(_: Annotated[Principal, Depends(require("admin"))]) -> Response:
        # Collection runs the synchronous gauge callbacks: keep them off the event loop.
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
