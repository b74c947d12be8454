"""The member's page across a dropped socket and a move to another team (the page's script
run in node, as tests/unit/test_pages.py runs it)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from services.notify.page import DEVICE_PAGE, SERVICE_WORKER
from services.notify.page_text import WORKER_TEXT
from tests.helpers import run_in_node
from tests.unit.test_pages import HARNESS, ORDER, deliver, run_page, script

HELLO = {"type": "hello", "device_id": "dev_1", "member_id": "mem_1", "member_name": "M",
         "ping_interval_s": 20}


def hello(team_id: str) -> str:
    return deliver({**HELLO, "team_id": team_id})


def dropped(code: int) -> str:
    """The socket closes with `code`; the page reconnects after its wait (run now)."""
    return f"ws.onclose({{ code: {code} }}); runTimers(); ws.onopen(); sentFrames()"


def test_an_order_revised_while_the_phone_was_offline_shows_its_new_priority_and_deadline(
) -> None:
    # The phone lost its socket; meanwhile the caller rang back (a knife): the command room
    # raised the incident to P1 with `weapon`, and the deadline came sooner. On reconnect
    # notify sends the order as it stands now; the page had it already and kept the old one.
    first = {**ORDER, "ack_by": "2026-12-05T10:05:00+00:00"}
    revised = {**ORDER, "priority": "P1", "flags": ["weapon"],
               "ack_by": "2026-12-05T10:01:30+00:00"}
    *_, held, shown = run_page(
        f"{hello('t1')}; {deliver(first)}; sentFrames()",
        dropped(1006),
        f"{hello('t1')}; sentFrames()",
        f"{deliver(revised)}; const o = orders.get('ord_1'); "
        "[o.frame.priority, o.frame.flags, o.frame.ack_by, orders.size]",
    )
    assert {"type": "holding", "order_ids": ["ord_1"]} in held
    assert shown == ["P1", ["weapon"], "2026-12-05T10:01:30+00:00", 1]


def test_a_taken_order_revised_while_the_phone_was_offline_shows_its_new_flags() -> None:
    # Acknowledged on this phone; offline, the incident got `weapon`; on reconnect notify
    # tells where the order stands with the order as it is now (an order_state frame).
    taken = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    revised = {**ORDER, "priority": "P1", "flags": ["weapon"]}
    *_, shown = run_page(
        f"{hello('t1')}; {deliver(ORDER)}; {deliver(taken)}; sentFrames()",
        dropped(1006),
        f"{hello('t1')}; {deliver({**taken, 'order': revised})}; const o = orders.get('ord_1'); "
        "[o.state, o.frame.priority, o.frame.flags]",
    )
    assert shown == ["acknowledged", "P1", ["weapon"]]


def test_a_member_moved_to_another_team_no_longer_holds_the_former_teams_orders() -> None:
    # The roster moved the member from t1 to t2: notify closes the socket (4409) and the page
    # reconnects, now for t2. The t1 order it shows is no longer the member's to answer:
    # notify never tells a t2 socket what becomes of it (withdrawn, taken by a teammate).
    *_, held, state = run_page(
        f"{hello('t1')}; {deliver(ORDER)}; sentFrames()",
        dropped(4409),
        f"{hello('t2')}; sentFrames()",
        "const o = orders.get('ord_1'); o ? [o.state, allowed(o.state, o.frame.kind)] : null",
    )
    assert not [f for f in held if f.get("type") == "holding"]
    assert state is None  # off the page


def test_a_moved_members_first_order_of_the_new_team_stays_when_it_comes_before_hello(
) -> None:
    # Moved from t1 to t2: the new socket is attached to t2's fan-out before notify queues
    # its hello, so an order issued to t2 in that moment reaches the page first. The page took
    # it (and confirmed receipt: notify stops its Web Push and SMS), then the hello named a
    # new team and the page took off every order it held, this one too. notify had sent it to
    # this socket, so its replay does not send it again: the member never saw the order.
    fresh = {**ORDER, "order_id": "ord_2", "incident_id": "inc_2", "priority": "P1"}
    *_, received, held, shown = run_page(
        f"{hello('t1')}; {deliver(ORDER)}; sentFrames()",
        dropped(4409),
        f"{deliver(fresh)}; sentFrames()",
        f"{hello('t2')}; sentFrames()",
        "[...orders.keys()]",
    )
    assert {"type": "received", "order_id": "ord_2"} in received
    assert {"type": "holding", "order_ids": ["ord_2"]} in held
    assert shown == ["ord_2"]  # t1's order off the page, t2's kept


def run_page_with_elements(*steps: str) -> list[Any]:
    """run_page, with `document.getElementById` giving the same stand-in for an id each time,
    so a step can press a button whose handler the page set (`$("forget").onclick`)."""
    harness = HARNESS.replace("const sockets = [],", "const elements = {}, sockets = [],", 1)
    harness = harness.replace("getElementById: () => anything()",
                              "getElementById: (id) => (elements[id] = elements[id] || anything())",
                              1)
    assert harness.count("elements = {}") == 1 and "elements[id]" in harness
    return cast(list[Any], run_in_node(harness, {"page": script(DEVICE_PAGE),
                                                 "steps": list(steps)}))


PUSH_HERE = """
var calls = [], unsubscribed = false;
fetch = async (url, init) => { calls.push([url, (init || {}).method || "GET",
  ((init || {}).headers || {}).Authorization]); return { ok: true, status: 200,
  json: async () => ({}) }; };
navigator.serviceWorker = { getRegistration: async () => ({ pushManager: {
  getSubscription: async () => ({ unsubscribe: async () => { unsubscribed = true; return true; } })
} }) };
"""


def test_forgetting_the_token_leaves_nothing_of_the_device_on_or_reaching_this_browser() -> None:
    # A post's shared phone: the guard going off duty forgets the token. The orders shown
    # (a police order's caller, name and phone) must go with it, and this browser's push
    # subscription, the device's Web Push channel, must stop: else the next person holding
    # the phone keeps getting the former holder's team's orders as notifications.
    police = {**ORDER, "caller": {"name": "Wang", "phone": "+8613800000000"}}
    *_, after = run_page_with_elements(
        f"{hello('t1')}; {deliver(police)}; {PUSH_HERE}; orders.size",
        "document.getElementById('forget').onclick()",
        "[orders.size, unsubscribed, calls.filter((c) => c[1] === 'DELETE'), token]",
    )
    assert after == [0, True, [["/v1/devices/me/webpush", "DELETE", "Bearer dev-token"]], ""]


def test_a_revoked_device_no_longer_shows_its_orders() -> None:
    # A lost phone, or a member taken off the roster: the admin revokes the device and
    # notify closes its socket with 4401. The page must not go on showing the orders it had
    # (a police order's caller, the description) to whoever holds the phone now.
    police = {**ORDER, "caller": {"name": "Wang", "phone": "+8613800000000"},
              "description": "neighbours fighting"}
    *_, after = run_page(
        f"{hello('t1')}; {deliver(police)}; orders.size",
        "ws.onclose({ code: 4401 }); runTimers(); [orders.size, stopped]",
    )
    assert after == [0, True]


def test_an_answer_sent_on_a_socket_that_dropped_before_its_reply_is_sent_again() -> None:
    # The member pressed Acknowledge in a dead spot: the socket still counted as open, took
    # the frame and dropped (1006) without a reply. The page kept the order NEW and sent
    # nothing again on reconnect: the answer was lost, the deadline ran out and dispatch
    # gave the incident to another team while this one drove there. A repeated answer
    # changes nothing, so the page sends again what it never heard taken.
    answer = {"type": "response", "order_id": "ord_1", "response": "acknowledged"}
    *_, sent_first, _, after_hello = run_page(
        f"{hello('t1')}; {deliver(ORDER)}; sentFrames()",
        "respond('ord_1', 'acknowledged').then(() => sentFrames())",
        dropped(1006),
        f"{hello('t1')}; sentFrames()",
    )
    assert sent_first == [answer]
    assert answer in after_hello


def test_an_answer_taken_before_the_socket_dropped_is_not_sent_again() -> None:
    taken = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    *_, after_hello = run_page(
        f"{hello('t1')}; {deliver(ORDER)}; sentFrames()",
        f"respond('ord_1', 'acknowledged').then(() => {{ {deliver(taken)}; return sentFrames(); }})",
        dropped(1006),
        f"{hello('t1')}; sentFrames()",
    )
    assert not [f for f in after_hello if f.get("type") == "response"]


def test_a_call_for_reinforcement_is_sent_again_only_while_notify_takes_it_as_a_repeat() -> None:
    # Notify takes a second `reinforce` within REINFORCE_REPEAT_S (30 s) as the same call;
    # after it, as a new call for one more unit. A call sent again long after might be a
    # second: the member is asked to press again instead.
    call = {"type": "response", "order_id": "ord_1", "response": "reinforce"}
    *_, soon, _, _, later = run_page(
        f"{hello('t1')}; {deliver(ORDER)}; respond('ord_1', 'reinforce')",
        dropped(1006),
        f"{hello('t1')}; sentFrames()",
        "const start = Date.now(); Date.now = () => start + 60000; "
        "respond('ord_1', 'reinforce'); sentFrames()",
        f"Date.now = () => start + 120000; {dropped(1006)}",
        f"{hello('t1')}; sentFrames()",
    )
    assert call in soon
    assert call not in later


SW_HARNESS = r"""
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const handlers = {}, shown = [];
global.self = {
  addEventListener: (type, fn) => { handlers[type] = fn; },
  registration: { showNotification: async (title, opts) => { shown.push([title, opts]); } },
  clients: { matchAll: async () => [], openWindow: async () => null },
  navigator: { languages: input.languages || [] },
};
// the language the page kept for the worker, if any
global.caches = { match: async (url) => (url === "/device/lang" && input.kept
  ? { text: async () => input.kept } : undefined) };
eval(input.worker);
(async () => {
  for (const message of input.pushes) {
    let waited = null;
    handlers.push({ data: { json: () => message }, waitUntil: (p) => { waited = p; } });
    await waited;
  }
  console.log(JSON.stringify(shown));
})();
"""
FIRE = {"type": "order", "order_id": "ord_1", "priority": "P1", "category": "fire",
        "address": "Minzu Ave 88"}
FIRE_TAKEN_BACK = {"type": "order_withdrawn", "order_id": "ord_1", "priority": "P1",
                   "category": "fire", "address": "Minzu Ave 88"}


def test_the_service_worker_puts_a_withdrawal_in_place_of_the_orders_notification() -> None:
    # The order's push showed a notification that stays until the member acts on it; the
    # order withdrawn (its deadline passed, the incident given to another team), notify's
    # take-back push replaces it, by its tag, with one that asks for nothing.
    shown = run_in_node(SW_HARNESS, {"worker": SERVICE_WORKER,
                                     "pushes": [FIRE, FIRE_TAKEN_BACK]})
    (title, alert), (again, notice) = shown
    zh = WORKER_TEXT["zh"]
    assert title == "P1特急 火警" and alert["tag"] == "ord_1" and alert["requireInteraction"]
    assert again == zh["withdrawn"].format(what="P1特急 火警") and notice["tag"] == "ord_1"
    assert notice["requireInteraction"] is False and notice["silent"] is True
    assert notice["body"] == f"{zh['no_need']} Minzu Ave 88"


@pytest.mark.parametrize(("languages", "kept", "english"), [
    (["en-GB", "zh-CN"], None, True),   # the browser puts English first
    (["zh-CN"], "en", True),            # the member chose English on the page
    (["en-US"], "zh", False),           # ... or Chinese
])
def test_the_lock_screen_speaks_the_pages_language(
        languages: list[str], kept: str | None, english: bool) -> None:
    shown = run_in_node(SW_HARNESS, {"worker": SERVICE_WORKER, "languages": languages,
                                     "kept": kept, "pushes": [FIRE, FIRE_TAKEN_BACK]})
    (title, _), (again, notice) = shown
    if english:
        assert (title, again) == ("P1 emergency fire", "Withdrawn: P1 emergency fire")
        assert notice["body"].startswith("No need to go")
    else:
        assert title == "P1特急 火警"


def test_a_team_moved_from_the_police_to_a_security_company_no_longer_shows_callers() -> None:
    # A roster import moved the team, keeping its id, from a police agency to a security
    # company: notify closed its sockets (4409) because their members may no longer read a
    # police order's caller and description, and sends the orders again without them. The
    # page, holding the orders already, kept showing the caller's name and phone number and
    # the description to the guards.
    police = {**ORDER, "caller": {"name": "Wang", "phone": "+8613800000000"},
              "description": "neighbours fighting"}
    *_, dropped_now, back = run_page(
        f"{hello('t1')}; {deliver(police)}; sentFrames()",
        "ws.onclose({ code: 4409 }); const f = orders.get('ord_1').frame; "
        "[f.caller || null, f.description || null]",
        f"runTimers(); ws.onopen(); {hello('t1')}; {deliver(ORDER)}; "
        "const g = orders.get('ord_1').frame; [g.caller || null, g.description || null]",
    )
    assert dropped_now == [None, None]
    assert back == [None, None]


@pytest.mark.parametrize("code", [1006, 1012])
def test_a_police_order_sent_again_without_its_caller_is_no_longer_shown_with_it(
        code: int) -> None:
    # A roster import moved the team, keeping its id, from a police agency into a volunteer
    # patrol. Before the socket's periodic re-check noticed (and closed it with 4409), the
    # phone lost its signal (1006), or notify restarted (1012): the page connected again, its
    # token now a volunteer's, and notify sent the order it holds again without the caller
    # and description. The page kept the caller's name and number on the card for good:
    # the new socket's re-check finds nothing changed, so no 4409 ever takes them off.
    police = {**ORDER, "caller": {"name": "Wang", "phone": "+8613800000000"},
              "description": "neighbours fighting"}
    taken = {"type": "order_state", "order_id": "ord_2", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    police_taken = {**police, "order_id": "ord_2", "incident_id": "inc_2"}
    *_, shown = run_page(
        f"{hello('t1')}; {deliver(police)}; {deliver(police_taken)}; {deliver(taken)}; "
        "sentFrames()",
        dropped(code),
        f"{hello('t1')}; {deliver(ORDER)}; "
        f"{deliver({**taken, 'order': {**ORDER, 'order_id': 'ord_2', 'incident_id': 'inc_2'}})}; "
        "[...orders.values()].map((o) => [o.frame.order_id, o.frame.caller || null, "
        "o.frame.description || null])",
    )
    assert shown == [["ord_1", None, None], ["ord_2", None, None]]
