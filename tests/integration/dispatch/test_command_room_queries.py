"""What the command room relies on in dispatch's API (DESIGN.md, "dispatch
(8002)"; DOMAIN.md, the morning review and the KPIs): the board's period and filters, the
check order of its errors, and every KPI against an oracle written from DOMAIN's words
over generated incident histories."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from services.dispatch.main import create_app
from shared.timezones import parse_timezone
from tests.unit.dispatch.test_console_page import run_console

from .conftest import settings_for
from .test_engine import DISTRICT
from .test_supervision import seed_incidents

ADMIN = {"Authorization": "Bearer test-admin-token"}


@asynccontextmanager
async def command_room(url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(url, **settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://dispatch") as client:
            yield client


async def desk_token(console: httpx.AsyncClient, districts: list[str]) -> dict[str, str]:
    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": "Wang Lei", "districts": districts})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def listed(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [i["incident_id"] for i in answer.json()["incidents"]]


# --- the board's period -----------------------------------------------------------------


async def test_a_board_asked_until_a_day_long_past_lists_the_incidents_before_it(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """`until` alone: the month before it, as the KPIs count back from their `until`; not
    the last 30 days from now, which ends before such an `until` begins and answered an
    empty board, read through (`next` null), as if nothing had been reported then."""
    now = datetime.now(UTC)
    seed_incidents(clean_redis, [("inc_march", now - timedelta(days=60), {}),
                                 ("inc_april", now - timedelta(days=45), {}),
                                 ("inc_today", now - timedelta(minutes=5), {})])
    until = (now - timedelta(days=40)).isoformat()
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "until": until})
    assert listed(r) == ["inc_april", "inc_march"]
    r = await console.get("/v1/incidents", headers=ADMIN, params={
        "district": DISTRICT, "until": until, "status": "resolved"})
    assert listed(r) == ["inc_april", "inc_march"]


async def test_a_board_asked_for_a_period_that_ends_before_it_starts_is_a_422_naming_since(
        console: httpx.AsyncClient) -> None:
    """As the KPIs and the heat map answer it: an empty board would say nothing was
    reported."""
    r = await console.get("/v1/incidents", headers=ADMIN, params={
        "district": DISTRICT, "since": "2026-12-05T00:00:00+08:00",
        "until": "2026-12-04T00:00:00+08:00"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "since"


async def test_a_status_no_incident_can_have_is_a_422_naming_status_not_an_empty_board(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """A misspelt status (`unasigned`) answered an empty board: "nothing waits for a team"
    while an incident did. DESIGN.md's statuses are a closed list."""
    seed_incidents(clean_redis, [("inc_waiting", datetime.now(UTC) - timedelta(minutes=3),
                                  {"status": "unassigned", "flagged": "1"})])
    for status in ("unasigned", "open", "Unassigned"):
        r = await console.get("/v1/incidents", headers=ADMIN,
                              params={"district": DISTRICT, "status": status})
        assert r.status_code == 422, (status, r.text)
        assert r.json()["error"]["field"] == "status"
        assert status not in r.json()["error"]["message"]  # never echoes what was sent
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "status": "unassigned"})
    assert listed(r) == ["inc_waiting"]
    # the units on one screen likewise: a misspelt status is not "no team free"
    r = await console.get("/v1/units", headers=ADMIN,
                          params={"district": DISTRICT, "status": "availabel"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "status", r.text
    r = await console.get("/v1/units", headers=ADMIN,
                          params={"district": DISTRICT, "status": "available"})
    assert r.status_code == 200 and r.json()["units"] == []


# --- the check order: 401, 400/422, 404, 403, 409 -----------------------------------------


@pytest.mark.roster(DISTRICT)
async def test_a_wrong_period_of_another_district_is_a_422_before_the_403(
        console: httpx.AsyncClient) -> None:
    """DESIGN.md's order: a field that is wrong (422) before whether this caller may see
    the district (403), for the KPIs and the heat map as for the board."""
    desk = await desk_token(console, [DISTRICT])
    backwards = {"district": "elsewhere", "since": "2026-12-05T00:00:00Z",
                 "until": "2026-12-01T00:00:00Z"}
    too_long = {"district": "elsewhere", "since": "2024-01-01T00:00:00Z",
                "until": "2026-01-01T00:00:00Z"}
    for path in ("/v1/kpis", "/v1/heatmap", "/v1/incidents"):
        for params in (backwards, too_long):
            r = await console.get(path, headers=desk, params=params)
            if path == "/v1/incidents" and params is too_long:
                assert r.status_code == 403, r.text  # the board has no longest period
                continue
            assert r.status_code == 422, (path, params, r.text)
            assert r.json()["error"]["field"] == "since"
        r = await console.get(path, headers=desk, params={"district": "elsewhere"})
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["field"] == "district"  # the one the caller gave


@pytest.mark.roster(DISTRICT)
async def test_assign_and_close_answer_in_designs_order(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """401, then 400 (broken JSON) or 422 naming the field, then 404, then 403, then 409
    with a message naming the state."""
    seed_incidents(clean_redis, [
        ("inc_here", datetime.now(UTC) - timedelta(minutes=3), {"status": "closed"}),
        ("inc_there", datetime.now(UTC) - timedelta(minutes=3), {"status": "closed"})])
    seed_incidents(clean_redis, [("inc_away", datetime.now(UTC) - timedelta(minutes=3),
                                  {"status": "closed"})], district="elsewhere")
    desk = await desk_token(console, [DISTRICT])
    assign = "/v1/incidents/{}/assign"
    r = await console.post(assign.format("inc_nowhere"), content=b"{not json")
    assert r.status_code == 401
    r = await console.post(assign.format("inc_nowhere"), content=b"{not json",
                           headers={**desk, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = await console.post(assign.format("inc_nowhere"), headers=desk, json={"team": "t"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "team_id"
    r = await console.post(assign.format("inc_nowhere"), headers=desk, json={"team_id": "t"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "team_id"  # no such team
    close = "/v1/incidents/{}/close"
    r = await console.post(close.format("inc_nowhere"), headers=desk)
    assert r.status_code == 404
    r = await console.post(close.format("inc_away"), headers=desk)
    assert r.status_code == 403
    assert "field" not in r.json()["error"]  # the incident's district, not one the caller gave
    r = await console.post(close.format("inc_here"), headers=desk)
    assert r.status_code == 409 and "closed" in r.json()["error"]["message"]


# --- the KPIs against an oracle -------------------------------------------------------------

FORCES = ("police:patrol", "police:station", "security", "volunteer")
CATEGORIES = ("noise", "dispute", "violence", "ebike_theft", "help_request")
# Berlin: summer time begins on 29 March 2026, inside the histories' days
ZONES = ("Asia/Shanghai", "+05:45", "Europe/Berlin")
BASE = datetime(2026, 3, 27, 20, 0, tzinfo=UTC)  # a Friday evening


def history(rng: random.Random, count: int) -> list[tuple[str, datetime, dict[str, str]]]:
    """`count` incidents over four days from BASE, their times written in assorted offsets
    (as reporting systems send them), many at the same instant, in every state of an
    incident's life: linked, open, resolved on site, handed over, closed."""
    rows = []
    for n in range(count):
        reported = BASE + timedelta(minutes=rng.randrange(0, 4 * 24 * 60, 30))
        offset = timezone(timedelta(minutes=rng.choice((0, 480, 345, -300))))
        written = reported.astimezone(offset)
        fields = {"category": rng.choice(CATEGORIES), "priority": rng.choice("1234"),
                  "zone_id": rng.choice(("z1", "z2", "")),
                  "timeouts": str(rng.choice((0, 0, 1, 2)))}
        fields["priority"] = "P" + fields["priority"]
        if rng.random() < 0.2:  # the reporting system's clock ahead: received earlier
            fields["received_at"] = (reported - timedelta(seconds=rng.randrange(1, 200))
                                     ).isoformat()
        step = reported
        for name in ("first_assigned_at", "first_ack_at", "first_on_scene_at"):
            if rng.random() < 0.3:
                break
            step += timedelta(seconds=rng.randrange(5, 900))
            fields[name] = step.isoformat()
        end = rng.choice(("open", "resolved", "handed_over", "closed", "linked"))
        status = {"open": rng.choice(("assigned", "on_scene", "unassigned"))}.get(end, end)
        if end in ("resolved", "handed_over") or (end == "closed" and rng.random() < 0.5):
            at = (step + timedelta(minutes=rng.randrange(1, 60))).isoformat()
            force = rng.choice(FORCES)
            if end == "handed_over" or rng.random() < 0.2:
                fields["handed_over_at"] = at
            else:
                fields["resolved_at"] = at
                fields["resolved_by_force"] = force
            if rng.random() < 0.9:  # a record of an earlier version: who handled it unknown
                fields["handled_by_force"] = force
        rows.append((f"inc_{n:04d}", written, {**fields, "status": status,
                                               "reported_at": written.isoformat()}))
    return rows


def oracle(rows: list[tuple[str, datetime, dict[str, str]]], since: datetime,
           until: datetime, tz_name: str) -> dict[str, Any]:
    """The KPIs from DOMAIN.md's words: the incidents reported in [since, until), duplicate
    reports (linked) not counted; on-site resolution rate: resolved there of those resolved
    there or handed over to the station; street patrol's share of those; the response
    time from the report (or its receipt, if earlier) to the first team on scene; routing
    timeouts; incidents by type, by local hour, by zone and by local week."""
    tz = parse_timezone(tz_name)
    period = [f for _, at, f in rows if since <= at < until]
    counted = [f for f in period if f["status"] != "linked"]
    resolved = [f for f in counted if f.get("resolved_at") and not f.get("handed_over_at")]
    handed = [f for f in counted if f.get("handed_over_at")]
    handled = len(resolved) + len(handed)

    def handled_by(f: dict[str, str]) -> str | None:
        """The force of the team that resolved it or handed it over (an older record: the
        resolving team's, kept apart)."""
        return f.get("handled_by_force") or (f.get("resolved_by_force") if f in resolved
                                             else None)

    patrol = [f for f in resolved + handed if handled_by(f) == "police:patrol"]

    def started(f: dict[str, str]) -> datetime:
        times = [datetime.fromisoformat(f["reported_at"])]
        if f.get("received_at"):
            times.append(datetime.fromisoformat(f["received_at"]))
        return min(times)

    scene = [(datetime.fromisoformat(f["first_on_scene_at"]) - started(f)).total_seconds()
             for f in counted if f.get("first_on_scene_at")]
    local = [datetime.fromisoformat(f["reported_at"]).astimezone(tz) for f in counted]
    first = since.astimezone(tz).date()
    last = (until - timedelta(microseconds=1)).astimezone(tz).date() if until > since else first
    weeks: list[date] = []
    monday = first - timedelta(days=first.weekday())
    while monday <= last:
        weeks.append(monday)
        monday += timedelta(days=7)
    per_week = Counter(d.date() - timedelta(days=d.weekday()) for d in local)
    # DESIGN's acknowledge-by deadlines; the wait for a team counts from dispatch's receipt
    deadline_s = {"P1": 30, "P2": 60, "P3": 120, "P4": 300}

    def received(f: dict[str, str]) -> datetime:
        return datetime.fromisoformat(f.get("received_at") or f["reported_at"])

    unsent = [f for f in counted if not f.get("first_assigned_at")]
    ended = [f for f in unsent if f["status"] in ("resolved", "handed_over", "closed")]
    return {
        "incidents": len(counted),
        # nobody sent: open (on the board), ended (closed with no team)
        "never_assigned": (len(unsent), len(unsent) - len(ended), len(ended)),
        "assigned_after_deadline": sum(
            1 for f in counted if f.get("first_assigned_at")
            and (datetime.fromisoformat(f["first_assigned_at"]) - received(f)).total_seconds()
            > deadline_s[f["priority"]]),
        "by_category": dict(Counter(f["category"] for f in counted)),
        "routing_timeouts": sum(int(f["timeouts"]) for f in counted),
        # the inspector's "incident routing timeout": incidents, however many orders each
        "routing_timeout_incidents": sum(1 for f in counted if int(f["timeouts"])),
        "resolved_on_site": len(resolved), "handed_over": len(handed),
        "resolved_on_site_share": round(len(resolved) / handled, 3) if handled else None,
        "patrol_share": round(len(patrol) / handled, 3) if patrol else None,
        "scene": (len(scene), quantile(scene, 0.5), quantile(scene, 0.9)),
        "by_hour": [sum(1 for d in local if d.hour == h) for h in range(24)],
        "by_zone": dict(Counter(f["zone_id"] or "(none)" for f in counted)),
        "by_week": [{"week": w.isoformat(), "count": per_week.get(w, 0)} for w in weeks],
    }


def quantile(values: list[float], q: float) -> float | None:
    """Linear between the closest ranks (the "inclusive" method)."""
    if len(values) < 2:
        return values[0] if values else None
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values) if q == 0.5 else cuts[round(q * 10) - 1]


def answered(kpis: dict[str, Any]) -> dict[str, Any]:
    scene = kpis["time_to_scene_s"]
    patrol = kpis["handled_by_force"].get("police:patrol")
    never = kpis["never_assigned"]
    return {
        "incidents": kpis["incidents"], "by_category": kpis["by_category"],
        "never_assigned": (never["incidents"], never["open"], never["ended"]),
        "assigned_after_deadline": kpis["assigned_after_deadline"],
        "routing_timeouts": kpis["routing_timeouts"],
        "routing_timeout_incidents": kpis["routing_timeout_incidents"],
        "resolved_on_site": kpis["resolved_on_site"], "handed_over": kpis["handed_over"],
        "resolved_on_site_share": kpis["resolved_on_site_share"],
        "patrol_share": patrol["share"] if patrol else None,
        "scene": (scene["count"], scene["p50"], scene["p90"]),
        "by_hour": kpis["by_hour"], "by_zone": kpis["by_zone"], "by_week": kpis["by_week"],
    }


@pytest.mark.parametrize("tz_name", ZONES)
async def test_every_kpi_agrees_with_an_oracle_of_domains_words_on_generated_histories(
        clean_redis: str, tz_name: str) -> None:
    rng = random.Random(tz_name)
    rows = history(rng, 160)
    seed_incidents(clean_redis, rows)
    instants = sorted({at for _, at, _ in rows})
    async with command_room(clean_redis, timezone=tz_name) as client:
        for _ in range(12):
            # the period's ends on reports' own instants (the boundaries), written in
            # another offset than the records', or anywhere
            since, until = sorted(rng.choice((rng.choice(instants), BASE + timedelta(
                minutes=rng.randrange(-600, 6000)))) for _ in range(2))
            shown_in = timezone(timedelta(minutes=rng.choice((0, 480, -420, 330))))
            r = await client.get("/v1/kpis", headers=ADMIN, params={
                "district": DISTRICT, "since": since.astimezone(shown_in).isoformat(),
                "until": until.astimezone(shown_in).isoformat()})
            assert r.status_code == 200, r.text
            got, expected = answered(r.json()), oracle(rows, since, until, tz_name)
            assert got["scene"][0] == expected["scene"][0]
            for n in (1, 2):
                assert got["scene"][n] == pytest.approx(expected["scene"][n], abs=1e-6)
            got["scene"] = expected["scene"] = None
            assert got == expected, (since, until)


# --- the console page -----------------------------------------------------------------------


def test_typing_another_district_shows_its_newest_incidents_and_its_own_map() -> None:
    """The console follows the district typed in (its 3 s refresh reads the field). One
    left on an older page of the board of d1 went on asking d2's board from d1's cursor
    (d2's newest and flagged incidents not shown: "older page 1"), and d1's station zones
    and hot spots stayed on d2's map for up to a minute."""
    d2_boards, d2_heat, zones_drawn = run_console(
        'boards.d1 = [incident("inc_d1")]; boards.d2 = [incident("inc_d2", {district: "d2"})]; '
        'const real = answer; answer = url => { if (url.startsWith("/v1/zones")) '
        'return {zones: [{name: "zone of " + query(url).get("district"), station_agency_id: "s", '
        'polygon: [[108.3, 22.8], [108.31, 22.8], [108.31, 22.81]]}]}; const body = real(url); '
        'if (url.startsWith("/v1/incidents?")) body.next = "cursor_of_" + query(url).get("district"); '
        'return body; };',
        '$("older").onclick(); settle().then(() => { fetched.length = 0; '
        '$("district").value = "d2"; return refresh(); }).then(() => '
        'fetched.filter(u => u.startsWith("/v1/incidents?district=d2")))',
        'fetched.some(u => u.startsWith("/v1/heatmap") && u.includes("district=d2"))',
        '$("map").children.filter(c => c.tag === "text").map(c => c.textContent)'
        '.filter(t => t.startsWith("zone of"))',
    )
    assert d2_boards and not [u for u in d2_boards if "after=" in u], d2_boards
    assert d2_heat
    assert zones_drawn in ([], ["zone of d2"])
