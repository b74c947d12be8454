"""The member's page when a team calls for help ("Need help": dispatch sends one more unit;
notify takes a second press within 30 s as the same call, a later one as a call for one
more). The page's script runs in node, as in test_device_page_day."""

from __future__ import annotations

from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

EN_ROUTE = {"type": "order_state", "order_id": "ord_1", "state": "en_route", "answered": True,
            "response": "en_route"}
HELP_TAKEN = {**EN_ROUTE, "response": "reinforce"}


def test_a_call_for_help_taken_is_said_so_on_the_card_and_to_who_pressed_it() -> None:
    # A guard in a fight pressed "Need help": notify took it, and nothing on the card changed,
    # nothing was said. Forty seconds later, unsure, the guard pressed again: a second call,
    # a second unit sent, one less for the district.
    *_, card, told = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; respond('ord_1', 'reinforce')",
        f"{deliver(HELP_TAKEN)}; text('o-ord_1')",
        "toasts.slice()",
    )
    assert said("help_called_at", time="") in card
    assert told and told[-1] == said("help_called")


def test_a_teammates_call_for_help_shows_on_this_phones_card() -> None:
    *_, card, told = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}",
        f"{deliver(HELP_TAKEN)}; text('o-ord_1')",
        "toasts.filter((t) => t === say('help_called'))",
    )
    assert said("help_called_at", time="") in card
    assert told == []  # said to who pressed it; the card says it to the others


def test_a_call_for_help_taken_over_http_is_said_so_too() -> None:
    taken = "net = async () => [200, { state: 'en_route', answered: true }];"
    *_, card = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; drop(1006); {taken} "
        "respond('ord_1', 'reinforce')",
        "text('o-ord_1')",
    )
    assert said("help_called_at", time="") in card


def test_a_reloaded_page_says_help_was_called_without_inventing_when() -> None:
    # notify tells a reloaded page where the order stands, with its last answer: the call
    # for help was made before the reload, at a time the page does not know.
    *_, card = day(
        f"{hello()}; {deliver({**HELP_TAKEN, 'order': ORDER})}",
        "[text('o-ord_1'), clock(new Date())]",
    )
    assert said("help_called_line") in card[0] and card[1] not in card[0]
