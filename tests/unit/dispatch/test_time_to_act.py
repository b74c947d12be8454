"""The time-to-act histograms count as the KPIs do (services.dispatch.api.compute_kpis)."""

from __future__ import annotations

from services.dispatch.engine import _since_report


def test_a_reporting_system_s_fast_clock_gives_the_time_since_dispatch_had_the_report() -> None:
    # the 110 system's clock 2 minutes ahead: its reported_at is still to come when dispatch
    # receives the report; assigned 4 s after receipt is 4 s to assign, not 0
    inc = {"reported_at": "2026-12-06T08:02:00+00:00", "received_at": "2026-12-06T08:00:00+00:00"}
    assert _since_report(inc, "2026-12-06T08:00:04+00:00") == 4.0


def test_a_report_made_before_dispatch_had_it_counts_from_the_report() -> None:
    inc = {"reported_at": "2026-12-06T07:59:50+00:00", "received_at": "2026-12-06T08:00:00+00:00"}
    assert _since_report(inc, "2026-12-06T08:00:04+00:00") == 14.0
    assert _since_report({"reported_at": "2026-12-06T07:59:50+00:00"},
                         "2026-12-06T08:00:04+00:00") == 14.0
