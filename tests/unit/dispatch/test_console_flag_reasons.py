"""The incident panel says why an incident is flagged (dispatch's `flagged_for`), in the
dispatcher's words: it said "flagged" only, and a P1 fight with its police unit on the way
was red on the board for a reason the dispatcher had to guess (it still wants its security
unit, none free). A code this page does not know reads as itself; none given, "flagged"
(the page's script run in node, as in test_console_shift)."""

from __future__ import annotations

import inspect
import re

from services.dispatch.console_text import CONSOLE_TEXT
from services.dispatch.engine import Dispatcher
from shared.labels import label
from tests.unit.dispatch.test_console_shift import run_console

FIGHT = ('boards.d1 = [incident("inc_fight", {category: "violence", priority: "P1", '
         'status: "en_route", flagged: true})]; '
         'details.inc_fight = detailOf(boards.d1[0], {flagged_for: FLAGGED_FOR});')
TITLE = '$("dtitle").textContent'


def title(flagged_for: str, *steps: str) -> list[str]:
    return run_console(FIGHT.replace("FLAGGED_FOR", flagged_for),
                       f'row("inc_fight").onclick(); settle().then(() => {TITLE})', *steps)


def test_the_panel_says_why_the_incident_is_flagged_in_either_language() -> None:
    zh, en = title('["short_of_units", "missed_deadlines"]',
                   f'$("lang").onclick(); settle().then(() => {TITLE})')
    for said, lang, sep in ((zh, "zh", "；"), (en, "en", "; ")):
        text = CONSOLE_TEXT[lang]
        why = sep.join([text["flag_why_short_of_units"], text["flag_why_missed_deadlines"]])
        assert said.endswith(text["flagged_for"].format(why=why)), said
        assert label("category", "violence", lang) in said, said


def test_a_reason_the_page_does_not_know_reads_as_its_code_and_none_as_flagged() -> None:
    text = CONSOLE_TEXT["zh"]
    unknown, = title('["a_newer_reason"]')
    assert unknown.endswith(text["flagged_for"].format(why="a_newer_reason")), unknown
    plain, = title('[]')
    assert plain.endswith(text["flagged_mark"]), plain


def test_every_reason_dispatch_gives_has_words_in_both_languages() -> None:
    """Each code Dispatcher.flag_reasons can give (its ("code", holds) pairs) is said in
    words: one added there without them would reach the panel as a code."""
    source = inspect.getsource(Dispatcher.flag_reasons)
    codes = re.findall(r'\("([a-z_]+)", (?!")', source)  # not a tuple of statuses
    assert "short_of_units" in codes and "unassigned" in codes, codes
    for lang in ("zh", "en"):
        assert [c for c in codes if f"flag_why_{c}" not in CONSOLE_TEXT[lang]] == [], lang
