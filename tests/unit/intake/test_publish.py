"""The durable paths: the record script, or a retry's published mark, then WAITAOF,
in one round trip on one connection (Redis 7.2+, so a hand-written fake stands in for the
server here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ResponseError

from services.intake import store
from shared import streams
from shared.events import Location


class FakePipeline:
    def __init__(self, redis: FakeRedis, *, transaction: bool) -> None:
        self.redis = redis
        self.transaction = transaction
        self.queued: list[tuple[Any, ...]] = []
        self.executed = False

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> FakePipeline:
        self.queued.append(("EVALSHA", *keys_and_args[:numkeys]))
        return self

    def hset(self, key: str, field: str, value: str) -> FakePipeline:
        self.queued.append(("HSET", key, field, value))
        return self

    def execute_command(self, *args: Any) -> FakePipeline:
        self.queued.append(args)
        return self

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.executed = True
        waited = self.redis.fsynced
        replies = {"HSET": 0, "EVALSHA": ["recorded", "inc_1"],
                   "WAITAOF": waited if isinstance(waited, Exception) else [waited, 0]}
        return [replies[command[0]] for command in self.queued]


class FakeRedis:
    """Answers WAITAOF with `fsynced` local copies (or that error); records every later
    write."""

    def __init__(self, *, fsynced: int | Exception) -> None:
        self.fsynced = fsynced
        self.pipelines: list[FakePipeline] = []
        self.after: list[tuple[Any, ...]] = []

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        pipe = FakePipeline(self, transaction=transaction)
        self.pipelines.append(pipe)
        return pipe

    async def hset(self, key: str, field: str, value: str) -> int:
        self.after.append(("HSET", key, field, value))
        return 0


async def test_a_retry_confirms_the_recorded_event_with_the_mark_then_waitaof() -> None:
    # nothing published again: the entry is in the stream since the record's script
    redis = FakeRedis(fsynced=1)
    assert await store.confirm_reported(redis, incident_id="inc_1",  # type: ignore[arg-type]
                                        waitaof_timeout_ms=1000) == "kept"
    [pipe] = redis.pipelines
    assert not pipe.transaction and pipe.executed  # inside MULTI, WAITAOF would not wait
    assert pipe.queued == [("HSET", "intake:incident:inc_1", "published", "1"),
                           ("WAITAOF", 1, 0, 1000)]
    assert redis.after == []


async def test_an_unconfirmed_fsync_leaves_the_incident_for_the_next_retry() -> None:
    redis = FakeRedis(fsynced=0)
    assert await store.confirm_reported(redis, incident_id="inc_1",  # type: ignore[arg-type]
                                        waitaof_timeout_ms=1000) == "unconfirmed"
    assert redis.after == [("HSET", "intake:incident:inc_1", "published", "0")]


async def test_without_a_timeout_nothing_waits() -> None:
    redis = FakeRedis(fsynced=0)
    assert await store.confirm_reported(redis, incident_id="inc_1") == "kept"  # type: ignore[arg-type]
    assert redis.pipelines == []
    assert redis.after == [("HSET", "intake:incident:inc_1", "published", "1")]


async def _record(redis: FakeRedis) -> store.Recording:
    return await store.record_incident(
        redis, incident_id="inc_1", system_id="sys_1", external_ref="r1",  # type: ignore[arg-type]
        category="noise", priority="P4", district="d1", location=Location(lat=22.8, lon=108.3),
        reported_at=datetime(2026, 11, 23, 20, 0, tzinfo=UTC), linked_to=None, trace_id=None,
        entry=b"the incident.reported entry", waitaof_timeout_ms=1000)


async def test_waitaof_follows_the_record_script_on_the_same_connection() -> None:
    redis = FakeRedis(fsynced=1)
    assert await _record(redis) == store.Recording()
    [pipe] = redis.pipelines
    assert not pipe.transaction and pipe.executed
    assert pipe.queued == [("EVALSHA", "intake:ref:sys_1:r1", "intake:incident:inc_1",
                            "intake:open:d1:noise", streams.INCIDENT_REPORTED.name),
                           ("WAITAOF", 1, 0, 1000)]
    assert redis.after == []


async def test_an_unconfirmed_fsync_of_a_recorded_report_leaves_it_for_a_retry() -> None:
    redis = FakeRedis(fsynced=0)
    assert await _record(redis) == store.Recording(unconfirmed=True)
    assert redis.after == [("HSET", "intake:incident:inc_1", "published", "0")]


# What Redis 7.2+ answers a WAITAOF with AOF switched off (CONFIG SET appendonly no)
AOF_OFF = ResponseError("WAITAOF cannot be used when numlocal is set but appendonly is disabled.")


async def test_a_report_meeting_aof_switched_off_is_recorded_and_says_the_waitaof_was_refused(
        ) -> None:
    redis = FakeRedis(fsynced=AOF_OFF)
    assert await _record(redis) == store.Recording(waitaof_refused=True)
    assert redis.after == []  # published as recorded: nothing to wait for


async def test_a_retry_meeting_aof_switched_off_is_kept_and_says_the_waitaof_was_refused(
        ) -> None:
    redis = FakeRedis(fsynced=AOF_OFF)
    assert await store.confirm_reported(redis, incident_id="inc_1",  # type: ignore[arg-type]
                                        waitaof_timeout_ms=1000) == "waitaof_refused"
    assert redis.after == []
