"""The hops GET /v1/pipeline reads, and its thresholds, against the stream map, dispatch's
Redis user and the default policy's deadlines."""

from __future__ import annotations

from services.dispatch import pipeline
from shared import streams
from shared.policy import load_policy
from tools.redis_acl import template


def test_each_hop_is_a_declared_group_of_a_stream_dispatch_s_redis_user_may_read() -> None:
    (user,) = [line for line in template().splitlines() if line.startswith("user dispatch ")]
    for hop in pipeline.HOPS:
        assert hop.group in streams.by_name(hop.stream).consumers, hop
        assert f" ~{hop.stream} " in user, hop


def test_orders_and_reports_are_said_behind_well_within_a_p1_s_deadline() -> None:
    """Said after a third of a P1's acknowledge deadline at most: the dispatcher still has
    the rest of it to reach the team by radio."""
    policy = load_policy()
    for hop in (h for h in pipeline.HOPS if h.name in ("reports", "orders", "answers")):
        assert hop.behind_s <= policy.deadlines_s["P1"] / 3, hop
    # the feed is said silent well before the last fixes stop counting for team choice
    assert pipeline.POSITIONS_SILENT_S <= policy.fix_max_age_s / 2
