"""shared.bus on a real Redis: retries by reclaiming, dead letters, lost groups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import streams
from shared.bus import consume, consume_batches, consumers_ready, consuming, create_broker
from shared.events import UnitPosition, UnitStatus, utcnow
from shared.http import TryAgain
from shared.settings import ServiceSettings
from tests.helpers import poll_until


def settings(url: str) -> ServiceSettings:
    return ServiceSettings(redis_url=url, admin_token="test-admin-token", claim_idle_ms=200, max_deliveries=3,
                           consumer_name="test-consumer")


def status(unit_id: str) -> UnitStatus:
    return UnitStatus(district="d", unit_id=unit_id, status="available", agency_id="a",
                      agency_kind="police", mode="car")


@contextlib.asynccontextmanager
async def status_consumer(url: str, handler: Callable[[UnitStatus], Awaitable[None]]
                          ) -> AsyncIterator[tuple[RedisBroker, sync_redis.Redis]]:
    """`handler` consuming unit.status as dispatch, and a client to look at Redis with."""
    cfg = settings(url)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis, client = Redis.from_url(url), sync_redis.Redis.from_url(url)
    try:
        async with consuming(broker, redis):
            yield broker, client
    finally:
        await redis.aclose()
        client.close()


async def test_a_failing_handler_is_retried_then_dead_lettered_with_the_reason(
        clean_redis: str) -> None:
    calls: dict[str, int] = {}

    async def handler(event: UnitStatus) -> None:
        calls[event.unit_id] = calls.get(event.unit_id, 0) + 1
        if event.unit_id == "poison":
            raise RuntimeError("cannot handle this one")
        if event.unit_id == "flaky" and calls["flaky"] < 2:
            raise RuntimeError("first time fails")

    async with status_consumer(clean_redis, handler) as (broker, client):
        for unit_id in ("poison", "flaky", "fine"):
            await broker.publish(status(unit_id), stream=streams.UNIT_STATUS.name)
        dead = await poll_until(lambda: client.xrange("dlq.unit.status"), "a dead letter", 15)
        await poll_until(lambda: calls.get("flaky") == 2, "the flaky event retried once")
        await poll_until(lambda: client.xpending("unit.status", "dispatch")["pending"] == 0,
                         "an empty pending list")
    assert calls["poison"] == 3 and calls["fine"] == 1
    (_, fields), = dead
    assert fields[b"reason"] == b"RuntimeError: cannot handle this one"
    assert fields[b"attempts"] == b"3" and fields[b"group"] == b"dispatch"
    assert b"poison" in fields[b"payload"]


async def test_an_event_given_up_on_is_told_to_the_service_before_its_dead_letter(
        clean_redis: str) -> None:
    # What the service must do about an event it gives up on (dispatch: flag the incident
    # its report left with no team) comes before the dead letter; when it cannot reach
    # Redis, the event stays pending and is given up on at its next delivery.
    told: list[tuple[str, int]] = []
    cfg = settings(clean_redis)
    client = sync_redis.Redis.from_url(clean_redis)

    async def handler(event: UnitStatus) -> None:
        raise RuntimeError("cannot handle this one")

    async def given_up(event: UnitStatus) -> None:
        told.append((event.unit_id, client.xlen("dlq.unit.status")))
        if len(told) == 1:
            raise RedisConnectionError("Connection refused")

    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch",
            given_up=given_up)
    redis = Redis.from_url(clean_redis)
    try:
        async with consuming(broker, redis):
            await broker.publish(status("poison"), stream=streams.UNIT_STATUS.name)
            await poll_until(lambda: client.xlen("dlq.unit.status") == 1, "a dead letter", 15)
            await poll_until(lambda: client.xpending("unit.status", "dispatch")["pending"] == 0,
                             "an empty pending list")
    finally:
        await redis.aclose()
        client.close()
    assert told == [("poison", 0), ("poison", 0)]


async def test_an_event_whose_handler_cannot_reach_redis_is_never_dead_lettered(
        clean_redis: str) -> None:
    # Past max_deliveries (3) of failures that say nothing about the event (Redis out of
    # reach, a step to make again): still pending, retried until it goes through.
    calls: list[str] = []

    async def handler(event: UnitStatus) -> None:
        calls.append(event.unit_id)
        if len(calls) == 3:
            raise TryAgain("incident i-1 is being changed by another step")
        if len(calls) < 5:
            raise RedisConnectionError("Connection refused")

    async with status_consumer(clean_redis, handler) as (broker, client):
        await broker.publish(status("t-outage"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: len(calls) == 5, "the fifth attempt", 15)
        await poll_until(lambda: client.xpending("unit.status", "dispatch")["pending"] == 0,
                         "an empty pending list")
        assert client.xlen("dlq.unit.status") == 0
    assert calls == ["t-outage"] * 5


async def test_a_lost_group_is_recreated_at_zero_and_consuming_resumes(clean_redis: str) -> None:
    seen: list[str] = []

    async def handler(event: UnitStatus) -> None:
        seen.append(event.unit_id)

    cfg = settings(clean_redis)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = Redis.from_url(clean_redis)
    async with consuming(broker, redis, watch_interval_s=0.3):
        await broker.publish(status("before"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: seen == ["before"], "the first event")
        await redis.delete(streams.UNIT_STATUS.name)  # as if Redis had lost its data
        await poll_until(lambda: not all(s.running for s in broker.subscribers),
                         "FastStream stopping the subscriber on NOGROUP")
        assert not await consumers_ready(broker, redis)
        # Published while nobody reads: the group, re-created at 0, must still see it.
        publisher = RedisBroker(clean_redis)
        await publisher.connect()
        await publisher.publish(status("meanwhile"), stream=streams.UNIT_STATUS.name)
        await publisher.stop()
        await poll_until(lambda: "meanwhile" in seen, "the event published meanwhile", 10)
        assert await consumers_ready(broker, redis)
    await redis.aclose()
    await asyncio.sleep(0)


async def test_a_replayed_dead_letter_is_processed_once_after_the_fix(clean_redis: str) -> None:
    from shared import dead_letters

    fixed = False
    handled: list[str] = []

    async def handler(event: UnitStatus) -> None:
        if not fixed:
            raise RuntimeError("bug")
        handled.append(event.unit_id)

    cfg = settings(clean_redis)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = Redis.from_url(clean_redis)
    async with consuming(broker, redis):
        await broker.publish(status("u1"), stream=streams.UNIT_STATUS.name)
        (letter,) = await poll_until(
            lambda: dead_letters.list_dead_letters(redis, "unit.status", count=10),
            "the dead letter", 15)
        assert letter["reason"] == "RuntimeError: bug" and letter["attempts"] == 3
        fixed = True
        await dead_letters.replay(redis, "unit.status", letter["dead_letter_id"])
        await poll_until(lambda: handled == ["u1"], "the replayed event handled")
        await asyncio.sleep(0.5)
        assert handled == ["u1"]
        assert await dead_letters.list_dead_letters(redis, "unit.status", count=10) == []
    await redis.aclose()


def position(unit_id: str, lat: float = 22.8) -> UnitPosition:
    return UnitPosition(district="d", unit_id=unit_id, lat=lat, lon=108.3, at=utcnow())


async def test_batches_are_handled_together_and_a_failing_one_entry_by_entry(
        clean_redis: str) -> None:
    batches: list[list[str]] = []

    async def handler(events: list[UnitPosition]) -> None:
        ids = [e.unit_id for e in events]
        batches.append(ids)
        if "poison" in ids:
            raise RuntimeError("cannot handle this one")

    cfg = settings(clean_redis)
    broker = create_broker(cfg)
    consume_batches(broker, streams.UNIT_POSITION, UnitPosition, handler, settings=cfg,
                    group="dispatch", batch=50)
    redis = Redis.from_url(clean_redis)
    # Written before the consumer starts, so the first read takes them as one batch.
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    await redis.xgroup_create(streams.UNIT_POSITION.name, "dispatch", id="0", mkstream=True)
    for unit_id in ("a", "b", "poison", "c"):
        await publisher.publish(position(unit_id), stream=streams.UNIT_POSITION.name)
    await redis.xadd(streams.UNIT_POSITION.name, {b"garbage": b"\xff"})
    await publisher.stop()
    async with consuming(broker, redis):
        client = sync_redis.Redis.from_url(clean_redis)
        dead = await poll_until(lambda: len(client.xrange("dlq.unit.position")) == 2 and
                                client.xrange("dlq.unit.position"), "two dead letters", 15)
        await poll_until(lambda: client.xpending("unit.position", "dispatch")["pending"] == 0,
                         "an empty pending list")
    await redis.aclose()
    assert batches[0] == ["a", "b", "poison", "c"]  # the garbage entry never reached it
    # At once each alone, in stream order; then the reclaimer retries only the failing one.
    assert batches[1:5] == [["a"], ["b"], ["poison"], ["c"]]
    assert batches[5:] == [["poison"], ["poison"]]  # attempts 2 and 3; 1 was the read's
    reasons = sorted((f[b"reason"] for _, f in dead), key=lambda r: r.lower())
    assert reasons[0] == b"RuntimeError: cannot handle this one"
    assert reasons[1].startswith(b"unreadable stream entry")  # sorted: "R" < "u"


async def test_a_traced_batch_gives_each_event_a_span_in_its_publishers_trace(
        clean_redis: str, monkeypatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import shared.bus
    from shared.bus import Traced
    from shared.telemetry import current_trace_id

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(shared.bus, "_tracer", provider.get_tracer("test"))
    batches: list[list[tuple[str, str | None]]] = []

    async def handler(batch: list[Traced[UnitPosition]]) -> None:
        seen = []
        for item in batch:
            with item.current():
                seen.append((item.event.unit_id, current_trace_id()))
        batches.append(seen)

    cfg = settings(clean_redis)
    broker = create_broker(cfg)
    consume_batches(broker, streams.UNIT_POSITION, UnitPosition, handler, settings=cfg,
                    group="dispatch", batch=50, trace_each=True)
    redis = Redis.from_url(clean_redis)
    await redis.xgroup_create(streams.UNIT_POSITION.name, "dispatch", id="0", mkstream=True)
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    traces = {unit_id: (f"{n + 1:032x}", f"{n + 1:016x}") for n, unit_id in enumerate("abc")}
    for unit_id, (trace_id, span_id) in traces.items():
        await publisher.publish(position(unit_id), stream=streams.UNIT_POSITION.name,
                                headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    await publisher.stop()
    async with consuming(broker, redis):
        await poll_until(lambda: len(exporter.get_finished_spans()) >= 3, "three entry spans")
    await redis.aclose()
    assert batches == [[(u, traces[u][0]) for u in "abc"]]  # one batch, each in its own trace
    spans = [s for s in exporter.get_finished_spans() if s.name == "unit.position process"]
    assert sorted((format(s.context.trace_id, "032x"), format(s.parent.span_id, "016x"))
                  for s in spans) == sorted(traces.values())
    assert all(s.attributes["messaging.consumer.group.name"] == "dispatch" for s in spans)


async def test_a_failing_entry_of_a_read_stays_pending_alone(clean_redis: str) -> None:
    handled: list[str] = []

    async def handler(event: UnitStatus) -> None:
        if event.unit_id == "poison":
            raise RuntimeError("cannot handle this one")
        handled.append(event.unit_id)

    cfg = settings(clean_redis).model_copy(update={"claim_idle_ms": 600_000})  # no reclaiming
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = Redis.from_url(clean_redis)
    await redis.xgroup_create(streams.UNIT_STATUS.name, "dispatch", id="0", mkstream=True)
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    ids = {}
    for unit_id in ("a", "poison", "b"):  # written first: the consumer reads them at once
        ids[unit_id] = await publisher.publish(status(unit_id), stream=streams.UNIT_STATUS.name)
    await publisher.stop()
    async with consuming(broker, redis):
        await poll_until(lambda: handled == ["a", "b"], "a and b handled, in order")

        async def pending_alone() -> list[dict] | None:
            pending = await redis.xpending_range(streams.UNIT_STATUS.name, "dispatch", "-",
                                                 "+", 10)
            return pending if len(pending) == 1 else None

        pending = await poll_until(pending_alone, "one entry left pending")
    await redis.aclose()
    assert [p["message_id"] for p in pending] == [ids["poison"]]


async def test_a_lingering_reader_takes_the_events_of_its_pause_in_one_read(
        clean_redis: str) -> None:
    batches: list[list[str]] = []

    async def handler(events: list[UnitStatus]) -> None:
        batches.append([e.unit_id for e in events])

    cfg = settings(clean_redis).model_copy(update={"bookkeeping_linger_ms": 1000})
    broker = create_broker(cfg)
    consume_batches(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg,
                    group="dispatch", batch=10, bookkeeping=True)
    redis = Redis.from_url(clean_redis)
    async with consuming(broker, redis):
        await broker.publish(status("first"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: batches == [["first"]], "the first event handled at once", 5)
        for n in range(5):  # during the pause after the first read
            await broker.publish(status(f"u{n}"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: len(batches) == 2, "the next read", 5)
        client = sync_redis.Redis.from_url(clean_redis)
        await poll_until(lambda: client.xpending("unit.status", "dispatch")["pending"] == 0,
                         "every event acknowledged")
        # acknowledged before the pause: the reclaimer (200 ms idle here) took nothing again
        await asyncio.sleep(0.5)
    await redis.aclose()
    assert batches == [["first"], [f"u{n}" for n in range(5)]]


async def test_the_services_clients_pack_with_hiredis_and_round_trip_any_value(
        clean_redis: str) -> None:
    from shared.bus import create_redis

    cfg = settings(clean_redis)
    seen: list[UnitStatus] = []

    async def handler(event: UnitStatus) -> None:
        seen.append(event)

    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = create_redis(cfg)
    binary = bytes(range(256)) * 30  # past redis-py's 6,000-byte chunking
    async with consuming(broker, redis):
        for client in (redis, broker.config.connection.client):
            pool = client.connection_pool
            assert pool.connection_class.__name__ == "HiredisConnection"
        name = "联防 巡逻队 " + "x" * 7000
        await redis.hset("packing", mapping={"name": name, "lat": 31.2354, "n": 2**70})
        await broker.config.connection.client.set("packing:bin", binary)
        await broker.publish(status("队-1"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: seen, "the event consumed")
        assert await redis.hgetall("packing") == {
            "name": name, "lat": "31.2354", "n": str(2**70)}
        assert await broker.config.connection.client.get("packing:bin") == binary
    await redis.aclose()
    assert seen[0].unit_id == "队-1"
