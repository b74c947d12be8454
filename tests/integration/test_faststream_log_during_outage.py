"""What the log says of the subscribers' reads while Redis refuses writes or is away (hours,
for a full disk): FastStream logged an ERROR with a traceback per subscriber every few
seconds ("Message fetch error"), or, for a refusal (MISCONF), restarted the read at once,
an INFO line at each restart (thousands a second per subscriber), and one ERROR per
process and hour that then hid every other subscriber's failure and the next outage's.
Instead: one WARNING per subscriber when its reads start failing, saying why, a reminder at
most every 30 s, and one when they work again; every other FastStream error as it was."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import streams
from shared.bus import consume, consuming, create_broker, read_failures
from shared.events import UnitStatus
from shared.http import PersistenceFailingError
from shared.logging import faststream_logger
from shared.settings import ServiceSettings
from tests.helpers import poll_until
from tests.integration.test_redis_disk_failing import disk_fails, disk_freed, redis_server
from tools.redis_server import RedisServer

DISK = "refusing writes, it cannot save to disk"
# The group's two subscribers (shared.bus): the reader and the reclaimer.
SUBSCRIBERS = ("reading unit.status for group dispatch (consumer log-test)",
               "reading unit.status for group dispatch (consumer log-test-reclaim)")


def _status(unit_id: str) -> UnitStatus:
    return UnitStatus(district="d", unit_id=unit_id, status="available", agency_id="a",
                      agency_kind="police", mode="car")


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, str]]:
    return [(r.levelno, r.name, r.getMessage()) for r in caplog.records]


def _lines_of(caplog: pytest.LogCaptureFixture, subscriber: str, says: str) -> list[str]:
    return [m for _, _, m in _lines(caplog) if m.startswith(subscriber) and says in m]


def _faststream_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, str]]:
    return [line for line in _lines(caplog) if line[1].startswith("faststream")]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # INFO: FastStream's supervisor logs each restart of a read at INFO
    caplog.set_level(logging.INFO)
    yield caplog


async def _refused_reads(url: str, *, at_least: int) -> int:
    """Waits until Redis refused `at_least` of the subscribers' commands."""
    client = Redis.from_url(url, decode_responses=True)

    async def refused() -> int:
        stats = await client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("rejected_calls", 0))
                   for c in ("xreadgroup", "xautoclaim", "ping"))

    try:
        return await poll_until(lambda: _at_least(refused, at_least),
                                f"{at_least} refused reads", 60)
    finally:
        await client.aclose()


async def _nothing_pending(redis: Redis) -> bool:
    return int((await redis.xpending(streams.UNIT_STATUS.name, "dispatch"))["pending"]) == 0


async def _at_least(count, n: int) -> int | None:  # type: ignore[no-untyped-def]
    value = int(await count())
    return value if value >= n else None


async def test_reads_refused_for_the_disk_log_one_warning_per_subscriber_and_one_when_they_work(
        tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    with redis_server(tmp_path) as url:
        cfg = ServiceSettings(redis_url=url, admin_token="test-admin-token", consumer_name="log-test")
        redis = Redis.from_url(url)
        seen: list[str] = []

        async def handler(event: UnitStatus) -> None:
            seen.append(event.unit_id)

        broker = create_broker(cfg)
        consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
        try:
            async with consuming(broker, redis):
                await broker.publish(_status("u-before"), stream=streams.UNIT_STATUS.name)
                await poll_until(lambda: "u-before" in seen, "the event before handled", 30)
                await poll_until(lambda: _nothing_pending(redis), "the event acknowledged", 30)
                logs.clear()
                disk_fails(url)
                try:
                    for subscriber in SUBSCRIBERS:
                        await poll_until(lambda s=subscriber: _lines_of(logs, s, "failed"),
                                         f"{subscriber}: its failure logged", 60)
                    refused = await _refused_reads(url, at_least=6)
                    during = _lines(logs)
                    # a refused read waits and reads again in the same task: FastStream's
                    # supervisor restarted it at once (its PING refused too), ~1,400 times a
                    # second per subscriber, keeping every ended task (hundreds of MB)
                    tries = [f.count for f in read_failures(broker)]
                    kept = [len(getattr(sub, "tasks", ())) for sub in broker.subscribers]
                finally:
                    disk_freed(url, tmp_path)
                for subscriber in SUBSCRIBERS:
                    await poll_until(lambda s=subscriber: _lines_of(logs, s, "works again"),
                                     f"{subscriber}: its reads working again logged", 60)
                await broker.publish(_status("u-after"), stream=streams.UNIT_STATUS.name)
                await poll_until(lambda: "u-after" in seen, "the event after handled", 30)
        finally:
            disk_freed(url, tmp_path)
            await redis.aclose()
    assert len(tries) == 2 and max(tries) <= 3 * refused, (tries, refused)
    assert max(kept) <= 2, kept  # the read task and its supervisor's, not one per restart
    # while the disk failed (Redis refused `refused` reads): one warning per subscriber
    # saying why, FastStream itself silent, nothing at ERROR
    assert [m for m in during if m[0] >= logging.ERROR] == [], during
    assert [m for m in during if m[1].startswith("faststream")] == [], (refused, during[:20])
    for subscriber in SUBSCRIBERS:
        started = [m for lvl, name, m in during if m.startswith(subscriber) and "failed" in m]
        assert len(started) == 1, (refused, during)
        assert DISK in started[0] and "PersistenceFailingError" in started[0], started
        assert all(lvl == logging.WARNING and name == "shared.bus"
                   for lvl, name, m in during if m.startswith(subscriber)), during
        ended = _lines_of(logs, subscriber, "works again")
        assert len(ended) == 1, _lines(logs)


async def test_reads_of_a_redis_that_is_away_log_one_warning_and_one_when_it_is_back(
        tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path).start()
    try:
        cfg = ServiceSettings(redis_url=server.url, admin_token="test-admin-token", consumer_name="log-test")
        redis = Redis.from_url(server.url)
        broker = create_broker(cfg)
        seen: list[str] = []

        async def handler(event: UnitStatus) -> None:
            seen.append(event.unit_id)

        consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
        try:
            async with consuming(broker, redis, watch_interval_s=0.5):
                logs.clear()
                server.stop()
                for subscriber in SUBSCRIBERS:
                    await poll_until(lambda s=subscriber: _lines_of(logs, s, "failed"),
                                     f"{subscriber}: its failure logged", 60)
                # FastStream tries again 5 s after a failed read (after redis-py's own
                # retries): wait for a second failed read of each, so that the log shows
                # what repeated failures make of it
                await poll_until(lambda: _failed_reads(broker) >= 2 * len(SUBSCRIBERS),
                                 "a second failed read of each subscriber", 90)
                during = _lines(logs)
                server.start()
                for subscriber in SUBSCRIBERS:
                    await poll_until(lambda s=subscriber: _lines_of(logs, s, "works again"),
                                     f"{subscriber}: its reads working again logged", 90)
                await broker.publish(_status("u-back"), stream=streams.UNIT_STATUS.name)
                await poll_until(lambda: "u-back" in seen, "the event after handled", 30)
        finally:
            await redis.aclose()
    finally:
        server.stop()
    assert [m for m in during if m[0] >= logging.ERROR] == [], during
    assert [m for m in during if m[1].startswith("faststream")] == [], during
    for subscriber in SUBSCRIBERS:
        started = [m for _, _, m in during if m.startswith(subscriber) and "failed" in m]
        assert len(started) == 1, during
        assert "not answering" in started[0], started


def _failed_reads(broker: object) -> int:
    """Failed reads the subscribers' read logs counted (shared.bus)."""
    from shared.bus import read_failures

    return sum(f.count for f in read_failures(broker))  # type: ignore[arg-type]


def _record(msg: str, exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("faststream", level, __file__, 1, msg, None, exc_info)


@pytest.mark.parametrize("exc", [
    ValueError("a parser's bug"),
    PersistenceFailingError("MISCONF ..."),  # from a subscriber whose reads nobody logs
    RedisConnectionError("Connection refused"),
])
def test_every_other_faststream_error_is_logged_as_it_was(exc: BaseException) -> None:
    logger = faststream_logger()
    for message in ("Message fetch error",
                    "Task-7 raised an exception, retrying...\nIf this behavior causes issues"):
        record = _record(message, exc)
        assert all(f.filter(record) for f in logger.filters)
        assert (record.levelno, record.getMessage()) == (logging.ERROR, message)
