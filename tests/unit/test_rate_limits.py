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


async def test_a_locked_out_address_has_issued_tokens_checked_and_their_failures_counted(
        clock: list[float]) -> None:
    """shared.http.AuthMiddleware over AuthFailures: 3 failures a minute lock out for 60 s."""
    from shared.http import AuthFailures, AuthMiddleware
    from shared.tokens import SYSTEM_KEY_PREFIX, service_key

    admin_token, good = "the-admin-token-of-16", f"{SYSTEM_KEY_PREFIX}{'g' * 43}"
    checked: list[str] = []

    async def resolve(token: str) -> Principal | None:
        checked.append(token)
        return Principal(kind="system", subject="sys1") if token == good else None

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["state"]["principal"].kind.encode()})

    auth = AuthMiddleware(app, admin_token=admin_token, resolve=resolve,
                          failures=AuthFailures("3/minute", lockout_s=60))

    async def ask(token: str) -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        await auth({"type": "http", "path": "/v1/x", "method": "GET", "client": ("10.0.0.1", 1),
                    "headers": [(b"authorization", f"Bearer {token}".encode())]}, receive, send)
        return sent[0]["status"]

    unknown = [f"{SYSTEM_KEY_PREFIX}{n:043d}" for n in range(6)]
    assert [await ask(t) for t in unknown[:3]] == [401] * 3  # locked out for 60 s
    checked.clear()
    assert await ask(admin_token) == 429 and await ask("junk") == 429 and not checked
    assert await ask(good) == 200 and await ask(service_key(admin_token)) == 200
    clock[0] += 30
    assert [await ask(t) for t in unknown[3:]] == [401] * 3  # checked, and counted:
    assert checked == [good, *unknown[3:]]
    clock[0] += 45  # 75 s after the first lockout began: the second one holds
    assert await ask(admin_token) == 429
    clock[0] += 16
    assert await ask(admin_token) == 200


def test_every_kind_of_caller_has_a_limit_of_its_own_by_default() -> None:
    """A kind added later (an agency's desk, outside the police) with no default is never
    limited: one runaway browser could starve the command room's."""
    from typing import get_args

    assert set(get_args(http.PrincipalKind)) <= set(http.DEFAULT_RATE_LIMITS)


def test_an_agency_desk_and_a_coordinator_are_limited_as_a_dispatcher_is() -> None:
    from shared.settings import ServiceSettings

    limits = ServiceSettings(admin_token="a" * 20, rate_limit_dispatcher="7/second").rate_limits()
    assert limits["agency"] == limits["dispatcher"] == limits["inspector"] == "7/second"
    assert limits["coordinator"] == "7/second"
