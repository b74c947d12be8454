"""A police station's follow-up visit (回访) on the member's page: after a dispute mediated on
site, or a hand-over, the station checks that the agreement holds; after a fraud warning,
that those warned are safe (dispatch's VISIT_CHECKS). The visit's two answers and the
question asked when it does not find it so are said in the words of the order's category
(the page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

from typing import Any

import pytest

from services.notify.page_text import PAGE_TEXT, VISIT_WORDS
from tests.unit.notify.test_device_page_day import day, deliver, hello
from tests.unit.test_pages import ORDER

DISPUTE = ("agreement_holds", "not_holding", "followup_not_holding")
FRAUD = ("warned_safe", "still_at_risk", "followup_at_risk")


def visit(category: str) -> dict[str, Any]:
    return {**ORDER, "kind": "followup", "category": category, "priority": "P4"}


def seen(category: str) -> list[Any]:
    """The visit's card, then the question its "does not hold" answer asks, in Chinese, then
    both again in English."""
    shown = ("[text('o-ord_1'), (() => { var asked = null; "
             "prompt = (q) => { asked = q; return null; }; respond('ord_1', 'handover'); "
             "return asked; })()]")
    return day(f"{hello()}; {deliver(visit(category))}; {shown}",
               f"$('lang').onclick(); {shown}")


def buttons(card: str) -> list[str]:
    return card.split(" | ")


@pytest.mark.parametrize(("category", "keys"), [
    # a fraud warning's visit read "Agreement holds" / "Not holding": the station's officer
    # checking on an old woman warned of a fake "police" call was asked about an agreement
    ("fraud_warning", FRAUD),
    ("dispute", DISPUTE),
    # a category a deployment sends visits for with no words of its own: a dispute's, as
    # dispatch's check for it is the mediated agreement's
    ("noise", DISPUTE),
])
def test_a_visits_answers_and_question_are_in_the_words_of_its_category(
        category: str, keys: tuple[str, str, str]) -> None:
    holds, not_holding, question = keys
    for (card, asked), language in zip(seen(category), ("zh", "en"), strict=True):
        text = PAGE_TEXT[language]
        assert text[holds] in buttons(card), (language, card)
        assert text[not_holding] in buttons(card), (language, card)
        assert asked == text[question]
        others = {*DISPUTE, *FRAUD} - set(keys)
        assert not [k for k in others if text[k] in card or text[k] == asked], (language, card)


def test_a_dispatch_order_of_a_fraud_warning_keeps_its_plain_answers() -> None:
    # not a visit: the station's team hands over or resolves it as any order
    (card,) = day(f"{hello()}; {deliver({**ORDER, 'category': 'fraud_warning'})}; "
                  "text('o-ord_1')")
    assert PAGE_TEXT["zh"]["warned_safe"] not in card
    assert PAGE_TEXT["zh"]["agreement_holds"] not in card


def test_every_categorys_visit_words_are_in_both_languages() -> None:
    assert VISIT_WORDS["dispute"] == dict(zip(("resolved", "handover", "note"), DISPUTE,
                                              strict=True))
    for words in VISIT_WORDS.values():
        assert set(words) == {"resolved", "handover", "note"}
        for language in ("zh", "en"):
            assert set(words.values()) <= set(PAGE_TEXT[language])
