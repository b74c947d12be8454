"""What the member reads when notify or volunteers refuses a press the page made: in the
page's language, saying what stands, never the service's own English sentence with its codes
("the order is en_route; responses move forward only; allowed now: on_scene, ...") to a
volunteer reading Chinese (the page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

import json
from typing import Any

from shared.labels import label
from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

from .test_device_page_check_out import check_out

EN_ROUTE = {"type": "order_state", "order_id": "ord_1", "state": "en_route", "answered": True,
            "response": "en_route"}


def refusal(message: str, code: str = "conflict") -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "order_id": "ord_1"}


def test_an_acknowledgement_a_teammate_overtook_says_where_the_team_stands() -> None:
    # Two aunties on one team: one pressed En route, the other Acknowledge a moment later.
    refused = refusal("the order is en_route; responses move forward only; allowed now: "
                      "on_scene, resolved, handover, reinforce")
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; respond('ord_1', 'acknowledged'); {deliver(EN_ROUTE)}",
        f"{deliver(refused)}; toasts.slice()",
    )
    told = said("answer_refused_behind", answer="接单", state="在途")
    assert told in toasts, toasts
    assert not [t for t in toasts if "move forward" in t]


def test_an_answer_to_an_order_taken_back_says_it_was_taken_back() -> None:
    refused = refusal("the order was withdrawn; it takes no responses")
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; respond('ord_1', 'acknowledged')",
        f"{deliver(refused)}; toasts.slice()",
    )
    assert said("answer_refused", answer="接单") in toasts, toasts
    assert not [t for t in toasts if "withdrawn;" in t]


def test_another_refusal_keeps_the_services_words_in_english() -> None:
    refused = refusal("note is too long", code="invalid_field")
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; respond('ord_1', 'acknowledged')",
        f"{deliver(refused)}; toasts.slice()",
        languages=["en-GB"],
    )
    assert "note is too long" in toasts


def test_the_last_one_out_while_the_team_holds_an_order_reads_why_in_chinese() -> None:
    refused = {"error": {"code": "conflict", "message": "the team is dispatched with open "
                         "order ord_1: you, the last on its shift, can check out once its "
                         "orders are resolved, handed over, declined or withdrawn"}}
    told = check_out(refused, status=409)
    assert told == said("check_out_failed", why=said("last_out_open_order")), told


def test_an_http_answer_refused_says_so_in_chinese_too() -> None:
    refused = json.dumps({"error": {"code": "conflict", "message": "the order is en_route; "
                                    "declined is allowed only before acknowledged"}})
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; ws.readyState = 3",
        f"net = async () => [409, {refused}]; postAnswer('ord_1', {{response: 'declined', "
        "note: 'x'}); 1",
        "toasts.slice()",
    )
    assert said("answer_refused_behind", answer="拒单", state="在途") in toasts, toasts


ACKNOWLEDGED = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
                "answered": True, "response": "acknowledged"}


def test_a_refusal_the_card_is_behind_on_does_not_name_the_cards_state() -> None:
    # The team had acknowledged; dispatch took the order back (a weapon) while the socket
    # was down, so the card still reads 已接单. En route, sent over HTTP, is refused: the
    # card's state is what the member pressed from, not where the order is. "“出发”未被接受：
    # 这条指令现在是“已接单”" would be false (and says nothing of the withdrawal).
    refused = json.dumps({"error": {"code": "conflict", "message": "the order is withdrawn; "
                                    "no response is accepted"}})
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(ACKNOWLEDGED)}; ws.readyState = 3",
        f"net = async () => [409, {refused}]; postAnswer('ord_1', {{response: 'en_route'}}); 1",
        "toasts.slice()",
    )
    en_route = label("response", "en_route")
    assert said("answer_refused", answer=en_route) in toasts, toasts
    assert not [t for t in toasts if label("order_state", "acknowledged") in t], toasts


def test_a_refusal_on_the_socket_the_card_is_behind_on_says_the_order_changed() -> None:
    refused = refusal("the order is resolved; no response is accepted")
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(ACKNOWLEDGED)}; respond('ord_1', 'on_scene')",
        f"{deliver(refused)}; toasts.slice()",
    )
    assert said("answer_refused", answer=label("response", "on_scene")) in toasts, toasts
