"""When the fallback steps are due: all of them, and time to answer, before the order's deadline."""

from __future__ import annotations

import httpx
import pytest

from services.notify.channels import refused, retry_after
from services.notify.domain.fallback import MAX_TRIES, retry_wait, wait_before_step

NOW = 1_000_000.0
AFTER_S = 30.0  # FALLBACK_AFTER_S as shipped


def chain(deadline_s: float | None, steps: int = 2) -> list[float]:
    """When each step of a chain of `steps` goes, in seconds after the order was issued,
    every step reaching somebody."""
    ack_by = None if deadline_s is None else NOW + deadline_s
    at, due = NOW, []
    for left in range(steps, 0, -1):
        at += wait_before_step(now=at, ack_by=ack_by, after_s=AFTER_S, steps_left=left)
        due.append(round(at - NOW, 6))
    return due


@pytest.mark.parametrize(("priority", "deadline_s", "expected"), [
    ("P1", 30, [10, 20]),     # Web Push at a third, SMS at two thirds: 10 s left to answer
    ("P2", 60, [20, 40]),
    ("P3", 120, [30, 60]),    # never longer than FALLBACK_AFTER_S
    ("P4", 300, [30, 60]),
])
def test_every_step_goes_before_the_deadline_with_time_left_to_answer(
        priority: str, deadline_s: float, expected: list[float]) -> None:
    due = chain(deadline_s)
    assert due == expected, priority
    assert due[-1] < deadline_s


def test_an_order_without_a_deadline_waits_fallback_after_s_before_each_step() -> None:
    assert chain(None) == [30, 60]
    assert chain(None, steps=3) == [30, 60, 90]


def test_a_longer_chain_is_spread_over_the_time_left() -> None:
    assert chain(30, steps=3) == [7.5, 15, 22.5]
    assert chain(30, steps=1) == [15]


def test_a_step_that_reached_nobody_is_followed_by_the_next_at_once() -> None:
    for ack_by in (None, NOW + 30):
        assert wait_before_step(now=NOW, ack_by=ack_by, after_s=AFTER_S, steps_left=1,
                                reached=False) == 0


def test_a_deadline_already_past_or_a_zero_wait_is_at_once() -> None:
    assert wait_before_step(now=NOW, ack_by=NOW - 5, after_s=AFTER_S, steps_left=2) == 0
    assert wait_before_step(now=NOW, ack_by=NOW + 30, after_s=0, steps_left=2) == 0
    assert wait_before_step(now=NOW, ack_by=None, after_s=0, steps_left=2) == 0


def test_a_failed_message_is_tried_again_sooner_than_fallback_after_s_and_before_the_deadline(
        ) -> None:
    waits = [retry_wait(now=NOW, ack_by=None, tries=n, after_s=AFTER_S)
             for n in range(1, MAX_TRIES + 1)]
    assert waits == [1, 2, 4, 8, 16] + [30] * (MAX_TRIES - 6) + [None]
    assert sum(w for w in waits if w) > 180  # a gateway down for minutes, waited out
    assert retry_wait(now=NOW, ack_by=None, tries=1, after_s=0.2) == 0.2
    assert retry_wait(now=NOW, ack_by=None, tries=MAX_TRIES, after_s=AFTER_S) is None
    # the service's Retry-After is waited for, unless the order is withdrawn by then
    assert retry_wait(now=NOW, ack_by=NOW + 60, tries=1, after_s=AFTER_S,
                      retry_after_s=20) == 20
    assert retry_wait(now=NOW, ack_by=NOW + 15, tries=1, after_s=AFTER_S,
                      retry_after_s=20) is None
    assert retry_wait(now=NOW, ack_by=NOW + 0.5, tries=1, after_s=AFTER_S) is None


@pytest.mark.parametrize(("status", "headers", "again", "after"), [
    (503, {}, True, None), (502, {}, True, None), (429, {"Retry-After": "7"}, True, 7.0),
    (429, {"Retry-After": "soon"}, True, None), (408, {}, True, None),
    (400, {}, False, None), (401, {}, False, None), (413, {}, False, None),
])
def test_a_refusal_is_worth_trying_again_only_when_it_says_not_now(
        status: int, headers: dict[str, str], again: bool, after: float | None) -> None:
    outcome = refused(httpx.Response(status, headers=headers, text="secret body +86138"))
    assert (outcome.status, outcome.detail) == ("failed", f"HTTP {status}")  # never the body
    assert (outcome.retry, outcome.retry_after_s) == (again, after)


def test_retry_after_as_an_http_date() -> None:
    assert retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now=0) == 30
    assert retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now=100) == 0
    assert retry_after(None) is None and retry_after("") is None
