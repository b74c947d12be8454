"""The member's page without a signal (a basement, a lift, a dead spot): an answer pressed
then is kept and goes once there is one, once, and never to an order that has ended (the
page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

ON_SCENE = {"type": "order_state", "order_id": "ord_1", "state": "on_scene", "answered": True,
            "response": "on_scene"}
RESOLVED = {**ON_SCENE, "state": "resolved", "response": "resolved"}
# the socket drops in the basement; the member presses Resolved (no note, no camera files)
RESOLVED_IN_THE_BASEMENT = (f"{hello()}; {deliver(ORDER)}; {deliver(ON_SCENE)}; sentFrames(); "
                            "drop(1006); prompt = () => ''; respond('ord_1', 'resolved')")
# out of the basement: the network is back, the page's try to connect opens, notify greets it
BACK = ("(listeners.online || []).forEach((fn) => fn()); ws.readyState = 1; ws.onopen(); "
        f"{hello()}; sentFrames()")
POSTED = ("fetched.filter((f) => f.method === 'POST' && f.url.startsWith('/v1/orders/'))"
          ".map((f) => f.body.response)")


def answers(frames: list[dict[str, Any]]) -> list[str]:
    return [f["response"] for f in frames if f.get("type") == "response"]


def test_an_answer_pressed_without_signal_goes_once_the_signal_is_back() -> None:
    # Resolved, pressed in a basement: the page said "Not sent: no connection. Try again." for
    # five seconds and dropped the answer. The member, back in the street, did not press it
    # again: the order stayed on scene, the team busy (no order reaches a busy team) and the
    # incident open on the command room's board, until someone rang them.
    *_, card, sent, after = day(
        RESOLVED_IN_THE_BASEMENT,
        "text('o-ord_1')",
        BACK,
        f"{deliver(RESOLVED)}; later(60000); sentFrames()",
    )
    assert said("not_sent_yet", answer="已处置") in card
    assert answers(sent) == ["resolved"]
    assert answers(after) == []


def test_an_answer_that_went_over_http_once_the_signal_came_is_not_sent_again() -> None:
    taken = "net = async () => [200, { state: 'resolved', answered: true }];"
    *_, posted, sent, card = day(
        RESOLVED_IN_THE_BASEMENT,
        "later(20000)",
        f"{taken} later(10000); {POSTED}",
        BACK,
        "text('o-ord_1')",
    )
    assert posted[-1] == "resolved" and posted.count("resolved") >= 2  # tried, then taken
    assert answers(sent) == []
    assert said("not_sent_yet", answer="已处置") not in card


def test_a_kept_answer_to_an_order_withdrawn_meanwhile_is_sent_no_more() -> None:
    # The deadline ran out while the member's acknowledgement waited for a signal: notify
    # refuses it (the order was withdrawn) and tells the page; the page tries it no more.
    refused = {"type": "error", "code": "conflict", "order_id": "ord_1",
               "message": "the order was withdrawn; it takes no responses"}
    *_, sent, after = day(
        f"{hello()}; {deliver(ORDER)}; sentFrames(); drop(1006); respond('ord_1', 'acknowledged')",
        BACK,
        f"{deliver({'type': 'order_withdrawn', 'order_id': 'ord_1'})}; {deliver(refused)}; "
        f"var before = {POSTED}.length, card = text('o-ord_1'); later(60000); "
        f"[sentFrames(), {POSTED}.length - before, card]",
    )
    assert answers(sent) == ["acknowledged"]
    frames, posted, card = after
    assert answers(frames) == [] and posted == 0
    assert said("called_off") in card and said("not_sent_yet", answer="接单") not in card


def test_a_call_for_help_that_may_be_lost_names_the_button_to_press_again() -> None:
    # A guard in a fight pressed "Need help" in a dead spot; the page, unable to tell whether
    # it went, asked to "press Reinforce again": the card has no such button.
    *_, told, buttons = day(
        f"{hello()}; {deliver(ORDER)}; respond('ord_1', 'reinforce')",
        "later(9000)", "later(9000)", "later(9000)",  # tried over HTTP, in vain, each time
        "toasts.filter((t) => t === helpAgain())",
        "$('o-ord_1').children.find((c) => c.className === 'actions').children"
        ".map((b) => b.textContent)",
    )
    assert told, "the member is asked to press again"
    assert any(f"“{label}”" in told[-1] for label in buttons), (told, buttons)


@pytest.mark.parametrize("status, error", [
    (503, {"code": "unavailable", "message": "device tokens cannot be checked right now; retry"}),
    (503, {"code": "unavailable", "message": "the store is not answering; ask again"}),
    (429, {"code": "rate_limited", "message": "too many requests for this token; retry in 2 s"}),
])
def test_an_answer_notify_could_not_take_now_over_http_is_kept_and_goes_once_it_can(
        status: int, error: dict[str, str]) -> None:
    # Out of the basement before the socket is back: Resolved goes over HTTP, and notify
    # cannot take it now (volunteers, which checks device tokens, or notify's store away;
    # too many requests). On the socket such an answer is sent again by itself; over HTTP
    # the page said so for five seconds and dropped it: the team stayed busy and the
    # incident open, as when an answer without a signal was dropped.
    busy = f"net = async () => [{status}, {{ error: {json.dumps(error)} }}];"
    taken = "net = async () => [200, { state: 'resolved', answered: true }];"
    *_, card, told, _, posted, state = day(
        f"{busy} {RESOLVED_IN_THE_BASEMENT}",
        "text('o-ord_1')",
        "toasts",
        "later(9000)",  # still refused
        f"{taken} later(9000); {POSTED}",
        "orders.get('ord_1').state",
    )
    # the member is told the server is busy, not that the phone has no signal (they would
    # look for a signal, or press it again where there is one, to no end)
    assert said("not_sent_yet_busy", answer="已处置") in card
    assert said("not_sent_yet", answer="已处置") not in card
    assert said("server_busy", answer="已处置") in told, told
    assert said("no_signal", answer="已处置") not in told, told
    assert posted == ["resolved"] * 3  # refused twice, then taken
    assert state == "resolved"


def test_an_answer_a_gateway_refused_with_its_own_page_is_kept_as_the_server_busy() -> None:
    # A proxy between the phone and notify answers 502 with an HTML page of its own: the
    # phone had a signal, the answer reached the server's side and was not taken.
    gateway = ("fetch = async (url, init) => { fetched.push({ url, method: init.method, "
               "body: JSON.parse(init.body) }); return { ok: false, status: 502, "
               "json: async () => { throw new SyntaxError('Unexpected token <'); } }; };")
    _, card = day(f"{gateway} {RESOLVED_IN_THE_BASEMENT}", "text('o-ord_1')")
    assert said("not_sent_yet_busy", answer="已处置") in card
    assert said("not_sent_yet", answer="已处置") not in card


def test_the_card_says_why_its_answer_is_not_sent_yet_as_the_cause_changes() -> None:
    # Pressed in the basement (no signal), then out in the street with notify busy, then in
    # the lift again: the card's line follows the last try.
    busy = ("net = async () => [503, { error: { code: 'unavailable', "
            "message: 'the store is not answering; ask again' } }];")
    _, basement, _, street, _, lift = day(
        RESOLVED_IN_THE_BASEMENT, "text('o-ord_1')",
        f"{busy} later(9000)", "text('o-ord_1')",
        "net = null; later(9000)", "text('o-ord_1')",
    )
    no_signal, not_taken = (said("not_sent_yet", answer="已处置"),
                            said("not_sent_yet_busy", answer="已处置"))
    assert no_signal in basement and not_taken not in basement
    assert not_taken in street and no_signal not in street
    assert no_signal in lift and not_taken not in lift


# A weak signal: the request goes out and nothing comes back, no answer and no error.
HANGS = "net = () => new Promise(() => {});"
TAKEN = "net = async () => [200, { state: 'resolved', answered: true }];"


def test_an_answer_over_http_that_gets_no_answer_is_given_up_kept_and_sent_again() -> None:
    # Out of the basement on one bar of signal, the socket still down: Resolved went over
    # HTTP and its request hung, for minutes, with no error. The answer was neither heard
    # taken nor kept to go again: the card said nothing, the team stayed busy and the
    # incident open, as if the member had never pressed it.
    *_, card, told, _, posted, _, state = day(
        f"{HANGS} {RESOLVED_IN_THE_BASEMENT}; null",
        "later(10000)",  # no answer in 10 s
        "text('o-ord_1')",
        "toasts.slice()",
        "later(10000)",
        POSTED,
        f"{TAKEN} later(10000)",  # a signal again
        "orders.get('ord_1').state",
    )
    # given up as without a signal: kept, said on the card, sent again by itself
    assert said("not_sent_yet", answer="已处置") in card
    assert said("no_signal", answer="已处置") in told, told
    assert len(posted) >= 3 and set(posted) == {"resolved"}, posted
    assert state == "resolved"


def test_an_answer_given_up_that_notify_had_taken_is_not_reported_refused() -> None:
    # The request given up had reached notify all the same: the order is resolved by it.
    # Sent again, the answer is refused as the order is finished (409); the page reads the
    # order (tookIt) and shows it resolved, not the refusal.
    took = ("net = async (url, init) => (init && init.method === 'POST') "
            "? [409, { error: { code: 'conflict', message: 'the order is finished (resolved); "
            "it takes no more responses' } }] "
            ": [200, { order_id: 'ord_1', state: 'resolved', answered: true, "
            "last_response: 'resolved', allowed: [] }];")
    *_, toasts, state, card = day(
        f"{HANGS} {RESOLVED_IN_THE_BASEMENT}; null",
        "later(10000)",
        f"{took} later(10000); toasts.slice()",
        "orders.get('ord_1').state",
        "text('o-ord_1')",
    )
    assert not [t for t in toasts if "finished" in t or said("refused") in t], toasts
    assert state == "resolved"
    assert said("not_sent_yet", answer="已处置") not in card


def test_a_browser_without_abort_controller_still_sends_an_answer_over_http() -> None:
    # An older phone's browser has no AbortController: the bound must not keep the answer
    # from going at all there.
    *_, posted, state = day(
        f"delete globalThis.AbortController; {TAKEN} {RESOLVED_IN_THE_BASEMENT}",
        POSTED,
        "orders.get('ord_1').state",
    )
    assert posted == ["resolved"]
    assert state == "resolved"
