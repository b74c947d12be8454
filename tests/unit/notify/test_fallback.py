"""When the fallback steps are due: all of them, and time to answer, before the order's deadline."""

from __future__ import annotations

import pytest

from services.notify.domain.fallback import wait_before_step

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
