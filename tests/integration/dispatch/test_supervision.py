"""What an inspector hunts on the board (DOMAIN.md, "Supervision"): incidents whose order
timed out unacknowledged, and hand-overs the station has not filed in time; and the KPIs'
count of filings that went overdue (受立案超期)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import api, records, store
from services.dispatch.locks import IncidentLocks
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued, OrderResponded, new_id
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, settings_for
from .test_engine import (
    DISTRICT,
    SCENE,
    offered_twice,
    orders_for,
    report,
    team,
    wait_for_units,
)
from .test_handover import decline, hand_over, handover_orders

ADMIN = {"Authorization": "Bearer test-admin-token"}


@asynccontextmanager
async def board(url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(url))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://dispatch") as client:
            yield client


async def problems(client: httpx.AsyncClient, problem: str) -> list[dict[str, object]]:
    r = await client.get(f"/v1/incidents?problem={problem}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["incidents"])


def set_order(url: str, order_id: str, **fields: str) -> None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.order_key(order_id), mapping=fields)
    finally:
        client.close()


def set_incident(url: str, incident_id: str, **fields: str) -> None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), mapping=fields)
    finally:
        client.close()


def order_field(url: str, order_id: str, name: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(store.order_key(order_id), name)
    finally:
        client.close()


def ago(**kw: float) -> str:
    return (datetime.now(UTC) - timedelta(**kw)).isoformat()


async def overdue_on_board(client: httpx.AsyncClient) -> list[str]:
    r = await client.get("/v1/incidents", headers=ADMIN,
                         params={"district": DISTRICT, "problem": "filing_overdue"})
    assert r.status_code == 200, r.text
    return [i["incident_id"] for i in r.json()["incidents"]]


async def kpis(client: httpx.AsyncClient) -> dict[str, Any]:
    """The district's KPIs of the last 24 h."""
    r = await client.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def filings(client: httpx.AsyncClient) -> tuple[int, int]:
    """The KPIs' filings overdue (went overdue) and, of them, those still unfiled."""
    found = await kpis(client)
    return found["filings_overdue"], found["filings_overdue_unfiled"]


async def file_case(url: str, publisher: RedisBroker, order: OrderIssued) -> None:
    """The station's team files the case: it resolves its hand-over order."""
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m2", response="resolved"),
        stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: order_field(url, order.order_id, "state") == "resolved",
                     "the case filed")


async def test_the_board_lists_the_incidents_whose_order_timed_out(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id, _ = await offered_twice(clean_redis, publisher, monkeypatch)
    async with board(clean_redis) as client:
        assert [i["incident_id"] for i in await problems(client, "routing_timeout")] == [
            incident_id]
        assert await problems(client, "filing_overdue") == []
        r = await client.get("/v1/incidents?problem=late", headers=ADMIN)
        assert r.status_code == 422 and "problem" in r.text


async def test_the_kpis_count_an_incident_whose_teams_both_missed_their_deadline_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """DOMAIN.md's "incident routing timeout" (警情分流超时, the console's word for the KPI)
    is an incident's: a help request whose two teams each let the deadline pass is one
    incident timed out, the one the inspector's ?problem=routing_timeout lists, though two
    orders were withdrawn (`routing_timeouts`, as the metric counts them). The KPIs said 2
    beside "incidents: 1", and no figure matched the inspector's list."""
    from .test_outage_catchup import fast_deadlines  # (it imports this module)

    fast_deadlines(monkeypatch, 1)
    async with board(clean_redis) as client:
        await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
        await team(publisher, "second", kind="security", lat=22.8190, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        incident_id = await report(publisher, "help_request", priority="P3")
        client_redis = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            await poll_until(lambda: client_redis.hget(store.incident_key(incident_id),
                                                       "timeouts") == "2",
                             "both teams' deadlines passed", 15)
        finally:
            client_redis.close()
        listed = [i["incident_id"] for i in await problems(client, "routing_timeout")]
        found = await kpis(client)
    assert listed == [incident_id]
    assert (found["incidents"], found["routing_timeouts"]) == (1, 2)
    assert found["routing_timeout_incidents"] == len(listed) == 1


async def test_the_board_lists_the_incidents_a_team_declined_for_the_day_and_the_kpis_count_them(
        clean_redis: str, publisher: RedisBroker) -> None:
    """DOMAIN.md: units may not refuse because the scene is outside their zone. An
    inspector lists the incidents whose offer a team declined (each decline's team and
    words are on the timeline), for the day with `since`, or however long ago; the KPIs
    count the declines beside the routing timeouts."""
    from .test_decline import declined

    incident_id, _ = await declined(clean_redis, publisher)
    now = datetime.now(UTC)
    seed_incidents(clean_redis, [("inc_old_decline", now - timedelta(days=40),
                                  {"declines": "2"}), *newer_reports(3, minutes=5)])
    async with board(clean_redis) as client:
        found = await problems(client, "declined")
        assert [(i["incident_id"], i["declines"]) for i in found] == [
            (incident_id, 1), ("inc_old_decline", 2)]
        r = await client.get("/v1/incidents", headers=ADMIN, params={
            "problem": "declined", "district": DISTRICT, "since": ago(hours=1)})
        assert r.status_code == 200, r.text
        assert [i["incident_id"] for i in r.json()["incidents"]] == [incident_id]
        assert await problems(client, "routing_timeout") == []
        counted = await kpis(client)
    assert (counted["declines"], counted["routing_timeouts"]) == (1, 0)


def seed_incidents(url: str, rows: list[tuple[str, datetime, dict[str, str]]],
                   district: str = DISTRICT) -> None:
    """Incidents stored as dispatch stores them (the hash and the board's indexes), without
    running them through the engine: (id, reported at, extra fields)."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for incident_id, at, extra in rows:
            pipe.hset(store.incident_key(incident_id), mapping={
                "incident_id": incident_id, "district": district, "category": "noise",
                "priority": "P4", "status": "resolved", "lat": "22.817", "lon": "108.3665",
                "flagged": "0", "reported_at": at.isoformat(), **extra})
            pipe.zadd(store.district_key(district), {incident_id: at.timestamp()})
            pipe.zadd(store.ALL_INCIDENTS, {incident_id: at.timestamp()})
        pipe.execute()
    finally:
        client.close()


def heads_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the incidents whose heads the board reads from now on (its filtering)."""
    looked_at: list[str] = []
    real_heads = store.incidents_heads

    async def heads(redis: Any, ids: list[str], *fields: Any) -> Any:
        looked_at.extend(ids)
        return await real_heads(redis, ids, *fields)

    monkeypatch.setattr(store, "incidents_heads", heads)
    return looked_at


def newer_reports(count: int, *, prefix: str = "inc_new", minutes: float = 1
                  ) -> list[tuple[str, datetime, dict[str, str]]]:
    """`count` resolved reports, one a minute back from `minutes` ago: nothing to hunt."""
    now = datetime.now(UTC)
    return [(f"{prefix}_{i:05d}", now - timedelta(minutes=minutes + i), {})
            for i in range(count)]


async def test_the_board_finds_an_old_timeout_and_a_waiting_incident_behind_thousands_of_newer_reports(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """An inspector's `?problem=routing_timeout` finds an incident "however long ago
    reported", and `?status=unassigned` is how the command room finds what still waits for
    a team: the board reads on past 2000 newer reports (a busy city's month) until it has
    found them, rather than filter the newest few thousand and answer an empty list."""
    now = datetime.now(UTC)
    old_timeout = ("inc_old_timeout", now - timedelta(days=40), {"timeouts": "1"})
    waiting = ("inc_old_waiting", now - timedelta(days=3),
               {"status": "unassigned", "flagged": "1"})
    seed_incidents(clean_redis, [old_timeout, waiting, *newer_reports(2000)])
    hunted = await console.get("/v1/incidents", headers=ADMIN,
                               params={"problem": "routing_timeout", "district": DISTRICT})
    unassigned = await console.get("/v1/incidents", headers=ADMIN,
                                   params={"status": "unassigned"})
    assert hunted.status_code == unassigned.status_code == 200
    found = {"routing_timeout": [i["incident_id"] for i in hunted.json()["incidents"]],
             "unassigned": [i["incident_id"] for i in unassigned.json()["incidents"]]}
    assert found == {"routing_timeout": ["inc_old_timeout"], "unassigned": ["inc_old_waiting"]}
    # read through to the end of the period: nothing more to ask for
    for answer in (hunted.json(), unassigned.json()):
        assert (answer["next"], answer["more"], answer["scanned_to"]) == (None, False, None)


@pytest.mark.roster(DISTRICT, "xixiangtang")
async def test_a_dispatchers_board_reads_only_their_districts_and_reaches_past_newer_reports(
        clean_redis: str, console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `district`, a dispatcher's board merges the indexes of their own districts
    (newest first across them) and reads nothing of another's, however busy that one is."""
    now = datetime.now(UTC)
    seed_incidents(clean_redis, newer_reports(2000, prefix="inc_busy"), district="busy")
    seed_incidents(clean_redis, [*newer_reports(600, prefix="inc_here", minutes=1),
                                 ("inc_here_waiting", now - timedelta(days=20),
                                  {"status": "unassigned", "flagged": "1"})])
    seed_incidents(clean_redis, [*newer_reports(600, prefix="inc_there", minutes=0.5),
                                 ("inc_there_waiting", now - timedelta(days=10),
                                  {"status": "unassigned", "flagged": "1"})],
                   district="xixiangtang")
    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": "Wang Lei", "districts": [DISTRICT, "xixiangtang"]})
    desk = {"Authorization": f"Bearer {r.json()['token']}"}
    looked_at = heads_read(monkeypatch)
    r = await console.get("/v1/incidents", headers=desk, params={"status": "unassigned"})
    assert r.status_code == 200, r.text
    assert [i["incident_id"] for i in r.json()["incidents"]] == [
        "inc_there_waiting", "inc_here_waiting"]
    assert looked_at and not [i for i in looked_at if i.startswith("inc_busy")]
    r = await console.get("/v1/incidents", headers=desk, params={"limit": "4"})
    assert [i["incident_id"] for i in r.json()["incidents"]] == [
        "inc_there_00000", "inc_here_00000", "inc_there_00001", "inc_here_00001"]


async def test_a_hunt_that_reaches_its_budget_says_how_far_it_looked_and_is_asked_on_from_there(
        clean_redis: str, console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The board looks at BOARD_SCAN incidents for one page at most: a hunt through months
    of reports answers what it found so far, `scanned_to` (the report time it reached) and
    `next`; asked on with `after`, it goes on from there and finds the rest."""
    monkeypatch.setattr(api, "BOARD_SCAN", 1000)
    monkeypatch.setattr(api, "BOARD_BATCH", 250)
    now = datetime.now(UTC)
    newer = newer_reports(1500)
    seed_incidents(clean_redis, [("inc_old_timeout", now - timedelta(days=40),
                                  {"timeouts": "2"}), *newer])
    params = {"problem": "routing_timeout", "district": DISTRICT}
    first = await console.get("/v1/incidents", headers=ADMIN, params=params)
    assert first.status_code == 200, first.text
    page = first.json()
    assert (page["incidents"], page["count"], page["more"]) == ([], 0, True)
    assert page["scanned_to"] == newer[999][1].isoformat()  # the 1000th newest
    second = await console.get("/v1/incidents", headers=ADMIN,
                               params={**params, "after": page["next"]})
    page = second.json()
    assert [i["incident_id"] for i in page["incidents"]] == ["inc_old_timeout"]
    assert (page["next"], page["more"], page["scanned_to"]) == (None, False, None)


async def test_the_board_lists_a_hand_over_once_its_filing_is_overdue(
        clean_redis: str, publisher: RedisBroker) -> None:
    incident_id, orders = await hand_over(clean_redis, publisher)
    station_order = orders[1].order_id
    async with board(clean_redis) as client:
        assert await problems(client, "filing_overdue") == []  # due in 24 h
        # a day later, the station has not filed
        client_redis = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            client_redis.hset(f"dispatch:order:{station_order}", "filing_due",
                              (datetime.now(UTC) - timedelta(minutes=1)).isoformat())
        finally:
            client_redis.close()
        [overdue] = await problems(client, "filing_overdue")
        assert overdue["incident_id"] == incident_id
        assert overdue["filings_overdue"] == [station_order]
        assert await problems(client, "routing_timeout") == []
        kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
        assert kpis["filings_overdue"] == 1 and kpis["handed_over"] == 1
        assert kpis["filings_overdue_unfiled"] == 1


async def test_a_case_another_station_team_filed_in_time_is_not_overdue_for_the_declined_order(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The station's first team declines the hand-over; another of its teams takes it and
    files the case within its 24 h. The declined order's own due passing makes nothing
    overdue: the filing is judged on the order that was filed, not on every order."""
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300),
                                                   "station-foot": ("police", 22.8310)}):
        await wait_for_units(url, 3)
        await decline(publisher, orders[-1], "busy filing another case")
        await poll_until(lambda: len(handover_orders(url, incident_id)) == 2, "another order")
    async with board(url) as client:
        declined, taken = [o for o in orders_for(url, incident_id) if o.kind == "handover"]
        await file_case(url, publisher, taken)
        # a day later: the declined order's due has passed; the filing was made in time
        set_order(url, declined.order_id, filing_due=ago(minutes=1))
        assert await overdue_on_board(client) == []
        assert await filings(client) == (0, 0)


async def test_a_hand_over_the_command_room_closed_before_its_due_owes_no_filing(
        clean_redis: str, publisher: RedisBroker) -> None:
    """DESIGN: a handed-over incident stays so "until the station's team resolves it or the
    command room closes it". Closed within the 24 h (the station's order withdrawn), it is
    never overdue; closed after its due without a filing, it went overdue (the KPIs count
    it) but is no work left for the inspector's list."""
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    station_order = orders[-1].order_id
    async with board(url) as client:
        r = await client.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert order_field(url, station_order, "state") == "withdrawn"
        # a day later: closed 23 h ago, due a minute ago
        set_incident(url, incident_id, closed_at=ago(hours=23))
        set_order(url, station_order, filing_due=ago(minutes=1))
        assert await overdue_on_board(client) == []
        assert await filings(client) == (0, 0)

        set_order(url, station_order, filing_due=ago(hours=25))  # closed 2 h past its due
        assert await overdue_on_board(client) == []
        assert await filings(client) == (1, 0)


async def test_a_case_filed_late_stays_counted_overdue_and_leaves_the_work_list(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The station files the hand-over two hours after its filing_due: the KPIs (and so
    the review of the period) keep counting it in filings_overdue, as routing timeouts stay
    counted; the inspector's work list and filings_overdue_unfiled drop it: nothing is owed."""
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    station = orders[-1]
    async with board(url) as client:
        set_order(url, station.order_id, filing_due=ago(hours=2))
        assert await overdue_on_board(client) == [incident_id]
        assert await filings(client) == (1, 1)  # overdue, not yet filed
        await file_case(url, publisher, station)
        assert await overdue_on_board(client) == []
        assert await filings(client) == (1, 0)


async def test_a_case_filed_in_time_leaves_the_index_of_hand_overs(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The inspector's list reads hand-overs from their index (store.HANDOVERS), which the
    hand-over joins and the station's filing leaves: it holds what may still be owed."""
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        assert client.zscore(store.HANDOVERS, incident_id) is not None
        async with board(url) as api:
            await file_case(url, publisher, orders[-1])
            assert await filings(api) == (0, 0)
        assert client.zscore(store.HANDOVERS, incident_id) is None
    finally:
        client.close()


def stored_as_of_old(url: str, reported: datetime, *, state: str) -> tuple[str, str]:
    """A hand-over reported at `reported` as an earlier dispatch left it (no index of
    hand-overs), its station order in `state`, due a day and a half hour after the report."""
    incident_id, order_id = new_id("inc"), new_id("ord")
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), mapping={
            "incident_id": incident_id, "district": DISTRICT, "category": "dispute",
            "priority": "P2", "status": "handed_over", "flags": "[]", "lat": repr(SCENE.lat),
            "lon": repr(SCENE.lon), "reported_at": reported.isoformat(), "seq": "3",
            "handed_over_at": (reported + timedelta(minutes=30)).isoformat()})
        client.zadd(store.ALL_INCIDENTS, {incident_id: reported.timestamp()})
        client.zadd(store.district_key(DISTRICT), {incident_id: reported.timestamp()})
        client.hset(store.order_key(order_id), mapping={
            "order_id": order_id, "incident_id": incident_id, "team_id": "station-car",
            "agency_kind": "police", "kind": "handover", "state": state,
            "issued_at": (reported + timedelta(minutes=30)).isoformat(),
            "filing_due": (reported + timedelta(days=1, minutes=30)).isoformat()})
        client.rpush(store.orders_key(incident_id), order_id)
    finally:
        client.close()
    return incident_id, order_id


async def test_an_unfiled_hand_over_stays_on_the_inspectors_list_however_old(
        clean_redis: str) -> None:
    """A hand-over reported 35 days ago that the station has still not filed (its order
    live, due 34 days ago) is the worst case an inspector hunts: `problem=filing_overdue`
    without since (what the console asks) lists it, past the board's 30-day window and
    past however many newer reports; since and until still narrow it."""
    url = clean_redis
    reported = datetime.now(UTC) - timedelta(days=35)
    incident_id, order_id = stored_as_of_old(url, reported, state="acknowledged")
    filed_id, _ = stored_as_of_old(url, reported - timedelta(days=1), state="resolved")
    async with board(url) as client:
        assert await overdue_on_board(client) == [incident_id]
        r = await client.get("/v1/incidents", headers=ADMIN, params={
            "problem": "filing_overdue", "since": (reported + timedelta(days=1)).isoformat()})
        assert r.json()["incidents"] == []
        r = await client.get("/v1/incidents", headers=ADMIN, params={
            "problem": "filing_overdue", "since": reported.isoformat(),
            "until": (reported + timedelta(seconds=1)).isoformat()})
        [row] = r.json()["incidents"]
        assert (row["incident_id"], row["filings_overdue"]) == (incident_id, [order_id])
        r = await client.get("/v1/incidents", headers=ADMIN, params={
            "problem": "filing_overdue", "district": "elsewhere"})
        assert r.json()["incidents"] == []
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:  # both indexed once, the filed one too (what is owed is judged on reading)
        assert client.zscore(store.HANDOVERS, filed_id) is not None
        assert client.exists(records.HANDOVERS_INDEXED)
    finally:
        client.close()


async def test_a_callers_reference_finds_its_incidents_whenever_they_were_reported(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    from shared import streams
    from shared.events import IncidentReported, utcnow
    from tests.helpers import poll_until

    from .test_engine import DISTRICT, SCENE

    ref = "110-20261005-0042"  # the 110 call-taker's number, two months on
    reports = [("inc-old", DISTRICT, ref, 60), ("inc-new", DISTRICT, ref, 0),
               ("inc-else", "xixiangtang", ref, 0), ("inc-other", DISTRICT, "110-x", 0)]
    for incident_id, district, external_ref, days_ago in reports:
        await publisher.publish(IncidentReported(
            district=district, incident_id=incident_id, system_id="sys-110",
            external_ref=external_ref, category="noise", priority="P4", location=SCENE,
            reported_at=utcnow() - timedelta(days=days_ago)), stream=streams.INCIDENT_REPORTED.name)

    async def found() -> list[dict] | None:
        r = await console.get("/v1/incidents", headers=ADMIN,
                              params={"district": DISTRICT, "ref": ref})
        assert r.status_code == 200, r.text
        return r.json()["incidents"] if r.json()["count"] == 2 else None

    rows = await poll_until(found, "both of the district's incidents of that reference")
    assert [(i["incident_id"], i["external_ref"], i["system_id"]) for i in rows] == [
        ("inc-new", ref, "sys-110"), ("inc-old", ref, "sys-110")]  # the newest first
    r = await console.get("/v1/incidents", headers=ADMIN, params={"ref": ref})
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"


def hours_pass(url: str, incident_id: str, hours: float) -> None:
    """`hours` pass for the incident: every time stored on it and on its orders is moved that
    far back (handed over, due, reported, closed), as if it all happened `hours` earlier."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = [store.incident_key(incident_id),
                *(store.order_key(o) for o in client.lrange(store.orders_key(incident_id), 0, -1))]
        for key in keys:
            moved: dict[str, str] = {}
            for name, value in client.hgetall(key).items():
                try:
                    at = datetime.fromisoformat(value)
                except ValueError:
                    continue
                if at.tzinfo is not None:
                    moved[name] = (at - timedelta(hours=hours)).isoformat()
            if moved:
                client.hset(key, mapping=moved)
    finally:
        client.close()


async def filings_of_the_week(client: httpx.AsyncClient) -> tuple[int, int]:
    """filings() of the incidents reported in the last week (the tests' hand-overs are made
    a day or more ago)."""
    r = await client.get("/v1/kpis", headers=ADMIN,
                         params={"district": DISTRICT, "since": ago(days=7)})
    assert r.status_code == 200, r.text
    return r.json()["filings_overdue"], r.json()["filings_overdue_unfiled"]


async def test_a_hand_over_no_station_team_was_ever_on_shift_for_goes_overdue_a_day_after_it(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The guard hands the case over; the station has nobody on shift, so no station order
    is made (tried again every 15 min). The station owed the filing from the hand-over (its
    order, once made, is due a day after it): 30 h later the inspector's list has it, and
    the KPIs count it overdue and unfiled. Before, with no order to judge it on, it was in
    neither however long nobody came."""
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher, station_team=False)
    assert [o.kind for o in orders] == ["dispatch"]
    async with board(url) as client:
        assert await overdue_on_board(client) == []  # due in 24 h
        assert await filings_of_the_week(client) == (0, 0)
        hours_pass(url, incident_id, 23)
        assert await overdue_on_board(client) == []
        hours_pass(url, incident_id, 7)  # 30 h after the hand-over
        assert await overdue_on_board(client) == [incident_id]
        assert await filings_of_the_week(client) == (1, 1)


async def test_a_hand_over_every_station_team_declined_goes_overdue_a_day_after_it(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The station's only team on shift declines the hand-over: no order of the station is
    live (the board flagged, tried again every 15 min). The filing is still owed: past the
    due the declined order carried, the inspector's list names it and the KPIs count it."""
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300)}):
        await decline(publisher, orders[-1], "busy filing another case")
        await poll_until(lambda: handover_orders(url, incident_id) == [
            ("station-car", "declined")], "the hand-over declined")
        await poll_until(lambda: store_incident(url, incident_id).get("flagged") == "1",
                         "the board's flag")
    async with board(url) as client:
        assert await overdue_on_board(client) == []
        hours_pass(url, incident_id, 30)
        [row] = await problems(client, "filing_overdue")
        assert (row["incident_id"], row["filings_overdue"]) == (incident_id,
                                                                [orders[-1].order_id])
        assert await filings_of_the_week(client) == (1, 1)


@pytest.mark.parametrize("closed_after_h", [2, 30])
async def test_a_hand_over_closed_before_any_station_order_counts_overdue_if_closed_late(
        clean_redis: str, publisher: RedisBroker, closed_after_h: float) -> None:
    """No station team was ever on shift for the hand-over, and the command room closes the
    case: within the station's 24 h it owes nothing; 30 h after the hand-over, the filing
    went overdue (the KPIs count it, as a case closed after its order's due), though it is
    no work left for the inspector's list."""
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    async with board(url) as client:
        hours_pass(url, incident_id, closed_after_h)
        r = await client.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code == 200, r.text
        hours_pass(url, incident_id, 40 - closed_after_h)  # looked at 40 h after the hand-over
        assert await overdue_on_board(client) == []
        assert await filings_of_the_week(client) == ((1, 0) if closed_after_h > 24 else (0, 0))


def store_incident(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(store.incident_key(incident_id))
    finally:
        client.close()


async def test_the_unassigned_in_the_order_received_are_read_from_the_flagged_index(
        clean_redis: str, console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's `?status=unassigned` in the order received (every 3 s, each console)
    read the whole index by receipt, up to BOARD_SCAN incidents, for the few flagged: an
    unassigned incident behind more newer reports than the budget was not on its first
    answer. They are read from their own small index, and listed in the order received."""
    monkeypatch.setattr(api, "BOARD_SCAN", 100)
    monkeypatch.setattr(api, "BOARD_BATCH", 50)
    now = datetime.now(UTC)
    waiting = [(f"inc_waiting_{n}", now - timedelta(days=3 + n),
                {"status": "unassigned", "flagged": "1",
                 "received_at": (now - timedelta(hours=n)).isoformat()}) for n in (1, 2)]
    seed_incidents(clean_redis, [*waiting, *newer_reports(300)])
    looked_at = heads_read(monkeypatch)
    for params in ({"status": "unassigned"}, {"flagged": "true"}):
        r = await console.get("/v1/incidents", headers=ADMIN,
                              params={**params, "order": "received", "district": DISTRICT})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert [i["incident_id"] for i in answer["incidents"]] == [
            "inc_waiting_1", "inc_waiting_2"], params  # the newest received first
        assert (answer["next"], answer["more"], answer["scanned_to"]) == (None, False, None)
    assert not [i for i in looked_at if i.startswith("inc_new")]


def incident_field(url: str, incident_id: str, name: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(store.incident_key(incident_id), name)
    finally:
        client.close()


async def review_of(client: httpx.AsyncClient, since: datetime, until: datetime
                    ) -> dict[str, Any]:
    r = await client.get("/v1/kpis", headers=ADMIN, params={
        "district": DISTRICT, "since": since.isoformat(), "until": until.isoformat()})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_the_review_of_the_period_a_filing_fell_due_in_counts_it_however_early_reported(
        clean_redis: str, publisher: RedisBroker, tmp_path: Any) -> None:
    """受立案超期 as the morning review reads it: a hand-over made at 10:30 is due at 10:30
    the next day, so the review of its report's day (read at 08:30 the next morning) had
    nothing overdue yet, and the next day's review, when it went overdue, did not count it
    (the KPIs counted hand-overs by their incident's report): no morning review ever showed
    it. `filings_due` counts the hand-overs whose filing fell due in the period, whenever
    reported: how many, filed in time, not filed by then (overdue, filed late since too) and
    still owed. Here a filing day of 3.6 s puts the report and the due in two periods."""
    from .test_policy_intervals import policy_file

    url = clean_redis
    teams = {"guard": ("security", 22.8171), "station-car": ("police", 22.8300)}
    async with dispatch_with_teams(url, publisher, teams, policy_file=policy_file(
            tmp_path, handover_filing_h=0.001)):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        set_incident(url, incident_id, station_agency_id="ag-police")
        for response in ("acknowledged", "handover"):
            await publisher.publish(OrderResponded(
                district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
                team_id="guard", member_id="m1", response=response),
                stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: handover_orders(url, incident_id), "the station's order")
        [station] = [o for o in orders_for(url, incident_id) if o.kind == "handover"]
    handed = datetime.fromisoformat(incident_field(url, incident_id, "handed_over_at") or "")
    reported = datetime.fromisoformat(incident_field(url, incident_id, "reported_at") or "")
    due = datetime.fromisoformat(incident_field(url, incident_id, "filing_due") or "")
    assert reported < handed + timedelta(seconds=1) < due
    report_day = (reported - timedelta(hours=1), handed + timedelta(seconds=1))
    due_day = (handed + timedelta(seconds=1), handed + timedelta(hours=1))
    async with board(url) as client:
        await poll_until(lambda: datetime.now(UTC) > due + timedelta(seconds=0.5),
                         "the filing's due passed", 10)
        of_due_day = await review_of(client, *due_day)
        assert of_due_day["filings_due"] == {"due": 1, "filed_in_time": 0, "overdue": 1,
                                             "unfiled": 1}, of_due_day
        assert of_due_day["filings_overdue"] == 0  # reported the day before: not its cohort
        of_report_day = await review_of(client, *report_day)
        assert of_report_day["filings_due"]["due"] == 0
        assert of_report_day["filings_overdue"] == 1  # the day's hand-overs that went overdue

        await file_case(url, publisher, station)  # filed late: stays overdue, owes nothing
        filed_late = {"due": 1, "filed_in_time": 0, "overdue": 1, "unfiled": 0}
        assert (await review_of(client, *due_day))["filings_due"] == filed_late
        # archived (its orders gone), it is counted as it stood; forgotten, no more
        redis = aioredis.Redis.from_url(url, decode_responses=True)
        locks = IncidentLocks(redis)
        try:
            assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
            assert (await review_of(client, *due_day))["filings_due"] == filed_late
            assert await records.forget_archived(redis, locks,
                                                 reported_before=time.time() + 1) == 1
            assert (await review_of(client, *due_day))["filings_due"]["due"] == 0
        finally:
            await locks.close()
            await redis.aclose()


async def test_the_review_finds_the_filings_an_earlier_version_left_due_in_its_period(
        clean_redis: str) -> None:
    """Hand-overs made before the index of filings by their due was kept: one the station
    still owes (due 34 days ago), one it filed, one archived overdue; each is counted by
    the review of the day its filing fell due, once the index has caught up with them."""
    url = clean_redis
    reported = datetime.now(UTC) - timedelta(days=35)
    owed, _ = stored_as_of_old(url, reported, state="acknowledged")
    filed, filed_order = stored_as_of_old(url, reported, state="resolved")
    set_order(url, filed_order, resolved_at=(reported + timedelta(hours=2)).isoformat())
    set_incident(url, filed, status="resolved")
    archived, _ = stored_as_of_old(url, reported, state="resolved")
    set_incident(url, archived, status="resolved", archived_at=ago(days=1),
                 filings_overdue='["ord_gone"]')
    due = reported + timedelta(days=1, minutes=30)
    for incident_id in (owed, filed, archived):
        set_incident(url, incident_id, filing_due=due.isoformat())
    async with board(url) as client:
        of_due_day = await review_of(client, due - timedelta(hours=12), due + timedelta(hours=12))
        assert of_due_day["filings_due"] == {"due": 3, "filed_in_time": 1, "overdue": 2,
                                             "unfiled": 1}, of_due_day
        assert (await review_of(client, due + timedelta(hours=12),
                                due + timedelta(days=1)))["filings_due"]["due"] == 0
