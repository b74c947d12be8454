"""The console page is served without a token and holds no data itself; the board it pages
through with the cursor (`next`, given back as `after`)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from services.dispatch import paging, store
from services.dispatch.config import Settings
from services.dispatch.main import create_app

from .test_engine import DISTRICT
from .test_supervision import seed_incidents

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_the_console_page_is_public_and_self_contained(clean_redis: str) -> None:
    app = create_app(Settings(redis_url=clean_redis, admin_token="test-admin-token"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dispatch") as client:
        r = await client.get("/console")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "connect-src 'self'" in r.headers["content-security-policy"]
        # no CDN, no map tiles: it works offline (the SVG namespace is a name, not a fetch)
        outside = re.findall(r"https?://[^\s\"']+", r.text)
        assert set(outside) == {"http://www.w3.org/2000/svg"}, outside
        assert 'id="map"' in r.text  # the district on one screen
        # it pages the board by the cursor, not by `until` (which would skip a tie)
        assert 'q.set("after", pages[pages.length - 1])' in r.text and "board.next" in r.text
        assert (await client.get("/v1/incidents")).status_code == 401


async def test_the_map_s_zones_are_a_503_to_ask_again_while_volunteers_is_away(
        console: httpx.AsyncClient) -> None:
    # these tests' dispatch has no volunteers: its zones cannot be loaded
    r = await console.get("/v1/zones", params={"district": "qingxiu"},
                          headers={"Authorization": "Bearer test-admin-token"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    message = r.json()["error"]["message"]
    assert "zones are not loaded" in message and message.count("ask again") == 1, message
    r = await console.get("/v1/zones", headers={"Authorization": "Bearer test-admin-token"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"


def store_orders(url: str, incident_id: str, orders: dict[str, dict[str, str]]) -> None:
    """`orders` of the incident as dispatch stores them: {order id: its fields}."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        for order_id, fields in orders.items():
            client.hset(store.order_key(order_id), mapping={
                "order_id": order_id, "incident_id": incident_id, "team_id": f"t-{order_id}",
                "agency_kind": "police", "kind": "dispatch", **fields})
            client.rpush(store.orders_key(incident_id), order_id)
    finally:
        client.close()


async def test_an_incident_s_orders_say_when_each_team_on_its_way_is_expected_there(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """The console counts down to each team's arrival (DOMAIN.md: neighbours reinforce within
    3-5 minutes) and says when one is overdue, on dispatch's clock (a desk PC's may be
    minutes off). The incident's answer says when: `expected_at`, the order's travel time
    (`eta_s`, from where the team was when it was offered) from when it set off: on its way
    since `en_route_at`, else since it took the order (`acknowledged_at`), else since the
    offer; null once it is there or the order is over, and for an order with no travel time
    (a hand-over to a station; a team sent by hand). `now`: dispatch's clock."""
    offered = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    def at(seconds: int) -> str:
        return (offered + timedelta(seconds=seconds)).isoformat()

    seed_incidents(clean_redis, [("inc_fight", offered - timedelta(minutes=1),
                                  {"status": "en_route", "category": "violence",
                                   "priority": "P1"})])
    store_orders(clean_redis, "inc_fight", {
        "ord_offered": {"state": "offered", "issued_at": at(0), "eta_s": "240.0"},
        "ord_took": {"state": "acknowledged", "issued_at": at(0), "eta_s": "240.0",
                     "acknowledged_at": at(30)},
        "ord_going": {"state": "en_route", "issued_at": at(0), "eta_s": "240.0",
                      "acknowledged_at": at(30), "en_route_at": at(90)},
        # went straight to en route, with no acknowledgement first
        "ord_went": {"state": "en_route", "issued_at": at(0), "eta_s": "100.5",
                     "en_route_at": at(20)},
        "ord_there": {"state": "on_scene", "issued_at": at(0), "eta_s": "240.0",
                      "acknowledged_at": at(30), "on_scene_at": at(200)},
        "ord_done": {"state": "resolved", "issued_at": at(0), "eta_s": "240.0",
                     "resolved_at": at(600)},
        "ord_late": {"state": "timed_out", "issued_at": at(0), "eta_s": "240.0"},
        "ord_by_hand": {"state": "offered", "kind": "manual", "issued_at": at(0),
                        "eta_s": ""},
        "ord_station": {"state": "offered", "kind": "handover", "issued_at": at(0),
                        "eta_s": "", "filing_due": at(86400)},
    })
    before = datetime.now(UTC)
    r = await console.get("/v1/incidents/inc_fight", headers=ADMIN)
    assert r.status_code == 200, r.text
    answer = r.json()
    expected = {o["order_id"]: o["expected_at"] for o in answer["orders"]}
    assert expected == {"ord_offered": at(240), "ord_took": at(270), "ord_going": at(330),
                        "ord_went": at(120).replace("+00:00", ".500000+00:00"),
                        "ord_there": None, "ord_done": None, "ord_late": None,
                        "ord_by_hand": None, "ord_station": None}, expected
    assert before <= datetime.fromisoformat(answer["now"]) <= datetime.now(UTC)
    described = (await console.get("/openapi.json")).json()["paths"][
        "/v1/incidents/{incident_id}"]["get"]["description"]
    assert "`expected_at`" in described and "`now`" in described, described


async def page_through(console: httpx.AsyncClient, params: dict[str, str]) -> list[str]:
    """Every row of the board, a page at a time by the cursor of each answer."""
    seen: list[str] = []
    for _ in range(20):
        r = await console.get("/v1/incidents", headers=ADMIN, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [i["incident_id"] for i in page["incidents"]]
        assert page["more"] == (page["next"] is not None)
        if not page["next"]:
            return seen
        params = {**params, "after": page["next"]}
    raise AssertionError(f"no end of the board after 20 pages: {seen}")


async def test_paging_the_board_by_its_cursor_lists_incidents_reported_the_same_instant_once_each(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """Two incidents reported at the same instant (a 110 system's second-resolution times, a
    burst of video alerts) across a page's end: paging by `until` = the last row's time,
    which is left out, loses the second; the answer's `next`, given back as `after`, lists
    each once, in the board's order (the same instant: the greater id first), also with a
    filter."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    seed_incidents(clean_redis, [("inc_a", at - timedelta(minutes=1), {}),
                                 ("inc_b", at, {}), ("inc_c", at, {}),
                                 *[(f"inc_t{n}", at,
                                    {"status": "unassigned", "flagged": "1"} if n % 2 else {})
                                   for n in range(7)]])
    everything = await page_through(console, {"district": DISTRICT, "limit": "1"})
    ties = [f"inc_t{n}" for n in range(6, -1, -1)]
    assert everything == [*ties, "inc_c", "inc_b", "inc_a"]
    assert await page_through(console, {"district": DISTRICT, "limit": "2",
                                        "status": "unassigned"}) == ["inc_t5", "inc_t3", "inc_t1"]
    # `until` is as it was: left out
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "until": at.isoformat()})
    assert [i["incident_id"] for i in r.json()["incidents"]] == ["inc_a"]


@pytest.mark.parametrize("after", ["x", "not a cursor!", paging.encode_cursor(
    paging.Position(1.0, "inc")).upper(), "W251bGwsImluYyJd", "WyJOYU4iLCJpbmMiXQ"])
async def test_a_cursor_the_board_did_not_give_is_a_422_naming_after(
        console: httpx.AsyncClient, after: str) -> None:
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "after": after})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "after"


@pytest.mark.parametrize("seed", range(6))
async def test_the_boards_scan_reads_each_incident_once_in_order_across_districts_and_ties(
        clean_redis: str, seed: int) -> None:
    """paging.IndexScan over store.index_pages, against Redis's own order: random districts
    with many incidents reported at the same instants, a random period and batch, read from
    the top and resumed from random places, give exactly the sorted model."""
    rng = random.Random(seed)
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        model: list[paging.Position] = []
        keys = [store.district_key(f"d{n}") for n in range(rng.randint(1, 4))]
        for key in keys:
            at = {f"inc_{rng.randrange(10**6):06d}{c}": 1_700_000_000 + rng.randrange(40) / 4
                  for c in "xyz" for _ in range(rng.randrange(0, 120))}
            if at:
                await redis.zadd(key, at)
            model += [paging.Position(score, incident_id) for incident_id, score in at.items()]
        since = 1_700_000_000 + rng.randrange(-1, 5)
        until = 1_700_000_000 + rng.randrange(5, 11)
        period = sorted((p for p in model if since <= p.score < until), reverse=True)
        for start in [None, *rng.sample(period, min(4, len(period))),
                      paging.Position(since + 2.5, "inc_5")]:
            scan = paging.IndexScan(redis, keys, since_ts=since, until_ts=until, after=start,
                                    batch=rng.randint(1, 60))
            read: list[paging.Position] = []
            while batch := await scan.next_batch():
                read += batch
            assert read == [p for p in period if start is None or p.comes_after(start)]
    finally:
        await redis.aclose()
