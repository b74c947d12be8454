"""Team state, orders, positions: each change and its UnitStatus in one MULTI/EXEC.

A state change, the order record, any points it earns and the `unit.status` entry that
announces it commit together, so the stream's order is the state's order and a redelivered
event (finding the change already made) writes and publishes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faststream.redis import RedisBroker
from faststream.redis.parser.binary import BinaryMessageFormatV1
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared import streams
from shared.events import UnitPosition

from ..domain.points import LedgerEntry
from ..domain.status import OrderRecord, TeamState, unit_status
from . import keys
from .points import queue_entries
from .tx import atomically

ORDER_TTL_S = 30 * 24 * 3600  # long after any redelivery of the order's events


def decode_state(data: Mapping[str, str]) -> TeamState:
    raw = data.get("state")
    return TeamState.model_validate_json(raw) if raw else TeamState()


def encode_state(state: TeamState, *, seq: int, now: datetime) -> dict[str, str]:
    return {"state": state.model_dump_json(), "status": state.status, "seq": str(seq),
            "changed_at": now.isoformat()}


def skills_of(team: Mapping[str, str]) -> list[str]:
    return json.loads(team.get("skills") or "[]")


@dataclass(frozen=True, slots=True)
class TeamView:
    team: dict[str, str]
    agency: dict[str, str]
    state: TeamState
    seq: int
    record: OrderRecord | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    state: TeamState
    record: OrderRecord | None = None
    ledger: tuple[LedgerEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    before: TeamView
    decision: Decision
    announced: bool


async def publish_unit_status(
    pipe: Pipeline, broker: RedisBroker, *, team: Mapping[str, str],
    agency: Mapping[str, str], state: TeamState,
) -> None:
    """Queue the team's UnitStatus on `pipe` (inside its MULTI)."""
    event = unit_status(team=team, agency=agency, state=state, skills=skills_of(team))
    await broker.publish(event, stream=streams.UNIT_STATUS.name,
                         maxlen=streams.UNIT_STATUS.maxlen, pipeline=pipe)


async def load_view(client: Redis | Pipeline, team_id: str,
                    order_id: str | None = None) -> TeamView | None:
    team = await client.hgetall(keys.team(team_id))
    if not team:
        return None
    agency = await client.hgetall(keys.agency(team["agency_id"]))
    data = await client.hgetall(keys.state(team_id))
    record = None
    if order_id is not None:
        raw = await client.get(keys.order(order_id))
        record = OrderRecord.model_validate_json(raw) if raw else None
    return TeamView(team=team, agency=agency, state=decode_state(data),
                    seq=int(data.get("seq") or 0), record=record)


async def transition(
    redis: Redis, *, broker: RedisBroker, team_id: str, decide: Callable[[TeamView], Decision],
    now: datetime, order_id: str | None = None,
) -> Applied | None:
    """Read the team (and order), let `decide` rule, write what changed; None: no such team.

    `decide` may raise `Refused`; nothing is written then.
    """
    watch = [keys.team(team_id), keys.state(team_id)]
    if order_id is not None:
        watch.append(keys.order(order_id))

    async def body(pipe: Pipeline) -> Applied | None:
        view = await load_view(pipe, team_id, order_id)
        if view is None:
            return None
        decision = decide(view)
        announce = decision.state.visible() != view.state.visible()
        pipe.multi()
        if decision.state != view.state:
            pipe.hset(keys.state(team_id),
                      mapping=encode_state(decision.state, seq=view.seq + 1, now=now))
        if order_id is not None and decision.record is not None and (
            decision.record != view.record
        ):
            pipe.set(keys.order(order_id), decision.record.model_dump_json(), ex=ORDER_TTL_S)
        queue_entries(pipe, decision.ledger)
        if announce:
            await publish_unit_status(pipe, broker, team=view.team, agency=view.agency,
                                      state=decision.state)
        return Applied(view, decision, announce)

    return await atomically(redis, watch, body)


async def team_state(redis: Redis, team_id: str) -> TeamState:
    return decode_state(await redis.hgetall(keys.state(team_id)))


# --- positions: the hot path, one round trip --------------------------------------------

# Refuses off-duty teams, ignores fixes older than the stored one, overwrites the latest
# position and, at most once per interval per team, appends the prebuilt UnitPosition.
_POSITION = """
local status = redis.call('HGET', KEYS[2], 'status')
if (not status) or status == 'off_duty' then return -1 end
local last = redis.call('HGET', KEYS[1], 'at_ms')
if last and tonumber(ARGV[1]) < tonumber(last) then return 0 end
redis.call('HSET', KEYS[1], 'at_ms', ARGV[1], 'lat', ARGV[2], 'lon', ARGV[3],
           'accuracy_m', ARGV[4], 'at', ARGV[5], 'member_id', ARGV[6])
local pub = tonumber(redis.call('HGET', KEYS[1], 'pub_ms') or '0')
if tonumber(ARGV[7]) - pub >= tonumber(ARGV[8]) then
  if ARGV[9] == '' then
    redis.call('XADD', KEYS[3], '*', '__data__', ARGV[10])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', '__data__', ARGV[10])
  end
  redis.call('HSET', KEYS[1], 'pub_ms', ARGV[7])
  return 2
end
return 1
"""

POSITION_OFF_DUTY, POSITION_STALE, POSITION_STORED, POSITION_PUBLISHED = -1, 0, 1, 2


class PositionWriter:
    """Writes fixes with one EVALSHA each; the UnitPosition envelope is FastStream's own format."""

    def __init__(self, redis: Redis, *, publish_interval_ms: int) -> None:
        self._script = redis.register_script(_POSITION)
        self._interval = str(publish_interval_ms)
        maxlen = streams.UNIT_POSITION.maxlen
        self._maxlen = str(maxlen) if maxlen else ""

    async def write(self, event: UnitPosition, *, member_id: str, now: datetime) -> int:
        envelope = await BinaryMessageFormatV1.encode(
            message=event.model_dump_json().encode(),
            reply_to=None,
            headers={"content-type": "application/json"},
            correlation_id=event.event_id,
        )
        at_ms = int(event.at.timestamp() * 1000)
        args: list[Any] = [
            at_ms, repr(event.lat), repr(event.lon),
            "" if event.accuracy_m is None else repr(event.accuracy_m),
            event.at.isoformat(), member_id, int(now.timestamp() * 1000), self._interval,
            self._maxlen, envelope,
        ]
        keys_ = [keys.position(event.unit_id), keys.state(event.unit_id),
                 streams.UNIT_POSITION.name]
        return int(await self._script(keys=keys_, args=args))


async def latest_position(redis: Redis, team_id: str) -> dict[str, Any] | None:
    data = await redis.hgetall(keys.position(team_id))
    if not data or "lat" not in data:
        return None
    return {
        "lat": float(data["lat"]),
        "lon": float(data["lon"]),
        "accuracy_m": float(data["accuracy_m"]) if data.get("accuracy_m") else None,
        "at": data["at"],
    }
