"""All four services as real processes against a real Redis of their own."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.policy import DEFAULT_POLICY
from tests.helpers import redis_as_compose_runs_it
from tools.redis_server import free_port
from tools.stack import DEFAULT_PORTS, Stack

# The shipped policy, but a P4 order must be acknowledged within 3 s instead of 300 s, so
# that a missed deadline can be seen in a test; everything else as deployed.
P4_DEADLINE_S = 3


@contextmanager
def running_stack(workdir: Path, edit_policy: Callable[[dict[str, Any]], None],
                  env: Mapping[str, str] | None = None,
                  scale: Callable[[Stack], None] | None = None) -> Iterator[Stack]:
    """The four services on a Redis of their own in `workdir`, with the shipped policy as
    `edit_policy` changes it (shorter waits, so that what takes minutes happens in a test).
    Redis runs as compose runs it: each service logs in as its own ACL user, so every
    journey proves that the deployment's users let the services do their work. The stack's
    `redis_url` (what tests inspect Redis with) is the operators' admin user. `env`: more
    settings of the services (notify's SMS fallback, say); `scale`: called with the stack
    before it starts, to add processes or workers (tests/e2e/test_scaled_out.py)."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    edit_policy(policy)
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy), encoding="utf-8")
    redis_server, passwords = redis_as_compose_runs_it(workdir / "redis")
    with redis_server:
        ports = {name: free_port() for name in DEFAULT_PORTS}
        address = f"127.0.0.1:{redis_server.port}/0"
        running = Stack(redis_url=f"redis://admin:{passwords['admin']}@{address}",
                        redis_urls={name: f"redis://{name}:{passwords[name]}@{address}"
                                    for name in DEFAULT_PORTS},
                        admin_token=secrets.token_urlsafe(16),
                        workdir=workdir, ports=ports,
                        extra_env={"CLAIM_IDLE_MS": "2000", "LOG_LEVEL": "INFO",
                                   "POLICY_FILE": str(policy_file), **(env or {})})
        if scale is not None:
            scale(running)
        running.start()
        try:
            running.wait_ready(timeout=60)
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    def shorter(policy: dict[str, Any]) -> None:
        policy["deadlines_s"]["P4"] = P4_DEADLINE_S

    with running_stack(tmp_path_factory.mktemp("stack"), shorter) as running:
        yield running
