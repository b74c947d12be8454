"""What needs the dispatcher first, first: on a festival night nearly every row is flagged,
and a P1 fight with both its units on scene stays flagged for the deadlines missed on its
way there (an inspector's routing timeouts), while a P1 medical call nobody is on waits
behind it, newer rows first among equals. Among flagged incidents of one priority, those no
team is on (unassigned) now come before those a team is on; the priority still comes first
(the page's script run in node, as in test_console_page)."""

from __future__ import annotations

from tests.unit.dispatch.test_console_page import ids_on_board, run_console

BOARD = (
    'boards.d1 = ['
    'incident("inc_fight", {category: "violence", priority: "P1", status: "on_scene", '
    'flagged: true, reported_at: "2026-12-07T22:14:00+08:00"}), '
    'incident("inc_noise", {priority: "P4", status: "unassigned", flagged: true, '
    'reported_at: "2026-12-07T22:13:00+08:00"}), '
    'incident("inc_medical", {category: "medical", priority: "P1", status: "unassigned", '
    'flagged: true, reported_at: "2026-12-07T22:03:00+08:00"}), '
    'incident("inc_done", {priority: "P1", status: "resolved", '
    'reported_at: "2026-12-07T22:15:00+08:00"})];'
)


def test_among_flagged_incidents_of_a_priority_one_nobody_is_on_comes_first() -> None:
    (ids,) = run_console(BOARD, ids_on_board())
    assert ids == ["inc_medical", "inc_fight", "inc_noise", "inc_done"], ids


# A report whose dispatch was given up (dispatch failed on it MAX_DELIVERIES times) stays
# `dispatching`, flagged `report_given_up`, with no order: nobody is on it, as on one
# `unassigned` (and one `reported` not yet judged).
GIVEN_UP = (
    'boards.d1 = ['
    'incident("inc_fight", {category: "violence", priority: "P1", status: "on_scene", '
    'flagged: true, reported_at: "2026-12-07T22:14:00+08:00"}), '
    'incident("inc_given_up", {category: "medical", priority: "P1", status: "dispatching", '
    'flagged: true, report_given_up: true, reported_at: "2026-12-07T22:03:00+08:00"}), '
    'incident("inc_reported", {priority: "P1", status: "reported", flagged: true, '
    'reported_at: "2026-12-07T22:02:00+08:00"})];'
)


def test_a_report_given_up_with_nobody_on_it_comes_before_a_manned_one() -> None:
    (ids,) = run_console(GIVEN_UP, ids_on_board())
    assert ids == ["inc_given_up", "inc_reported", "inc_fight"], ids
