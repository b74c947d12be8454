"""The command room gives a hand-over no station team took to a police team by hand
(POST /v1/incidents/{id}/assign on a handed-over incident), in-process against a real
Redis: the station's order as the automatic one would make it, once."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderResponded, UnitStatus
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, settings_for
from .test_engine import DISTRICT, orders_for, team, wait_for_units
from .test_handover import HANDOVER_NOTE, decline, hand_over, handover_orders, last_update

ADMIN = {"Authorization": "Bearer test-admin-token"}


@contextlib.asynccontextmanager
async def command_room(url: str, publisher: RedisBroker, teams: dict[str, str],
                       ) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch in this process, reached by its HTTP API, with `teams` ({team id: agency
    kind}) on shift near the scene (the guard of the hand-over is known already)."""
    app = create_app(settings_for(url))
    async with app.router.lifespan_context(app):
        for team_id, kind in teams.items():
            await team(publisher, team_id, kind=kind, lat=22.8300, lon=108.3665)
        await wait_for_units(url, len(teams) + 1)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as client:
            yield client


async def assign(console: httpx.AsyncClient, incident_id: str, team_id: str,
                 **body: Any) -> httpx.Response:
    return await console.post(f"/v1/incidents/{incident_id}/assign", headers=ADMIN,
                              json={"team_id": team_id, **body})


def fields(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(store.incident_key(incident_id))
    finally:
        client.close()


def timer(url: str, incident_id: str) -> float | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.zscore(store.TIMERS, f"handover:{incident_id}")
    finally:
        client.close()


def timeline(url: str, incident_id: str) -> list[dict[str, Any]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()


async def test_the_command_room_gives_a_flagged_hand_over_to_a_police_team(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    assert last_update(url, incident_id).flagged and timer(url, incident_id) is not None
    async with command_room(url, publisher, {"station-car": "police"}) as console:
        r = await assign(console, incident_id, "station-car")
        assert r.status_code == 200, r.text
        order_id = r.json()["order_id"]
        again = await assign(console, incident_id, "station-car")  # the answer lost, say
        assert again.status_code == 200 and again.json() == r.json(), again.text
    station_orders = [o for o in orders_for(url, incident_id) if o.kind == "handover"]
    assert [(o.order_id, o.team_id) for o in station_orders] == [(order_id, "station-car")]
    (order,) = station_orders
    assert order.ack_by is None and order.filing_due is not None  # a task: no deadline
    assert order.instructions is not None and order.instructions.startswith(
        f"Handed over by guard. They say: {HANDOVER_NOTE}. "
        "Records: photo img-0031.jpg; video bwc-0417.mp4. File the case by ")
    inc = fields(url, incident_id)
    assert inc["handover_order"] == order_id and inc["status"] == "handed_over"
    assert timer(url, incident_id) is None  # not asked of the station again
    last = last_update(url, incident_id)
    assert (last.status, last.flagged) == ("handed_over", False)  # the command room acted
    handovers = [e for e in timeline(url, incident_id) if e["kind"] == "handover"]
    assert [(e["team_id"], e["order_id"]) for e in handovers] == [("station-car", order_id)]
    assert handovers[0]["detail"].endswith("by admin:admin")


async def test_a_hand_over_goes_by_hand_to_a_police_team_only(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    async with command_room(url, publisher, {"guard-2": "security",
                                             "volunteers": "volunteer"}) as console:
        for team_id in ("guard-2", "volunteers"):
            r = await assign(console, incident_id, team_id)
            assert r.status_code == 409, r.text
            assert "hand-over goes to a police" in r.json()["error"]["message"]
    assert [o.kind for o in orders_for(url, incident_id)] == ["dispatch"]
    assert not fields(url, incident_id).get("handover_order")
    assert last_update(url, incident_id).flagged and timer(url, incident_id) is not None


async def test_a_hand_over_with_a_live_station_order_is_not_given_to_another_team(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)  # station-car has it
    live = orders[-1]
    assert (live.team_id, live.kind) == ("station-car", "handover")
    async with command_room(url, publisher, {"station-car": "police",
                                             "station-foot": "police"}) as console:
        for body in ({}, {"reassign": True}):
            r = await assign(console, incident_id, "station-foot", **body)
            assert r.status_code == 409, r.text
            assert live.order_id in r.json()["error"]["message"]
            assert "station-car" in r.json()["error"]["message"]
        # the team that has it, asked for: its order, nothing new
        same = await assign(console, incident_id, "station-car")
        assert same.status_code == 200 and same.json()["order_id"] == live.order_id, same.text
    assert handover_orders(url, incident_id) == [("station-car", "offered")]


async def test_a_hand_over_goes_by_hand_to_a_station_team_not_the_patrol_brigade(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The special patrol brigade is police too, but files no cases: a station team does.
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    async with command_room(url, publisher, {"station-car": "police"}) as console:
        await publisher.publish(UnitStatus(
            district=DISTRICT, unit_id="spb", status="available", name="spb",
            agency_id="ag-spb", agency_kind="police", agency_role="patrol", mode="car",
            on_shift=True), stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: fields(url, incident_id) and _known(url, "spb"), "spb known")
        r = await assign(console, incident_id, "spb")
        assert r.status_code == 409 and "station" in r.json()["error"]["message"], r.text
        ok = await assign(console, incident_id, "station-car")
        assert ok.status_code == 200, ok.text


def _known(url: str, team_id: str) -> bool:
    client = sync_redis.Redis.from_url(url)
    try:
        return bool(client.exists(f"dispatch:unit:{team_id}"))
    finally:
        client.close()


async def test_a_station_team_declining_the_order_given_by_hand_is_flagged_again(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    async with command_room(url, publisher, {"station-car": "police"}) as console:
        r = await assign(console, incident_id, "station-car")
        assert r.status_code == 200, r.text
        (order,) = [o for o in orders_for(url, incident_id) if o.kind == "handover"]
        await decline(publisher, order, "busy filing another case")
        await poll_until(lambda: last_update(url, incident_id).flagged, "the board's flag")
    assert last_update(url, incident_id).entry.detail == (
        "the hand-over was declined and no other team of the station is on shift: tried "
        "again every 15 min until one takes it")
    assert handover_orders(url, incident_id) == [("station-car", "declined")]
    assert not fields(url, incident_id).get("handover_order")
    due = timer(url, incident_id)
    assert due is not None and due > time.time() + 14 * 60


async def test_the_station_order_made_on_a_retry_clears_the_flag(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    assert last_update(url, incident_id).flagged
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300)}):
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})  # 15 min on
        finally:
            client.close()
        await poll_until(lambda: fields(url, incident_id).get("handover_order"),
                         "the station's order", 8)
    last = last_update(url, incident_id)
    assert last.entry.kind == "handover"
    assert (last.status, last.flagged) == ("handed_over", False)


async def test_a_station_team_answer_after_a_hand_assignment_resolves_it(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    async with command_room(url, publisher, {"station-car": "police"}) as console:
        r = await assign(console, incident_id, "station-car")
        assert r.status_code == 200, r.text
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=r.json()["order_id"], incident_id=incident_id,
            team_id="station-car", member_id="m9", response="resolved"),
            stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: fields(url, incident_id).get("status") == "resolved",
                         "the station filed it")
    assert not last_update(url, incident_id).flagged


async def test_a_hand_over_given_by_hand_is_due_from_the_hand_over_for_its_own_station_only(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Nobody of the owning station took the hand-over for 30 h. Given by hand to one of
    # its teams, the filing is due a day after the hand-over (overdue already); given to
    # another station's team, that station has its own day from now.
    url = clean_redis
    handed_at = datetime.now(UTC) - timedelta(hours=30)
    dues = {}
    # (the other station's team first: the owning station's, once on shift, would be
    # given the second hand-over by itself)
    for team_id, agency_id in (("next-door", "ag-next-door"), ("station-car", "ag-police")):
        incident_id, _ = await hand_over(url, publisher, station_team=False)
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(store.incident_key(incident_id), "handed_over_at", handed_at.isoformat())
        finally:
            client.close()
        async with command_room(url, publisher, {}) as console:
            await publisher.publish(UnitStatus(
                district=DISTRICT, unit_id=team_id, status="available", name=team_id,
                agency_id=agency_id, agency_kind="police", mode="car", on_shift=True),
                stream=streams.UNIT_STATUS.name)
            await poll_until(lambda t=team_id: _known(url, t), f"{team_id} known")
            r = await assign(console, incident_id, team_id)
            assert r.status_code == 200, r.text
        (order,) = [o for o in orders_for(url, incident_id) if o.kind == "handover"]
        assert order.filing_due is not None
        dues[team_id] = order.filing_due
    assert dues["station-car"] == handed_at + timedelta(hours=24)
    assert dues["next-door"] > datetime.now(UTC) + timedelta(hours=23)
