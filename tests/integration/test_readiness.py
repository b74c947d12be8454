"""`/readyz` as docs/operations.md promises it: ready only while Redis answers, the service's
consumer groups exist and every subscriber reads; ready again by itself once Redis is back,
from its AOF or empty (the groups re-created), with nothing to restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import streams
from tests.helpers import poll_until
from tests.integration.stream_probes import running
from tools.redis_server import RedisServer


@pytest.mark.parametrize("comes_back", ["from its AOF", "empty"])
async def test_a_service_is_not_ready_while_redis_is_away_and_ready_again_once_it_is_back(
        tmp_path: Path, comes_back: str) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=comes_back != "empty").start()
    try:
        async with running("intake", server.url) as svc:
            assert (await svc.client.get("/healthz")).status_code == 200
            await poll_until(svc.ready, "intake ready")
            server.stop()

            async def not_ready() -> bool:
                return not await svc.ready()

            await poll_until(not_ready, "intake not ready while Redis is away", 60)
            assert (await svc.client.get("/healthz")).status_code == 200  # alive all along
            server.start()
            await poll_until(svc.ready, f"intake ready again, Redis back {comes_back}", 60)
            for stream in streams.consumed_by("intake"):
                groups = await svc.redis.xinfo_groups(stream.name)
                assert [g["name"] for g in groups] == [b"intake"], stream.name
    finally:
        server.stop()


async def test_a_service_whose_group_is_gone_is_not_ready_until_it_is_re_created(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        await poll_until(svc.ready, "intake ready")
        await svc.redis.xgroup_destroy(streams.INCIDENT_UPDATED.name, "intake")
        # checked before the watchdog (every 2 s) sees the subscriber stopped
        assert not await svc.ready()
        await poll_until(svc.ready, "intake ready again, its group re-created", 30)
        (group,) = await svc.redis.xinfo_groups(streams.INCIDENT_UPDATED.name)
        assert group["name"] == b"intake"
