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


def test_orders_and_reports_are_said_behind_after_a_third_of_a_p1_s_deadline() -> None:
    """Said after a third of a P1's acknowledge deadline: the dispatcher still has the rest
    of it to reach the team by radio. The shipped policy's 30 s: 10 s."""
    policy = load_policy()
    for hop in (h for h in pipeline.HOPS if h.name in ("reports", "orders", "answers")):
        assert hop.threshold_s(policy) == policy.deadlines_s["P1"] / 3 == 10.0, hop
    # the others are their own figures, not the policy's
    for hop in (h for h in pipeline.HOPS if h.name in ("statuses", "positions")):
        assert hop.behind_s is not None and hop.threshold_s(policy) == hop.behind_s, hop
    # the feed is said silent well before the last fixes stop counting for team choice
    assert pipeline.POSITIONS_SILENT_S <= policy.fix_max_age_s / 2
