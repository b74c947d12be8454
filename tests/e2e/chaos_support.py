"""Chaos harness: a busy district, devices that keep answering, a caller that keeps retrying,
and a saboteur that SIGKILLs services and Redis. It records what each side saw, so the test
can count what was lost, duplicated or left stuck."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from shared import streams
from tools.redis_server import RedisServer
from tools.stack import Stack

# Dispatch statuses an accepted incident may be in once the dust settles.
SETTLED = frozenset({"assigned", "acknowledged", "en_route", "on_scene", "resolved",
                     "handed_over", "unassigned", "closed"})
# Where an incident ends when its teams answer everything: the settle phase waits for these.
FINISHED = frozenset({"resolved", "handed_over", "closed"})
STUCK = frozenset({"reported", "dispatching"})
# One-unit categories answered by several kinds, plus a two-unit joint response (P1).
CATEGORIES = ("help_request", "noise", "hazard_report", "suspicious", "traffic", "violence")
GRID_STEP_DEG = 0.0025  # ~280 m: more than intake's 200 m duplicate radius


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the district ------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamSpec:
    team_id: str
    member_id: str
    lat: float
    lon: float


def chaos_roster(district: str, center: tuple[float, float], rng: random.Random,
                 teams_per_agency: int = 6) -> tuple[dict[str, Any], list[TeamSpec]]:
    """Police station, street patrol, security and volunteers, `teams_per_agency` each, one
    member each, spread over the ~6 km square where the incidents happen."""
    lat0, lon0 = center
    half = 0.04
    agencies = [
        {"id": f"{district}-ps", "name": "Station", "kind": "police", "role": "station"},
        {"id": f"{district}-sps", "name": "Patrol", "kind": "police", "role": "patrol"},
        {"id": f"{district}-sec", "name": "Security", "kind": "security"},
        {"id": f"{district}-vol", "name": "Volunteers", "kind": "volunteer"},
    ]
    roles = {"police": "officer", "security": "guard", "volunteer": "volunteer"}
    modes = {"ps": "car", "sps": "car", "sec": "bike", "vol": "ebike"}
    teams, members, specs = [], [], []
    for agency in agencies:
        short = agency["id"].rsplit("-", 1)[1]
        for n in range(teams_per_agency):
            team_id = f"{district}-{short}-{n}"
            member_id = f"{team_id}-m"
            teams.append({"id": team_id, "agency_id": agency["id"], "name": f"{short} {n}",
                          "mode": modes[short], "skills": ["first_aid"] if n % 2 else [],
                          "home_zone_id": f"{district}-z"})
            members.append({"id": member_id, "name": f"Member {short} {n}",
                            "agency_id": agency["id"], "team_id": team_id,
                            "role": roles[agency["kind"]]})
            specs.append(TeamSpec(team_id, member_id,
                                  lat0 + rng.uniform(-0.03, 0.03), lon0 + rng.uniform(-0.03, 0.03)))
    zone = {"id": f"{district}-z", "name": "The district", "owner_agency_id": f"{district}-ps",
            "polygon": [[lon0 - half, lat0 - half], [lon0 + half, lat0 - half],
                        [lon0 + half, lat0 + half], [lon0 - half, lat0 + half],
                        [lon0 - half, lat0 - half]]}
    return ({"district": district, "agencies": agencies, "zones": [zone], "teams": teams,
             "members": members}, specs)


def incident_body(i: int, *, run: str, district: str, center: tuple[float, float]) -> dict[str, Any]:
    """The i-th report: a unique (category, grid cell) pair, so none is a duplicate of another."""
    category = CATEGORIES[i % len(CATEGORIES)]
    cell = i // len(CATEGORIES)
    side = 25
    lat = center[0] + (cell // side - side / 2) * GRID_STEP_DEG
    lon = center[1] + (cell % side - side / 2) * GRID_STEP_DEG / math.cos(math.radians(center[0]))
    return {"external_ref": f"{run}-{i}", "category": category, "district": district,
            "location": {"lat": round(lat, 6), "lon": round(lon, 6)},
            "description": "chaos run", "caller": {"phone": "13800000000"}}


# --- devices -----------------------------------------------------------------------------


@dataclass
class OrderSeen:
    at: float
    order_id: str
    incident_id: str
    team_id: str


class SimDevice:
    """A member's phone: holds the notify socket (reconnecting with backoff), confirms each
    order on the socket, then answers acknowledged and resolved over HTTP, retrying until
    notify gives a definite answer."""

    def __init__(self, spec: TeamSpec, token: str, *, notify_url: str,
                 http: httpx.AsyncClient, rng: random.Random) -> None:
        self.spec = spec
        self.token = token
        self.ws_url = notify_url.replace("http://", "ws://") + "/v1/devices/stream"
        self.notify_url = notify_url
        self.http = http
        self.rng = rng
        self.orders: list[OrderSeen] = []
        self.answered_at: dict[str, float] = {}  # order -> when notify took (or refused) it
        # Order frames on a socket opened after the order was answered: notify re-sent it.
        # (A frame on an older socket may have left before the answer and arrive after it.)
        self.after_answer: list[OrderSeen] = []
        self.late: list[OrderSeen] = []  # answered, on an older socket: in flight, not counted
        self._socket_since = 0.0
        self.working: set[str] = set()
        self.resolved: set[str] = set()
        self.unexpected: list[str] = []
        self.connects = 0
        self._ws: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                async with connect(self.ws_url, additional_headers=bearer(self.token),
                                   open_timeout=5, ping_interval=None, close_timeout=1) as ws:
                    self._ws = ws
                    self._socket_since = time.monotonic()
                    self.connects += 1
                    backoff = 0.1
                    async for raw in ws:
                        self._on_frame(json.loads(raw))
            except (OSError, TimeoutError, WebSocketException):
                pass
            finally:
                self._ws = None
            if self._stop.is_set():
                return
            await asyncio.sleep(backoff * (1 + self.rng.random()))
            backoff = min(backoff * 2, 2.0)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "order":
            return
        seen = OrderSeen(time.monotonic(), frame["order_id"], frame["incident_id"],
                         self.spec.team_id)
        self.orders.append(seen)
        if seen.order_id in self.answered_at:
            if self._socket_since > self.answered_at[seen.order_id]:
                self.after_answer.append(seen)
            else:
                self.late.append(seen)
            return
        if seen.order_id in self.working:
            return  # a replay while our answer is on its way
        self.working.add(seen.order_id)
        task = asyncio.create_task(self._answer(seen.order_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, order_id: str) -> None:
        try:
            ws = self._ws
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"type": "received", "order_id": order_id}))
            status = await self._respond(order_id, "acknowledged")
            self.answered_at.setdefault(order_id, time.monotonic())
            if status == 200 and await self._respond(order_id, "resolved") == 200:
                self.resolved.add(order_id)
        finally:
            self.working.discard(order_id)

    async def _respond(self, order_id: str, response: str, give_up_s: float = 90.0) -> int:
        """POST a response until notify says 200 or 409 (withdrawn or already finished)."""
        deadline = time.monotonic() + give_up_s
        backoff = 0.1
        while True:
            try:
                r = await self.http.post(f"{self.notify_url}/v1/orders/{order_id}/responses",
                                         headers=bearer(self.token), json={"response": response})
                if r.status_code in (200, 409):
                    return r.status_code
                if r.status_code == 429:  # notify's per-token limit: wait as it asks
                    await asyncio.sleep(float(r.headers.get("Retry-After") or 1))
                    continue
                if r.status_code < 500:
                    self.unexpected.append(f"{response} {order_id}: {r.status_code} {r.text[:200]}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.unexpected.append(f"{response} {order_id}: gave up")
                return 0
            await asyncio.sleep(backoff * (1 + self.rng.random()))
            backoff = min(backoff * 2, 1.0)

    @property
    def busy(self) -> bool:
        return bool(self.working)

    async def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- the calling system ------------------------------------------------------------------


@dataclass
class Posted:
    ref: str
    incident_id: str | None = None
    status_codes: list[int] = field(default_factory=list)
    ids_seen: set[str] = field(default_factory=set)
    attempts: int = 0
    rejected: str | None = None


class Caller:
    """Posts reports at a steady rate; a failed POST (no answer or 5xx) is retried with the same
    external_ref, as the API promises is safe. A few accepted ones are re-posted on purpose."""

    def __init__(self, *, intake_url: str, api_key: str, http: httpx.AsyncClient,
                 rng: random.Random, concurrency: int = 48) -> None:
        self.url = f"{intake_url}/v1/incidents"
        self.headers = bearer(api_key)
        self.http = http
        self.rng = rng
        self.posted: dict[str, Posted] = {}
        self._slots = asyncio.Semaphore(concurrency)

    async def post(self, body: dict[str, Any], *, repeat: bool, give_up_s: float = 120.0) -> None:
        entry = self.posted.setdefault(body["external_ref"], Posted(body["external_ref"]))
        async with self._slots:
            await self._until_accepted(entry, body, give_up_s)
            if repeat and entry.incident_id:
                await self._until_accepted(entry, body, give_up_s)

    async def _until_accepted(self, entry: Posted, body: dict[str, Any], give_up_s: float) -> None:
        deadline = time.monotonic() + give_up_s
        backoff = 0.1
        while True:
            entry.attempts += 1
            try:
                r = await self.http.post(self.url, headers=self.headers, json=body)
            except httpx.TransportError:
                r = None
            if r is not None:
                entry.status_codes.append(r.status_code)
                if r.status_code in (200, 202):
                    incident_id = r.json()["incident_id"]
                    entry.ids_seen.add(incident_id)
                    entry.incident_id = entry.incident_id or incident_id
                    return
                if r.status_code < 500:
                    entry.rejected = f"{r.status_code} {r.text[:200]}"
                    return
            if time.monotonic() > deadline:
                entry.rejected = entry.rejected or "no answer before giving up"
                return
            await asyncio.sleep(backoff * (1 + self.rng.random()))
            backoff = min(backoff * 2, 1.0)

    def accepted(self) -> dict[str, str]:
        """external_ref -> incident id, for every report that got a 202 or 200."""
        return {ref: p.incident_id for ref, p in self.posted.items() if p.incident_id}


# --- the saboteur --------------------------------------------------------------------------


class Supervisor:
    """What `make run` does: restart dead services, every 0.2 s, in a thread of its own."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.restarts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.restarts += self.stack.supervise_once()

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def kill_redis_and_restart(server: RedisServer, down_s: float) -> float:
    """SIGKILL redis-server, then start it again on the same port from its AOF; returns the
    time it was unreachable."""
    started = time.monotonic()
    await asyncio.to_thread(server.kill)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(server.start, 30.0)
    return time.monotonic() - started


async def wait_alive(stack: Stack, timeout: float = 60.0) -> None:
    """Every service answers /readyz with 200 (the supervisor restarts the dead)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            codes = []
            for name in stack.services:
                try:
                    codes.append((await client.get(f"{stack.url(name)}/readyz")).status_code)
                except httpx.HTTPError:
                    codes.append(0)
            if all(c == 200 for c in codes):
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"services not ready after {timeout}s")


async def wait_until(check: Callable[[], bool], deadline: float, every: float = 0.5) -> bool:
    """Poll a cheap check until it holds or the (monotonic) deadline passes."""
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every)
    return check()


# --- what is left in Redis -----------------------------------------------------------------


def pending_entries(redis_url: str) -> dict[str, int]:
    """`stream/group` -> entries still pending, for every group of every stream."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        out = {}
        for stream in streams.ALL:
            if not client.exists(stream.name):
                continue
            for group in client.xinfo_groups(stream.name):
                name = group["name"].decode()
                pending = client.xpending(stream.name, name)["pending"]
                out[f"{stream.name}/{name}"] = int(pending)
        return out
    finally:
        client.close()


def unread_entries(redis_url: str) -> dict[str, int]:
    """`stream/group` -> 1 when the stream holds entries after the group's last delivered id.

    Not XINFO GROUPS `lag`: Redis 7.0 cannot always count it (after XAUTOCLAIM, deletions
    or a restart it may stay off), while this comparison is exact.
    """
    client = sync_redis.Redis.from_url(redis_url)
    try:
        out = {}
        for stream in streams.ALL:
            if not client.exists(stream.name):
                continue
            for group in client.xinfo_groups(stream.name):
                last = group["last-delivered-id"].decode()
                after = client.xrange(stream.name, min=f"({last}", count=1)
                out[f"{stream.name}/{group['name'].decode()}"] = len(after)
        return out
    finally:
        client.close()


def dead_letters(redis_url: str) -> dict[str, list[str]]:
    """`dlq.<stream>` -> reasons, for every dead-letter stream that has entries."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        out: dict[str, list[str]] = {}
        for stream in streams.ALL:
            entries = client.xrange(stream.dead_letters)
            if entries:
                out[stream.dead_letters] = [
                    f"{f.get(b'group', b'?').decode()}: {f.get(b'reason', b'').decode()[:160]}"
                    for _, f in entries]
        return out
    finally:
        client.close()


# --- the verdict --------------------------------------------------------------------------


@dataclass
class Verdict:
    seed: int
    accepted: int = 0
    lost: list[str] = field(default_factory=list)  # accepted, unknown to dispatch
    stuck: list[str] = field(default_factory=list)  # reported/dispatching (or an odd status)
    duplicated: list[str] = field(default_factory=list)  # one ref two ids, an order twice
    unfinished: list[str] = field(default_factory=list)  # open at the end, every phone idle
    rejected: list[str] = field(default_factory=list)  # the API refused a valid report
    pending: dict[str, int] = field(default_factory=dict)
    dead: dict[str, list[str]] = field(default_factory=dict)
    device_errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.duplicated or self.unfinished or self.rejected
                    or any(self.pending.values()) or self.dead or self.device_errors)

    def report(self) -> str:
        lines = [
            f"chaos seed={self.seed} (CHAOS_SEED={self.seed} reproduces the schedule)",
            f"accepted={self.accepted} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"stuck={len(self.stuck)} unfinished={len(self.unfinished)} "
            f"rejected={len(self.rejected)} "
            f"pending={sum(self.pending.values())} dead_letters="
            f"{sum(len(v) for v in self.dead.values())} device_errors={len(self.device_errors)}",
            f"dispatch statuses: {dict(sorted(self.statuses.items()))}",
            *self.notes,
        ]
        for title, items in (("lost", self.lost), ("stuck", self.stuck),
                             ("duplicated", self.duplicated), ("unfinished", self.unfinished),
                             ("rejected", self.rejected),
                             ("device errors", self.device_errors)):
            if items:
                lines.append(f"{title} (first 10): {items[:10]}")
        if any(self.pending.values()):
            lines.append(f"pending: { {k: v for k, v in self.pending.items() if v} }")
        for stream, reasons in self.dead.items():
            lines.append(f"{stream}: {len(reasons)} dead letter(s), e.g. {reasons[:3]}")
        return "\n".join(lines)


def order_duplicates(devices: list[SimDevice]) -> list[str]:
    """An order delivered to two teams, or to a device after that device had answered it."""
    problems = []
    teams_of: dict[str, set[str]] = defaultdict(set)
    for device in devices:
        for seen in device.orders:
            teams_of[seen.order_id].add(seen.team_id)
        for seen in device.after_answer:
            after = seen.at - device.answered_at[seen.order_id]
            problems.append(f"order {seen.order_id} sent again to {seen.team_id} on a socket "
                            f"opened after it was answered ({after:.2f}s after the answer)")
    problems += [f"order {order_id} delivered to teams {sorted(teams)}"
                 for order_id, teams in teams_of.items() if len(teams) > 1]
    return problems


def pending_details(redis_url: str, limit: int = 5) -> list[str]:
    """For a failed run: who holds what is still pending, since when, how often delivered."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        lines = []
        for key in (k for k, v in pending_entries(redis_url).items() if v):
            stream, _, group = key.partition("/")
            for entry in client.xpending_range(stream, group, "-", "+", limit):
                lines.append(f"{key} {entry['message_id'].decode()} held by "
                             f"{entry['consumer'].decode()} idle {entry['time_since_delivered']}ms "
                             f"delivered {entry['times_delivered']}x")
            consumers = client.xinfo_consumers(stream, group)
            lines.append(f"{key} consumers: " + ", ".join(
                f"{c['name'].decode()}(pending {c['pending']}, idle {c['idle']}ms)"
                for c in consumers))
        return lines
    finally:
        client.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux), for the run's notes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
