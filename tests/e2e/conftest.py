"""All four services as real processes against a real Redis of their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.redis_server import RedisServer, free_port
from tools.stack import DEFAULT_PORTS, Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    with RedisServer(workdir / "redis") as redis_server:
        ports = {name: free_port() for name in DEFAULT_PORTS}
        running = Stack(redis_url=redis_server.url, admin_token=secrets.token_urlsafe(16),
                        workdir=workdir, ports=ports,
                        extra_env={"CLAIM_IDLE_MS": "2000", "LOG_LEVEL": "INFO"})
        running.start()
        try:
            running.wait_ready(timeout=60)
            yield running
        finally:
            running.stop()
