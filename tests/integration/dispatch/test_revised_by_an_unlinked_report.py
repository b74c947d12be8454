"""A linked report that says "knife" revises the open incident (P1, `weapon`): the volunteers
on it are taken off and a guard or the police sent. When its step fails after writing the
revision and before the rest, the report redelivered makes the rest. Found by the state
machine: the command room had meanwhile sent a team to the report (an assignment unlinks
it: another event), and the redelivered report, no longer linked, only dispatched itself;
the incident stayed P1 with a knife and the volunteers alone on it, waiting for nobody. The
revision stands after an unlink, as it does when the unlink comes after a whole step (the
command room judged the report another event; what it said of a knife at that place is not
taken back), so the rest is made. Engine steps called as the consumers and routes call them,
on a real Redis."""

from __future__ import annotations

import contextlib
import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.dispatch import domain, store
from services.dispatch.engine import Dispatcher
from shared.events import IncidentReported, UnitPosition, utcnow
from shared.policy import load_policy

from .conftest import fail_a_write_once
from .test_engine import DISTRICT, SCENE
from .test_stateful import BY_ID, lat_of, unit_status

ADMIN = "admin:admin"
POLICY = load_policy()


async def on_shift(engine: Dispatcher, *team_ids: str) -> None:
    for team_id in team_ids:
        team = BY_ID[team_id]
        await engine.on_unit_status(unit_status(team, "available"))
        await engine.on_unit_positions([UnitPosition(
            district=DISTRICT, unit_id=team_id, lat=lat_of(team), lon=SCENE.lon, at=utcnow())])


def reported(incident_id: str, category: str, *, flags: tuple[str, ...] = (),
             linked_to: str | None = None) -> IncidentReported:
    return IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category=category, priority=POLICY.classify(category, flags), flags=flags,
        location=SCENE, reported_at=utcnow(), linked_to=linked_to)


async def test_a_report_unlinked_after_its_revision_failed_midway_makes_the_rest_when_redelivered(
        two_replicas: tuple[Dispatcher, Dispatcher], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = two_replicas
    await on_shift(engine, "vol1", "sec1", "sec2", "st1")
    # a hazard a volunteer patrol sees to (the nearest; volunteers first for a hazard)
    await engine.on_incident_reported(reported("inc-hazard", "hazard_report"))
    [first] = await store.orders_of(engine.redis, "inc-hazard")
    assert first["team_id"] == "vol1"
    # a second caller at the same place: a man with a knife there; the step fails after
    # the revision's write, before the volunteers' order is withdrawn
    report = reported("inc-knife", "hazard_report", flags=("weapon",), linked_to="inc-hazard")
    failed = fail_a_write_once(monkeypatch, "order.withdrawn")
    with contextlib.suppress(RedisConnectionError):
        await engine.on_incident_reported(report)
    assert failed == ["failed"]
    parent = await store.get_incident(engine.redis, "inc-hazard")
    assert parent is not None and parent["priority"] == "P1"  # the revision was written
    # before the report is redelivered, the command room sends the police to it
    await engine.assign("inc-knife", "st1", reassign=True, by=ADMIN)
    assert (await store.get_incident(engine.redis, "inc-knife") or {})["status"] == "assigned"

    await engine.on_incident_reported(report)  # the reclaimer's redelivery

    orders = {o["team_id"]: o for o in await store.orders_of(engine.redis, "inc-hazard")}
    assert orders["vol1"]["state"] == "withdrawn", "volunteers left alone with a knife"
    parent = await store.get_incident(engine.redis, "inc-hazard")
    assert parent is not None
    assert (parent["priority"], json.loads(parent["flags"])) == ("P1", ["weapon"])
    live = [o for o in orders.values() if o["state"] in domain.LIVE_ORDER_STATES]
    # the report, now its own P1, took the police and the nearest guard; the other guard
    assert [o["team_id"] for o in live] == ["sec2"], "nobody sent in their place"
    assert [e["detail"] for e in await store.timeline(engine.redis, "inc-hazard")
            if e["kind"] == "revised"] == [
        "priority P4 → P1; flags added: weapon by a linked report (inc-knife)"]
