"""Whose receipt means the team has the order: a member on its shift, or anybody when nobody
is on it or volunteers could not say."""

from __future__ import annotations

import pytest

from services.notify.domain.fallback import team_has_order


@pytest.mark.parametrize(("confirmed_by", "on_shift", "has_it"), [
    (set(), {"on"}, False),                # nobody confirmed
    (set(), None, False),
    ({"off"}, {"on"}, False),              # at home, the page open: the crew still offline
    ({"off", "on"}, {"on", "mate"}, True),
    ({"mate"}, {"on", "mate"}, True),
    ({"off"}, set(), True),                # nobody on shift: called in by the command room
    ({"off"}, None, True),                 # volunteers could not say: as before
])
def test_only_a_receipt_from_the_shift_means_the_team_has_the_order(
        confirmed_by: set[str], on_shift: set[str] | None, has_it: bool) -> None:
    assert team_has_order(confirmed_by=confirmed_by, on_shift=on_shift) is has_it
