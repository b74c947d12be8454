"""Categories as a deployment's policy file makes them: one the file adds is dispatched as
the file says; one dispatch's file lacks (intake's file has it) is never lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis
import yaml
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderWithdrawn
from shared.policy import DEFAULT_POLICY
from tests.helpers import poll_until, read_stream

from .conftest import settings_for
from .test_assign import ADMIN
from .test_engine import orders_for, orders_once, report, team, wait_for_units


def policy_file(tmp_path: Path, **categories: dict[str, Any]) -> Path:
    """The shipped policy with `categories` added, and a P3 order to acknowledge within 1 s
    (not two minutes), written where POLICY_FILE would name it."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    data["categories"].update(categories)
    data["deadlines_s"]["P3"] = 1
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def stored(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(store.incident_key(incident_id))
    finally:
        client.close()


def timeline(url: str, incident_id: str) -> list[dict[str, Any]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [json.loads(e) for e in client.lrange(store.timeline_key(incident_id), 0, -1)]
    finally:
        client.close()


async def test_a_category_added_in_the_policy_file_is_offered_ranked_and_timed_as_it_says(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    # A station adds drone sightings: volunteers first, then security, a P3 whose offer
    # must be acknowledged within the file's P3 deadline. The nearest volunteers get it
    # (not the nearer guards: 3 minutes below first), and when they do not answer within
    # the deadline the next volunteers do.
    path = policy_file(tmp_path, drone_sighting={
        "priority": "P3", "answer": ["volunteer", "security"], "units": 1})
    app = create_app(settings_for(clean_redis, policy_file=str(path)))
    async with app.router.lifespan_context(app):
        await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
        await team(publisher, "aunties", kind="volunteer", lat=22.8200, lon=108.3665)
        await team(publisher, "riders", kind="volunteer", lat=22.8260, lon=108.3665)
        await wait_for_units(clean_redis, 3)
        incident_id = await report(publisher, "drone_sighting", priority="P3")
        orders = await orders_once(clean_redis, incident_id, 2,
                                   "the next volunteers offered at the file's deadline", 15)
    assert [(o.team_id, o.priority, o.category) for o in orders] == [
        ("aunties", "P3", "drone_sighting"), ("riders", "P3", "drone_sighting")]
    first = orders[0]
    # the file's P3 deadline (1 s from the issue), not the shipped 120 s
    assert first.ack_by is not None and (first.ack_by - first.occurred_at).total_seconds() <= 1
    withdrawn = read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
    assert [(w.order_id, w.reason) for w in withdrawn] == [(first.order_id, "timeout")]


async def test_an_incident_of_a_category_dispatchs_policy_lacks_goes_to_police_and_is_flagged(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Intake's policy file has gas leaks, dispatch's not (a file mounted in one service
    # only, or a category renamed in one): intake has answered the caller 202. The report
    # must not fail in dispatch until it is dead-lettered, off the board: the nearest
    # police team (police may answer anything) goes, never the nearer volunteers, and the
    # command room sees the incident flagged, the timeline saying why.
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665)
        await team(publisher, "police-car", kind="police", lat=22.8260, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        incident_id = await report(publisher, "gas_leak", priority="P2")
        orders = await orders_once(clean_redis, incident_id, 1, "an order for the gas leak")
        record = await poll_until(lambda: (r := stored(clean_redis, incident_id))
                                  .get("status") == "assigned" and r, "the incident assigned")
    assert [(o.team_id, o.category) for o in orders] == [("police-car", "gas_leak")]
    assert record["flagged"] == "1"
    assert any("gas_leak" in (e.get("detail") or "") and "policy" in (e.get("detail") or "")
               for e in timeline(clean_redis, incident_id))
    assert orders_for(clean_redis, incident_id) == orders  # one unit, no more


async def test_an_unknown_category_with_nobody_free_waits_flagged_and_blocks_no_other_incident(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Nobody who may go is free: the gas leak waits on the board (flagged), and the waiting
    # queue it sits in still serves the district: the next team coming free is looked at
    # for it, and a help request reported after it gets its team.
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        gas = await report(publisher, "gas_leak", priority="P2")
        await poll_until(lambda: stored(clean_redis, gas).get("status") == "unassigned",
                         "the gas leak unassigned")
        assert stored(clean_redis, gas)["flagged"] == "1"
        await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        help_id = await report(publisher, "help_request", priority="P3")
        (order,) = await orders_once(clean_redis, help_id, 1, "the help request's order")
        assert order.team_id == "guards"
        await team(publisher, "police-car", kind="police", lat=22.8260, lon=108.3665)
        (gas_order,) = await orders_once(clean_redis, gas, 1, "the police for the gas leak")
    assert gas_order.team_id == "police-car"


async def test_an_unknown_categorys_flag_goes_once_the_command_room_sends_a_team_itself(
        clean_redis: str, publisher: RedisBroker, console: httpx.AsyncClient) -> None:
    # The command room has looked at the gas leak and sends the guards (not a kind the
    # fallback would pick): the board's alarm for it ends there.
    gas = await report(publisher, "gas_leak", priority="P2")
    await poll_until(lambda: stored(clean_redis, gas).get("status") == "unassigned",
                     "the gas leak unassigned")
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    assert stored(clean_redis, gas)["flagged"] == "1"
    r = await console.post(f"/v1/incidents/{gas}/assign", headers=ADMIN,
                           json={"team_id": "guards"})
    assert r.status_code in (200, 202), r.text
    (order,) = await orders_once(clean_redis, gas, 1, "the guards' order")
    assert order.team_id == "guards"
    await poll_until(lambda: stored(clean_redis, gas).get("flagged") == "0", "the flag gone")
