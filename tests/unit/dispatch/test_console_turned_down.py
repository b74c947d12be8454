"""An incident every team that may go turned down (declined it, or let its deadline pass)
waits for a team dispatch will never offer it: those teams are left out of its search for
good, and a free one on the map is one of them. The console said "no team free to send:
waiting". Its panel now says the incident was turned down and is sent by hand, and the list
of teams to send says which team turned it down and when, so that the dispatcher offering it
again does so knowingly (the page's script run in node, as in test_console_shift)."""

from __future__ import annotations

import re

from services.dispatch.console_text import CONSOLE_TEXT
from tests.unit.dispatch.test_console_shift import run_console

NOISE = ('boards.d1 = [incident("inc_noise")]; '
         'details.inc_noise = detailOf(boards.d1[0], {flagged_for: ["unassigned", "turned_down"]}); '
         'units = [unit("t1"), unit("t2")]; '
         'offers.inc_noise = [Object.assign(unit("t1"), {distance_m: 300, eta_s: 60, '
         'fix_age_s: 10, position_counts: true, warnings: [], missing_skills: [], '
         'turned_down: {answer: "declined", at: "2026-12-07T22:03:22+00:00", order_id: "ord_a"}}), '
         'Object.assign(unit("t2"), {distance_m: 900, eta_s: 120, fix_age_s: 10, '
         'position_counts: true, warnings: [], missing_skills: [], '
         'turned_down: {answer: "timed_out", at: "2026-12-07T22:04:10+00:00", order_id: "ord_b"}}), '
         'Object.assign(unit("t3"), {distance_m: 1500, eta_s: 180, fix_age_s: 10, '
         'position_counts: true, warnings: [], missing_skills: [], turned_down: null})];')
# a team that took it by its deadline, its answer read after the deadline had timed it out
READ_LATE = ('offers.inc_noise.push(Object.assign(unit("t4"), {distance_m: 2000, eta_s: 240, '
             'fix_age_s: 10, position_counts: true, warnings: [], missing_skills: [], '
             'turned_down: {answer: "timed_out", at: "2026-12-07T22:04:40+00:00", '
             'order_id: "ord_c", answered_in_time: "acknowledged"}}));')


def words(text: str) -> str:
    """The longest stretch of a message's own words (not a value put in it)."""
    return max(re.split(r"\{[^}]*\}", text), key=len).strip()


SHOWN = ('row("inc_noise").onclick(); settle().then(() => [$("dtitle").textContent, '
         '$("team").children.map(o => o.textContent)])')


def test_the_panel_says_the_incident_was_turned_down_and_the_teams_who_did() -> None:
    (title, options), (title_en, options_en) = run_console(
        NOISE, SHOWN, '$("lang").onclick(); settle().then(() => [$("dtitle").textContent, '
        '$("team").children.map(o => o.textContent)])')
    for said, teams, lang in ((title, options, "zh"), (title_en, options_en, "en")):
        text = CONSOLE_TEXT[lang]
        assert text["flag_why_turned_down"] in said, said
        declined, missed, never = teams
        refused, missed_it = words(text["team_declined"]), words(text["team_timed_out"])
        assert refused in declined and missed_it not in declined, declined
        assert missed_it in missed and refused not in missed, missed
        assert refused not in never and missed_it not in never, never


def test_a_team_that_answered_in_time_but_was_read_late_is_not_said_to_have_let_it_time_out(
        ) -> None:
    """Dispatch's answers behind: the team took the order by its deadline, and dispatch read
    it only after it had timed the order out. The list said "let it time out at 22:04", of a
    team that had answered: it now says it answered in time, read after its deadline."""
    (_, options), (_, options_en) = run_console(
        NOISE + READ_LATE, SHOWN, '$("lang").onclick(); settle().then(() => '
        '[$("dtitle").textContent, $("team").children.map(o => o.textContent)])')
    for teams, lang in ((options, "zh"), (options_en, "en")):
        text = CONSOLE_TEXT[lang]
        read_late = teams[3]
        assert words(text["team_answered_in_time"]) in read_late, read_late
        assert words(text["team_timed_out"]) not in read_late, read_late
        assert words(text["team_declined"]) not in read_late, read_late
