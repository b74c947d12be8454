"""An incident's trace goes on through shared.bus's unhappy paths on a real Redis: an entry a
killed consumer left pending and the reclaimer (XAUTOCLAIM) took, and an entry given up on
and dead-lettered, whose dead letter names the trace it belongs to."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis as sync_redis
from faststream.opentelemetry import TelemetryMiddleware
from faststream.redis import RedisBroker
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

import shared.bus
import shared.dead_letters
from shared import streams
from shared.bus import consume, consuming, create_broker
from shared.dead_letters import list_dead_letters, replay
from shared.events import UnitStatus
from shared.logging import _TraceIdFilter
from shared.settings import ServiceSettings
from shared.telemetry import current_trace_id
from tests.helpers import poll_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STREAM = streams.UNIT_STATUS.name


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Every span the bus makes, its own and FastStream's (the reclaimer's), once ended."""
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(shared.bus, "_tracer", tracing.get_tracer("test"))
    monkeypatch.setattr(shared.dead_letters, "_tracer", tracing.get_tracer("test"))
    monkeypatch.setattr(shared.bus, "TelemetryMiddleware",
                        functools.partial(TelemetryMiddleware, tracer_provider=tracing))
    return exporter


def settings(url: str) -> ServiceSettings:
    return ServiceSettings(redis_url=url, admin_token="test-admin-token", claim_idle_ms=200, max_deliveries=3,
                           consumer_name="replacement")


def status(unit_id: str) -> UnitStatus:
    return UnitStatus(district="d", unit_id=unit_id, status="available", agency_id="a",
                      agency_kind="police", mode="car")


async def publish_in_trace(url: str, message: Any) -> bytes:
    """`message` on unit.status, published from within the trace TRACE_ID (span PARENT_ID),
    after dispatch's group was made at 0; its entry id."""
    redis = Redis.from_url(url)
    await redis.xgroup_create(STREAM, "dispatch", id="0", mkstream=True)
    await redis.aclose()
    publisher = RedisBroker(url)
    await publisher.connect()
    try:
        return await publisher.publish(message, stream=STREAM,
                                       headers={"traceparent": TRACEPARENT})
    finally:
        await publisher.stop()


@contextlib.asynccontextmanager
async def dispatch_consuming(url: str, handler: Callable[[UnitStatus], Awaitable[None]]
                             ) -> AsyncIterator[sync_redis.Redis]:
    cfg = settings(url)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis, client = Redis.from_url(url), sync_redis.Redis.from_url(url)
    try:
        async with consuming(broker, redis):
            yield client
    finally:
        await redis.aclose()
        client.close()


def in_trace(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans()
            if s.name == name and format(s.context.trace_id, "032x") == TRACE_ID]


async def test_an_entry_a_killed_consumer_held_is_reclaimed_in_its_trace_named_as_one_read(
        clean_redis: str, spans: InMemorySpanExporter) -> None:
    entry_id = await publish_in_trace(clean_redis, status("u1"))
    # A consumer reads it and is killed before acknowledging: it stays pending, held by it.
    client = sync_redis.Redis.from_url(clean_redis)
    client.xreadgroup("dispatch", "killed-consumer", {STREAM: ">"}, count=1)
    client.close()
    seen: list[str | None] = []

    async def handler(event: UnitStatus) -> None:
        seen.append(current_trace_id())

    async with dispatch_consuming(clean_redis, handler) as redis:
        await poll_until(lambda: seen, "the reclaimer handling the killed consumer's entry")
        await poll_until(lambda: redis.xpending(STREAM, "dispatch")["pending"] == 0,
                         "the reclaimed entry acknowledged")
    assert seen == [TRACE_ID]  # what the handler writes and logs is in the incident's trace
    (reclaimed,) = await poll_until(lambda: in_trace(spans, f"{STREAM} process"),
                                    "the reclaimed entry's span")
    assert format(reclaimed.parent.span_id, "016x") == PARENT_ID
    # Found by the same attributes as an entry read the first time: its stream, its group,
    # its stream entry id (not a number FastStream makes up at each delivery).
    assert reclaimed.attributes["messaging.system"] == "redis"
    assert reclaimed.attributes["messaging.destination.name"] == STREAM
    assert reclaimed.attributes["messaging.operation"] == "process"
    assert reclaimed.attributes["messaging.consumer.group.name"] == "dispatch"
    assert reclaimed.attributes["messaging.message.id"] == entry_id.decode()
    # ... and said to be a redelivery: the second delivery of the entry, whose first
    # consumer's span (a process killed outright) may never have been exported.
    assert reclaimed.attributes["lianfang.delivery_attempt"] == 2


async def test_an_entry_given_up_on_ends_its_trace_as_dead_lettered_and_its_letter_names_it(
        clean_redis: str, spans: InMemorySpanExporter) -> None:
    entry_id = await publish_in_trace(clean_redis, status("poison"))

    async def handler(event: UnitStatus) -> None:
        raise RuntimeError("cannot handle this one")

    async with dispatch_consuming(clean_redis, handler) as redis:
        ((_, letter),) = await poll_until(lambda: redis.xrange(f"dlq.{STREAM}"),
                                          "the dead letter", timeout=30)
    assert letter[b"entry_id"] == entry_id
    assert letter[b"trace_id"].decode() == TRACE_ID  # an operator greps the traces for it
    check = Redis.from_url(clean_redis)
    try:  # and the admin's dead-letters API shows it
        (shown,) = await list_dead_letters(check, STREAM, count=10)
    finally:
        await check.aclose()
    assert shown["trace_id"] == TRACE_ID
    attempts = await poll_until(
        lambda: (found := in_trace(spans, f"{STREAM} process")) and len(found) == 3 and found,
        "the three attempts' spans")
    last = max(attempts, key=lambda s: s.start_time)
    # Each attempt says which it is: the reader's first, the reclaimer's retries.
    assert sorted(s.attributes["lianfang.delivery_attempt"] for s in attempts) == [1, 2, 3]
    # The last attempt does not look like a success: it says the event went to the dead
    # letters, and why.
    assert last.status.status_code.name == "ERROR"
    (event,) = [e for e in last.events if e.name == "dead-lettered"]
    assert event.attributes["messaging.destination.name"] == f"dlq.{STREAM}"
    assert event.attributes["reason"] == "RuntimeError: cannot handle this one"
    assert event.attributes["attempts"] == 3


async def test_an_event_that_does_not_parse_is_dead_lettered_within_its_publishers_trace(
        clean_redis: str, spans: InMemorySpanExporter) -> None:
    entry_id = await publish_in_trace(clean_redis, {"unit_id": "u1", "status": "asleep"})
    handled: list[UnitStatus] = []

    async def handler(event: UnitStatus) -> None:
        handled.append(event)

    async with dispatch_consuming(clean_redis, handler) as redis:
        ((_, letter),) = await poll_until(lambda: redis.xrange(f"dlq.{STREAM}"),
                                          "the dead letter")
    assert handled == []
    assert letter[b"trace_id"].decode() == TRACE_ID
    (span,) = await poll_until(lambda: in_trace(spans, f"{STREAM} process"),
                               "a span for the entry in its publisher's trace")
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes["messaging.message.id"] == entry_id.decode()
    assert span.status.status_code.name == "ERROR"
    assert [e.name for e in span.events] == ["dead-lettered"]
    assert span.events[0].attributes["reason"].startswith("invalid UnitStatus")


async def test_the_log_line_of_an_event_that_does_not_parse_names_its_trace(
        clean_redis: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
    # An operator greps the logs for the trace id the dead letter names: the line saying it
    # was given up on, and why, must be found by it (it said [trace=-]).
    caplog.handler.addFilter(_TraceIdFilter())  # the services' `[trace=…]`
    await publish_in_trace(clean_redis, {"unit_id": "u1", "status": "asleep"})

    async def handler(event: UnitStatus) -> None:
        pass

    async with dispatch_consuming(clean_redis, handler) as redis:
        await poll_until(lambda: redis.xrange(f"dlq.{STREAM}"), "the dead letter")
    (line,) = [r for r in caplog.records
               if r.levelno == logging.ERROR and r.getMessage().startswith("dead-lettered")]
    assert line.trace_id == TRACE_ID  # type: ignore[attr-defined]


async def test_a_replay_is_traced_where_the_operator_asked_for_it_linked_to_the_event_s_trace(
        clean_redis: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
    # The replayed entry is read again in its incident's trace (its envelope's context); the
    # operator's request that put it back is a trace of its own, which says which trace the
    # event went back into, and so does the log line.
    caplog.set_level(logging.INFO)
    await publish_in_trace(clean_redis, {"unit_id": "u1", "status": "asleep"})

    async def handler(event: UnitStatus) -> None:
        pass

    async with dispatch_consuming(clean_redis, handler) as redis:
        ((letter_id, _),) = await poll_until(lambda: redis.xrange(f"dlq.{STREAM}"),
                                             "the dead letter")
        client = Redis.from_url(clean_redis)
        try:
            new_id = await replay(client, STREAM, letter_id.decode())
        finally:
            await client.aclose()
        await poll_until(lambda: len(in_trace(spans, f"{STREAM} process")) == 2,
                         "the replayed entry read again in its trace")
    (put_back,) = [s for s in spans.get_finished_spans() if s.name == f"{STREAM} publish"]
    assert format(put_back.context.trace_id, "032x") != TRACE_ID
    assert [(format(link.context.trace_id, "032x"), format(link.context.span_id, "016x"))
            for link in put_back.links] == [(TRACE_ID, PARENT_ID)]
    assert put_back.kind.name == "PRODUCER"
    assert dict(put_back.attributes or {}) == {
        "messaging.system": "redis", "messaging.destination.name": STREAM,
        "messaging.operation": "publish", "messaging.message.id": new_id,
        "lianfang.dead_letter_id": letter_id.decode()}
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("replayed")]
    assert line == (f"replayed dead letter {letter_id.decode()} of {STREAM} as {new_id} "
                    f"into trace {TRACE_ID}")


async def test_each_retry_by_the_reclaimer_and_the_dead_letter_are_counted_by_outcome(
        clean_redis: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    monkeypatch.setattr(shared.bus, "HANDLED", meter.create_histogram("handled"))
    await publish_in_trace(clean_redis, status("poison"))

    async def handler(event: UnitStatus) -> None:
        raise RuntimeError("cannot handle this one")

    async with dispatch_consuming(clean_redis, handler) as redis:
        await poll_until(lambda: redis.xrange(f"dlq.{STREAM}"), "the dead letter", timeout=30)
    counted: dict[str, int] = {}
    for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics:
        for point in metric.data.data_points:
            assert point.attributes["stream"] == STREAM
            assert point.attributes["group"] == "dispatch"
            counted[point.attributes["outcome"]] = point.count
    # The first read's failure, the reclaimer's failed retry, and its last one, which gave up:
    # `dead_lettered` is what an operator's alert on this histogram watches for.
    assert counted == {"failed": 2, "dead_lettered": 1}


async def test_an_entry_the_reader_dead_letters_at_once_is_counted_as_dead_lettered(
        clean_redis: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An event that does not parse is given up on at its first read, by the reader: an alert
    # on `outcome="dead_lettered"` of this histogram missed it (only the reclaimer's were
    # counted), though it is as lost to its group as one whose handler kept failing.
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    monkeypatch.setattr(shared.bus, "HANDLED", meter.create_histogram("handled"))
    await publish_in_trace(clean_redis, {"unit_id": "u1", "status": "asleep"})

    async def handler(event: UnitStatus) -> None:
        pass

    async with dispatch_consuming(clean_redis, handler) as redis:
        await poll_until(lambda: redis.xrange(f"dlq.{STREAM}"), "the dead letter")
    data = reader.get_metrics_data()  # None: nothing recorded
    counted = {point.attributes["outcome"]: point.count
               for metric in (data.resource_metrics[0].scope_metrics[0].metrics if data else ())
               for point in metric.data.data_points
               if point.attributes["stream"] == STREAM and point.attributes["group"] == "dispatch"}
    assert counted == {"dead_lettered": 1}
