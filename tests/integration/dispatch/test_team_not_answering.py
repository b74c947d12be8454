"""A team that lets order after order time out (its crew busy elsewhere, the phone in a bag)
is offered each new incident all the same, the most urgent first: on a festival night a
patrol that answered nothing took three P1 fights in a row, each losing its 20 s deadline
before it went to the next team. Each incident's timeline said "no acknowledgement", but the
team's own row on the console said only "dispatched". The units view now says how many
orders in a row the team let time out and since when (`missed_in_a_row`,
`missed_since`), until it answers one: the command room calls it by radio or takes it off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import store
from shared.events import utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_once, report, team, wait_for_units
from .test_flag_reasons import ADMIN, view_once
from .test_reinforcement import make_due
from .test_take_back import respond


async def row_of(console: httpx.AsyncClient, team_id: str) -> dict[str, object]:
    r = await console.get("/v1/units", params={"district": DISTRICT}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return next(u for u in r.json()["units"] if u["team_id"] == team_id)


async def test_a_team_that_lets_orders_time_out_says_how_many_until_it_answers(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    await team(publisher, "pat", kind="police", role="patrol", lat=22.8172, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    assert (await row_of(console, "pat"))["missed_in_a_row"] == 0
    since = None
    for n in (1, 2):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await orders_once(clean_redis, incident_id, 1, f"order {n}")
        make_due(clean_redis, f"ack:{order.order_id}")
        await view_once(console, incident_id, lambda v: v["status"] == "unassigned",
                        f"order {n} timed out")
        row = await poll_until(lambda n=n: _missed(console, "pat", n), f"{n} missed in a row")
        since = since or row["missed_since"]
        assert row["missed_since"] == since  # the first of the run
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await orders_once(clean_redis, incident_id, 1, "order 3")
    await respond(publisher, order, "acknowledged")
    row = await poll_until(lambda: _missed(console, "pat", 0), "the run ended by an answer")
    assert row["missed_since"] is None


async def _missed(console: httpx.AsyncClient, team_id: str,
                  count: int) -> dict[str, object] | None:
    row = await row_of(console, team_id)
    return row if row["missed_in_a_row"] == count else None


async def test_a_team_removed_while_its_order_times_out_leaves_no_record_behind(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The roster's removal of the team lands between the timeout's look at the team's
    # record and its write: the miss, counted on a record no longer there, must not make
    # one of that count alone (no TTL, no status_at: a team brought back later would
    # start with a stale run, and one never brought back kept it for ever).
    await team(publisher, "pat", kind="police", role="patrol", lat=22.8172, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await orders_once(clean_redis, incident_id, 1, "the order")
    real = store.write_incident_step
    removed: list[str] = []

    async def removal_first(redis: Redis, *args: Any, **kwargs: Any) -> bool:
        if not removed:
            record = await redis.hgetall("dispatch:unit:pat")
            fields = {k: v for k, v in record.items() if k not in ("status_at", "skills_sig")}
            await store.save_unit_status(redis, at=utcnow(), fields=fields, removed=True,
                                         removed_kept_s=60)
            removed.append("pat")
        return await real(redis, *args, **kwargs)

    monkeypatch.setattr(store, "write_incident_step", removal_first)
    make_due(clean_redis, f"ack:{order.order_id}")
    await view_once(console, incident_id, lambda v: v["status"] == "unassigned",
                    "the order timed out")
    assert removed
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        assert client.hgetall("dispatch:unit:pat") == {}
    finally:
        client.close()
