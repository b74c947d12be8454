"""Our stream hops with the real code, each alone against a Redis of its own.

- intake: the `POST /v1/incidents` route's own function (duplicate check, record, publish
  incident.reported, mark published) called in-process one incident at a time, after the
  app's lifespan started its broker: no HTTP parsing, validation, auth or serialization.
  Timed in the worker from the first call to the last return (compare F1's produce stage).
- dispatch: `python -m services.dispatch` consuming pre-loaded incident.reported entries
  with a pre-loaded unit projection (400 teams per district on shift, fresh fixes; each
  district gets at most 250 one-unit incidents so every one finds a team); its zone
  lookups go to a stand-in (tools.benchmarks.minimal_app:zones). Rate from the first to
  the last order.issued entry id, i.e. Redis's clock (compare F1's relay stage).
- notify: `python -m services.notify` consuming pre-loaded order.issued entries, no device
  connected (the fan-out PUBLISH reaches nobody); rate from polling its group's
  acknowledged count (compare F1's consume stage).
- positions: `python -m services.dispatch` consuming pre-loaded unit.position entries (as
  volunteers publishes them) into its projection of 400 teams; rate from polling its
  group's acknowledged count (compare F2: the stream is read in batches).

`python -m tools.benchmarks.hops '<spec>'` is the intake worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from faststream.redis.parser.binary import BinaryMessageFormatV1

from shared import streams
from shared.events import (
    Caller,
    IncidentReported,
    Location,
    OrderIssued,
    UnitPosition,
    new_id,
    utcnow,
)
from shared.policy import Policy, load_policy

from . import district as sim
from .floors import Measured, output_rate
from .procs import poll_progress, run_worker, service, stop
from .stats import progress_cost, progress_rate

TEAMS_PER_DISTRICT = 400
INCIDENTS_PER_DISTRICT = 250


async def envelope(event: Any) -> bytes:
    """The entry FastStream itself writes for a published event (its binary format)."""
    return await BinaryMessageFormatV1.encode(
        message=event.model_dump_json().encode(), reply_to=None,
        headers={"content-type": "application/json"}, correlation_id=event.event_id,
    )


async def preload_events(r: aioredis.Redis, stream: str, events: list[Any]) -> None:
    for first in range(0, len(events), 500):
        pipe = r.pipeline(transaction=False)
        for event in events[first:first + 500]:
            pipe.xadd(stream, {"__data__": await envelope(event)})
        await pipe.execute()


@functools.cache
def policy() -> Policy:
    return load_policy()  # parses the YAML on every call


def incident_event(district: str, category: str, lat: float, lon: float,
                   i: int) -> IncidentReported:
    return IncidentReported(
        district=district, incident_id=new_id("inc"), system_id="sys_bench",
        external_ref=f"bench-{i}", category=category,
        priority=policy().categories[category].priority, location=Location(
            lat=lat, lon=lon, address=f"Bench road {i}"),
        description="simulated incident for the benchmark",
        caller=Caller(phone="13800000000", name="Bench Caller"), reported_at=utcnow(),
    )


async def preload_units(r: aioredis.Redis, team_list: list[sim.Team], district: str) -> None:
    # Dispatch's own projection functions, as its unit.status/unit.position handlers call them.
    from services.dispatch import store as dispatch_store

    now = utcnow()
    for team in team_list:
        await dispatch_store.save_unit_status(r, at=now, fields={
            "team_id": team.id, "district": district, "status": "available",
            "name": team.id, "agency_id": team.agency_id, "agency_kind": team.kind,
            "agency_role": team.role or "", "mode": team.mode,
            "skills": json.dumps(list(team.skills)), "home_zone_id": "", "on_shift": "1",
        })
        await dispatch_store.save_unit_position(r, team_id=team.id, lat=team.lat, lon=team.lon,
                                                at=now)


class Hops:
    def __init__(self, *, url: str, workdir: Path, admin_token: str, zones_url: str,
                 ports: dict[str, int]) -> None:
        self.url = url
        self.workdir = workdir
        self.admin_token = admin_token
        self.zones_url = zones_url
        self.ports = ports
        self.raw = aioredis.Redis.from_url(url)
        self.text = aioredis.Redis.from_url(url, decode_responses=True)
        self.runs = 0

    def places(self, n: int) -> list[tuple[str, float, float]]:
        """n incident places, none a duplicate of another; Redis is flushed before each run,
        so every run can start a fresh sequence."""
        self.runs += 1
        return list(itertools.islice(sim.incident_places(seed=self.runs), n))

    async def close(self) -> None:
        await self.raw.aclose()
        await self.text.aclose()

    async def intake(self, n: int) -> Measured:
        await self.raw.flushall()
        places = self.places(n)
        result = await run_worker("tools.benchmarks.hops", {
            "hop": "intake", "url": self.url, "admin_token": self.admin_token, "places": places,
            "traces": str(self.workdir / "traces" / "intake-hop.jsonl"),
        }, log=self.workdir / "logs" / "intake-hop.log", timeout_s=300)
        if result["linked"]:
            raise RuntimeError(f"{result['linked']} incidents were linked as duplicates")
        return float(result["rate"]), result["cpu_s"] * 1000 / n

    async def dispatch(self, n: int) -> tuple[float | None, float | None, int]:
        """Orders per second, CPU ms per incident, and how many incidents got no order."""
        await self.raw.flushall()
        districts = [f"hop{i}" for i in range(math.ceil(n / INCIDENTS_PER_DISTRICT))]
        for d in districts:
            await preload_units(self.text, sim.teams(d, TEAMS_PER_DISTRICT, 1), d)
        events = [incident_event(districts[i % len(districts)], category, lat, lon, i)
                  for i, (category, lat, lon) in enumerate(self.places(n))]
        await preload_events(self.raw, streams.INCIDENT_REPORTED.name, events)
        proc = await service("dispatch", redis_url=self.url, port=self.ports["dispatch"],
                             admin_token=self.admin_token, workdir=self.workdir,
                             extra={"VOLUNTEERS_URL": self.zones_url})
        try:
            samples = await poll_progress(self.raw, streams.INCIDENT_REPORTED.name, "dispatch",
                                          n, timeout_s=600, interval_s=0.05, proc=proc)
        finally:
            await stop(proc)
        if not samples or samples[-1][1] < n:
            raise RuntimeError(f"dispatch finished {samples[-1][1] if samples else 0} of {n}")
        orders, rate = await output_rate(self.raw, streams.ORDER_ISSUED.name)
        cost = progress_cost(samples, n)
        return rate, cost * 1000 if cost is not None else None, n - orders

    async def notify(self, n: int) -> Measured:
        await self.raw.flushall()
        team_list = sim.teams("hopn", TEAMS_PER_DISTRICT, 1)
        now = utcnow()
        events = []
        for i, (category, lat, lon) in enumerate(self.places(n)):
            team = team_list[i % len(team_list)]
            events.append(OrderIssued(
                event_id=f"issued-{i}", district="hopn", order_id=new_id("ord"),
                incident_id=new_id("inc"), team_id=team.id, agency_kind=team.kind,
                category=category, priority=policy().categories[category].priority,
                location=Location(lat=lat, lon=lon, address=f"Bench road {i}"),
                ack_by=now + timedelta(seconds=60), eta_s=120.0,
            ))
        await preload_events(self.raw, streams.ORDER_ISSUED.name, events)
        return await self._consumed("notify", streams.ORDER_ISSUED.name, n)

    async def positions(self, n: int) -> Measured:
        """unit.position entries projected per second, and dispatch's CPU ms per entry."""
        await self.raw.flushall()
        team_list = sim.teams("hopp", TEAMS_PER_DISTRICT, 1)
        await preload_units(self.text, team_list, "hopp")
        start = utcnow()
        events = [UnitPosition(district="hopp", unit_id=team.id, lat=team.lat + (i % 7) * 1e-4,
                               lon=team.lon, at=start + timedelta(milliseconds=i))
                  for i, team in enumerate(itertools.islice(itertools.cycle(team_list), n))]
        await preload_events(self.raw, streams.UNIT_POSITION.name, events)
        return await self._consumed("dispatch", streams.UNIT_POSITION.name, n)

    async def _consumed(self, name: str, stream: str, n: int) -> Measured:
        """Start the service on the pre-loaded stream: its group's acknowledgements per second
        and its CPU ms per entry."""
        proc = await service(name, redis_url=self.url, port=self.ports[name],
                             admin_token=self.admin_token, workdir=self.workdir,
                             extra={"VOLUNTEERS_URL": self.zones_url})
        try:
            samples = await poll_progress(self.raw, stream, name, n, timeout_s=600,
                                          interval_s=0.01, proc=proc)
        finally:
            await stop(proc)
        cost = progress_cost(samples, n)
        return progress_rate(samples, n), cost * 1000 if cost is not None else None


# --- the intake worker ------------------------------------------------------------------


def _route_endpoint(routes: Any, name: str) -> Any:
    """The function behind the route called `name`, also inside included routers."""
    for route in routes:
        if getattr(route, "name", None) == name:
            return route.endpoint
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not route:
            with contextlib.suppress(LookupError):
                return _route_endpoint(inner.routes, name)
    raise LookupError(name)


async def _intake_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from fastapi import Response

    from services.intake import store
    from services.intake.config import Settings
    from services.intake.domain import IncidentIn
    from services.intake.main import create_app
    from shared.http import Principal
    from shared.logging import setup_logging
    from shared.telemetry import setup_telemetry

    setup_logging("intake", "INFO")
    setup_telemetry("intake", traces_file=spec["traces"])
    settings = Settings(redis_url=spec["url"], admin_token=spec["admin_token"])
    app = create_app(settings)
    endpoint = _route_endpoint(app.routes, "report_incident")
    district = "hopi"
    bodies = [IncidentIn(external_ref=f"bench-{i}", category=category, district=district,
                         location=Location(lat=lat, lon=lon, address=f"Bench road {i}"),
                         description="simulated incident for the benchmark",
                         caller=Caller(phone="13800000000", name="Bench Caller"))
              for i, (category, lat, lon) in enumerate(spec["places"])]
    async with app.router.lifespan_context(app):
        redis = aioredis.Redis.from_url(spec["url"], decode_responses=True)
        system_id, api_key = await store.create_system(redis, name="bench", districts=[district])
        # As intake's auth resolves it: the record script checks the key is still current.
        who = Principal(kind="system", subject=system_id, districts=(district,),
                        extra={"key_hash": store.key_hash(api_key)})
        linked = 0
        start, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            result = await endpoint(body=body, response=Response(), who=who)
            linked += result["status"] == "linked"
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        await redis.aclose()
    return {"rate": len(bodies) / elapsed, "elapsed_s": elapsed, "linked": linked, "cpu_s": cpu}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    sys.stdout.write(json.dumps(asyncio.run(_intake_worker(spec))) + "\n")
