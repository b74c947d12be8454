"""A position fix's time: what a phone's clock says, as far as it can be true."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.volunteers.domain.positions import PositionIn, fix_time

NOW = datetime(2026, 11, 23, 23, 59, 50, tzinfo=UTC)


def fix(at: datetime | None) -> PositionIn:
    return PositionIn(lat=22.0, lon=108.0, at=at)


def test_a_fix_stamped_slightly_ahead_was_taken_no_later_than_now() -> None:
    assert fix_time(fix(NOW + timedelta(seconds=25)), now=NOW, max_future_s=30) == NOW


def test_a_fix_stamped_in_the_past_or_unstamped_keeps_its_time() -> None:
    earlier = NOW - timedelta(seconds=40)
    assert fix_time(fix(earlier), now=NOW, max_future_s=30) == earlier
    assert fix_time(fix(None), now=NOW, max_future_s=30) == NOW

