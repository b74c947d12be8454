"""A socket's heartbeat phase: sockets that connect together must not beat in step."""

from __future__ import annotations

from services.notify.sockets import _first_beat_after


def test_first_beats_spread_over_the_whole_interval() -> None:
    phases = [_first_beat_after(20.0) for _ in range(2_000)]
    assert all(0.0 <= p <= 20.0 for p in phases)
    # Spread, not one instant: some sockets beat early in the interval, some late.
    assert min(phases) < 2.0 and max(phases) > 18.0
    assert len({round(p, 3) for p in phases}) > 1_000
