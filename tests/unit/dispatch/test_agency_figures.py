"""An agency's own figures for its contract reviews (review.agency_figures): its teams' orders
counted by what became of them, and timed from each order's offer to the team, not from the
report (the wait before the offer is no team's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.dispatch import review

OFFER = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)


def order(team: str, state: str, *, kind: str = "dispatch", **after_s: float) -> dict[str, str]:
    """An order of `team` offered at OFFER, each `<step>_at` `after_s` seconds after it."""
    return {"team_id": team, "team_name": f"Guard post {team}", "kind": kind, "state": state,
            "issued_at": OFFER.isoformat(),
            **{f"{step}_at": (OFFER + timedelta(seconds=s)).isoformat()
               for step, s in after_s.items()}}


def fight(priority: str = "P1") -> dict[str, str]:
    return {"category": "violence", "priority": priority}


def figures(*incidents: tuple[dict[str, str], list[dict[str, str]]]) -> dict[str, Any]:
    return review.agency_figures(incidents)


def test_orders_are_counted_by_what_became_of_them_and_by_team() -> None:
    got = figures(
        (fight(), [order("p3", "resolved", acknowledged=10, on_scene=100, resolved=900)]),
        (fight(), [order("p3", "declined", declined=5),
                   order("p4", "on_scene", acknowledged=20, on_scene=200)]),
        ({"category": "noise", "priority": "P4"},
         [order("p4", "timed_out", timed_out=300), order("p3", "withdrawn", withdrawn=40)]))
    assert (got["incidents"], got["orders"]) == (3, 5)
    assert got["by_category"] == {"violence": 2, "noise": 1}
    assert got["by_state"] == {"declined": 1, "on_scene": 1, "resolved": 1, "timed_out": 1,
                               "withdrawn": 1}
    assert (got["declines"], got["routing_timeouts"], got["withdrawn"], got["resolved"],
            got["handed_over"]) == (1, 1, 1, 1, 0)
    assert got["offer_to_acknowledge_s"] == {"p50": 15.0, "p90": 19.0, "count": 2}
    assert got["offer_to_scene_s"]["by_priority"] == {
        "P1": {"p50": 150.0, "p90": 190.0, "count": 2}}
    p3, p4 = got["by_team"]["p3"], got["by_team"]["p4"]
    assert (p3["team_name"], p3["orders"], p3["declines"], p3["routing_timeouts"]) == (
        "Guard post p3", 3, 1, 0)
    assert (p4["orders"], p4["declines"], p4["routing_timeouts"]) == (2, 0, 1)
    assert p3["offer_to_scene_s"] == {"p50": 100.0, "p90": 100.0, "count": 1}


def test_a_team_that_skipped_steps_took_the_order_and_was_there_by_its_first_answer() -> None:
    """The design lets answers skip steps: a post that answered "resolved" 240 s after the
    offer took it and was on scene by then; one that went en route first took it then."""
    got = figures((fight(), [order("p3", "resolved", resolved=240),
                             order("p4", "on_scene", en_route=30, on_scene=120)]))
    assert got["offer_to_acknowledge_s"] == {"p50": 135.0, "p90": 219.0, "count": 2}
    assert got["offer_to_scene_s"]["p50"] == 180.0


def test_a_station_s_hand_over_order_is_counted_not_timed() -> None:
    """A hand-over or visit order has no deadline: the station files it within a day,
    which no response time should average in."""
    got = figures((fight("P2"), [order("st1", "resolved", kind="handover", resolved=20000)]))
    assert got["orders"] == 1 and got["resolved"] == 1
    assert got["offer_to_acknowledge_s"]["count"] == 0
    assert got["offer_to_scene_s"]["count"] == 0


def test_an_answer_read_back_before_its_offer_is_no_negative_time() -> None:
    got = figures((fight(), [order("p3", "acknowledged", acknowledged=-3)]))
    assert got["offer_to_acknowledge_s"]["p50"] == 0.0


def test_no_order_is_figures_of_nothing() -> None:
    got = figures()
    assert (got["incidents"], got["orders"], got["by_team"]) == (0, 0, {})
    assert got["offer_to_scene_s"] == {"p50": None, "p90": None, "count": 0, "by_priority": {}}


def test_an_answer_given_by_the_deadline_and_read_after_it_is_no_missed_deadline() -> None:
    """Dispatch read the post's answer only after the deadline had timed the order out (its
    answers behind): the order stays timed out, but the deadline was not the team's to
    miss, as the command room's KPIs count it (`answered_in_time`); a refusal so given is a
    decline. The company's contract review must not hold dispatch's lag against its post."""
    late_read = order("p3", "timed_out", timed_out=30)
    late_read["answered_in_time"] = "acknowledged"
    late_refusal = order("p4", "timed_out", timed_out=30)
    late_refusal["answered_in_time"] = "declined"
    got = figures((fight(), [late_read, late_refusal, order("p4", "timed_out", timed_out=30)]))
    assert got["by_state"] == {"timed_out": 3}  # each order's state now, as it is
    assert (got["routing_timeouts"], got["declines"]) == (1, 1)
    p3, p4 = got["by_team"]["p3"], got["by_team"]["p4"]
    assert (p3["routing_timeouts"], p3["declines"]) == (0, 0)
    assert (p4["routing_timeouts"], p4["declines"]) == (1, 1)
