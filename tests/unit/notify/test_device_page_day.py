"""A volunteer's day on the member's page, on a cheap Android phone in a dense district: the
socket through lifts and locked screens, the alarm, the answer that must not be lost, the
deadline, reports from the street and what the card shows. The page's script runs in node,
as tests/unit/test_pages.py runs it, here with a small DOM whose text a test can read, a
clock a test moves, and timers that run when they are due by that clock."""

from __future__ import annotations

import json
from typing import Any, cast, get_args

from services.notify.domain.responses import OrderState, allowed_responses
from services.notify.page import DEVICE_PAGE
from services.notify.page_text import PAGE_TEXT
from shared.events import OrderKind
from tests.helpers import run_in_node
from tests.unit.test_pages import ORDER, script

HARNESS = r"""
const vm = require("node:vm");
const { page, steps, boot, storage, languages, hash } =
  JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const byId = {};
class El {
  constructor(tag) { this.tagName = tag; this.children = []; this.own = ""; this.parent = null;
    this.style = {}; this.className = ""; this.hidden = false; this.disabled = false;
    this.value = ""; this.checked = false; this.key = ""; }
  get id() { return this.key; }
  set id(v) { this.key = v; byId[v] = this; }
  get textContent() { return [this.own, ...this.children.map((c) => c.textContent)]
    .filter(Boolean).join(" | "); }
  set textContent(v) { this.own = String(v); this.children = []; }
  append(...kids) { for (const k of kids) { if (k.parent) k.parent.children =
    k.parent.children.filter((x) => x !== k); k.parent = this; this.children.push(k); } }
  replaceChildren(...kids) { for (const k of this.children) k.parent = null;
    this.children = []; this.append(...kids); }
  remove() { if (this.parent) { this.parent.children = this.parent.children.filter((x) => x !== this);
    this.parent = null; } if (byId[this.key] === this) delete byId[this.key]; }
}
const listeners = {};
function listen(type, fn) { (listeners[type] = listeners[type] || []).push(fn); }
const sockets = [], timers = [], fetched = [], toasts = [];
class FakeSocket {
  constructor(url, protocols) { this.url = url; this.protocols = protocols; this.readyState = 0;
    this.sent = []; sockets.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
}
FakeSocket.CONNECTING = 0; FakeSocket.OPEN = 1;
let shift = 0, frozen = null;
// the page's clock, which a test moves; it stands still while later() runs the timers, so
// each runs at its own time however long the ones before it took on a busy machine
const now = () => (frozen !== null ? frozen : Date.now() + shift);
const browser = {
  document: { hidden: false, addEventListener: listen, documentElement: { lang: "" },
    getElementById: (id) => byId[id] || (id.startsWith("o-") ? null
      : ((byId[id] = new El("div")).key = id, byId[id])),
    createElement: (tag) => new El(tag) },
  window: { addEventListener: listen }, navigator: { onLine: true, languages },
  history: { replaceState() { browser.location.hash = ""; } },
  location: { protocol: "https:", host: "notify.test", hash: hash || "", pathname: "/device" },
  localStorage: { items: { ...(storage || {}) },
    getItem(k) { return k in this.items ? this.items[k] : null; },
    setItem(k, v) { this.items[k] = String(v); }, removeItem(k) { delete this.items[k]; } },
  WebSocket: FakeSocket, console, El, byId, sockets, fetched, toasts, listeners, timers,
  setTimeout: (fn, ms) => { timers.push({ fn, at: now() + (ms || 0) }); return timers.length; },
  clearTimeout: (id) => { if (id && timers[id - 1]) timers[id - 1].fn = null; },
  setInterval: (fn, ms) => { const t = { fn, at: now() + ms, every: ms }; timers.push(t);
    return timers.length; },
  clearInterval: (id) => { if (id && timers[id - 1]) timers[id - 1].fn = null; },
  // the network: answers `net(url, init)` gives; none by default (offline). A request whose
  // signal aborts fails with an AbortError, as a browser's does, answered or not.
  net: null, AbortController,
  fetch: async (url, init) => { init = init || {};
    fetched.push({ url, method: init.method || "GET",
                   body: init.body ? JSON.parse(init.body) : null });
    if (!browser.net) throw new TypeError("Failed to fetch");
    const aborted = new Promise((ok, fail) => { if (init.signal) init.signal.addEventListener(
      "abort", () => fail(new DOMException("The operation was aborted.", "AbortError"))); });
    const [status, body, headers] = await Promise.race([browser.net(url, init), aborted]);
    return { ok: status < 300, status, json: async () => body,
             headers: { get: (name) => (headers || {})[name.toLowerCase()] || null } }; },
  later(ms) {   // the clock moves on by `ms`: each timer runs when it is due, in order
    const end = now() + ms; let ran = 0;
    try {
      for (let round = 0; round < 10000; round++) {
        const due = timers.filter((x) => x.fn && x.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!due) { frozen = end; return ran; }
        frozen = Math.max(now(), due.at);
        const fn = due.fn; if (due.every) due.at += due.every; else due.fn = null;
        fn(); ran++;
      }
      throw new Error("timers keep setting timers that are due at once");
    } finally { shift = frozen - Date.now(); frozen = null; }   // on from where it stood
  },
  drop(code) { const s = sockets[sockets.length - 1]; s.readyState = 3; s.onclose({ code }); },
  deliver(frame) { const s = sockets[sockets.length - 1]; s.onmessage({ data: JSON.stringify(frame) }); },
  sentFrames() { const s = sockets[sockets.length - 1]; const out = s.sent.filter((f) => f.type !== "ping");
    s.sent = []; return out; },
  text(id) { const e = byId[id]; return e ? e.textContent : null; },
};
const ctx = vm.createContext(browser);
vm.runInContext("Date.now = () => later.now();", ctx);
browser.later.now = now;
vm.runInContext(page, ctx);
vm.runInContext('const shownToast = toast; toast = (t) => { toasts.push(t); shownToast(t); };', ctx);
vm.runInContext(boot, ctx);
(async () => {
  const out = [];
  for (const step of steps) {
    let value = vm.runInContext(step, ctx);
    if (value && typeof value.then === "function") value = await value;
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));  // fetches settle
    out.push(value === undefined ? null : value);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""

CONNECTED = 'token = "dev-token"; stopped = false; open_(); ws.readyState = 1; ws.onopen();'
HELLO = {"type": "hello", "device_id": "dev_1", "member_id": "mem_1", "member_name": "Li",
         "team_id": "t1", "ping_interval_s": 20}
ME = {"device_id": "dev_1", "webpush": {"enabled": False, "subscribed": False},
      "sms": {"enabled": False},
      "services": {"volunteers": "https://vol.test", "intake": "https://intake.test"}}
VOLUNTEER_ME = {"member": {"id": "mem_1", "name": "Li"},
                "team": {"id": "t1", "name": "Red armbands 3", "district": "d1"},
                "state": {"team_id": "t1", "status": "available", "on_shift": True,
                          "shift_member_ids": ["mem_1"], "open_orders": []}}
CATEGORIES = [{"category": "hazard_report", "priority": "P4"},
              {"category": "violence", "priority": "P1"}]
# the district's services answering as they do; `reports` answers intake's POST
SERVICES = ("net = async (url, init) => { const m = (init && init.method) || 'GET';"
            f" if (url === '/v1/devices/me') return [200, {json.dumps(ME)}];"
            f" if (url === 'https://vol.test/v1/me') return [200, {json.dumps(VOLUNTEER_ME)}];"
            " if (url.startsWith('https://vol.test/v1/me/points')) return [200, "
            "{ balance: 0, history: [] }];"
            f" if (url === 'https://intake.test/v1/categories') return [200, {json.dumps(CATEGORIES)}];"
            " if (url === 'https://intake.test/v1/incidents' && m === 'POST') return reports(init);"
            " return [404, { error: { message: 'not here' } }]; };"
            " var reports = async () => [202, { incident_id: 'inc_9', status: 'reported' }];")


def day(*steps: str, boot: str = CONNECTED, storage: dict[str, str] | None = None,
        languages: list[str] | None = None, hash: str = "") -> list[Any]:
    """Runs the member's page in node, opened at `hash` (a link's `#token=`), booted by
    `boot`, in a browser that prefers `languages` (none: the page's default), then each step
    (a JS expression) in turn, letting the page's fetches settle after each: their values."""
    return cast(list[Any], run_in_node(HARNESS, {"page": script(DEVICE_PAGE),
                                                 "steps": list(steps), "boot": boot,
                                                 "storage": storage or {},
                                                 "languages": languages or [], "hash": hash}))


def said(key: str, **values: object) -> str:
    """What the page says for `key` in its default language, Chinese: a test checks which
    message the member was given, whatever its wording."""
    return PAGE_TEXT["zh"][key].format(**values)


def deliver(frame: dict[str, Any]) -> str:
    return f"deliver({json.dumps(frame)})"


def hello() -> str:
    return deliver(HELLO)


# --- the socket through a lift, a locked screen, a restart ----------------------------------

def test_the_token_goes_as_a_subprotocol_never_in_the_socket_s_url() -> None:
    # A TLS proxy in front of notify logs each request's URL, a ?token= with it
    url, protocols = day("[sockets[0].url, sockets[0].protocols]")[0]
    assert url == "wss://notify.test/v1/devices/stream"
    assert protocols == ["lianfang.v1", "token.dev-token"]


def test_a_pasted_token_no_device_token_can_be_is_refused_as_notify_refuses_one() -> None:
    # A subprotocol must be an HTTP token (every device token is): the browser throws on
    # anything else instead of connecting; the page says the token was refused, as for 4401
    status, sockets, stopped = day(
        "byId.token.value = 'lfd_abc def/ghi'; connect(); byId.status.textContent",
        "sockets.length", "stopped", boot="")
    assert status == said("token_refused")
    assert sockets == 0 and stopped is True


def test_pressing_connect_while_connected_leaves_one_socket_and_no_reconnect_churn() -> None:
    # The page connects by itself with the stored token; the volunteer presses Connect
    # anyway. The socket it replaced reports its close a moment later: that close must not
    # be taken for a drop of the new socket, which it would close and replace, whose close
    # would replace the next, and so on: a new socket every second all evening.
    *_, after = day(
        f"{hello()}; sockets.length",
        "byId.token.value = 'dev-token'; connect(); sockets[1].readyState = 1; "
        "sockets[1].onopen(); sockets.length",
        "sockets[0].readyState = 3; sockets[0].onclose({ code: 1005 }); later(20000); "
        "[sockets.length, sockets[1].readyState, ws === sockets[1]]",
    )
    assert after == [2, 1, True]


def test_a_socket_accepted_then_closed_at_once_is_tried_again_after_growing_waits() -> None:
    # notify accepts the socket and closes it with 1013 while its store is away (a restart
    # of Redis): the page counted the open as a success and came back after one second,
    # every second, as every phone of the district did, for the whole outage.
    waits = day(*[
        "var before = Date.now(); drop(1013); "
        "var due = timers.filter((t) => t.fn === open_).map((t) => t.at - before); "
        "later(Math.max(...due)); ws.readyState = 1; ws.onopen(); Math.max(...due)"
        for _ in range(5)
    ])
    assert all(b > a for a, b in zip(waits, waits[1:], strict=False)), waits
    assert waits[-1] >= 8000


def test_phones_dropped_together_come_back_at_different_moments() -> None:
    # notify restarts (1012 to every socket): every phone reconnected after exactly one
    # second, then 2, 4, 8 s in step, a storm at each.
    def wait_with(random: float) -> int:
        [wait] = day(
            f"{hello()}; Math.random = () => {random}; var before = Date.now(); "
            "drop(1012); "
            "Math.max(...timers.filter((t) => t.fn === open_).map((t) => t.at - before))")
        return cast(int, wait)

    assert wait_with(0.05) != wait_with(0.95)


def test_a_socket_that_went_silent_in_a_lift_is_replaced() -> None:
    # In a lift the connection dies without a close: the browser keeps calling the socket
    # open for many minutes. notify pings every 20 s; nothing heard for a minute means the
    # socket is dead: the page said "connected" while no order could reach it.
    *_, after = day(
        f"{hello()}; later(30000); sockets.length",
        "later(31000); [sockets.length, text('status')]",
    )
    assert after[0] == 2 and after[1] != "connected"


def test_a_try_to_connect_that_never_opens_is_given_up_and_tried_again() -> None:
    # In a dead spot the connection attempt itself hangs: "connecting…" for minutes.
    *_, after = day(
        f"{hello()}; drop(1006); later(1000); sockets.length",
        "later(35000); sockets.length",
    )
    assert after >= 3


def test_a_socket_that_keeps_talking_is_kept() -> None:
    *_, after = day(
        f"{hello()}; for (let i = 0; i < 12; i++) {{ later(15000); deliver({{ type: 'ping' }}); }}"
        " sockets.length",
    )
    assert after == 1


def test_the_network_coming_back_reconnects_at_once_not_after_the_grown_wait() -> None:
    # Ten minutes without a signal: the waits between tries grew to 30 s. Out of the lift,
    # the phone has its network back and the page must not sit out the wait.
    *_, after = day(
        f"{hello()}; for (let i = 0; i < 8; i++) {{ drop(1006); later(31000); }}"
        " sockets.length",
        "drop(1006); var n = sockets.length; "
        "(listeners.online || []).forEach((fn) => fn()); sockets.length - n",
    )
    assert after == 1


def test_unlocking_the_phone_checks_the_socket_at_once() -> None:
    # The screen was locked for five minutes; the socket died meanwhile without a close
    # (the page's timers did not run while the phone slept). Unlocked, the page must not
    # show "connected" for another minute.
    *_, after = day(
        f"{hello()}; timers.forEach((t) => {{ t.fn = null; }}); "
        "later(300000); document.hidden = false; "
        "(listeners.visibilitychange || []).forEach((fn) => fn()); later(1000); sockets.length",
    )
    assert after == 2


def test_a_page_opened_without_network_gets_its_duty_panel_once_connected() -> None:
    # Android killed the tab in the background; the volunteer reopens it in the lift. The
    # page's first calls fail: no check-in button, no categories, no position shared, and
    # nothing tried again once the socket is back.
    *_, asked, shown = day(
        "fetched.length",
        f"{SERVICES}; {hello()}",
        "fetched.map((f) => f.url)",
        "[$('duty').hidden, $('rcat').children.map((o) => o.value)]",
        boot='token = "dev-token"; stopped = false; open_(); loadMe(); '
             'ws.readyState = 1; ws.onopen();',
    )
    assert "/v1/devices/me" in asked and "https://vol.test/v1/me" in asked
    assert shown == [False, ["hazard_report", "violence"]]


# --- an order: the alarm, the answer, the deadline ------------------------------------------

COUNT_BEEPS = "var beeps = 0; beep = () => { beeps++; };"


def test_an_order_alarms_until_it_is_answered() -> None:
    # One beep of a second in a pocket on a loud street is missed; the order rings again
    # until the team answers it, and stops once it is answered.
    taken = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    *_, ringing, after_answer = day(
        f"{COUNT_BEEPS} {hello()}; {deliver(ORDER)}; beeps",
        "later(30000); beeps",
        f"{deliver(taken)}; var b = beeps; later(60000); beeps - b",
    )
    assert ringing >= 4
    assert after_answer == 0


def test_the_alarm_stops_when_the_order_is_withdrawn_and_rings_once_for_two_orders() -> None:
    second = {**ORDER, "order_id": "ord_2", "incident_id": "inc_2", "priority": "P1"}
    *_, both, one_left, none_left = day(
        f"{COUNT_BEEPS} {hello()}; {deliver(ORDER)}; {deliver(second)}; beeps = 0",
        "later(30000); beeps",
        f"{deliver({'type': 'order_withdrawn', 'order_id': 'ord_1'})}; beeps = 0; "
        "later(30000); beeps",
        f"{deliver({'type': 'order_withdrawn', 'order_id': 'ord_2'})}; beeps = 0; "
        "later(60000); beeps",
    )
    assert one_left == both >= 4  # two orders waiting ring as one alarm, not two at once
    assert none_left == 0


def test_a_pressed_answer_stops_the_alarm_while_it_is_on_its_way() -> None:
    *_, after = day(
        f"{COUNT_BEEPS} {hello()}; {deliver(ORDER)}",
        "respond('ord_1', 'acknowledged'); beeps = 0; later(5000); beeps",
    )
    assert after == 0


def test_an_order_on_a_locked_android_phone_shows_a_notification_through_the_worker() -> None:
    # Chrome on Android has no Notification constructor for pages (it throws "Illegal
    # constructor"): the page's own notification never showed. The page shows it through
    # its service worker, which Android supports.
    android = ("document.hidden = true; var shown = []; "
               "window.Notification = function () { throw new TypeError('Illegal constructor'); }; "
               "window.Notification.permission = 'granted'; Notification = window.Notification; "
               "navigator.serviceWorker = { getRegistration: async () => ({ "
               "showNotification: async (title, o) => { shown.push([title, o.tag]); } }) };")
    *_, shown = day(
        f"{android} {hello()}; {deliver({**ORDER, 'priority': 'P1', 'category': 'violence'})}",
        "shown",
    )
    assert shown == [["P1特急 打架斗殴", "ord_1"]]  # the priority, its word and the category


def test_an_order_withdrawn_while_the_phone_is_locked_leaves_no_notification_behind() -> None:
    # The order's notification asks for an answer until the member acts on it. Withdrawn
    # (the deadline passed, the incident given to another team), it stayed on the lock
    # screen: the member unlocking later saw a P1 to go to that was no longer theirs.
    locked = ("document.hidden = true; var shown = [], closed = []; "
              "window.Notification = function () { throw new TypeError('Illegal constructor'); }; "
              "window.Notification.permission = 'granted'; Notification = window.Notification; "
              "navigator.serviceWorker = { getRegistration: async () => ({ "
              "showNotification: async (title, o) => { shown.push(o.tag); }, "
              "getNotifications: async (q) => shown.filter((t) => t === q.tag).map((t) => ({ "
              "close: () => { closed.push(t); } })) }) };")
    settle = ("(async () => { for (let i = 0; i < 5; i++) await null; "
              "return [shown.slice(), closed.slice()]; })()")
    *_, before, after = day(
        f"{locked} {hello()}; {deliver({**ORDER, 'priority': 'P1'})}",
        settle,
        f"{deliver({'type': 'order_withdrawn', 'order_id': 'ord_1'})}; {settle}",
    )
    assert before == [["ord_1"], []]
    assert after == [["ord_1"], ["ord_1"]]


def test_an_answer_the_socket_never_confirmed_goes_over_http_before_the_deadline() -> None:
    # A P1 must be acknowledged within 30 s. The member pressed Acknowledge on a socket that
    # had died without a close: the frame went nowhere, no reply came, and the page said
    # nothing until the deadline gave the incident to another team.
    answered = ("net = async () => [200, { state: 'acknowledged', answered: true, "
                "allowed: ['en_route', 'on_scene', 'resolved', 'handover', 'reinforce'] }];")
    *_, posted, state = day(
        f"{hello()}; {deliver({**ORDER, 'priority': 'P1'})}; respond('ord_1', 'acknowledged')",
        f"{answered} later(10000); fetched.filter((f) => f.method === 'POST')"
        ".map((f) => [f.url, f.body])",
        "orders.get('ord_1').state",
    )
    assert posted == [["/v1/orders/ord_1/responses", {"response": "acknowledged"}]]
    assert state == "acknowledged"


def test_a_final_answer_the_socket_took_but_never_confirmed_is_not_reported_refused() -> None:
    # The socket took "resolved" and its reply was lost: the same answer sent again over
    # HTTP gets 409 (the order is finished, as DESIGN says). The member must not read that
    # the answer was refused: the order stands where the answer took it.
    taken = ("net = async (url, init) => (init && init.method === 'POST') "
             "? [409, { error: { code: 'conflict', message: 'the order is finished (resolved); "
             "it takes no more responses' } }] "
             ": [200, { order_id: 'ord_1', state: 'resolved', answered: true, "
             "last_response: 'resolved', allowed: [] }];")
    *_, toasts, state = day(
        f"{hello()}; {deliver(ORDER)}; prompt = () => ''; respond('ord_1', 'resolved')",
        f"{taken} later(10000); toasts.slice()",
        "orders.get('ord_1').state",
    )
    assert not [t for t in toasts if "finished" in t or said("refused") in t], toasts
    assert state == "resolved"


def test_a_final_answer_sent_again_on_a_new_socket_and_taken_before_is_not_reported_refused(
) -> None:
    # The same on the socket: Resolved went on a socket that dropped before its reply; the
    # page sends it again after the next hello, behind its `holding`. notify answers the
    # holding with where the order stands (resolved, by this answer), then the answer sent
    # again with a 409, the order being finished: not a refusal for the member to read.
    on_scene = {"type": "order_state", "order_id": "ord_1", "state": "on_scene",
                "answered": True, "response": "on_scene"}
    finished = {"type": "error", "code": "conflict", "order_id": "ord_1",
                "message": "the order is finished (resolved); it takes no more responses"}
    *_, sent, (toasts, state) = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(on_scene)}; prompt = () => ''; "
        "respond('ord_1', 'resolved'); drop(1006)",
        f"later(3000); ws.readyState = 1; ws.onopen(); {hello()}; sentFrames()",
        f"{deliver({**on_scene, 'state': 'resolved', 'response': 'resolved'})}; "
        f"{deliver(finished)}; [toasts.slice(), orders.get('ord_1').state]",
    )
    assert {"type": "response", "order_id": "ord_1", "response": "resolved"} in sent
    assert not [t for t in toasts if "finished" in t], toasts
    assert state == "resolved"


def test_an_answer_refused_on_the_socket_as_the_order_ended_otherwise_is_said() -> None:
    # A teammate handed the order over as this member pressed Resolved: that refusal is news.
    handed_over = {"type": "order_state", "order_id": "ord_1", "state": "handover",
                   "answered": True, "response": "handover"}
    finished = {"type": "error", "code": "conflict", "order_id": "ord_1",
                "message": "the order is finished (handover); it takes no more responses"}
    *_, toasts = day(
        f"{hello()}; {deliver(ORDER)}; prompt = () => ''; respond('ord_1', 'resolved')",
        f"{deliver(handed_over)}; {deliver(finished)}; toasts.slice()",
    )
    # in the page's words (test_device_page_refusals), not notify's English sentence
    assert said("answer_refused_behind", answer="已处置", state="已移交") in toasts, toasts


def test_an_answer_that_could_not_be_sent_at_all_is_said_so() -> None:
    *_, told = day(
        f"{hello()}; {deliver(ORDER)}; respond('ord_1', 'acknowledged')",
        "later(10000)",
        "toasts.filter((t) => t === say('no_signal', { answer: word('response', 'acknowledged') }))"
        ".length",
    )
    assert told == 1


def test_a_call_for_reinforcement_never_confirmed_is_not_sent_again_as_a_second_call() -> None:
    # notify takes a repeat `reinforce` within 30 s as the same call, later as one more
    # unit: a reinforcement that went unconfirmed for longer is asked again of the member.
    *_, posted = day(
        f"{hello()}; {deliver(ORDER)}; respond('ord_1', 'reinforce')",
        "net = async () => [200, { state: 'issued', answered: true }]; later(45000); "
        "fetched.filter((f) => f.method === 'POST' && f.body.response === 'reinforce').length",
    )
    assert posted <= 1


def test_a_decline_without_its_reason_says_why_nothing_was_sent() -> None:
    *_, after = day(
        f"{hello()}; {deliver(ORDER)}; prompt = () => '   '; sentFrames()",
        "respond('ord_1', 'declined'); [sentFrames(), toasts.includes(say('decline_needs_reason'))]",
    )
    assert after == [[], True]


def test_the_deadline_counts_down_on_the_card() -> None:
    *_, first, later = day(
        f"{hello()}; var due = new Date(Date.now() + 30000).toISOString(); "
        f"deliver({{ ...{json.dumps(ORDER)}, priority: 'P1', ack_by: due }}); text('o-ord_1')",
        "later(12000); text('o-ord_1')",
    )
    assert "0:30" in first
    assert "0:18" in later


def test_the_countdown_follows_notifys_clock_not_a_phone_set_by_hand() -> None:
    # The phone's clock is five minutes slow: by it, a deadline 30 s away is 5:30 away.
    # notify's clock comes with its answers (the Date header).
    slow = ("net = async (url) => url === '/v1/devices/me' ? [200, { services: {}, "
            "webpush: { enabled: false }, sms: { enabled: false } }, "
            "{ date: new Date(Date.now() + 300000).toUTCString() }] : [404, {}];")
    *_, shown = day(
        f"{slow} loadMe()",
        f"{hello()}; var due = new Date(Date.now() + 330000).toISOString(); "
        f"deliver({{ ...{json.dumps(ORDER)}, priority: 'P1', ack_by: due }}); text('o-ord_1')",
    )
    assert "0:29" in shown or "0:30" in shown or "0:31" in shown, shown


def test_the_acknowledge_by_time_reads_on_the_phones_own_clock() -> None:
    # The phone's clock is five minutes slow. The card said "Acknowledge by 10:05:30" (notify's
    # time) beside "0:30 left", while the phone's own clock read 10:00: a member glancing at
    # the time would count five minutes more than the P1 has.
    slow = ("net = async (url) => url === '/v1/devices/me' ? [200, { services: {}, "
            "webpush: { enabled: false }, sms: { enabled: false } }, "
            "{ date: new Date(Date.now() + 300000).toUTCString() }] : [404, {}];")
    *_, (card, *phone) = day(
        f"{slow} loadMe()",
        f"{hello()}; var due = new Date(Date.now() + 330000).toISOString(); "
        f"deliver({{ ...{json.dumps(ORDER)}, priority: 'P1', ack_by: due }}); "
        "[text('o-ord_1'), ...[29000, 30000, 31000].map((ms) => "
        "clock(new Date(Date.now() + ms)))]",
    )
    assert any(said("ack_by", time=t) in card for t in phone), (card, phone)


def test_the_card_offers_exactly_the_answers_notify_takes() -> None:
    # notify lists in `allowed` what an order takes; a button the server refuses is a 409
    # in the street, a missing one an answer the team cannot give.
    cases = [(state, kind) for state in get_args(OrderState) for kind in get_args(OrderKind)]
    frames = {f"ord_{i}": {**ORDER, "order_id": f"ord_{i}", "kind": kind}
              for i, (_, kind) in enumerate(cases)}
    steps = [hello()] + [deliver(frame) for frame in frames.values()]
    for i, (state, _) in enumerate(cases):
        steps.append(f"orders.get('ord_{i}').state = {json.dumps(state)}; render('ord_{i}', false)")
    steps.append("[...orders.keys()].map((id) => $('o-' + id).children"
                 ".find((c) => c.className === 'actions').children.length)")
    steps.append("[...orders.keys()].map((id) => allowed(orders.get(id).state, "
                 "orders.get(id).frame.kind))")
    *_, counts, offered = day(*steps)
    expected = [list(allowed_responses(state, kind=kind)) for state, kind in cases]
    assert offered == expected
    assert counts == [len(e) for e in expected]


# --- what the card shows: need to know ------------------------------------------------------

def test_a_volunteers_card_shows_no_caller_line_and_no_placeholder() -> None:
    police_without_details = {**ORDER, "order_id": "ord_2", "caller": {}}
    *_, volunteer, police = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(police_without_details)}",
        "text('o-ord_1')",
        "text('o-ord_2')",
    )
    for card in (volunteer, police):
        assert "Caller" not in card and "undefined" not in card and "null" not in card


# --- reports from the street ------------------------------------------------------------------

REPORT_SETUP = (f"{SERVICES} loadMe()")
WHERE = ("navigator.geolocation = { getCurrentPosition: (ok) => ok({ coords: "
         "{ latitude: 22.85, longitude: 108.35, accuracy: 8 }, timestamp: Date.now() }), "
         "watchPosition: () => 1, clearWatch() {} };")


def report(category: str, text: str = "", weapon: bool = False) -> str:
    return (f"$('rcat').value = {json.dumps(category)}; $('rdesc').value = {json.dumps(text)}; "
            f"$('rweapon').checked = {json.dumps(weapon)}; sendReport()")


POSTED = ("fetched.filter((f) => f.method === 'POST' && f.url.endsWith('/v1/incidents'))"
          ".map((f) => f.body)")


def test_a_failed_report_sent_again_keeps_its_external_ref_and_place() -> None:
    lost = "reports = async () => { throw new TypeError('Failed to fetch'); };"
    *_, posted = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{lost} {report('hazard_report', 'loose railing')}",
        f"later(20000); reports = async () => [202, {{ incident_id: 'inc_9', status: 'reported' }}];"
        f" {report('hazard_report', 'loose railing')}",
        POSTED,
    )
    first, again = posted
    assert first["external_ref"] == again["external_ref"]
    assert first == again


def test_a_new_report_after_a_failed_one_is_not_taken_for_its_retry() -> None:
    # The hazard report's answer was lost (intake had it). Minutes later the volunteer
    # reports a fight with a knife: sent with the hazard's external_ref, intake took it for
    # the hazard's retry (200, the hazard's incident) and the page said "Reported". The
    # fight reached nobody.
    lost = "reports = async () => { throw new TypeError('Failed to fetch'); };"
    *_, posted = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{lost} {report('hazard_report', 'loose railing')}",
        f"later(120000); reports = async () => [202, {{ incident_id: 'inc_9', status: 'reported' }}];"
        f" {report('violence', 'two men, one with a knife', weapon=True)}",
        POSTED,
    )
    hazard, fight = posted
    assert hazard["external_ref"] != fight["external_ref"]
    assert fight["category"] == "violence" and fight["flags"] == ["weapon"]


def test_the_same_words_reported_again_from_another_place_are_a_new_report() -> None:
    lost = "reports = async () => { throw new TypeError('Failed to fetch'); };"
    moved = ("navigator.geolocation.getCurrentPosition = (ok) => ok({ coords: "
             "{ latitude: 22.86, longitude: 108.35, accuracy: 8 }, timestamp: Date.now() });")
    *_, posted = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{lost} {report('hazard_report')}",
        f"{moved} later(120000); reports = async () => [202, {{ incident_id: 'inc_9' }}]; "
        f"{report('hazard_report')}",
        POSTED,
    )
    here, there = posted
    assert here["external_ref"] != there["external_ref"]
    assert there["location"]["lat"] == 22.86


def test_a_linked_report_tells_the_member_it_joined_an_incident_already_reported() -> None:
    linked = ("reports = async () => [202, { incident_id: 'inc_8', status: 'linked', "
              "linked_to: 'inc_1' }];")
    *_, told = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{linked} {report('hazard_report')}",
        "toasts[toasts.length - 1]",
    )
    assert told == said("reported_linked")
