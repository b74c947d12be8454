"""An agency's own desk page (`GET /agency`): a security company's or police station's duty
manager reads its own teams, the orders they were given and their figures; self-contained,
no CDN, read only.

Its teams (GET /v1/units: status, on shift, the order each is on) and those planned now
and not checked in (GET /v1/shift-check-ins); its orders, newest incident first (GET
/v1/incidents: category, priority, place, each order's state and times), paged as the
console pages the board; its figures of today (on the district's clock), the last 24 hours
(a night shift's morning review) or the last 7 days (GET /v1/kpis). It calls only the agency
desk's own reads with its token, kept in this browser (apart from the console's: a shared
PC keeps both), and refreshes every REFRESH_MS. Everything shown is set with textContent,
never parsed as HTML; the policy runs its own script only. It speaks Chinese, or English as
the console does (the same choice, kept in this browser; agency_page_text.py, the glossary's
words for the codes).
"""

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from shared.http import InputFirstRoute, page_headers, page_scripts
from shared.labels import page_in_words

from .agency_page_text import AGENCY_TEXT

_AGENCY_PAGE = """<!doctype html>
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
 button{background:#2b4a6b;cursor:pointer;border:0}
 main{display:grid;grid-template-columns:1fr 1fr;gap:12px;padding:12px}
 section{background:#182c42;border-radius:8px;padding:10px;overflow:auto}
 #orderpart{grid-column:1/3}
 h2{font-size:15px;margin:0 0 8px} table{width:100%;border-collapse:collapse}
 td,th{padding:4px 6px;border-bottom:1px solid #24405e;text-align:left;white-space:nowrap}
 .P1{color:#ff6b6b;font-weight:700}.P2{color:#f48c06}.P3{color:#4ea8de}.P4{color:#8d99ae}
 .dim{color:#9fb2c6} #err,.missed{color:#ff8787}
 ul{margin:0;padding-left:18px}
 @media (max-width:800px){main{grid-template-columns:1fr} #orderpart{grid-column:auto}}
</style></head><body>
<header><h1 id="heading">{{heading}}</h1>
 <span class="dim" id="who"></span>
 <button id="lang" type="button" lang="en">{{switch}}</button>
 <input id="token" type="password" placeholder="{{token_hint}}" size="28">
 <input id="district" placeholder="{{district_hint}}" size="10">
 <button id="save">{{watch}}</button>
 <button id="signout" title="{{sign_out_hint}}">{{sign_out}}</button>
 <span id="err"></span></header>
<main>
 <section><h2><span id="teamshead">{{teams}}</span> <span class="dim" id="teamcount"></span></h2>
  <table><thead><tr id="teamcols"></tr></thead><tbody id="teams"></tbody></table>
  <h2 style="margin-top:12px"><span id="rollhead">{{roll_head}}</span>
   <span class="dim" id="rollcount"></span></h2><ul id="roll"></ul></section>
 <section><h2><span id="figureshead">{{figures}}</span> <span class="dim" id="fperiod"></span>
   <select id="period"></select></h2><ul id="figures"></ul></section>
 <section id="orderpart"><h2><span id="ordershead">{{orders}}</span>
   <span class="dim" id="ordercount"></span>
   <button id="older" hidden>{{older}}</button> <button id="newest" hidden>{{newest}}</button></h2>
  <table><thead><tr id="ordercols"></tr></thead><tbody id="orders"></tbody></table></section>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
const STRINGS = __STRINGS__;
// Chinese, unless chosen (kept in this browser, as the console keeps it) or the browser
// puts English first.
function chosenLanguage() {
  const kept = localStorage.getItem("lf-lang");
  if (kept === "zh" || kept === "en") return kept;
  const nav = typeof navigator === "undefined" ? {} : navigator;
  const first = (nav.languages && nav.languages[0]) || nav.language || "";
  return /^en(-|$)/i.test(String(first)) ? "en" : "zh";
}
let lang = chosenLanguage();
function say(key, vars) {
  return STRINGS[lang].text[key].replace(/[{]([a-z_0-9]+)[}]/g,
    (all, name) => (vars && name in vars ? String(vars[name]) : all));
}
function word(group, code) {
  const words = STRINGS[lang][group];
  return Object.prototype.hasOwnProperty.call(words, code) ? words[code] : code;
}
const prio = p => p + (lang === "zh" ? "" : " ") + word("priority", p);
const locale = () => (lang === "zh" ? "zh-CN" : undefined);
const listed = items => items.join(lang === "zh" ? "、" : ", ");
class Said extends Error { constructor(key, vars) { super(say(key, vars)); this.key = key;
  this.vars = vars; } }
const told = e => (e instanceof Said ? () => say(e.key, e.vars) : () => e.message);
// A line the page keeps saying: said again on a switch of language.
const lines = new Map();
function show(id, text) { const f = typeof text === "function" ? text : () => text;
  lines.set(id, f); $(id).textContent = f(); }
let titled = () => say("title");
function setTitle(f) { titled = f; document.title = f(); }
// This desk's token and district, apart from the console's (a shared PC keeps both)
const TOKEN_KEY = "lf-agency-token", DISTRICT_KEY = "lf-agency-district";
const REFRESH_MS = 10000, PAGE_SIZE = 50, DAY_MS = 86400000, WEEK_MS = 7 * DAY_MS;
const FIXED = {heading: "heading", lang: "switch", save: "watch", signout: "sign_out",
  teamshead: "teams", rollhead: "roll_head", figureshead: "figures", ordershead: "orders",
  older: "older", newest: "newest"};
const HINTS = {token: "token_hint", district: "district_hint"};
const TITLES = {signout: "sign_out_hint"};
const COLUMNS = {teamcols: ["col_team", "col_status", "col_order"],
  ordercols: ["col_reported", "col_priority", "col_category", "col_place", "col_team",
              "col_state", "col_issued", "col_acknowledged", "col_on_scene", "col_ended"]};
const optionsOf = {};  // a list's option elements, made once: what is chosen stays chosen
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
  for (const [id, key] of Object.entries(FIXED)) $(id).textContent = say(key);
  for (const [id, key] of Object.entries(HINTS)) $(id).placeholder = say(key);
  for (const [id, key] of Object.entries(TITLES)) $(id).title = say(key);
  for (const [id, keys] of Object.entries(COLUMNS)) {
    $(id).replaceChildren(...keys.map(key => { const th = document.createElement("th");
      th.textContent = say(key); return th; })); }
  choices("period", [["today", say("today")], ["day", say("last_24_hours")],
    ["week", say("last_7_days")]]);
  for (const [id, text] of lines) $(id).textContent = text();
  document.title = titled();
  paint();
}
// What the last refresh read (null: not read), and why a read failed; painted from here,
// again in the other language on a switch.
let me = null, stopped = false;
const read = {board: null, teams: null, roll: null, figures: null};
const missed = {board: null, teams: null, roll: null, figures: null};
let districtToday = null;  // the district's date, as the last figures said it
let pages = [], watched = null;  // the older pages' cursors; the district shown
// #token=…&district=… (not sent to the server): a link's token replaces another kept here
// only once the desk says so; the token leaves the address first, whatever the answer.
const link = new URLSearchParams(location.hash.slice(1));
let linkTaken = true;
if (link.get("token")) {
  history.replaceState(null, "", "/agency");
  const kept = localStorage.getItem(TOKEN_KEY);
  linkTaken = !kept || kept === link.get("token") || confirm(say("confirm_link_token"));
  if (linkTaken) localStorage.setItem(TOKEN_KEY, link.get("token"));
}
if (linkTaken && link.get("district")) localStorage.setItem(DISTRICT_KEY, link.get("district"));
$("token").value = localStorage.getItem(TOKEN_KEY) || "";
$("district").value = localStorage.getItem(DISTRICT_KEY) || "";
function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text ?? "";
  if (cls) td.className = cls; tr.appendChild(td); return td; }
const REFUSED = new Error("the token was refused");
const STALE = new Error("a newer refresh was asked for");
async function api(path) {
  const token = $("token").value;
  const r = await fetch(path, {headers: {"Authorization": "Bearer " + token},
    signal: typeof AbortSignal !== "undefined" && AbortSignal.timeout
      ? AbortSignal.timeout(15000) : undefined});
  let body = {};
  try { body = await r.json(); }
  catch (e) { if (r.ok) throw new Said("unreadable"); body = {}; }
  if (r.status === 401) { if (token === $("token").value) refused(body); throw REFUSED; }
  if (!r.ok) throw body && body.error ? new Error(body.error.message)
    : new Said("answered", {status: r.status + (r.statusText ? " " + r.statusText : "")});
  return body;
}
// Whatever was shown goes: of another token, another district, or none.
function forget() {
  me = null; pages = []; districtToday = null;
  for (const part of Object.keys(read)) { read[part] = null; missed[part] = null; }
}
// A token revoked (401): polling stops, what was shown goes, the token is forgotten here.
function refused(body) {
  const why = body && body.error && body.error.message ? body.error.message : say("unknown_token");
  stopped = true; generation += 1; forget();
  localStorage.removeItem(TOKEN_KEY); $("token").value = "";
  setTitle(() => say("title_signed_out"));
  show("err", () => say("token_refused", {why})); paint();
}
// the day too unless today
function time(iso) { if (!iso) return ""; const t = new Date(iso);
  return t.toDateString() === new Date().toDateString() ? t.toLocaleTimeString(locale())
    : t.toLocaleString(locale()); }
const ymd = t => [t.getFullYear(), t.getMonth() + 1, t.getDate()]
  .map(n => String(n).padStart(2, "0")).join("-");
const dateText = v => new Date(Date.UTC(Number(v.slice(0, 4)), Number(v.slice(5, 7)) - 1,
  Number(v.slice(8, 10)))).toLocaleDateString(locale(), {timeZone: "UTC"});
// A refresh paints only while it is the latest: an answer for a district or token left
// meanwhile is dropped.
let generation = 0, refreshing = 0;
async function refresh() {
  if (stopped || !$("token").value) return;
  const run = ++generation; refreshing += 1;
  const get = async path => { const body = await api(path); if (run !== generation) throw STALE;
    return body; };
  const part = async (name, path) => {
    try { read[name] = await path(); missed[name] = null; }
    catch (e) { if (e === STALE || e === REFUSED) throw e; read[name] = null; missed[name] = e; }
    paint(); };
  try {
    if (!me) { const who = await get("/v1/me");
      if (who.kind !== "agency") { stopped = true; forget(); show("err", () => say("not_agency"));
        paint(); return; }
      me = who;
      if (!$("district").value.trim() && (me.districts || []).length === 1) {
        $("district").value = me.districts[0]; } }
    const d = $("district").value.trim();
    if (d !== watched) { const who = me; forget(); me = who; watched = d; }
    if (!d) { show("err", () => say("district_needed")); paint(); return; }
    show("err", "");
    const q = new URLSearchParams({district: d, limit: String(PAGE_SIZE)});
    if (pages.length) q.set("after", pages[pages.length - 1]);
    const only = new URLSearchParams({district: d});
    // each beside the others: one not read (volunteers away: the shift plans) is said in its
    // place, the rest shown
    await Promise.all([part("board", () => get("/v1/incidents?" + q)),
      part("teams", () => get("/v1/units?" + only)),
      part("roll", () => get("/v1/shift-check-ins?" + only)),
      part("figures", () => figures(get, d))]);
  } catch (e) { if (e !== STALE && e !== REFUSED) show("err", told(e)); }
  finally { refreshing -= 1; }
}
// Today's on the district's clock (the first read asks for this browser's date; one on
// another clock is asked again for the district's), the last 24 hours' (the morning review
// of a night shift, 19:00-07:00, that today's from 00:00 cuts in two) or the last 7 days'.
async function figures(get, d) {
  const q = new URLSearchParams({district: d});
  const back = {day: DAY_MS, week: WEEK_MS}[$("period").value];
  if (back) {
    q.set("since", new Date(Date.now() - back).toISOString());
    return get("/v1/kpis?" + q); }
  q.set("date", districtToday || ymd(new Date()));
  let k = await get("/v1/kpis?" + q);
  if (k.today && k.today !== q.get("date")) { q.set("date", k.today); k = await get("/v1/kpis?" + q); }
  districtToday = k.today || districtToday;
  return k;
}
function paint() {
  $("who").textContent = me ? say("who", {name: me.name || "", agency: me.agency_id || ""}) : "";
  paintOrders(); paintTeams(); paintRoll(); paintFigures();
}
const missedText = part => (missed[part] ? say("not_read", {why: told(missed[part])()}) : "");
const placeOf = i => (i.location.address
  || i.location.lat.toFixed(4) + ", " + i.location.lon.toFixed(4));
const endOf = o => o.resolved_at || o.handover_at || o.declined_at || o.timed_out_at
  || o.withdrawn_at;
function paintOrders() {
  const tb = $("orders"), b = read.board; tb.replaceChildren();
  $("older").hidden = !(b && b.next); $("newest").hidden = !pages.length;
  if (!b) { $("ordercount").textContent = missedText("board"); return; }
  for (const i of b.incidents) for (const o of i.orders) { const tr = document.createElement("tr");
    cell(tr, time(i.reported_at)); cell(tr, prio(i.priority), i.priority);
    cell(tr, word("category", i.category) + ((i.flags || []).length
      ? " · " + listed(i.flags.map(f => word("flag", f))) : ""));
    cell(tr, placeOf(i)); cell(tr, o.team_name || o.team_id);
    cell(tr, word("order_state", o.state)); cell(tr, time(o.issued_at));
    cell(tr, time(o.acknowledged_at)); cell(tr, time(o.on_scene_at)); cell(tr, time(endOf(o)));
    tb.appendChild(tr); }
  $("ordercount").textContent = !b.incidents.length && !pages.length ? say("no_orders")
    : say("shown", {count: b.incidents.length})
      + (pages.length ? say("older_page", {page: pages.length}) : "")
      + (b.scanned_to ? say("looked_back", {time: new Date(b.scanned_to).toLocaleString(locale())})
        : b.next ? say("more_older") : "");
}
// The order a team is on, as this page's orders name it (on another page: just "on an
// order"); one given before a roster import moved the team here is its former agency's,
// which dispatch says without its id.
function orderText(u) {
  if (u.open_order_of_former_agency) return say("order_former_agency");
  if (!u.open_order_id) return "";
  for (const i of read.board ? read.board.incidents : []) {
    const o = i.orders.find(x => x.order_id === u.open_order_id);
    if (o) return say("order_of", {priority: prio(i.priority), category: word("category", i.category),
      place: placeOf(i), state: word("order_state", o.state)}); }
  return say("on_order");
}
function paintTeams() {
  const tb = $("teams"), t = read.teams; tb.replaceChildren();
  if (!t) { $("teamcount").textContent = missedText("teams"); return; }
  $("teamcount").textContent = say("teams_count", {count: t.units.length,
    free: t.units.filter(u => u.status === "available").length});
  const stale = Date.now() - 600000;
  for (const u of t.units) { const tr = document.createElement("tr");
    const fixed = u.position && u.position.at && Date.parse(u.position.at) > stale;
    cell(tr, u.name || u.team_id);
    // off shift (a status it keeps, busy on an order it holds), or on shift with no position
    cell(tr, word("team_status", u.status) + (!u.on_shift ? (u.status === "off_duty" ? ""
      : say("off_shift")) : fixed ? "" : say("no_fix")));
    cell(tr, orderText(u)); tb.appendChild(tr); }
}
function paintRoll() {
  const list = $("roll"), r = read.roll; list.replaceChildren();
  if (!r) { $("rollcount").textContent = missedText("roll"); return; }
  $("rollcount").textContent = !r.planned ? say("roll_none_planned")
    : r.not_checked_in ? say("roll_count", {missing: r.not_checked_in, planned: r.planned})
      : say("roll_all_in", {planned: r.planned});
  for (const t of (r.teams || []).filter(x => !x.checked_in)) {
    const li = document.createElement("li");
    li.textContent = say("roll_team", {team: t.team_name || t.team_id, start: time(t.start),
      end: time(t.end)});
    list.appendChild(li); }
}
const spread = p => (p && p.p50 != null ? say("spread", {p50: Math.round(p.p50),
  p90: Math.round(p.p90), count: p.count}) : "-");
const p50 = p => (p && p.p50 != null ? say("seconds", {n: Math.round(p.p50)}) : "-");
function paintFigures() {
  const list = $("figures"), k = read.figures; list.replaceChildren();
  if (!k) { $("fperiod").textContent = missedText("figures"); return; }
  const since = () => new Date(k.since).toLocaleString(locale());
  $("fperiod").textContent = $("period").value === "week" ? say("period_week", {since: since()})
    : $("period").value === "day" ? say("period_24h", {since: since()})
    : say("period_day", {day: k.today ? dateText(k.today) : ""});
  const categories = Object.entries(k.by_category || {}).map(([c, n]) => word("category", c)
    + " (" + n + ")");
  const items = [[say("f_incidents"), k.incidents], [say("f_orders"), k.orders],
    [say("f_resolved"), k.resolved], [say("f_handed_over"), k.handed_over],
    [say("f_declines"), k.declines], [say("f_timeouts"), k.routing_timeouts],
    [say("f_withdrawn"), k.withdrawn],
    [say("f_to_acknowledge"), spread(k.offer_to_acknowledge_s)],
    [say("f_to_scene"), spread(k.offer_to_scene_s)],
    [say("f_by_category"), categories.length ? listed(categories) : "-"]];
  for (const [label, value] of items) { const li = document.createElement("li");
    li.textContent = label + (lang === "zh" ? "：" : ": ") + value; list.appendChild(li); }
  for (const [id, t] of Object.entries(k.by_team || {})) { const li = document.createElement("li");
    li.textContent = say("f_team", {team: t.team_name || id, orders: t.orders,
      declines: t.declines, timeouts: t.routing_timeouts,
      acknowledge: p50(t.offer_to_acknowledge_s), scene: p50(t.offer_to_scene_s)});
    list.appendChild(li); }
}
$("save").onclick = () => {
  localStorage.setItem(TOKEN_KEY, $("token").value);
  localStorage.setItem(DISTRICT_KEY, $("district").value);
  forget(); watched = null;
  if (stopped) { stopped = false; setTitle(() => say("title")); }
  show("err", ""); paint(); refresh(); };
// A shared desk: the next one must not read under this one's token.
$("signout").onclick = () => { refused({error: {message: "signed out"}});
  show("err", () => say("signed_out")); };
$("older").onclick = () => { if (read.board && read.board.next) {
  pages.push(read.board.next); refresh(); } };
$("newest").onclick = () => { pages = []; refresh(); };
$("period").onchange = () => { read.figures = null; if (!stopped) refresh(); };
$("lang").onclick = () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lf-lang", lang);
  showLanguage(); };
showLanguage();
setInterval(() => { if (!refreshing && !stopped) refresh(); }, REFRESH_MS);
refresh();
</script></body></html>
"""

AGENCY_PAGE = page_in_words(_AGENCY_PAGE, AGENCY_TEXT)


def build_agency_page_router() -> APIRouter:
    router = APIRouter(route_class=InputFirstRoute)

    @router.get("/agency", include_in_schema=False, response_class=HTMLResponse)
    async def agency_page() -> HTMLResponse:
        return HTMLResponse(AGENCY_PAGE, headers=page_headers(
            f"default-src 'self'; script-src {page_scripts(AGENCY_PAGE)}; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"))

    return router
