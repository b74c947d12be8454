"""Small helpers shared by the test layers."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
import redis
import uvicorn
from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import BaseModel
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError

from tools.redis_server import RedisServer, free_port

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def decode_entry(fields: dict[bytes, bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A FastStream stream entry -> (body as JSON, headers)."""
    body, headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
    return json.loads(body), headers


def read_stream(url: str, stream: str, model: type[M]) -> list[M]:
    client = redis.Redis.from_url(url)
    try:
        return [model.model_validate(decode_entry(fields)[0])
                for _, fields in client.xrange(stream)]
    finally:
        client.close()


async def poll_until(check: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
                     what: str, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Wait until `check()` returns something truthy; fail saying what we waited for."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def run_in_node(harness: str, payload: dict[str, Any]) -> Any:
    """Runs a page's script (the console, the member's page) in node under `harness`, which
    reads `payload` as JSON on stdin and prints its answer as JSON. Skipped where node is
    not installed: the project itself needs only Python and make."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, "-e", harness], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def redis_as_compose_runs_it(workdir: Path, **options: Any) -> tuple[RedisServer, dict[str, str]]:
    """A redis-server started by the compose deployment's own entrypoint
    (deploy/redis/entrypoint.sh) with its ACL template: the default user off, one user per
    service limited to its keys and streams. Returns the server (not started; `options` go
    to RedisServer) and each user's password ("admin" and the services')."""
    from shared import streams
    from tools.redis_acl import password_variable
    from tools.redis_server import RedisServer, find_binary
    from tools.stack import ROOT

    passwords = {user: secrets.token_urlsafe(16) for user in ("admin", *streams.SERVICES)}
    deploy = ROOT / "deploy" / "redis"
    env = {"REDIS_ADMIN_PASSWORD": passwords["admin"],
           **{password_variable(s): passwords[s] for s in streams.SERVICES},
           "ACL_TEMPLATE": str(deploy / "users.acl.template"),
           "ACL_FILE": str(Path(workdir) / "users.acl"), "REDIS_SERVER": find_binary() or "",
           "REDIS_USER": ""}  # the tests' user (compose's Redis steps down to `redis`)
    server = RedisServer(Path(workdir), binary=str(deploy / "entrypoint.sh"), env=env,
                         ready_auth=("admin", passwords["admin"]), **options)
    return server, passwords


def run_machine(machine: type[Any], *, examples: int, steps: int) -> None:
    """A hypothesis state machine (tests/integration/*/test_stateful.py) run as a test:
    `examples` runs of up to `steps` steps (STATEFUL_EXAMPLES for a longer search), no
    deadline per step (each talks to a real Redis)."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=settings(
        max_examples=int(os.environ.get("STATEFUL_EXAMPLES", str(examples))),
        stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]))


def ctrl_c_reaches_it() -> None:
    """A child's `preexec_fn`: Ctrl-C (SIGINT) stops it as at a terminal, also when the suite
    runs in the background (`make test &` in a script: the shell starts it with SIGINT
    ignored, which every child inherits, so a test's Ctrl-C reached nothing)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ClientFailures:
    """For the state machines: the `at`-th Redis call of the service's client (the one
    whose connection pool is `pool`) fails (`after`: once it ran, its reply lost): a command,
    a pipeline or a transaction's EXEC, a script. redis-py's own retries do not see it:
    Redis stays away for longer than they try."""

    def __init__(self) -> None:
        self.pool: Any = None
        self.at: int | None = None
        self.after = False
        self.calls = 0
        self.failed = False
        self._real: dict[tuple[type, str], Any] = {}

    def arm(self, at: int, *, after: bool) -> None:
        self.at, self.after, self.calls, self.failed = at, after, 0, False

    def disarm(self) -> None:
        self.at = None

    def _wrap(self, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(real)
        async def call(client: Any, *args: Any, **kwargs: Any) -> Any:
            if self.at is None or self.failed or client.connection_pool is not self.pool:
                return await real(client, *args, **kwargs)
            self.calls += 1
            if self.calls < self.at:
                return await real(client, *args, **kwargs)
            self.failed = True
            if self.after:
                await real(client, *args, **kwargs)
            raise RedisConnectionError("Redis went away")

        return call

    def install(self) -> None:
        for cls, name in ((AsyncRedis, "execute_command"), (Pipeline, "execute"),
                          (Pipeline, "immediate_execute_command")):
            self._real[cls, name] = getattr(cls, name)
            setattr(cls, name, self._wrap(getattr(cls, name)))

    def uninstall(self) -> None:
        for (cls, name), real in self._real.items():
            setattr(cls, name, real)


@asynccontextmanager
async def serving(app: Any, *, start_timeout_s: float = 10.0,
                  lifespan: Literal["on", "off"] = "on", **options: Any) -> AsyncIterator[str]:
    """A real uvicorn server for `app` on a free loopback port, in this event loop, started
    within `start_timeout_s`; `lifespan` "off" for an app whose lifespan runs already.
    `options`: uvicorn's, over these (a service's shared.runtime.proxy_options; without,
    X-Forwarded-For is ignored, as by a service without FORWARDED_ALLOW_IPS: uvicorn's own
    default trusts it from loopback)."""
    port = free_port()
    config: dict[str, Any] = {"log_config": None, "access_log": False, "ws_max_size": 65_536,
                              "timeout_graceful_shutdown": 3, "proxy_headers": False, **options}
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan=lifespan, **config))
    task = asyncio.create_task(server.serve())
    await poll_until(lambda: server.started or task.done(), f"a server on port {port}",
                     timeout=start_timeout_s)
    if task.done():
        task.result()
        raise RuntimeError("the server stopped at start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


class Freezable:
    """A redis-server of the test's own that stops answering without going away (SIGSTOP:
    its process frozen, as a stalled disk leaves it) and answers again (SIGCONT)."""

    def __init__(self, server: RedisServer) -> None:
        assert server.proc is not None
        self.server, self._pid, self.frozen = server, server.proc.pid, False

    @property
    def url(self) -> str:
        return self.server.url

    def freeze(self) -> None:
        os.kill(self._pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self._pid, signal.SIGCONT)
        self.frozen = False


@contextmanager
def freezable_redis(path: Path) -> Iterator[Freezable]:
    """A Freezable redis-server in `path`, thawed and stopped however the test ends."""
    redis_server = Freezable(RedisServer(path).start())
    try:
        yield redis_server
    finally:
        if redis_server.frozen:
            redis_server.thaw()
        redis_server.server.stop()
