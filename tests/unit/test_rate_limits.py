"""shared.http.RateLimits: a burst up to the limit, then one per interval, per token."""

from __future__ import annotations

import pytest

from shared import http
from shared.http import Principal, RateLimits


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(http.time, "monotonic", lambda: now[0])
    return now


def device(n: int) -> Principal:
    return Principal(kind="device", subject=f"dev{n}")


def test_a_token_may_send_its_whole_limit_at_once_then_waits(clock: list[float]) -> None:
    limits = RateLimits({"device": "5/second"})
    assert [limits.retry_after(device(1)) for _ in range(5)] == [None] * 5
    assert limits.retry_after(device(1)) == 1
    assert limits.retry_after(device(2)) is None  # another token is not affected


def test_the_allowance_comes_back_one_interval_at_a_time(clock: list[float]) -> None:
    limits = RateLimits({"device": "5/second"})
    for _ in range(5):
        limits.retry_after(device(1))
    clock[0] += 0.2
    assert limits.retry_after(device(1)) is None
    assert limits.retry_after(device(1)) == 1
    clock[0] += 1.0
    assert [limits.retry_after(device(1)) for _ in range(5)] == [None] * 5


def test_retry_after_says_how_long_to_wait(clock: list[float]) -> None:
    limits = RateLimits({"system": "2/minute"})
    assert limits.retry_after(Principal(kind="system", subject="s")) is None
    assert limits.retry_after(Principal(kind="system", subject="s")) is None
    assert limits.retry_after(Principal(kind="system", subject="s")) == 30


def test_kinds_without_a_limit_are_never_limited(clock: list[float]) -> None:
    limits = RateLimits({"device": ""})
    assert all(limits.retry_after(device(1)) is None for _ in range(1000))


def test_old_tokens_are_forgotten(clock: list[float]) -> None:
    limits = RateLimits({"device": "20/second"})
    for n in range(RateLimits._PRUNE_EVERY - 1):
        limits.retry_after(device(n))
    clock[0] += 5
    limits.retry_after(device(-1))
    assert len(limits._tat) == 1
