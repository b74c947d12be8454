"""Durability and recovery of the bus: Redis restarting (with its AOF, or empty), slow
consumers, failures whose text holds personal data, and retention against a group that does
not exist yet."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from pydantic import BaseModel
from redis.asyncio import Redis

from shared import streams
from shared.bus import consume, consume_batches, consumers_ready, consuming, create_broker, create_redis
from shared.events import Caller, IncidentReported, Location, UnitStatus, utcnow
from shared.retention import trim_stream
from shared.settings import ServiceSettings
from tests.helpers import poll_until
from tools.redis_server import RedisServer

DAY_MS = 86_400_000
PHONE = "+86 138 0013 8000"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill and start again on the same port."""
    with RedisServer(tmp_path / "redis", appendfsync="always") as server:
        yield server


def restart(server: RedisServer, *, empty: bool) -> None:
    server.kill()
    if empty:  # a replaced Redis: no streams, no groups, nothing pending
        shutil.rmtree(server.workdir)
        server.workdir.mkdir()
    server.start()


def settings(url: str, **overrides: object) -> ServiceSettings:
    options: dict[str, object] = {"claim_idle_ms": 300, "max_deliveries": 3,
                                  "consumer_name": "c1", **overrides}
    return ServiceSettings(redis_url=url, admin_token="test-admin-token", **options)


def status(unit_id: str) -> UnitStatus:
    return UnitStatus(district="d", unit_id=unit_id, status="available", agency_id="a",
                      agency_kind="police", mode="car")


async def publish(url: str, event: BaseModel, stream: streams.Stream) -> None:
    publisher = RedisBroker(url)
    await publisher.connect()
    await publisher.publish(event, stream=stream.name)
    await publisher.stop()


def pending(url: str, stream: str, group: str) -> int:
    client = sync_redis.Redis.from_url(url)
    try:
        return int(client.xpending(stream, group)["pending"])
    finally:
        client.close()


@pytest.mark.parametrize("empty", [False, True], ids=["with-its-aof", "empty"])
async def test_consumers_carry_on_after_redis_restarts(own_redis: RedisServer, empty: bool) -> None:
    seen: list[str] = []

    async def handler(event: UnitStatus) -> None:
        seen.append(event.unit_id)

    cfg = settings(own_redis.url)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = create_redis(cfg)
    async with consuming(broker, redis, watch_interval_s=0.3):
        await publish(own_redis.url, status("before"), streams.UNIT_STATUS)
        await poll_until(lambda: seen == ["before"], "the first event")
        restart(own_redis, empty=empty)
        # published before the service noticed: a group re-created at `$` would skip it
        await publish(own_redis.url, status("after"), streams.UNIT_STATUS)
        await poll_until(lambda: "after" in seen, "the event published after the restart", 30)
        await poll_until(lambda: consumers_ready(broker, redis), "ready again", 30)
    await redis.aclose()
    assert seen == ["before", "after"]


async def test_a_slow_handler_keeps_its_entry_and_no_reclaimer_handles_it_again(
        clean_redis: str) -> None:
    # alive but slow: several times CLAIM_IDLE_MS (300 ms), well past the reclaimer's polls
    calls: list[str] = []

    async def handler(event: UnitStatus) -> None:
        calls.append(event.unit_id)
        await asyncio.sleep(2.5)

    cfg = settings(clean_redis)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = Redis.from_url(clean_redis)
    async with consuming(broker, redis):
        await broker.publish(status("slow"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: calls, "the handler started")
        await poll_until(lambda: pending(clean_redis, "unit.status", "dispatch") == 0,
                         "the entry acknowledged", 15)
    await redis.aclose()
    assert calls == ["slow"]


async def test_a_slow_batch_keeps_its_entries(clean_redis: str) -> None:
    batches: list[list[str]] = []

    async def handler(events: list[UnitStatus]) -> None:
        batches.append([e.unit_id for e in events])
        await asyncio.sleep(2.5)

    cfg = settings(clean_redis)
    broker = create_broker(cfg)
    consume_batches(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg,
                    group="dispatch")
    redis = Redis.from_url(clean_redis)
    async with consuming(broker, redis):
        await broker.publish(status("slow"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: batches, "the handler started")
        await poll_until(lambda: pending(clean_redis, "unit.status", "dispatch") == 0,
                         "the batch acknowledged", 15)
    await redis.aclose()
    assert batches == [["slow"]]


async def test_a_slow_retry_is_not_taken_by_another_process(clean_redis: str) -> None:
    # The first attempt fails at once; the retry (a reclaimer's) is slow. The other
    # process's reclaimer must leave it alone while it runs.
    calls: list[str] = []

    async def handler(event: UnitStatus) -> None:
        calls.append(event.unit_id)
        if len(calls) == 1:
            raise RuntimeError("fails the first time")
        await asyncio.sleep(2.5)

    brokers = []
    for name in ("p1", "p2"):
        cfg = settings(clean_redis, consumer_name=name)
        broker = create_broker(cfg)
        consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
        brokers.append(broker)
    redis = Redis.from_url(clean_redis)
    async with consuming(brokers[0], redis), consuming(brokers[1], redis):
        await brokers[0].publish(status("flaky"), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: len(calls) >= 2, "the retry started", 15)
        await poll_until(lambda: pending(clean_redis, "unit.status", "dispatch") == 0,
                         "the entry acknowledged", 15)
    await redis.aclose()
    assert calls == ["flaky", "flaky"]


class Callback(BaseModel):
    """What a handler might build from an event: its bug puts the caller's number in the
    error's text (pydantic quotes the input it refused)."""

    phone: int


def reported(incident_id: str) -> IncidentReported:
    return IncidentReported(
        district="d", incident_id=incident_id, system_id="s", external_ref="r",
        category="violence", priority="P1", location=Location(lat=22.8, lon=108.3),
        description="my neighbour is shouting", caller=Caller(phone=PHONE, name="Wang Fang"),
        reported_at=utcnow())


@pytest.mark.parametrize("max_deliveries", [1, 3], ids=["dead-lettered-at-once", "retried"])
async def test_a_failure_quoting_the_caller_leaves_no_personal_data_in_the_logs(
        clean_redis: str, caplog: pytest.LogCaptureFixture, max_deliveries: int) -> None:
    async def handler(event: IncidentReported) -> None:
        Callback.model_validate({"phone": event.caller.phone})

    cfg = settings(clean_redis, max_deliveries=max_deliveries, claim_idle_ms=200)
    broker = create_broker(cfg)
    consume(broker, streams.INCIDENT_REPORTED, IncidentReported, handler, settings=cfg,
            group="dispatch")
    redis = Redis.from_url(clean_redis)
    client = sync_redis.Redis.from_url(clean_redis)
    with caplog.at_level(logging.DEBUG):
        async with consuming(broker, redis):
            await broker.publish(reported("i-1"), stream=streams.INCIDENT_REPORTED.name)
            (_, letter), = await poll_until(lambda: client.xrange("dlq.incident.reported"),
                                            "the dead letter", 15)
    await redis.aclose()
    client.close()
    assert letter[b"attempts"] == str(max_deliveries).encode()
    assert letter[b"reason"].startswith(b"ValidationError: phone: int_parsing")
    assert PHONE.encode() not in letter[b"reason"]
    assert PHONE.encode() in letter[b"payload"]  # the event itself, for the admin's replay
    assert "ValidationError" in caplog.text
    assert PHONE not in caplog.text and "13800138000" not in caplog.text.replace(" ", "")


async def test_retention_keeps_what_a_declared_group_not_yet_created_will_read(
        clean_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    # Redis came back empty, intake reported again before dispatch (re-)created its group
    # at 0; or dispatch is not deployed yet. What dispatch has not read is not trimmed.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    stream = streams.INCIDENT_REPORTED.name
    now_ms = int(time.time() * 1000)
    await redis.xadd(stream, {"n": "old"}, id=f"{now_ms - 40 * DAY_MS}-0")
    await redis.xadd(stream, {"n": "new"})
    with caplog.at_level(logging.WARNING, logger="shared.retention"):
        removed = await trim_stream(redis, stream, retention_s=30 * 86400,
                                    groups=streams.INCIDENT_REPORTED.consumers)
    assert removed == 0 and await redis.xlen(stream) == 2
    assert any("dispatch" in r.getMessage() and stream in r.getMessage()
               for r in caplog.records)
    await redis.aclose()


async def test_a_hung_handler_is_cancelled_and_dead_lettered_and_holds_up_nothing_behind_it(
        clean_redis: str) -> None:
    handled: list[str] = []

    async def handler(event: UnitStatus) -> None:
        if event.unit_id == "hung":
            await asyncio.Event().wait()  # never returns by itself
        handled.append(event.unit_id)

    cfg = settings(clean_redis, max_deliveries=2, claim_idle_ms=200, handler_timeout_s=0.5)
    broker = create_broker(cfg)
    consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
    redis = Redis.from_url(clean_redis)
    client = sync_redis.Redis.from_url(clean_redis)
    async with consuming(broker, redis):
        for unit_id in ("hung", "fine"):
            await broker.publish(status(unit_id), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: handled == ["fine"], "the event behind the hung one", 5)
        (_, letter), = await poll_until(lambda: client.xrange("dlq.unit.status"),
                                        "the hung event's dead letter", 15)
        await poll_until(lambda: pending(clean_redis, "unit.status", "dispatch") == 0,
                         "nothing left pending")
    await redis.aclose()
    client.close()
    assert letter[b"attempts"] == b"2"
    assert letter[b"reason"] == b"HandlerTimeout: still running after 0.5 s, cancelled"
