"""Two dispatch replicas on one consumer group, and a restart between an order and its
deadline: no team is ever claimed twice, and no deadline is lost."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from faststream.redis import RedisBroker

from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued, OrderWithdrawn
from tests.helpers import poll_until, read_stream
from tests.integration.dispatch.conftest import processes_ready, settings_for
from tests.integration.dispatch.test_engine import report, team, wait_for_units


async def test_two_replicas_under_a_burst_never_give_one_team_two_open_orders(
        clean_redis: str, publisher: RedisBroker) -> None:
    first = create_app(settings_for(clean_redis, consumer_name="replica-a"))
    second = create_app(settings_for(clean_redis, consumer_name="replica-b"))
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        for n in range(12):
            await team(publisher, f"t{n}", kind="security", lat=22.8171 + n * 0.0005,
                       lon=108.3665)
        await wait_for_units(clean_redis, 12)
        incidents = await asyncio.gather(*(report(publisher, "noise", priority="P4")
                                           for _ in range(30)))

        def settled() -> list[OrderIssued] | None:
            orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
            return orders if len(orders) >= 12 else None

        orders = await poll_until(settled, "every free team given an order", 20)
        await asyncio.sleep(1.0)  # let any (wrong) extra order show up
        orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
    per_team = Counter(o.team_id for o in orders)
    assert len(orders) == 12 and set(per_team.values()) == {1}, per_team
    assert len({o.incident_id for o in orders}) == 12
    assert {o.incident_id for o in orders} <= set(incidents)


async def test_a_deadline_set_before_a_restart_still_fires_after_it(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import policy as policy_module

    real = policy_module.load_policy()
    fast = real.model_copy(update={"deadlines_s": {**real.deadlines_s, "P4": 2}})
    monkeypatch.setattr("services.dispatch.main.load_policy", lambda *_: fast)
    before = create_app(settings_for(clean_redis, consumer_name="before"))
    async with before.router.lifespan_context(before):
        await team(publisher, "g1", kind="security", lat=22.8171, lon=108.3665)
        await team(publisher, "g2", kind="security", lat=22.8190, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(
            lambda: read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued), "an order")
    # dispatch is down when the deadline passes
    await asyncio.sleep(2.5)
    assert read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
    after = create_app(settings_for(clean_redis, consumer_name="after"))
    async with after.router.lifespan_context(after):
        withdrawn = await poll_until(
            lambda: read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn),
            "the order withdrawn after the restart")
        assert [(w.order_id, w.reason) for w in withdrawn] == [(order.order_id, "timeout")]
        orders = await poll_until(
            lambda: (o := read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued))
            and len(o) == 2 and o, "the incident offered to the next team")
        assert [o.team_id for o in orders] == ["g1", "g2"]
        assert orders[1].incident_id == incident_id


async def test_two_dispatch_processes_under_a_burst_never_double_claim(
        clean_redis: str, publisher: RedisBroker, tmp_path) -> None:
    import os
    import signal

    from tools.redis_server import free_port
    from tools.stack import Service

    procs = []
    for name in ("a", "b"):
        env = {**os.environ, "REDIS_URL": clean_redis, "ADMIN_TOKEN": "test-admin-token",
               "HTTP_PORT": str(free_port()), "CONSUMER_NAME": f"proc-{name}",
               "VOLUNTEERS_URL": "http://127.0.0.1:9", "PYTHONUNBUFFERED": "1"}
        service = Service("dispatch", int(env["HTTP_PORT"]), env, tmp_path / f"{name}.log")
        service.start()
        procs.append(service)
    try:
        await processes_ready(procs, "both dispatch processes ready")
        for n in range(10):
            await team(publisher, f"p{n}", kind="security", lat=22.8171 + n * 0.0004,
                       lon=108.3665)
        await wait_for_units(clean_redis, 10)
        await asyncio.gather(*(report(publisher, "noise", priority="P4") for _ in range(40)))
        await poll_until(lambda: len(read_stream(clean_redis, streams.ORDER_ISSUED.name,
                                                 OrderIssued)) >= 10, "ten orders", 30)
        await asyncio.sleep(1.5)
        orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
        per_team = Counter(o.team_id for o in orders)
        assert len(orders) == 10 and set(per_team.values()) == {1}, per_team
        import redis as sync_redis

        consumers = sync_redis.Redis.from_url(clean_redis).xinfo_consumers(
            streams.INCIDENT_REPORTED.name, "dispatch")
        names = {c["name"].decode() for c in consumers if c["pending"] == 0}
        assert {"proc-a", "proc-b"} <= names  # both processes read the group
    finally:
        for p in procs:
            if p.proc and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
                p.proc.wait(15)
