"""The browser pages' scripts (the command room's console, an agency desk's page, the
members' device page).

The suite runs without a browser. These checks catch what `node --check` does not: a
script that declares a global the browser holds unforgeable (`function top`) stops with
"Identifier 'top' has already been declared" and leaves the page empty (it happened). The
device page's frame handling is also run in node (when installed), with stand-ins for the
DOM, the socket and the timers."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import pytest

from services.dispatch.agency_page import AGENCY_PAGE
from services.dispatch.console import CONSOLE_PAGE
from services.notify.page import DEVICE_PAGE
from tests.helpers import run_in_node

# window's [LegacyUnforgeable] properties: a script may not declare them again.
UNFORGEABLE = {"top", "window", "document", "location"}
DECLARED = re.compile(r"^(?:async\s+)?(?:function\s*\*?\s*|const\s+|let\s+|var\s+|class\s+)"
                      r"([A-Za-z_$][\w$]*)", re.MULTILINE)


def script(page: str) -> str:
    return page.split("<script>", 1)[1].split("</script>", 1)[0]


@pytest.mark.parametrize("page", [CONSOLE_PAGE, AGENCY_PAGE, DEVICE_PAGE],
                         ids=["console", "agency", "device"])
def test_no_page_declares_a_global_the_browser_will_not_give_up(page: str) -> None:
    names = set(DECLARED.findall(script(page)))
    assert names, "the pattern finds the page's declarations"
    assert not names & UNFORGEABLE, sorted(names & UNFORGEABLE)


def test_the_pattern_finds_the_declaration_that_broke_the_console() -> None:
    assert DECLARED.findall("function top(pairs) { return pairs; }\nconst x = 1;") == [
        "top", "x"]


# The device page's script run in node, with stand-ins for what a browser gives it: a DOM
# that takes whatever the page does with it, a WebSocket that records the frames the page
# sends, and timers the test runs when it says.
HARNESS = r"""
const vm = require("node:vm");
const { page, steps } = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
function anything() {
  const kept = {};
  return new Proxy(function () {}, {
    get: (t, key) => (key in kept ? kept[key] : key === "then" ? undefined : anything()),
    set: (t, key, value) => { kept[key] = value; return true; },
    apply: () => anything(),
  });
}
const sockets = [], timers = [], fetched = [];
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
}
FakeSocket.OPEN = 1;
const browser = {
  document: { getElementById: () => anything(), createElement: () => anything(), hidden: false },
  window: {}, navigator: {}, history: anything(),
  location: { protocol: "http:", host: "notify.test", hash: "", pathname: "/device" },
  localStorage: { getItem: () => null, setItem() {}, removeItem() {} },
  WebSocket: FakeSocket, console,
  setTimeout: (fn, ms) => { timers.push({ fn, ms }); return timers.length; },
  clearTimeout: (id) => { if (timers[id - 1]) timers[id - 1].fn = null; },
  setInterval: () => 0, clearInterval: () => {},
  fetch: async (url, init) => { fetched.push({ url, body: JSON.parse(init.body) });
    return { ok: true, json: async () => ({ state: "acknowledged", answered: true }) }; },
  runTimers() { const due = timers.splice(0); for (const t of due) if (t.fn) t.fn(); return due.length; },
  deliver(frame) { sockets[sockets.length - 1].onmessage({ data: JSON.stringify(frame) }); },
  sentFrames() { const s = sockets[sockets.length - 1]; const out = s.sent; s.sent = []; return out; },
  fetched,
};
const ctx = vm.createContext(browser);
vm.runInContext(page, ctx);
vm.runInContext('token = "dev-token"; stopped = false; open_(); ws.onopen();', ctx);
(async () => {
  const out = [];
  for (const step of steps) {
    const value = vm.runInContext(step, ctx);
    out.push(value && typeof value.then === "function" ? await value : value);  // its realm's Promise
  }
  process.stdout.write(JSON.stringify(out));
})();
"""

ORDER = {"type": "order", "order_id": "ord_1", "incident_id": "inc_1", "category": "dispute",
         "priority": "P2", "location": {"lat": 22.8, "lon": 108.3}, "ack_by": None,
         "flags": [], "kind": "dispatch"}


def run_page(*steps: str) -> list[Any]:
    """Runs the device page in node, then each step (a JS expression) in turn: their values."""
    return cast(list[Any], run_in_node(HARNESS, {"page": script(DEVICE_PAGE),
                                                 "steps": list(steps)}))


def deliver(frame: dict[str, Any]) -> str:
    return f"deliver({json.dumps(frame)})"


def test_the_device_page_sends_again_a_receipt_the_server_could_not_take() -> None:
    refused = {"type": "error", "code": "unavailable", "order_id": "ord_1",
               "message": "the store is not answering; send it again"}
    first, after_error, later, again, shown = run_page(
        f"{deliver(ORDER)}; sentFrames()",
        f"{deliver(refused)}; sentFrames()",
        "runTimers(); sentFrames()",
        f"{deliver(ORDER)}; sentFrames()",  # the server sends the order again: confirmed again
        "orders.size",
    )
    receipt = {"type": "received", "order_id": "ord_1"}
    assert first == [receipt] and after_error == []  # not at once: after a wait
    assert later == [receipt] and again == [receipt]
    assert shown == 1  # one card: the order sent again is not shown twice


def test_the_device_page_sends_again_an_answer_refused_for_now_and_not_one_taken() -> None:
    limited = {"type": "error", "code": "rate_limited", "order_id": "ord_1",
               "message": "too many frames; slow down"}
    taken = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    conflict = {"type": "error", "code": "conflict", "order_id": "ord_1", "message": "no"}
    _, answered, later, after_taken, after_conflict = run_page(
        f"{deliver(ORDER)}; sentFrames()",
        "respond('ord_1', 'acknowledged').then(() => sentFrames())",
        f"{deliver(limited)}; runTimers(); sentFrames()",
        f"{deliver(taken)}; {deliver(limited)}; runTimers(); sentFrames()",
        f"{deliver(conflict)}; {deliver(limited)}; runTimers(); sentFrames()",
    )
    answer = {"type": "response", "order_id": "ord_1", "response": "acknowledged"}
    receipt = {"type": "received", "order_id": "ord_1"}
    assert answered == [answer]
    assert later == [receipt, answer]  # both repeatable: a repeat changes nothing
    assert after_taken == [receipt]  # the answer was taken: only the receipt is repeated
    assert after_conflict == []  # refused for good: not sent again


GEOLOCATION = ("navigator.geolocation = { watchPosition: () => 7, clearWatch() {}, "
               "getCurrentPosition() {} }; info = { services: { volunteers: 'http://v' } }; "
               "me = { member: { id: 'm-2' } };")


def shown(state: dict[str, Any]) -> str:
    return f"showState({json.dumps(state)}); watchId"


def test_the_device_page_shares_the_position_only_of_a_member_on_the_shift() -> None:
    # Volunteers takes the team's position only from members on its shift (a teammate at
    # home with the page open must not move the team on dispatch's map): the page shares
    # it once this member checked in, or while the team holds an order nobody is on shift
    # for, and stops at volunteers' 409.
    team_on = {"on_shift": True, "status": "available", "open_orders": []}
    refused = ("fetch = async () => ({ ok: false, status: 409, json: async () => "
               "({ error: { message: 'not on the shift' } }) }); "
               "onFix({ coords: { latitude: 22.8, longitude: 108.3, accuracy: 5 }, "
               "timestamp: 0 }, true).then(() => watchId)")
    teammate_only, checked_in, stopped, order_left, off = run_page(
        GEOLOCATION + shown({**team_on, "shift_member_ids": ["m-1"]}),
        shown({**team_on, "shift_member_ids": ["m-1", "m-2"]}),
        refused,
        shown({"on_shift": False, "status": "off_duty", "shift_member_ids": [],
               "open_orders": [{"order_id": "ord_1", "stage": "en_route"}]}),
        shown({"on_shift": False, "status": "off_duty", "shift_member_ids": [],
               "open_orders": []}),
    )
    assert teammate_only is None  # the team's shift runs, this member has not checked in
    assert checked_in == 7
    assert stopped is None  # volunteers refused the fix: sharing stops
    assert order_left == 7 and off is None


def test_a_fresh_fix_goes_without_the_phones_clock_and_an_old_one_says_when_it_was_taken(
) -> None:
    # A phone whose clock was set by hand minutes behind stamped every fix with it: each
    # older than dispatch's 10 minutes, its team never a candidate, while the page said
    # "Position shared". A fix just taken goes without `at` (volunteers stamps it on
    # arrival); a cached one, older by the phone's own clock, still says when it was taken.
    fix = ("onFix({{ coords: {{ latitude: 22.8, longitude: 108.3, accuracy: 5 }}, "
           "timestamp: Date.now() - {age_ms} }}, true).then(() => fetched.pop().body)")
    on_shift = shown({"on_shift": True, "status": "available", "shift_member_ids": ["m-2"],
                      "open_orders": []})
    fresh, reused, old = run_page(
        GEOLOCATION + on_shift + "; lastSent = 0; " + fix.format(age_ms=1500),
        # a report from the street takes the fix just shared, not a new one
        "navigator.geolocation.getCurrentPosition = () => { throw new Error('asked'); }; "
        "here()",
        fix.format(age_ms=60_000),
    )
    assert fresh == {"lat": 22.8, "lon": 108.3, "accuracy_m": 5}
    assert reused == fresh
    assert set(old) == {"lat", "lon", "accuracy_m", "at"}
