"""Child processes of the benchmark: workers that print one JSON line, services, uvicorn apps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .machine import cpu_seconds

ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The services read OTEL_* and HTTP_* settings: none of the caller's may leak in.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HTTP_"))}
    return {**base, "PYTHONUNBUFFERED": "1", **(extra or {})}


async def spawn(args: list[str], *, log: Path, env: dict[str, str] | None = None,
                stdout_pipe: bool = False) -> asyncio.subprocess.Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=ROOT, env=child_env(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else out, stderr=out,
        )


async def run_worker(module: str, spec: dict[str, Any], *, log: Path,
                     timeout_s: float) -> dict[str, Any]:
    """Runs `python -m module '<spec json>'` and returns the JSON object it prints last."""
    proc = await spawn(["-m", module, json.dumps(spec)], log=log, stdout_pipe=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        await stop(proc)
        raise RuntimeError(f"{module} {spec.get('stage') or spec.get('hop')} did not finish in "
                           f"{timeout_s:.0f}s; see {log}") from None
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} exited with {proc.returncode}; see {log}")
    return json.loads(lines[-1])


async def stop(proc: asyncio.subprocess.Process | None, timeout_s: float = 15.0) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def service(name: str, *, redis_url: str, port: int, admin_token: str, workdir: Path,
                  extra: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """`python -m services.<name>`, configured the way tools.stack.Stack configures it."""
    env = {
        "REDIS_URL": redis_url, "ADMIN_TOKEN": admin_token, "HTTP_PORT": str(port),
        "TRACES_FILE": str(workdir / "traces" / f"{name}.jsonl"), "LOG_LEVEL": "INFO",
        **(extra or {}),
    }
    return await spawn(["-m", f"services.{name}"], log=workdir / "logs" / f"{name}.log", env=env)


async def uvicorn_app(target: str, *, port: int, log: Path,
                      env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """A plain ASGI app under uvicorn with the settings shared.http.serve gives the services."""
    return await spawn(["-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
                        "--log-level", "warning", "--no-access-log"], log=log, env=env)


async def wait_http(port: int, path: str = "/healthz", timeout_s: float = 30.0,
                    proc: asyncio.subprocess.Process | None = None) -> None:
    """Waits until something answers HTTP 200 on 127.0.0.1:port/path."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    while loop.time() < deadline:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await asyncio.wait_for(reader.read(64), 2)
            writer.close()
            if head[9:12] == b"200":
                return
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on port {port}{path} within {timeout_s}s")


async def group_done(r: aioredis.Redis, stream: str, group: str) -> int:
    """Entries of `stream` the group has read and acknowledged (Redis >= 7: entries-read)."""
    for info in await r.xinfo_groups(stream):
        name = info["name"]
        if (name.decode() if isinstance(name, bytes) else name) == group:
            read = info.get("entries-read") or 0
            return int(read) - int(info["pending"])
    return 0


async def poll_progress(
    r: aioredis.Redis, stream: str, group: str, total: int, *, timeout_s: float,
    interval_s: float = 0.005, proc: asyncio.subprocess.Process | None = None,
) -> list[tuple[float, int, float | None]]:
    """(monotonic time, acknowledged, CPU seconds of `proc`) samples until the group has done
    `total` or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    samples: list[tuple[float, int, float | None]] = []
    while loop.time() < deadline:
        done = await group_done(r, stream, group)
        cpu = cpu_seconds(proc.pid) if proc is not None else None
        samples.append((loop.time(), done, cpu))
        if done >= total:
            break
        if proc is not None and proc.returncode is not None:
            break
        await asyncio.sleep(interval_s)
    return samples
