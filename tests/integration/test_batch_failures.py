"""shared.bus.consume_batches on a real Redis when a batch's handler fails: the good events
of the batch are handled at once, each on its own, and only the failing ones wait for the
reclaimer; an outage or a hang leaves the whole batch pending."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

import shared.bus
from shared import streams
from shared.bus import consume_batches, consuming, create_broker
from shared.events import UnitStatus
from shared.http import TryAgain
from shared.settings import ServiceSettings
from tests.helpers import poll_until

# Far longer than any wait here: whatever a test sees handled was not reclaimed.
NO_RECLAIMING_MS = 60_000


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The entry spans shared.bus starts, once ended."""
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(shared.bus, "_tracer", tracing.get_tracer("test"))
    return exporter


def outcomes(exporter: InMemorySpanExporter, ids: dict[str, bytes]) -> dict[str, str]:
    """The status each ended entry span of `ids` has, by unit."""
    units = {entry_id.decode(): unit_id for unit_id, entry_id in ids.items()}
    return {units[s.attributes["messaging.message.id"]]: s.status.status_code.name
            for s in exporter.get_finished_spans()
            if s.name == "unit.status process" and s.attributes["messaging.message.id"] in units}


def settings(url: str, **overrides: object) -> ServiceSettings:
    options: dict[str, object] = {"claim_idle_ms": NO_RECLAIMING_MS, "max_deliveries": 3,
                                  "consumer_name": "c1", **overrides}
    return ServiceSettings(redis_url=url, admin_token="test-admin-token", **options)


def status(unit_id: str) -> UnitStatus:
    return UnitStatus(district="d", unit_id=unit_id, status="available", agency_id="a",
                      agency_kind="police", mode="car")


async def write_before_reading(url: str, unit_ids: list[str]) -> dict[str, bytes]:
    """Publish unit.status events before dispatch's group reads: its first read takes them
    as one batch. Their entry ids by unit."""
    redis = Redis.from_url(url)
    await redis.xgroup_create(streams.UNIT_STATUS.name, "dispatch", id="0", mkstream=True)
    await redis.aclose()
    publisher = RedisBroker(url)
    await publisher.connect()
    ids = {unit_id: await publisher.publish(status(unit_id), stream=streams.UNIT_STATUS.name)
           for unit_id in unit_ids}
    await publisher.stop()
    return ids


@contextlib.asynccontextmanager
async def batch_consumer(url: str, cfg: ServiceSettings,
                         handler: Callable[[list[Any]], Awaitable[None]], *,
                         trace_each: bool = False) -> AsyncIterator[tuple[RedisBroker, Redis]]:
    """`handler` consuming unit.status in batches as dispatch, and a client to look with."""
    broker = create_broker(cfg)
    consume_batches(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg,
                    group="dispatch", batch=50, trace_each=trace_each)
    redis = Redis.from_url(url)
    try:
        async with consuming(broker, redis):
            yield broker, redis
    finally:
        await redis.aclose()


async def pending_ids(redis: Redis) -> list[bytes]:
    pending = await redis.xpending_range(streams.UNIT_STATUS.name, "dispatch", "-", "+", 50)
    return [p["message_id"] for p in pending]


async def first_read_over(broker: RedisBroker, calls: list[list[str]]) -> None:
    """Wait until the reader is done with its first read: it reads again only then, so an
    event published now and handled proves that nothing more came of the first read."""
    await poll_until(lambda: calls, "the first batch handled", 5)
    await broker.publish(status("next"), stream=streams.UNIT_STATUS.name)
    await poll_until(lambda: ["next"] in calls, "the next read handled", 5)


async def pending_ids_if(redis: Redis, count: int) -> list[bytes] | None:
    pending = await pending_ids(redis)
    return pending if len(pending) == count else None


async def nothing_pending(redis: Redis) -> bool:
    return await pending_ids(redis) == []


def unit_ids(events: list[Any]) -> list[str]:
    return [getattr(e, "event", e).unit_id for e in events]


async def test_the_good_events_of_a_failing_batch_do_not_wait_for_the_reclaimer(
        clean_redis: str) -> None:
    handled: list[str] = []

    async def handler(events: list[UnitStatus]) -> None:
        if any(e.unit_id == "poison" for e in events):
            raise RuntimeError("cannot handle this one")
        handled.extend(e.unit_id for e in events)

    ids = await write_before_reading(clean_redis, ["a", "poison", "b"])
    async with batch_consumer(clean_redis, settings(clean_redis), handler) as (_, redis):
        # Well within CLAIM_IDLE_MS (60 s): handled by the reader, not the reclaimer.
        await poll_until(lambda: handled == ["a", "b"], "a and b handled, in order", 5)
        # Only what was handled is acknowledged: the failing event waits for the reclaimer.
        pending = await poll_until(lambda: pending_ids_if(redis, 1), "one entry pending", 5)
    assert pending == [ids["poison"]]


async def test_a_failing_batch_is_handled_alone_in_stream_order_once_each(
        clean_redis: str) -> None:
    calls: list[list[str]] = []

    async def handler(events: list[UnitStatus]) -> None:
        calls.append(unit_ids(events))
        if "poison" in calls[-1]:
            raise RuntimeError("cannot handle this one")

    await write_before_reading(clean_redis, ["a", "poison", "b", "c"])
    async with batch_consumer(clean_redis, settings(clean_redis), handler) as (broker, _):
        await first_read_over(broker, calls)
    assert calls == [["a", "poison", "b", "c"], ["a"], ["poison"], ["b"], ["c"], ["next"]]


@pytest.mark.parametrize("failure", [RedisConnectionError("Connection refused"),
                                     TryAgain("incident i-1 is being changed"), None],
                         ids=["redis-away", "try-again", "hung"])
async def test_an_outage_or_a_hang_leaves_the_whole_batch_pending(
        clean_redis: str, failure: Exception | None) -> None:
    # Retried one by one, each would meet the same dead Redis (or hang as long) again.
    calls: list[list[str]] = []

    async def handler(events: list[UnitStatus]) -> None:
        calls.append(unit_ids(events))
        if len(events) > 1:
            if failure is None:
                await asyncio.sleep(30)  # cancelled at HANDLER_TIMEOUT_S
            raise failure

    ids = await write_before_reading(clean_redis, ["a", "b", "c"])
    cfg = settings(clean_redis, handler_timeout_s=0.3)
    async with batch_consumer(clean_redis, cfg, handler) as (broker, redis):
        await first_read_over(broker, calls)
        pending = await pending_ids(redis)
    assert calls == [["a", "b", "c"], ["next"]]
    assert pending == [ids["a"], ids["b"], ids["c"]]


async def test_an_outage_met_alone_leaves_that_event_and_the_rest_pending(
        clean_redis: str, spans: InMemorySpanExporter) -> None:
    calls: list[list[str]] = []

    async def handler(events: list[UnitStatus]) -> None:
        calls.append(unit_ids(events))
        if "poison" in calls[-1]:
            raise RuntimeError("cannot handle this one")
        if calls[-1] == ["b"]:  # Redis went away meanwhile
            raise RedisConnectionError("Connection refused")

    ids = await write_before_reading(clean_redis, ["a", "poison", "b", "c"])
    async with batch_consumer(clean_redis, settings(clean_redis), handler,
                              trace_each=True) as (broker, redis):
        await first_read_over(broker, calls)
        pending = await pending_ids(redis)
    assert calls == [["a", "poison", "b", "c"], ["a"], ["poison"], ["b"], ["next"]]
    assert pending == [ids["poison"], ids["b"], ids["c"]]
    # c, never handled, does not look handled in its trace
    assert outcomes(spans, ids) == {"a": "UNSET", "poison": "ERROR", "b": "ERROR",
                                    "c": "ERROR"}


async def test_with_one_delivery_a_failing_event_of_a_batch_is_dead_lettered_at_once(
        clean_redis: str) -> None:
    # As `consume` does with MAX_DELIVERIES 1: the reclaimer would only dead-letter it later.
    handled: list[str] = []

    async def handler(events: list[UnitStatus]) -> None:
        if any(e.unit_id == "poison" for e in events):
            raise RuntimeError("cannot handle this one")
        handled.extend(e.unit_id for e in events)

    ids = await write_before_reading(clean_redis, ["a", "poison", "b"])
    client = sync_redis.Redis.from_url(clean_redis)
    async with batch_consumer(clean_redis, settings(clean_redis, max_deliveries=1),
                              handler) as (_, redis):
        (_, letter), = await poll_until(lambda: client.xrange("dlq.unit.status"),
                                        "the dead letter", 5)
        await poll_until(lambda: nothing_pending(redis), "nothing pending", 5)
    client.close()
    assert handled == ["a", "b"]
    assert letter[b"entry_id"] == ids["poison"] and letter[b"attempts"] == b"1"
    assert letter[b"reason"] == b"RuntimeError: cannot handle this one"


async def test_each_event_of_a_failing_traced_batch_has_its_own_outcome_counted_once(
        clean_redis: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    monkeypatch.setattr(shared.bus, "HANDLED", meter.create_histogram("handled"))
    calls: list[list[str]] = []

    async def handler(events: list[Any]) -> None:
        calls.append(unit_ids(events))
        if "poison" in calls[-1]:
            raise RuntimeError("cannot handle this one")

    ids = await write_before_reading(clean_redis, ["a", "poison", "b"])
    async with batch_consumer(clean_redis, settings(clean_redis), handler,
                              trace_each=True) as (broker, _):
        await first_read_over(broker, calls)
    # One span each (and the next read's): a and b handled alone, poison failed with its
    # reason.
    assert len([s for s in spans.get_finished_spans() if s.name == "unit.status process"]) == 4
    assert outcomes(spans, ids) == {"a": "UNSET", "poison": "ERROR", "b": "UNSET"}
    (failed,) = [s for s in spans.get_finished_spans() if s.status.status_code.name == "ERROR"]
    assert failed.events[-1].attributes["exception.message"] == \
        "RuntimeError: cannot handle this one"
    counted = {point.attributes["outcome"]: point.count
               for metric in reader.get_metrics_data().resource_metrics[0]
               .scope_metrics[0].metrics for point in metric.data.data_points}
    assert counted == {"handled": 2, "failed": 1}  # each entry of the failed batch, once

