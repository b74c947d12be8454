"""Whether a report waits for its AOF fsync (api.FsyncWait), as the server's answers change
under a running intake; a hand-written fake stands in for the server's INFO."""

from __future__ import annotations

from typing import Any

from services.intake.api import FsyncWait


class FakeRedis:
    """INFO of a Redis `version` with AOF `aof` on or off; counts the questions."""

    def __init__(self, version: str, *, aof: bool) -> None:
        self.version, self.aof, self.asked = version, aof, 0

    async def info(self, section: str) -> dict[str, Any]:
        self.asked += 1
        if section == "server":
            return {"redis_version": self.version}
        return {"aof_enabled": int(self.aof)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_aof_switched_on_under_a_running_intake_is_found_within_a_minute() -> None:
    # Redis 7.4 ran without AOF when intake started (no fsync to wait for); the operator
    # then switched it on (CONFIG SET appendonly yes). Reports went on being answered 202
    # without their fsync until intake was restarted: a power cut could lose them.
    redis, clock = FakeRedis("7.4.11", aof=False), Clock()
    fsync = FsyncWait(redis, timeout_ms=1000, clock=clock)  # type: ignore[arg-type]
    assert await fsync.timeout_ms() is None
    redis.aof = True
    clock.now += 5
    assert await fsync.timeout_ms() is None  # not asked at every report
    clock.now += 60
    assert await fsync.timeout_ms() == 1000


async def test_a_server_that_confirms_fsyncs_is_not_asked_again_until_it_refuses_one() -> None:
    redis, clock = FakeRedis("7.4.11", aof=True), Clock()
    fsync = FsyncWait(redis, timeout_ms=1000, clock=clock)  # type: ignore[arg-type]
    assert await fsync.timeout_ms() == 1000
    asked = redis.asked
    clock.now += 3600
    assert await fsync.timeout_ms() == 1000 and redis.asked == asked
    redis.aof = False  # CONFIG SET appendonly no: the next WAITAOF is refused
    fsync.refused()
    assert await fsync.timeout_ms() is None


async def test_no_timeout_configured_never_waits_nor_asks() -> None:
    redis = FakeRedis("7.4.11", aof=True)
    assert await FsyncWait(redis, timeout_ms=0).timeout_ms() is None  # type: ignore[arg-type]
    assert redis.asked == 0
