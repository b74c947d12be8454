"""An incident's whole life in CPU: `python -m tools.benchmarks.life` (RATE=50 DUR=8).

The stack as `make bench` builds it (400 teams, 10,000 members, a socket per team, devices
answering `resolved` at once), RATE incidents per second for DUR seconds, then until every
consumer group on the incident path is idle. Prints each process's CPU per incident over
that whole time (the order, the answer, the team busy and free, the updates, the closing),
the order latency, the Redis commands per incident (by command: EVALSHA and EVAL are
scripts, MULTI/EXEC transactions) and the entries per incident of each stream. LOAD=1 adds
the position load (2,000 PUT/s). TEAMS and PER_TEAM (400 and 25) shape the district; SOCKETS (1) is
how many of each team's phones hold a socket (the first answers, the others only receive:
DOMAIN.md's teams are 1–4 people, each with a phone). COUNT=1 also counts the commands each service sends
(tools.benchmarks.monitor: the same on any machine, unlike CPU time; MONITOR's own cost
then inflates the CPU figures). KEEP=1 keeps the stack's logs and traces (the
directory is printed); otherwise they are removed. A diagnostic for docs/benchmarks.md ("What limits each
figure"), not a figure of the benchmark's table.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import redis

from tools.redis_server import RedisServer, find_binary, free_port
from tools.stack import DEFAULT_PORTS, Stack

from .e2e import StackBench
from .machine import cpu_seconds, python_speed_ms
from .monitor import CommandCounter


async def main() -> None:
    binary = find_binary()
    if binary is None:
        raise SystemExit("no redis-server found")
    work = Path(tempfile.mkdtemp(prefix="lianfang-life-"))
    try:
        await _measure(work, binary)
    finally:
        if os.environ.get("KEEP") == "1":
            print(f"  logs and traces kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


async def _measure(work: Path, binary: str) -> None:
    rate, duration = float(os.environ.get("RATE", 50)), float(os.environ.get("DUR", 8))
    teams, per_team = int(os.environ.get("TEAMS", 400)), int(os.environ.get("PER_TEAM", 25))
    sockets = int(os.environ.get("SOCKETS", 1))  # phones connected per team
    with RedisServer(work / "redis", binary=binary, appendonly=True,
                     appendfsync="everysec") as server:
        stack = Stack(redis_url=server.url, admin_token=secrets.token_urlsafe(16), workdir=work,
                      ports={name: free_port() for name in DEFAULT_PORTS},
                      extra_env={"LOG_LEVEL": "INFO"})
        stack.start()
        try:
            await asyncio.to_thread(stack.wait_ready, 90.0)

            def pids() -> dict[str, int]:
                out = {name: s.proc.pid for name, s in stack.services.items() if s.proc}
                if server.proc is not None:
                    out["redis"] = server.proc.pid
                return out

            bench = StackBench(stack=stack, redis_url=server.url, workdir=work, teams=teams,
                               members_per_team=per_team, pids=pids, sockets_per_team=sockets)
            await bench.setup()
            gen = None
            try:
                if os.environ.get("LOAD") == "1":
                    gen = await bench.start_loadgen({"mode": "rate", "rate": teams * per_team / 5,
                                                     "concurrency": 256})
                await bench.wait_quiet(30)
                processes = pids()
                lengths = _lengths(server.url)
                commands = _commands(server.url)
                counter = CommandCounter(server.url) if os.environ.get("COUNT") == "1" else None
                if counter is not None:
                    counter.start()
                before = {name: cpu_seconds(pid) for name, pid in processes.items()}
                started = time.perf_counter()
                run = await bench.latency_run(rate=rate, duration_s=duration, drain_s=15,
                                              loadgen=gen)
                await bench.wait_quiet(30)
                after = {name: cpu_seconds(pid) for name, pid in processes.items()}
                sent = await asyncio.to_thread(counter.stop) if counter is not None else None
                took = time.perf_counter() - started
                n = run.sent
                lat = run.order_latency
                print(f"{n} incidents at {rate:g}/s, {run.errors} errors; order p50 "
                      f"{(lat.p50 or 0) * 1000:.1f} ms, p99 {(lat.p99 or 0) * 1000:.1f} ms; "
                      f"{took:.1f} s until idle")
                total = 0.0
                for name in processes:
                    if before.get(name) is None or after.get(name) is None:
                        continue
                    ms = (after[name] - before[name]) * 1000 / n  # type: ignore[operator]
                    total += ms
                    print(f"  {name:11s} {ms:6.2f} ms CPU per incident")
                print(f"  {'all':11s} {total:6.2f} ms")
                print(f"  Python speed here: {python_speed_ms():.1f} ms for "
                      f"tools.benchmarks.machine.reference_workload (lower is faster)")
                calls = {name: count - commands.get(name, 0)
                         for name, count in _commands(server.url).items()}
                top = sorted(((c, name) for name, c in calls.items() if c), reverse=True)
                print(f"  Redis commands  {sum(calls.values()) / n:6.1f} per incident (INFO "
                      "commandstats): " + ", ".join(f"{name} {c / n:.1f}" for c, name in top[:16]))
                if sent is not None:
                    print("  commands each service sent Redis per incident (MONITOR, scripts' own "
                          "commands not counted; the CPU figures above include MONITOR's cost):")
                    for service, by_command in sorted(sent.items(),
                                                      key=lambda kv: -sum(kv[1].values())):
                        top = ", ".join(f"{c} {k / n:.2f}" for c, k in by_command.most_common(8))
                        print(f"    {service:11s} {sum(by_command.values()) / n:6.2f}  {top}")
                for stream, length in _lengths(server.url).items():
                    added = length - lengths.get(stream, 0)
                    if added:
                        print(f"  {stream:20s} {added / n:5.2f} entries per incident")
            finally:  # also when interrupted: no load generator goes on alone
                if gen is not None:
                    await bench.stop_loadgen(gen)
                await bench.close()
        finally:
            await asyncio.to_thread(stack.stop)


def _commands(url: str) -> dict[str, int]:
    """Calls per command so far (the `info` and `xlen` calls of this script included)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {name.removeprefix("cmdstat_"): int(stats["calls"])
                for name, stats in client.info("commandstats").items()}
    finally:
        client.close()


def _lengths(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {key: client.xlen(key) for key in sorted(client.scan_iter(_type="stream"))}
    finally:
        client.close()


if __name__ == "__main__":
    asyncio.run(main())
