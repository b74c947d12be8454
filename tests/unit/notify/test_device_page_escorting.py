"""A police or security team escorting volunteers on a P1: its card names the volunteer teams
and whether they are on the way or on scene (the order's `escorting`), follows each
order_update, and says when it escorts nobody any more. The page's script runs in node, as
in test_device_page_day."""

from __future__ import annotations

from typing import Any

from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

P1 = {**ORDER, "category": "medical", "priority": "P1", "flags": ["injury"]}
CARD = "text('o-ord_1')"


def team(name: str, state: str) -> dict[str, str]:
    return {"team": name, "state": state}


def update(escorting: list[dict[str, str]] | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "order_update", "order_id": "ord_1", "priority": "P1",
                             "flags": ["injury"], "escort": None}
    if escorting is not None:
        frame["escorting"] = escorting
    return frame


def named(name: str, state: str) -> str:
    return said("escorted_team", team=name, state=said(f"escorted_{state}"))


def test_an_escort_s_card_names_the_volunteers_and_where_they_are() -> None:
    (card,) = day(f"{hello()}; "
                  f"{deliver({**P1, 'escorting': [team('aunties', 'on_scene')]})}; {CARD}")
    assert said("escorting", teams=named("aunties", "on_scene")) in card


def test_the_card_follows_the_volunteers_and_says_when_it_escorts_nobody() -> None:
    moved, nobody, beeps = day(
        f"{hello()}; {deliver({**P1, 'escorting': [team('aunties', 'sent')]})}; "
        f"var beeps = 0; beep = () => {{ beeps++; }}; "
        f"{deliver(update([team('aunties', 'en_route'), team('riders', 'sent')]))}; {CARD}",
        f"{deliver(update(None))}; {deliver(update([]))}; {CARD}", "beeps")
    assert said("escorting", teams=named("aunties", "en_route") + said("escorted_sep")
                + named("riders", "sent")) in moved
    assert said("escorting_none") in nobody
    assert "aunties" not in nobody
    assert beeps == 0  # news, no alarm


def test_an_order_escorting_nobody_says_nothing_and_an_unknown_state_is_not_shown() -> None:
    plain, odd = day(
        f"{hello()}; {deliver(P1)}; {CARD}",
        f"{deliver({**P1, 'order_id': 'ord_2', 'escorting': [team('aunties', 'bogus')]})}; "
        "text('o-ord_2')")
    assert said("escorting_none") not in plain and "aunties" not in plain
    assert said("escorting", teams="aunties") in odd and "bogus" not in odd


def test_an_order_sent_again_on_reconnect_shows_whom_it_escorts_now() -> None:
    (card,) = day(f"{hello()}; {deliver({**P1, 'escorting': [team('aunties', 'sent')]})}; "
                  f"{deliver({**P1, 'escorting': [team('aunties', 'on_scene')]})}; {CARD}")
    assert said("escorting", teams=named("aunties", "on_scene")) in card
    assert named("aunties", "sent") not in card
