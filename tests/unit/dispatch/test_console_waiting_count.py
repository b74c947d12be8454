"""How many incidents wait with no team on them, said above the map beside how many are
open and how many teams are free: on a festival night 44 incidents waited with nobody on
them, and the console's only "still waiting" figure was the KPIs' (the incidents no team was
ever offered: 1), the rest to be counted row by row (the page's script run in node, as in
test_console_page)."""

from __future__ import annotations

from services.dispatch.console_text import CONSOLE_TEXT
from tests.unit.dispatch.test_console_page import run_console, said

BOARD = ('boards.d1 = [incident("inc_a", {status: "unassigned", flagged: true}), '
         'incident("inc_b", {status: "unassigned", flagged: true}), '
         'incident("inc_c", {status: "on_scene"}), incident("inc_d", {status: "resolved"})];')


def test_the_map_says_how_many_incidents_wait_with_no_team() -> None:
    (legend,) = run_console(BOARD, '$("maplegend").textContent')
    assert legend == said("map_counts", open=3, waiting=2, free=0, teams=0), legend
    assert all("{waiting}" in CONSOLE_TEXT[lang]["map_counts"] for lang in ("zh", "en"))


def test_a_report_given_up_counts_as_waiting_with_no_team() -> None:
    # dispatch gave up on its report (`dispatching`, flagged report_given_up): no order, no
    # team on it, as an `unassigned` one
    board = ('boards.d1 = [incident("inc_a", {status: "unassigned", flagged: true}), '
             'incident("inc_b", {status: "dispatching", flagged: true, '
             'report_given_up: true}), incident("inc_c", {status: "on_scene"})];')
    (legend,) = run_console(board, '$("maplegend").textContent')
    assert legend == said("map_counts", open=3, waiting=2, free=0, teams=0), legend
