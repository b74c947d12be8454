"""The member's page (`GET /device`) and its service worker: self-contained, no CDN.

The page holds a device token (pasted once, kept in this browser), keeps the WebSocket
open, alerts on each order (beep and vibration), confirms receipt, and sends responses.
Where notify knows the public addresses of volunteers and intake (`/v1/devices/me`,
`services`), it is the member's whole day: check in and out, share the phone's position
while on shift, the points balance, and reports from the street (a hazard, a dispute) that
the member then follows. Everything shown is set with textContent, never parsed as HTML.
It speaks Chinese, or English where the member chose it or the browser puts English first
(page_text.py).
"""

from shared.labels import LANGUAGES, page_in_words, script_strings

from .page_text import PAGE_TEXT, VISIT_WORDS, WORKER_TEXT

_DEVICE_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="theme-color" content="#12263a">
<title>{{title}}</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg:#0f1c2b; --card:#182c42; --fg:#eef3f8; --dim:#9fb2c6; --p1:#e5383b;
          --p2:#f48c06; --p3:#4ea8de; --p4:#8d99ae; --ok:#2a9d8f; }
  * { box-sizing:border-box; }
  body { margin:0; font:16px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  header { position:sticky; top:0; background:#12263a; padding:10px 12px; z-index:2;
           display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
  header h1 { font-size:18px; margin:0 auto 0 0; }
  #status { font-size:13px; color:var(--dim); }
  #status.on { color:var(--ok); } #status.off { color:var(--p1); }
  #lang { padding:6px 10px; font-size:14px; font-weight:400; }
  main { padding:12px; max-width:640px; margin:0 auto; }
  .panel { background:var(--card); border-radius:10px; padding:12px; margin-bottom:12px; }
  label { display:block; font-size:13px; color:var(--dim); margin-bottom:4px; }
  input, select { width:100%; padding:10px; border-radius:8px; border:1px solid #35506d;
          background:#0d1826; color:var(--fg); font-size:16px; }
  button { border:0; border-radius:8px; padding:12px 10px; font-size:15px; font-weight:600;
           background:#2b4a6b; color:var(--fg); cursor:pointer; }
  button:disabled { opacity:.4; }
  button.primary { background:var(--ok); }
  button.danger { background:var(--p1); }
  .row { display:flex; gap:8px; margin-top:8px; flex-wrap:wrap; }
  .row > * { flex:1 1 auto; }
  .order { background:var(--card); border-radius:10px; padding:12px; margin-bottom:12px;
           border-left:8px solid var(--p4); }
  .order.P1 { border-color:var(--p1); } .order.P2 { border-color:var(--p2); }
  .order.P3 { border-color:var(--p3); }
  .order.alert { animation: flash 1s ease-in-out 4; }
  .order.ended { opacity:.5; }
  @keyframes flash { 50% { background:#5c1d1f; } }
  .top { display:flex; justify-content:space-between; align-items:baseline; gap:8px; }
  .prio { font-weight:800; font-size:20px; }
  .cat { font-weight:700; font-size:18px; }
  .meta { color:var(--dim); font-size:13px; }
  .place { font-size:17px; margin:6px 0; }
  .instr { background:#0d1826; border-radius:8px; padding:8px; margin:6px 0; white-space:pre-wrap; }
  .state { font-weight:700; color:var(--ok); }
  .actions { display:grid; grid-template-columns:repeat(3, 1fr); gap:6px; margin-top:8px; }
  #toast { position:fixed; bottom:12px; left:12px; right:12px; background:#3a0f12; color:#fff;
           padding:10px; border-radius:8px; display:none; z-index:3; }
  .empty { color:var(--dim); text-align:center; padding:24px 0; }
  .notsent { color:#ffb3b5; font-weight:600; margin-top:6px; }
</style>
</head>
<body>
<header>
  <h1>联防 Lianfang</h1>
  <span id="status" class="off">{{not_connected}}</span>
  <button id="lang" type="button" lang="en">{{switch}}</button>
</header>
<main>
  <section class="panel" id="sound" hidden>{{sound}}</section>
  <section class="panel" id="login">
    <label for="token" id="tokenlabel">{{token_label}}</label>
    <input id="token" type="password" autocomplete="off" placeholder="{{token_hint}}">
    <div class="row">
      <button class="primary" id="connect">{{connect}}</button>
      <button id="forget">{{forget}}</button>
    </div>
    <div class="row">
      <button id="push" disabled>{{push}}</button>
      <button id="test">{{test}}</button>
    </div>
    <div class="row">
      <input id="phone" type="tel" placeholder="{{phone_hint}}">
      <button id="sms" disabled>{{save_phone}}</button>
    </div>
    <div class="meta" id="who"></div>
  </section>
  <section class="panel" id="duty" hidden>
    <div class="top"><strong id="teamline">{{team}}</strong><span class="state" id="dutystate"></span></div>
    <div class="row">
      <button class="primary" id="checkin">{{check_in}}</button>
      <button id="checkout">{{check_out}}</button>
    </div>
    <div class="notsent" id="dutyerr" role="status"></div>
    <div class="meta" id="posline"></div>
    <div class="meta" id="pointsline"></div>
  </section>
  <section id="orders"><div class="notsent" id="leftout" role="status" hidden></div>
    <div class="empty" id="empty">{{no_orders}}</div></section>
  <section class="panel" id="report" hidden>
    <label for="rcat" id="rlabel">{{report_label}}</label>
    <select id="rcat"></select>
    <div class="row"><input id="rdesc" maxlength="2000" placeholder="{{report_hint}}"></div>
    <div class="row">
      <label><input type="checkbox" id="rweapon" style="width:auto">
        <span id="rweaponlabel">{{weapon_seen}}</span></label>
      <button id="rsend">{{report}}</button>
    </div>
    <div class="notsent" id="rstate" role="status"></div>
    <div id="myreports"></div>
  </section>
</main>
<div id="toast" role="alert"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
// What the page says, per language, and the glossary's words for the codes the server sends
// (a category a deployment added and the glossary does not have: its code).
const STRINGS = __STRINGS__;
// Chinese, unless the member chose (kept on this phone) or the browser puts English first.
function chosenLanguage() {
  const kept = localStorage.getItem("lf_lang");
  if (kept === "zh" || kept === "en") return kept;
  const first = (navigator.languages && navigator.languages[0]) || navigator.language || "";
  return /^en(-|$)/i.test(String(first)) ? "en" : "zh";
}
let lang = chosenLanguage();
function say(key, vars) {
  const text = STRINGS[lang].text[key];
  return text.replace(/[{]([a-z_]+)[}]/g, (all, name) => (vars && name in vars ? String(vars[name]) : all));
}
function word(group, code) {
  const words = STRINGS[lang][group];
  return Object.prototype.hasOwnProperty.call(words, code) ? words[code] : code;
}
// A follow-up visit's answer or question (`resolved`, `handover`, `note`) in the words of its
// order's category (page_text's VISIT_WORDS: a fraud warning's visit asks whether those
// warned are safe, not whether an agreement holds); a category without its own: a dispute's.
function visitSay(f, what) {
  const words = STRINGS[lang].visit;
  return say((Object.prototype.hasOwnProperty.call(words, f.category)
    ? words[f.category] : words.dispute)[what]);
}
function clock(date) { return date.toLocaleTimeString(lang === "zh" ? "zh-CN" : undefined); }
function when(date) { return date.toLocaleString(lang === "zh" ? "zh-CN" : undefined); }
// An order as the member names it: its priority, the priority's word, its category.
function what(f) {
  return f.priority + (lang === "zh" ? "" : " ") + word("priority", f.priority) + " "
    + word("category", f.category);
}
// A line that says something of the page's state, as a function: said again in the other
// language when the member switches.
const lines = new Map();
function show(id, text) { lines.set(id, text); $(id).textContent = text(); }
const FIXED = { tokenlabel: "token_label", connect: "connect", forget: "forget", test: "test",
  sms: "save_phone", teamline: "team", checkin: "check_in", checkout: "check_out",
  empty: "no_orders", rlabel: "report_label", rweaponlabel: "weapon_seen", rsend: "report",
  sound: "sound", lang: "switch" };
const HINTS = { token: "token_hint", phone: "phone_hint", rdesc: "report_hint" };
function showLanguage() {
  if (document.documentElement) document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = say("title");
  $("lang").lang = lang === "zh" ? "en" : "zh-CN";   // the switch names the other language
  for (const [id, key] of Object.entries(FIXED)) if (!lines.has(id)) $(id).textContent = say(key);
  for (const [id, key] of Object.entries(HINTS)) $(id).placeholder = say(key);
  for (const [id, text] of lines) $(id).textContent = text();
  for (const id of orders.keys()) render(id, false);
  if (cats) showCategories();
  if (info && info.services && info.services.intake) showReports();
  // the service worker, which has no page, says the lock screen's words in it too
  try { if (typeof caches !== "undefined") caches.open("lf").then((c) => c.put("/device/lang",
    new Response(lang))).catch(() => {}); } catch (e) { /* no caches here */ }
}
function switchLanguage() {
  lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lf_lang", lang); showLanguage();
}
const FORWARD = ["acknowledged", "en_route", "on_scene", "resolved", "handover"];
const RANK = { issued:0, acknowledged:1, en_route:2, on_scene:3, resolved:4, handover:4 };
const orders = new Map();
let cats = null;   // intake's categories, once read
// A link may carry the token in its fragment (never sent to a server); keep it, then hide it.
// Another member's (a post's shared phone handed on): the reports listed are the last one's.
if (location.hash.startsWith("#token=")) {
  const linked = decodeURIComponent(location.hash.slice(7));
  if (linked !== localStorage.getItem("lf_token")) localStorage.removeItem("lf_reports");
  localStorage.setItem("lf_token", linked);
  history.replaceState(null, "", location.pathname);
}
let ws = null, token = localStorage.getItem("lf_token") || "", audio = null;
let retry = 0, stopped = true, pingTimer = null, info = null, team = null;
let sock = 0;   // which socket this is: an order names the one that brought it
$("token").value = token;

function toast(text) {
  const t = $("toast"); t.textContent = text; t.style.display = "block";
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.style.display = "none"; }, 5000);
}
function setStatus(key, on) { show("status", () => say(key)); $("status").className = on ? "on" : "off"; }

function beep() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const now = audio.currentTime;
    for (let i = 0; i < 3; i++) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.type = "square"; o.frequency.value = i % 2 ? 660 : 880;
      g.gain.setValueAtTime(0.0001, now + i * 0.35);
      g.gain.exponentialRampToValueAtTime(0.4, now + i * 0.35 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.35 + 0.3);
      o.connect(g).connect(audio.destination); o.start(now + i * 0.35); o.stop(now + i * 0.35 + 0.32);
    }
  } catch (e) { /* no audio on this device */ }
  if (navigator.vibrate) navigator.vibrate([400, 150, 400, 150, 400]);
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(frame)); return true; }
  return false;
}

// A receipt or an answer the server could not take now (`unavailable`: its store is
// restarting; `rate_limited`) is sent again, after growing waits; the server does the same
// for a refused receipt (it sends the order again). Both are safe to repeat: a repeated
// receipt or answer changes nothing. Kept until the order leaves the page (an answer:
// until the server says the order stands where it took it).
const unsure = new Map();   // order id -> { received?, response?, sentAt?, tries, timer }
// An answer not yet heard taken outlives the page: a phone kills a tab in the background and
// reloads it, a browser restarts, and an answer kept only in memory was lost (the order left
// unanswered, its deadline run out, the incident given to another team). Kept in this browser
// with a mark of the device's token: a page opened with another token (a post's shared phone
// handed on) drops it unsent; forgetting the token, or notify refusing it, drops it too.
// Restored, it is sent once its order is back on the page (restored: not yet), and only to
// the order as the member answered it (its version, kept with it).
const ANSWERS = "lf_answers";
// What the member answered: an amendment (a raise, a weapon) or new instructions change it.
function orderVersion(f) {
  return JSON.stringify([f.priority, [...(f.flags || [])].sort(), f.instructions || ""]);
}
function tokenMark(t) {   // not the token itself: it is written to this browser once only
  let h = 2166136261;
  for (let i = 0; i < t.length; i++) h = Math.imul(h ^ t.charCodeAt(i), 16777619) >>> 0;
  return t.length + ":" + h.toString(36);
}
function keepAnswers() {
  const answers = {};
  for (const [id, kept] of unsure) {
    if (kept.response) answers[id] = { frame: kept.response, sentAt: kept.sentAt, team: kept.team,
                                        version: kept.version };
  }
  try {   // a browser that keeps nothing (storage full, private mode) still sends the answer
    if (!token || !Object.keys(answers).length) { localStorage.removeItem(ANSWERS); return; }
    localStorage.setItem(ANSWERS, JSON.stringify({ of: tokenMark(token), answers }));
  } catch (e) { /* kept in memory only, as before */ }
}
function restoreAnswers() {
  let stored = null;
  try { stored = JSON.parse(localStorage.getItem(ANSWERS) || "null"); } catch (e) { /* torn */ }
  if (!stored || !token || stored.of !== tokenMark(token)) { localStorage.removeItem(ANSWERS); return; }
  for (const [id, a] of Object.entries(stored.answers || {})) {
    if (!a || !a.frame) continue;   // not one this page kept: not read, not sent
    if (!unsure.has(id)) unsure.set(id, { response: a.frame, sentAt: a.sentAt, team: a.team,
                                          version: a.version, tries: 0, timer: null,
                                          offline: true, restored: true });
  }
}
const REINFORCE_RESEND_MS = 20000;   // well within notify's REINFORCE_REPEAT_S (30 s)
function helpAgain() { return say("help_again", { button: word("response", "reinforce") }); }
// An answer on a socket that died without a close (a dead spot) goes nowhere and gets no
// reply: one not confirmed within ANSWER_CONFIRM_MS goes over HTTP as well, well before a
// P1's 30 s deadline; one that cannot go at all is kept until it can (noSignal).
const ANSWER_CONFIRM_MS = 8000;
function sendAbout(frame) {
  const kept = unsure.get(frame.order_id) || { tries: 0, timer: null };
  kept[frame.type] = frame; kept.tries = 0; unsure.set(frame.order_id, kept);
  if (frame.type === "response") {
    kept.sentAt = Date.now(); kept.offline = false; kept.busy = false; kept.restored = false;
    kept.team = team;
    const o = orders.get(frame.order_id); kept.version = o ? orderVersion(o.frame) : null;
    clearTimeout(kept.confirm);
    kept.confirm = setTimeout(() => unconfirmed(frame.order_id), ANSWER_CONFIRM_MS);
    keepAnswers();
  }
  return send(frame);
}
function unconfirmed(id) {
  const kept = unsure.get(id); if (!kept || !kept.response) return;
  const age = Date.now() - kept.sentAt;
  if (age < ANSWER_CONFIRM_MS) {
    kept.confirm = setTimeout(() => unconfirmed(id), ANSWER_CONFIRM_MS - age); return;
  }
  const o = orders.get(id);
  if (!o || ended(o)) { settled(id, "response"); return; }
  if (kept.response.response === "reinforce" && age > REINFORCE_RESEND_MS) {
    settled(id, "response");   // a second call now, not a repeat: the member decides
    toast(helpAgain());
    return;
  }
  const { type, order_id, ...answer } = kept.response;
  postAnswer(id, answer, true);
}
function settled(id, type) {   // taken, or refused for good: not sent again
  const kept = unsure.get(id); if (!kept) return;
  const shown = kept.offline && kept.response && type !== "received";
  if (type) delete kept[type]; else { delete kept.received; delete kept.response; }
  if (!kept.response) { kept.offline = false; kept.busy = false; }
  if (!kept.received && !kept.response) {
    clearTimeout(kept.timer); clearTimeout(kept.confirm); unsure.delete(id);
  }
  keepAnswers();
  if (shown && orders.has(id)) render(id, false);   // its "not sent yet" line goes
  keepRinging();   // an answer refused: the order waits again
}
// No network at all (a basement, a lift): the answer is kept, its card says it is not sent
// yet, and it goes by itself once there is a signal: over HTTP every ANSWER_CONFIRM_MS
// (unconfirmed), on the socket at its next hello. Dropped with "try again", it was lost
// when the member did not press it again: a "resolved" so lost left the team busy, out of
// dispatch, and the incident open. Sent at most until taken (a repeat changes nothing at
// notify), never to an order that has ended, a call for reinforcement only while notify
// takes it as the same call. `busy`: the phone had a signal and the server did not take the
// answer now (postAnswer's NOT_NOW): the card says so, not "no signal", whose member would
// look for a signal they have. The card says the cause of the last try.
function noSignal(id, answer, busy) {
  const kept = unsure.get(id);
  if (!kept || !kept.response || kept.response.response !== answer.response) return;  // another since
  const o = orders.get(id);
  if (!o || ended(o)) { settled(id, "response"); return; }
  if (!kept.offline || kept.busy !== !!busy) {
    const first = !kept.offline;
    kept.offline = true; kept.busy = !!busy; render(id, false);
    if (first) toast(say(busy ? "server_busy" : "no_signal", { answer: word("response", answer.response) }));
  }
  clearTimeout(kept.confirm);
  kept.confirm = setTimeout(() => unconfirmed(id), ANSWER_CONFIRM_MS);
}
function answerTaken(id, answer) {   // this answer's reply: not one the member pressed since
  const kept = unsure.get(id);
  if (kept && kept.response && kept.response.response === answer.response) settled(id, "response");
}
// An answer restored after a reload, its order on the page again (notify sent it): sent once,
// on this socket, then kept as any other until taken. Not when the order has moved past it (a
// teammate's answer: notify would refuse it), nor a call for help that would be a second call.
// Nor when the order changed since the member answered it (raised, a weapon, new instructions;
// or kept by a page that kept no version): sent, it would go unseen, where the page without
// the reload had alarmed and said so. The order rings as raised, to be answered again.
// Returns whether the order needs no alarm: its answer sent, or rung for as changed.
function sendRestored(id) {
  const kept = unsure.get(id), o = orders.get(id);
  if (!kept || !kept.restored || !kept.response || !o) return false;
  kept.restored = false;
  const answer = kept.response.response;
  if (kept.version !== orderVersion(o.frame)) {
    settled(id, "response"); render(id, true);
    const flags = o.frame.flags || [];
    toast(say("changed_since_answer", { answer: word("response", answer), what: what(o.frame)
      + (flags.length ? " · " + flags.map((x) => word("flag", x)).join(", ") : "") }));
    ring(); notifyHidden(o.frame);
    return true;
  }
  if (!allowed(o.state, o.frame.kind).includes(answer)) { settled(id, "response"); return false; }
  if (answer === "reinforce" && Date.now() - kept.sentAt > REINFORCE_RESEND_MS) {
    settled(id, "response"); toast(helpAgain()); return false;
  }
  send(kept.response);
  clearTimeout(kept.confirm);
  kept.confirm = setTimeout(() => unconfirmed(id), ANSWER_CONFIRM_MS);
  return true;
}
function onRefused(f) {
  const kept = f.order_id ? unsure.get(f.order_id) : undefined;
  if (kept && ["unavailable", "rate_limited"].includes(f.code) && kept.tries < 6) {
    clearTimeout(kept.timer);
    kept.timer = setTimeout(() => sendAgain(f.order_id), Math.min(15000, 1000 * Math.pow(2, kept.tries++)));
    return;
  }
  // An answer sent again on a new socket that notify had taken (the reply lost with the
  // socket before): the order stands where it took it already (its order_state came
  // first, and the answer is no longer kept), and its refusal as finished says nothing.
  const o = f.order_id ? orders.get(f.order_id) : undefined;
  if (f.code === "conflict" && o && ended(o) && !(kept && kept.response)) return;
  const pressed = kept && kept.response && kept.response.response;   // before settled drops it
  if (kept) settled(f.order_id);
  toast(refusedWhy(f.order_id, pressed, f.code, f.message || f.code));
}
// Why an answer was refused, in the page's words: a 409 is the order moved on meanwhile (a
// teammate's answer, taken back, finished), said with where the card has it when the card
// already knows (its state no longer allows the answer: a teammate's En route came first),
// else only that it changed: a card that still allows it is behind (its news not here yet:
// the socket down, the answer sent over HTTP), and "the order is now 已接单" to an order
// taken back would be false. notify's own sentence ("the order is en_route; responses
// move forward only; allowed now: on_scene, ...") was shown as it came, in English, to
// members reading Chinese. Another refusal (a field wrong) keeps the service's words.
function refusedWhy(id, response, code, message) {
  if (code !== "conflict" || !response) return message || say("refused");
  const o = orders.get(id), answer = word("response", response);
  if (o && o.state !== "issued" && !allowed(o.state, o.frame.kind).includes(response)) {
    return say("answer_refused_behind", { answer, state: word("order_state", o.state) });
  }
  return say("answer_refused", { answer });
}
function sendAgain(id) {
  const kept = unsure.get(id); if (!kept) return;
  if (kept.received) send(kept.received);   // socket down: the reconnect sends the order again
  if (kept.response && !send(kept.response)) {
    const { type, order_id, ...answer } = kept.response;
    postAnswer(id, answer);
  }
}

function connect() {
  const before = token;
  token = $("token").value.trim();
  if (!token) { toast(say("paste_token")); return; }
  // another member's token on this phone: what the page holds of the one before is theirs
  // (as forgetting the token); the next holder's own is read (loadMe)
  if (token !== before) forgetMember("off_shift");
  localStorage.setItem("lf_token", token);
  stopped = false; beepUnlock(); open_();
  loadMe();
}
function beepUnlock() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    audio.resume();
  } catch (e) { /* no audio */ }
  $("sound").hidden = true;
}
// A browser lets a page sound only within a touch: the sound of a page that connected by
// itself with its kept token (reopened, reloaded) is made by its first order's alarm, and
// stays silent until resumed in one. Any touch of the page does it, not only Connect.
if (typeof document.addEventListener === "function") {
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, beepUnlock, true);
}
// One socket at a time: a socket this page replaced (Connect pressed again, a silent one
// given up) may still report its close or a frame; it is no longer the page's, and its
// close must not be taken for a drop of the current one (which it would replace in turn).
let reconnectTimer = null, quietTimer = null, heardAt = 0, pingEvery = 20000;
const SUBPROTOCOL_CHARS = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;   // an HTTP token's
function tokenRefused() {
  stopped = true; setStatus("token_refused", false);
  // revoked (a lost or stolen phone, a member taken off the roster): whoever holds the
  // phone is shown nothing more of the member, their orders nor their name and team
  clearOrders(); forgetMember("token_refused");
  toast(say("token_invalid"));
}
function open_() {
  clearTimeout(reconnectTimer); reconnectTimer = null;
  if (ws) { const old = ws; ws = null; try { old.close(); } catch (e) {} }
  // Not in the URL, which a TLS proxy in front logs: the token is offered as a subprotocol
  // beside the fixed one notify chooses. A subprotocol is an HTTP token, as every device
  // token is: anything else pasted is no device token, refused as notify would refuse it
  // (the browser would throw instead of connecting).
  if (!SUBPROTOCOL_CHARS.test(token)) { tokenRefused(); return; }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const s = new WebSocket(proto + "//" + location.host + "/v1/devices/stream",
    ["lianfang.v1", "token." + token]);
  ws = s; sock++; heardAt = Date.now();
  setStatus("connecting", false);
  s.onopen = () => { if (ws !== s) return;
    heardAt = Date.now(); setStatus("connected", true);
    clearInterval(pingTimer); pingTimer = setInterval(() => send({ type: "ping" }), 25000);
    watchQuiet(); };
  watchQuiet();   // and while it connects: a try lost in a dead network is given up too
  s.onmessage = (ev) => { if (ws !== s) return;
    heardAt = Date.now();
    let f; try { f = JSON.parse(ev.data); } catch (e) { return; } onFrame(f); };
  s.onclose = (ev) => {
    if (ws !== s) return;
    ws = null; clearInterval(pingTimer); clearTimeout(quietTimer);
    if (ev.code === 4401 || ev.code === 4403) { tokenRefused(); return; }
    if (ev.code === 4409) forgetCallers();
    setStatus("disconnected", false);
    reconnectLater();
  };
}
// The wait before the next try grows until notify has taken the device again (its hello),
// not merely opened the socket: one it accepts and closes at once (1013, its store away)
// is tried again later each time, not every second. Each wait is drawn from its upper
// half, so the district's phones, dropped together by a restart, do not come back in step.
function reconnectLater() {
  if (stopped) return;
  clearTimeout(reconnectTimer);
  const most = Math.min(30000, 1000 * Math.pow(2, retry++));
  reconnectTimer = setTimeout(open_, Math.round(most / 2 + Math.random() * most / 2));
}
// A connection lost in a lift or a dead spot often ends without a close: the browser calls
// the socket open for minutes while nothing reaches it. notify pings every ping_interval_s
// and answers the page's pings: a socket silent for three intervals is given up, as is a
// try to connect that has not opened within CONNECT_WAIT_MS.
const CONNECT_WAIT_MS = 30000;
function watchQuiet() {
  clearTimeout(quietTimer); quietTimer = null;
  const s = ws; if (!s || s.readyState > WebSocket.OPEN) return;
  const quiet = s.readyState === WebSocket.OPEN ? Math.max(45000, 3 * pingEvery) : CONNECT_WAIT_MS;
  const left = heardAt + quiet - Date.now();
  if (left > 0) { quietTimer = setTimeout(watchQuiet, left); return; }
  ws = null; clearInterval(pingTimer);
  try { s.close(); } catch (e) {}
  setStatus("reconnecting", false);
  reconnectLater();
}
// Back in the network, or the phone unlocked (its timers may not have run while it slept):
// a socket down is tried now, not after the grown wait; an open one is checked now.
function wake() {
  if (stopped || !token) return;
  if (!ws || ws.readyState > WebSocket.OPEN) { retry = 0; open_(); return; }
  if (ws.readyState === WebSocket.OPEN) { send({ type: "ping" }); watchQuiet(); }
}
if (typeof window.addEventListener === "function") {
  window.addEventListener("online", wake);
  window.addEventListener("pageshow", wake);
}
if (typeof document.addEventListener === "function") {
  document.addEventListener("visibilitychange", () => { if (!document.hidden) wake(); });
}

function onFrame(f) {
  switch (f.type) {
    case "hello": {
      retry = 0;   // notify took the device: a later drop starts its waits afresh
      if (f.ping_interval_s > 0) pingEvery = f.ping_interval_s * 1000;
      if (!info) loadMe();   // back after a drop: the shift and the form as they stand now
      else if (info.services) {
        if (info.services.volunteers) loadDuty();
        if (info.services.intake && !loadCategories.done) loadCategories();
      }
      show("who", () => say("connected_as", { name: f.member_name || f.member_id, team: f.team_id }));
      // moved to another team (the roster; notify closed the socket with 4409): the former
      // team's orders are no longer this member's, and notify tells this socket nothing more
      // of them (withdrawn, taken by a former teammate): off the page, not named as held
      if (team !== null && team !== f.team_id) leaveTeam(f.team_id);
      team = f.team_id;
      showLeftOut({ count: 0 });   // this socket's replay says again if some are left out
      // back after a drop: the orders still shown, so those that ended meanwhile are told;
      // and those of answers restored after a reload (not shown: notify sends the live ones),
      // unless of the member's former team (notify tells this team's socket nothing of them)
      const held = [...orders].filter(([, o]) => !["resolved", "handover", "declined", "withdrawn"]
        .includes(o.state)).map(([id]) => id);
      for (const [id, kept] of [...unsure]) {
        if (!kept.restored || orders.has(id)) continue;
        if (kept.team && kept.team !== team) settled(id); else held.push(id);
      }
      if (held.length) send({ type: "holding", order_ids: held.slice(0, 100) });
      // answers sent on the socket that dropped and never heard taken: a socket in a dead
      // spot takes a frame and loses it with itself. A repeated answer changes nothing; a
      // call for reinforcement only within the server's REINFORCE_REPEAT_S (30 s), after
      // which it would be a second call, for a second unit: the member is asked instead.
      for (const [id, kept] of unsure) {
        const o = orders.get(id);
        if (!kept.response || !o || ended(o)) continue;
        if (kept.response.response === "reinforce" && Date.now() - kept.sentAt > REINFORCE_RESEND_MS) {
          settled(id, "response");
          toast(helpAgain());
          continue;
        }
        send(kept.response);
      }
      break;
    }
    case "order": onOrder(f); break;
    case "order_withdrawn": withdrawn(f.order_id, f.barred_by, f); break;
    case "order_update": onUpdate(f); break;
    case "order_state":
      // an order the team took before this page knew it (a reload, another phone answered):
      // shown where it stands, to carry on with; no alarm
      if (f.order && !orders.has(f.order_id) && !["resolved", "handover", "declined"].includes(f.state)) {
        orders.set(f.order_id, { frame: f.order, state: f.state, sock, answered: true,
                                 by: f.member_name || "" });
        render(f.order_id, false); showEmpty();
      } else {
        // shown already: as it stands now (a drop missed a revision), and this team's still
        if (f.order) { revised(f.order); orders.get(f.order_id).sock = sock; }
        setState(f.order_id, f.state, f.answered, f.member_name || "");
      }
      { const kept = unsure.get(f.order_id);   // the answer taken (this one or the same)
        const mine = !!(kept && kept.response && kept.response.response === f.response);
        if (mine) settled(f.order_id, "response");
        else if (orders.has(f.order_id)) sendRestored(f.order_id);
        // a restored answer's order, not back yet: ended, or a teammate's answer heard before
        // the replay brings it (notify tells the team's every socket), and it goes then
        else if (["resolved", "handover", "declined"].includes(f.state)) settled(f.order_id);
        // with the order: a replay (a reload), when the call was made is not known here
        if (f.response === "reinforce") calledHelp(f.order_id, mine, !f.order); }
      break;
    case "orders_left_out": showLeftOut(f); break;
    case "ping": send({ type: "pong" }); break;
    case "error": onRefused(f); break;
  }
}

// The team has more live orders than notify sends a phone (a station's hand-overs waiting to
// be filed): those nobody has answered come first; the member is told how many are not here.
function showLeftOut(f) {
  $("leftout").hidden = !(f.count > 0);
  show("leftout", () => (!(f.count > 0) ? ""
    : f.unanswered > 0 ? say("left_out_unanswered", { count: f.count, unanswered: f.unanswered })
    : say("left_out", { count: f.count })));
}

function onOrder(f) {
  sendAbout({ type: "received", order_id: f.order_id });   // every time: it may be asked again
  // Shown already: sent again (a receipt asked for again, a reconnect). After a drop it is
  // the order as it stands now: a revision missed meanwhile (priority, flags, a sooner
  // deadline) is shown, and alarms, as an order_update would have.
  if (orders.has(f.order_id)) { revised(f); orders.get(f.order_id).sock = sock; return; }
  orders.set(f.order_id, { frame: f, state: "issued", sock });
  render(f.order_id, true);
  // answered before a reload: it goes now, and needs no alarm (unless refused: it rings then;
  // changed since: it rang as such)
  if (!sendRestored(f.order_id)) { ring(); notifyHidden(f); }
  refreshDutySoon();  // dispatched
}

// The page in the background (another app, the screen locked): a notification too. Chrome
// on Android has no Notification constructor for pages (it throws): there a page shows one
// through its service worker, registered when the member turned on alerts.
function notifyHidden(f) {
  showNotice(f.order_id, what(f),
             { body: f.address || "", data: { order_id: f.order_id } });
}
function showNotice(tag, title, more) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const opts = { tag, renotify: true, requireInteraction: true,
                 vibrate: [400, 150, 400, 150, 400], ...more };
  const direct = () => {
    try { notices.set(tag, new Notification(title, opts)); } catch (e) { /* not allowed */ }
  };
  const sw = navigator.serviceWorker;
  if (!sw || typeof sw.getRegistration !== "function") { direct(); return; }
  sw.getRegistration("/device/sw.js")
    .then((reg) => (reg && reg.showNotification ? reg.showNotification(title, opts) : direct()))
    .catch(direct);
}
// An order's notification (this page's while it was hidden, or its Web Push's) asks for an
// answer until the member acts on it: once the order is withdrawn or over, or off the page,
// it is taken off the lock screen, lest the member go where nobody is sent any more.
const notices = new Map();   // order id -> a Notification the page made itself
function dismissNotice(id) {
  const own = notices.get(id); notices.delete(id);
  if (own) { try { own.close(); } catch (e) { /* gone */ } }
  const sw = navigator.serviceWorker;
  if (!sw || typeof sw.getRegistration !== "function") return;
  sw.getRegistration("/device/sw.js")
    .then((reg) => (reg && reg.getNotifications ? reg.getNotifications({ tag: id }) : []))
    .then((shown) => { for (const n of shown || []) n.close(); })
    .catch(() => { /* no notifications to take off */ });
}

// An order rings until its team answers it (a press here, on its way; a teammate's answer)
// or it ends: one beep in a pocket on a loud street is missed. Orders waiting together ring
// as one alarm.
const ALARM_EVERY_MS = 5000;
let alarmTimer = null, rangAt = 0;
function ring() { rangAt = Date.now(); beep(); keepRinging(); }
function waiting() {
  for (const [id, o] of orders) {
    const kept = unsure.get(id);
    if (o.state === "issued" && !o.answered && !(kept && kept.response)) return true;
  }
  return false;
}
function keepRinging() {
  if (!waiting()) { clearTimeout(alarmTimer); alarmTimer = null; return; }
  if (alarmTimer === null) {
    alarmTimer = setTimeout(ringAgain, Math.max(0, rangAt + ALARM_EVERY_MS - Date.now()));
  }
}
function ringAgain() {
  alarmTimer = null;
  if (!waiting()) return;
  if (Date.now() - rangAt >= ALARM_EVERY_MS) ring(); else keepRinging();
}

const CALLER_FIELDS = ["caller", "description"];   // a police order's only (need to know)
function revised(f) {
  const o = orders.get(f.order_id); if (!o) return;
  // The caller and description as notify sends them now: a team a roster import moved out
  // of the police (its id kept) gets its orders again without them, on any reconnect, not
  // only after the 4409 that forgetCallers follows (a drop or a restart may come first).
  if (CALLER_FIELDS.some((k) => JSON.stringify(f[k]) !== JSON.stringify(o.frame[k]))) {
    const frame = { ...o.frame };
    for (const k of CALLER_FIELDS) { if (f[k] === undefined) delete frame[k]; else frame[k] = f[k]; }
    o.frame = frame; render(f.order_id, false);
  }
  const flags = f.flags || [];
  if (f.priority !== o.frame.priority || (f.ack_by && f.ack_by !== o.frame.ack_by)
      || flags.length !== o.frame.flags.length || flags.some((x) => !o.frame.flags.includes(x))
      || (f.escort || null) !== (o.frame.escort || null)
      || JSON.stringify(f.escorting) !== JSON.stringify(o.frame.escorting)) {
    onUpdate({ order_id: f.order_id, priority: f.priority, flags, ack_by: f.ack_by,
               escort: f.escort || null, escorting: f.escorting });
  }
}

// Taken off at once: a police team's caller is not a new team's to see. Only what came before
// this socket: notify may queue the new team's first order ahead of its hello (the socket
// hears the team's fan-out first), and that one is this member's, its receipt confirmed.
function leaveTeam(now) {
  const former = [...orders].filter(([, o]) => o.sock !== sock).map(([id]) => id);
  const left = former.filter((id) => !ended(orders.get(id))).length;
  for (const id of former) {
    settled(id); dismissNotice(id); const c = $("o-" + id); if (c) c.remove(); orders.delete(id);
  }
  showEmpty();
  if (left) toast(say("moved_team", { team: now }));
  refreshDutySoon();  // the new team's shift and status
}

// The command room learnt more: a new priority, flags such as "weapon"; a police order also
// the caller's words a follow-up of the report added (its description). Each alarms again.
// Volunteers on a P1 are told whether police or security goes with them (`escort`; a frame
// of an older notify has none: unchanged): one now on the way, or none any more (it
// declined), which beeps.
function onUpdate(f) {
  const o = orders.get(f.order_id); if (!o || ended(o)) return;   // over: nothing to alarm for
  const raised = f.priority < o.frame.priority, added = f.flags.filter((x) => !o.frame.flags.includes(x));
  const said = f.description !== undefined && f.description !== o.frame.description;
  const escort = f.escort === undefined ? (o.frame.escort || null) : f.escort;
  const escortNews = escort !== (o.frame.escort || null) && escort ? escort : null;
  // police or security: the volunteers it escorts (none in the frame: unchanged)
  const escorting = f.escorting === undefined ? o.frame.escorting : f.escorting;
  const escortingNews = JSON.stringify(escorting) !== JSON.stringify(o.frame.escorting);
  o.frame = { ...o.frame, priority: f.priority, flags: f.flags, ack_by: f.ack_by || o.frame.ack_by,
              escort, escorting };
  if (said) o.frame.description = f.description;
  render(f.order_id, raised || added.length > 0 || said || escortNews === "awaited");
  if (raised || added.length || said) { ring();
    toast(say("order_updated", { what: what(o.frame)
      + (added.length ? " · " + added.map((x) => word("flag", x)).join(", ") : "") })); }
  else if (escortNews === "awaited") { ring(); toast(say("escort_awaited")); }
  else if (escortNews === "sent") toast(say("escort_sent"));
  else if (escortingNews && Array.isArray(escorting)) toast(escortingText(escorting));
}
// Police or security on a P1: the volunteer teams it escorts, by name, on the way or on
// scene (`escorting`); empty: none any more.
function escortingText(list) {
  const state = (t) => t.state === "sent" ? say("escorted_sent")
    : t.state === "en_route" ? say("escorted_en_route")
      : t.state === "on_scene" ? say("escorted_on_scene") : "";
  const teams = list.filter((t) => t && typeof t.team === "string").map((t) =>
    state(t) ? say("escorted_team", { team: t.team, state: state(t) }) : t.team);
  return teams.length ? say("escorting", { teams: teams.join(say("escorted_sep")) })
    : say("escorting_none");
}

function endOrder(id, why) {
  const o = orders.get(id); if (!o) return;
  o.state = why; render(id, false); dismissNotice(id);
  refreshDutySoon();  // free, points
  setTimeout(() => { if (!o.calledOff) dropOrder(id); }, 15000);
}
function dropOrder(id) {
  const el = $("o-" + id); if (el) el.remove(); orders.delete(id); settled(id); showEmpty();
}
// Called off: an order this team had taken (on its way, on scene) that the command room took
// back (another team given it, volunteers taken off a weapon, the incident closed). The team
// may be walking to it with the phone locked in a pocket: the phone alarms once and says so,
// on the lock screen too, and the card stays until the member has read it (OK). An order
// nobody had taken only stops ringing, unless it was taken back because the incident's flags
// now bar volunteers (`barred_by`, a weapon): then the member, who may have set off before
// pressing anything or be standing there already, is told why and to leave, whatever they
// had answered ("do not go" alone, to someone on scene next to a knife, said nothing).
function withdrawn(id, barredBy, f) {
  const o = orders.get(id);
  if (!o) settled(id);   // an answer restored after a reload, for an order withdrawn meanwhile
  if (!o && f) warnedAway(f, barredBy);
  if (!o || ended(o)) return;
  const pressed = unsure.get(id);   // an answer on its way (no signal): the team may be too
  const barred = (Array.isArray(barredBy) ? barredBy : []).filter((x) => typeof x === "string");
  o.barred = barred.length ? say("barred_leave", {
    flags: barred.map((x) => word("flag", x)).join(lang === "zh" ? "、" : ", ") }) : "";
  o.calledOff = !!o.answered || o.state !== "issued" || !!o.barred
    || !!(pressed && pressed.response && pressed.response.response !== "declined");
  endOrder(id, "withdrawn");
  if (!o.calledOff) return;
  const title = say("withdrawn", { what: what(o.frame) });
  const why = o.barred || say("called_off");
  beep();
  toast(title + (lang === "zh" ? "。" : ". ") + why);
  showNotice(id + ":withdrawn", title,
             { body: why + (o.frame.address ? " " + o.frame.address : ""),
               data: { order_id: id, withdrawn: true } });
}

// Taken off for a weapon while this page did not show the order (reloaded with no signal, a
// browser restarted, a teammate's phone connecting later): notify sends the order with the
// withdrawal, and the member, who may be standing at the scene, is told as a page that had
// it is, card, alarm and lock screen. Their OK tells notify the warning was read
// (`warning_read`): this phone is not warned of it again; one read on this page is said
// read again at once.
const readWarnings = new Set();
function warnedAway(f, barredBy) {
  const barred = (Array.isArray(barredBy) ? barredBy : []).filter((x) => typeof x === "string");
  const order = f.order;
  if (!barred.length || !order || typeof order !== "object" || !order.location) return;
  if (readWarnings.has(f.order_id)) { readWarning(f.order_id); return; }
  const at = f.withdrawn_at ? new Date(f.withdrawn_at) : null;
  orders.set(f.order_id, { frame: order, state: "issued", sock, answered: false,
                           takenOffAt: at && !isNaN(at) ? at : null });
  withdrawn(f.order_id, barred);
}
function readWarning(id) {
  readWarnings.add(id);
  send({ type: "warning_read", order_id: id });
}

function setState(id, state, answered, by) {
  // An order's end is final: an answer's reply that crossed its withdrawal (the deadline ran
  // out as the member pressed) must not show it live again.
  const o = orders.get(id); if (!o || ended(o)) return;
  o.state = state; if (answered) o.answered = true;
  // who of the team answered (notify's order_state names them); none: the state alone
  if (by !== undefined) o.by = by;
  render(id, false);
  if (["resolved", "handover", "declined"].includes(state)) endOrder(id, state);
}

function allowed(state, kind) {
  if (["resolved", "handover", "declined", "withdrawn"].includes(state)) return [];
  // the station's own hand-over has nobody to hand it to
  const out = FORWARD.filter((r) => RANK[r] > RANK[state] && !(kind === "handover" && r === "handover"));
  if (state === "issued") out.push("declined");
  out.push("reinforce");
  return out;
}

async function respond(id, response) {
  let note = null;  // the team's own words: the command room reads them with the answer
  if (response === "declined") {
    const said = prompt(say("why_decline"));
    note = (said || "").trim();
    if (!note) {   // cancelled: nothing to say; pressed OK on nothing: say why nothing happened
      if (said !== null) toast(say("decline_needs_reason"));
      return;
    }
  } else if (response === "handover") {
    const o = orders.get(id);
    const said = prompt(o && o.frame.kind === "followup" ? visitSay(o.frame, "note") : say("handover_note"));
    if (said === null) return;
    note = said.trim() || null;
  }
  const answer = note ? { response, note: note.slice(0, 500) } : { response };
  if (response === "resolved" || response === "handover") {  // body-camera files, for the command room
    const files = (prompt(say("evidence")) || "")
      .split(/[,，]/).map((f) => f.trim()).filter(Boolean).slice(0, 10);
    if (files.length) answer.evidence = files.map((ref) => ({ kind: "video", ref: ref.slice(0, 200) }));
  }
  if (sendAbout({ type: "response", order_id: id, ...answer })) return;
  await postAnswer(id, answer);
}
const NOT_NOW = [429, 502, 503, 504];
// An answer's request is given up after ANSWER_WAIT_MS and kept as one without a signal: on a
// weak signal a browser's fetch hangs for minutes with no error, and the answer, neither heard
// taken nor kept, went nowhere (a "resolved" so stuck left the team busy). An answer is a few
// hundred bytes: 10 s without notify's answer is a signal not to wait on. Given up, it may
// have reached notify all the same: sent again, it is a repeat (or a 409 that tookIt reads),
// and a call for help, sent again only until REINFORCE_RESEND_MS (20 s), is given up by
// notify's REINFORCE_REPEAT_S (30 s), after which it would count as a second call.
const ANSWER_WAIT_MS = 10000;
async function postAnswer(id, answer, again) {
  let r, body;
  const wait = bounded(ANSWER_WAIT_MS);
  try {   // socket down: the same answer over HTTP, continuing the order's trace
    const o = orders.get(id);
    r = await fetch("/v1/orders/" + encodeURIComponent(id) + "/responses", {
      method: "POST", headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token,
        ...(o && o.frame.traceparent ? { "traceparent": o.frame.traceparent } : {}) },
      body: JSON.stringify(answer), signal: wait.signal });
    body = await r.json();
  } catch (e) {   // no answer at all (no network, none in time), or no JSON (a gateway's page)
    noSignal(id, answer, !!r && e.name !== "AbortError"); return;
  } finally { wait.done(); }
  // Not taken now (notify's store or the token check away, a gateway between, too many
  // requests): kept and sent again by itself, as the socket's `unavailable` is; dropped
  // with a toast, a "resolved" so lost left the team busy and the incident open.
  if (NOT_NOW.includes(r.status)) { noSignal(id, answer, true); return; }
  answerTaken(id, answer);
  if (!r.ok && again && r.status === 409 && await tookIt(id, answer)) return;
  if (!r.ok) {
    const error = body.error || {};
    toast(refusedWhy(id, answer.response, error.code, error.message)); return;
  }
  setState(id, body.state, body.answered, "");  // this phone's own answer: no name shown
  if (answer.response === "reinforce") calledHelp(id, true, true);
}
// A call for help taken (this phone's or a teammate's): the card says so, and the toast to
// whoever pressed it. Nothing changed before: a guard in a fight, unsure, pressed again, and a
// press after notify's REINFORCE_REPEAT_S (30 s) is a call for one more unit.
function calledHelp(id, mine, now) {
  const o = orders.get(id); if (!o || ended(o)) return;
  o.helpAt = now ? Date.now() : (o.helpAt || -1); render(id, false);
  if (mine) toast(say("help_called"));
}
// An answer sent again over HTTP because its socket never confirmed it, refused as the order
// is finished: the socket may have taken it (its reply lost). Then the order stands where
// this very answer took it: shown so, not as a refusal.
async function tookIt(id, answer) {
  try {
    const r = await fetch("/v1/orders/" + encodeURIComponent(id), {
      headers: { "Authorization": "Bearer " + token } });
    const now = await r.json();
    if (!r.ok || now.last_response !== answer.response) return false;
    setState(id, now.state, now.answered);
    return true;
  } catch (e) { return false; }
}

function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e; }

function render(id, alert) {
  const o = orders.get(id), f = o.frame;
  let card = $("o-" + id);
  if (!card) { card = el("article"); card.id = "o-" + id; o.seq = ++render.seq; $("orders").append(card); }
  card.className = "order " + f.priority + (alert ? " alert" : "") +
    (["withdrawn", "resolved", "handover", "declined"].includes(o.state) ? " ended" : "");
  card.replaceChildren();
  const top = el("div", "top");
  top.append(el("span", "prio", f.priority + " " + word("priority", f.priority)),
             el("span", "cat", word("category", f.category)),
             el("span", "meta", f.kind !== "dispatch" ? word("order_kind", f.kind) : ""));
  card.append(top);
  const where = f.location.lat.toFixed(5) + ", " + f.location.lon.toFixed(5);
  card.append(el("div", "place", f.address || where));
  awayLines.delete(id);
  if (!ended(o)) {
    const away = el("div", "meta", awayText(f.location));
    awayLines.set(id, away); card.append(away);
  }
  if (f.flags && f.flags.length) {
    card.append(el("div", "meta", "⚠ " + f.flags.map((x) => word("flag", x)).join(", ")));
  }
  // volunteers on a P1: whether police or security goes with them (shown as text)
  if (f.escort === "awaited" && !ended(o)) card.append(el("div", "instr", say("escort_awaited")));
  if (f.escort === "sent" && !ended(o)) card.append(el("div", "meta", say("escort_sent")));
  if (Array.isArray(f.escorting) && !ended(o)) {
    card.append(el("div", f.escorting.length ? "instr" : "meta", escortingText(f.escorting)));
  }
  if (f.instructions) card.append(el("div", "instr", f.instructions));
  if (f.description) card.append(el("div", "instr", f.description));
  // police orders only (notify strips the rest), and only what it holds: no empty "Caller:"
  const caller = f.caller ? [f.caller.name, f.caller.phone].filter(Boolean).join(" · ") : "";
  if (caller) card.append(el("div", "meta", say("caller", { caller })));
  ackLines.delete(id);
  if (f.ack_by) {
    const line = el("div", "meta ackby");
    line.textContent = deadline(id);
    if (o.state === "issued" && !o.answered) { ackLines.set(id, line); tickSoon(); }
    card.append(line);
  }
  if (f.filing_due) card.append(el("div", "meta", say("filing_due", { time: when(new Date(f.filing_due)) })));
  card.append(el("div", "state", word("order_state", o.state).toUpperCase()
                                 + (o.by && o.answered ? " · " + o.by : "")));
  if (o.helpAt && !ended(o)) {
    card.append(el("div", "meta", o.helpAt > 0
      ? say("help_called_at", { time: clock(new Date(o.helpAt)) }) : say("help_called_line")));
  }
  const kept = unsure.get(id);
  if (kept && kept.offline && kept.response && !ended(o)) {
    card.append(el("div", "meta", say(kept.busy ? "not_sent_yet_busy" : "not_sent_yet",
                                      { answer: word("response", kept.response.response) })));
  }
  const acts = el("div", "actions");
  for (const r of allowed(o.state, f.kind)) {
    const style = r === "acknowledged" ? "primary"
      : (r === "reinforce" || r === "declined" ? "danger" : "");
    // on a follow-up, handing back to the station means: what the visit checks does not
    // hold (the agreement, those warned safe): the station visits again
    const b = el("button", style, f.kind === "followup" && (r === "handover" || r === "resolved")
      ? visitSay(f, r) : word("response", r));
    b.onclick = () => respond(id, r); acts.append(b);
  }
  card.append(acts);
  if (o.calledOff && o.state === "withdrawn") {
    card.append(el("div", "instr", o.barred || say("called_off")));
    if (o.takenOffAt) card.append(el("div", "meta", say("taken_off_at", { time: clock(o.takenOffAt) })));
    const ok = el("button", "primary", say("ok"));
    ok.onclick = () => {
      if (o.barred) readWarning(id);
      dismissNotice(id + ":withdrawn"); dropOrder(id);
    };
    card.append(ok);
  }
  keepRinging();
  sortCards();
  showEmpty();
}
render.seq = 0;
// How far the scene is and which way, from the phone's own fix: a camera's or a door
// alarm's order has a point and no address, two numbers a member on foot cannot walk to.
// Said again at each fix (the member moves); nothing without a fix of the last two minutes.
const awayLines = new Map();   // order id -> its line, while the order is live
const AWAY_FIX_MS = 120000;
const COMPASS = ["to_north", "to_north_east", "to_east", "to_south_east", "to_south",
                 "to_south_west", "to_west", "to_north_west"];   // page_text's, clockwise
function awayText(loc) {
  if (!lastFix || Date.now() - lastFixTaken > AWAY_FIX_MS) return "";
  const rad = (d) => d * Math.PI / 180;
  const p1 = rad(lastFix.lat), p2 = rad(loc.lat), dl = rad(loc.lon - lastFix.lon);
  const h = Math.sin((p2 - p1) / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) ** 2;
  const metres = 2 * 6371000 * Math.asin(Math.sqrt(h));
  if (metres < 50) return say("away_here");
  const bearing = (Math.atan2(Math.sin(dl) * Math.cos(p2), Math.cos(p1) * Math.sin(p2)
    - Math.sin(p1) * Math.cos(p2) * Math.cos(dl)) * 180 / Math.PI + 360) % 360;
  const distance = metres < 1000 ? say("metres_away", { n: Math.round(metres / 10) * 10 })
    : say("km_away", { n: (metres / 1000).toFixed(1) });
  return say("away", { distance, direction: say(COMPASS[Math.round(bearing / 45) % 8]) });
}
function sayAway() {
  for (const [id, line] of awayLines) {
    const o = orders.get(id);
    if (!o || ended(o)) { awayLines.delete(id); continue; }
    line.textContent = awayText(o.frame.location);
  }
}
// The acknowledge-by time on the phone's wall clock, and while the team has not answered,
// the time left, counted by notify's clock: a phone whose clock was set by hand minutes off
// would count a P1's 30 s as gone already, or as minutes.
const ackLines = new Map();   // order id -> its deadline line, while it counts down
let tickTimer = null, serverSkew = 0;
function deadline(id) {
  const o = orders.get(id), due = Date.parse(o.frame.ack_by);
  const at = say("ack_by", { time: clock(new Date(due - serverSkew)) });
  if (o.state !== "issued" || o.answered) return at;
  const left = Math.ceil((due - (Date.now() + serverSkew)) / 1000);
  return left > 0 ? say("time_left", { time: at,
    left: Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") })
    : say("time_up", { time: at });
}
function tickSoon() { if (tickTimer === null) tickTimer = setTimeout(tick, 1000); }
function tick() {
  tickTimer = null;
  for (const [id, line] of ackLines) {
    const o = orders.get(id);
    if (!o || o.state !== "issued" || o.answered) { ackLines.delete(id); continue; }
    line.textContent = deadline(id);
  }
  if (ackLines.size) tickSoon();
}
function ended(o) { return ["withdrawn", "resolved", "handover", "declined"].includes(o.state); }
function sortCards() {   // live before ended, then P1 first, then newest first
  const list = $("orders");
  const ids = [...orders.keys()].sort((a, b) => {
    const x = orders.get(a), y = orders.get(b);
    return (ended(x) - ended(y)) || x.frame.priority.localeCompare(y.frame.priority) || (y.seq - x.seq);
  });
  for (const id of ids) { const c = $("o-" + id); if (c) list.append(c); }
}
function showEmpty() { $("empty").style.display = orders.size ? "none" : "block"; keepRinging(); }

// `waitMs`: how long to wait for the whole answer; past it the request is given up and the
// call fails with an AbortError (a browser's fetch waits for minutes on a weak signal).
// A browser without AbortController (older phones) waits as long as its fetch does, as before
// the bound: else every report failed there before it went. `signal` goes with the fetch,
// `done()` once its answer is read.
function bounded(waitMs) {
  const stop = waitMs && typeof AbortController !== "undefined" ? new AbortController() : null;
  const timer = stop ? setTimeout(() => stop.abort(), waitMs) : null;
  return { signal: stop ? stop.signal : undefined, done: () => clearTimeout(timer) };
}
// Why a request of the page's did not go, in the member's words: no network (fetch fails with
// a TypeError whose message is the browser's own, untranslated: "Failed to fetch", Firefox's
// "NetworkError when attempting to fetch resource.", Safari's "Load failed"), no answer within
// `waitMs` (given up), or the service's own reason for refusing it. A refusal without one (a
// gateway's own page: no JSON) is the server's not answering properly, in the page's words
// (busy for NOT_NOW's statuses), not api()'s "HTTP 502".
function whyNot(e, waitMs) {
  if (e.name === "AbortError") return say("no_answer", { seconds: waitMs / 1000 });
  if (e.name === "TypeError") return say("no_connection");
  if (e.status && !e.reason) {
    return say(NOT_NOW.includes(e.status) ? "server_busy_reason" : "server_no_reason", { status: e.status });
  }
  return e.message;
}
// A request the member waits on, or one that holds back others while on its way (loadMe's
// one read at a time), is given up after REQUEST_WAIT_MS, as a check-in or a report is.
const REQUEST_WAIT_MS = 20000;
async function api(path, method, body, waitMs) {   // notify's own path, or another service's URL
  const headers = { "Authorization": "Bearer " + token };
  if (body) headers["Content-Type"] = "application/json";
  const sent = Date.now();
  const wait = bounded(waitMs);
  try {
    const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined,
                                  signal: wait.signal });
    const said = path.startsWith("/") && r.headers && r.headers.get ? Date.parse(r.headers.get("Date")) : NaN;
    if (!isNaN(said)) {   // notify's clock (whole seconds): kept only when the phone's is well off
      const off = said + 500 - (sent + Date.now()) / 2;
      serverSkew = Math.abs(off) > 3000 ? off : 0;
    }
    const data = await r.json().catch((e) => { if (wait.signal && wait.signal.aborted) throw e; return {}; });
    if (!r.ok) {   // `reason`: the service's own, when it gave one
      const reason = data && data.error && data.error.message;
      const e = new Error(reason || ("HTTP " + r.status)); e.status = r.status; e.reason = reason;
      e.code = data && data.error && data.error.code; throw e;
    }
    return data;
  } finally { wait.done(); }
}
// Asked again at each hello until it is known: a page opened without network (the tab
// reloaded in a lift) would otherwise never show the shift, share the position or report.
// One read at a time per token: another member's token pasted meanwhile is read anew.
async function loadMe() {
  const by = token;
  if (!by || loadMe.busy === by) return;
  loadMe.busy = by;
  // given up in time: hung, it held back the read at every hello after, and with it the duty
  // panel and the report form, until the browser gave up (minutes later, if ever)
  try { const got = await api("/v1/devices/me", "GET", null, REQUEST_WAIT_MS);
    if (token !== by) return;   // the phone handed on meanwhile: the last member's device
    info = got;
    $("push").disabled = !(info.webpush.enabled && "serviceWorker" in navigator && "PushManager" in window);
    $("sms").disabled = !info.sms.enabled;
    show("push", () => say(info.webpush.subscribed ? "push_on" : "push"));
  } catch (e) {
    if (token === by) toast(say("device_not_read", { why: whyNot(e, REQUEST_WAIT_MS) })); return;
  } finally { if (loadMe.busy === by) loadMe.busy = null; }
  const svc = info.services || {};
  if (svc.volunteers) { $("duty").hidden = false; loadDuty(); }
  if (svc.intake) {
    $("report").hidden = false; loadCategories(); showReports();
    clearInterval(showReports.timer); showReports.timer = setInterval(showReports, 60000);
  }
}

// --- the shift, the position, the points (volunteers) ---------------------------------
// An order came or ended: the team's status (and points) as volunteers has them by then.
function refreshDutySoon() {
  if (info && info.services && info.services.volunteers) setTimeout(loadDuty, 2000);
}
let me = null, watchId = null, keepTimer = null, lastFix = null, lastFixTaken = 0, lastSent = 0;
const V = (path) => info.services.volunteers + path;
async function loadDuty() {
  if (!info || !info.services || !info.services.volunteers) return;   // forgotten meanwhile
  const by = token;
  let got;
  try { got = await api(V("/v1/me"), "GET"); } catch (e) {
    if (token === by) toast(say("shift_not_read", { why: whyNot(e) })); return;
  }
  if (token !== by) return;   // the phone handed on meanwhile: not the next holder's record
  me = got;
  show("dutyerr", () => "");   // a press that did not go: the shift as it stands now says it
  const line = (me.team.name || me.team.id) + " · " + me.member.name;
  show("teamline", () => line);
  showState(me.state, me.checked_in_here);
  loadPoints();
}
// This member is on the team's shift (a teammate may have started it: check in to join);
// only such a member's phone moves the team on dispatch's map, or anyone's while the team
// holds an order with nobody left on its shift.
function onShift(state) {
  return !!(me && (state.shift_member_ids || []).includes(me.member.id));
}
// `here`: volunteers' `checked_in_here`, whether this device is the one the member checked in
// with last. Only that one's fixes move the team: a tablet left at home with the page open,
// the member on shift with their phone, would move it kilometres. Checked in on another
// device, this one shares nothing and says so; checking in here makes it the one.
function showState(state, here) {
  const mine = onShift(state), elsewhere = mine && here === false;
  show("dutystate", () => {
    if (!state.on_shift) return say("off_shift").toUpperCase();
    const status = word("team_status", state.status).toUpperCase();
    return elsewhere ? say("checked_in_elsewhere", { status })
      : mine ? status : say("not_checked_in", { status });
  });
  checkedIn = mine; checkedInHere = mine && !elsewhere; dutyButtons();
  const anyone = !(state.shift_member_ids || []).length && (state.open_orders || []).length;
  if (checkedInHere || anyone) startSharing();
  else stopSharing(elsewhere ? "shared_by_other_device" : state.on_shift ? "check_in_to_share" : "off_shift");
}
// A check-in or check-out on its way holds both buttons until its answer: a second press, or
// the other button, would cross it (a read of the shift meanwhile leaves them held). Checked
// in on another device, Check in stays open: pressed, this device becomes the one.
let checkedIn = false, checkedInHere = false, shifting = null;
function dutyButtons() {
  $("checkin").disabled = checkedInHere || !!shifting; $("checkout").disabled = !checkedIn || !!shifting;
}
// A press that did not go (no network, no answer on a weak signal, volunteers refusing it)
// says so beside the panel until the next press goes or the shift is read again: a toast is
// gone in five seconds, and a member who walks off believing they checked in gets no orders
// (or one who believes they checked out is still sent). The panel keeps the shift as
// volunteers last said it. Given up after SHIFT_WAIT_MS, as a report is (REPORT_WAIT_MS):
// a browser's fetch waits minutes on a weak signal. Pressed again, either changes nothing
// more at volunteers (a repeat).
const SHIFT_WAIT_MS = 20000;
async function shift(which) {
  if (shifting) return;
  const by = token, asked = shifting = { which };
  dutyButtons();
  try { const state = await api(V("/v1/me/shift/" + which), "POST", null, SHIFT_WAIT_MS);
    if (token !== by) return;
    show("dutyerr", () => "");
    showState(state, state.checked_in_here);
    const paid = state.points_awarded ? say("points_awarded", { points: state.points_awarded }) : "";
    if (which === "end") toast([checkedOut(state), paid].filter(Boolean).join(" · "));
    else if (paid) toast(paid);
    loadPoints();
  } catch (e) {
    if (token !== by) return;
    // fetch fails with a TypeError when there is no network at all
    // refused as busy (NOT_NOW: its own 429, or a gateway's with it away), it goes in a
    // moment: said, or the member walks off believing it will go by itself
    const late = e.name === "AbortError", offline = e.name === "TypeError";
    const busy = NOT_NOW.includes(e.status);
    const button = which === "start" ? "check_in" : "check_out";
    // the one 409 of a check-out: the last one on the shift while the team holds an order,
    // said in the page's words (volunteers' own sentence is English, with the order's id)
    const lastOut = which === "end" && e.status === 409 && e.code === "conflict";
    const told = () => say(which === "start" ? "check_in_failed" : "check_out_failed", {
      why: lastOut ? say("last_out_open_order") : whyNot(e, SHIFT_WAIT_MS) })
      + (late || offline ? " " + say("shift_again", { button: say(button) })
        : busy ? " " + say("shift_again_busy", { button: say(button) }) : "");
    show("dutyerr", told); toast(told());
  } finally {
    if (shifting === asked) { shifting = null; dutyButtons(); }
  }
}
// A check-out ends the member's own stint; the team's shift ends with its last member.
function checkedOut(state) {
  const others = (state.shift_member_ids || []).length;
  const team = state.on_shift ? say("shift_goes_on", { others }) : say("team_off_duty");
  return say(state.checked_out === false ? "not_checked_in_out" : "checked_out", { team });
}
async function loadPoints() {
  const by = token;
  try { const p = await api(V("/v1/me/points?limit=1"), "GET");
    if (token !== by) return;
    const last = p.history[0];
    // the coordinator's own words for an adjustment, else why, in the glossary's words
    const what = () => (last.points > 0 ? "+" : "") + last.points + ", "
      + (last.note || word("points_reason", last.reason));
    show("pointsline", () => say(last ? "points_last" : "points",
                                 { balance: p.balance, last: last ? what() : "" }));
  } catch (e) { /* points are not a volunteer's only: other members have none */ }
}
// Phones report every 5 s while moving; a fix is taken every 30 s anyway, so a team standing
// still stays on dispatch's map (a fix older than ten minutes no longer counts).
function startSharing() {
  if (watchId !== null || !navigator.geolocation) {
    if (!navigator.geolocation) show("posline", () => say("no_geolocation"));
    return;
  }
  const opts = { enableHighAccuracy: true, maximumAge: 5000, timeout: 20000 };
  watchId = navigator.geolocation.watchPosition((p) => onFix(p, false), onFixError, opts);
  const again = () => navigator.geolocation.getCurrentPosition((p) => onFix(p, true), onFixError, opts);
  keepTimer = setInterval(again, 30000);
}
function stopSharing(why) {
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  clearInterval(keepTimer); watchId = null; keepTimer = null;
  show("posline", () => say("position_not_shared", { why: say(why || "off_shift") }));
}
// The token refused (revoked: a lost phone) or forgotten (a shared phone handed on): the
// phone's position is no longer asked for on its behalf, nor its reports' status.
function tokenGone(why) { stopSharing(why); clearInterval(showReports.timer); }
// Why the phone's position service gave no fix, in the member's words with what to do about
// it: a GeolocationPositionError's message is the browser's own, untranslated ("User denied
// Geolocation"), and says nothing a member on the street can act on.
const NO_FIX = { 1: "position_denied", 2: "position_not_found", 3: "position_too_slow" };
function noFix(e) { return say(NO_FIX[e && e.code] || "position_unknown"); }
function onFixError(e) { show("posline", () => say("position_unavailable", { error: noFix(e) })); }
async function onFix(p, force) {
  lastFix = { lat: p.coords.latitude, lon: p.coords.longitude,
              accuracy_m: Math.round(p.coords.accuracy || 0) };
  // The phone's clock may be wrong (set by hand): fixes stamped minutes behind by it would
  // not count at dispatch, though taken now. A fresh fix (by the phone's own clock) goes
  // without `at`, stamped by volunteers on arrival; only an older one says when it was taken.
  const age = Date.now() - p.timestamp;
  if (!(age >= 0 && age < 10000)) lastFix.at = new Date(p.timestamp).toISOString();
  // When it was taken, by the page's own clock: Android stamps a fix with the satellites'
  // time, which a phone set by hand minutes slow would take for minutes ahead (its last fix
  // "just taken" for as long, and a report from the street placed where it was shared).
  lastFixTaken = Date.now() - (age >= 0 && age < 60000 ? age : 0);
  sayAway();
  if (watchId === null) return;   // asked for before the sharing stopped: a report's place only
  if (!force && Date.now() - lastSent < 5000) return;
  lastSent = Date.now();
  await sendPosition(lastFix, token);
}
// The position goes to volunteers one PUT at a time, each given up after POSITION_WAIT_MS.
// On a weak signal a browser's fetch hangs for minutes: a fix every 5 s piled up hung PUTs
// until they held all the browser's connections to volunteers (about six a host over
// HTTP/1.1), and a check-out or a report waited behind them. A fix taken while one is on its
// way waits for it, and a newer one takes its place: only the newest position matters, and
// one later than 4 s is superseded by the next fix anyway.
const POSITION_WAIT_MS = 4000;
let positionGoing = false, positionNext = null;   // the fix waiting: { fix, by }
async function sendPosition(fix, by) {
  if (positionGoing) { positionNext = { fix, by }; return; }
  positionGoing = true;
  try { await putPosition(fix, by); } finally { positionGoing = false; }
  const next = positionNext; positionNext = null;
  // not on behalf of a token handed on meanwhile, nor once the sharing stopped (a 409, a 401)
  if (next && next.by === token && watchId !== null) await sendPosition(next.fix, next.by);
}
// The line says the fix that went (not one taken since, still waiting or replaced).
async function putPosition(fix, by) {   // the phone handed on while it went: the line is the next holder's
  try { await api(V("/v1/me/position"), "PUT", fix, POSITION_WAIT_MS);
    if (token !== by) return;
    const at = new Date(), metres = fix.accuracy_m;
    show("posline", () => say("position_shared", { time: clock(at), metres }));
  } catch (e) {
    if (token !== by) return;
    // not on the shift, or not from this device (the member checked in on another): the
    // sharing stops, and the shift read anew says which (and starts nothing again)
    if (e.status === 409) {
      stopSharing(e.code === "not_this_device" ? "shared_by_other_device" : "check_in_to_share");
      loadDuty(); return;
    }
    if (e.status === 401 || e.status === 403) { tokenGone("token_refused"); return; }
    show("posline", () => say("position_not_sent", { error: whyNot(e, POSITION_WAIT_MS) }));
  }
}

// --- reports from the street (intake) -------------------------------------------------
const I = (path) => info.services.intake + path;
// A report intake has not answered is sent again as it was, with its external_ref: the
// answer may have been lost after intake kept it, and intake takes the same ref again as a
// retry (200, the first report's incident). Only the same report: other words, a flag or a
// category, another place (over REPORT_SAME_M away), or a try after REPORT_RETRY_MS is a new
// report with a ref of its own; sent with the old ref it would be answered with the old
// incident, and reach nobody.
let pending = null;   // { ref, what, body, at }
const REPORT_RETRY_MS = 10 * 60000, REPORT_SAME_M = 100;
// A report's request is given up after REPORT_WAIT_MS: on a weak signal a browser's fetch
// hangs for minutes, the Report button disabled and the member told nothing, while what they
// saw may call for a radio or a phone call. A report is under 3 KB: a phone with any signal
// gets intake's answer in a few seconds, so 20 s without one is a signal not to wait on
// (the same bound as a fix of the phone's position). Given up, it may have reached intake
// all the same: pressed again as it stands, it goes with its external_ref, the same incident.
const REPORT_WAIT_MS = 20000;
function metres(a, b) {
  const k = Math.PI / 180, x = (b.lon - a.lon) * k * Math.cos((a.lat + b.lat) / 2 * k);
  return 6371000 * Math.hypot(x, (b.lat - a.lat) * k);
}
async function loadCategories() {
  try { cats = await api(I("/v1/categories"), "GET"); } catch (e) {
    toast(say("categories_not_read", { why: whyNot(e) })); return;
  }
  showCategories();
  $("rcat").value = cats.some((c) => c.category === "hazard_report") ? "hazard_report" : cats[0].category;
  loadCategories.done = true;
}
function showCategories() {   // the one chosen stays chosen
  const chosen = $("rcat").value;
  $("rcat").replaceChildren(...cats.map((c) => { const o = el("option", "", word("category", c.category));
    o.value = c.category; return o; }));
  if (chosen) $("rcat").value = chosen;
}
// A fix coarser than this (a phone indoors on its cell tower: 1-2 km) is not the report's
// place: the team would go where nothing is, the zone's station may be another, and intake
// may join the report to another incident of its kind within 200 m of that wrong place
// (DESIGN's duplicate radius), sending nobody for it.
const REPORT_MAX_ACCURACY_M = 200;
function here() {
  return new Promise((ok, fail) => {
    if (lastFix && Date.now() - lastFixTaken < 60000
        && lastFix.accuracy_m <= REPORT_MAX_ACCURACY_M) { ok(lastFix); return; }
    if (!navigator.geolocation) { fail(new Error(say("cannot_locate"))); return; }
    navigator.geolocation.getCurrentPosition((p) => {
      const accuracy = Math.round(p.coords.accuracy || 0);
      if (accuracy > REPORT_MAX_ACCURACY_M) {
        fail(new Error(say("too_coarse", { metres: accuracy }))); return;
      }
      ok({ lat: p.coords.latitude, lon: p.coords.longitude });
    }, (e) => fail(new Error(say("no_position", { error: noFix(e) }))),
    { enableHighAccuracy: true, timeout: 20000 });
  });
}
// A report that could not go is not queued to go by itself: intake would take it as
// happening when it arrives, and dispatch send a team, perhaps hours later, to what may be
// long over; whether it still stands is the member's to judge. The form says it was not sent
// until the next press (a toast is gone in five seconds, the words left in the form look
// like a report made), and keeps the member's words to press Report again.
async function sendReport() {
  $("rsend").disabled = true;
  show("rstate", () => "");
  const category = $("rcat").value, text = $("rdesc").value.trim(), weapon = $("rweapon").checked;
  const what = JSON.stringify([category, text, weapon]);
  let asked = false;   // intake was asked: a request given up may have reached it
  const by = token;   // forgotten meanwhile (a phone handed on): not the next holder's to see
  try {
    const at = await here();
    if (token !== by) return;   // forgotten while the place was fixed: not the next holder's
    const again = pending && pending.what === what && Date.now() - pending.at < REPORT_RETRY_MS
      && metres(pending.body.location, at) <= REPORT_SAME_M;
    if (!again) {
      const who = me || await api(V("/v1/me"), "GET", null, REPORT_WAIT_MS);
      if (token !== by) return;
      const body = { external_ref: "app-" + (info.device_id || "") + "-" + Date.now().toString(36),
                     category, district: who.team.district, location: { lat: at.lat, lon: at.lon } };
      if (text) body.description = text;
      if (weapon) body.flags = ["weapon"];
      pending = { what, body, at: Date.now() };
    }
    const body = pending.body;
    asked = true;
    const r = await api(I("/v1/incidents"), "POST", body, REPORT_WAIT_MS);
    if (token !== by) return;
    pending = null; $("rdesc").value = ""; $("rweapon").checked = false;
    const mine = JSON.parse(localStorage.getItem("lf_reports") || "[]").filter((x) => x.id !== r.incident_id);
    mine.unshift({ id: r.incident_id, category: body.category, at: new Date().toISOString() });
    localStorage.setItem("lf_reports", JSON.stringify(mine.slice(0, 10)));
    // a linked report sends nobody: the incident it joined has its teams already
    toast(say(r.status === "linked" ? "reported_linked" : "reported"));
    showReports();
  } catch (e) {
    if (token !== by) return;
    // fetch fails with a TypeError when there is no network at all
    const late = e.name === "AbortError";
    const why = () => (late ? say("no_answer_report", { seconds: REPORT_WAIT_MS / 1000 })
      : e.name === "TypeError" ? say("no_connection_report") : whyNot(e));
    toast(say("not_reported", { why: why() }));
    show("rstate", () => say("not_reported", { why: why() }) + " "
      + say(late && asked ? "report_unsure" : "report_kept"));
  }
  finally { $("rsend").disabled = false; }
}
async function showReports() {
  const mine = JSON.parse(localStorage.getItem("lf_reports") || "[]"), list = $("myreports");
  list.replaceChildren();
  for (const x of mine.slice(0, 5)) {
    const head = when(new Date(x.at)) + " · " + word("category", x.category) + " · ";
    const line = el("div", "meta", head + "…");
    list.append(line);
    api(I("/v1/incidents/" + encodeURIComponent(x.id)), "GET")
      .then((inc) => { line.textContent = head + word("incident_status", inc.status); })
      .catch(() => { line.textContent = head + say("report_unreadable"); });
  }
}
function b64ToBytes(s) { const pad = "=".repeat((4 - s.length % 4) % 4);
  const raw = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0)); }
async function enablePush() {
  try {
    if ((await Notification.requestPermission()) !== "granted") {
      toast(say("notifications_blocked")); return;
    }
    const reg = await navigator.serviceWorker.register("/device/sw.js");
    const sub = await reg.pushManager.subscribe({ userVisibleOnly: true,
      applicationServerKey: b64ToBytes(info.webpush.public_key) });
    await api("/v1/devices/me/webpush", "POST", { subscription: sub.toJSON() })
      .catch((e) => { throw new Error(whyNot(e)); });   // the browser's own words are its own
    show("push", () => say("push_on"));
  } catch (e) { toast(say("alerts_failed", { error: e.message })); }
}

$("connect").onclick = connect;
$("checkin").onclick = () => shift("start");
$("checkout").onclick = () => shift("end");
$("rsend").onclick = sendReport;
// 4409: the member's team or its agency's kind changed (a team moved from a police agency to
// a security company keeps its id). A police order's caller and description are a police
// member's only: taken off every card now; notify sends the live orders again with what the
// member may read.
function forgetCallers() {
  for (const [id, o] of orders) {
    if (o.frame.caller === undefined && o.frame.description === undefined) continue;
    const { caller, description, ...rest } = o.frame;
    o.frame = rest; render(id, false);
  }
}
function clearOrders() {
  for (const id of [...orders.keys()]) {
    settled(id); dismissNotice(id); const c = $("o-" + id); if (c) c.remove();
  }
  for (const id of [...unsure.keys()]) settled(id);   // restored after a reload, not shown yet
  orders.clear(); team = null; showEmpty();
}

// A post's shared phone handed on (the token forgotten, or another member's pasted over it):
// nothing the page holds of the member before is the next holder's to see or to send with:
// their answers kept, their report not sent and the list of those they made, their name,
// team, shift and points (a report went with their team's district), what notify said of
// their device, the phone number they typed. The phone's own (its last fix, the language,
// intake's categories) stays. A read of theirs still on its way is not shown (`by`).
function forgetMember(why) {
  for (const id of [...unsure.keys()]) settled(id);
  pending = null; $("rdesc").value = ""; $("rweapon").checked = false; show("rstate", () => "");
  localStorage.removeItem("lf_reports"); $("myreports").replaceChildren();
  info = null; me = null; tokenGone(why); showLeftOut({ count: 0 });
  $("duty").hidden = true; $("report").hidden = true;
  show("who", () => ""); show("teamline", () => say("team")); show("dutystate", () => "");
  show("pointsline", () => ""); show("dutyerr", () => "");
  shifting = null; checkedIn = false; $("checkin").disabled = false; $("checkout").disabled = false;
  $("push").disabled = true; $("sms").disabled = true; $("phone").value = "";
  show("push", () => say("push"));
}
// Signing out (a shared phone handed on): nothing of the device stays on the page (a police
// order's caller), and this browser's push subscription, the device's Web Push channel at
// notify, stops: else the next holder keeps getting this device's team's orders.
async function forgetToken() {
  const old = token;
  stopped = true; token = ""; localStorage.removeItem("lf_token"); $("token").value = "";
  clearTimeout(reconnectTimer); clearTimeout(quietTimer);
  if (ws) { const old = ws; ws = null; old.close(); }
  setStatus("not_connected", false);
  clearOrders(); forgetMember("signed_out");
  try {
    const reg = "serviceWorker" in navigator
      ? await navigator.serviceWorker.getRegistration("/device/sw.js") : null;
    const sub = reg && reg.pushManager ? await reg.pushManager.getSubscription() : null;
    if (!sub) return;
    if (old) {   // given up in time: hung, it held back the browser's own unsubscribe below
      const wait = bounded(REQUEST_WAIT_MS);
      await fetch("/v1/devices/me/webpush", { method: "DELETE", signal: wait.signal,
        headers: { "Authorization": "Bearer " + old } }).catch(() => null);
      wait.done();
    }
    await sub.unsubscribe();
  } catch (e) { /* no push on this browser */ }
}
$("forget").onclick = forgetToken;
$("push").onclick = enablePush;
$("test").onclick = () => { beepUnlock(); beep(); };
$("sms").onclick = async () => {
  try { await api("/v1/devices/me/sms", "POST", { phone: $("phone").value }, REQUEST_WAIT_MS);
    toast(say("phone_saved"));
  } catch (e) { toast(say("phone_not_saved", { why: whyNot(e, REQUEST_WAIT_MS) })); }
};
$("lang").onclick = switchLanguage;
setStatus("not_connected", false);
show("push", () => say("push"));
show("posline", () => say("position_not_shared", { why: say("off_shift") }));
showLanguage();
restoreAnswers();
if (token) { stopped = false; open_(); loadMe(); $("sound").hidden = false; }
</script>
</body>
</html>
"""

_SERVICE_WORKER = """"use strict";
const STRINGS = __STRINGS__;
// The page's language, which it keeps where a worker can read it; else the browser's.
async function language() {
  try {
    const kept = await caches.match("/device/lang");
    const lang = kept ? await kept.text() : null;
    if (lang === "zh" || lang === "en") return lang;
  } catch (e) { /* no caches */ }
  const first = (self.navigator && self.navigator.languages && self.navigator.languages[0]) || "";
  return /^en(-|$)/i.test(String(first)) ? "en" : "zh";
}
self.addEventListener("push", (event) => event.waitUntil(language().then((lang) => {
  const say = (key, what) => STRINGS[lang].text[key].replace("{what}", what || "");
  const word = (group, code) => (Object.prototype.hasOwnProperty.call(STRINGS[lang][group], code)
    ? STRINGS[lang][group][code] : code);
  let order = {};
  try { order = event.data ? event.data.json() : {}; } catch (e) {}
  // the order's kind unless an ordinary dispatch, as the SMS names it: a hand-over to file
  // or a revisit is no emergency to run to, and a withdrawal says which order it took back
  const kind = order.kind && order.kind !== "dispatch"
    ? say("kind", word("order_kind", order.kind)) : "";
  const prio = order.priority ? order.priority + (lang === "zh" ? "" : " ")
    + word("priority", order.priority) + " " : "";
  if (order.type === "order_withdrawn") {
    // notify takes an order back: its notification (same tag) says so and asks for nothing;
    // a phone that was offline gets this in place of the order's push (the same Topic)
    const what = kind + prio + (order.category ? word("category", order.category) : say("order"));
    // taken off because the incident's flags bar volunteers (a weapon): the member may be on
    // the way or there; the notification says why and to leave, and rings
    const barred = Array.isArray(order.barred_by) ? order.barred_by : [];
    if (barred.length) {
      return self.registration.showNotification(say("withdrawn", what), {
        body: STRINGS[lang].text.barred_leave.replace("{flags}", barred.map((f) => word("flag", f))
          .join(lang === "zh" ? "、" : ", ")) + (order.address ? " " + order.address : ""),
        tag: order.order_id || "lianfang-order",
        requireInteraction: true,
        renotify: true,
        silent: false,
        vibrate: [400, 150, 400, 150, 400],
        data: { order_id: order.order_id, withdrawn: true },
      });
    }
    return self.registration.showNotification(say("withdrawn", what), {
      body: say("no_need") + (order.address ? " " + order.address : ""),
      tag: order.order_id || "lianfang-order",
      requireInteraction: false,
      renotify: false,
      silent: true,
      data: { order_id: order.order_id, withdrawn: true },
    });
  }
  // the urgent flags (a knife, someone hurt) the glossary names, as the SMS says them
  const urgent = (order.flags || []).filter((f) => Object.prototype.hasOwnProperty.call(
    STRINGS[lang].flag, f)).map((f) => word("flag", f));
  const flagged = urgent.length ? (lang === "zh" ? "（" + urgent.join("、") + "）"
    : " (" + urgent.join(", ") + ")") : "";
  const what = kind + prio
    + (order.category ? word("category", order.category) : say("new_order")) + flagged;
  // the order sent again, raised by an amendment: it replaces the first one (same tag)
  const title = order.update ? say("updated", what) : what;
  // volunteers on a P1: whether police or security goes with them, as the SMS says it
  const escort = order.escort === "awaited" || order.escort === "sent"
    ? say("escort_" + order.escort) : "";
  return self.registration.showNotification(title, {
    body: escort ? escort + (order.address ? " " + order.address : "")
      : (order.address || say("open")),
    tag: order.order_id || "lianfang-order",
    requireInteraction: true,
    renotify: true,
    vibrate: [400, 150, 400, 150, 400],
    data: { order_id: order.order_id },
  });
})));
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const all = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const c of all) { if (c.url.includes("/device")) { return c.focus(); } }
    return self.clients.openWindow("/device");
  })());
});
"""



DEVICE_PAGE = page_in_words(_DEVICE_PAGE, PAGE_TEXT,
                            {language: {"visit": VISIT_WORDS} for language in LANGUAGES})
SERVICE_WORKER = _SERVICE_WORKER.replace("__STRINGS__", script_strings(WORKER_TEXT), 1)
