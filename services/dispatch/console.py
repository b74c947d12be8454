"""The command room's console page (`GET /console`): self-contained, no CDN.

The board of a district refreshed every few seconds (flagged incidents first), a banner
when the system itself is stuck (orders not reaching the phones, reports or the teams'
answers not reaching dispatch, no positions coming in: GET /v1/pipeline), the units on one
screen, the teams planned for the shift being worked that have not checked in (GET
/v1/shift-check-ins: volunteers' plans, through dispatch), an incident's whole timeline
(a run of one source's repeats one line), the reports linked to it by who reported them
(each to open or unlink; counted on its board row, which says when another source joins)
and its teams (when each on its way should be there, or how late it is: dispatch's
expected_at, on dispatch's clock), manual assignment from dispatch's own list for the
incident (nearest suitable first, with distances, and why the rules would not send a team:
GET /v1/incidents/{id}/teams; a linked report too, or "not a duplicate": unlinked and
dispatched) and closing, evidence, how the KPIs count the incident (also once archived),
the duty (who supervises new incidents), the KPIs (year on year by type, and one type's
weekly trend, when asked) and the four weeks' hot spots (of the whole day or of tonight's
patrol hours).
It only calls the public command-room API with the dispatcher's (or admin's) token, kept
in this browser. Everything shown is set with textContent, never parsed as HTML.
It speaks Chinese, or English where the dispatcher chose it or the browser puts English
first (console_text.py; the system's codes in the glossary's words, shared/labels.py; the
timeline's details by their codes, timeline_text.py).
"""

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from shared.http import InputFirstRoute, page_headers, page_scripts
from shared.labels import page_in_words

from .console_text import CONSOLE_TEXT
from .timeline_text import script_words

_CONSOLE_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<link rel="icon" href="data:,">
<style>
 body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#0f1c2b;color:#eef3f8}
 header{display:flex;gap:8px;align-items:center;padding:8px 12px;background:#12263a;flex-wrap:wrap}
 header h1{font-size:17px;margin:0 auto 0 0}
 input,select,button{font:inherit;padding:6px 8px;border-radius:6px;border:1px solid #35506d;
  background:#0d1826;color:#eef3f8}
 button{background:#2b4a6b;cursor:pointer;border:0} button.danger{background:#a4161a}
 main{display:grid;grid-template-columns:2fr 1fr;gap:12px;padding:12px}
 section{background:#182c42;border-radius:8px;padding:10px;overflow:auto}
 h2{font-size:15px;margin:0 0 8px} table{width:100%;border-collapse:collapse}
 td,th{padding:4px 6px;border-bottom:1px solid #24405e;text-align:left;white-space:nowrap}
 tr.flagged td{background:#5c1d1f} tr.called td{background:#5c3a12}
 tr.sel td{outline:1px solid #f48c06} tr{cursor:pointer}
 .P1{color:#ff6b6b;font-weight:700}.P2{color:#f48c06}.P3{color:#4ea8de}.P4{color:#8d99ae}
 td.late{color:#ffb84d;font-weight:bold}
 td.news{color:#ffd166;font-weight:bold} #linkedreports ul{margin:2px 0}
 .dim{color:#9fb2c6} #err,#aerr,#dutyerr,#hiddenflags,#nothandled{color:#ff8787}
 ul{margin:0;padding-left:18px}
 button:disabled{opacity:.5;cursor:wait}
 #detail{grid-column:1/3}
 #map{width:100%;height:340px;background:#0d1826;border-radius:6px;display:block}
 #map text{fill:#9fb2c6;font-size:11px} #map .inc{cursor:pointer}
 #pipeline{background:#5c1d1f;border-bottom:2px solid #ff6b6b;padding:8px 12px;font-weight:600}
 #pipeline div{margin:2px 0}
 a{color:#8ecae6}
</style></head><body>
<header><h1 id="heading">{{heading}}</h1>
 <button id="lang" type="button" lang="en">{{switch}}</button>
 <input id="token" type="password" placeholder="{{token_hint}}" size="28">
 <input id="district" placeholder="{{district_hint}}" size="10">
 <select id="status"></select> <select id="problem"></select>
 <label><input id="mine" type="checkbox"> <span id="minename">{{mine}}</span></label>
 <input id="ref" placeholder="{{ref_hint}}" size="16" maxlength="128">
 <button id="save">{{watch}}</button>
 <label id="soundlabel" title="{{sound_hint}}"><input id="sound" type="checkbox" checked>
  <span id="soundname">{{sound}}</span></label>
 <span class="dim" id="duty"></span> <button id="takeduty">{{take_duty}}</button>
 <span id="dutyerr"></span>
 <button id="signout" title="{{sign_out_hint}}">{{sign_out}}</button>
 <span id="err"></span> <a id="agencylink" href="/agency" hidden>{{agency_page}}</a></header>
<div id="pipeline" role="alert" hidden></div>
<main>
 <section><h2><span id="maphead">{{map}}</span> <span class="dim" id="maplegend"></span></h2>
  <svg id="map" role="img" aria-label="{{map_label}}"></svg>
  <div class="dim" id="legend">{{map_legend}}</div>
  <h2 style="margin-top:12px"><span id="boardhead">{{board}}</span> <span class="dim" id="count"></span>
   <button id="older" hidden>{{older}}</button> <button id="newest" hidden>{{newest}}</button>
   <span id="hiddenflags"></span> <span id="nothandled"></span></h2>
  <table><thead><tr id="boardcols"></tr></thead><tbody id="board"></tbody></table></section>
 <section><h2 id="unitshead">{{units}}</h2>
  <table><thead><tr id="unitcols"></tr></thead><tbody id="units"></tbody></table>
  <h2 style="margin-top:12px"><span id="rollhead">{{roll_head}}</span>
   <span class="dim" id="rollcount"></span></h2><ul id="roll"></ul>
  <h2 style="margin-top:12px"><span id="kpihead">{{kpis}}</span> <span class="dim" id="kperiod"></span></h2>
  <div style="margin:0 0 6px"><span id="dayname">{{day}}</span>
   <input id="kday" type="date" title="{{day_hint}}">
   <button id="kyesterday">{{yesterday}}</button> <button id="klast">{{last_24h}}</button>
   <label id="yoylabel" title="{{yoy_hint}}"><input id="kyoy" type="checkbox">
    <span id="yoyname">{{yoy}}</span></label></div>
  <ul id="kpis"></ul>
  <div class="dim" id="yoyhead" style="margin-top:6px"></div><ul id="yoy"></ul>
  <div style="margin:6px 0"><span id="trendname">{{trend}}</span>
   <select id="trendcat" title="{{trend_hint}}"></select></div>
  <div id="trend"></div>
  <h2 style="margin-top:12px"><span id="spotshead">{{hot_spots}}</span>
   <span class="dim" id="spotshours"></span>
   <select id="spotchoice" title="{{spots_choice_hint}}"></select></h2><ul id="spots"></ul></section>
 <section id="detail" hidden><h2 id="dtitle"></h2><div class="dim" id="dmeta"></div>
  <div id="dfigures" style="margin:4px 0"></div>
  <div id="dreport" style="margin:4px 0"></div>
  <div id="linkedreports" style="margin:4px 0"></div>
  <div id="orders" style="margin:8px 0"></div>
  <div style="margin:8px 0"><span id="teamname">{{assign_team}}</span> <select id="team"></select>
   <button id="assign">{{assign}}</button>
   <button id="unlink" hidden title="{{unlink_hint}}">{{unlink}}</button>
   <button id="close" class="danger">{{close}}</button>
   <span id="aerr"></span></div>
  <div style="margin:8px 0"><span id="revisename">{{revise_label}}</span> <select id="newprio"></select>
   <label><input type="checkbox" id="fweapon"> <span id="fweaponname">{{flag:weapon}}</span></label>
   <label><input type="checkbox" id="finjury"> <span id="finjuryname">{{flag:injury}}</span></label>
   <label><input type="checkbox" id="fprogress"> <span id="fprogressname">{{flag:in_progress}}</span></label>
   <input id="revnote" placeholder="{{revise_hint}}" size="32" maxlength="500">
   <button id="revise">{{revise}}</button></div>
  <div style="margin:8px 0"><span id="remarkname">{{remark_label}}</span>
   <input id="remark" placeholder="{{remark_hint}}" size="48" maxlength="500">
   <button id="addremark">{{add_remark}}</button></div>
  <div style="margin:8px 0"><span id="attachname">{{attach_label}}</span> <select id="evkind"></select>
   <input id="evref" placeholder="{{evidence_hint}}" size="32" maxlength="200">
   <button id="attach">{{attach}}</button></div>
  <table><thead><tr id="timelinecols"></tr></thead><tbody id="timeline"></tbody></table></section>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
// What the console says, per language, and the glossary's words for the codes dispatch
// sends (a category a deployment added and the glossary does not have: its code).
const STRINGS = __STRINGS__;
// Chinese, unless the dispatcher chose (kept in this browser) or the browser puts English first.
function chosenLanguage() {
  const kept = localStorage.getItem("lf-lang");
  if (kept === "zh" || kept === "en") return kept;
  const nav = typeof navigator === "undefined" ? {} : navigator;
  const first = (nav.languages && nav.languages[0]) || nav.language || "";
  return /^en(-|$)/i.test(String(first)) ? "en" : "zh";
}
let lang = chosenLanguage();
function say(key, vars) {
  return STRINGS[lang].text[key].replace(/[{]([a-z_]+)[}]/g,
    (all, name) => (vars && name in vars ? String(vars[name]) : all));
}
function word(group, code) {
  const words = STRINGS[lang][group];
  return Object.prototype.hasOwnProperty.call(words, code) ? words[code] : code;
}
// a priority as the command room says it: P1 特急, P1 emergency
const prio = p => p + (lang === "zh" ? "" : " ") + word("priority", p);
const locale = () => (lang === "zh" ? "zh-CN" : undefined);
// A message the page writes itself, said again in the other language on a switch.
class Said extends Error { constructor(key, vars) { super(say(key, vars)); this.key = key;
  this.vars = vars; } }
const told = e => (e instanceof Said ? () => say(e.key, e.vars) : () => e.message);
// A line the page keeps saying (an error, a warning, the KPIs' period): as a function, said
// again when the dispatcher switches language (what a refresh paints is painted again).
const lines = new Map();
function show(id, text) { const f = typeof text === "function" ? text : () => text;
  lines.set(id, f); $(id).textContent = f(); }
let titled = () => say("title");
function setTitle(f) { titled = f; document.title = f(); }
// what the markup says, by element id ("group:code": the glossary's word)
const FIXED = {heading: "heading", lang: "switch", minename: "mine", save: "watch",
  soundname: "sound", takeduty: "take_duty", signout: "sign_out", maphead: "map",
  legend: "map_legend", boardhead: "board", older: "older", newest: "newest",
  unitshead: "units", rollhead: "roll_head", kpihead: "kpis", dayname: "day", kyesterday: "yesterday",
  klast: "last_24h", spotshead: "hot_spots", teamname: "assign_team", assign: "assign",
  unlink: "unlink", close: "close", revisename: "revise_label", fweaponname: "flag:weapon",
  finjuryname: "flag:injury", fprogressname: "flag:in_progress", revise: "revise",
  remarkname: "remark_label", addremark: "add_remark", attachname: "attach_label",
  attach: "attach", agencylink: "agency_page", yoyname: "yoy", trendname: "trend"};
const HINTS = {token: "token_hint", district: "district_hint", ref: "ref_hint",
  revnote: "revise_hint", remark: "remark_hint", evref: "evidence_hint"};
const TITLES = {soundlabel: "sound_hint", signout: "sign_out_hint", unlink: "unlink_hint",
  kday: "day_hint", spotchoice: "spots_choice_hint", yoylabel: "yoy_hint",
  trendcat: "trend_hint"};
const COLUMNS = {
  boardcols: ["col_reported", "col_priority", "col_category", "col_source", "col_status",
              "col_timeouts", "col_incident"],
  unitcols: ["col_team", "col_kind", "col_status", "col_order"],
  timelinecols: ["col_time", "col_what", "col_team", "col_detail"]};
const FILTERED = ["unassigned", "assigned", "acknowledged", "en_route", "on_scene",
  "handed_over", "resolved", "closed"];
// A list's choices, made once and named in the language shown: what is chosen stays chosen.
const optionsOf = {};  // list id -> its option elements
function choices(id, named) {
  if (!optionsOf[id]) {
    optionsOf[id] = named.map(([value]) => { const o = document.createElement("option");
      o.value = value; return o; });
    $(id).replaceChildren(...optionsOf[id]); }
  named.forEach(([, name], n) => { optionsOf[id][n].textContent = name; });
}
function showLanguage() {
  if (document.documentElement) document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  $("lang").lang = lang === "zh" ? "en" : "zh-CN";  // the switch names the other language
  for (const [id, key] of Object.entries(FIXED)) { const [group, code] = key.split(":");
    $(id).textContent = code ? word(group, code) : say(key); }
  for (const [id, key] of Object.entries(HINTS)) $(id).placeholder = say(key);
  for (const [id, key] of Object.entries(TITLES)) $(id).title = say(key);
  $("map").setAttribute("aria-label", say("map_label"));
  for (const [id, keys] of Object.entries(COLUMNS)) {
    $(id).replaceChildren(...keys.map(key => { const th = document.createElement("th");
      th.textContent = say(key); return th; })); }
  choices("status", [["", say("all_open")], ...FILTERED.map(s => [s, word("incident_status", s)])]);
  choices("problem", [["", say("any_problem")], ["routing_timeout", say("routing_timeouts")],
                      ["filing_overdue", say("filings_overdue")], ["declined", say("declines")],
                      ["unassigned_late", say("unassigned_late")]]);
  choices("newprio", [["", say("priority_choice")], ...["P1", "P2", "P3", "P4"].map(p => [p, prio(p)])]);
  choices("evkind", ["video", "photo", "audio", "document"].map(k => [k, word("evidence_kind", k)]));
  choices("spotchoice", [["", say("all_day")],
    [PATROL_HOURS, say("spots_patrol", {hours: hoursText(PATROL_HOUR_LIST)})]]);
  choices("trendcat", [["", say("trend_none")],
    ...Object.keys(STRINGS[lang].category).map(c => [c, word("category", c)])]);
  for (const [id, text] of lines) $(id).textContent = text();
  document.title = titled();
  paintPipeline(); paintRollCall(); paintYoy(); paintTrend();
}
let selected = null;  // the incident last clicked: its panel is asked for
let shown = null;  // the incident the panel shows: what Assign, Close, Revise ... act on
let shownLinkedTo = null;  // while the incident shown is a linked report: the incident it joined
let stopped = false;  // the token was refused: no polling until Watch with another
let unitsNow = [];  // the district's teams, as the last refresh read them
// The four weeks' heat map is read beside the refresh, never awaited by it: a slow route
// (dispatch busy, the 15 s bound) must not hold back the board, the incident open and the
// alarm, which the 3 s tick reads again only once a refresh has ended.
let spotsDue = 0;  // when the hot spots are next read: 0, at the next refresh
let spotsReading = null;  // the read of the hot spots on its way, if any: one at a time
let spotsMissed = null;  // why the last read of the hot spots failed, until one is answered
// A read that failed is asked again after this, not at every 3 s tick: a route failing
// because dispatch is busy would be asked back to back, each read up to api()'s 15 s.
const SPOTS_RETRY_MS = 15000;
// The hot spots of the whole day, or of tonight's patrol hours only (DOMAIN.md: night
// markets, bars, 19:00 to 02:00), on the district's clock: the heat map's `hours` keeps
// whole local hours, so 19:00 to 02:00 is "19-1" ("19-2" keeps 02:00 to 02:59 too). The
// choice is kept in this browser, as its language is.
const PATROL_HOURS = "19-1", PATROL_HOUR_LIST = [19, 20, 21, 22, 23, 0, 1];
const SPOT_HOURS_KEY = "lf-spot-hours";
let districtToday = null;  // the district's date (YYYY-MM-DD), as the last KPIs said it
// The period shown compared with the same period a year earlier, by type (GET /v1/kpis
// ?compare=previous_year): "incidents by type year on year", as the reports quote it. A
// second period of incidents for dispatch to read: only while the dispatcher asks (the box
// ticked, kept in this browser), beside the refresh and never awaited by it, as the heat map
// is; once a minute for the period shown, at once for another period (the day picked, the
// district), one read at a time; an answer for a period or district left, or for a token
// refused, is dropped; one that failed is said in place and asked again after
// SPOTS_RETRY_MS.
const YOY_KEY = "lf-kpi-yoy", YOY_EVERY_MS = 60000;
let yoyFor = null;  // the period (district and day) of the read on its way or last answered
let yoyDue = 0, yoyReading = null, yoyNow = null, yoyMissed = null;
// One type's incidents per week (GET /v1/kpis?category=&since=: its `by_week`, Monday to
// Sunday on the district's clock): the weekly trend the reports quote, e-bike thefts 19 a
// week, 5 after targeted patrols. Dispatch counts every week of a period in one answer, so one
// read: from TREND_WEEKS + 1 weeks back, its first week (only partly in the period) left
// out, TREND_WEEKS whole weeks and this one so far. Only while a type is chosen (kept in this
// browser), beside the refresh and never awaited by it, as the comparison is; every
// TREND_EVERY_MS (a week's count moves slowly: 13 weeks of incidents for dispatch to read),
// at once for another type or district.
const TREND_KEY = "lf-trend-category", TREND_WEEKS = 12, TREND_EVERY_MS = 300000;
const WEEK_MS = 7 * 86400000;
let trendFor = null;  // the district and type of the read on its way or last answered
let trendDue = 0, trendReading = null, trendNow = null, trendMissed = null;
let me = null;  // who the token is (GET /v1/me), read once per token
// The board's older pages: each the cursor (`next`) of the page before; none, the newest.
// A cursor, not `until`: incidents reported at the same instant would fall between pages.
let pages = [], olderAfter = null;
// An incident's end, as the board, the map and the alarm read it.
const ended = status => ["resolved", "handed_over", "closed", "linked"].includes(status);
// no team on it: unassigned, or its report not yet judged or given up on (`dispatching`,
// flagged report_given_up: dispatch failed on it and made no order)
const nobodyOn = status => ["reported", "dispatching", "unassigned"].includes(status);
let hotspots = [];  // the heat map's hottest cells, read once a minute
let zones = [];  // the district's zones (station territories), read once a minute
const link = new URLSearchParams(location.hash.slice(1));  // #token=…&district=… (not sent to the server)
// A link's token replaces another kept here only once the dispatcher says so: a link sent
// to them (by mistake or on purpose) would have their board act, and be recorded, under
// another identity unnoticed. Declined, the link is ignored (its district too). The token
// leaves the address first, whatever the answer.
let linkTaken = true;
if (link.get("token")) {
  history.replaceState(null, "", "/console");
  const kept = localStorage.getItem("lf-token");
  linkTaken = !kept || kept === link.get("token") || confirm(say("confirm_link_token"));
  if (linkTaken) localStorage.setItem("lf-token", link.get("token"));
}
if (linkTaken && link.get("district")) localStorage.setItem("lf-district", link.get("district"));
$("token").value = localStorage.getItem("lf-token") || "";
$("district").value = localStorage.getItem("lf-district") || "";
const spotHoursKept = localStorage.getItem(SPOT_HOURS_KEY) === PATROL_HOURS ? PATROL_HOURS : "";
// Who reported: the system by its name (a camera's alert or a 110 call), a patrol member's
// own report, or an id only (a report received before dispatch kept names)
const reporter = i => i.system_name
  || (String(i.system_id || "").startsWith("member:") ? say("by_member") : i.system_id || "");
// The reports linked to an incident, on its row (the board leaves each linked report out):
// how many, and how many sources beside its own reporter (a caller among a camera's
// repeats, a patrol member there); none, nothing said.
const linkedSaid = l => (!l ? "" : l.other_sources
  ? say("linked_row_others", {count: l.count, others: l.other_sources})
  : say("linked_row", {count: l.count}));
// A source other than its own reporter that joined an open incident since the dispatcher
// last opened it (or since this page first listed it) marks its row until they open it:
// a second account ("now he has a knife"), a caller to ring back, or a mis-link to undo,
// where a camera's thousandth repeat changes nothing.
const othersSeen = new Map();  // incident id -> its other sources when last seen
function news(i) {
  const now = i.reports_linked ? i.reports_linked.other_sources : 0;
  if (!othersSeen.has(i.incident_id)) othersSeen.set(i.incident_id, now);
  return now > othersSeen.get(i.incident_id) && !ended(i.status);
}
// Who reported a linked report: as reporter(), a patrol member with their id (two members'
// reports are two sources)
const sourceName = g => (String(g.system_id || "").startsWith("member:") && !g.system_name
  ? say("by_member") + " " + String(g.system_id).slice(7) : reporter(g));
function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text ?? "";
  if (cls) td.className = cls; tr.appendChild(td); return td; }
const REFUSED = new Error("the token was refused");
async function api(path, opts = {}) {
  const token = $("token").value;
  const r = await fetch(path, {...opts, headers: {"Authorization": "Bearer " + token,
    "Content-Type": "application/json"},
    // a request that never ends would hold back every refresh (older browsers: none)
    signal: typeof AbortSignal !== "undefined" && AbortSignal.timeout
      ? AbortSignal.timeout(15000) : undefined});
  let body = {};
  if (r.status !== 204) {
    try { body = await r.json(); }
    catch (e) {  // a proxy's page, a cut answer: say what came, not a parser's complaint
      if (r.ok) throw new Said("unreadable");
      body = {}; } }
  // (a refusal of the token a new one replaced meanwhile says nothing of the new one)
  if (r.status === 401) { if (token === $("token").value) refused(body); throw REFUSED; }
  if (!r.ok) throw body && body.error
    ? Object.assign(new Error(body.error.message), {field: body.error.field})
    : new Said("answered", {status: r.status + (r.statusText ? " " + r.statusText : "")});
  return body;
}
// A token revoked or changed (401): the board must not go on looking live while every poll
// is refused, nor ask again every 3 s. Polling stops, what was shown goes, the token is
// forgotten in this browser, and the header says what to do.
function refused(body) {
  const why = body && body.error && body.error.message ? body.error.message : say("unknown_token");
  stopped = true; me = null; selected = null; shown = null; alerted = null; unitsNow = [];
  localStorage.removeItem("lf-token"); $("token").value = "";
  $("detail").hidden = true;
  for (const id of ["board", "units", "kpis", "spots", "team", "map", "timeline", "orders",
                    "linkedreports"]) {
    $(id).replaceChildren(); }
  teamsListed = null;
  for (const id of ["count", "hiddenflags", "nothandled", "duty", "maplegend"]) {
    $(id).textContent = ""; }
  show("dutyerr", ""); show("spotshours", "");
  $("older").hidden = true; $("newest").hidden = true;
  setTitle(() => say("title_signed_out"));
  show("err", () => say("token_refused", {why}));
  pipelineNow = null; pipelineMissed = 0; pipelineReading = null; paintPipeline();
  rollNow = null; rollMissed = null; rollReading = null; paintRollCall();
  forgetYoy(); forgetTrend();
}
// An agency's own desk (a security company's, a police station's) reads its own teams, their
// orders and figures on its own page (/agency); the board, the timelines, the duty, the KPIs
// and the system's state this page shows are the command room's, refused to it. Said once
// with a link to its page, which finds the token kept for it in this browser, and nothing is
// polled until Watch with another token (the roll call or pipeline read on its way is
// dropped, not painted).
function notForAgencies() {
  stopped = true;
  pipelineNow = null; pipelineMissed = 0; paintPipeline();
  rollNow = null; rollMissed = null; paintRollCall();
  localStorage.setItem("lf-agency-token", $("token").value);
  show("err", () => say("agency_desk")); $("agencylink").hidden = false;
}
// What an action answered (a 409 and why) stays beside its buttons until the next action:
// the 3 s refresh does not wipe it before it is read.
function tell(e, where) { if (e !== REFUSED && e !== STALE) show(where || "aerr", told(e)); }
// One request at a time per button: a double click sends one.
function act(id, fn, where) { let busy = false;
  $(id).onclick = async () => { if (busy) return; busy = true; $(id).disabled = true;
    show(where || "aerr", "");
    try { await fn(); } catch (e) { tell(e, where); }
    finally { busy = false; $(id).disabled = false; } }; }
// the day too unless today: an incident waiting since yesterday must not look like this morning's
function time(iso) { if (!iso) return ""; const t = new Date(iso);
  return t.toDateString() === new Date().toDateString() ? t.toLocaleTimeString(locale())
    : t.toLocaleString(locale()); }
// When an incident was reported and, when it reached dispatch more than 10 min after
// (its `late_by_s`), by how much in minutes, hours or days: the scene is that old.
const lateText = s => (s < 7200 ? say("age_minutes", {n: Math.floor(s / 60)})
  : s < 172800 ? say("age_hours", {n: Math.floor(s / 3600)})
    : say("age_days", {n: Math.floor(s / 86400)}));
const reportedText = i => time(i.reported_at)
  + (i.late_by_s ? say("late_by", {late: lateText(i.late_by_s)}) : "");
// A refresh paints only while it is the latest asked for: an answer that comes late (a slow
// network, the district or a filter changed meanwhile) is dropped, never painted over a
// newer one. The 3 s tick starts none while one is on its way.
let generation = 0, refreshing = 0, watched = null;
const STALE = new Error("a newer refresh was asked for");
async function refresh() {
  const d = $("district").value.trim(); if (stopped || !$("token").value || !d) return;
  if (d !== watched) {  // another district: its incidents are not new ones, and an incident
    // of the one left is not worked on beside the new one's teams; its board from the newest
    // (a cursor of the one left is no place in it), its map without the one left's zones
    if (watched !== null) { selected = null; shown = null; $("detail").hidden = true; alerted = null;
      pages = []; hotspots = []; zones = []; spotsDue = 0; spotsReading = null; spotsMissed = null;
      $("spots").replaceChildren(); show("spotshours", ""); show("dutyerr", "");
      rollNow = null; rollMissed = null; rollReading = null; rollDue = 0; paintRollCall();
      forgetYoy(); forgetTrend(); }
    watched = d; }
  const run = ++generation; refreshing += 1;
  // who is due and not in: beside the refresh, never awaited by it (readRollCall)
  if (!rollReading && Date.now() >= rollDue) readRollCall(d);
  const get = async path => { const body = await api(path); if (run !== generation) throw STALE;
    return body; };
  try {
    // in the order dispatch received them: a report that reached it late (a 110 system's
    // queue stuck) is new here when it comes, however long ago it was reported
    const q = new URLSearchParams({district: d, limit: "200", order: "received"});
    if ($("status").value) q.set("status", $("status").value);
    if ($("problem").value) q.set("problem", $("problem").value);
    if ($("mine").checked) q.set("supervisor", "me");
    if ($("ref").value.trim()) q.set("ref", $("ref").value.trim());  // a 110 call's number
    // Reports linked to another incident (a camera's alert repeated every second) only when
    // asked for (status: linked, a ref): a page of them pushed open incidents off the board
    // and the map. Each is on its incident's timeline.
    const unlinked = !$("status").value && !$("ref").value.trim();
    if (unlinked) q.set("linked", "false");
    if (pages.length) q.set("after", pages[pages.length - 1]);
    if (!me) { me = await get("/v1/me");  // an inspector reads and changes nothing: no buttons
      if (me.kind === "agency") { notForAgencies(); return; }
      for (const id of ["assign", "close", "attach", "revise", "addremark"]) {
        $(id).hidden = me.kind === "inspector"; }
      // the duty is taken by the dispatcher who asks: an admin's press names nobody (a 422)
      $("takeduty").hidden = me.kind !== "dispatcher"; }
    const duty = (await get("/v1/duty/" + encodeURIComponent(d))).duty;  // first supervisor of new incidents
    $("duty").textContent = duty ? say("on_duty", {name: duty.name, since: time(duty.since)})
      : say("nobody_on_duty");
    const board = await get("/v1/incidents?" + q);
    // Every flagged incident of the district (no team found, deadlines missed, a hand-over
    // no station team takes, a backup not found), however many newer reports came since:
    // on the unfiltered board's first page, in the title and the alarm whatever is shown.
    const flaggedAnswer = await get("/v1/incidents?" + new URLSearchParams(
      {district: d, flagged: "true", limit: "200"}));
    const flaggedNow = flaggedAnswer.incidents;
    // Reports dispatch gave up on before it made their incident: on no board, said here;
    // a first page its budget ended before it found any is not said as none lost
    const lost = await get("/v1/reports-not-handled?" + new URLSearchParams({district: d}));
    $("nothandled").textContent = lost.count ? say("reports_not_handled",
      {count: lost.count + (lost.more ? "+" : "")})
      : lost.scanned_to ? say("reports_not_handled_unscanned",
        {time: new Date(lost.scanned_to).toLocaleString(locale())}) : "";
    const filtering = !!($("status").value || $("problem").value || $("mine").checked
      || $("ref").value.trim());
    if (!filtering && !pages.length) { const listed = new Set(board.incidents.map(i => i.incident_id));
      board.incidents.push(...flaggedNow.filter(i => !listed.has(i.incident_id))); }
    // a new P1 calls back too, also while the board shows a filter or an older page
    const newest = filtering || pages.length ? (await get("/v1/incidents?" + new URLSearchParams(
      {district: d, limit: "200", order: "received", linked: "false"}))).incidents
      : board.incidents;
    alarm([...flaggedNow, ...newest]);
    // flagged first, then what still needs a team before what is done, the most urgent
    // first, of those one no team is on before one a team is on (a fight with both its
    // units on scene stays flagged for the deadlines missed on the way), the newest first
    // among equals (the API's order; sort is stable)
    const done = s => ended(s) ? 1 : 0, manned = s => nobodyOn(s) ? 0 : 1;
    board.incidents.sort((a, b) => (b.flagged - a.flagged) || (done(a.status) - done(b.status))
      || a.priority.localeCompare(b.priority) || (manned(a.status) - manned(b.status)));
    const tb = $("board"); tb.replaceChildren();
    for (const i of board.incidents) { const tr = document.createElement("tr");
      if (i.flagged) tr.className = "flagged"; else if (calling(i)) tr.className = "called";
      if (i.incident_id === selected) tr.classList.add("sel");
      cell(tr, reportedText(i), i.late_by_s ? "late" : ""); cell(tr, prio(i.priority), i.priority);
      cell(tr, word("category", i.category));
      cell(tr, reporter(i) + linkedSaid(i.reports_linked), news(i) ? "news" : "dim");
      cell(tr, word("incident_status", i.status) + callSaid(i.backup_call));
      cell(tr, i.routing_timeouts || ""); cell(tr, i.incident_id, "dim");
      tr.onclick = () => openIncident(i.incident_id); tb.appendChild(tr); }
    // A filter or an older page leaves flagged incidents out of the rows: said, never silent.
    const rowIds = new Set(board.incidents.map(i => i.incident_id));
    const left = flaggedNow.filter(i => !rowIds.has(i.incident_id)).length;
    $("hiddenflags").textContent = left ? say(filtering ? "hidden_by_filter" : "hidden_on_older",
      {count: left + (flaggedAnswer.next ? "+" : "")}) : "";
    // a hunt stopped by the board's budget says how far back it looked: Older asks on
    $("count").textContent = say("shown", {count: board.incidents.length})
      + (pages.length ? say("older_page", {page: pages.length}) : "")
      + (board.scanned_to ? say("looked_back", {time: new Date(board.scanned_to)
        .toLocaleString(locale())}) : board.next ? say("more_older") : "");
    olderAfter = board.next; $("older").hidden = !board.next; $("newest").hidden = !pages.length;
    const units = await get("/v1/units?district=" + encodeURIComponent(d));
    unitsNow = units.units;
    drawMap(board.incidents, units.units);
    const ub = $("units"); ub.replaceChildren();
    for (const u of units.units) { const tr = document.createElement("tr");
      cell(tr, u.name || u.team_id); cell(tr, u.agency_role ? say("unit_kind",
        {kind: word("agency_kind", u.agency_kind), role: word("agency_role", u.agency_role)})
        : word("agency_kind", u.agency_kind));
      // orders in a row it let time out: still offered every incident, the most urgent
      // first, each losing its deadline there; the command room calls it or takes it off
      cell(tr, word("team_status", u.status) + (u.missed_in_a_row ? say("missed_in_a_row",
        {count: u.missed_in_a_row, since: time(u.missed_since)}) : ""),
        u.missed_in_a_row ? "late" : "");
      cell(tr, u.open_order_id ? say("on_order") : "");
      ub.appendChild(tr); }
    // the KPIs of the day picked (00:00 to 24:00 on the district's clock: the morning
    // review), else of the last 24 h
    const kq = new URLSearchParams({district: d}); const day = kpiDay();
    if (day) kq.set("date", day);
    const k = await get("/v1/kpis?" + kq); const kl = $("kpis");
    districtToday = k.today || null;
    const here = typeof Intl !== "undefined" ? Intl.DateTimeFormat().resolvedOptions().timeZone : "";
    const hours = k.timezone && here && k.timezone !== here ? k.timezone : null;
    show("kperiod", () => say("period", {what: day ? say("period_day",
      {day: dateText(day)}) : say("period_24h"),
      hours: hours ? say("hours_in", {zone: hours}) : ""}));
    kl.replaceChildren();
    // 受立案超期 of the period: the hand-overs whose filing fell due in it and was not filed
    // by then (filed late since too), of which still owed (the board's "filings overdue");
    // not those of the period's incidents, which a day's review, read the next morning,
    // finds not yet due
    const due = k.filings_due || {};
    const filings = (due.overdue ?? "-") + (due.unfiled
      ? say("still_unfiled", {count: due.unfiled}) : "");
    const patrol = (k.handled_by_force || {})["police:patrol"];  // DOMAIN.md's street patrol
    const patrolShare = patrol ? percent(patrol.share) + say("resolved_on_site_of",
      {share: percent(patrol.resolved_on_site_share)}) : "-";
    // 警情分流超时 as the inspector hunts them: incidents (the board's ?problem=routing_timeout),
    // the orders timed out beside them (an incident two teams let time out has two)
    const timeouts = k.routing_timeouts ? say("routing_timeouts_of",
      {incidents: k.routing_timeout_incidents, orders: k.routing_timeouts})
      : k.routing_timeout_incidents;
    // what the time to assign cannot show (it counts only those sent a team): the incidents
    // nobody was sent to, still waiting or ended so, and those past their priority's
    // deadline (the board's ?problem=unassigned_late lists them with those assigned late)
    const none = k.never_assigned || {};
    const neverAssigned = none.incidents ? say("never_assigned_of", {incidents: none.incidents,
      open: none.open, ended: none.ended, late: none.past_deadline}) : (none.incidents ?? "-");
    const categories = Object.entries(k.by_category || {}).map(([c, n]) => [word("category", c), n]);
    for (const [label, v] of [[word("kpi", "incidents"), k.incidents],
        [word("kpi", "routing_timeouts"), timeouts],
        [word("kpi", "declines"), k.declines ?? "-"],
        [word("kpi", "time_to_assign_s"), fmt(k.time_to_assign_s)],
        [word("kpi", "never_assigned"), neverAssigned],
        [word("kpi", "assigned_after_deadline"), k.assigned_after_deadline ?? "-"],
        [word("kpi", "time_to_acknowledge_s"), fmt(k.time_to_acknowledge_s)],
        [word("kpi", "time_to_scene_s"), fmt(k.time_to_scene_s)],
        [word("kpi", "resolved_on_site_share"), percent(k.resolved_on_site_share)],
        [word("kpi", "handed_over"), k.handed_over], [say("street_patrol"), patrolShare],
        [word("kpi", "filings_overdue"), filings],
        [word("kpi", "by_category"), busiest(categories, 20)],
        [word("kpi", "followups"), say("holding_of", {holding: k.followups.agreements_holding,
                                                      incidents: k.followups.incidents})],
        [word("kpi", "by_hour"), busiest(k.by_hour.map((n, h) => [say("hour", {hour: h}), n]))],
        [word("kpi", "by_zone"), busiest(Object.entries(k.by_zone).map(([z, n]) => [zoneName(z), n]))]]) {
      const li = document.createElement("li"); li.textContent = label + (lang === "zh" ? "：" : ": ") + v;
      kl.appendChild(li); }
    // the same period a year earlier, when asked: beside the refresh (readYoy)
    const yoyWanted = $("kyoy").checked ? d + " " + (day || "") : null;
    if (yoyWanted && (yoyWanted !== yoyFor || (!yoyReading && Date.now() >= yoyDue))) {
      readYoy(d, day, yoyWanted); }
    // one type's weeks, when asked: beside the refresh too (readTrend)
    const trendType = $("trendcat").value, trendWanted = trendType ? d + " " + trendType : null;
    if (trendWanted && (trendWanted !== trendFor || (!trendReading && Date.now() >= trendDue))) {
      readTrend(d, trendType, trendWanted); }
    // Four weeks' heat map: once a minute, beside the refresh (readSpots); what it failed on
    // is said until a read is answered, also by a refresh that did not ask for it
    if (!spotsReading && Date.now() >= spotsDue) readSpots(d);
    show("err", spotsLine);
    if (selected) await detail(run);
  } catch (e) { if (e !== STALE && e !== REFUSED) show("err", told(e)); }
  finally { refreshing -= 1; }
}
// The header's line while a refresh has nothing else to say: the hot spots not read, if so.
const spotsLine = () => (spotsMissed ? say("spots_not_read",
  {why: told(spotsMissed)(), after: SPOTS_RETRY_MS / 1000}) : "");
// The hot spots of district `d`, and its zones (station territories), read without holding
// back the refresh that started it: counted as read once answered, then read again after
// the minute; one that failed is asked again after SPOTS_RETRY_MS, its failure said in the
// header (not over a refresh's own error, which says more). A read for a district left
// meanwhile, or for a token refused, is dropped. The list is painted here; the map and the
// KPIs' zone names take them up at the next refresh (at most 3 s on, now that none waits for
// this read), which reads the board and teams the map is drawn with.
async function readSpots(d) {
  const read = {}; spotsReading = read;
  const current = () => spotsReading === read && watched === d && !stopped;
  try {
    const q = new URLSearchParams({limit: "5", district: d});
    if ($("spotchoice").value) q.set("hours", $("spotchoice").value);
    const h = await api("/v1/heatmap?" + q);
    if (!current()) return;
    let inZones = [];
    try { inZones = (await api("/v1/zones?district=" + encodeURIComponent(d))).zones; }
    catch (e) {  // volunteers away: the map goes on without them; a refused token is no
      // such case (api() has said it; nothing is painted after it)
      if (e === REFUSED) return; }
    if (!current()) return;
    hotspots = h.hottest; zones = inZones; spotsDue = Date.now() + 60000; spotsMissed = null;
    // the hours the list is of, as dispatch answered them, on the district's clock (named
    // where this browser's is another)
    const here = typeof Intl !== "undefined" ? Intl.DateTimeFormat().resolvedOptions().timeZone : "";
    const zone = (h.hours || []).length && h.timezone && here && h.timezone !== here
      ? h.timezone : null;
    show("spotshours", () => say("spots_hours", {hours: hoursText(h.hours),
      zone: zone ? say("hours_in", {zone}) : ""}));
    const sl = $("spots"); sl.replaceChildren();
    for (const c of h.hottest) { const li = document.createElement("li");
      li.textContent = say("spot", {lat: c.lat.toFixed(4), lon: c.lon.toFixed(4), count: c.count,
        hour: c.peak_hour, categories: busiest(Object.entries(c.by_category)
          .map(([cat, n]) => [word("category", cat), n]))});
      sl.appendChild(li); }
  } catch (e) {
    if (e === REFUSED || !current()) return;
    spotsMissed = e; spotsDue = Date.now() + SPOTS_RETRY_MS;
  } finally {
    if (current() && lines.get("err") === spotsLine) show("err", spotsLine);
    if (spotsReading === read) spotsReading = null; }
}
async function readYoy(d, day, period) {
  const read = {}; yoyReading = read;
  if (yoyFor !== period) { yoyFor = period; yoyNow = null; yoyMissed = null; paintYoy(); }
  const current = () => yoyReading === read && yoyFor === period && watched === d && !stopped;
  try {
    const q = new URLSearchParams({district: d, compare: "previous_year"});
    if (day) q.set("date", day);
    const answer = await api("/v1/kpis?" + q);
    if (!current()) return;
    yoyNow = {answer, day}; yoyMissed = null; yoyDue = Date.now() + YOY_EVERY_MS;
  } catch (e) {
    if (e === REFUSED || !current()) return;  // api() has said a refusal
    yoyMissed = e; yoyDue = Date.now() + SPOTS_RETRY_MS;
  } finally {
    if (current()) paintYoy();
    if (yoyReading === read) yoyReading = null; }
}
// Nothing compared any more (unticked, another district, a token refused): a read on its way
// is dropped, the lines go.
function forgetYoy() { yoyFor = null; yoyReading = null; yoyNow = null; yoyMissed = null;
  yoyDue = 0; paintYoy(); }
// a YYYY-MM-DD a year earlier, as dispatch's review.a_year_earlier (29 February: the 28th)
const yearEarlier = v => String(Number(v.slice(0, 4)) - 1).padStart(4, "0")
  + (v.slice(4) === "-02-29" ? "-02-28" : v.slice(4));
// how a count moved from a year earlier: +50.0%, -73.7%; none then, "new"
const changeText = (n, m) => (!m ? (n ? say("yoy_new") : "-")
  : (n > m ? "+" : "") + ((n - m) / m * 100).toFixed(1) + "%");
// The incidents, then each type of either period, the most of the period shown first: both
// counts from the one answer, of the same period exactly (the last 24 h move on meanwhile).
function paintYoy() {
  const list = $("yoy"), head = $("yoyhead"); list.replaceChildren(); head.textContent = "";
  if (stopped || !$("kyoy").checked) return;
  if (yoyMissed) { head.textContent = say("yoy_not_read", {why: told(yoyMissed)(),
    after: SPOTS_RETRY_MS / 1000}); return; }
  if (!yoyNow) return;
  const k = yoyNow.answer, before = k.previous_year;
  if (!before) { head.textContent = say("yoy_not_given"); return; }  // an older dispatch
  head.textContent = say("yoy_head", {period: yoyNow.day ? dateText(yearEarlier(yoyNow.day))
    : say("yoy_24h")});
  const now = k.by_category || {}, then = before.by_category || {};
  const types = [...new Set([...Object.keys(now), ...Object.keys(then)])]
    .sort((a, b) => ((now[b] || 0) - (now[a] || 0)) || ((then[b] || 0) - (then[a] || 0)));
  for (const [name, n, m] of [[word("kpi", "incidents"), k.incidents || 0, before.incidents || 0],
      ...types.map(c => [word("category", c), now[c] || 0, then[c] || 0])]) {
    const li = document.createElement("li");
    li.textContent = say("yoy_line", {name, count: n, before: m, change: changeText(n, m)});
    list.appendChild(li); }
}
async function readTrend(d, category, asked) {
  const read = {}; trendReading = read;
  if (trendFor !== asked) { trendFor = asked; trendNow = null; trendMissed = null; paintTrend(); }
  const current = () => trendReading === read && trendFor === asked && watched === d && !stopped;
  try {
    const since = new Date(Date.now() - (TREND_WEEKS + 1) * WEEK_MS).toISOString();
    const answer = await api("/v1/kpis?" + new URLSearchParams({district: d, category, since}));
    if (!current()) return;
    trendNow = answer; trendMissed = null; trendDue = Date.now() + TREND_EVERY_MS;
  } catch (e) {
    if (e === REFUSED || !current()) return;  // api() has said a refusal
    trendMissed = e; trendDue = Date.now() + SPOTS_RETRY_MS;
  } finally {
    if (current()) paintTrend();
    if (trendReading === read) trendReading = null; }
}
function forgetTrend() { trendFor = null; trendReading = null; trendNow = null;
  trendMissed = null; trendDue = 0; paintTrend(); }
// the Monday of a YYYY-MM-DD's week, and a week said by its Monday (12/1)
function mondayOf(v) { const t = dateOf(v); t.setUTCDate(t.getUTCDate() - (t.getUTCDay() + 6) % 7);
  return t.toISOString().slice(0, 10); }
const weekDate = v => dateOf(v).toLocaleDateString(locale(), {timeZone: "UTC", month: "numeric",
                                                               day: "numeric"});
function paintTrend() {
  const box = $("trend"); box.textContent = "";
  if (stopped || !$("trendcat").value) return;
  if (trendMissed) { box.textContent = say("trend_not_read", {why: told(trendMissed)(),
    after: SPOTS_RETRY_MS / 1000}); return; }
  if (!trendNow) return;
  const weeks = (trendNow.by_week || []).slice(1);  // the first: only its part since `since`
  if (!weeks.length) { box.textContent = say("trend_not_given"); return; }  // an older dispatch
  const thisWeek = trendNow.today ? mondayOf(trendNow.today) : null;  // the district's
  box.textContent = say("trend_line", {weeks: weeks.map(w => (w.week === thisWeek
    ? say("trend_this_week", {count: w.count})
    : say("trend_week", {week: weekDate(w.week), count: w.count}))).join(" → ")});
}
// Hours of the day (a heat map's `hours`) as the spans of the clock they make: [0, 1, 19,
// ..., 23] is 19:00 to 02:00, across midnight; none or all 24, the whole day.
function hoursText(hours) {
  const kept = new Set(hours || []);
  if (!kept.size || kept.size >= 24) return say("all_day");
  const hh = h => String(h).padStart(2, "0") + ":00";
  const spans = [];
  for (let h = 0; h < 24; h++) {
    if (!kept.has(h) || kept.has((h + 23) % 24)) continue;  // not the first of a span
    let end = h; while (kept.has((end + 1) % 24)) end = (end + 1) % 24;
    spans.push(say("hour_span", {start: hh(h), end: hh(end + 1)}));  // to 24:00 at most
  }
  return spans.join(lang === "zh" ? "、" : ", ");
}
// Whether the system itself moves (GET /v1/pipeline): orders reaching the phones, new
// reports and the teams' answers, statuses and positions reaching dispatch. A dispatcher
// who knows it is stuck falls back to the radio and the phone; one who does not, waits
// for deadlines to pass. Read every PIPELINE_EVERY_MS, or as often as the shortest
// threshold of dispatch's last answer where that is shorter (reports, orders and answers: a
// third of the policy's P1 deadline, 4 s of a 12 s one; read every 10 s, an order stuck was
// said after its deadline), so a hop is said within about its threshold of going behind.
// From the 3 s tick, at the last tick before the read is due (at the first one after it,
// reads 10 s apart came 12 s apart), one read at a time, beside the refresh and never
// awaited by it (a dispatch under load, the refresh's reads slow, is when this must be
// said). A banner over the page says each hop behind and what to do, gone once all are
// ok; a read that failed is said ("cannot tell whether...") only after PIPELINE_MISSES in
// a row (one lost answer is no outage), until the next read is answered.
const PIPELINE_EVERY_MS = 10000, PIPELINE_MISSES = 2, TICK_MS = 3000;
let pipelineEvery = PIPELINE_EVERY_MS;  // as the last answer's thresholds want it
let pipelineDue = 0;  // when the next read is due: 0, at the next tick
let pipelineReading = null;  // the read on its way, if any
let pipelineNow = null;  // the last answer
let pipelineMissed = 0, pipelineWhy = null;  // reads failed in a row since, and the last why
// what each hop behind means to the dispatcher, and what to do (console_text.py)
const PIPELINE_SAID = {reports: "pipeline_reports", orders: "pipeline_orders",
  answers: "pipeline_answers", statuses: "pipeline_statuses", positions: "pipeline_positions"};
function checkPipeline() {
  const d = $("district").value.trim();
  if (stopped || !$("token").value || !d || pipelineReading) return;
  if (Date.now() + TICK_MS <= pipelineDue) return;  // the next tick is in time for it
  readPipeline(d);
}
async function readPipeline(d) {
  const read = {}, began = Date.now(); pipelineReading = read; pipelineDue = began + pipelineEvery;
  try {
    const answer = await api("/v1/pipeline?" + new URLSearchParams({district: d}));
    if (pipelineReading !== read) return;  // a token refused or changed meanwhile
    pipelineNow = answer; pipelineMissed = 0; pipelineWhy = null;
    const thresholds = (answer.hops || []).map(h => h.threshold_s * 1000).filter(ms => ms > 0);
    pipelineEvery = Math.min(PIPELINE_EVERY_MS, ...thresholds);
    pipelineDue = Math.min(pipelineDue, began + pipelineEvery);
  } catch (e) {
    if (e === REFUSED || pipelineReading !== read) return;  // api() has said a refusal
    // a district the roster does not hold (a 422 naming it): the refresh's line says so;
    // no sign of the system being stuck
    if (e.field === "district") { pipelineNow = null; pipelineMissed = 0; return; }
    pipelineMissed += 1; pipelineWhy = e;
  } finally {
    if (pipelineReading === read) { pipelineReading = null; paintPipeline(); }
  }
}
// an age in the dispatcher's words: seconds, minutes past two
const ageText = s => (s < 120 ? say("age_seconds", {n: Math.round(s)})
  : say("age_minutes", {n: Math.round(s / 60)}));
function pipelineLines() {
  if (stopped) return [];
  if (pipelineMissed >= PIPELINE_MISSES) {
    return [say("pipeline_unknown", {why: told(pipelineWhy)()})]; }
  if (!pipelineNow) return [];
  const out = [];
  for (const h of pipelineNow.hops || []) {
    if (h.verdict === "ok") continue;
    const why = h.verdict === "no_group" ? say("pipeline_not_started", {service: h.group})
      : say("pipeline_waiting", {age: ageText(h.oldest_age_s || 0)});
    // a hop a newer dispatch added: said by dispatch's own words for it
    out.push(own(PIPELINE_SAID, h.hop) ? say(PIPELINE_SAID[h.hop], {why})
      : say("pipeline_other", {what: h.what, why}));
  }
  const feed = pipelineNow.positions_feed;
  if (feed && feed.verdict !== "ok") {
    out.push(feed.newest_age_s == null ? say("pipeline_no_fixes")
      : say("pipeline_fixes_silent", {age: ageText(feed.newest_age_s)})); }
  return out;
}
function paintPipeline() {
  const said = pipelineLines(), box = $("pipeline");
  box.replaceChildren(...said.map(text => { const line = document.createElement("div");
    line.textContent = text; return line; }));
  box.hidden = !said.length;
}
// The teams planned for the shift being worked that have not checked in (GET
// /v1/shift-check-ins: volunteers' shift plans and check-ins, through dispatch), whom the duty
// dispatcher calls (DOMAIN.md: the main shift starts at 08:00; at 08:10 they are missed).
// Read every ROLL_EVERY_MS beside the refresh, one read at a time and never awaited by it
// (volunteers slow or away must not hold back the board); a read that failed is said in
// place of the list, which is not shown stale, until a read is answered; an answer for a
// district left, or for a token refused, is dropped.
const ROLL_EVERY_MS = 30000;
let rollDue = 0;  // when the next read is due: 0, at the next refresh
let rollReading = null;  // the read on its way, if any
let rollNow = null, rollMissed = null;  // the last answer; why the last read failed
async function readRollCall(d) {
  const read = {}; rollReading = read; rollDue = Date.now() + ROLL_EVERY_MS;
  const current = () => rollReading === read && watched === d && !stopped;
  try {
    const answer = await api("/v1/shift-check-ins?" + new URLSearchParams({district: d}));
    if (!current()) return;
    rollNow = answer; rollMissed = null;
  } catch (e) {
    if (e === REFUSED || !current()) return;  // api() has said a refusal
    rollNow = null; rollMissed = e;
  } finally {
    if (current()) paintRollCall();
    if (rollReading === read) rollReading = null; }
}
function paintRollCall() {
  const list = $("roll"), count = $("rollcount");
  list.replaceChildren(); count.textContent = "";
  if (stopped) return;
  if (rollMissed) { count.textContent = say("roll_not_read", {why: told(rollMissed)(),
    after: ROLL_EVERY_MS / 1000}); return; }
  if (!rollNow) return;
  count.textContent = !rollNow.planned ? say("roll_none_planned")
    : rollNow.not_checked_in ? say("roll_count", {missing: rollNow.not_checked_in,
      planned: rollNow.planned}) : say("roll_all_in", {planned: rollNow.planned});
  for (const t of (rollNow.teams || []).filter(t => !t.checked_in)) {
    const li = document.createElement("li");
    li.textContent = say("roll_team", {team: t.team_name || t.team_id,
      kind: word("agency_kind", t.agency_kind || ""), agency: t.agency_name || t.agency_id});
    list.appendChild(li); }
}
// The district on one screen: no map tiles (the station server may have no Internet), the
// points placed by their coordinates, north up, the same scale both ways.
const SVG = "http://www.w3.org/2000/svg";
const unitFill = s => s === "available" ? "#2a9d8f" : s === "off_duty" ? "#555" : "#f48c06";
const KIND_RING = {police: "#4ea8de", security: "#e9c46a", volunteer: "#e76f51"};
const PRIO_FILL = {P1: "#ff6b6b", P2: "#f48c06", P3: "#4ea8de", P4: "#8d99ae"};
function shape(tag, attrs, title) { const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; e.appendChild(t); }
  return e; }
function drawMap(incidents, units) {
  const svg = $("map"), w = svg.clientWidth || 600, h = svg.clientHeight || 340, pad = 18;
  svg.setAttribute("viewBox", "0 0 " + w + " " + h); svg.replaceChildren();
  const placed = units.filter(u => u.position);
  const corners = zones.flatMap(z => z.polygon.map(([lon, lat]) => ({lat, lon})));
  const pts = [...incidents.map(i => i.location), ...placed.map(u => u.position), ...hotspots,
               ...corners];
  if (!pts.length) { $("maplegend").textContent = say("nothing_to_place"); return; }
  const lats = pts.map(p => p.lat), lons = pts.map(p => p.lon);
  const lat0 = Math.min(...lats), lat1 = Math.max(...lats);
  const lon0 = Math.min(...lons), lon1 = Math.max(...lons);
  const k = Math.cos((lat0 + lat1) / 2 * Math.PI / 180);  // a degree of longitude is shorter
  const spanX = Math.max((lon1 - lon0) * k, 0.002), spanY = Math.max(lat1 - lat0, 0.002);
  const scale = Math.min((w - 2 * pad) / spanX, (h - 2 * pad) / spanY);  // px per degree of latitude
  const cx = (lon0 + lon1) / 2, cy = (lat0 + lat1) / 2;
  const x = lon => w / 2 + (lon - cx) * k * scale, y = lat => h / 2 - (lat - cy) * scale;
  for (const z of zones) {  // the station territories, outlined, named at their middle
    svg.appendChild(shape("polygon", {points: z.polygon.map(([lon, lat]) => [x(lon), y(lat)]).join(" "),
      fill: "#4ea8de", "fill-opacity": 0.04, stroke: "#35506d", "stroke-width": 1},
      say("zone_title", {zone: z.name, station: z.station_agency_id})));
    const mx = z.polygon.reduce((a, [lon]) => a + x(lon), 0) / z.polygon.length;
    const my = z.polygon.reduce((a, [, lat]) => a + y(lat), 0) / z.polygon.length;
    const t = shape("text", {x: mx, y: my, "text-anchor": "middle", "fill-opacity": 0.6});
    t.textContent = z.name; svg.appendChild(t);
  }
  const most = Math.max(1, ...hotspots.map(c => c.count));
  for (const c of hotspots) svg.appendChild(shape("circle", {cx: x(c.lon), cy: y(c.lat),
    r: 8 + 22 * c.count / most, fill: "#f48c06", "fill-opacity": 0.15},
    say("spot_title", {count: c.count, hour: c.peak_hour})));
  const stale = Date.now() - 600000;
  for (const u of placed) {
    const fresh = u.position.at && Date.parse(u.position.at) > stale;
    svg.appendChild(shape("circle", {cx: x(u.position.lon), cy: y(u.position.lat), r: 5,
      fill: fresh ? unitFill(u.status) : "none", stroke: KIND_RING[u.agency_kind] || "#ccc",
      "stroke-width": 2}, (u.name || u.team_id) + " · " + word("agency_kind", u.agency_kind) + " · "
      + word("team_status", u.status) + (u.open_order_id ? say("unit_on_order") : "")
      + (fresh ? "" : say("no_fix"))));
  }
  const done = i => ended(i.status) && !i.flagged;  // a flagged hand-over still needs someone
  for (const i of [...incidents].reverse()) {  // the board's first (most urgent) drawn last, on top
    const px = x(i.location.lon), py = y(i.location.lat), r = done(i) ? 4 : 7;
    const corners = [[px, py - r], [px + r, py], [px, py + r], [px - r, py]];
    const d = shape("polygon", {class: "inc", points: corners.join(" "),
      fill: PRIO_FILL[i.priority] || "#ccc", "fill-opacity": done(i) ? 0.35 : 1,
      stroke: i.flagged ? "#ff1f1f" : (i.incident_id === selected ? "#fff" : "none"),
      "stroke-width": 2},
      prio(i.priority) + " " + word("category", i.category) + " · "
      + word("incident_status", i.status) + " · " + time(i.reported_at));
    d.onclick = () => openIncident(i.incident_id); svg.appendChild(d);
  }
  const km = spanX * 111.32, bar = Math.pow(10, Math.floor(Math.log10(km / 3)));  // a round length
  const barPx = bar / 111.32 * scale;
  svg.appendChild(shape("line", {x1: pad, y1: h - 8, x2: pad + barPx, y2: h - 8, stroke: "#9fb2c6",
    "stroke-width": 2}));
  const label = shape("text", {x: pad + barPx + 6, y: h - 4});
  label.textContent = bar >= 1 ? bar + " km" : Math.round(bar * 1000) + " m"; svg.appendChild(label);
  // of the open, those with no team on them (nobodyOn), of what the board shows as `open`
  // is (the unfiltered board holds every flagged incident, so every unassigned one)
  $("maplegend").textContent = say("map_counts", {open: incidents.filter(i => !done(i)).length,
    waiting: incidents.filter(i => nobodyOn(i.status)).length,
    free: placed.filter(u => u.status === "available").length, teams: units.length});
}
function busiest(pairs, n = 3) {
  const t = pairs.filter(p => p[1] > 0).sort((a, b) => b[1] - a[1]).slice(0, n);
  return t.length ? t.map(p => p[0] + " (" + p[1] + ")").join(", ") : "-"; }
// A zone as the dispatcher knows it: its name (the map's zones), review's NO_ZONE (outside
// every zone) and UNKNOWN_ZONE (reported while the zones could not be read) in words.
const zoneName = z => (z === "(none)" ? say("no_zone") : z === "(unknown)" ? say("zone_unknown")
  : ((zones.find(x => x.zone_id === z) || {}).name || z));
// a share (dispatch's 0.861) as the reports quote it, 86.1%; none yet (null), "-"
const percent = v => (v == null ? "-" : (v * 100).toFixed(1) + "%");
function fmt(p) { return p.p50 == null ? "-" : p.p50.toFixed(1) + " / " + p.p90.toFixed(1); }
// Opening another incident empties the panel until its answer comes: an Assign pressed
// meanwhile acts on nothing, never on an incident the panel does not show.
function openIncident(id) {
  if (id !== shown) { shown = null; show("aerr", ""); $("detail").hidden = false;
    $("dtitle").textContent = say("opening", {id}); $("dmeta").textContent = "";
    $("dfigures").replaceChildren();
    $("orders").replaceChildren(); $("timeline").replaceChildren(); $("team").replaceChildren();
    $("linkedreports").replaceChildren(); teamsListed = null; }
  selected = id; detail().catch(e => tell(e));
}
let asked = 0;  // the panel's latest request: an earlier answer that comes later is dropped
const LIVE = ["offered", "acknowledged", "en_route", "on_scene"];
// the timeline's kinds in a dispatcher's words (the glossary's: offer, receipt, response,
// timeout, hand-over, linked, revised, note, ...); a kind added later reads as its name
const kind = k => { const said = word("timeline_kind", k);
  return said === k ? String(k ?? "").replace(/_/g, " ") : said; };
// What dispatch's entry says, in the dispatcher's language: its code's template filled with
// its arguments (timeline_text.py: a glossary's word for a code, an instant as the console
// shows times); an entry without a code (written before codes came), or one this page does
// not know, as dispatch wrote it.
const own = (table, key) => Object.prototype.hasOwnProperty.call(table, key);
// A dispatcher an argument names ("dispatcher:dsp_5fac…") is said by the name dispatch gave
// beside it (`detail_names`: who they are now; a revoked one's id stays).
function saidOf(e) {
  const template = e.detail_code && own(STRINGS[lang].timeline, e.detail_code)
    ? STRINGS[lang].timeline[e.detail_code] : null;
  const args = e.detail_args || {}, names = e.detail_names || {};
  const blanks = /[{]([a-z_]+)(?::([a-z_]+))?[}]/g;
  if (!template || [...template.matchAll(blanks)].some(b => !own(args, b[1]))) {
    let said = e.detail;
    for (const name of Object.keys(names))
      if (own(args, name) && said) said = said.split(String(args[name])).join(String(names[name]));
    return said;
  }
  return template.replace(blanks, (all, name, group) => {
    const value = String(own(names, name) ? names[name] : args[name]);
    if (!group) return value;
    if (group === "time") return time(value);
    return value.split(", ").map(code => word(group, code)).join(lang === "zh" ? "、" : ", ");
  });
}
// A team on its way to the scene (DOMAIN.md: neighbours reinforce within 3-5 minutes):
// when it should be there, "arriving in about 4 min", or by how much it is late, counted
// to dispatch's `expected_at` for the order on dispatch's clock (`now` of its answer, read
// at every refresh): a desk PC's clock minutes off would count a team early as late. One
// dispatch has no travel time for (no position that counted when it was offered): said
// to be unknown. Nothing more for a team there, nor for a hand-over or a follow-up visit
// (no trip to the scene).
const TO_SCENE = ["dispatch", "reinforcement", "manual"];
const ON_THE_WAY = ["offered", "acknowledged", "en_route"];
function orderSaid(o, now) {
  const state = word("order_state", o.state);
  if (!ON_THE_WAY.includes(o.state) || !TO_SCENE.includes(o.kind)) return state;
  const due = Date.parse(o.expected_at || ""), left = (due - now) / 60000;
  const arrival = isNaN(left) ? say("arrival_unknown")
    : left > 0 ? say("arriving", {minutes: Math.max(1, Math.round(left))})
    : say("overdue", {minutes: Math.max(1, Math.round(-left))});
  return say("order_arrival", {state, arrival});
}
// Why the incident is flagged (dispatch's `flagged_for`: codes), in the dispatcher's words (a
// code this page does not know: as is); none given, "flagged"
function flaggedSaid(codes) {
  const why = (codes || []).map(c => { const key = "flag_why_" + c;
    return own(STRINGS[lang].text, key) ? say(key) : c; });
  return why.length ? say("flagged_for", {why: why.join(lang === "zh" ? "；" : "; ")})
    : say("flagged_mark");
}
// How the KPIs count the incident (dispatch's `figures`, the same before and after it is
// archived, when its timeline and orders are gone): an inspector traces a figure of the
// morning review to its cases. One line of what it counts as (a duplicate report not at
// all; resolved on site or handed over, by which force and when; its hand-over's filing),
// one of its times to act from the report, as the KPIs' p50 / p90 count them. An older
// dispatch gives none: nothing is said.
const forceText = f => { if (!f || f === "unknown") return say("force_unknown");
  const [agency, role] = String(f).split(":");
  return role ? say("unit_kind", {kind: word("agency_kind", agency), role: word("agency_role", role)})
    : word("agency_kind", agency); };
const took = s => (s == null ? "-" : s < 120 ? say("age_seconds", {n: Math.round(s)})
  : s < 7200 ? say("age_minutes", {n: (s / 60).toFixed(1)})
    : say("age_hours", {n: (s / 3600).toFixed(1)}));
// records.filing_outcome: neither in time nor overdue is still owed before its due, or closed
// by the command room before it
function filingText(filing, closedAt) {
  if (!filing) return "";
  if (filing.overdue) return say(filing.unfiled ? "filing_overdue_unfiled" : "filing_overdue");
  if (filing.filed_in_time) return say("filing_in_time");
  return say(closedAt ? "filing_closed_before_due" : "filing_not_due");
}
function figuresLines(i) {
  const f = i.figures; if (!f) return [];
  const sep = lang === "zh" ? "；" : "; ";
  const archived = i.archived_at ? say("figures_archived", {time: time(i.archived_at)}) : "";
  if (!f.counted) return [[archived, say("figures_not_counted")].filter(Boolean).join(sep)];
  const force = forceText(f.handled_by_force);
  const outcome = f.resolved_on_site ? say("figures_resolved", {force, time: time(f.resolved_at)})
    : f.handed_over ? say("figures_handed_over", {force, time: time(f.handed_over_at)})
      + (f.resolved_at ? say("figures_station_resolved", {time: time(f.resolved_at)}) : "")
      : say("figures_neither");
  const closed = f.closed_at ? say("figures_closed", {time: time(f.closed_at)}) : "";
  return [[archived, outcome + closed, filingText(f.filing, f.closed_at)].filter(Boolean).join(sep),
    say("figures_times", {assign: took(f.time_to_assign_s), ack: took(f.time_to_acknowledge_s),
                          scene: took(f.time_to_scene_s)})];
}
async function detail(run) {
  const id = selected, ask = ++asked;
  // a camera's repeats folded into one line of the timeline (dispatch's `repeats`)
  const i = await api("/v1/incidents/" + encodeURIComponent(id) + "?repeats=collapsed");
  // the teams that may be sent, as dispatch ranks them for this incident; one not read is
  // said in the list, the panel shown all the same
  let offer = null;
  if (assignable(i)) {
    try { offer = await api("/v1/incidents/" + encodeURIComponent(id) + "/teams?limit=200"); }
    catch (e) { if (e === REFUSED) throw e; offer = {failed: e}; } }
  if (id !== selected || ask !== asked) return;  // another incident opened, or asked again since
  if (run !== undefined && run !== generation) return;  // a newer refresh paints it
  shown = id; shownLinkedTo = i.status === "linked" ? i.linked_to : null;
  $("detail").hidden = false;
  const status = word("incident_status", i.status);
  $("dtitle").textContent = prio(i.priority) + " " + word("category", i.category) + " · "
    + (shownLinkedTo ? say("status_linked", {status, id: shownLinkedTo}) : status)
    + (i.flagged ? flaggedSaid(i.flagged_for) : "")
    // what the reporting system flagged: weapon, injury, ... (its own flags as it wrote them)
    + ((i.flags || []).length ? say("reported_flags",
      {flags: i.flags.map(f => word("flag", f)).join(lang === "zh" ? "、" : ", ")}) : "");
  const place = i.location.address || (i.location.lat + ", " + i.location.lon);
  $("dmeta").textContent = say("meta", {id: i.incident_id, system: reporter(i),
    ref: i.external_ref || "", place, time: reportedText(i),
    supervisor: i.supervisor ? i.supervisor.name || i.supervisor.dispatcher_id : say("nobody"),
    trace: i.trace_id || "-"});
  $("dfigures").replaceChildren(...figuresLines(i).map(text => {
    const line = document.createElement("div"); line.textContent = text; return line; }));
  const caller = i.caller ? [i.caller.name, i.caller.phone].filter(Boolean).join(" · ") : "";
  $("dreport").textContent = [i.description ? say("description", {text: i.description}) : "",
    caller ? say("caller", {caller}) : ""].filter(Boolean).join(" · ");
  othersSeen.set(i.incident_id, i.reports_linked ? i.reports_linked.other_sources : 0);
  paintLinked(i);
  const live = i.orders.filter(o => LIVE.includes(o.state));
  const ol = $("orders"); ol.replaceChildren();
  ol.append(live.length ? say("teams_on_it") : say("no_team_on_it"));
  const now = Date.parse(i.now);  // dispatch's clock as it answered
  for (const o of live) {
    const b = document.createElement("button"); b.textContent = say("take_back");
    b.title = say("take_back_hint");
    b.hidden = !!me && me.kind === "inspector";
    b.onclick = () => takeBack(o, b);
    ol.append(" " + (o.team_name || o.team_id) + " (" + orderSaid(o, now) + ") ", b);
  }
  fillTeams(i, offer);
  const names = {};  // a team's name, as its orders and the unit list give it
  for (const u of unitsNow) if (u.name) names[u.team_id] = u.name;
  for (const o of i.orders) if (o.team_name) names[o.team_id] = o.team_name;
  const tb = $("timeline"); tb.replaceChildren();
  for (const e of i.timeline) { const tr = document.createElement("tr"); cell(tr, time(e.at));
    cell(tr, kind(e.kind) + (e.status ? " → " + word("incident_status", e.status) : ""));
    cell(tr, e.team_id ? names[e.team_id] || e.team_id : "");
    // a team's answer is its code ("en_route": 出发); any other detail is said by its code
    const what = ((e.kind === "response" ? word("response", e.detail) : saidOf(e)) ?? "")
      // who reported the report it names, and the repeats of that source folded into it
      + (e.report_source ? say("linked_from", {who: sourceName(e.report_source)}) : "")
      + (e.repeats ? say("timeline_repeats", {count: e.repeats.count,
        time: time(e.repeats.last_at), last: e.repeats.last_report}) : "");
    // their own words; a decline without them is said to be so (the device API asks none)
    const said = e.note ? (what ? what + ": " : "") + "“" + e.note + "”"
      : e.kind === "response" && e.detail === "declined" ? what + say("no_reason") : what;
    const records = (e.evidence || []).map(r => word("evidence_kind", r.kind) + " " + r.ref
      + (r.taken_at ? say("taken_at", {time: time(r.taken_at)}) : "")).join("; ");
    cell(tr, records ? (said ? said + " · " : "") + say("evidence", {records}) : said);
    tb.appendChild(tr); }
}
// The reports linked to the incident shown, by who reported them (dispatch's
// `linked_reports`): the board leaves each out, so what one says is read here or nowhere:
// a caller to ring back, another account ("now he has a knife"), or another event nearby
// linked by mistake, which "Not a duplicate" makes an incident of its own. One source's
// reports that say the same are one line ("and 3,599 more alike until 03:10").
function paintLinked(i) {
  const box = $("linkedreports"); box.replaceChildren();
  const groups = i.linked_reports || [];
  if (!groups.length) return;
  box.append(say("linked_head", {count: groups.reduce((n, g) => n + g.count, 0)}));
  const reader = !!me && me.kind === "inspector";
  const list = document.createElement("ul"); box.appendChild(list);
  for (const g of groups) {
    const li = document.createElement("li"); list.appendChild(li);
    const caller = g.caller ? [g.caller.name, g.caller.phone].filter(Boolean).join(" · ") : "";
    li.append(say("linked_source", {who: sourceName(g) + (g.own_source ? say("linked_own") : ""),
      caller: caller ? say("linked_caller", {caller}) : "", count: g.count,
      first: time(g.first_reported_at), last: time(g.last_reported_at)}));
    const accounts = document.createElement("ul"); li.appendChild(accounts);
    for (const a of g.accounts) {
      const line = document.createElement("li"); accounts.appendChild(line);
      const flags = (a.flags || []).map(f => word("flag", f)).join(lang === "zh" ? "、" : ", ");
      line.append([time(a.reported_at), prio(a.priority) + " " + word("category", a.category),
        flags, a.description ? "“" + a.description + "”" : "",
        a.follow_up ? say("linked_follow_up") : "",
        a.repeats ? say("linked_repeats", {count: a.repeats, time: time(a.last_reported_at)}) : "",
        a.archived ? say("linked_archived") : ""].filter(Boolean).join(" · ") + " ");
      const open = document.createElement("button"); open.textContent = say("open_report");
      open.onclick = () => openIncident(a.incident_id);
      const unlink = document.createElement("button"); unlink.textContent = say("unlink");
      unlink.title = say("unlink_hint"); unlink.hidden = reader || a.archived;
      unlink.onclick = () => unlinkReport(i.incident_id, a.incident_id, unlink);
      line.append(open, " ", unlink);
    }
    if (g.accounts_left_out) {
      const more = document.createElement("li"); accounts.appendChild(more);
      more.textContent = say("linked_left_out", {count: g.accounts_left_out}); }
  }
}
// "Not a duplicate" of a report the incident lists: unlinked with the dispatcher's reason,
// it becomes an incident of its own and is dispatched (as from the report's own panel)
async function unlinkReport(parent, report, button) {
  const note = prompt(say("prompt_unlink", {id: parent}));
  if (note === null) return;
  button.disabled = true; show("aerr", "");
  try { await api("/v1/incidents/" + encodeURIComponent(report) + "/unlink",
    {method: "POST", body: JSON.stringify({note: note.trim() || null})}); refresh(); }
  catch (e) { tell(e); }
  finally { button.disabled = false; } }
// The teams that may be sent to the incident shown, in dispatch's order for it (GET
// /v1/incidents/{id}/teams: the nearest suitable first; those on another incident's order
// after the free ones, moved after a confirm; last, those its rules would not send, each
// saying why), with how far each is and how long it takes. The list was the district's
// teams by id: the nearest found by reading the map, a volunteer patrol next door to a
// fight one slip of the hand away. None for an ended incident.
const assignable = i => !ended(i.status) || ["handed_over", "linked"].includes(i.status);
let teamsListed = null;  // the team list's teams, in order, as last built
const teamsOffered = new Map();  // team id -> its name and what the rules say against it
const WARNED = {kind_not_listed: "warn_kind_not_listed", lacks_skills: "warn_lacks_skills",
  other_station: "warn_other_station", volunteers_alone_on_p1: "warn_volunteers_alone_on_p1"};
const distanceText = m => (m < 1000 ? say("metres", {n: Math.round(m / 10) * 10})
  : say("km", {n: (m / 1000).toFixed(1)}));
function whereText(t) {
  if (t.distance_m == null) return say("team_no_position");
  const distance = distanceText(t.distance_m);
  return t.position_counts ? say("team_where", {distance,
    minutes: Math.max(1, Math.round(t.eta_s / 60))})
    : say("team_where_old", {distance, minutes: Math.round((t.fix_age_s || 0) / 60)});
}
// what dispatch's rules say against sending the team (a code this page does not know: as is)
const warningsText = (t, i) => (t.warnings || []).map(w => (own(WARNED, w) ? say(WARNED[w], {
  category: word("category", i.category), kind: word("agency_kind", t.agency_kind || ""),
  skills: (t.missing_skills || []).join(", ")}) : w)).join(lang === "zh" ? "；" : "; ");
// A team that declined the incident or let its deadline pass (`turned_down`): dispatch never
// offers it to that team again, so once all have, the command room alone sends one, knowingly.
// A team that took it by its deadline, read after dispatch had timed the order out
// (`answered_in_time`), did not let it time out: it is said so.
const turnedDownText = t => (t.turned_down ? say(t.turned_down.answer === "declined"
  ? "team_declined" : t.turned_down.answered_in_time ? "team_answered_in_time"
    : "team_timed_out", {time: time(t.turned_down.at)}) : "");
function fillTeams(i, offer) {
  const may = offer && offer.teams ? offer.teams : [];
  const label = t => { const why = warningsText(t, i);
    return say("team_option", {name: t.name || t.team_id,
      kind: word("agency_kind", t.agency_kind || ""),
      state: t.open_order_id ? say("on_other_order") : word("team_status", t.status)})
      + whereText(t) + (why ? say("team_warned", {why}) : "") + turnedDownText(t); };
  teamsOffered.clear();
  for (const t of may) teamsOffered.set(t.team_id, {name: t.name || t.team_id,
                                                     why: warningsText(t, i)});
  const team = $("team"), keep = team.value;
  const want = JSON.stringify(may.map(t => t.team_id));
  if (teamsListed === want && may.length) {
    // the same teams in the same order: their words (distances, states) said again in
    // place, the list (maybe open) and the choice left alone
    may.forEach((t, n) => { team.children[n].textContent = label(t); });
  } else {
    team.replaceChildren(); teamsListed = want;
    for (const t of may) { const o = document.createElement("option"); o.value = t.team_id;
      o.textContent = label(t); team.appendChild(o); }
    if (!may.length) { const o = document.createElement("option"); o.value = "";
      o.textContent = offer && offer.failed ? say("teams_not_read", {why: told(offer.failed)()})
        : say(assignable(i) ? "no_team" : "ended_nothing");
      team.appendChild(o); }
    team.value = may.some(t => t.team_id === keep) ? keep : may.length ? may[0].team_id : "";
  }
  const reader = !!me && me.kind === "inspector";
  $("assign").hidden = reader || !assignable(i);
  $("unlink").hidden = reader || i.status !== "linked";
}
async function assign(id, team, reassign) {
  return api("/v1/incidents/" + encodeURIComponent(id) + "/assign",
    {method: "POST", body: JSON.stringify({team_id: team, reassign})}); }
act("assign", async () => {
  const id = shown, team = $("team").value; if (!id || !team) return;
  if (shownLinkedTo && !confirm(say("confirm_linked", {id: shownLinkedTo}))) return;
  // a team dispatch's rules would not send (volunteers to a fight): sent knowingly only
  const offered = teamsOffered.get(team);
  if (offered && offered.why && !confirm(say("confirm_outside_rules", offered))) return;
  try { await assign(id, team, false); }
  catch (e) {
    // a team on another incident's order: the command room may take it off that one
    // (dispatch's message, as its API writes it), knowing which one it is: a P1 fight's
    // team taken for a noise complaint by one "OK" was one slip of the hand away
    if (e === REFUSED || !/holds open order/.test(e.message)
        || !confirm(say("confirm_reassign", {other: await holderOf(e.message)}))) {
      throw e; }
    await assign(id, team, true);
  }
  refresh(); });
// The incident a team's open order is for, as dispatch's 409 names it: its priority,
// category and status, else (not readable: another district's) its id
async function holderOf(message) {
  const m = /of incident ([^ ;]+);/.exec(message);
  if (!m) return say("other_incident_unknown");
  try { const o = await api("/v1/incidents/" + encodeURIComponent(m[1]));
    return prio(o.priority) + " " + word("category", o.category) + " · "
      + word("incident_status", o.status) + " (" + m[1] + ")"; }
  catch (e) { if (e === REFUSED) throw e; return m[1]; } }
act("unlink", async () => {
  const id = shown, parent = shownLinkedTo; if (!id || !parent) return;
  const note = prompt(say("prompt_unlink", {id: parent}));
  if (note === null) return;
  await api("/v1/incidents/" + encodeURIComponent(id) + "/unlink",
    {method: "POST", body: JSON.stringify({note: note.trim() || null})});
  refresh(); });
act("revise", async () => {
  const id = shown; if (!id) return;
  const flags = [["fweapon", "weapon"], ["finjury", "injury"], ["fprogress", "in_progress"]]
    .filter(([f]) => $(f).checked).map(([, f]) => f);
  const body = {add_flags: flags, note: $("revnote").value.trim() || null};
  if ($("newprio").value) body.priority = $("newprio").value;
  if (flags.includes("weapon") && !confirm(say("confirm_weapon"))) return;
  const r = await api("/v1/incidents/" + encodeURIComponent(id),
    {method: "PATCH", body: JSON.stringify(body)});
  for (const f of ["fweapon", "finjury", "fprogress"]) $(f).checked = false;
  $("newprio").value = ""; $("revnote").value = "";
  if (r.withdrawn.length) show("aerr", () => say("volunteers_withdrawn", {count: r.withdrawn.length}));
  refresh(); });
act("addremark", async () => { const id = shown, note = $("remark").value.trim(); if (!id || !note) return;
  await api("/v1/incidents/" + encodeURIComponent(id) + "/remarks",
    {method: "POST", body: JSON.stringify({note})});
  $("remark").value = ""; refresh(); });
// A team's call for backup (dispatch's `backup_call`: its latest): on its row, when and by
// which team, with the team sent or none yet (then dispatch flags the incident too); the
// row marked while the incident is not done with. A guard calling for help on a P4 is no
// P1 and, with a backup found, not flagged: the board showed nothing of it.
const calling = i => !!i.backup_call && !ended(i.status);
const callSaid = c => (c ? say("backup_call", {time: time(c.at), team: c.team_name || c.team_id,
  backup: c.backup ? say("backup_sent", {team: c.backup.team_name || c.backup.team_id})
    : say("backup_none_yet")}) : "");
// A new P1, an incident newly flagged (no team found, deadlines missed, a hand-over no
// station team takes: dispatch flags only what still needs someone) or a new call for
// backup sounds once and counts in the tab's title (the flagged: a call nobody could be
// sent for flags its incident until one is; one whose backup went needs nothing of the
// dispatcher), so a dispatcher looking elsewhere is called back to the board. What is
// there when the page opens is known already (`alerted` null): a reload sounds for
// nothing old.
let alerted = null, audio = null;
function alarm(incidents) {
  const unique = [...new Map(incidents.map(i => [i.incident_id, i])).values()];
  const now = unique.filter(i => i.flagged || (i.priority === "P1" && !ended(i.status)));
  // each call once: its incident and its time (a second call of the team sounds again)
  const keys = [...now.map(i => i.incident_id + i.flagged),
    ...unique.filter(calling).map(i => i.incident_id + " backup " + i.backup_call.at)];
  const fresh = alerted === null ? [] : keys.filter(k => !alerted.has(k));
  alerted = new Set(keys);
  const flagged = now.filter(i => i.flagged).length;
  setTitle(() => (flagged ? say("title_flagged", {count: flagged}) : say("title")));
  if (fresh.length && $("sound").checked) beep();
}
function beep() {
  try { audio = audio || new AudioContext(); const t = audio.currentTime;
    for (let n = 0; n < 2; n++) { const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880; g.gain.setValueAtTime(0.0001, t + n * 0.3);
      g.gain.exponentialRampToValueAtTime(0.3, t + n * 0.3 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + n * 0.3 + 0.25);
      o.connect(g).connect(audio.destination); o.start(t + n * 0.3); o.stop(t + n * 0.3 + 0.27); }
  } catch (e) { /* no audio here */ } }
const takingBack = new Set();  // orders being taken back: a double click withdraws once
async function takeBack(o, button) {
  if (takingBack.has(o.order_id)) return;
  const note = prompt(say("prompt_take_back", {team: o.team_name || o.team_id}));
  if (note === null) return;
  takingBack.add(o.order_id); if (button) button.disabled = true; show("aerr", "");
  try { await api("/v1/orders/" + encodeURIComponent(o.order_id) + "/withdraw",
    {method: "POST", body: JSON.stringify({note: note.trim() || null})}); refresh(); }
  catch (e) { tell(e); }
  finally { takingBack.delete(o.order_id); if (button) button.disabled = false; } }
act("attach", async () => { const id = shown, ref = $("evref").value.trim(); if (!id || !ref) return;
  await api("/v1/incidents/" + encodeURIComponent(id) + "/evidence", {method: "POST",
    body: JSON.stringify({evidence: [{kind: $("evkind").value, ref}]})});
  $("evref").value = ""; refresh(); });
act("close", async () => { const id = shown; if (!id || !confirm(say("confirm_close"))) return;
  await api("/v1/incidents/" + encodeURIComponent(id) + "/close", {method: "POST"}); refresh(); });
$("save").onclick = () => {
  try { audio = audio || new AudioContext(); audio.resume(); } catch (e) { /* none */ }  // a click unlocks it
  localStorage.setItem("lf-token", $("token").value);
  localStorage.setItem("lf-district", $("district").value); spotsDue = 0; rollDue = 0; me = null;
  pages = []; $("agencylink").hidden = true;
  if (stopped) { stopped = false; show("err", ""); }  // a new token: polling again
  pipelineDue = 0; checkPipeline(); refresh(); };
// A shared desk: the next shift's dispatcher must not act under this one's token.
$("signout").onclick = () => { localStorage.removeItem("lf-token");
  refused({error: {message: "signed out"}}); show("err", () => say("signed_out")); };
// Its refusal beside it, not in the refresh's line: a 503 (Redis refusing writes, reads
// still answered) wiped by the next refresh would leave the dispatcher believing new
// incidents are theirs.
act("takeduty", async () => { const d = $("district").value.trim(); if (!d) return;
  if (!confirm(say("confirm_duty", {district: d}))) return;
  await api("/v1/duty/" + encodeURIComponent(d), {method: "PUT", body: "{}"}); refresh(); },
  "dutyerr");
$("older").onclick = () => { if (olderAfter) { pages.push(olderAfter); refresh(); } };
const newest = () => { pages = []; refresh(); };  // also when a filter changes
$("newest").onclick = newest;
$("mine").onchange = newest;
$("ref").onchange = newest;
$("status").onchange = newest;
$("problem").onchange = newest;
// The KPIs' period: a calendar day on the district's clock (the morning review of
// yesterday), else the last 24 h. Dispatch places the date on its TIMEZONE: this browser's
// clock may be on another zone (a station PC set to UTC: its day begins at 08:00 in Nanning).
const ymd = t => [t.getFullYear(), t.getMonth() + 1, t.getDate()]
  .map(n => String(n).padStart(2, "0")).join("-");
function kpiDay() {
  const v = $("kday").value || ""; return /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(v) ? v : null; }
// a YYYY-MM-DD as a date of no zone: its midnight in UTC, read in UTC
const dateOf = v => new Date(Date.UTC(Number(v.slice(0, 4)), Number(v.slice(5, 7)) - 1,
                                      Number(v.slice(8, 10))));
const dateText = v => dateOf(v).toLocaleDateString(locale(), {timeZone: "UTC"});
$("kday").onchange = () => refresh();
// Another choice of hours: the heat map read for it at once; one on its way for the hours
// left is dropped (its answer is not listed under this choice).
$("spotchoice").onchange = () => {
  localStorage.setItem(SPOT_HOURS_KEY, $("spotchoice").value);
  spotsReading = null; spotsMissed = null; spotsDue = 0; if (!stopped) refresh(); };
$("kyesterday").onclick = () => {
  const t = dateOf(districtToday || ymd(new Date())); t.setUTCDate(t.getUTCDate() - 1);
  $("kday").value = t.toISOString().slice(0, 10); refresh(); };
$("klast").onclick = () => { $("kday").value = ""; refresh(); };
$("kyoy").onchange = () => { localStorage.setItem(YOY_KEY, $("kyoy").checked ? "1" : "");
  forgetYoy(); if (!stopped) refresh(); };
$("trendcat").onchange = () => { localStorage.setItem(TREND_KEY, $("trendcat").value);
  forgetTrend(); if (!stopped) refresh(); };
// The dispatcher's language, kept in this browser: what is shown is said again in it.
$("lang").onclick = () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lf-lang", lang);
  showLanguage(); spotsDue = 0; if (!stopped) refresh(); };
show("kperiod", () => say("period", {what: say("period_24h"), hours: ""}));
showLanguage();
$("spotchoice").value = spotHoursKept;
$("kyoy").checked = localStorage.getItem(YOY_KEY) === "1"; paintYoy();
$("trendcat").value = localStorage.getItem(TREND_KEY) || ""; paintTrend();
// the system's state first: its read is never held back by a refresh still on its way
setInterval(() => { checkPipeline(); if (!refreshing && !stopped) refresh(); }, TICK_MS);
checkPipeline(); refresh();
</script></body></html>
"""


CONSOLE_PAGE = page_in_words(_CONSOLE_PAGE, CONSOLE_TEXT, script_words())


def build_console_router() -> APIRouter:
    router = APIRouter(route_class=InputFirstRoute)

    @router.get("/console", include_in_schema=False, response_class=HTMLResponse)
    async def console() -> HTMLResponse:
        return HTMLResponse(CONSOLE_PAGE, headers=page_headers(
            f"default-src 'self'; script-src {page_scripts(CONSOLE_PAGE)}; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"))

    return router
