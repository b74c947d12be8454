"""docs/operations.md: "Each service names its Redis connections after itself, so `CLIENT
LIST` shows whose connection is whose", also the connections of what operations staff use:
the dead-letter endpoints and the gauges `/metrics` reads from Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis as sync_redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.metrics import observe_streams
from tests.integration.stream_probes import ADMIN, running


def clients(url: str) -> dict[str, str]:
    """Every connection Redis has: id -> name."""
    with sync_redis.Redis.from_url(url, client_name="test-observer") as observer:
        return {str(c["id"]): c["name"] for c in observer.client_list()}


async def opened_by(url: str, act: Callable[[], Awaitable[Any] | Any]) -> list[str]:
    """The names of the connections `act` opened (and keeps)."""
    before = clients(url)
    result = act()
    if isinstance(result, Awaitable):
        await result
    return [name for cid, name in clients(url).items()
            if cid not in before and name != "test-observer"]


async def test_the_dead_letter_endpoints_connect_under_the_service_s_name(
        clean_redis: str) -> None:
    async with running("notify", clean_redis) as svc:
        async def read_and_replay() -> None:
            r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN)
            assert r.status_code == 200, r.text
            r = await svc.client.post("/v1/admin/dead-letters/order.issued/1-0/replay",
                                      headers=ADMIN)
            assert r.status_code == 404, r.text

        names = await opened_by(clean_redis, read_and_replay)
        assert names and set(names) == {"notify"}, names


async def test_the_stream_gauges_read_redis_under_the_service_s_name(clean_redis: str) -> None:
    reader = InMemoryMetricReader()
    observe_streams("notify", clean_redis, meter_provider=MeterProvider(metric_readers=[reader]))
    names = await opened_by(clean_redis, reader.get_metrics_data)
    assert names and set(names) == {"notify"}, names
