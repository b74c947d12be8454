"""GET /v1/pipeline on a real Redis: whether reports, orders and teams' answers, statuses
and positions move between the services, for the console's warning. Entries are added
with ids of a known time (an id's milliseconds are its time), so an age is known."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from redis.asyncio.client import Pipeline

from services.dispatch import pipeline, store
from shared import streams
from shared.events import UnitPosition, UnitStatus, utcnow
from shared.metrics import COUNTED_LAG
from shared.policy import load_policy
from tests.helpers import poll_until
from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import run_console

from .conftest import console_of
from .test_command_room_queries import ADMIN, desk_token
from .test_engine import DISTRICT
from .test_policy_intervals import policy_file

ORDERS = streams.ORDER_ISSUED.name


def hop(answer: httpx.Response, name: str) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return next(h for h in answer.json()["hops"] if h["hop"] == name)


def add_at(client: sync_redis.Redis, stream: str, at: float) -> str:
    """An entry whose id says it was added at `at` (seconds since 1970)."""
    return client.xadd(stream, {"probe": "x"}, id=f"{int(at * 1000)}-0").decode()


async def test_every_hop_is_ok_once_its_group_finished_and_a_service_never_started_is_said(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """Dispatch runs (its groups read their streams); notify never started on this Redis:
    no group reads order.issued for the phones, and that is said as such, not as ok."""
    client = sync_redis.Redis.from_url(clean_redis)
    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    assert {h["hop"]: h["verdict"] for h in r.json()["hops"]} == {
        "reports": "ok", "orders": "no_group", "answers": "ok", "statuses": "ok",
        "positions": "ok"}, r.text
    assert hop(r, "orders")["group"] == "notify" and r.json()["ok"] is False

    client.xgroup_create(ORDERS, "notify", id="0", mkstream=True)
    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    assert r.json()["ok"] is True, r.text
    assert hop(r, "orders") | {"what": None} == {
        "hop": "orders", "stream": ORDERS, "group": "notify", "what": None,
        "threshold_s": 10.0, "unread": 0, "pending": 0,
        "oldest_age_s": None, "verdict": "ok"}
    # nobody on shift in the district: no positions is no fault
    assert r.json()["positions_feed"]["teams_on_shift"] is False
    client.close()


async def test_orders_not_pushed_to_phones_are_behind_by_the_age_of_the_oldest_unfinished(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """notify read one order and did not finish it (pending), and has not read the next:
    the hop waits since the one it holds. Once that is acknowledged, since the one unread."""
    client = sync_redis.Redis.from_url(clean_redis)
    client.xgroup_create(ORDERS, "notify", id="0", mkstream=True)
    before = time.time()
    held = add_at(client, ORDERS, before - 45)
    add_at(client, ORDERS, before - 5)
    client.xreadgroup("notify", "notify-1", {ORDERS: ">"}, count=1)

    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    waited = time.time() - before
    orders = hop(r, "orders")
    assert (orders["unread"], orders["pending"], orders["verdict"]) == (1, 1, "behind"), orders
    assert 45 - 0.001 <= orders["oldest_age_s"] <= 45 + waited + 0.001, orders
    assert r.json()["ok"] is False
    # the console says it, from dispatch's own answer
    (banner,) = run_console(f"pipelineState = () => ({json.dumps(r.json())});",
                            '$("pipeline").children.map(line => line.textContent)')
    assert banner == [said("pipeline_orders", why=said(
        "pipeline_waiting", age=said("age_seconds", n=round(orders["oldest_age_s"]))))], banner

    client.xack(ORDERS, "notify", held)
    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    waited = time.time() - before
    orders = hop(r, "orders")
    assert (orders["unread"], orders["pending"], orders["verdict"]) == (1, 0, "ok"), orders
    assert 5 - 0.001 <= orders["oldest_age_s"] <= 5 + waited + 0.001, orders
    client.close()


async def test_no_positions_while_a_team_is_on_shift_is_said_and_a_fix_ends_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    client = sync_redis.Redis.from_url(clean_redis)
    client.xgroup_create(ORDERS, "notify", id="0", mkstream=True)
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="t-night", status="available", name="t-night",
        agency_id="ag-police", agency_kind="police", mode="car", on_shift=True),
        stream=streams.UNIT_STATUS.name)
    reader = aioredis.Redis.from_url(clean_redis, decode_responses=True)

    async def on_shift() -> bool:
        unit = await store.get_unit(reader, "t-night")
        return unit is not None and unit.on_shift

    await poll_until(on_shift, "the team on shift in dispatch's projection")
    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    feed = r.json()["positions_feed"]
    assert (feed["teams_on_shift"], feed["newest_age_s"], feed["verdict"]) == (
        True, None, "behind"), feed
    assert r.json()["ok"] is False
    # another district's desk without teams on shift: nothing to say
    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": "elsewhere"})
    assert r.json()["positions_feed"]["verdict"] == "ok"
    assert r.json()["ok"] is True, r.text

    await publisher.publish(UnitPosition(district=DISTRICT, unit_id="t-night", lat=22.8,
                                         lon=108.3, at=utcnow()),
                            stream=streams.UNIT_POSITION.name)
    r = await console.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    feed = r.json()["positions_feed"]
    assert feed["verdict"] == "ok" and feed["newest_age_s"] is not None, feed
    await reader.aclose()
    client.close()


async def test_a_policy_s_shorter_p1_deadline_shortens_the_hops_a_p1_waits_on(
        clean_redis: str, tmp_path: Path) -> None:
    """A deployment's P1 acknowledge deadline of 12 s: reports, orders and answers are said
    behind after a third of it, 4 s, as the shipped 30 s gives 10 s; statuses and positions
    keep their own. An order waiting 6 s is behind there, with time left to radio."""
    client = sync_redis.Redis.from_url(clean_redis)
    client.xgroup_create(ORDERS, "notify", id="0", mkstream=True)
    add_at(client, ORDERS, time.time() - 6)
    deadlines = {"P1": 12, "P2": 60, "P3": 120, "P4": 300}
    async with console_of(clean_redis,
                          policy_file=policy_file(tmp_path, deadlines_s=deadlines)) as desk:
        r = await desk.get("/v1/pipeline", headers=ADMIN, params={"district": DISTRICT})
    thresholds = {h["hop"]: h["threshold_s"] for h in r.json()["hops"]}
    assert thresholds == {"reports": 4.0, "orders": 4.0, "answers": 4.0,
                          "statuses": pipeline.STATUSES_BEHIND_S,
                          "positions": pipeline.POSITIONS_BEHIND_S}, r.text
    assert hop(r, "orders")["verdict"] == "behind", r.text
    client.close()


@pytest.mark.roster(DISTRICT, "other")
async def test_the_pipeline_is_the_command_room_s_to_read(console: httpx.AsyncClient) -> None:
    assert (await console.get("/v1/pipeline")).status_code == 401
    # a device's or a system's token is unknown to dispatch, as a made-up one
    r = await console.get("/v1/pipeline", headers={"Authorization": "Bearer lfd_not-ours"})
    assert r.status_code == 401
    desk = await desk_token(console, [DISTRICT])
    r = await console.get("/v1/pipeline", headers=desk)
    assert r.status_code == 200, r.text
    # a desk's own districts are looked at for teams on shift
    assert r.json()["positions_feed"]["teams_on_shift"] is False
    r = await console.get("/v1/pipeline", headers=desk, params={"district": "other"})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    # the admin without a district: teams on shift not looked for
    r = await console.get("/v1/pipeline", headers=ADMIN)
    assert r.json()["positions_feed"]["teams_on_shift"] is None


async def test_a_far_behind_group_is_read_in_two_round_trips_without_reading_its_backlog(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console asks every 10 s or sooner, from every desk: a backlog of thousands (dispatch back
    after an outage) must cost no more than the few commands of two round trips, each
    group's unread entries read COUNTED_LAG + 1 at most."""
    client = sync_redis.Redis.from_url(clean_redis)
    for hop_ in pipeline.HOPS:
        client.xgroup_create(hop_.stream, hop_.group, id="0", mkstream=True)
    writes = client.pipeline(transaction=False)
    for n in range(5000):
        writes.xadd(streams.INCIDENT_REPORTED.name, {"n": n})
    writes.execute()
    trips: list[list[Any]] = []
    real_execute = Pipeline.execute

    async def counted(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        trips.append([c[0] for c in self.command_stack])
        return await real_execute(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted)
    direct: list[Any] = []
    real_command = aioredis.Redis.execute_command

    async def counted_command(self: aioredis.Redis, *args: Any, **kwargs: Any) -> Any:
        direct.append(args[0])
        return await real_command(self, *args, **kwargs)

    monkeypatch.setattr(aioredis.Redis, "execute_command", counted_command)
    redis = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    answer = await pipeline.read_pipeline(redis, districts=[DISTRICT], now=time.time(),
                                          policy=load_policy())
    await redis.aclose()
    assert direct == []
    assert len(trips) == 2 and all(len(trip) <= 20 for trip in trips), trips
    (reports,) = (h for h in answer["hops"] if h["hop"] == "reports")
    assert reports["unread"] == 5000 and reports["verdict"] == "ok", reports  # just added
    read = trips[1]
    assert [(a[0], a[-2], a[-1]) for a in read] == [("XRANGE", "COUNT", COUNTED_LAG + 1)], read
    client.close()
