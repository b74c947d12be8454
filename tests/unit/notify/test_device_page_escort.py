"""A volunteer team sent to a P1 with no police or security team free to go with it: its card
says to wait for them at a safe distance, and says so no more once one is on the way (the
order's `escort`, amended by an order_update). The page's script runs in node, as in
test_device_page_day."""

from __future__ import annotations

from typing import Any

from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

P1 = {**ORDER, "category": "medical", "priority": "P1", "flags": ["injury"]}
CARD = "text('o-ord_1')"


def update(escort: str | None) -> dict[str, Any]:
    return {"type": "order_update", "order_id": "ord_1", "priority": "P1", "flags": ["injury"],
            "escort": escort}


def test_volunteers_alone_on_a_p1_are_told_to_wait_for_police_or_security() -> None:
    (card,) = day(f"{hello()}; {deliver({**P1, 'escort': 'awaited'})}; {CARD}")
    assert said("escort_awaited") in card
    assert said("escort_sent") not in card


def test_the_card_says_police_or_security_is_on_the_way_once_one_is_sent() -> None:
    card, toasts, beeps = day(
        f"{hello()}; {deliver({**P1, 'escort': 'awaited'})}; var beeps = 0; "
        f"beep = () => {{ beeps++; }}; toasts.length = 0; {deliver(update('sent'))}; {CARD}",
        "toasts.slice()", "beeps")
    assert said("escort_sent") in card
    assert said("escort_awaited") not in card
    assert said("escort_sent") in toasts and said("escort_awaited") not in toasts
    assert beeps == 0  # good news: no alarm


def test_an_escort_that_no_longer_comes_beeps_and_says_to_wait_again() -> None:
    card, toasts, beeps = day(
        f"{hello()}; {deliver({**P1, 'escort': 'sent'})}; var beeps = 0; "
        f"beep = () => {{ beeps++; }}; toasts.length = 0; {deliver(update('awaited'))}; {CARD}",
        "toasts.slice()", "beeps")
    assert said("escort_awaited") in card
    assert said("escort_awaited") in toasts and said("escort_sent") not in toasts
    assert beeps == 1


def test_an_order_sent_again_on_reconnect_shows_its_escort_as_it_stands_now() -> None:
    # an amendment missed while the socket was down: the order as notify holds it now
    (card,) = day(f"{hello()}; {deliver({**P1, 'escort': 'awaited'})}; "
                  f"{deliver({**P1, 'escort': 'sent'})}; {CARD}")
    assert said("escort_sent") in card
    assert said("escort_awaited") not in card


def test_nothing_is_said_of_an_escort_the_order_does_not_name() -> None:
    # the lowered incident ("none": null), an update of an older notify (no key), and a value
    # the page does not know: never shown as it came, nor as markup
    hostile = "<img src=x onerror=alert(1)>"
    cleared, older, unknown = day(
        f"{hello()}; {deliver({**P1, 'escort': 'awaited'})}; {deliver(update(None))}; {CARD}",
        f"{deliver({**P1, 'order_id': 'ord_2', 'escort': 'sent'})}; "
        "deliver({type: 'order_update', order_id: 'ord_2', priority: 'P1', flags: ['injury']});"
        " text('o-ord_2')",
        f"{deliver({**P1, 'order_id': 'ord_3', 'escort': hostile})}; text('o-ord_3')")
    assert said("escort_awaited") not in cleared and said("escort_sent") not in cleared
    assert said("escort_sent") in older
    assert hostile not in unknown
    assert said("escort_awaited") not in unknown and said("escort_sent") not in unknown
