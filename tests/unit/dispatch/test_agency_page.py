"""An agency's own desk page (GET /agency), its script run in node with stand-ins for the DOM
and for dispatch's API, as the console's (test_console_shift's harness): a security
company's duty manager reads its teams and the order each is on, those planned and not in,
its orders and its figures, in Chinese or English; the page asks the agency desk's own
reads only, shows what dispatch sends as text, and stops for a token refused or not an
agency desk's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs

from services.dispatch.agency_page import AGENCY_PAGE
from services.dispatch.agency_page_text import AGENCY_TEXT
from shared.labels import GLOSSARY, Language, label
from tests.helpers import run_in_node
from tests.unit.dispatch.test_console_shift import HARNESS as CONSOLE_HARNESS
from tests.unit.test_pages import script

# the console's harness, for this page: its own keys in this browser, its own address
KEPT = '{ "lf-token": "tok", "lf-district": "d1" }'
HARNESS = (CONSOLE_HARNESS.replace(KEPT, '{ "lf-agency-token": "tok", "lf-agency-district": "d1" }')
           .replace('pathname: "/console"', 'pathname: "/agency"'))
assert HARNESS.count("lf-agency-token") == 1 and '"/agency"' in HARNESS

# dispatch's answers to an agency desk (company A's duty manager in d1): `board`, `units`,
# `roll` and `kpis` as a test sets them; any other read is a failure of the test
API = r"""
var desk = { kind: "agency", dispatcher_id: "dsp_1", name: "Hengan duty manager",
           districts: ["d1"], agency_id: "sec-a" };
var board = { incidents: [], count: 0, next: null, more: false, scanned_to: null };
var units = [], roll = { planned: 0, not_checked_in: 0, teams: [] }, kpis = {};
var failing = {};  // path -> [status, body]
function query(url) { return new URLSearchParams(url.split("?")[1] || ""); }
var answer = (url, init) => {
  const path = url.split("?")[0];
  if (failing[path]) return reply(failing[path][0], failing[path][1]);
  if (path === "/v1/me") return desk;
  if (path === "/v1/incidents") return board;
  if (path === "/v1/units") return { units, count: units.length };
  if (path === "/v1/shift-check-ins") return roll;
  if (path === "/v1/kpis") return Object.assign({ since: "2026-12-07T00:00:00+08:00",
    today: query(url).get("date") || "2026-12-07", incidents: 0, orders: 0, by_category: {},
    declines: 0, routing_timeouts: 0, withdrawn: 0, resolved: 0, handed_over: 0,
    offer_to_acknowledge_s: { p50: null, p90: null, count: 0 },
    offer_to_scene_s: { p50: null, p90: null, count: 0, by_priority: {} }, by_team: {} },
    kpis);
  throw new Error("unexpected " + url);
};
function incident(id, orders, extra) {
  return Object.assign({ incident_id: id, district: "d1", category: "violence", priority: "P1",
    flags: [], location: { lat: 22.8171, lon: 108.3665, address: "North gate, Minzu Ave" },
    zone_id: null, reported_at: new Date().toISOString(), orders }, extra || {});
}
function order(id, team, extra) {
  return Object.assign({ order_id: id, team_id: team, team_name: "Guard post " + team,
    agency_kind: "security", kind: "dispatch", state: "en_route",
    issued_at: new Date().toISOString(), acknowledged_at: new Date().toISOString() }, extra || {});
}
function unit(id, extra) {
  return Object.assign({ team_id: id, name: "Guard post " + id, agency_id: "sec-a",
    agency_kind: "security", status: "available", on_shift: true, open_order_id: null,
    open_order_of_former_agency: false,
    position: { lat: 22.81, lon: 108.36, at: new Date().toISOString() } }, extra || {});
}
const table = id => $(id).children.map(tr => tr.children.map(td => td.textContent));
const items = id => $(id).children.map(li => li.textContent);
const asked = () => requests.map(r => r.url);
"""

# company A's afternoon: post 3 on its way to a fight, post 4 free, post 7 (moved here from
# another company) on that company's order, post 9 planned and not in
AFTERNOON = r"""
board = { incidents: [incident("inc_fight", [order("ord_3", "3")], {flags: ["weapon"]})],
          count: 1, next: null, more: false, scanned_to: null };
units = [unit("3", {status: "busy", open_order_id: "ord_3"}), unit("4"),
         unit("7", {status: "busy", open_order_of_former_agency: true})];
roll = { planned: 3, not_checked_in: 1, teams: [{ team_id: "9", team_name: "Guard post 9",
  checked_in: false, start: "2026-12-07T08:00:00+08:00", end: "2026-12-07T18:00:00+08:00" }] };
kpis = { incidents: 2, orders: 3, resolved: 1, declines: 1, routing_timeouts: 1,
  by_category: { violence: 1, noise: 1 },
  offer_to_acknowledge_s: { p50: 25, p90: 29, count: 2 },
  offer_to_scene_s: { p50: 140, p90: 140, count: 1, by_priority: {} },
  by_team: { "3": { team_name: "Guard post 3", orders: 2, declines: 1, routing_timeouts: 0,
    offer_to_acknowledge_s: { p50: 25, p90: 25, count: 1 },
    offer_to_scene_s: { p50: 140, p90: 140, count: 1 } } } };
"""

# what the desk sees of the afternoon
SEEN = ('[table("teams"), items("roll"), $("rollcount").textContent, table("orders"), '
        'items("figures"), $("who").textContent, $("err").textContent]')


def run_page(setup: str, *steps: str) -> list[Any]:
    """Runs the page's script in node after `setup` (JS), waits for its first refresh, then
    each step (a JS expression, awaited when a promise): their values."""
    return cast(list[Any], run_in_node(HARNESS, {"page": script(AGENCY_PAGE),
                                                 "setup": API + setup, "steps": list(steps)}))


def said(key: str, language: Language = "zh", **values: object) -> str:
    return AGENCY_TEXT[language][key].format(**values)


def test_the_desk_sees_its_teams_the_order_each_is_on_its_orders_and_its_figures() -> None:
    (teams, roll, rollcount, orders, figures, who, err), = run_page(AFTERNOON, SEEN)
    assert err == ""
    fight = label("category", "violence")
    assert teams == [
        ["Guard post 3", label("team_status", "busy"),
         said("order_of", priority="P1" + label("priority", "P1"), category=fight,
              place="North gate, Minzu Ave", state=label("order_state", "en_route"))],
        ["Guard post 4", label("team_status", "available"), ""],
        # moved here on another company's order: said so, never a link to a 403
        ["Guard post 7", label("team_status", "busy"), said("order_former_agency")]]
    assert rollcount == said("roll_count", missing=1, planned=3)
    assert len(roll) == 1 and roll[0].startswith("Guard post 9")
    [row] = orders
    assert row[1:6] == ["P1" + label("priority", "P1"),
                        f"{fight} · {label('flag', 'weapon')}", "North gate, Minzu Ave",
                        "Guard post 3", label("order_state", "en_route")]
    assert row[6] and row[7] and row[8] == "" and row[9] == ""  # offered, taken; not there yet
    assert f"{said('f_orders')}：3" in figures and f"{said('f_declines')}：1" in figures
    assert f"{said('f_to_acknowledge')}：{said('spread', p50=25, p90=29, count=2)}" in figures
    assert said("f_team", team="Guard post 3", orders=2, declines=1, timeouts=0,
                acknowledge=said("seconds", n=25), scene=said("seconds", n=140)) in figures
    assert who == said("who", name="Hengan duty manager", agency="sec-a")


def test_a_team_off_shift_or_without_a_position_is_said_so() -> None:
    """A guard post on shift whose phones sent no position for 10 minutes (a dead battery)
    is said so beside its status; one gone off shift still on its order, too."""
    (statuses,) = run_page(
        AFTERNOON + 'units = [unit("4", {position: null}), unit("5", {on_shift: false, '
        'status: "off_duty", position: null}), unit("3", {on_shift: false, status: "busy"})];',
        'table("teams").map(r => r[1])')
    assert statuses == [label("team_status", "available") + said("no_fix"),
                        label("team_status", "off_duty"),
                        label("team_status", "busy") + said("off_shift")]


def test_the_desk_asks_its_own_reads_only() -> None:
    """Not the duty, the pipeline, the heat map or the zones (the command room's: refused to
    it), nor anything it would change."""
    (asked,) = run_page(AFTERNOON, "asked()")
    paths = {url.split("?")[0] for url in asked}
    assert paths == {"/v1/me", "/v1/incidents", "/v1/units", "/v1/shift-check-ins", "/v1/kpis"}
    for url in asked:
        if "?" in url:
            assert parse_qs(url.split("?")[1])["district"] == ["d1"], url
    code = script(AGENCY_PAGE)
    assert "method:" not in code and "POST" not in code  # read only


def test_what_dispatch_sends_is_shown_as_text_never_as_markup() -> None:
    """A place, a team's name or a category as a reporting system or a roster wrote them: on
    the page as they are, never parsed (the script sets text only)."""
    code = script(AGENCY_PAGE)
    for parser in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert parser not in code, parser
    evil = "<img src=x onerror=alert(1)>"
    (teams, orders), = run_page(
        AFTERNOON + f'board.incidents[0].location.address = "{evil}"; '
        f'board.incidents[0].category = "{evil}"; units[1].name = "{evil}";',
        '[table("teams"), table("orders")]')
    assert teams[1][0] == evil and orders[0][2] == f"{evil} · {label('flag', 'weapon')}"
    assert orders[0][3] == evil


def test_a_read_not_answered_is_said_in_its_place_and_the_rest_is_shown() -> None:
    """Volunteers away: the shift plans are a 503 through dispatch; the teams, orders and
    figures are shown all the same."""
    (teams, roll, rollcount, orders, figures, _, err), = run_page(
        AFTERNOON + 'failing["/v1/shift-check-ins"] = [503, {error: {code: "unavailable", '
        'message: "volunteers did not answer; ask again"}}];', SEEN)
    assert rollcount == said("not_read", why="volunteers did not answer; ask again")
    assert roll == [] and len(teams) == 3 and len(orders) == 1 and figures and err == ""


def test_a_token_refused_stops_the_page_and_is_forgotten_here() -> None:
    (shown, kept, asked_after), = run_page(
        AFTERNOON,
        'failing["/v1/units"] = [401, {error: {code: "unauthorized", message: "unknown or '
        'revoked token"}}]; refresh().then(() => { requests.length = 0; return tick(); })'
        '.then(() => [[$("err").textContent, table("teams"), table("orders"), document.title], '
        'localStorage.getItem("lf-agency-token"), asked()])')
    err, teams, orders, title = shown
    assert err == said("token_refused", why="unknown or revoked token")
    assert teams == [] and orders == [] and title == said("title_signed_out")
    assert kept is None and asked_after == []  # nothing more is asked until Show


def test_a_command_room_token_is_told_this_is_an_agency_desk_s_page() -> None:
    (err, asked, rows), = run_page(
        AFTERNOON + 'desk = {kind: "dispatcher", name: "Li", districts: ["d1"], agency_id: null};',
        '[$("err").textContent, asked(), table("orders")]')
    assert err == said("not_agency") and "/console" in err
    assert asked == ["/v1/me"] and rows == []


def test_today_s_figures_are_of_the_district_s_day_and_the_week_s_of_seven_days() -> None:
    """This browser's clock on another day than the district's (a station PC set to UTC
    before 08:00 in Nanning): today's figures are asked again for the district's today, and
    for it from then on; the last 7 days' from a week before now."""
    district_today = "2000-01-01"  # never this browser's date
    first, then, (week, period) = run_page(
        AFTERNOON + 'const plain = answer; answer = (url, init) => { const a = plain(url, init); '
        f'if (url.startsWith("/v1/kpis")) a.today = "{district_today}"; return a; }};',
        'asked().filter(u => u.startsWith("/v1/kpis"))',
        'requests.length = 0; refresh().then(() => asked().filter(u => u.startsWith("/v1/kpis")))',
        'requests.length = 0; $("period").value = "week"; $("period").onchange(); '
        'settle().then(() => [asked().filter(u => u.startsWith("/v1/kpis")), '
        '$("fperiod").textContent])')
    days = [parse_qs(u.split("?")[1])["date"] for u in first]
    assert len(days) == 2 and days[0] != [district_today] and days[1] == [district_today]
    assert [parse_qs(u.split("?")[1])["date"] for u in then] == [[district_today]]
    [since] = parse_qs(week[0].split("?")[1])["since"]
    assert "date" not in parse_qs(week[0].split("?")[1])
    back = datetime.now(UTC) - datetime.fromisoformat(since.replace("Z", "+00:00"))
    assert timedelta(days=7) - timedelta(hours=1) < back < timedelta(days=7) + timedelta(hours=1)
    assert period.startswith(said("period_week", since="\0").split("\0")[0])


def test_the_morning_review_reads_the_last_24_hours_the_whole_night_shift() -> None:
    """The duty manager reviews last night's 19:00-07:00 shift at 08:00: today's figures
    (from 00:00) hold only its second half, and there was no other choice but a week. The
    last 24 hours hold it whole: asked from a day before now, without a date."""
    (day, period), = run_page(
        AFTERNOON,
        'requests.length = 0; $("period").value = "day"; $("period").onchange(); '
        'settle().then(() => [asked().filter(u => u.startsWith("/v1/kpis")), '
        '$("fperiod").textContent])')
    [asked] = day
    query = parse_qs(asked.split("?")[1])
    assert "date" not in query
    back = datetime.now(UTC) - datetime.fromisoformat(query["since"][0].replace("Z", "+00:00"))
    assert timedelta(hours=23) < back < timedelta(hours=25)
    assert period.startswith(said("period_24h", since="\0").split("\0")[0])
    assert said("last_24_hours") == "最近24小时"


def test_the_orders_page_back_by_the_cursor_and_forward_to_the_newest() -> None:
    older, back, newest, again = run_page(
        AFTERNOON + 'board.next = "cursor-1";',
        '!$("older").hidden',
        'requests.length = 0; $("older").onclick(); '
        'settle().then(() => asked().filter(u => u.startsWith("/v1/incidents?")))',
        '!$("newest").hidden',
        'requests.length = 0; $("newest").onclick(); '
        'settle().then(() => asked().filter(u => u.startsWith("/v1/incidents?")))')
    assert older is True and newest is True
    assert [parse_qs(u.split("?")[1]).get("after") for u in back] == [["cursor-1"]]
    assert [parse_qs(u.split("?")[1]).get("after") for u in again] == [None]


def test_the_page_speaks_english_once_chosen_and_chinese_by_default() -> None:
    read = '[$("teamshead").textContent, $("save").textContent, table("teams")[0][1], ' \
           '$("teamcols").children.map(th => th.textContent), document.title]'
    zh, en, kept = run_page(AFTERNOON, read,
                            f'$("lang").onclick(); settle().then(() => {read})',
                            'localStorage.getItem("lf-lang")')

    def seen(language: Language) -> list[object]:
        text = AGENCY_TEXT[language]
        return [text["teams"], text["watch"], label("team_status", "busy", language),
                [text["col_team"], text["col_status"], text["col_order"]], text["title"]]

    assert zh == seen("zh") and en == seen("en") and kept == "en"


def test_a_link_s_token_replaces_the_one_kept_only_once_the_desk_says_so() -> None:
    """The admin hands the duty manager `/agency#token=…&district=…`: the token leaves the
    address whatever the answer; it replaces another kept in this browser only once the desk
    confirms (a link sent by mistake would have it read as another desk unnoticed)."""
    link = ('location.hash = "#token=tok-link&district=d2"; history.replaceState = '
            '(s, t, url) => { location.hash = ""; location.pathname = url; };')
    kept = ('[localStorage.getItem("lf-agency-token"), localStorage.getItem("lf-agency-district"), '
            'location.hash, location.pathname]')
    (declined,) = run_page(link + AFTERNOON, kept)
    (taken,) = run_page("confirms = true; " + link + AFTERNOON, kept)
    assert declined == ["tok", "d1", "", "/agency"]
    assert taken == ["tok-link", "d2", "", "/agency"]


HAN = re.compile(r"[\u4e00-\u9fff]")


def test_both_languages_say_everything_with_the_same_blanks() -> None:
    zh, en = AGENCY_TEXT["zh"], AGENCY_TEXT["en"]
    assert set(zh) == set(en), sorted(set(zh) ^ set(en))
    for key in zh:
        assert set(re.findall(r"{(\w+)}", zh[key])) == set(re.findall(r"{(\w+)}", en[key])), key
        bare = re.sub(r"{\w+}", "", zh[key])
        assert HAN.search(bare) or key == "switch" or not re.search(r"[A-Za-z]{3}", bare), key


def test_every_text_and_word_the_script_names_is_in_the_table() -> None:
    code = script(AGENCY_PAGE)
    named = set(re.findall(r'(?:say|Said)\("(\w+)"', code))
    (fixed,) = run_page(AFTERNOON, "[...Object.values(FIXED), ...Object.values(HINTS), "
                        "...Object.values(TITLES), ...Object.values(COLUMNS).flat()]")
    named |= set(fixed)
    assert len(named) > 40 and named <= set(AGENCY_TEXT["zh"]), sorted(
        named - set(AGENCY_TEXT["zh"]))
    for group in set(re.findall(r'word\("(\w+)"', code)):
        assert group in GLOSSARY, group


def test_the_page_before_its_script_runs_is_chinese() -> None:
    markup = re.sub(r"<script>.*?</script>", "", AGENCY_PAGE, flags=re.DOTALL)
    assert '<html lang="zh-CN">' in markup and "{{" not in markup
    assert f">{AGENCY_TEXT['zh']['watch']}</button>" in markup and "Show" not in markup
    # no CDN: it works on a station server without Internet
    assert not re.findall(r"https?://", AGENCY_PAGE)
