"""A team's call for backup reaches the dispatcher: the console sounds once for each call
and the incident's row says when, by which team, and which team was sent or that none is
yet (dispatch's `backup_call`). A guard calling for help on a P3 or P4 neither flags the
incident nor is a new P1, and the console made no sound and left no mark (the page's
script run in node, as in test_console_page)."""

from __future__ import annotations

from tests.unit.dispatch.test_console_page import run_console, said

CALLED_AT = "2026-12-05T13:05:00+00:00"
# a noise complaint whose team, on scene, called for backup; the backup found, or not
CALLED = (
    'function called(at, backup) { return {at, team_id: "t1", team_name: "Guards 3", '
    'backup}; } '
    'function noise(call) { return incident("inc_noise", {status: "on_scene", '
    'backup_call: call}); } '
)
STATUS_CELL = 'rows().find(r => r[6] === "inc_noise")[4]'


def row_says(backup: str) -> str:
    """The status cell of the noise complaint's row, its call's time as the page writes it
    left blank (\0)."""
    from shared.labels import label

    return label("incident_status", "on_scene") + said(
        "backup_call", time="\0", team="Guards 3", backup=backup)


def test_a_call_for_backup_on_a_p4_sounds_once_and_is_on_its_row() -> None:
    """DOMAIN.md: metro security staff are first on scene and call for support. A call on
    a P4 sounds once when it comes (not at each refresh after), says on the incident's row
    who called and when, and which team was sent; another call from the team sounds again."""
    quiet, (beeps, cell), again, second = run_console(
        CALLED + 'boards.d1 = [noise(null)];',
        "beeps",
        f'boards.d1 = [noise(called("{CALLED_AT}", {{team_id: "t2", team_name: "Guards 7"}}))]; '
        f'refresh().then(() => [beeps, {STATUS_CELL}])',
        "refresh().then(() => beeps)",
        'boards.d1 = [noise(called("2026-12-05T13:09:00+00:00", null))]; '
        'refresh().then(() => beeps)',
    )
    assert quiet == 0
    assert beeps == 1
    before, after = row_says(said("backup_sent", team="Guards 7")).split("\0")
    assert cell.startswith(before) and cell.endswith(after), cell
    assert again == 1  # the same call at the next refresh: no second sound
    assert second == 2  # the team called again


def test_a_call_nobody_was_sent_for_says_so_on_its_row() -> None:
    cell, = run_console(
        CALLED + f'boards.d1 = [noise(called("{CALLED_AT}", null))];',
        STATUS_CELL,
    )
    before, after = row_says(said("backup_none_yet")).split("\0")
    assert cell.startswith(before) and cell.endswith(after), cell


def test_a_call_already_made_when_the_page_opens_does_not_sound() -> None:
    """A reload (or the page opened at the start of a shift) sounds for no call already on
    the board, as for flags and P1s already there: only what comes while it watches."""
    beeps, = run_console(
        CALLED + f'boards.d1 = [noise(called("{CALLED_AT}", null))];',
        "refresh().then(() => beeps)",
    )
    assert beeps == 0


def test_a_call_on_an_incident_done_with_neither_sounds_nor_marks_its_row() -> None:
    """The team that called resolved it since: its call is history on the row, no alarm."""
    beeps, marked = run_console(
        CALLED + 'boards.d1 = [noise(null)];',
        f'boards.d1 = [Object.assign(noise(called("{CALLED_AT}", null)), '
        '{status: "resolved"})]; refresh().then(() => beeps)',
        '$("board").children[0].className',
    )
    assert beeps == 0
    assert "called" not in marked


def test_a_call_nobody_was_sent_for_counts_once_in_the_title_by_its_flag() -> None:
    """A call no backup could be sent for flags its incident at dispatch (engine._reinforce,
    until one is sent: tests/integration/dispatch/test_backup_calls_on_the_board.py), so a
    dispatcher on another tab sees it in the title's count of what needs them, once; a call
    whose backup was sent needs nothing of them and is not counted (its row and sound say it)."""
    before, title = run_console(
        CALLED + 'boards.d1 = [noise(null)];',
        "document.title",
        'boards.d1 = [Object.assign(noise(called("2026-12-05T13:05:00+00:00", null)), '
        '{flagged: true}), incident("inc_theft", {status: "on_scene", backup_call: '
        'called("2026-12-05T13:06:00+00:00", {team_id: "t2", team_name: "Guards 7"})})]; '
        'refresh().then(() => document.title)',
    )
    assert before == said("title")
    assert title == said("title_flagged", count=1)
