"""Dispatch against a real Redis, driven by a hypothesis state machine: reports (some linked
to an open incident, or to one dispatch never received), teams' answers (also late ones),
teams coming, going and removed, deadlines passing and the command room's actions, in any
order; steps that fail midway (Redis away) and are made again (an unlink that dies midway
also left to its report's timer, nobody asking again), and two steps at once in two
replicas. After each step, what the product promises of every incident and team: none lost,
stuck or sent to the wrong team, no team given two incidents (check(), all_quiet()).

The engine's steps are called as its consumers, its timer loop and its HTTP routes call them
(as the `engine` fixture of test_incident_traces does); a deadline "passes" when one of the
timers due first fires, leased and finished as the timer loop does (timers.py). Station
tasks (hand-over, follow-up) occupy no team (engine.CLAIMING_KINDS): only the other orders
count as a team's incident. STATEFUL_EXAMPLES=500 searches longer than the suite does."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.dispatch import domain, store
from services.dispatch.engine import CLAIMING_KINDS, STATION_KINDS, TERMINAL, Dispatcher
from services.dispatch.zones import ZoneProjection
from shared import streams
from shared.events import (
    IncidentReported,
    OrderDelivered,
    OrderResponded,
    OrderWithdrawn,
    UnitPosition,
    UnitStatus,
    utcnow,
)
from shared.http import ApiError
from shared.policy import load_policy
from tests.helpers import decode_entry, run_machine

from .conftest import settings_for
from .test_engine import DISTRICT, SCENE

POLICY = load_policy()
STATION = "ag-station"
# The district's one zone, around the scene, owned by the police station (volunteers' answer
# to dispatch's zone lookup): hand-overs and follow-up visits go to the station's teams.
ZONES = {"zones": [{"zone_id": "z1", "name": "Scene", "owner_agency_id": STATION, "polygon": [
    [SCENE.lon - 0.05, SCENE.lat - 0.05], [SCENE.lon + 0.05, SCENE.lat - 0.05],
    [SCENE.lon + 0.05, SCENE.lat + 0.05], [SCENE.lon - 0.05, SCENE.lat + 0.05],
    [SCENE.lon - 0.05, SCENE.lat - 0.05]]}]}


@dataclass(frozen=True)
class Team:
    team_id: str
    kind: str
    role: str | None
    agency_id: str
    skills: tuple[str, ...]
    north_m: float  # where it stands, north of the scene


TEAMS = (
    Team("st1", "police", "station", STATION, (), 300),
    Team("st2", "police", "station", STATION, ("first_aid",), 900),
    Team("pat", "police", "patrol", "ag-patrol", (), 600),
    Team("sec1", "security", None, "ag-sec", ("first_aid",), 150),
    Team("sec2", "security", None, "ag-sec", (), 1200),
    Team("vol1", "volunteer", None, "ag-vol", ("first_aid",), 100),
    Team("vol2", "volunteer", None, "ag-vol", (), 700),
)
BY_ID = {t.team_id: t for t in TEAMS}
CATEGORIES = ("violence", "noise", "hazard_report", "dispute", "traffic", "medical",
              "lost_person", "suspicious")
FLAG_SETS: tuple[tuple[str, ...], ...] = ((), ("weapon",), (), ("injury",), ())
RESPONSES = ("received", "acknowledged", "en_route", "on_scene", "resolved", "handover",
             "declined", "reinforce")
LIVE = domain.LIVE_ORDER_STATES
ADMIN = "admin:admin"


def lat_of(team: Team) -> float:
    return SCENE.lat + team.north_m / 111_320


@dataclass
class World:
    """What the invariants read, in one look at Redis after a step."""

    incidents: dict[str, dict[str, str]]
    orders: dict[str, list[dict[str, str]]]
    claims: dict[str, str]
    waiting: set[str]
    flagged: set[str]
    timers: dict[str, float]
    withdrawn_events: set[str] = field(default_factory=set)
    # each incident's reports counted as linked to it, and its sources' counts, by every
    # key of theirs found (an incident's, or one left for an incident never received)
    linked: dict[str, tuple[set[str], dict[str, int]]] = field(default_factory=dict)

    def all_orders(self) -> list[dict[str, str]]:
        return [o for orders in self.orders.values() for o in orders]


async def look(redis: Redis, raw: Redis, incident_ids: list[str]) -> World:
    incidents: dict[str, dict[str, str]] = {}
    orders: dict[str, list[dict[str, str]]] = {}
    for incident_id in incident_ids:
        inc = await store.get_incident(redis, incident_id)
        if inc is not None:
            incidents[incident_id] = inc
            orders[incident_id] = await store.orders_of(redis, incident_id)
    claims = {}
    async for key in redis.scan_iter("dispatch:claim:*"):
        claims[key.removeprefix("dispatch:claim:")] = await redis.get(key)
    linked: dict[str, tuple[set[str], dict[str, int]]] = {}
    async for key in redis.scan_iter("dispatch:linked*"):
        incident_id = key.split(":", 2)[2]
        linked.setdefault(incident_id, (set(), {}))
        if key == store.linked_key(incident_id):
            linked[incident_id][0].update(await redis.zrange(key, 0, -1))
        else:
            linked[incident_id][1].update(
                {source: int(n) for source, n in (await redis.hgetall(key)).items()})
    withdrawn: set[str] = set()
    for _, fields in await raw.xrange(streams.ORDER_WITHDRAWN.name):
        withdrawn.add(OrderWithdrawn.model_validate(decode_entry(fields)[0]).order_id)
    return World(
        incidents=incidents, orders=orders, claims=claims,
        waiting=set(await redis.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1)),
        flagged=set(await redis.zrange(store.flagged_key(DISTRICT), 0, -1)),
        timers=dict(await redis.zrange(store.TIMERS, 0, -1, withscores=True)),
        withdrawn_events=withdrawn, linked=linked)


Step = Callable[[], Awaitable[Any]]
ACTIONS = ("report", "duplicate", "answer", "status", "timer", "assign", "take_back", "close",
           "unlink", "revise")


class Failures:
    """Redis going away in the middle of a step: armed, the `at`-th call of a store function
    (or a publish) fails, before it does anything or, `after`, once it did (its reply lost).
    Installed on the store module for the whole test, as conftest.fail_once patches one."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.after = False
        self.calls = 0
        self.failed = False
        self._real: dict[str, Any] = {}

    def arm(self, at: int, *, after: bool) -> None:
        self.at, self.after, self.calls, self.failed = at, after, 0, False

    def disarm(self) -> None:
        self.at = None

    def _wrap(self, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(real)
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.at is None or self.failed:
                return await real(*args, **kwargs)
            self.calls += 1
            if self.calls < self.at:
                return await real(*args, **kwargs)
            self.failed = True
            if self.after:
                await real(*args, **kwargs)
            raise RedisConnectionError("Redis went away")

        return call

    def install(self) -> None:
        for name, value in vars(store).items():
            if inspect.iscoroutinefunction(value) and value.__module__ == store.__name__:
                self._real[name] = value
                setattr(store, name, self._wrap(value))
        self._real["Dispatcher._publish"] = Dispatcher._publish
        Dispatcher._publish = self._wrap(Dispatcher._publish)  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for name, value in self._real.items():
            if name == "Dispatcher._publish":
                Dispatcher._publish = value  # type: ignore[method-assign]
            else:
                setattr(store, name, value)


class DispatchMachine(RuleBasedStateMachine):
    url = ""  # set by the test, from its Redis
    failures = Failures()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.engine: Dispatcher = self.run(self._engine())
        self.replica: Dispatcher = self.run(self._replica())
        self.incidents: list[str] = []
        self.handled: list[Any] = []  # events handled, for redelivery
        self.made = 0
        self.firing: set[str] = set()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _engine(self) -> Dispatcher:
        client = Redis.from_url(self.url, decode_responses=True)
        self.stack.push_async_callback(client.aclose)
        await client.flushdb()
        self.raw = Redis.from_url(self.url)  # the streams' entries, as bytes
        self.stack.push_async_callback(self.raw.aclose)
        broker = RedisBroker(self.url)
        await broker.connect()
        self.stack.push_async_callback(broker.stop)
        http = await self.stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json=ZONES))))
        zones = ZoneProjection(http=http, volunteers_url="http://volunteers", key="x",
                               timeout_s=1, refresh_s=600)
        engine = Dispatcher(redis=client, broker=broker, policy=POLICY,
                            settings=settings_for(self.url), zones=zones)
        self.stack.push_async_callback(engine.locks.close)
        return engine

    async def _replica(self) -> Dispatcher:
        """A second dispatch process on the same Redis (DESIGN: more replicas)."""
        engine = self.engine
        replica = Dispatcher(redis=engine.redis, broker=engine.broker, policy=POLICY,
                             settings=engine.settings, zones=engine.zones)
        self.stack.push_async_callback(replica.locks.close)
        return replica

    def teardown(self) -> None:
        self.failures.disarm()
        self.run(self.stack.aclose())
        self.loop.close()

    @property
    def redis(self) -> Redis:
        return self.engine.redis

    def new_id(self, prefix: str) -> str:
        self.made += 1
        return f"{prefix}-{self.made}"

    async def world(self) -> World:
        return await look(self.redis, self.raw, self.incidents)

    async def orders_in(self, states: tuple[str, ...] | None = None) -> list[dict[str, str]]:
        """Every order, incidents in the order reported and each one's in the order made
        (deterministic, unlike their random ids), those in `states` if given."""
        found = []
        for incident_id in self.incidents:
            for order in await store.orders_of(self.redis, incident_id):
                if states is None or order["state"] in states:
                    found.append(order)
        return found

    # --- what happens: each a step that can be made again (an event redelivered, a timer
    # firing again after its lease, the command room asking again) ----------------------

    async def plan(self, action: str, which: int, arg: int,
                   engine: Dispatcher | None = None) -> Step | None:
        """The step `action` (one of ACTIONS) on the `which`-th incident, order or team (of
        those there are), with `arg` choosing its details, by `engine` (this process's by
        default); None when there is nothing to act on."""
        engine = engine or self.engine
        if action in ("report", "duplicate"):
            category, flags = CATEGORIES[which % len(CATEGORIES)], FLAG_SETS[arg % len(FLAG_SETS)]
            linked_to = None
            if action == "duplicate":
                if not self.incidents:
                    return None
                # one dispatch never received, every third (its report lost, or on its way)
                linked_to = (f"lost-{which}" if arg % 3 == 2
                             else self.incidents[which % len(self.incidents)])
                parent = await store.get_incident(self.redis, linked_to)
                category = parent["category"] if parent else category
            incident_id = self.new_id("inc")
            self.incidents.append(incident_id)
            return self.event(engine, IncidentReported(
                district=DISTRICT, incident_id=incident_id, system_id="sys",
                external_ref=incident_id, category=category,
                priority=POLICY.classify(category, flags), flags=flags, location=SCENE,
                reported_at=utcnow(), linked_to=linked_to))
        if action == "answer":
            # a team answers an order on its phone: one dispatch announced (order.issued and
            # the order's `published` mark are written in one script, so an order not marked
            # never reached notify, and no answer to it can come)
            orders = [o for o in await self.orders_in(LIVE) if o.get("published") == "1"]
            if not orders:
                return None
            return self.event(engine, answer(orders[which % len(orders)], RESPONSES[arg % len(RESPONSES)]))
        if action == "status":  # every fourth an off-duty team's removal from the roster
            status = ("available", "busy", "off_duty", "removed")[arg % 4]
            return self.event(engine, unit_status(TEAMS[which % len(TEAMS)], status))
        if action == "timer":
            first = await self.redis.zrange(store.TIMERS, 0, arg % 4)
            if not first:
                return None
            member = first[-1]
            return lambda: self._fire(member, engine)
        if action == "take_back":
            orders = await self.orders_in(LIVE)
            if not orders:
                return None
            order_id = orders[which % len(orders)]["order_id"]
            return lambda: engine.take_back(order_id, by=ADMIN, note=None)
        if not self.incidents:
            return None
        incident_id = self.incidents[which % len(self.incidents)]
        if action == "assign":
            team_id = TEAMS[arg % len(TEAMS)].team_id
            return lambda: engine.assign(incident_id, team_id, reassign=arg % 2 == 0, by=ADMIN)
        if action == "close":
            return lambda: engine.close(incident_id, by=ADMIN)
        if action == "unlink":
            return lambda: engine.unlink(incident_id, by=ADMIN, note=None)
        assert action == "revise"
        flags = (("weapon",), ("injury",))[arg % 2]
        return lambda: engine.revise(incident_id, priority=None, add_flags=flags, note=None,
                                     by=ADMIN)

    def event(self, engine: Dispatcher, event: Any) -> Step:
        """The engine's handling of an event, as its consumer calls it."""
        self.handled.append(event)
        handler = {IncidentReported: engine.on_incident_reported,
                   OrderDelivered: engine.on_order_delivered,
                   OrderResponded: engine.on_order_responded,
                   UnitStatus: engine.on_unit_status}[type(event)]
        return lambda: handler(event)

    async def _fire(self, member: str, engine: Dispatcher) -> None:
        """A due timer fired, leased and finished as the timer loop does (timers._fire); not
        by a replica while another fires it (its lease)."""
        if member in self.firing:
            return
        self.firing.add(member)
        try:
            await self._fire_leased(member, engine)
        finally:
            self.firing.discard(member)

    async def _fire_leased(self, member: str, engine: Dispatcher) -> None:
        lease = (utcnow() + timedelta(seconds=30)).timestamp()
        await self.redis.zadd(store.TIMERS, {member: lease})
        again = await engine.fire_timer(member)
        if again is not None:
            # not to be handled yet: later than anything now due, so others go first
            await store.postpone_timer(self.redis, member, max(again, utcnow()), lease)
        else:
            await store.finish_timer(self.redis, member, lease)

    async def act(self, action: str, which: int, arg: int) -> None:
        step = await self.plan(action, which, arg)
        if step is not None:
            await answered(step())

    async def _fix(self, team: Team) -> None:
        event = UnitPosition(district=DISTRICT, unit_id=team.team_id, lat=lat_of(team),
                             lon=SCENE.lon, at=utcnow())
        await self.engine.on_unit_positions([event])

    # --- rules: the world outside and the command room ----------------------------------

    @initialize()
    def on_shift(self) -> None:
        async def all_on_shift() -> None:
            for team in TEAMS:
                await self.engine.on_unit_status(unit_status(team, "available"))
                await self._fix(team)

        self.run(all_on_shift())

    @rule(category=st.integers(0, 50), flags=st.integers(0, 4))
    def report(self, category: int, flags: int) -> None:
        self.run(self.act("report", category, flags))

    @precondition(lambda self: self.incidents)
    @rule(which=st.integers(0, 50), arg=st.integers(0, 5))
    def duplicate(self, which: int, arg: int) -> None:
        """A report intake linked to an incident (every third one dispatch never received:
        its report lost, or still on its way)."""
        self.run(self.act("duplicate", which, arg))

    @rule(which=st.integers(0, 50), response=st.integers(0, len(RESPONSES) - 1))
    def team_answers(self, which: int, response: int) -> None:
        """A team answers one of its orders still on its phone (live)."""
        self.run(self.act("answer", which, response))

    @rule(which=st.integers(0, 50), response=st.sampled_from(RESPONSES[1:]))
    def answer_handled_late(self, which: int, response: str) -> None:
        """An answer given while the order was live (a moment after its issue) that dispatch
        handles after the order ended (withdrawn, timed out, or the team's own end)."""
        orders = [o for o in self.run(self.orders_in(domain.FINAL_ORDER_STATES))
                  if o.get("published") == "1"]  # one its phone had (see plan's "answer")
        if not orders:
            return
        order = orders[which % len(orders)]
        given = datetime.fromisoformat(order["issued_at"]) + timedelta(milliseconds=1)
        self.run(self.event(self.engine, answer(order, response, occurred_at=given))())

    @rule(which=st.integers(0, 100))
    def redelivered(self, which: int) -> None:
        """An event handled before, delivered again (delivery is at least once)."""
        if self.handled:
            self.run(self.event(self.engine, self.handled[which % len(self.handled)])())

    @rule(team=st.integers(0, len(TEAMS) - 1), status=st.integers(0, 3))
    def team_status(self, team: int, status: int) -> None:
        """volunteers' unit.status of a team: a shift starts or ends, a member sets it."""
        self.run(self.act("status", team, status))

    @rule(team=st.sampled_from(TEAMS))
    def position_fix(self, team: Team) -> None:
        """A team's phone tells where it is (every few seconds while on shift)."""
        self.run(self._fix(team))

    @rule(nth=st.integers(0, 3))
    def deadline_passes(self, nth: int) -> None:
        """One of the timers due first fires (those due close together fire together)."""
        self.run(self.act("timer", 0, nth))

    @precondition(lambda self: self.incidents)
    @rule(which=st.integers(0, 50), team=st.integers(0, 2 * len(TEAMS) - 1))
    def command_room_assigns(self, which: int, team: int) -> None:
        self.run(self.act("assign", which, team))

    @rule(which=st.integers(0, 50))
    def command_room_takes_back(self, which: int) -> None:
        self.run(self.act("take_back", which, 0))

    @precondition(lambda self: self.incidents)
    @rule(which=st.integers(0, 50))
    def command_room_closes(self, which: int) -> None:
        self.run(self.act("close", which, 0))

    @precondition(lambda self: self.incidents)
    @rule(which=st.integers(0, 50))
    def command_room_unlinks(self, which: int) -> None:
        self.run(self.act("unlink", which, 0))

    @precondition(lambda self: self.incidents)
    @rule(which=st.integers(0, 50), flags=st.integers(0, 1))
    def command_room_revises(self, which: int, flags: int) -> None:
        self.run(self.act("revise", which, flags))

    @rule(action=st.sampled_from(ACTIONS), which=st.integers(0, 50), arg=st.integers(0, 50),
          at=st.integers(1, 12), after=st.booleans())
    def fails_midway_and_is_made_again(self, action: str, which: int, arg: int, at: int,
                                       after: bool) -> None:
        """A step that fails midway (Redis away at its `at`-th call) and is made again: the
        event redelivered, the timer firing again after its lease, the command room asking
        again after its 503."""
        self.run(self._fails_midway(action, which, arg, at, after))

    async def _fails_midway(self, action: str, which: int, arg: int, at: int, after: bool,
                            meanwhile: tuple[str, int, int] | None = None) -> None:
        step = await self.plan(action, which, arg)
        if step is None:
            return
        self.failures.arm(at, after=after)
        try:
            await answered(step())
        except RedisConnectionError:
            pass
        finally:
            self.failures.disarm()
        if meanwhile is not None:
            await self.act(*meanwhile)
        await answered(step())

    @precondition(lambda self: self.incidents)
    @rule(action=st.sampled_from(("assign", "unlink")), which=st.integers(0, 50),
          arg=st.integers(0, 50), at=st.integers(1, 12), after=st.booleans())
    def unlink_dies_midway(self, action: str, which: int, arg: int, at: int,
                           after: bool) -> None:
        """The command room unlinks a linked report (its unlink, or an assignment to it) and
        dispatch dies midway (Redis away at the step's `at`-th call); nobody asks again: the
        report's `unlinked:` timer finishes it when it fires (deadline_passes)."""
        self.run(self._unlink_dies_midway(action, which, arg, at, after))

    async def _unlink_dies_midway(self, action: str, which: int, arg: int, at: int,
                                  after: bool) -> None:
        linked = [i for i in self.incidents
                  if (await store.get_incident(self.redis, i) or {}).get("status") == "linked"]
        if not linked:
            return
        step = await self.plan(action, self.incidents.index(linked[which % len(linked)]), arg)
        assert step is not None
        self.failures.arm(at, after=after)
        try:
            await answered(step())
        except RedisConnectionError:
            pass
        finally:
            self.failures.disarm()

    @rule(action=st.sampled_from(ACTIONS), which=st.integers(0, 50), arg=st.integers(0, 50),
          at=st.integers(1, 12), after=st.booleans(), meanwhile=st.sampled_from(ACTIONS),
          other=st.tuples(st.integers(0, 50), st.integers(0, 50)))
    def fails_and_is_made_again_after_another_step(
            self, action: str, which: int, arg: int, at: int, after: bool, meanwhile: str,
            other: tuple[int, int]) -> None:
        """As fails_midway_and_is_made_again, with another step handled in between (the
        reclaimer takes a failed event up after claim_idle_ms; other events go on)."""
        self.run(self._fails_midway(action, which, arg, at, after, meanwhile=(meanwhile, *other)))

    @rule(first=st.sampled_from(ACTIONS), second=st.sampled_from(ACTIONS),
          which=st.tuples(st.integers(0, 50), st.integers(0, 50)),
          arg=st.tuples(st.integers(0, 50), st.integers(0, 50)))
    def two_at_once(self, first: str, second: str, which: tuple[int, int],
                    arg: tuple[int, int]) -> None:
        """Two steps at the same time, one in each of two dispatch replicas."""
        self.run(self._two_at_once(first, second, which, arg))

    async def _two_at_once(self, first: str, second: str, which: tuple[int, int],
                           arg: tuple[int, int]) -> None:
        steps = [await self.plan(first, which[0], arg[0]),
                 await self.plan(second, which[1], arg[1], self.replica)]
        await asyncio.gather(*(answered(step()) for step in steps if step is not None))

    @rule()
    def all_quiet(self) -> None:
        """Every team on shift tells where it is and, as volunteers sees it, whether it is
        busy: then no incident waits while a free team it could be sent is standing by."""
        self.run(self._all_quiet())

    async def _all_quiet(self) -> None:
        for team in TEAMS:
            unit = await store.get_unit(self.redis, team.team_id)
            if unit is None or not unit.on_shift:
                continue
            holder = await store.claim_of(self.redis, team.team_id)
            held = await store.get_order(self.redis, holder) if holder else None
            await self.engine.on_unit_status(
                unit_status(team, "busy" if held and held["state"] in LIVE else "available"))
            await self._fix(team)
        world = await self.world()
        now = utcnow()
        free = [u for u in [await store.get_unit(self.redis, t.team_id) for t in TEAMS]
                if u is not None and u.on_shift and u.status == "available"
                and u.team_id not in world.claims]
        for incident_id in sorted(world.waiting):
            inc = world.incidents[incident_id]
            if inc["status"] in TERMINAL:
                continue
            orders = world.orders[incident_id]
            facts = domain.IncidentFacts(
                incident_id=incident_id, district=DISTRICT, category=inc["category"],
                priority=inc["priority"], flags=tuple(json.loads(inc["flags"])),
                lat=SCENE.lat, lon=SCENE.lon, zone_id=inc.get("zone_id") or None,
                station_agency_id=inc.get("station_agency_id") or None,
                excluded=frozenset(o["team_id"] for o in orders))
            units, alongside = units_and_alongside(orders)
            chosen = domain.choose_units(
                domain.rank_candidates(free, facts, POLICY, now), facts, POLICY,
                wanted=domain.units_wanted(facts, POLICY), already=units, alongside=alongside)
            assert not chosen, (f"{incident_id} ({inc['category']} {inc['priority']}, "
                                f"{inc['status']}) waits while {chosen[0].unit.team_id} is free")

    # --- what holds after every step ----------------------------------------------------

    @invariant()
    def promises_kept(self) -> None:
        check(self.run(self.world()))


async def answered(call: Awaitable[Any]) -> None:
    """A step made; the command room's refusals (409, 404, 422) are answers, not failures."""
    with contextlib.suppress(ApiError):
        await call


def unit_status(team: Team, status: str) -> UnitStatus:
    """volunteers' unit.status of the team (`removed`: off duty, and off the roster; imported
    again, its next status brings it back)."""
    removed = status == "removed"
    return UnitStatus(district=DISTRICT, unit_id=team.team_id,
                      status="off_duty" if removed else status, name=team.team_id,
                      agency_id=team.agency_id, agency_kind=team.kind, agency_role=team.role,
                      mode="car", skills=team.skills, on_shift=status in ("available", "busy"),
                      removed=removed)


def answer(order: dict[str, str], response: str, **extra: Any) -> OrderDelivered | OrderResponded:
    """A team's answer to its order, as notify publishes it (`received`: its receipt)."""
    if response == "received":
        return OrderDelivered(district=DISTRICT, order_id=order["order_id"],
                              incident_id=order["incident_id"], team_id=order["team_id"],
                              member_id="m1", device_id="d1", **extra)
    return OrderResponded(district=DISTRICT, order_id=order["order_id"],
                          incident_id=order["incident_id"], team_id=order["team_id"],
                          member_id="m1", device_id="d1", response=response,
                          note="needs the station" if response == "handover" else None, **extra)


def check(world: World) -> None:
    live = [o for o in world.all_orders() if o["state"] in LIVE]
    claiming = [o for o in live if o["kind"] in CLAIMING_KINDS]
    by_id = {o["order_id"]: o for o in world.all_orders()}

    # No team holds two live orders that occupy it (station tasks occupy nobody), and each
    # such order's team is claimed by it.
    teams = Counter(o["team_id"] for o in claiming)
    assert all(n == 1 for n in teams.values()), f"a team on two incidents at once: {teams}"
    for order in claiming:
        assert world.claims.get(order["team_id"]) == order["order_id"], (
            f"live order {order['order_id']} of {order['team_id']} not holding its claim "
            f"(claim: {world.claims.get(order['team_id'])})")
    # A claim is held by a live order: one left behind keeps its team from every incident
    # waiting for it (store._FREE counts any claim).
    for team_id, order_id in world.claims.items():
        held = by_id.get(order_id)
        assert held is not None and held["state"] in LIVE, (
            f"{team_id} claimed by order {order_id}, which is "
            f"{held['state'] if held else 'unknown'}")

    # The reports counted as linked to an incident (its view lists them, its board row
    # counts them) are linked to it now, each once, under its source; none is counted under
    # an incident dispatch does not know (no key would ever be swept).
    counted = {r: inc for r, inc in world.incidents.items() if inc.get("linked_index")}
    for incident_id, (members, sources) in world.linked.items():
        assert incident_id in world.incidents, f"reports counted under unknown {incident_id}"
        mine = {r for r, inc in counted.items() if inc["linked_index"] == incident_id}
        assert members == mine, f"{incident_id}: counted {members}, its reports say {mine}"
        for r in mine:
            assert (counted[r]["status"], counted[r]["linked_to"]) == ("linked", incident_id), (
                f"{r} counted under {incident_id}: {counted[r]['status']}, linked to "
                f"{counted[r]['linked_to']!r}")
        assert {k: n for k, n in sources.items() if n} == Counter(
            counted[r]["linked_source"] for r in mine), f"{incident_id}: sources {sources}"
    for r, inc in counted.items():
        assert r in world.linked.get(inc["linked_index"], (set(), {}))[0], (
            f"{r} says it is counted under {inc['linked_index']}, which does not count it")

    for incident_id, inc in world.incidents.items():
        orders = world.orders[incident_id]
        status = inc["status"]
        mine_live = [o for o in orders if o["state"] in LIVE]
        mine_claiming = [o for o in mine_live if o["kind"] in CLAIMING_KINDS]
        what = f"{incident_id} ({inc['category']} {inc['priority']}, {status})"
        # Unlinked by a step that died before its orders were announced (or made), never
        # asked again: its timer finishes it (UNLINK_FINISHED_WITHIN on), offers included.
        left_to_timer = (status == "dispatching" and bool(inc.get("unlinked_from"))
                         and f"unlinked:{incident_id}" in world.timers)

        # Every live order was announced to its team, with a deadline while unanswered.
        for order in mine_live:
            if left_to_timer:
                assert order["state"] == "offered", f"{what}: unlinked, {order}"
                continue
            assert order.get("published") == "1", f"{what}: order {order['order_id']} unsent"
            if order["state"] == "offered" and order["kind"] in CLAIMING_KINDS:
                assert f"ack:{order['order_id']}" in world.timers, (
                    f"{what}: offer {order['order_id']} with no deadline")
        # Every order taken from its team was withdrawn from its phones.
        for order in orders:
            if order["state"] in ("withdrawn", "timed_out"):
                assert order["order_id"] in world.withdrawn_events, (
                    f"{what}: order {order['order_id']} {order['state']} but never withdrawn")

        # Sent to the right team.
        check_teams(what, inc, orders)

        if left_to_timer:
            pass  # judged once its timer fired
        elif status not in TERMINAL:
            # Open: visible to the command room, and acted on. With live orders, its status
            # is theirs; without, unassigned, flagged and waiting for a freed team.
            assert status != "dispatching" and status != "reported", f"{what}: left {status}"
            if mine_live:
                expected = domain.incident_status([o["state"] for o in mine_live],
                                                  current=status)
                assert status == expected, f"{what}: status {status}, its orders say {expected}"
            else:
                assert status == "unassigned", f"{what}: no live order"
            if status == "unassigned":
                assert inc.get("flagged") == "1", f"{what}: unassigned, not flagged"
                assert incident_id in world.waiting, f"{what}: unassigned, not waiting"
            units, alongside = units_and_alongside(orders)
            facts = domain.IncidentFacts(
                incident_id=incident_id, district=DISTRICT, category=inc["category"],
                priority=inc["priority"], flags=tuple(json.loads(inc["flags"])),
                lat=SCENE.lat, lon=SCENE.lon)
            if domain.short_of_units(facts, POLICY, units, alongside):
                assert incident_id in world.waiting, f"{what}: short of a unit, not waiting"
                # nobody free to be it (else it would have gone): the command room is told,
                # unless it sent a team by hand itself
                assert inc.get("flagged") == "1" or any(
                    o["kind"] == "manual" for o in mine_claiming), (
                    f"{what}: short of a unit, not flagged")
        else:
            # Ended: no team held for it (but a backup of a station team on a live visit
            # or hand-over: its team is still out there).
            for order in mine_claiming:
                backed = next((o for o in orders if o["order_id"] == order.get("for_order")), None)
                assert (status in ("resolved", "handed_over") and backed is not None
                        and backed["kind"] in STATION_KINDS and backed["state"] in LIVE), (
                    f"{what}: {order['kind']} order {order['order_id']} of "
                    f"{order['team_id']} still {order['state']}")
            if status in ("resolved", "closed", "linked"):
                assert incident_id not in world.waiting, f"{what}: still waiting"
            if status in ("closed", "linked"):
                assert not mine_live, f"{what}: live orders {mine_live}"
            if status == "linked":
                parent = inc.get("linked_to")
                assert parent, f"{what}: linked to nothing"
                assert parent in world.incidents or f"link:{incident_id}" in world.timers, (
                    f"{what}: linked to {parent}, which is unknown, and never judged again")
            if (status == "resolved" and not inc.get("handed_over_at")
                    and inc["category"] in POLICY.followup_resolved_days):
                # a dispute mediated on site owes the station's visit: planned, or ordered
                assert (f"followup:{incident_id}" in world.timers or inc.get("followup_order")
                        or inc.get("followup_failed") == "1"), (
                    f"{what}: resolved on site, no follow-up visit planned or ordered")
            if status == "handed_over":
                station = [o for o in mine_live if o["kind"] == "handover"]
                assert station or (inc.get("flagged") == "1"
                                   and f"handover:{incident_id}" in world.timers), (
                    f"{what}: handed over, no station order, nobody told, no retry")

        # The board's index of flagged incidents follows their flag.
        assert (inc.get("flagged") == "1") == (incident_id in world.flagged), (
            f"{what}: flagged={inc.get('flagged')}, in the board's index: "
            f"{incident_id in world.flagged}")


def units_and_alongside(orders: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """The incident's live orders that hold a team, as domain.choose_units counts them: its
    units, and the teams with them that are not (backups, a P1's escort). A team whose
    resolution or hand-over left a P1 to the police (`left_to_police`) did its part: it
    still counts, nobody is sent in its place (test_left_to_police.py)."""
    units: list[str] = []
    alongside: list[str] = []
    for o in orders:
        if o["kind"] in CLAIMING_KINDS and (o["state"] in LIVE or o.get("left_to_police") == "1"):
            with_units = o["kind"] == "reinforcement" or o.get("escort") == "1"
            (alongside if with_units else units).append(
                domain.sent_as(o["agency_kind"], o.get("agency_role") or None))
    return units, alongside


def check_teams(what: str, inc: dict[str, str], orders: list[dict[str, str]]) -> None:
    """Each live order's team is one the rules allow: of a kind the category lists (with its
    skills), a P1's police or security escort, or police or security backing a volunteer
    team that called for it; a station's team for a station's task; the
    command room's choice for a manual order; never volunteers to a report of a weapon."""
    rule_ = POLICY.rule(inc["category"])
    flags = json.loads(inc["flags"])
    for order in orders:
        if order["state"] not in LIVE:
            continue
        team = BY_ID[order["team_id"]]
        where = f"{what}: {order['kind']} order {order['order_id']} to {team.team_id}"
        if team.kind == "volunteer":
            assert not domain.volunteers_barred(flags, POLICY), f"{where}: volunteers barred"
        if order["kind"] in STATION_KINDS:
            assert team.kind == "police" and team.role == "station", f"{where}: not a station's"
        elif order["kind"] in ("dispatch", "reinforcement"):
            allowed = (rule_.kind_rank(team.kind, team.role) is not None
                       and set(rule_.skills) <= set(team.skills))
            escort = (order.get("escort") == "1" and inc["priority"] == "P1"
                      and team.kind in domain.ESCORT_KINDS)
            # a team's call for backup: police or security, whatever the category lists
            # (domain.backups_for; first for a volunteer team's call)
            volunteers_backed = (order["kind"] == "reinforcement"
                                 and team.kind in domain.ESCORT_KINDS
                                 and any(o["order_id"] == order.get("for_order")
                                         for o in orders))
            assert allowed or escort or volunteers_backed, (
                f"{where}: not a team the category allows")


def test_dispatch_keeps_its_promises_whatever_happens(redis_url: str) -> None:
    DispatchMachine.url = redis_url
    DispatchMachine.failures.install()
    try:
        run_machine(DispatchMachine, examples=40, steps=30)
    finally:
        DispatchMachine.failures.uninstall()



def run_steps(redis_url: str, steps: Callable[[DispatchMachine], None]) -> None:
    """A sequence the machine found (as Hypothesis prints it), kept as a test of its own: the
    machine's own steps, its promises checked after each (`steps` calls promises_kept)."""
    DispatchMachine.url = redis_url
    DispatchMachine.failures.install()
    try:
        state = DispatchMachine()
        try:
            steps(state)
        finally:
            state.teardown()
    finally:
        DispatchMachine.failures.uninstall()


@pytest.mark.parametrize(("category", "at"), [(2, 3), (1, 4)], ids=["hazard", "noise"])
def test_found_a_report_unlinked_between_its_failed_revision_and_its_retry(
        redis_url: str, category: int, at: int) -> None:
    """A report with a knife linked to a hazard (a noise complaint) a volunteer team (a
    guard) was sent to, its step failing after the revision's write (P1, `weapon`); the
    command room sends the police to the report, which unlinks it; the report redelivered:
    the volunteers stayed on the P1 with a knife, the P1 short of its second unit, waiting
    for nobody (test_revised_by_an_unlinked_report.py)."""
    def steps(state: DispatchMachine) -> None:
        state.on_shift()
        state.promises_kept()
        state.report(category=0, flags=0)
        state.promises_kept()
        state.report(category=category, flags=0)
        state.promises_kept()
        state.all_quiet()
        state.promises_kept()
        state.fails_and_is_made_again_after_another_step(
            action="duplicate", after=True, arg=1, at=at, meanwhile="assign", other=(38, 0),
            which=1)
        state.promises_kept()

    run_steps(redis_url, steps)
