"""`make run`'s embedded Redis: one server per data folder, stopped by `make run` itself
after the services, and not left running when `make run` is killed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import ctrl_c_reaches_it
from tools.redis_server import RedisServer, free_port
from tools.stack import ROOT

# `make run`'s Redis, started in a process of its own that prints the server's pid and
# waits for a Ctrl-C, then stops it as `make run` stops it once the services are down.
MAKE_RUN_REDIS = """
import time
import tools.run as run
server = run.embedded_redis()
try:
    print(server.proc.pid, flush=True)
    time.sleep(120)
except KeyboardInterrupt:
    server.stop()
"""

# Any program's RedisServer, in a process of its own that prints the server's pid.
A_REDIS = """
import sys, time
from pathlib import Path
from tools.redis_server import RedisServer
server = RedisServer(Path(sys.argv[1])).start()
print(server.proc.pid, flush=True)
time.sleep(120)
"""


Started = tuple[subprocess.Popen[str], int]


@pytest.fixture
def start_child(tmp_path: Path) -> Iterator[Callable[..., Started]]:
    """Runs a script in a new session (a signal to its group reaches nothing of pytest's)
    and returns it with the pid of the redis-server it started. Afterwards, kills what is
    left of both: a redis-server only while it is still the one on this test's folder
    (it works in its data folder)."""
    started: list[Started] = []

    def start(script: str, *args: str) -> Started:
        env = {**os.environ, "LIANFANG_VAR": str(tmp_path),
               "LIANFANG_REDIS_PORT": str(free_port())}
        env.pop("REDIS_URL", None)
        child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, text=True, start_new_session=True,
                                 preexec_fn=ctrl_c_reaches_it)
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            child.wait(10)
            pytest.fail(f"the child did not start its redis-server (exit {child.returncode})")
        started.append((child, int(line)))
        return started[-1]

    yield start
    for child, pid in started:
        child.kill()
        child.wait(10)
        child.stdout.close()  # type: ignore[union-attr]
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == str(tmp_path / "redis"):
                os.kill(pid, signal.SIGKILL)


def folder_free(folder: Path) -> bool:
    """No redis-server (nor its parent) holds the folder's lock any more."""
    with (folder / "redis.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True


def test_a_second_redis_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as first:
        second = RedisServer(tmp_path / "redis")
        try:
            with pytest.raises(RuntimeError, match=f"in use by redis-server pid "
                                                   f"{first.proc.pid} on port {first.port}"):
                second.start()
            assert second.proc is None
        finally:
            second.stop()
    with RedisServer(tmp_path / "redis") as again:  # the first stopped: the folder is free
        assert again.proc is not None


def test_a_redis_left_running_by_a_killed_parent_keeps_its_folder(
        tmp_path: Path, start_child: Callable[..., Started]) -> None:
    # A `make run` SIGKILLed (on a system without a parent-death signal): its Redis runs on.
    child, pid = start_child(A_REDIS, str(tmp_path / "redis"))
    child.kill()
    child.wait(10)
    os.kill(pid, 0)  # still running
    second = RedisServer(tmp_path / "redis")
    try:
        with pytest.raises(RuntimeError, match=f"in use by redis-server pid {pid}"):
            second.start()
    finally:
        second.stop()


def test_ctrl_c_reaches_make_runs_redis_only_through_make_run(
        tmp_path: Path, start_child: Callable[..., Started]) -> None:
    # At the terminal, Ctrl-C goes to the whole foreground group: make, `make run` and the
    # services. Redis must stop after them, when `make run` tells it to, with their last
    # writes in.
    child, _ = start_child(MAKE_RUN_REDIS)
    os.killpg(child.pid, signal.SIGINT)
    assert child.wait(30) == 0
    log = (tmp_path / "redis" / "redis.log").read_text()
    assert "Received SIGTERM" in log
    assert "Received SIGINT" not in log


def test_a_killed_make_run_leaves_no_redis_running(
        tmp_path: Path, start_child: Callable[..., Started]) -> None:
    child, _ = start_child(MAKE_RUN_REDIS)
    assert not folder_free(tmp_path / "redis")
    child.kill()
    child.wait(10)
    deadline = time.monotonic() + 20
    while not folder_free(tmp_path / "redis") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert folder_free(tmp_path / "redis")  # the next `make run` can start its Redis there
    assert "Received SIGTERM" in (tmp_path / "redis" / "redis.log").read_text()


def test_a_redis_killed_during_an_aof_rewrite_starts_again_on_its_folder(tmp_path: Path) -> None:
    # The rewrite is a child the server forked: it holds the folder's lock a moment longer.
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis(port=server.port)
        client.mset({f"key-{i}": i for i in range(20)})
        # 1 s a key: the rewrite, which notices its server is gone between two keys, holds
        # the folder up to a second after it.
        client.config_set("rdb-key-save-delay", 1_000_000)
        client.bgrewriteaof()
        client.close()
        server.kill()
        assert not folder_free(server.workdir)
        server.start()
        client = redis.Redis(port=server.port)
        assert client.get("key-7") == b"7"
        client.close()


# --- a port taken between its choice and the bind (tests run in several processes) ------


def own_pid(server: RedisServer) -> int:
    client = redis.Redis(port=server.port)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_a_chosen_port_another_redis_took_meanwhile_is_given_up_for_a_free_one(
        tmp_path: Path) -> None:
    # Another process's Redis answers PING on the port before this one fails to bind it:
    # taken for this server, the tests would flush each other's data.
    with RedisServer(tmp_path / "other") as other:
        server = RedisServer(tmp_path / "mine")
        server.port = other.port  # what free_port() gave both
        with server:
            assert server.proc is not None
            assert server.port != other.port
            assert own_pid(server) == server.proc.pid
        assert own_pid(other) == other.proc.pid  # the other one untouched


def test_a_chosen_port_bound_by_anything_else_meanwhile_is_given_up_for_a_free_one(
        tmp_path: Path) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(tmp_path / "mine")
        server.port = taken.getsockname()[1]
        with server:
            assert server.proc is not None and server.port != taken.getsockname()[1]
            assert own_pid(server) == server.proc.pid


def test_a_port_asked_for_is_never_moved(tmp_path: Path) -> None:
    # `make run`'s 6479, a restart's own port: the clients come back to that one.
    with RedisServer(tmp_path / "other") as other:
        server = RedisServer(tmp_path / "mine", port=other.port)
        try:
            with pytest.raises(RuntimeError, match="exited"):
                server.start(timeout=10)
        finally:
            server.stop()


def test_make_runs_redis_that_died_is_started_again_on_its_port_with_its_data(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # It died (OOM killer, a crash) and `make run` said nothing: every service stayed
    # unready until someone noticed and started `make run` again.
    from tools import run

    with RedisServer(tmp_path / "redis", port=free_port()) as server:
        client = redis.Redis(port=server.port)
        client.set("incident", "kept")
        client.close()
        port, dead = server.port, server.proc
        server.proc.kill()
        server.proc.wait()

        assert run.start_again_if_dead(server)
        assert server.proc is not dead and server.port == port
        client = redis.Redis(port=port)
        assert client.get("incident") == b"kept"
        client.close()
        assert "embedded redis-server killed by SIGKILL" in caplog.text
        assert run.start_again_if_dead(server)  # running: left alone
        assert server.proc.pid == int(redis.Redis(port=port).info("server")["process_id"])


def test_make_run_refuses_to_start_when_a_service_s_port_is_taken(tmp_path: Path) -> None:
    """Another program on intake's port (a second `make run`, anything): `make run` stops
    at once and names the port, instead of starting Redis and three services, announcing
    "Lianfang is running" because the other program answered intake's /health, and
    restarting intake every two seconds for ever."""
    env = {**os.environ, "LIANFANG_VAR": str(tmp_path),
           "LIANFANG_REDIS_PORT": str(free_port())}
    env.pop("REDIS_URL", None)
    with contextlib.ExitStack() as held:
        listener = socket.socket()
        held.enter_context(listener)
        with contextlib.suppress(OSError):  # taken already: by something else, as well
            listener.bind(("127.0.0.1", 8001))
            listener.listen()
        done = subprocess.run([sys.executable, "-m", "tools.run"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "8001" in done.stderr and "intake" in done.stderr, done.stderr
    assert "Lianfang is running" not in done.stdout
    assert not (tmp_path / "redis").exists(), "Redis was started before the ports were looked at"
