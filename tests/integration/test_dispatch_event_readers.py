"""What the other readers of dispatch's events see when an incident changes after its first
order (a linked report raising it, a backup replaced, a team gone off shift, a revision):
intake's projection (the reporting system's GET), the console page, and the deadline a
team is held to; intake and dispatch in this process on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from faststream.redis import RedisBroker

from services.dispatch.main import create_app as dispatch_app
from shared import streams
from shared.events import OrderIssued, OrderResponded, UnitStatus, utcnow
from tests.helpers import poll_until, read_stream, run_in_node
from tests.integration.dispatch.conftest import settings_for
from tests.integration.dispatch.test_engine import DISTRICT, team, wait_for_units
from tests.integration.stream_probes import ADMIN, running

D_ADMIN = {"Authorization": "Bearer test-admin-token"}
SCENE = {"lat": 22.8170, "lon": 108.3665}


def orders_for(url: str, incident_id: str) -> list[OrderIssued]:
    return [o for o in read_stream(url, streams.ORDER_ISSUED.name, OrderIssued)
            if o.incident_id == incident_id]


@contextlib.asynccontextmanager
async def both(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient,
                                                 RedisBroker, dict[str, str]]]:
    """intake (the reporting system's key) and dispatch (its console), one Redis."""
    app = dispatch_app(settings_for(url))
    async with running("intake", url, roster=(DISTRICT,)) as intake, \
            app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as console:
            r = await intake.client.post("/v1/systems", headers=ADMIN,
                                         json={"name": "110", "districts": [DISTRICT]})
            assert r.status_code == 201, r.text
            key = {"Authorization": f"Bearer {r.json()['api_key']}"}
            yield intake.client, console, intake.broker, key


async def post(intake: httpx.AsyncClient, key: dict[str, str], ref: str, category: str,
               flags: list[str] | None = None) -> dict:
    r = await intake.post("/v1/incidents", headers=key, json={
        "external_ref": ref, "category": category, "district": DISTRICT,
        "location": SCENE, "flags": flags or []})
    assert r.status_code == 202, r.text
    return r.json()


async def view(intake: httpx.AsyncClient, key: dict[str, str], incident_id: str) -> dict:
    r = await intake.get(f"/v1/incidents/{incident_id}", headers=key)
    assert r.status_code == 200, r.text
    return r.json()


async def respond(broker: RedisBroker, order: OrderIssued, *responses: str,
                  note: str | None = None) -> None:
    for response in responses:
        await broker.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, member_id="m1", response=response, note=note),
            stream=streams.ORDER_RESPONDED.name)


async def test_linked_report_raising_priority_is_seen_by_the_reporting_system(
        clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, key):
        await team(broker, "aunties", kind="volunteer", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        parent = (await post(intake, key, "ref-1", "help_request"))["incident_id"]
        [first] = await poll_until(lambda: orders_for(clean_redis, parent), "the first order")
        assert first.team_id == "aunties"
        await team(broker, "guard", kind="security", lat=22.8200, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        linked = await post(intake, key, "ref-2", "help_request", ["weapon"])
        assert linked["status"] == "linked" and linked["linked_to"] == parent
        await poll_until(lambda: orders_for(clean_redis, parent)[1:], "the guard's order")

        async def settled() -> dict | None:
            v = await view(intake, key, parent)
            teams = {t["team_id"]: t["status"] for t in v["teams"]}
            return v if teams.get("aunties") == "withdrawn" and "guard" in teams \
                and any(e["kind"] == "note" for e in v["timeline"]) else None

        v = await poll_until(settled, "intake's projection of the revision", 15)
        assert v["priority"] == "P1"
        kinds = [e["kind"] for e in v["timeline"]]
        assert "revised" in kinds and "withdrawn" in kinds, kinds
        assert all("note" not in e and "evidence" not in e for e in v["timeline"])
        lv = await poll_until(lambda: view(intake, key, linked["incident_id"]),
                              "the linked report")
        assert lv["status"] == "linked" and lv["linked_to"] == parent


async def test_the_command_room_s_and_teams_words_never_reach_the_reporting_system(
        clean_redis: str) -> None:
    secret = "caller Wang Wei 13800138000 lives upstairs"
    async with both(clean_redis) as (intake, console, broker, key):
        await team(broker, "first", kind="security", lat=22.8171, lon=108.3665)
        await team(broker, "backup", kind="security", lat=22.8190, lon=108.3665)
        await team(broker, "third", kind="security", lat=22.8300, lon=108.3665)
        await wait_for_units(clean_redis, 3)
        inc = (await post(intake, key, "ref-1", "noise"))["incident_id"]
        [first] = await poll_until(lambda: orders_for(clean_redis, inc), "the first order")
        await respond(broker, first, "acknowledged", "on_scene")
        await respond(broker, first, "reinforce", note=secret)
        [backup] = await poll_until(lambda: orders_for(clean_redis, inc)[1:], "the backup")
        await respond(broker, backup, "declined", note=secret)
        await poll_until(lambda: len(orders_for(clean_redis, inc)) == 3, "another backup")
        third = orders_for(clean_redis, inc)[2]
        r = await console.post(f"/v1/orders/{third.order_id}/withdraw", headers=D_ADMIN,
                               json={"note": secret})
        assert r.status_code == 200, r.text
        r = await console.patch(f"/v1/incidents/{inc}", headers=D_ADMIN,
                               json={"priority": "P2", "note": secret})
        assert r.status_code in (200, 202), r.text
        r = await console.post(f"/v1/incidents/{inc}/remarks", headers=D_ADMIN,
                               json={"note": secret})
        assert r.status_code in (200, 201), r.text

        async def seen() -> dict | None:
            v = await view(intake, key, inc)
            kinds = [e["kind"] for e in v["timeline"]]
            return v if "remark" in kinds and "revised" in kinds else None

        v = await poll_until(seen, "intake's projection", 15)
        text = json.dumps(v)
        assert "Wang" not in text and "13800138000" not in text, v["timeline"]
        assert v["priority"] == "P2"
        teams = {t["team_id"]: t["status"] for t in v["teams"]}
        assert teams["backup"] == "declined" and teams["third"] == "withdrawn", teams


async def test_an_offer_withdrawn_off_shift_is_seen_withdrawn(clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, key):
        await team(broker, "leaving", kind="security", lat=22.8171, lon=108.3665)
        await team(broker, "next", kind="security", lat=22.8300, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        inc = (await post(intake, key, "ref-1", "noise"))["incident_id"]
        [first] = await poll_until(lambda: orders_for(clean_redis, inc), "the first order")
        await broker.publish(UnitStatus(
            district=DISTRICT, unit_id="leaving", status="off_duty", agency_id="ag-security",
            agency_kind="security", mode="car", on_shift=False,
            occurred_at=utcnow() + timedelta(milliseconds=5)), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: len(orders_for(clean_redis, inc)) == 2, "the next team's order")

        async def seen() -> dict | None:
            v = await view(intake, key, inc)
            teams = {t["team_id"]: t["status"] for t in v["teams"]}
            return v if teams.get("leaving") == "withdrawn" and "next" in teams else None

        v = await poll_until(seen, "intake's projection", 15)
        assert v["status"] == "assigned"


CONSOLE_HARNESS = r"""
const vm = require("node:vm");
const { page, answers, selected } = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
function anything() {
  const kept = {};
  return new Proxy(function () {}, {
    get: (t, key) => (key in kept ? kept[key] : key === "then" ? undefined
      : key === Symbol.toPrimitive ? () => "" : anything()),
    set: (t, key, value) => { kept[key] = value; return true; },
    apply: () => anything(),
  });
}
const byId = {}, asked = [], texts = [];
function element() {
  const kept = { children: [] };
  return new Proxy(function () {}, {
    get: (t, key) => key in kept ? kept[key] : key === "then" ? undefined
      : key === "appendChild" || key === "append" ? (...xs) => { for (const x of xs)
          if (typeof x === "string") texts.push(x); else if (x && x.textContent) texts.push(x.textContent); }
      : key === "replaceChildren" ? () => {} : anything(),
    set: (t, key, value) => {
      kept[key] = value; if (key === "textContent") texts.push(String(value)); return true; },
    apply: () => anything(),
  });
}
const browser = {
  document: { getElementById: (id) => byId[id] || (byId[id] = element()),
              createElement: () => element(), createElementNS: () => element(), hidden: false },
  window: {}, navigator: {}, history: anything(), console, URLSearchParams, Date, Math, JSON,
  location: { protocol: "http:", host: "dispatch.test", hash: "", pathname: "/console" },
  localStorage: { getItem: (k) => k === "lf-token" ? "tok" : k === "lf-district" ? "qingxiu" : null,
                  setItem() {}, removeItem() {} },
  setTimeout: () => 0, clearTimeout: () => {}, setInterval: () => 0, clearInterval: () => {},
  confirm: () => false, prompt: () => null, alert: () => {},
  fetch: async (url) => { const path = url.split("?")[0]; asked.push(url);
    const a = answers[path];
    if (!a) return { ok: false, status: 404, statusText: "nf", json: async () => ({}) };
    return { ok: a[0] < 400, status: a[0], statusText: "x", json: async () => a[1] }; },
};
const ctx = vm.createContext(browser);
vm.runInContext(page, ctx);
(async () => {
  await new Promise(r => setImmediate(r));
  await vm.runInContext("refresh()", ctx);
  vm.runInContext("selected = " + JSON.stringify(selected), ctx);
  let detailError = null;
  try { await vm.runInContext("detail()", ctx); } catch (e) { detailError = String(e && e.stack || e); }
  const err = byId["err"] ? byId["err"].textContent : null;
  process.stdout.write(JSON.stringify({ err, detailError, asked, texts }));
})().catch(e => { process.stderr.write(String(e.stack || e)); process.exit(3); });
"""


async def test_the_console_renders_the_new_entries_and_kpis(clean_redis: str) -> None:
    import shutil

    import pytest

    from services.dispatch.console import CONSOLE_PAGE

    if shutil.which("node") is None:  # before the set-up (run_in_node would skip after it)
        pytest.skip("node is not installed")
    async with both(clean_redis) as (intake, console, broker, key):
        await team(broker, "first", kind="security", lat=22.8171, lon=108.3665)
        await team(broker, "backup", kind="security", lat=22.8190, lon=108.3665)
        await team(broker, "patrol", kind="police", lat=22.8172, lon=108.3665, role="patrol")
        await wait_for_units(clean_redis, 3)
        # a dispute resolved on site by the street patrol: handled_by_force
        done = (await post(intake, key, "ref-0", "dispute"))["incident_id"]
        [d0] = await poll_until(lambda: orders_for(clean_redis, done), "the patrol's order")
        assert d0.team_id == "patrol"
        await respond(broker, d0, "acknowledged", "resolved")
        inc = (await post(intake, key, "ref-1", "noise"))["incident_id"]
        [first] = await poll_until(lambda: orders_for(clean_redis, inc), "the first order")
        await respond(broker, first, "acknowledged", "on_scene")
        await respond(broker, first, "reinforce", note="two more men came")
        [backup] = await poll_until(lambda: orders_for(clean_redis, inc)[1:], "the backup")
        r = await console.post(f"/v1/orders/{backup.order_id}/withdraw", headers=D_ADMIN,
                               json={"note": "needed elsewhere"})
        assert r.status_code == 200, r.text
        await broker.publish(UnitStatus(
            district=DISTRICT, unit_id="first", status="off_duty", agency_id="ag-security",
            agency_kind="security", mode="car", on_shift=False,
            occurred_at=utcnow() + timedelta(milliseconds=5)), stream=streams.UNIT_STATUS.name)

        async def noted() -> dict | None:
            i = (await console.get(f"/v1/incidents/{inc}", headers=D_ADMIN)).json()
            return i if any("went off shift" in (e.get("detail") or "")
                            for e in i["timeline"]) else None

        incident = await poll_until(noted, "the off-shift note", 15)
        answers: dict[str, list] = {}
        for url in ("/v1/me", f"/v1/duty/{DISTRICT}", f"/v1/incidents?district={DISTRICT}&limit=200",
                    f"/v1/units?district={DISTRICT}", f"/v1/kpis?district={DISTRICT}",
                    f"/v1/heatmap?limit=5&district={DISTRICT}", f"/v1/zones?district={DISTRICT}",
                    f"/v1/reports-not-handled?district={DISTRICT}"):
            r = await console.get(url, headers=D_ADMIN)
            answers[url.split("?")[0]] = [r.status_code, r.json()]
        answers[f"/v1/incidents/{inc}"] = [200, incident]
        kpis = answers["/v1/kpis"][1]
        assert "police:patrol" in kpis["handled_by_force"], kpis["handled_by_force"]
    page = CONSOLE_PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
    out = await asyncio.to_thread(run_in_node, CONSOLE_HARNESS, {
        "page": page, "answers": answers, "selected": inc})
    assert out["err"] == "" and out["detailError"] is None, (out["err"], out["asked"])
    shown = "\n".join(str(t) for t in out["texts"])
    from tests.unit.dispatch.test_console_page import said
    # one incident, by street patrol, resolved on site: every share whole
    patrol = said("street_patrol") + "：100.0%" + said("resolved_on_site_of", share="100.0%")
    assert patrol in shown, shown
    # dispatch's own sentence on the timeline in the console's words (by its code), and the
    # command room's note as it was written
    from services.dispatch.timeline_text import say
    (off,) = [e for e in incident["timeline"] if e.get("detail_code") == "off_shift"]
    assert say("off_shift", off["detail_args"], "zh") in shown, shown
    assert "needed elsewhere" in shown, shown


async def test_a_revision_never_times_out_at_once_an_offer_a_volunteer_phone_holds(
        clean_redis: str) -> None:
    """A volunteer patrol has had a P3 help request on its phone for 40 s (deadline 120 s);
    the command room (or a linked report) learns of an injury: P1. The offer's deadline is
    brought in, but not into the past: timed out at once (issued + 30 s) it would count a
    routing timeout and cost each member of the shift 2 points for a deadline they could
    never meet."""
    import redis as sync_redis

    from services.dispatch import store as dstore
    from shared.events import OrderDelivered, OrderWithdrawn

    async with both(clean_redis) as (intake, console, broker, key):
        await team(broker, "aunties", kind="volunteer", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        inc = (await post(intake, key, "ref-1", "help_request"))["incident_id"]
        [order] = await poll_until(lambda: orders_for(clean_redis, inc), "the offer")
        assert order.team_id == "aunties" and order.priority == "P3"
        await broker.publish(OrderDelivered(
            district=DISTRICT, order_id=order.order_id, incident_id=inc, team_id="aunties",
            member_id="m1", device_id="dev1"), stream=streams.ORDER_DELIVERED.name)
        client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            await poll_until(lambda: client.hget(dstore.order_key(order.order_id),
                                                 "delivered_at"), "the receipt")
            # 40 s have passed since the offer (of its 120 s)
            client.hset(dstore.order_key(order.order_id), "issued_at",
                        (utcnow() - timedelta(seconds=40)).isoformat())
        finally:
            client.close()
        r = await console.patch(f"/v1/incidents/{inc}", headers=D_ADMIN,
                                json={"add_flags": ["injury"]})
        assert r.status_code == 200, r.text
        import asyncio
        await asyncio.sleep(2.0)
        withdrawn = [w for w in read_stream(clean_redis, streams.ORDER_WITHDRAWN.name,
                                            OrderWithdrawn) if w.order_id == order.order_id]
        assert not [w for w in withdrawn if w.reason == "timeout"], withdrawn


async def test_a_cancel_request_reaches_the_command_room_and_its_words_no_reporting_system(
        clean_redis: str) -> None:
    # the 110 caller rings back: "my son dialled, it was a mistake"; the system asks to cancel
    words = "Wang Wei 13800138000 says his son dialled by mistake"
    async with both(clean_redis) as (intake, console, broker, key):
        await team(broker, "guard", kind="security", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        inc = (await post(intake, key, "ref-1", "noise"))["incident_id"]
        [order] = await poll_until(lambda: orders_for(clean_redis, inc), "the guard's order")
        r = await intake.post(f"/v1/incidents/{inc}/cancel-requests", headers=key,
                              json={"external_ref": "ref-1-cancel", "reason": words})
        assert r.status_code == 202, r.text

        async def flagged() -> dict | None:
            r = await console.get(f"/v1/incidents/{inc}", headers=D_ADMIN)
            return r.json() if "cancel_requested" in (r.json().get("flagged_for") or []) \
                else None

        room = await poll_until(flagged, "the command room told", 15)
        assert any(e.get("note") == words for e in room["timeline"])
        assert [o["state"] for o in room["orders"]] == ["offered"]  # the guard still goes

        async def told() -> dict | None:
            v = await view(intake, key, inc)
            return v if any(e["kind"] == "cancel_request" for e in v["timeline"]) else None

        seen = await poll_until(told, "the reporting system's view of its request", 15)
        assert seen["flagged"] is True and "13800138000" not in json.dumps(seen)
        # the command room calls back and keeps it open: the system reads that, not the words
        r = await console.post(f"/v1/incidents/{inc}/remarks", headers=D_ADMIN,
                               json={"note": "called back: Wang Wei 13800138000 sounded afraid"})
        assert r.status_code == 201, r.text

        async def answered() -> dict | None:
            v = await view(intake, key, inc)
            return v if v["timeline"][-1].get("detail_code") == "remark_keeps_open" else None

        seen = await poll_until(answered, "the answer in the reporting system's view", 15)
        assert seen["flagged"] is False and "13800138000" not in json.dumps(seen)
        assert order.team_id == "guard"
