"""A report that reached dispatch long after it was reported (a 110 system's queue stuck
for 50 minutes) is new to the command room when dispatch received it: the console's board
and its alarm read the incidents in the order received (`?order=received`), so a late P1
behind 200 newer reports of a busy evening is on the first page and calls the dispatcher
back; its row says how late it came (`late_by_s`). The page's script run in node, as in
test_console_page."""

from __future__ import annotations

from tests.unit.dispatch.test_console_page import ids_on_board, run_console, said

# 250 noise complaints of the evening, reported and received in the last half hour; then a
# fight reported 50 minutes ago reaches dispatch
EVENING = (
    'const at = m => new Date(Date.now() - m * 60000).toISOString(); '
    'boards.d1 = Array.from({length: 250}, (_, n) => incident("inc_new" + n, '
    '{reported_at: at(n / 10), received_at: at(n / 10)})); '
)
LATE_FIGHT = (
    'incident("inc_fight", {priority: "P1", category: "violence", status: "assigned", '
    'reported_at: at(50), received_at: at(0), late_by_s: 3000})'
)


def test_a_p1_that_reached_dispatch_late_is_on_the_first_page_and_calls_back() -> None:
    """By the report's time the fight is the 251st: the first page (200) never held it and
    nothing sounded. In the order received it is the newest."""
    (beeps, shown, asked) = run_console(
        EVENING,
        # the fight comes in, reported 50 minutes ago, after the 250 (the API's default
        # order puts it last)
        f'boards.d1 = [...boards.d1, {LATE_FIGHT}]; '
        f'refresh().then(() => [beeps, {ids_on_board()}, fetched.filter('
        'u => u.startsWith("/v1/incidents?") && !u.includes("flagged="))])',
    )[0]
    assert beeps == 1
    assert "inc_fight" in shown
    assert asked and all("order=received" in url for url in asked), asked


def test_a_p1_that_reached_dispatch_late_calls_back_while_the_board_is_filtered() -> None:
    """The alarm's own read of the newest (the board shows a filter) is in the order
    received too."""
    beeps, = run_console(
        EVENING,
        '$("status").value = "resolved"; refresh().then(() => { '
        f'boards.d1 = [...boards.d1, {LATE_FIGHT}]; return refresh(); }}).then(() => beeps)',
    )
    assert beeps == 1


def test_a_late_incident_s_row_says_how_late_it_reached_dispatch() -> None:
    """The scene is 50 minutes old: the row says so beside the time reported; a report that
    came on time says nothing more."""
    late, on_time = run_console(
        EVENING + f'boards.d1 = [...boards.d1, {LATE_FIGHT}];',
        'rows().find(r => r[6] === "inc_fight")[0]',
        'rows().find(r => r[6] === "inc_new0")[0]',
    )
    late_by = said("late_by", late=said("age_minutes", n=50))
    assert late.endswith(late_by), late
    assert late_by not in on_time
