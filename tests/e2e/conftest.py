"""All four services as real processes against a real Redis of their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared.policy import DEFAULT_POLICY
from tools.redis_server import RedisServer, free_port
from tools.stack import DEFAULT_PORTS, Stack

# The shipped policy, but a P4 order must be acknowledged within 3 s instead of 300 s, so
# that a missed deadline can be seen in a test; everything else as deployed.
P4_DEADLINE_S = 3


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["deadlines_s"]["P4"] = P4_DEADLINE_S
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy), encoding="utf-8")
    with RedisServer(workdir / "redis") as redis_server:
        ports = {name: free_port() for name in DEFAULT_PORTS}
        running = Stack(redis_url=redis_server.url, admin_token=secrets.token_urlsafe(16),
                        workdir=workdir, ports=ports,
                        extra_env={"CLAIM_IDLE_MS": "2000", "LOG_LEVEL": "INFO",
                                   "POLICY_FILE": str(policy_file)})
        running.start()
        try:
            running.wait_ready(timeout=60)
            yield running
        finally:
            running.stop()
