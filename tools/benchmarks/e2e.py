"""The four services as processes (tools.stack.Stack): the positions path and end-to-end latency.

Set-up: one district of `teams` teams and `teams * members_per_team` members (roster import),
a device token per member (device enrolment: distinct tokens), every team on shift with
every member checked in, one WebSocket per team (the first member's phone) held by this
process, a system key at intake.

- positions: the load generator (own process) sends `PUT /v1/me/position` closed loop over
  `concurrency` connections, each request with the next member's token; updates/s = 200s.
- latency: this process posts incidents open loop at a fixed rate; a request's latency runs
  from its intended send time to the moment the order frame for its incident arrives on a
  team's socket. Meanwhile the load generator sends every member's fix every 5 s. Devices
  answer `resolved` on the socket as soon as an order arrives (no `received`/`acknowledged`),
  so teams come free again at once. A failed POST, a 202 that was linked as a duplicate,
  and an order that does not arrive within the drain time all count as errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from tools.stack import Stack

from . import district as sim
from .machine import OtherLoad, cpu_seconds
from .procs import spawn, stop
from .rawhttp import Pool, encode_request
from .stats import Distribution, distribution, due, latencies, schedule

log = logging.getLogger("lianfang.bench")

DISTRICT = "bench"
QUIET_GROUPS = (  # (stream, group) that must have nothing waiting before a latency run starts
    ("incident.reported", "dispatch"), ("order.issued", "notify"), ("order.issued", "volunteers"),
    ("order.responded", "dispatch"), ("order.responded", "volunteers"),
    ("unit.status", "dispatch"), ("incident.updated", "intake"), ("unit.position", "dispatch"),
    ("incident.closed", "intake"), ("incident.closed", "volunteers"),
)


@dataclass
class LatencyRun:
    rate: float
    duration_s: float
    sent: int
    order_latency: Distribution
    accept_latency: Distribution
    post_failed: int
    linked: int
    no_order: int
    send_lag_max_s: float
    positions_rate: float | None
    positions_failed_rate: float | None
    positions_skipped_rate: float | None
    cpu_cores: dict[str, float]
    others_cores: float | None
    backlog_at_start: int

    @property
    def errors(self) -> int:
        return self.post_failed + self.linked + self.no_order


@dataclass
class Loadgen:
    proc: asyncio.subprocess.Process
    samples: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append(json.loads(line))

    def rate_between(self, t0: float, t1: float, key: str = "ok") -> float | None:
        """Updates per second (`ok`, `failed` or `skipped`) between two wall-clock times,
        from the load generator's 1 s reports."""
        before = [s for s in self.samples if s["t"] <= t0 + 0.5]
        if not before:
            return None
        a = before[-1]
        # the first report after the window's end (and after `a`: a window shorter than the
        # reports' interval is measured over the reports around it)
        after = [s for s in self.samples if s["t"] >= t1 - 0.5 and s["t"] > a["t"]]
        if not after:
            return None
        b = after[0]
        return (b.get(key, 0) - a.get(key, 0)) / (b["t"] - a["t"])

    def last(self) -> dict[str, Any]:
        return self.samples[-1] if self.samples else {}


class Devices:
    """One phone per team holding the notify WebSocket; answers each order `resolved`."""

    def __init__(self) -> None:
        self.order_at: dict[str, float] = {}  # incident id -> when its first order arrived
        self.disconnects = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sockets: list[ClientConnection] = []

    async def connect(self, url: str, tokens: list[str], *, parallel: int = 20,
                      silent: Sequence[str] = ()) -> None:
        """A socket per token in `tokens`, each answering its team's orders, and one per
        token in `silent`: teammates' phones that get the orders and leave the answer to
        the first (a team's phones all get each order)."""
        gate = asyncio.Semaphore(parallel)
        ready: list[asyncio.Future[None]] = []

        async def one(token: str, answers: bool) -> None:
            async with gate:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                ready.append(fut)
                self._tasks.append(asyncio.create_task(self._run(url, token, fut, answers)))
                await fut

        await asyncio.gather(*(one(t, True) for t in tokens), *(one(t, False) for t in silent))

    async def _run(self, url: str, token: str, ready: asyncio.Future[None],
                   answers: bool = True) -> None:
        while True:
            try:
                async with connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                   open_timeout=30, ping_interval=None) as ws:
                    self._sockets.append(ws)
                    async for raw in ws:
                        now = time.perf_counter()
                        if not ready.done():
                            ready.set_result(None)
                        if not answers or '"order"' not in raw[:24]:
                            continue
                        frame = json.loads(raw)
                        self.order_at.setdefault(frame["incident_id"], now)
                        await ws.send(json.dumps({"type": "response", "order_id": frame["order_id"],
                                                  "response": "resolved"}))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.disconnects += 1
                log.warning("device socket lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class StackBench:
    def __init__(self, *, stack: Stack, redis_url: str, workdir: Path, teams: int,
                 members_per_team: int, pids: Callable[[], dict[str, int]],
                 sockets_per_team: int = 1) -> None:
        self.sockets_per_team = sockets_per_team
        self.stack = stack
        self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.workdir = workdir
        self.team_list = sim.teams(DISTRICT, teams, members_per_team)
        self.members: list[list[Any]] = []  # [token, lat, lon] per member
        self.devices = Devices()
        self.places = sim.incident_places(seed=5)
        self.api_key = ""
        self.pids = pids
        self.intake = Pool("127.0.0.1", stack.services["intake"].port, size=256, timeout_s=30)
        self.run_no = 0

    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.admin_token}"}

    async def setup(self) -> dict[str, float]:
        """Roster, devices, shifts, sockets, system key; returns how long each step took."""
        took: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=120) as client:
            t = time.perf_counter()
            for part in sim.roster_parts(DISTRICT, self.team_list):
                r = await client.post(f"{self.stack.url('volunteers')}/v1/roster/import",
                                      headers=self._admin(), json=part)
                if r.status_code != 200:
                    raise RuntimeError(f"roster import answered {r.status_code}: {r.text[:300]}")
            took["roster import"] = time.perf_counter() - t

            t = time.perf_counter()
            pool = Pool("127.0.0.1", self.stack.services["volunteers"].port, size=16)
            host = f"127.0.0.1:{self.stack.services['volunteers'].port}"
            members = [(team, m) for team in self.team_list for m in team.members]

            async def enrol(member_id: str) -> str:
                status, body = await _polite(pool, encode_request(
                    "POST", host, f"/v1/members/{member_id}/devices",
                    token=self.stack.admin_token, body=b"{}"))
                if status != 201:
                    raise RuntimeError(f"device enrolment answered {status}: {body[:200]!r}")
                return json.loads(body)["token"]

            tokens = await _bounded(16, [enrol(m) for _, m in members])
            self.members = [[tok, team.lat, team.lon] for (team, _), tok in zip(members, tokens,
                                                                                strict=True)]
            first_token = {team.id: tok for (team, member), tok in zip(members, tokens, strict=True)
                           if member == team.members[0]}
            teammates = [tok for (team, member), tok in zip(members, tokens, strict=True)
                         if member in team.members[1:self.sockets_per_team]]
            took["device enrolment"] = time.perf_counter() - t

            t = time.perf_counter()

            async def on_shift(team: sim.Team) -> None:
                token = first_token[team.id]
                status, body = await _polite(pool, encode_request(
                    "POST", host, "/v1/me/shift/start", token=token, body=b"{}"))
                if status != 200:
                    raise RuntimeError(f"shift start answered {status}: {body[:200]!r}")
                fix = json.dumps({"lat": team.lat, "lon": team.lon, "accuracy_m": 8}).encode()
                status, body = await _polite(pool, encode_request(
                    "PUT", host, "/v1/me/position", token=token, body=fix))
                if status != 200:
                    raise RuntimeError(f"position answered {status}: {body[:200]!r}")

            await _bounded(16, [on_shift(team) for team in self.team_list])
            # Every other member checks in to the running shift: only members on shift
            # report positions (volunteers refuses a fix from one who is not, 409).
            others = [tok for (team, member), tok in zip(members, tokens, strict=True)
                      if member != team.members[0]]

            async def check_in(token: str) -> None:
                status, body = await _polite(pool, encode_request(
                    "POST", host, "/v1/me/shift/start", token=token, body=b"{}"))
                if status != 200:
                    raise RuntimeError(f"check-in answered {status}: {body[:200]!r}")

            await _bounded(16, [check_in(tok) for tok in others])
            pool.close()
            took["shifts"] = time.perf_counter() - t

            r = await client.post(f"{self.stack.url('intake')}/v1/systems", headers=self._admin(),
                                  json={"name": "bench 110", "districts": [DISTRICT]})
            r.raise_for_status()
            self.api_key = r.json()["api_key"]

            t = time.perf_counter()
            ws_url = self.stack.url("notify").replace("http://", "ws://") + "/v1/devices/stream"
            await self.devices.connect(ws_url, [first_token[team.id] for team in self.team_list],
                                       silent=teammates)
            took["sockets"] = time.perf_counter() - t

            t = time.perf_counter()
            await self._wait_units(client, len(self.team_list), timeout_s=120)
            took["dispatch sees every team"] = time.perf_counter() - t
        (self.workdir / "members.json").write_text(json.dumps(self.members))
        return took

    async def _wait_units(self, client: httpx.AsyncClient, want: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            r = await client.get(f"{self.stack.url('dispatch')}/v1/units",
                                 params={"district": DISTRICT, "status": "available"},
                                 headers=self._admin())
            units = r.json()["units"]
            seen = sum(1 for u in units if u["position"] and not u["open_order_id"])
            if seen >= want:
                return seen
            await asyncio.sleep(0.5)
        raise RuntimeError(f"dispatch sees {seen} of {want} teams available after {timeout_s}s")

    # --- the load generator ----------------------------------------------------------

    async def start_loadgen(self, spec: dict[str, Any]) -> Loadgen:
        spec = {"port": self.stack.services["volunteers"].port,
                "members_file": str(self.workdir / "members.json"), **spec}
        proc = await spawn(["-m", "tools.benchmarks.loadgen", json.dumps(spec)],
                           log=self.workdir / "logs" / "loadgen.log", stdout_pipe=True)
        gen = Loadgen(proc)
        gen.reader = asyncio.create_task(gen.read())
        deadline = time.monotonic() + 30
        while not gen.samples:  # its first line says it handles pause/resume signals
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the load generator did not start; see loadgen.log")
            await asyncio.sleep(0.05)
        return gen

    @staticmethod
    def pause_loadgen(gen: Loadgen, paused: bool) -> None:
        """Holds the position load while the incident path drains between runs."""
        if gen.proc.returncode is None:
            gen.proc.send_signal(signal.SIGUSR1 if paused else signal.SIGUSR2)

    async def stop_loadgen(self, gen: Loadgen) -> None:
        await stop(gen.proc)
        if gen.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gen.reader, 5)

    async def positions_max(self, *, concurrency: int, warmup_s: float,
                            duration_s: float) -> tuple[float | None, float | None, int]:
        """Sustained successful PUTs per second, volunteers' CPU ms per PUT, and how many
        failed while measuring."""
        volunteers = self.stack.services["volunteers"].proc
        gen = await self.start_loadgen({"mode": "max", "concurrency": concurrency,
                                        "warmup_s": warmup_s, "duration_s": duration_s})
        deadline = time.monotonic() + warmup_s + 120
        while not any(s.get("measuring") for s in gen.samples) and time.monotonic() < deadline:
            if gen.proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        cpu0 = cpu_seconds(volunteers.pid) if volunteers else None
        await asyncio.wait_for(gen.proc.wait(), duration_s + 60)
        cpu1 = cpu_seconds(volunteers.pid) if volunteers else None
        if gen.reader is not None:
            await gen.reader
        final = gen.last()
        if not final.get("final"):
            raise RuntimeError("the load generator ended without its result; see loadgen.log")
        answered = (final.get("rate", 0) + final.get("failed_rate", 0)) * final.get("elapsed_s", 0)
        cost = ((cpu1 - cpu0) * 1000 / answered
                if cpu0 is not None and cpu1 is not None and answered else None)
        return final.get("rate"), cost, round(final.get("failed_rate", 0) * duration_s)

    # --- latency ----------------------------------------------------------------------

    async def waiting(self) -> int:
        """Entries the incident path's consumer groups have not yet read or acknowledged."""
        total = 0
        for stream, group in QUIET_GROUPS:
            info = next((g for g in await self.redis.xinfo_groups(stream) if g["name"] == group),
                        None)
            if info:
                total += int(info["pending"]) + int(info.get("lag") or 0)
        return total

    async def wait_quiet(self, timeout_s: float) -> bool:
        """True once no consumer group of the incident path has anything waiting."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not await self.waiting():
                return True
            await asyncio.sleep(0.25)
        return False

    def _requests(self, n: int) -> list[bytes]:
        host = f"127.0.0.1:{self.stack.services['intake'].port}"
        out = []
        for i, (category, lat, lon) in enumerate(itertools.islice(self.places, n)):
            body = json.dumps({
                "external_ref": f"bench-{self.run_no}-{i}", "category": category,
                "district": DISTRICT,
                "location": {"lat": round(lat, 6), "lon": round(lon, 6),
                             "address": f"Bench road {i}"},
                "description": "simulated incident for the benchmark",
                "caller": {"phone": "13800000000", "name": "Bench Caller"},
            }, separators=(",", ":")).encode()
            out.append(encode_request("POST", host, "/v1/incidents", token=self.api_key, body=body))
        return out

    async def latency_run(self, *, rate: float, duration_s: float, drain_s: float,
                          loadgen: Loadgen | None) -> LatencyRun:
        """One open-loop run; waits up to `drain_s` after the last intended send for the
        orders still to come (those that do not come count as errors).

        This process's garbage collector is off for the run: a full collection of its heap
        (10,000 members, 400 sockets) stopped it for up to 70 ms, and a frame read in such a
        pause is stamped late, a latency the system did not have."""
        gc.collect()
        gc.disable()
        try:
            return await self._latency_run(rate=rate, duration_s=duration_s, drain_s=drain_s,
                                           loadgen=loadgen)
        finally:
            gc.enable()

    async def _latency_run(self, *, rate: float, duration_s: float, drain_s: float,
                           loadgen: Loadgen | None) -> LatencyRun:
        self.run_no += 1
        backlog = await self.waiting()
        offsets = schedule(rate, duration_s)
        requests = self._requests(len(offsets))
        n = len(offsets)
        incident_of: list[str | None] = [None] * n
        accepted_at: list[float | None] = [None] * n
        sent_at: list[float] = [0.0] * n
        post_failed = linked = 0

        async def post(i: int) -> None:
            nonlocal post_failed, linked
            sent_at[i] = time.perf_counter()
            try:
                status, body = await self.intake.request(requests[i])
            except Exception:
                post_failed += 1
                return
            if status not in (200, 202):
                post_failed += 1
                return
            answer = json.loads(body)
            if answer.get("status") == "linked":
                linked += 1
                return
            accepted_at[i] = time.perf_counter()
            incident_of[i] = answer["incident_id"]

        pids = self.pids()
        load = OtherLoad()
        load.start()
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        wall0, clock0 = time.time(), time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.05
        i = 0
        while i < n:
            j = due(offsets, i, time.perf_counter() - start)
            for k in range(i, j):
                tasks.append(asyncio.create_task(post(k)))
            i = j
            if i < n:
                await asyncio.sleep(max(0.0, start + offsets[i] - time.perf_counter()))
        wall1, clock1 = time.time(), time.perf_counter()
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        others = load.stop()
        await asyncio.gather(*tasks)
        deadline = start + offsets[-1] + drain_s
        orders = self.devices.order_at
        while time.perf_counter() < deadline:
            if all(inc is None or inc in orders for inc in incident_of):
                break
            await asyncio.sleep(0.05)
        if loadgen is not None:  # its next report, which the position rate is read up to
            until = time.monotonic() + 2.5
            while time.monotonic() < until:
                if loadgen.samples and loadgen.samples[-1]["t"] >= wall1:
                    break
                await asyncio.sleep(0.05)
        intended = [start + off for off in offsets]
        done = [orders.get(inc) if inc is not None else None for inc in incident_of]
        order_lat, _ = latencies(
            [t for t, inc in zip(intended, incident_of, strict=True) if inc is not None],
            [d for d, inc in zip(done, incident_of, strict=True) if inc is not None])
        accept_lat, _ = latencies(intended, accepted_at)
        no_order = sum(1 for inc in incident_of if inc is not None and inc not in orders)
        window = clock1 - clock0
        cpu = {name: (cpu1[name] - cpu0[name]) / window for name in pids
               if cpu0.get(name) is not None and cpu1.get(name) is not None}
        return LatencyRun(
            rate=rate, duration_s=duration_s, sent=n,
            order_latency=distribution(order_lat), accept_latency=distribution(accept_lat),
            post_failed=post_failed, linked=linked, no_order=no_order,
            send_lag_max_s=max((s - t for s, t in zip(sent_at, intended, strict=True)),
                               default=0.0),
            positions_rate=loadgen.rate_between(wall0, wall1) if loadgen else None,
            positions_failed_rate=loadgen.rate_between(wall0, wall1, "failed") if loadgen else None,
            positions_skipped_rate=(loadgen.rate_between(wall0, wall1, "skipped")
                                    if loadgen else None),
            cpu_cores=cpu, others_cores=others, backlog_at_start=backlog,
        )

    async def close(self) -> None:
        await self.devices.close()
        self.intake.close()
        await self.redis.aclose()


async def _polite(pool: Pool, request: bytes, tries: int = 30) -> tuple[int, bytes]:
    """A set-up call that honours 429 (the admin token is limited to 1000/s too)."""
    for _ in range(tries - 1):
        status, body = await pool.request(request)
        if status != 429:
            return status, body
        await asyncio.sleep(1.0)
    return await pool.request(request)


async def _bounded(limit: int, coros: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))

