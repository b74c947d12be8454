"""Runs the four services as separate processes, exactly as compose runs them
(`python -m services.<name>`), and restarts one that dies, saying why."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO

import httpx

from shared.logging import rotated_name
from tools.redis_server import ended_with_parent

log = logging.getLogger("lianfang.stack")

DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "volunteers": 8003, "notify": 8004}
ROOT = Path(__file__).resolve().parent.parent
# A service's log under `make run`, as compose keeps a container's (docs/deployment.md):
# rotated at 20 MiB, four old files kept, so at most 100 MiB a service.
LOG_MAX_BYTES = 20 * 1024 * 1024
LOG_KEEP = 4


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == os.EX_CONFIG:  # shared.runtime: a variable of its environment is wrong
        return f"exited with code {code}: invalid configuration"
    return f"exited with code {code}"


class StartFailed(RuntimeError):
    """A service that could not be started: `lines`, the last it wrote to its log at that
    start (a wrong setting: the lines naming each variable)."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines


class OutputLog:
    """A service's output (stdout and stderr) written line by line to its log, rotated by
    size (the standard library's RotatingFileHandler): before a line would take the file to
    `max_bytes` it becomes `<name>.1.log`, the one before `<name>.2.log`, and so on; the
    oldest beyond `keep` is deleted. Handed the file itself, a service that runs for months
    under `make run` filled it without limit. Bytes are written as the service wrote them."""

    def __init__(self, path: Path, *, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=keep,
                                         encoding="utf-8", errors="surrogateescape",
                                         delay=True)
        self._file.namer = rotated_name

    def follow(self, pipe: IO[bytes]) -> threading.Thread:
        """Copies what the process writes to `pipe` into the log until it ends, in a thread
        of its own (the supervisor's loop sleeps; a pipe nobody reads stops the service
        once full)."""
        thread = threading.Thread(target=self._copy, args=(pipe,), daemon=True,
                                  name=f"log {self.path.name}")
        thread.start()
        return thread

    def _copy(self, pipe: IO[bytes]) -> None:
        with pipe:
            for line in iter(pipe.readline, b""):
                # one record per line (the handler adds its break), so a rotation never cuts
                # one; a line the file refuses (disk full) is reported by logging on make
                # run's own stderr and dropped, and the reading goes on
                text = line.decode("utf-8", "surrogateescape").removesuffix("\n")
                self._file.handle(logging.makeLogRecord({"msg": text}))

    def close(self) -> None:
        self._file.close()


@dataclass
class Service:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    given_up: bool = False  # it exited for its configuration: starting it again cannot help
    exit_with_parent: bool = False  # see Stack
    log_offset: int = 0  # where its log stood at its last start
    log_inode: int | None = None  # its log file then (None: none; a rotation makes another)
    output: OutputLog | None = None
    output_copied: threading.Thread | None = None  # until the process's output ends

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.output is None:
            self.output = OutputLog(self.log_path)
        self.log_inode, self.log_offset = self._log_at()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=ended_with_parent() if self.exit_with_parent else None,
        )
        self.output_copied = self.output.follow(self.proc.stdout)  # type: ignore[arg-type]
        self.started_at = time.monotonic()
        self.given_up = False

    def _log_at(self) -> tuple[int | None, int]:
        """Its log file's inode and size now (None, 0: none yet)."""
        try:
            stat = self.log_path.stat()
        except OSError:
            return None, 0
        return stat.st_ino, stat.st_size

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def last_output(self, limit: int = 20) -> list[str]:
        """The last `limit` lines it wrote to its log since its last start (since the log's
        last rotation, should it have been rotated meanwhile)."""
        if self.output_copied is not None and not self.alive():
            self.output_copied.join(5)  # what it wrote before it ended, all in the file
        inode, _ = self._log_at()
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self.log_offset if self.log_inode in (None, inode) else 0)
                written = log_file.read()
        except OSError:
            return []
        return written.decode(errors="replace").splitlines()[-limit:]

    def stop_logging(self) -> None:
        """Once its process has ended: the rest of its output written, its log closed."""
        if self.output_copied is not None:
            self.output_copied.join(5)
        if self.output is not None:
            self.output.close()


@dataclass
class Stack:
    """The four services. `exit_with_parent` (`make run`): Linux stops them should their
    parent be killed outright; start and supervise them from the main thread then."""

    redis_url: str
    admin_token: str
    workdir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: dict[str, str] = field(default_factory=dict)
    # A service's own REDIS_URL instead of `redis_url`, as compose gives each its Redis user
    redis_urls: dict[str, str] = field(default_factory=dict)
    exit_with_parent: bool = False
    services: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HTTP_"))}
        for name, port in self.ports.items():
            env = {
                **base,
                **self._member_page_env(name),
                "PYTHONUNBUFFERED": "1",
                "REDIS_URL": self.redis_urls.get(name, self.redis_url),
                "ADMIN_TOKEN": self.admin_token,
                "HTTP_PORT": str(port),
                "VOLUNTEERS_URL": f"http://127.0.0.1:{self.ports.get('volunteers', 8003)}",
                "TRACES_FILE": str(self.workdir / "traces" / f"{name}.jsonl"),
                **self.extra_env,
            }
            self.services[name] = Service(name, port, env, self.workdir / "logs" / f"{name}.log",
                                          exit_with_parent=self.exit_with_parent)

    def _member_page_env(self, name: str) -> dict[str, str]:
        """The member's page (notify's /device) calls intake and volunteers from the browser,
        opened as 127.0.0.1 or localhost; an order's SMS links it."""
        if "notify" not in self.ports:
            return {}
        if name == "notify":  # and the page's own, linked in an order's SMS
            return {f"{other.upper()}_PUBLIC_URL": f"http://127.0.0.1:{self.ports[other]}"
                    for other in ("intake", "volunteers", "notify") if other in self.ports}
        if name in ("intake", "volunteers"):
            page = self.ports["notify"]
            return {"CORS_ORIGINS": f"http://127.0.0.1:{page},http://localhost:{page}"}
        return {}

    @property
    def traces_dir(self) -> Path:
        return self.workdir / "traces"

    def url(self, name: str) -> str:
        return self.services[name].url

    def start(self) -> Stack:
        for service in self.services.values():
            service.start()
        return self

    def wait_ready(self, timeout: float = 30.0, *, restarts: int = 3,
                   stopping: Callable[[], bool] = lambda: False) -> None:
        """Wait until every service answers /readyz, or `stopping()` says to give up.

        A service that dies meanwhile is started again, up to `restarts` times, as the
        supervisor would: on a busy machine one can die of a slow start (FastStream gives each
        subscriber 3 s to start). Not one whose configuration is wrong, nor once `stopping()`
        (a Ctrl-C stops the services too)."""
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        left = dict.fromkeys(self.services, restarts)
        with httpx.Client(timeout=1.0) as client:
            while pending and time.monotonic() < deadline and not stopping():
                for name in sorted(pending):
                    service = self.services[name]
                    if not service.alive():
                        if stopping():  # the Ctrl-C that stops us reached it too
                            return
                        self._start_again_while_starting(service, left)
                        continue
                    try:
                        if client.get(f"{service.url}/readyz").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                time.sleep(0.1)
        if pending and not stopping():
            raise RuntimeError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")

    def _start_again_while_starting(self, service: Service, left: dict[str, int]) -> None:
        code = service.proc.returncode
        why = f"{service.name} {describe_exit(code)}"
        if code == os.EX_CONFIG or left[service.name] == 0:
            raise StartFailed(f"{why}; see {service.log_path}", service.last_output())
        left[service.name] -= 1
        service.restarts += 1
        log.warning("%s while starting; starting it again (restart #%d, log: %s)", why,
                    service.restarts, service.log_path)
        service.start()

    def supervise_once(self) -> list[str]:
        """Restart services that died; returns what was restarted and why."""
        restarted = []
        for service in self.services.values():
            if service.given_up:
                continue
            if service.proc is not None and service.proc.poll() is not None:
                why = describe_exit(service.proc.returncode)
                if service.proc.returncode == os.EX_CONFIG:
                    log.error("%s %s; not restarting it: fix its environment (log: %s)",
                              service.name, why, service.log_path)
                    service.given_up = True
                    continue
                # Back off a service that keeps dying at start, so its log stays readable.
                if time.monotonic() - service.started_at < 2.0 and service.restarts > 2:
                    continue
                service.restarts += 1
                log.warning("%s %s; restarting (restart #%d, log: %s)", service.name, why,
                            service.restarts, service.log_path)
                service.start()
                restarted.append(f"{service.name}: {why}")
        return restarted

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.services[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(15)

    def restart(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)
        self.services[name].start()

    def stop(self, timeout: float = 15.0) -> None:
        for service in self.services.values():
            if service.alive():
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.services.values():
            if service.proc is None:
                continue
            try:
                service.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait()
            service.stop_logging()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
