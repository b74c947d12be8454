"""A dispatcher's shift at the console, its script run in node with stand-ins for the DOM
and for dispatch's API (answers with their HTTP status, held back when a test says): the
incident a click opens, hand assignment (the teams offered, a double click, a refusal), a
token refused, what a filter hides, the morning review's day and the timeline's words."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs

import pytest

from services.dispatch.console import CONSOLE_PAGE
from shared.labels import label
from tests.helpers import run_in_node
from tests.unit.dispatch.test_console_page import said as told

# A DOM that keeps what the page sets; fetch answered by the test's `answer(url, init)`: a
# body (200), `reply(status, body)`, or a promise of either; `hold(match)` keeps the answers
# of the URLs it matches until `release()`; the page's interval timers run on `tick()`.
HARNESS = r"""
const vm = require("node:vm");
const { page, setup, steps } = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.value = ""; this.checked = false;
    this.hidden = false; this.disabled = false; this.textContent = ""; this.className = "";
    this.attrs = {}; this.classList = { add: c => { this.className += " " + c; } };
    this.style = {}; this.clientWidth = 0; this.clientHeight = 0; }
  appendChild(c) { this.children.push(c); return c; }
  append(...cs) { this.children.push(...cs); }
  replaceChildren(...cs) { this.children = cs; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  get text() { return this.children.length
    ? this.children.map(c => typeof c === "string" ? c : c.text).join("|") : this.textContent; }
}
const byId = {};
const store = { "lf-token": "tok", "lf-district": "d1" };
const timers = [];
const browser = {
  document: { title: "", getElementById: id => byId[id] || (byId[id] = new El(id)),
              createElement: tag => new El(tag), createElementNS: (ns, tag) => new El(tag) },
  location: { hash: "", pathname: "/console" }, history: { replaceState() {} },
  localStorage: { getItem: k => store[k] ?? null, setItem: (k, v) => { store[k] = String(v); },
                  removeItem: k => { delete store[k]; } },
  URLSearchParams, AbortSignal, console, Intl,
  setInterval: (fn) => { timers.push(fn); return timers.length; },
  clearInterval: id => { timers[id - 1] = null; },
  confirm: () => browser.confirms, prompt: () => null, confirms: false,
  requests: [], beeps: 0, held: [],
  reply: (status, body) => ({ __status: status, body }),
  hold: match => { browser.holding = match; },
  release: () => { browser.holding = null; const h = browser.held.splice(0); h.forEach(r => r()); },
  tick: () => { timers.forEach(fn => fn && fn()); return browser.settle(); },
  settle: () => new Promise(r => setImmediate(r)).then(() => new Promise(r => setImmediate(r)))
    .then(() => new Promise(r => setImmediate(r))),
  rows: () => byId.board.children.map(tr => tr.children.map(td => td.textContent)),
  row: id => byId.board.children.find(tr => tr.children[tr.children.length - 1].textContent === id),
  posts: () => browser.requests.filter(r => r.method === "POST").map(r => r.url),
  options: () => byId.team.children.map(o => o.value),
};
browser.fetch = async (url, init) => {
  init = init || {};
  browser.requests.push({ url, method: init.method || "GET", body: init.body });
  if (browser.holding && browser.holding(url, init)) {
    await new Promise(r => browser.held.push(r)); }
  let a = await browser.answer(url, init);
  if (!(a && a.__status)) a = { __status: 200, body: a };
  return { ok: a.__status < 400, status: a.__status, statusText: "", json: async () => a.body };
};
byId.sound = new El("sound"); byId.sound.checked = true;
const ctx = vm.createContext(browser);
vm.runInContext(setup, ctx);
vm.runInContext(page, ctx);
vm.runInContext("beep = () => { beeps += 1; };", ctx);
(async () => {
  const out = [];
  await browser.settle();
  for (const step of steps) {
    const value = vm.runInContext(step, ctx);
    out.push(value && typeof value.then === "function" ? await value : value);
  }
  process.stdout.write(JSON.stringify(out));
})().catch(e => { process.stderr.write(String(e.stack || e)); process.exit(3); });
"""

# dispatch's answers: the board of each district, each incident's detail, the district's
# units; `posted(url, init)` answers the console's POSTs (an order by default)
API = r"""
var boards = {}, details = {}, units = [], kpiAnswer = {};
function query(url) { return new URLSearchParams(url.split("?")[1] || ""); }
function board(url) {
  const q = query(url);
  let rows = boards[q.get("district")] || [];
  if (q.get("flagged") === "true") rows = rows.filter(i => i.flagged);
  if (q.get("status")) rows = rows.filter(i => i.status === q.get("status"));
  rows = rows.slice(0, Number(q.get("limit") || 100));
  return { incidents: rows, count: rows.length, next: null, more: false, scanned_to: null };
}
// GET /v1/incidents/{id}/teams: the test's list for the incident, else the district's
// teams on shift as they are, no position known
var offers = {};
function teamsFor(url) {
  const listed = offers[decodeURIComponent(url.split("/")[3])] || units
    .filter(u => u.on_shift !== false).map(u => Object.assign({ distance_m: null, eta_s: null,
      fix_age_s: null, position_counts: false, warnings: [], missing_skills: [] }, u));
  return { teams: listed, count: listed.length, total: listed.length };
}
var posted = (url, init) => ({ order_id: "ord_1", team_id: JSON.parse(init.body).team_id,
                                state: "offered" });
// dead-lettered, on no board
var lostReports = { reports: [], count: 0, next: null, more: false, scanned_to: null };
// GET /v1/pipeline: every hop moving, unless a test says otherwise
function hopOf(name, extra) {
  return Object.assign({ hop: name, stream: name, group: "dispatch", what: name, unread: 0,
    pending: 0, oldest_age_s: null, threshold_s: 10, verdict: "ok" }, extra || {});
}
const HOPS = ["reports", "orders", "answers", "statuses", "positions"];
var pipelineState = () => ({ ok: true, hops: HOPS.map(h => hopOf(h)), positions_feed: {
  newest_age_s: 2, teams_on_shift: true, threshold_s: 180, verdict: "ok" } });
// GET /v1/shift-check-ins: nobody planned, unless a test says otherwise
var rollCall = url => ({ district: query(url).get("district"), at: new Date().toISOString(),
  planned: 0, not_checked_in: 0, teams: [] });
var answer = (url, init) => {
  if (init && init.method && init.method !== "GET") return posted(url, init);
  if (url.startsWith("/v1/pipeline")) return pipelineState(url);
  if (url.startsWith("/v1/shift-check-ins")) return rollCall(url);
  if (url.startsWith("/v1/me")) return { kind: "dispatcher", districts: ["d1", "d2"] };
  if (url.startsWith("/v1/duty/")) return { duty: null };
  if (url.startsWith("/v1/reports-not-handled")) return lostReports;
  if (url.startsWith("/v1/incidents?")) return board(url);
  if (/^\/v1\/incidents\/[^/?]+\/teams/.test(url)) return teamsFor(url);
  if (url.startsWith("/v1/incidents/")) return details[decodeURIComponent(
    url.split("/")[3].split("?")[0])];
  if (url.startsWith("/v1/units")) return { units };
  if (url.startsWith("/v1/kpis")) return Object.assign({ incidents: 0, routing_timeouts: 0,
    routing_timeout_incidents: 0,
    time_to_assign_s: {}, time_to_acknowledge_s: {}, time_to_scene_s: {}, handed_over: 0,
    filings_overdue: 0, filings_overdue_unfiled: 0, handled_by_force: {}, by_category: {},
    filings_due: { due: 0, filed_in_time: 0, overdue: 0, unfiled: 0 },
    followups: { incidents: 0, agreements_holding: 0 }, by_hour: [], by_zone: {},
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone }, kpiAnswer);
  if (url.startsWith("/v1/heatmap")) return { hottest: [] };
  if (url.startsWith("/v1/zones")) return { zones: [] };
  throw new Error("unexpected " + url);
};
function incident(id, extra) {
  return Object.assign({ incident_id: id, district: "d1", category: "noise", priority: "P4",
    status: "unassigned", flagged: true, flags: [], reported_at: new Date().toISOString(),
    routing_timeouts: 0, location: { lat: 22.8, lon: 108.3 } }, extra || {});
}
function detailOf(inc, extra) { return Object.assign({}, inc, { orders: [], timeline: [] },
                                                     extra || {}); }
function unit(id, extra) {
  return Object.assign({ team_id: id, name: "Team " + id, agency_kind: "police",
    agency_role: "patrol", status: "available", on_shift: true, open_order_id: null,
    position: null }, extra || {});
}
"""


def run_console(setup: str, *steps: str) -> list[Any]:
    """Runs the console's script in node after `setup` (JS), waits for its first refresh,
    then each step (a JS expression, awaited when a promise): their values."""
    page = CONSOLE_PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
    return cast(list[Any], run_in_node(HARNESS, {"page": page, "setup": API + setup,
                                                 "steps": list(steps)}))


TWO_WAITING = (
    'boards.d1 = [incident("inc_fight", {category: "violence", priority: "P1"}), '
    'incident("inc_noise")]; '
    'details.inc_fight = detailOf(boards.d1[0]); details.inc_noise = detailOf(boards.d1[1]); '
    'units = [unit("t1"), unit("t2")];'
)


def test_a_slow_answer_for_the_incident_clicked_first_never_fills_the_panel_of_the_one_clicked_next(
        ) -> None:
    """After a bar fight ten rows wait; the dispatcher clicks the noise complaint, then at
    once the fight. The noise's answer comes last: the panel must still show the fight, and
    Assign must send the team to the fight, never to the incident the panel does not show."""
    title, assigned = run_console(
        TWO_WAITING,
        'hold(url => url === "/v1/incidents/inc_noise?repeats=collapsed"); row("inc_noise").onclick(); '
        'settle().then(() => { hold(null); row("inc_fight").onclick(); return settle(); })'
        '.then(() => { release(); return settle(); }).then(() => $("dtitle").textContent)',
        '$("team").value = "t1"; $("assign").onclick(); settle().then(() => posts())',
    )
    assert title.startswith(f"P1{label('priority', 'P1')} {label('category', 'violence')}"), title
    assert assigned == ["/v1/incidents/inc_fight/assign"]


def test_assign_acts_only_on_the_incident_whose_panel_is_shown() -> None:
    """Between the click on another row and its answer, the panel still shows the first
    incident: an Assign pressed then must not send a team to the one not yet shown."""
    panel, assigned = run_console(
        TWO_WAITING,
        'row("inc_noise").onclick(); settle().then(() => { '
        'hold(url => url === "/v1/incidents/inc_fight?repeats=collapsed"); row("inc_fight").onclick(); '
        'return settle(); }).then(() => $("dtitle").textContent)',
        '$("team").value = "t1"; $("assign").onclick(); settle().then(() => '
        'posts().filter(u => u.endsWith("/assign")))',
    )
    assert label("category", "noise") not in panel, panel  # the panel no longer shows the noise
    assert assigned == [], assigned  # and nothing is sent until the fight is shown


def test_the_board_s_refresh_leaves_the_team_list_and_its_choice_alone() -> None:
    """The board is read again every 3 s: a team list rebuilt each time closes the
    dropdown the dispatcher has open and can change the team chosen under their hand."""
    same, = run_console(
        TWO_WAITING,
        'row("inc_fight").onclick(); settle().then(() => { $("team").value = "t2"; '
        'const first = $("team").children[0]; return refresh().then(() => '
        '[$("team").children[0] === first, $("team").value]); })',
    )
    assert same == [True, "t2"]


def test_a_double_click_on_assign_sends_one_request() -> None:
    sent, = run_console(
        TWO_WAITING,
        'row("inc_fight").onclick(); settle().then(() => { $("team").value = "t1"; '
        'hold((url, init) => init.method === "POST"); $("assign").onclick(); '
        '$("assign").onclick(); return settle(); }).then(() => { release(); return settle(); })'
        '.then(() => { $("assign").onclick(); return settle(); }).then(() => posts())',
    )
    # the double click sent one; a later click (the first answered) is a request again
    assert sent == ["/v1/incidents/inc_fight/assign"] * 2, sent


@pytest.mark.parametrize("message, confirms", [
    ("team t1 was being given another order; ask again", True),
    ("team t1 holds open order ord_9 (acknowledged) of incident inc_x; send it with "
     "\"reassign\": true to take it off that order first", False),
])
def test_a_refused_assignment_says_why_and_the_reason_stays_after_the_next_refresh(
        message: str, confirms: bool) -> None:
    """A 409 (the team was just claimed by another incident's offer) is said beside the
    button, and not wiped by the board's refresh 3 s later before it is read; the
    dispatcher who does not confirm taking the team off its order sends nothing more."""
    said, sent = run_console(
        TWO_WAITING + f"confirms = {str(confirms).lower()}; posted = () => reply(409, "
        f"{{error: {{code: 'conflict', message: {message!r}}}}});",
        'row("inc_fight").onclick(); settle().then(() => { $("team").value = "t1"; '
        '$("assign").onclick(); return settle(); }).then(() => refresh()).then(() => '
        '$("err").textContent + " " + $("aerr").textContent)',
        "posts()",
    )
    assert message in said, said
    assert sent == ["/v1/incidents/inc_fight/assign"]


def test_taking_a_team_off_another_incident_says_which_incident_it_is_on() -> None:
    """The team list says only "on another incident's order": a dispatcher sending a guard
    to a noise complaint was asked to take it off "another incident's order", and one OK
    away from taking it off a P1 fight unknowingly. The confirm names that incident
    (priority, category, status), as the 409 names it; one the desk cannot read (another
    district's) by its id."""
    refused = ("team t1 holds open order ord_9 (acknowledged) of incident {}; send it with "
               "\"reassign\": true to take it off that order first")
    asked = run_console(
        TWO_WAITING + "var confirmed = []; confirm = text => { confirmed.push(text); return false; }; "
        "details.inc_fight.status = 'acknowledged'; "
        f"posted = url => reply(409, {{error: {{code: 'conflict', message: "
        f"url.includes('inc_noise') ? {refused.format('inc_fight')!r} "
        f": {refused.format('inc_elsewhere')!r}}}}});"
        "const real = answer; answer = (u, i) => u === '/v1/incidents/inc_elsewhere' ? "
        "reply(403, {error: {code: 'forbidden', message: 'not your district'}}) : real(u, i);",
        'row("inc_noise").onclick(); settle().then(() => { $("team").value = "t1"; '
        '$("assign").onclick(); return settle(); }).then(() => { '
        'row("inc_fight").onclick(); return settle(); }).then(() => { $("team").value = "t1"; '
        '$("assign").onclick(); return settle(); }).then(() => confirmed)',
    )[0]
    fight = (f"P1{label('priority', 'P1')} {label('category', 'violence')} · "
             f"{label('incident_status', 'acknowledged')} (inc_fight)")
    assert asked == [told("confirm_reassign", other=fight),
                     told("confirm_reassign", other="inc_elsewhere")], asked
    assert fight in asked[0] and "inc_elsewhere" in asked[1], asked


def test_the_teams_offered_are_dispatchs_nearest_suitable_first_with_how_far_each_is() -> None:
    """The list was the district's teams by id, free first, with no distance: the dispatcher
    sending a team by hand (to a flagged incident, a second unit to a fight) found the
    nearest by reading the map, and a volunteer patrol next door to a fight was one slip of
    the hand from being sent alone into it. The list is now dispatch's own for the incident
    (GET /v1/incidents/{id}/teams), in its order, each team with its distance and travel
    time, and what the rules say against it; such a team is sent only after a confirm."""
    listed, declined, confirmed, plain = run_console(
        'boards.d1 = [incident("inc_fight", {category: "violence", priority: "P1"})]; '
        'details.inc_fight = detailOf(boards.d1[0]); offers.inc_fight = ['
        'unit("police", {distance_m: 600, eta_s: 94, fix_age_s: 20, position_counts: true, '
        'warnings: []}), '
        'unit("guard", {agency_kind: "security", agency_role: null, distance_m: 2400, '
        'eta_s: 374, fix_age_s: 30, position_counts: true, warnings: [], open_order_id: "o7", '
        'status: "dispatched"}), '
        'unit("vols", {agency_kind: "volunteer", agency_role: null, distance_m: 100, '
        'eta_s: 94, fix_age_s: 10, position_counts: true, '
        'warnings: ["kind_not_listed", "volunteers_alone_on_p1"]}), '
        'unit("stale", {distance_m: 300, eta_s: 47, fix_age_s: 1500, position_counts: false, '
        'warnings: []}), '
        'unit("lost", {distance_m: null, eta_s: null, fix_age_s: null, position_counts: false, '
        'warnings: []})];',
        'row("inc_fight").onclick(); settle().then(() => $("team").children.map(o => '
        '[o.value, o.textContent]))',
        'confirms = false; $("team").value = "vols"; $("assign").onclick(); '
        'settle().then(() => posts())',
        'confirms = true; $("assign").onclick(); settle().then(() => '
        '[posts(), requests.filter(r => r.method === "POST").map(r => r.body)])',
        'confirms = false; $("team").value = "police"; $("assign").onclick(); '
        'settle().then(() => posts().length)',
    )
    police, volunteer = label("agency_kind", "police"), label("agency_kind", "volunteer")
    available = label("team_status", "available")
    why = told("warn_kind_not_listed", category=label("category", "violence"),
               kind=volunteer) + "；" + told("warn_volunteers_alone_on_p1")
    assert listed == [
        ["police", told("team_option", name="Team police", kind=police, state=available)
         + told("team_where", distance=told("metres", n=600), minutes=2)],
        ["guard", told("team_option", name="Team guard", kind=label("agency_kind", "security"),
                       state=told("on_other_order"))
         + told("team_where", distance=told("km", n="2.4"), minutes=6)],
        ["vols", told("team_option", name="Team vols", kind=volunteer, state=available)
         + told("team_where", distance=told("metres", n=100), minutes=2)
         + told("team_warned", why=why)],
        ["stale", told("team_option", name="Team stale", kind=police, state=available)
         + told("team_where_old", distance=told("metres", n=300), minutes=25)],
        ["lost", told("team_option", name="Team lost", kind=police, state=available)
         + told("team_no_position")],
    ], listed
    assert declined == []  # the volunteers not sent without the dispatcher's yes
    assert confirmed == [["/v1/incidents/inc_fight/assign"],
                         ['{"team_id":"vols","reassign":false}']]
    assert plain == 2  # a team the rules would send asks nothing


def test_a_team_list_dispatch_did_not_answer_says_so_and_the_panel_shows_all_the_same() -> None:
    said, = run_console(
        'boards.d1 = [incident("inc_fight", {category: "violence", priority: "P1"})]; '
        'details.inc_fight = detailOf(boards.d1[0]); const real = answer; answer = (u, i) => '
        '/[/]teams/.test(u) ? reply(503, {error: {code: "unavailable", message: "try again"}}) '
        ': real(u, i);',
        'row("inc_fight").onclick(); settle().then(() => [$("dtitle").textContent, '
        '$("team").children.map(o => o.textContent)])',
    )
    title, options = said
    assert label("category", "violence") in title
    assert options == [told("teams_not_read", why="try again")]


def test_a_refused_token_stops_the_polling_clears_the_board_and_says_so() -> None:
    """A dispatcher's token revoked mid-shift (or the admin token changed): the board must
    not go on looking live while every poll is refused, nor ask again every 3 s."""
    before, after, asked, stored = run_console(
        TWO_WAITING,
        "rows().length",
        'const real = answer; answer = () => reply(401, {error: {code: "unauthorized", '
        'message: "unknown or revoked token"}}); tick().then(() => [rows().length, '
        '$("err").textContent, document.title])',
        "const n = requests.length; tick().then(() => tick()).then(() => tick())"
        ".then(() => requests.length - n)",
        'localStorage.getItem("lf-token")',
    )
    assert before == 2
    rows, said, title = after
    assert rows == 0
    assert said == told("token_refused", why="unknown or revoked token")
    assert title == told("title_signed_out")
    assert asked == 0
    assert stored is None  # a revoked token is not tried again on the next load


def test_a_new_token_after_a_refusal_starts_the_board_again() -> None:
    shown, = run_console(
        TWO_WAITING + 'var refusing = true; const real = answer; answer = (u, i) => refusing '
        '? reply(401, {error: {message: "unknown or revoked token"}}) : real(u, i);',
        'refusing = false; $("token").value = "tok2"; $("district").value = "d1"; '
        '$("save").onclick(); settle().then(() => tick()).then(() => [rows().length, '
        '$("err").textContent])',
    )
    assert shown == [2, ""]


def test_flagged_incidents_a_filter_hides_are_said_beside_the_board() -> None:
    """Watching `on_scene`, a new unassigned incident of the district is not on the rows:
    the board must say that flagged incidents wait outside what it shows."""
    said, = run_console(
        'boards.d1 = [incident("inc_waiting"), incident("inc_busy", {status: "on_scene", '
        'flagged: false})];',
        '$("status").value = "on_scene"; $("status").onchange(); settle().then(() => '
        '[rows().map(r => r[6]), $("hiddenflags").textContent])',
    )
    rows, text = said
    assert rows == ["inc_busy"]
    assert text == told("hidden_by_filter", count=1), text


@pytest.mark.parametrize("desk_tz", ["Asia/Shanghai", "UTC", "America/New_York"])
def test_the_morning_review_asks_for_the_districts_calendar_day_picked(
        monkeypatch: pytest.MonkeyPatch, desk_tz: str) -> None:
    """Yesterday's review is 00:00 to 24:00 on the district's clock, not the last 24 hours
    nor the desk's day: a station PC whose clock is set to UTC asked for 08:00 to 08:00 in
    Nanning. The console asks for the date; dispatch places it on its `TIMEZONE`."""
    monkeypatch.setenv("TZ", desk_tz)
    asked, shown = run_console(
        'boards.d1 = []; kpiAnswer = {incidents: 41, by_category: {dispute: 12, noise: 9}, '
        'timezone: "Asia/Shanghai"};',
        '$("kday").value = "2026-12-04"; $("kday").onchange(); settle().then(() => '
        'requests.map(r => r.url).filter(u => u.startsWith("/v1/kpis")).pop())',
        '$("kpis").children.map(li => li.textContent).join("\\n")',
    )
    q = parse_qs(asked.split("?", 1)[1])
    assert q.get("date") == ["2026-12-04"] and "since" not in q and "until" not in q, asked
    assert f"{label('kpi', 'incidents')}：41" in shown, shown
    assert f"{label('category', 'dispute')} (12)" in shown, shown


@pytest.mark.parametrize("desk_tz", ["UTC", "America/New_York", "Pacific/Kiritimati"])
def test_yesterday_is_the_day_before_the_districts_today_whatever_the_desks_clock(
        monkeypatch: pytest.MonkeyPatch, desk_tz: str) -> None:
    """At 07:00 in Nanning a desk on UTC is still on the day before (and one on +14:00 on
    the day after): its own yesterday is not the district's. Dispatch says the district's
    date with every KPI answer."""
    monkeypatch.setenv("TZ", desk_tz)
    asked, picked, period = run_console(
        'boards.d1 = []; kpiAnswer = {today: "2026-03-01", timezone: "Asia/Shanghai"};',
        '$("kyesterday").onclick(); settle().then(() => decodeURIComponent(requests.map('
        'r => r.url).filter(u => u.startsWith("/v1/kpis")).pop()))',
        '$("kday").value',
        '$("kperiod").textContent',
    )
    assert picked == "2026-02-28", picked  # across a month's end
    assert "date=2026-02-28" in asked, asked
    assert "2026" in period and "28" in period, period


def test_yesterday_is_the_desks_own_when_dispatch_does_not_say_the_districts_date() -> None:
    """An older dispatch, or none answered yet: the desk's yesterday rather than no button."""
    asked, expected = run_console(
        "boards.d1 = []; kpiAnswer = {today: undefined};",
        '$("kyesterday").onclick(); settle().then(() => decodeURIComponent(requests.map('
        'r => r.url).filter(u => u.startsWith("/v1/kpis")).pop()))',
        '$("kday").value',
    )
    # the calendar day before today here (or before yesterday, if midnight passed since)
    today = datetime.now().date()
    assert expected in {(today - timedelta(days=d)).isoformat() for d in (1, 2)}, expected
    assert f"date={expected}" in asked, (asked, expected)


def test_every_timeline_entry_reads_as_words_with_the_team_s_name() -> None:
    """The dispatcher reads the timeline at a glance: "assigned by hand" (人工派警), "on
    scene", the team's name (not its id); a team's note is text, an injected tag too."""
    timeline, = run_console(
        'boards.d1 = [incident("inc_x", {status: "on_scene", flagged: false})]; '
        'const at = new Date().toISOString(); '
        'details.inc_x = detailOf(boards.d1[0], {orders: [{order_id: "o1", team_id: "tm_7", '
        'team_name: "Jiangnan patrol 7", state: "on_scene"}], timeline: ['
        '{at, kind: "reported", detail: "110"}, '
        '{at, kind: "unassigned", status: "unassigned", detail: "no suitable team"}, '
        '{at, kind: "manual_assign", team_id: "tm_7", order_id: "o1", status: "assigned"}, '
        '{at, kind: "offer", team_id: "tm_7", order_id: "o1"}, '
        '{at, kind: "receipt", team_id: "tm_7", order_id: "o1"}, '
        '{at, kind: "timeout", team_id: "tm_7", order_id: "o1"}, '
        '{at, kind: "response", team_id: "tm_7", order_id: "o1", detail: "on_scene", '
        'status: "on_scene", note: "<img src=x onerror=alert(1)>"}, '
        '{at, kind: "handover", team_id: "tm_7"}, {at, kind: "linked"}, '
        '{at, kind: "revised", detail: "priority P1"}, {at, kind: "note", detail: "x"}, '
        '{at, kind: "withdrawn", team_id: "tm_7"}, {at, kind: "followup", team_id: "tm_7"}, '
        '{at, kind: "remark", note: "r"}, {at, kind: "evidence", evidence: ['
        '{kind: "video", ref: "cam-1/clip.mp4"}]}, {at, kind: "closed"}]});',
        'row("inc_x").onclick(); settle().then(() => $("timeline").children.map('
        'tr => tr.children.map(td => td.textContent)))',
    )
    for _, what, team, _detail in timeline:
        assert "_" not in what, what
        assert team in ("", "Jiangnan patrol 7"), team
    by_what = {row[1]: row for row in timeline}
    assert any(w.startswith(label("timeline_kind", "manual_assign")) for w in by_what), list(by_what)
    answered = next(row for row in timeline if "<img" in row[3])
    assert answered[3] == f"{label('response', 'on_scene')}: “<img src=x onerror=alert(1)>”"
    assert any("cam-1/clip.mp4" in row[3] for row in timeline)


def test_the_refusal_of_a_token_replaced_meanwhile_does_not_sign_out_the_new_one() -> None:
    """The dispatcher pastes their own token over the colleague's (revoked) one and presses
    Watch while a poll with the old one is on its way: its 401 must not throw the new token
    away nor stop the board."""
    shown, = run_console(
        TWO_WAITING + 'var revoked = false; const real = answer; answer = (u, i) => revoked && '
        'i.headers.Authorization === "Bearer tok" ? reply(401, {error: {message: '
        '"unknown or revoked token"}}) : real(u, i);',
        'revoked = true; hold(() => true); tick().then(() => { $("token").value = "tok2"; hold(null); '
        '$("save").onclick(); return settle(); }).then(() => { release(); return settle(); })'
        '.then(() => tick()).then(() => [$("token").value, rows().length, $("err").textContent])',
    )
    assert shown == ["tok2", 2, ""], shown


# The console opened by a link (`#token=…&district=…`) in a browser that keeps a token:
# what the page asked (confirm), where the address went, the token each request was sent with
def opened_by_link(link: str, confirms: bool) -> str:
    return (f'location.hash = "{link}"; var questions = [], addressed = [], sentWith = []; '
            f'confirm = (text) => {{ questions.push(text); return {str(confirms).lower()}; }}; '
            'history.replaceState = (state, title, url) => { addressed.push(url); }; '
            'var answered = fetch; fetch = (url, init) => { '
            'sentWith.push(init.headers.Authorization); return answered(url, init); };')


LINKED = ('[questions, addressed, [...new Set(sentWith)], localStorage.getItem("lf-token"), '
          'localStorage.getItem("lf-district")]')


@pytest.mark.parametrize("confirms", [False, True])
def test_a_link_s_token_replaces_the_dispatcher_s_only_once_they_confirm(confirms: bool) -> None:
    """A link sent to a dispatcher (by mistake or on purpose) with another token: taken
    unasked, the board would act, and be audited, under that identity without their noticing.
    The page asks; declined, their own token (and district) stay. Never left in the address."""
    asked, addressed, sent_with, token, district = run_console(
        TWO_WAITING + opened_by_link("#token=other&district=d2", confirms), LINKED)[0]
    assert asked == [told("confirm_link_token")]
    assert addressed == ["/console"]
    if confirms:
        assert (sent_with, token, district) == (["Bearer other"], "other", "d2")
    else:
        assert (sent_with, token, district) == (["Bearer tok"], "tok", "d1")


@pytest.mark.parametrize("kept", [None, "other"])
def test_a_link_s_token_is_taken_unasked_where_it_replaces_no_other(kept: str | None) -> None:
    # the first sign-in by a link, or the same token's link again: nothing to confirm
    keep = ('localStorage.removeItem("lf-token");' if kept is None
            else f'localStorage.setItem("lf-token", "{kept}");')
    asked, addressed, sent_with, token, district = run_console(
        TWO_WAITING + keep + opened_by_link("#token=other&district=d2", False), LINKED)[0]
    assert (asked, addressed) == ([], ["/console"])
    assert (sent_with, token, district) == (["Bearer other"], "other", "d2")


@pytest.mark.parametrize("kind, offered", [("dispatcher", True), ("admin", False),
                                           ("inspector", False)])
def test_take_duty_is_offered_only_to_a_dispatcher(kind: str, offered: bool) -> None:
    """The button sends no one's name: dispatch gives the duty to the dispatcher who asks, and
    answers an administrator's press with a 422 (an admin must name the dispatcher) every
    time; an inspector changes nothing."""
    shown, = run_console(
        TWO_WAITING + f'const real = answer; answer = (u, i) => u.startsWith("/v1/me") '
        f'? {{kind: "{kind}", districts: null}} : real(u, i);',
        '!$("takeduty").hidden',
    )
    assert shown is offered


def test_a_refused_take_duty_says_why_and_the_reason_stays_after_the_next_refresh() -> None:
    """Redis refusing writes (a full disk) while it still answers reads: the duty is not
    taken, the header still names the colleague, and the why must not be wiped by the
    board's refresh 3 s later (the dispatcher would believe new incidents are theirs)."""
    message = "the store is not taking writes now (MISCONF); ask again"
    said, sent = run_console(
        TWO_WAITING + "confirms = true; posted = () => reply(503, "
        f"{{error: {{code: 'unavailable', message: {message!r}}}}});",
        '$("takeduty").onclick(); settle().then(() => refresh()).then(() => '
        '$("err").textContent + " " + $("dutyerr").textContent)',
        'requests.filter(r => r.method === "PUT").map(r => r.url)',
    )
    assert message in said, said
    assert sent == ["/v1/duty/d1"]


def test_a_token_refused_while_the_map_s_zones_are_read_is_said_and_stops_the_board() -> None:
    """The zones are asked for once a minute, after the heat map, and the map goes on
    without them while volunteers is away; a refusal of the token there is no such case:
    the board stops and says why, as on any other call, and nothing is painted after it."""
    said, spots, asked = run_console(
        TWO_WAITING + 'var real = answer; answer = (u, i) => u.startsWith("/v1/zones") '
        '? reply(401, {error: {code: "unauthorized", message: "unknown or revoked token"}}) '
        ': u.startsWith("/v1/heatmap") ? {hottest: [{lat: 22.8, lon: 108.3, count: 3, '
        'peak_hour: 20, by_category: {noise: 3}}]} : real(u, i);',
        '$("err").textContent',
        '$("spots").children.length',
        "const n = requests.length; tick().then(() => requests.length - n)",
    )
    assert said == told("token_refused", why="unknown or revoked token"), said
    assert spots == 0
    assert asked == 0


HEAT_MAP = ("var heat = () => ({hottest: [{lat: 22.8, lon: 108.3, count: 3, peak_hour: 20, "
            "by_category: {noise: 3}}]}); var real = answer; answer = (u, i) => "
            'u.startsWith("/v1/heatmap") ? heat(u) : real(u, i);')
HEAT_ASKED = 'requests.filter(r => r.url.startsWith("/v1/heatmap")).length'
# The page's clock, stopped at the start and moved on only by a step (`now += ms`): the
# harness's tick() runs the 3 s timer without moving it, so a minute or a retry delay passes
# only when a test says.
STOPPED_CLOCK = "var now = Date.now(); Date.now = () => now; "


def test_a_heat_map_read_on_its_way_does_not_hold_back_the_refresh() -> None:
    """The four weeks' heat map is a heavy query: dispatch busy, it may take up to the 15 s
    bound. The 3 s tick starts no refresh while one is on its way, so a refresh that waited
    for it read the board, the incident open and the alarm every ~18 s, just when dispatch
    is under load. The refresh goes on without it: each tick reads the board and the
    incident open again while the heat map is unanswered (and asks for it no more)."""
    asked, heat = run_console(
        TWO_WAITING + HEAT_MAP + 'hold(u => u.startsWith("/v1/heatmap"));',
        'row("inc_fight").onclick(); var n; settle().then(() => { n = requests.length; '
        'return tick(); }).then(() => tick()).then(() => tick())'
        '.then(() => requests.slice(n).map(r => r.url))',
        HEAT_ASKED,
    )
    # the board, each tick
    assert asked.count("/v1/incidents?district=d1&limit=200&order=received&linked=false") == 3, asked
    # the incident open, each tick
    assert asked.count("/v1/incidents/inc_fight?repeats=collapsed") == 3, asked
    assert heat == 1


def test_a_heat_map_read_that_failed_is_tried_again_after_the_retry_delay() -> None:
    """The heat map is read once a minute, counted from a read that was answered. One that
    failed (dispatch busy, the 15 s bound) is said in the header and asked again after the
    retry delay, not at every 3 s tick (a route failing under load asked back to back);
    meanwhile the refresh goes on (the incident open is read again). Read, the hot spots
    are listed, the header's line goes, and they are not asked for again within the minute."""
    failed, ticks, early, read, within, after = run_console(
        TWO_WAITING + HEAT_MAP + STOPPED_CLOCK + 'heat = () => reply(503, {error: {code: '
        '"unavailable", message: "the store is not answering; ask again"}});',
        'row("inc_fight").onclick(); var n; settle().then(() => { n = requests.length; '
        'return tick(); }).then(() => [requests.slice(n).map(r => r.url.split("?")[0]), '
        '$("err").textContent, $("spots").children.length])',
        f"tick().then(() => tick()).then(() => {HEAT_ASKED})",
        f"now += 14999; tick().then(() => {HEAT_ASKED})",
        'heat = () => ({hottest: [{lat: 22.8, lon: 108.3, count: 3, peak_hour: 20, '
        'by_category: {noise: 3}}]}); now += 1; tick().then(() => settle()).then(() => '
        f'[{HEAT_ASKED}, $("spots").children.length, $("err").textContent])',
        f"now += 59999; tick().then(() => {HEAT_ASKED})",
        f"now += 1; tick().then(() => settle()).then(() => {HEAT_ASKED})",
    )
    asked, said, spots = failed
    assert "/v1/incidents/inc_fight" in asked and "/v1/heatmap" not in asked, asked
    assert said == told("spots_not_read", why="the store is not answering; ask again",
                        after=15), said
    assert spots == 0
    assert ticks == 1  # the first refresh's only: not at the ticks within the delay
    assert early == 1
    assert read == [2, 1, ""]  # asked once the delay is over, listed, no longer said
    assert within == 2  # read: not asked again within the minute
    assert after == 3


def test_a_heat_map_read_on_its_way_is_not_asked_for_again_and_is_taken_when_it_comes() -> None:
    """A refresh is asked for by every filter changed, and by each tick: none may ask for
    the four weeks' heat map again while a read of it is unanswered, however long it takes
    (a newer refresh begun meanwhile). Its answer, late, is the district's hot spots all
    the same: listed, not thrown away and asked for again."""
    while_held, answered = run_console(
        TWO_WAITING + HEAT_MAP + STOPPED_CLOCK + 'hold(u => u.startsWith("/v1/heatmap"));',
        '$("status").value = "on_scene"; $("status").onchange(); $("status").value = ""; '
        '$("status").onchange(); now += 120000; settle().then(() => tick()).then(() => tick())'
        f'.then(() => {HEAT_ASKED})',
        'hold(null); release(); settle().then(() => tick()).then(() => '
        f'[{HEAT_ASKED}, $("spots").children.length])',
    )
    assert while_held == 1
    assert answered == [1, 1]


def test_a_heat_map_read_for_a_district_left_is_dropped_and_holds_back_none_of_the_next() -> None:
    """The dispatcher types another district while d1's heat map is still on its way: d2's
    is asked for at once (not after d1's comes back), and d1's hot spots, come late, are
    not listed for d2."""
    d2_asked, listed = run_console(
        TWO_WAITING + HEAT_MAP + 'boards.d2 = []; heat = u => ({hottest: [{lon: 108.3, '
        'lat: query(u).get("district") === "d1" ? 22.1 : 22.9, count: 2, peak_hour: 20, '
        'by_category: {noise: 2}}]}); hold(u => u.startsWith("/v1/heatmap") '
        '&& u.includes("district=d1"));',
        '$("district").value = "d2"; refresh().then(() => settle()).then(() => requests'
        '.filter(r => r.url.startsWith("/v1/heatmap") && r.url.includes("district=d2")).length)',
        'release(); settle().then(() => $("spots").children.map(li => li.textContent))',
    )
    assert d2_asked == 1
    assert len(listed) == 1 and listed[0].startswith("22.9000, 108.3000"), listed  # d2's
