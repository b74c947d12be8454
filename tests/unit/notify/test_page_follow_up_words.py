"""The member's page when a police order's incident is followed up by its reporting system
("he has a knife now"): the order_update's description replaces the one shown, and alarms
as a raise does (the page's script run in node, as tests/unit/test_pages.py runs it)."""

from __future__ import annotations

from tests.unit.test_pages import ORDER, deliver, run_page

POLICE = {**ORDER, "description": "two men fighting"}
SHOWN = "const o = orders.get('ord_1'); [o.frame.description, beeps]"


def test_a_follow_ups_words_are_shown_on_the_order_and_alarm() -> None:
    words = {"type": "order_update", "order_id": "ord_1", "priority": "P2", "flags": [],
             "description": "two men fighting\nhe has a knife now"}
    *_, after = run_page(
        f"{deliver(POLICE)}; var beeps = 0; beep = () => {{ beeps++; }}",
        deliver(words),
        SHOWN,
    )
    assert after[0] == "two men fighting\nhe has a knife now"
    assert after[1] > 0


def test_an_update_without_words_leaves_the_description_as_it_was() -> None:
    # a guard's phone is sent none (need to know), nor is a police phone for a revision that
    # added none: neither clears or alarms for it
    same = {"type": "order_update", "order_id": "ord_1", "priority": "P2", "flags": []}
    *_, after = run_page(
        f"{deliver(POLICE)}; var beeps = 0; beep = () => {{ beeps++; }}",
        deliver(same),
        SHOWN,
    )
    assert after == ["two men fighting", 0]
