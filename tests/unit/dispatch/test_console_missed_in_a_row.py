"""A team that lets order after order time out is still offered every new incident, the
most urgent first. Its row on the console said only "dispatched": the units table now says
how many orders in a row it let time out and since when (dispatch's `missed_in_a_row`,
`missed_since`), so that the command room calls it by radio or takes it off; a team that
missed none says nothing more (the page's script run in node, as in test_console_shift)."""

from __future__ import annotations

import re

from services.dispatch.console_text import CONSOLE_TEXT
from tests.unit.dispatch.test_console_shift import run_console

UNITS = ('boards.d1 = [incident("inc_noise")]; '
         'units = [unit("t1", {status: "dispatched", open_order_id: "ord_9", missed_in_a_row: 13, '
         'missed_since: "2026-12-07T22:03:50+00:00"}), unit("t2", {missed_in_a_row: 0, '
         'missed_since: null})];')
ROWS = '$("units").children.map(tr => tr.children.map(td => td.textContent).join(" | "))'


def words(text: str) -> str:
    """The longest stretch of a message's own words (not a value put in it)."""
    return max(re.split(r"\{[^}]*\}", text), key=len).strip()


def test_the_units_table_says_how_many_orders_in_a_row_a_team_let_time_out() -> None:
    zh, en = run_console(UNITS, ROWS, f'$("lang").onclick(); settle().then(() => {ROWS})')
    for (missing, answering), lang in ((zh, "zh"), (en, "en")):
        said = words(CONSOLE_TEXT[lang]["missed_in_a_row"])
        assert said in missing and "13" in missing, missing
        assert said not in answering, answering
