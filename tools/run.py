"""`make run`: an embedded Redis (unless REDIS_URL is set) and the four services, supervised.

Data stays in ./var between runs (Redis AOF, admin token, traces, logs). Ctrl-C stops all.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

from shared.logging import mask_credentials
from shared.settings import check_admin_token
from tools.redis_server import RedisServer, find_binary, version
from tools.stack import DEFAULT_PORTS, ROOT, Stack, StartFailed, describe_exit

log = logging.getLogger("lianfang.run")
REDIS_RETRY_S = 5.0
VAR = Path(os.environ.get("LIANFANG_VAR", ROOT / "var"))


def admin_token() -> str:
    """The user's ADMIN_TOKEN, else the one kept in var/admin-token, else a new one kept
    there. One the services would refuse (too short) stops make run before anything starts."""
    path = VAR / "admin-token"
    token = os.environ.get("ADMIN_TOKEN") or (path.read_text().strip() if path.exists()
                                              else None)
    if token:
        try:
            check_admin_token(token)
        except ValueError as exc:
            where = "ADMIN_TOKEN" if os.environ.get("ADMIN_TOKEN") else f"ADMIN_TOKEN in {path}"
            raise SystemExit(f"{where}: {exc}") from None
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, token + "\n")
    return token


def write_private(path: Path, text: str) -> None:
    """`text` in a file only its owner may read, from its first byte: it holds the admin
    token."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)


def port_free(port: int) -> bool:
    """Nothing listens on the port. Bound as redis-server binds it (SO_REUSEADDR): the
    connections of a Redis just stopped linger in TIME-WAIT there for a minute, and must not
    move the next one to another port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def refuse_taken_ports(ports: dict[str, int]) -> None:
    """Stops `make run` before anything starts when a service's port is taken: the service
    could never bind it, and the other program's answers to /health would pass for it."""
    taken = [f"{port} ({name})" for name, port in ports.items() if not port_free(port)]
    if taken:
        words = ("ports", "are") if len(taken) > 1 else ("port", "is")
        sys.exit(f"make run: {words[0]} {', '.join(taken)} {words[1]} in use by another program "
                 "(another `make run`? `ss -ltnp` names it); stop it and run `make run` again")


def embedded_redis() -> RedisServer:
    binary = find_binary()
    if binary is None:
        sys.exit("no redis-server found: put one on PATH (or REDIS_SERVER_BIN), or set REDIS_URL")
    port = int(os.environ.get("LIANFANG_REDIS_PORT", "6479"))
    if not port_free(port):
        port = 0  # another process has it: take any free port
    # Redis >= 7.2 has WAITAOF: fsync every second and intake waits for the fsync of each
    # incident. Older servers fsync every write, so a 202 always means on disk.
    fsync = "everysec" if version(binary) >= (7, 2) else "always"
    server = RedisServer(VAR / "redis", port=port or None, binary=binary, appendfsync=fsync,
                         own_session=True)
    try:
        return server.start()
    except RuntimeError as exc:  # it cannot read its data, or exited: its log says why
        sys.exit(f"embedded Redis not started: {exc}")


def start_again_if_dead(server: RedisServer) -> bool:
    """Start the embedded Redis again, on its port and with its data (AOF), should it have
    died: the services wait for it and go on, as under compose's `restart: unless-stopped`.
    False while it is still down (this start failed; the next call tries again)."""
    if server.proc is not None and server.proc.poll() is None:
        return True
    why = describe_exit(server.proc.returncode) if server.proc is not None else "is down"
    log.warning("embedded redis-server %s; starting it again on port %d (log: %s)", why,
                server.port, server.logfile)
    try:
        server.start()
    except RuntimeError as exc:
        log.error("embedded Redis not started again, trying again in %gs: %s",
                  REDIS_RETRY_S, exc)
        return False
    return True


def announce(stack: Stack, redis_url: str, token: str) -> None:
    write_private(VAR / "run.env", f"REDIS_URL={redis_url}\nADMIN_TOKEN={token}\n"
                  + "".join(f"{n.upper()}_URL={s.url}\n" for n, s in stack.services.items()))
    lines = ["", "Lianfang is running.", f"  Redis         {mask_credentials(redis_url)}"]
    for name, service in stack.services.items():
        lines.append(f"  {name:<13} {service.url}   API docs: {service.url}/docs")
    lines += [
        f"  command room  {stack.url('dispatch')}/console#token={token}&district=qingxiu",
        f"  device page   {stack.url('notify')}/device",
        f"  admin token   {token}",
        f"  traces        {stack.traces_dir}/<service>.jsonl",
        f"  logs          {VAR / 'logs'}/<service>.log",
        "Try `make demo` in another terminal. Ctrl-C stops everything.", "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def not_started(exc: StartFailed) -> str:
    """What `make run` says when a service could not start, instead of a traceback: why,
    and what the service wrote (a wrong setting: one line per variable, never its value)."""
    return "\n".join([f"make run stopped: {exc}", *(f"  | {line}" for line in exc.lines)])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    VAR.mkdir(parents=True, exist_ok=True)
    token = admin_token()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Before Redis starts: in a session of its own, only this process stops it (after the
    # services), even when a Ctrl-C comes while it starts.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    redis_server = None
    stack = None
    refuse_taken_ports(DEFAULT_PORTS)
    try:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_server = embedded_redis()
            redis_url = redis_server.url
            log.info("embedded redis-server %s on %s (AOF in %s, appendfsync %s)",
                     redis_server.binary, mask_credentials(redis_url), redis_server.workdir,
                     redis_server.appendfsync)
        stack = Stack(redis_url=redis_url, admin_token=token, workdir=VAR, exit_with_parent=True)
        if not stopping:
            stack.start()
            try:
                stack.wait_ready(timeout=60, stopping=lambda: stopping)
            except StartFailed as exc:  # the services and Redis are stopped below
                sys.exit(not_started(exc))
        if not stopping:
            announce(stack, redis_url, token)
        redis_retry_at = 0.0
        while not stopping:
            stack.supervise_once()
            if redis_server is not None and time.monotonic() >= redis_retry_at:
                if not start_again_if_dead(redis_server):
                    redis_retry_at = time.monotonic() + REDIS_RETRY_S
            time.sleep(0.5)
    finally:
        if stack is not None:
            log.info("stopping services")
            stack.stop()
        if redis_server is not None:
            redis_server.stop()
        log.info("stopped")


if __name__ == "__main__":
    main()
