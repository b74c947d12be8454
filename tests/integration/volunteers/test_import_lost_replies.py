"""The roster import's journal against a real Redis when a step's reply is lost (redis-py
sends it again) and when a removal meets a journal that a crashed import left."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.volunteers.config import Settings
from services.volunteers.domain.roster import parse_document
from services.volunteers.store import imports, keys
from services.volunteers.store import roster as roster_store
from shared.bus import create_redis
from shared.events import UnitStatus

from ..dispatch.test_writes_once import ReplyEater
from .conftest import ADMIN_TOKEN, running, stream_events
from .test_city_scale import city

NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
LEDGER_TTL_S = 86_400


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def import_through(url: str, doc: dict[str, Any]) -> imports.ImportResult:
    """The import as the service runs it, on the service's own client (its retries)."""
    client = create_redis(Settings(redis_url=url, admin_token=ADMIN_TOKEN))
    try:
        return await imports.import_roster(client, doc=parse_document(doc), now=NOW,
                                           max_patrol_hours=14, ledger_ttl_s=LEDGER_TTL_S)
    finally:
        await client.aclose()


async def test_a_step_of_rows_whose_reply_was_lost_does_not_drop_the_next_step(
    clean_redis: str, redis: Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The EXEC of a step ran (and took the step off the journal) but its reply was lost:
    redis-py raises WatchError, and the step ran again, taking the NEXT step off unwritten."""
    monkeypatch.setattr(imports, "STEP_COMMANDS", 200)
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        proxy.marker = b"LPOP"  # the first step's transaction
        await import_through(proxy_url, city("lost", members=600, teams=200, zones=4))
    assert proxy.eaten == 1
    assert not await redis.exists(keys.import_journal())
    counts = [await redis.zcard(f"roster:idx:{entity}:lost")
              for entity in ("agencies", "zones", "teams", "members")]
    assert counts == [60, 4, 200, 600]


async def test_a_step_of_teams_whose_reply_was_lost_announces_each_team_once(
    clean_redis: str, redis: Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The script of a step of teams ran whole (and took the step off) but its reply was
    lost: redis-py sent it again, the teams were announced twice, and the next step's teams
    never (dispatch kept their old profile)."""
    monkeypatch.setattr(imports, "STEP_COMMANDS", 200)
    await import_through(clean_redis, city("twice", members=300, teams=200, zones=4))
    await redis.delete("unit.status")
    sha = await redis.script_load(imports._SETTLE)
    assert sha == hashlib.sha1(imports._SETTLE.encode()).hexdigest()
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        proxy.marker = sha.encode()  # the first step of teams
        result = await import_through(
            proxy_url, city("twice", members=300, teams=200, zones=4, skills=("first_aid",)))
    assert proxy.eaten == 1
    raw = Redis.from_url(clean_redis)  # the events are binary, as other services read them
    try:
        announced = Counter(e.unit_id for e in await stream_events(raw, "unit.status",
                                                                   UnitStatus))
    finally:
        await raw.aclose()
    assert len(announced) == 200 and set(announced.values()) == {1}
    assert result.announced == 200


async def test_a_removal_waits_for_the_journal_a_crashed_import_left(
    clean_redis: str, redis: Redis,
) -> None:
    """A crashed import's lock runs out before the service finishes its journal: a member
    removed meanwhile was written back by the journal's later step (on the team's roster
    again, with no devices and no points)."""
    base = city("gone", members=30, teams=10, zones=4)
    async with running(clean_redis) as volunteers:
        await volunteers.import_district(base)
    renamed = dict(base, members=[dict(m, name=f"{m['name']} (renamed)")
                                  for m in base["members"]])
    async with imports.import_lock(redis) as token:  # the import committed, then died
        plan, changes, _ = await imports._plan(redis, parse_document(renamed))
        await imports._commit(redis, token, imports.journal_steps(
            plan, changes, now=NOW, max_patrol_hours=14, ledger_ttl_s=LEDGER_TTL_S))
    assert await redis.exists(keys.import_journal())  # its lock ran out; nobody finished yet
    broker = RedisBroker(clean_redis)
    await broker.connect()
    try:
        removal = asyncio.create_task(roster_store.delete_member(
            redis, broker=broker, member_id="gone-m00000", now=NOW, max_patrol_hours=14,
            ledger_ttl_s=LEDGER_TTL_S))
        await asyncio.wait({removal}, timeout=0.5)
        async with imports.import_lock(redis) as token:  # the service's sweep
            await imports.finish(redis, token)
        assert await removal
    finally:
        await broker.stop()
    assert not await redis.exists(keys.member("gone-m00000"))
    assert "gone-m00000" not in await redis.smembers(keys.team_members("gone-t00000"))


async def test_a_commit_whose_reply_was_lost_is_not_refused(
    clean_redis: str, redis: Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The RENAME of the journal into place ran but its reply was lost: the commit, run
    again, found no staging key (ERR no such key), and the import answered 500 though it
    was committed (the sweep wrote it later)."""
    monkeypatch.setattr(imports, "STEP_COMMANDS", 200)
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        proxy.marker = b"RENAME"
        result = await import_through(proxy_url, city("commit", members=90, teams=30, zones=4))
    assert proxy.eaten == 1
    assert result.plan.counts["members"]["created"] == 90
    assert not await redis.exists(keys.import_journal())
    assert await redis.zcard("roster:idx:members:commit") == 90


async def test_a_lock_taken_whose_reply_was_lost_is_held(clean_redis: str, redis: Redis) -> None:
    """The SET NX of the import lock ran but its reply was lost: redis-py sent it again, it
    found the key (its own) and answered no, so the import waited out its own lock (30 s)
    and answered 503, and the sweep skipped a crashed import's journal for as long."""
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        client = create_redis(Settings(redis_url=proxy_url, admin_token=ADMIN_TOKEN))
        try:
            await client.ping()
            proxy.marker = keys.import_lock().encode()
            async with imports.import_lock(client, wait_s=0) as token:
                assert await redis.get(keys.import_lock()) == token
        finally:
            await client.aclose()
    assert proxy.eaten == 1
    assert not await redis.exists(keys.import_lock())  # released
