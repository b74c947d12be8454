"""The command room's console page run in node (as tests/unit/test_pages.py runs the device
page), with stand-ins for the DOM and for dispatch's API: what the dispatcher sees on the
board, in the tab's title and hears, and that a slow answer never paints over a newer one."""

from __future__ import annotations

from typing import Any, cast

from services.dispatch.console import CONSOLE_PAGE
from services.dispatch.console_text import CONSOLE_TEXT
from shared.labels import Language, label
from tests.helpers import run_in_node

# A DOM that keeps what the page sets (text, values, children), a fetch answered by the
# test's `answer(url)` (a body, or a promise of one), and `settle()`: every promise chain
# whose fetches were answered has run (a macrotask runs after all pending microtasks).
HARNESS = r"""
const vm = require("node:vm");
const { page, setup, steps } = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.value = ""; this.checked = false;
    this.hidden = false; this.textContent = ""; this.className = ""; this.attrs = {};
    this.classList = { add: c => { this.className += " " + c; } }; this.style = {};
    this.clientWidth = 0; this.clientHeight = 0; }
  appendChild(c) { this.children.push(c); return c; }
  append(...cs) { this.children.push(...cs); }
  replaceChildren(...cs) { this.children = cs; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  get text() { return this.children.length
    ? this.children.map(c => typeof c === "string" ? c : c.text).join("|") : this.textContent; }
}
const byId = {};
const store = { "lf-token": "tok", "lf-district": "d1" };
const browser = {
  document: { title: "", getElementById: id => byId[id] || (byId[id] = new El(id)),
              createElement: tag => new El(tag), createElementNS: (ns, tag) => new El(tag) },
  location: { hash: "", pathname: "/console" }, history: { replaceState() {} },
  localStorage: { getItem: k => store[k] ?? null, setItem: (k, v) => { store[k] = String(v); } },
  URLSearchParams, AbortSignal, console, setInterval: () => 0, clearInterval() {},
  fetched: [], beeps: 0,
  settle: () => new Promise(r => setImmediate(r)).then(() => new Promise(r => setImmediate(r))),
  rows: () => byId.board.children.map(tr => tr.children.map(td => td.textContent)),
};
browser.fetch = async (url, init) => { browser.fetched.push(url);
  const body = await browser.answer(url, init);
  return { ok: true, status: 200, statusText: "OK", json: async () => body }; };
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
})();
"""

# dispatch's answers to what the console asks besides the board
API = r"""
var boards = {};  // district -> its incidents, newest first by the report (the API's default order)
// dead-lettered, on no board
var lostReports = { reports: [], count: 0, next: null, more: false, scanned_to: null };
var details = {};  // incident id -> GET /v1/incidents/{id}
function query(url) { return new URLSearchParams(url.split("?")[1] || ""); }
function board(url) {
  const q = query(url);
  let rows = boards[q.get("district")] || [];
  if (q.get("flagged") === "true") rows = rows.filter(i => i.flagged);
  if (q.get("status")) rows = rows.filter(i => i.status === q.get("status"));
  if (q.get("linked")) rows = rows.filter(i => !!i.linked_to === (q.get("linked") === "true"));
  // in the order dispatch received them, the newest first (the same instant: as listed)
  if (q.get("order") === "received") rows = rows.map((i, n) => [i, n]).sort((a, b) =>
    (Date.parse(b[0].received_at || b[0].reported_at)
     - Date.parse(a[0].received_at || a[0].reported_at)) || a[1] - b[1]).map(p => p[0]);
  rows = rows.slice(0, Number(q.get("limit") || 100));
  return { incidents: rows, count: rows.length, next: null, more: false, scanned_to: null };
}
var answer = (url) => {
  if (url.startsWith("/v1/pipeline")) return { ok: true, hops: [],
    positions_feed: { verdict: "ok" } };  // the system moving
  if (url.startsWith("/v1/me")) return { kind: "dispatcher", districts: ["d1", "d2"] };
  if (url.startsWith("/v1/duty/")) return { duty: null };
  if (url.startsWith("/v1/reports-not-handled")) return lostReports;
  if (url.startsWith("/v1/incidents?")) return board(url);
  if (/^\/v1\/incidents\/[^/?]+\/teams/.test(url)) return { teams: [], count: 0, total: 0 };
  // the incident, asked as the console asks it (?repeats=collapsed)
  if (url.startsWith("/v1/incidents/")) return details[url.split("/")[3].split("?")[0]];
  if (url.startsWith("/v1/units")) return { units: [] };
  if (url.startsWith("/v1/kpis")) return { incidents: 0, routing_timeouts: 0,
    routing_timeout_incidents: 0,
    never_assigned: { incidents: 0, open: 0, ended: 0, past_deadline: 0 },
    assigned_after_deadline: 0,
    time_to_assign_s: {}, time_to_acknowledge_s: {}, time_to_scene_s: {}, handed_over: 0,
    filings_overdue: 0, filings_overdue_unfiled: 0,
    filings_due: { due: 0, filed_in_time: 0, overdue: 0, unfiled: 0 }, handled_by_force: {},
    followups: { incidents: 0, agreements_holding: 0 }, by_hour: [], by_zone: {} };
  if (url.startsWith("/v1/heatmap")) return { hottest: [] };
  if (url.startsWith("/v1/zones")) return { zones: [] };
  throw new Error("unexpected " + url);
};
function incident(id, extra) {
  return Object.assign({ incident_id: id, district: "d1", category: "noise", priority: "P4",
    status: "resolved", flagged: false, reported_at: "2026-12-05T08:00:00+08:00",
    routing_timeouts: 0, location: { lat: 22.8, lon: 108.3 } }, extra || {});
}
"""


def run_console(setup: str, *steps: str) -> list[Any]:
    """Runs the console's script in node after `setup` (JS: the board's incidents), waits
    for its first refresh, then each step (a JS expression): their values."""
    page = CONSOLE_PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
    return cast(list[Any], run_in_node(HARNESS, {"page": page, "setup": API + setup,
                                                 "steps": list(steps)}))


def said(key: str, language: Language = "zh", **values: object) -> str:
    """What the console says for `key` (in its default language, Chinese, unless asked): a
    test checks which message the dispatcher was given, whatever its wording."""
    return CONSOLE_TEXT[language][key].format(**values)


def ids_on_board() -> str:
    return "rows().map(r => r[r.length - 1])"


def test_a_hand_over_no_station_team_takes_calls_the_dispatcher_back() -> None:
    """Dispatch flags a hand-over whose station has no team on shift (or whose teams all
    declined) so that the command room acts: the console must call the dispatcher back
    for it (the sound, the count in the tab's title) as for any flagged incident."""
    before, after = run_console(
        'boards.d1 = [incident("inc_done")];',
        "[document.title, beeps]",
        'boards.d1 = [incident("inc_ho", {status: "handed_over", flagged: true}), '
        '...boards.d1]; refresh().then(() => [document.title, beeps])',
    )
    assert before == [said("title"), 0]
    assert after == [said("title_flagged", count=1), 1]


def test_a_flagged_incident_stays_on_the_board_behind_hundreds_of_newer_reports() -> None:
    """DESIGN.md: an unassigned incident "stays on the command room's board, flagged, until
    someone is assigned". In a busy district 200 newer reports come within days: the
    console's board (the newest 200) must still list it, and count it in the title."""
    shown, title = run_console(
        'boards.d1 = [...Array.from({length: 250}, (_, n) => incident("inc_new" + n)), '
        'incident("inc_waiting", {status: "unassigned", flagged: true, priority: "P2"})];',
        ids_on_board(),
        "document.title",
    )
    assert shown[0] == "inc_waiting"  # flagged first
    assert title == said("title_flagged", count=1)


def test_reports_dispatch_could_not_handle_are_said_over_the_board() -> None:
    """A report dead-lettered before dispatch made its incident is on no board: the console
    says how many of the district's there are (an administrator replays them), and nothing
    once none is left."""
    before, lost, after = run_console(
        'boards.d1 = [incident("inc_done")];',
        '$("nothandled").textContent',
        'lostReports = {reports: [{incident_id: "inc_a"}, {incident_id: "inc_b"}], count: 2, '
        'more: false}; refresh().then(() => $("nothandled").textContent)',
        'lostReports = {reports: [], count: 0, more: false}; '
        'refresh().then(() => $("nothandled").textContent)',
    )
    assert before == "" and after == ""
    assert lost == said("reports_not_handled", count=2)


def test_a_look_at_the_lost_reports_stopped_by_its_budget_is_not_said_as_none_lost() -> None:
    """Thousands of other districts' dead letters newer than any of this one's: the first
    page found none before its budget ended (`scanned_to`). The console says the district's
    may be among the older ones, not nothing (which reads as none lost)."""
    found, unscanned = run_console(
        'boards.d1 = [incident("inc_done")];',
        'lostReports = {reports: [{incident_id: "inc_a"}], count: 1, next: "c", more: true, '
        'scanned_to: "2026-12-06T14:00:00+00:00"}; '
        'refresh().then(() => $("nothandled").textContent)',
        'lostReports = {reports: [], count: 0, next: "c", more: true, '
        'scanned_to: "2026-12-06T14:00:00+00:00"}; '
        'refresh().then(() => $("nothandled").textContent)',
    )
    assert found == said("reports_not_handled", count="1+")
    before_time = said("reports_not_handled_unscanned", time="\0").split("\0")[0]
    assert unscanned.startswith(before_time) and "2026" in unscanned, unscanned


def test_a_new_p1_calls_the_dispatcher_back_while_the_board_is_filtered() -> None:
    """A dispatcher looking at their own cases (`mine`) or at one status is still called
    back by a new P1 or a newly flagged incident of the district."""
    beeps, = run_console(
        'boards.d1 = [incident("inc_old", {status: "on_scene"})];',
        '$("status").value = "on_scene"; refresh().then(() => { boards.d1 = ['
        'incident("inc_p1", {status: "assigned", priority: "P1"}), ...boards.d1]; '
        'return refresh(); }).then(() => beeps)',
    )
    assert beeps == 1


def test_a_slow_answer_for_the_district_left_never_paints_over_the_one_now_watched() -> None:
    """The board is asked again every 3 s: an answer for district d1 that comes after the
    dispatcher switched to d2 (and d2's board was shown) must not put d1's incidents (and
    its teams, in the assign list) back on the screen."""
    shown, = run_console(
        'boards.d1 = [incident("inc_d1")]; boards.d2 = [incident("inc_d2", {district: "d2"})];',
        # d1's board is asked again and its answer held back
        'var release; const held = new Promise(r => { release = r; }); const real = answer; '
        'answer = url => url.includes("district=d1") && url.startsWith("/v1/incidents?") '
        '? held.then(() => real(url)) : real(url); refresh(); '
        '$("district").value = "d2"; $("save").onclick(); '
        'settle().then(() => { release(); return settle(); }).then(() => '
        f'{ids_on_board()})',
    )
    assert shown == ["inc_d2"]


def test_an_incident_reported_another_day_shows_its_day_on_the_board() -> None:
    """A flagged incident waiting since an earlier day must not look like this morning's:
    the board's time carries the day unless it is today's."""
    earlier, today = run_console(
        'boards.d1 = [incident("inc_today", {reported_at: new Date().toISOString()}), '
        'incident("inc_earlier", {reported_at: "2020-03-02T08:00:00+08:00", flagged: true, '
        'status: "unassigned"})];',
        'rows().find(r => r[6] === "inc_earlier")[0] === '
        'new Date("2020-03-02T08:00:00+08:00").toLocaleString("zh-CN")',
        'rows().find(r => r[6] === "inc_today")[0] === '
        'new Date(boards.d1[0].reported_at).toLocaleTimeString("zh-CN")',
    )
    assert earlier and today


def test_an_incident_s_flags_from_its_reporting_system_are_shown() -> None:
    """The dispatcher who opens an incident sees what its reporting system flagged (a
    weapon, an injury, a child), as plain text however it is written."""
    title, = run_console(
        'boards.d1 = [incident("inc_x", {priority: "P1", status: "assigned"})]; '
        'details.inc_x = Object.assign(incident("inc_x", {priority: "P1", status: "assigned", '
        'flags: ["weapon", "<img src=x onerror=alert(1)>"]}), {orders: [], timeline: []});',
        'selected = "inc_x"; detail().then(() => $("dtitle").textContent)',
    )
    assert label("flag", "weapon") in title and "<img src=x onerror=alert(1)>" in title


def test_watching_another_district_closes_the_incident_open_from_the_one_left() -> None:
    """The assign list holds the teams of the district watched: an incident of the district
    left must not stay open beside them, one click from sending another district's team."""
    before, after = run_console(
        'boards.d1 = [incident("inc_d1")]; boards.d2 = [incident("inc_d2", {district: "d2"})]; '
        'details.inc_d1 = Object.assign(incident("inc_d1"), {orders: [], timeline: []});',
        'selected = "inc_d1"; refresh().then(() => [$("detail").hidden, fetched.filter('
        'u => u === "/v1/incidents/inc_d1?repeats=collapsed").length > 0])',
        '$("district").value = "d2"; $("save").onclick(); settle().then(() => '
        '[$("detail").hidden, selected])',
    )
    assert before == [False, True]
    assert after == [True, None]


def test_a_linked_report_offers_to_send_it_a_team_as_an_incident_of_its_own() -> None:
    """A report linked as a duplicate that the command room sees is another event (a second
    fight 150 m away): its panel offers Assign and "Not a duplicate", which asks dispatch to
    unlink it, with the dispatcher's reason. Before, its team list said "ended: nothing to
    assign"."""
    linked, done, posted = run_console(
        'boards.d1 = [incident("inc_r", {status: "linked", linked_to: "inc_p"}), '
        'incident("inc_p", {status: "resolved"})]; '
        'details.inc_r = Object.assign(incident("inc_r", {status: "linked", linked_to: "inc_p"}), '
        '{orders: [], timeline: []}); '
        'details.inc_p = Object.assign(incident("inc_p"), {orders: [], timeline: []}); '
        'var prompt = () => "another fight, at No. 14"; var confirm = () => true; var sent = []; '
        'const api0 = answer; answer = (url, init) => { if (init && init.method === "POST") '
        '{ sent.push([url, init.body]); return {}; } return api0(url); };',
        'selected = "inc_r"; detail().then(() => [$("dtitle").textContent, $("unlink").hidden, '
        '$("assign").hidden, $("team").children.map(o => o.textContent)])',
        'selected = "inc_p"; detail().then(() => [$("unlink").hidden, $("assign").hidden])',
        'selected = "inc_r"; detail().then(() => $("unlink").onclick()).then(() => sent)',
    )
    title, unlink_hidden, assign_hidden, teams = linked
    assert said("status_linked", status=label("incident_status", "linked"), id="inc_p") in title
    assert (unlink_hidden, assign_hidden) == (False, False)
    assert teams == [said("no_team")]  # the harness's district has no teams
    assert done == [True, True]
    assert posted == [["/v1/incidents/inc_r/unlink", '{"note":"another fight, at No. 14"}']]


def test_the_board_names_who_reported_and_leaves_linked_repeats_to_their_incident() -> None:
    """A camera's alert and a caller's account of a fight look alike but for who reported
    them: the board names the system (its name), a patrol member's own report, or the id
    of a system whose name dispatch never got. The reports linked to another incident (a
    camera repeating its alert every second) stay off the board unless the dispatcher asks
    for them (the status filter `linked`, or a ref): a page of them pushed open incidents
    off it."""
    default, asked_linked = run_console(
        'boards.d1 = [incident("inc_cam", {system_id: "sys_1", system_name: "天网视频"}), '
        'incident("inc_mine", {system_id: "member:m_1"}), '
        'incident("inc_old", {system_id: "sys_2"}), '
        'incident("inc_rep", {system_id: "sys_1", system_name: "天网视频", status: "linked", '
        'linked_to: "inc_cam"})];',
        'rows().map(r => [r[6], r[3]])',
        '$("status").value = "linked"; $("status").onchange(); settle().then(() => '
        f'{ids_on_board()})',
    )
    assert default == [["inc_cam", "天网视频"], ["inc_mine", said("by_member")],
                       ["inc_old", "sys_2"]]
    assert asked_linked == ["inc_rep"]
