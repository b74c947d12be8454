"""A burst of reports at one spot on one dispatch process: its incidents are handled
together (their scripts share round trips), they all want the same nearest teams, and
every one still gets its own team while teams are free; none is left waiting."""

from __future__ import annotations

import asyncio
from collections import Counter

import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued
from tests.helpers import poll_until, read_stream
from tests.integration.dispatch.test_engine import (
    DISTRICT,
    report,
    settings_for,
    team,
    wait_for_units,
)

TEAMS = 24



async def test_a_burst_at_one_spot_gives_every_incident_its_own_free_team(
        clean_redis: str, publisher: RedisBroker) -> None:
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        for n in range(TEAMS):
            await team(publisher, f"t{n}", kind="security", lat=22.8171 + n * 0.0002,
                       lon=108.3665)
        await wait_for_units(clean_redis, TEAMS)
    # The reports queue up while dispatch is down: it then reads them sixteen at a time.
    incidents = [await report(publisher, "noise", priority="P4") for _ in range(TEAMS)]
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):

        def settled() -> list[OrderIssued] | None:
            orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
            return orders if len(orders) >= TEAMS else None

        await poll_until(settled, "an order for every incident", 20)
        await asyncio.sleep(0.5)  # let any (wrong) extra order show up
        orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
        client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            waiting = await client.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1)
        finally:
            await client.aclose()
    assert Counter(o.team_id for o in orders) == {f"t{n}": 1 for n in range(TEAMS)}
    assert sorted(o.incident_id for o in orders) == sorted(incidents)
    assert waiting == []


async def test_in_a_burst_the_most_urgent_report_gets_the_one_free_team(
        clean_redis: str, publisher: RedisBroker) -> None:
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        await team(publisher, "patrol", kind="police", role="patrol", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
    # Read together once dispatch is back, in stream order: noise (P4), traffic (P3), then
    # a theft in progress (P1). The P1 starts first and claims the team (it stays in the
    # queue as well, for the second unit it wants).
    noise = await report(publisher, "noise", priority="P4")
    traffic = await report(publisher, "traffic", priority="P3")
    theft = await report(publisher, "theft_in_progress", priority="P1")
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            async def all_handled() -> list[str] | None:
                waiting = await client.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1)
                return waiting if len(waiting) == 3 else None

            waiting = await poll_until(all_handled, "all three waiting, one assigned")
        finally:
            await client.aclose()
        orders = read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued)
    assert [(o.incident_id, o.team_id) for o in orders] == [(theft, "patrol")]
    assert waiting == [theft, traffic, noise]  # the most urgent first
