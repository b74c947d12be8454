"""A review of the day's hurried changes to dispatch (timers waiting for answers, late orders,
the reassign loop, a revision's backup, the policy's checks): each test a defect found in
them, proved before it was fixed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
import yaml
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued, OrderResponded, OrderWithdrawn, new_id
from shared.http import TryAgain
from shared.policy import DEFAULT_POLICY, load_policy
from tests.helpers import poll_until, read_stream

from .conftest import fail_once, settings_for
from .test_assign import ADMIN
from .test_engine import DISTRICT, orders_once, report, team, wait_for_units
from .test_manual_races import guard_backed_by_volunteers, state_of
from .test_outage_catchup import fast_deadlines

# --- a deadline waits for its own team's answers, not for every team's -------------------


async def test_an_answer_of_another_incident_stuck_in_the_stream_holds_no_deadline_back(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # One answer of another incident cannot be handled for now (its incident's lock is held
    # by a stalled step: it is retried until it goes through). The guards offered a help
    # request never answer: their deadline must withdraw the order and offer the next team
    # on time, not two minutes later (ANSWERS_CATCH_UP) because some other team's answer
    # waits in the stream: the same for every deadline of every district meanwhile.
    fast_deadlines(monkeypatch, 1)
    stuck = new_id("ord")
    real_answer = Dispatcher.on_order_responded

    async def on_order_responded(engine: Dispatcher, event: OrderResponded) -> None:
        if event.order_id == stuck:
            raise TryAgain("the incident is held by a stalled step")
        await real_answer(engine, event)

    monkeypatch.setattr(Dispatcher, "on_order_responded", on_order_responded)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    app = create_app(settings_for(clean_redis))
    try:
        async with app.router.lifespan_context(app):
            await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
            await team(publisher, "second", kind="security", lat=22.8190, lon=108.3665)
            await wait_for_units(clean_redis, 2)
            await publisher.publish(OrderResponded(
                district=DISTRICT, order_id=stuck, incident_id=new_id("inc"), team_id="other",
                member_id="m9", response="en_route"), stream=streams.ORDER_RESPONDED.name)
            await poll_until(lambda: client.xpending(streams.ORDER_RESPONDED.name, "dispatch")
                             ["pending"] == 1, "the other incident's answer left pending")
            incident_id = await report(publisher, "help_request", priority="P3")
            [first] = await orders_once(clean_redis, incident_id, 1, "the first order")
            orders = await orders_once(clean_redis, incident_id, 2,
                                       "the next team offered at the deadline", timeout=15)
            assert client.xpending(streams.ORDER_RESPONDED.name, "dispatch")["pending"] == 1
    finally:
        client.close()
    assert [o.team_id for o in orders] == ["first", "second"]
    withdrawn = read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
    assert [(w.order_id, w.reason) for w in withdrawn] == [(first.order_id, "timeout")]


# --- a deployment's policy file ---------------------------------------------------------


def test_a_deployment_file_that_sets_some_priorities_deadlines_keeps_designs_for_the_rest(
        tmp_path: Path) -> None:
    # A deployment with no P4 category of its own gave deadlines for P1-P3 only, as it
    # changes only what it uses (as with the flags, left to DESIGN's). That file must still
    # load (intake and dispatch refused to start on it), and a P4 (a revision, a
    # category's priority changed later) gets DESIGN's 300 s, never a failing order.
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    data["deadlines_s"] = {"P1": 20, "P2": 45, "P3": 90}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    policy = load_policy(path)
    assert policy.deadlines_s == {"P1": 20, "P2": 45, "P3": 90, "P4": 300}


# --- a revision asked again after a failure ---------------------------------------------


async def test_a_weapon_revision_made_again_after_a_failure_still_replaces_the_volunteer_backup(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard on scene asked for backup and got the volunteers; the caller rings back: a
    # knife. The revision takes the volunteers off, then fails (Redis away a moment) before
    # the guard's new backup is looked for; the dispatcher asks again (the console shows
    # the error). The revision made again must still send the guard a backup (the police
    # car), not leave the guard alone with a man with a knife because the volunteers were
    # already off when it looked.
    from .conftest import fill_holding

    incident_id, guard, backup = await guard_backed_by_volunteers(clean_redis, publisher)

    failures = fail_once(monkeypatch, Dispatcher, "_fill", fill_holding("withdrawn"))
    revision = {"add_flags": ["weapon"], "note": "the caller rang back: a man with a knife"}
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json=revision)
    assert failures and r.status_code == 503, r.text
    assert state_of(clean_redis, backup.order_id) == "withdrawn"
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json=revision)
    assert r.status_code == 200, r.text
    orders = await orders_once(clean_redis, incident_id, 3, "another backup for the guard", 5)
    assert [(o.kind, o.team_id) for o in orders] == [
        ("dispatch", "guard"), ("reinforcement", "aunties"), ("reinforcement", "police-car")]
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json=revision)
    assert r.status_code == 200, r.text
    await asyncio.sleep(0.3)  # let any (wrong) third backup show up
    assert len(read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)) == 3


# --- an order sent late keeps the deadline it was sent with -----------------------------


async def test_a_revision_that_makes_nothing_more_urgent_keeps_a_late_orders_whole_deadline(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A fight wants police and security; the security team's offer comes late (a slow
    # search), so the police order, written first, is announced over a second after it was
    # written: it gets its whole deadline from its announcement. The command room then adds
    # a flag that changes no priority: the police team's deadline, the one its phone shows,
    # must not be brought forward to one counted from a moment it never had the order.
    real_offer = Dispatcher._offer
    offers: list[str] = []

    async def slow_second(engine: Dispatcher, inc: dict[str, str], unit: Any,
                          **kwargs: Any) -> Any:
        offers.append(unit.team_id)
        if len(offers) == 2:
            await asyncio.sleep(1.5)
        return await real_offer(engine, inc, unit, **kwargs)

    await team(publisher, "pol", kind="police", lat=22.8180, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8175, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    monkeypatch.setattr(Dispatcher, "_offer", slow_second)
    incident_id = await report(publisher, "violence", priority="P1")
    orders = await orders_once(clean_redis, incident_id, 2, "both orders")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        late = [client.hgetall(store.order_key(o.order_id)) for o in orders]
        [sent_late] = [o for o in late if o.get("sent_late_at")]
        r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                                json={"add_flags": ["drunk"]})
        assert r.status_code == 200, r.text
        after = client.hgetall(store.order_key(sent_late["order_id"]))
    finally:
        client.close()
    assert after["ack_by"] == sent_late["ack_by"]
