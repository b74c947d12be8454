"""Notify's Redis keys (prefix `notify:`), behind named functions.

- `notify:order:{id}` (hash): the order as the team may see it, its state and trace context
- `notify:order:{id}:received` (hash device -> receipt), `:attempts` and `:responses` (lists),
  `:fallback_sent` (hash): the order's records, expiring with it (see ORDER LIFETIMES below)
- `notify:team:{team}:open` (zset): the team's orders neither answered nor withdrawn
- `notify:team:{team}:devices` (set), `notify:device:{id}` (hash): devices and their channels;
  the set expires with its freshest device and loses an expired one at each teammate's touch
- `notify:device:{id}:revoked`: a revoked device's tombstone; its channels are never written again
- `notify:fallback` (zset order -> due time): fallback timers, so a restart loses none
- Pub/Sub `notify:fanout:{team}` and `notify:control`: fan-out to every notify replica
- `notify:control:log` (stream): the control messages of the last CONTROL_KEPT_S
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from shared import streams
from shared.bus import XADD_LUA, entry_to_write, maxlen_arg
from shared.events import OrderDelivered, OrderIssued, OrderResponded, utcnow
from shared.metrics import meter
from shared.scripts import run_script

from .domain.fallback import wait_before_step
from .domain.responses import FINISHED, Decision

FALLBACK = "notify:fallback"
CONTROL = "notify:control"
CONTROL_LOG = "notify:control:log"
CONTROL_KEPT_S = 900  # > REAUTH_INTERVAL_S: each socket's token re-check caught older news
ATTEMPTS_KEPT = 500

log = logging.getLogger(__name__)

# A proxy until the process installs its meter provider (shared.metrics.setup_metrics).
DELIVERIES = meter("notify").create_counter(
    "lianfang.notify.deliveries", description="delivery attempts by channel and outcome")


def _order(order_id: str) -> str:
    return f"notify:order:{order_id}"


def _attempts(order_id: str) -> str:
    return f"notify:order:{order_id}:attempts"


def _open(team_id: str) -> str:
    """The team's live orders: issued, or answered and not yet ended (acknowledged, en
    route, on scene), so that a device connecting later (a reloaded page, a new phone)
    still gets the order its team is working on."""
    return f"notify:team:{team_id}:open"


def _team_devices(team_id: str) -> str:
    return f"notify:team:{team_id}:devices"


def _device(device_id: str) -> str:
    return f"notify:device:{device_id}"


def _revoked_device(device_id: str) -> str:
    return f"notify:device:{device_id}:revoked"


def _strings(value: Any) -> dict[str, str]:
    """redis-py types ignore decode_responses; our client decodes, so hashes are str -> str."""
    return cast(dict[str, str], value)


def fanout_channel(team_id: str) -> str:
    return f"notify:fanout:{team_id}"


# --- control messages ---------------------------------------------------------------------

# A control message (a device revoked or moved) is also kept in CONTROL_LOG: Pub/Sub drops
# what is published while a replica's listener is reconnecting, and the replica reads what
# it missed there once it has resubscribed (hub.py). The message carries its entry id, so
# a replica knows how far it has read. Trimmed by the new id's time (Redis's clock; TIME
# itself is not among the commands notify's ACL user may run).
_PUBLISH_CONTROL = """
local id = redis.call('XADD', KEYS[1], '*', 'message', ARGV[1])
local oldest = tonumber(string.match(id, '^%d+')) - tonumber(ARGV[2]) * 1000
redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', oldest))
redis.call('EXPIRE', KEYS[1], ARGV[2])
local message = cjson.decode(ARGV[1])
message['id'] = id
return redis.call('PUBLISH', KEYS[2], cjson.encode(message))
"""


async def publish_control(redis: Redis, message: dict[str, Any]) -> int:
    """Tells every replica `message` (with its `id` in CONTROL_LOG added), and keeps it;
    the number of replicas that heard it now."""
    return int(await run_script(redis, _PUBLISH_CONTROL, [CONTROL_LOG, CONTROL],
                                [json.dumps(message), str(CONTROL_KEPT_S)]))


async def last_control_id(redis: Redis) -> str:
    entries = await redis.xrevrange(CONTROL_LOG, count=1)
    return cast(str, entries[0][0]) if entries else "0-0"


async def control_since(redis: Redis, after: str, *, count: int = 500) -> list[dict[str, Any]]:
    """The control messages kept after entry `after`, oldest first, each with its `id`."""
    found: list[dict[str, Any]] = []
    while True:
        entries = await redis.xrange(CONTROL_LOG, min=f"({after}", count=count)
        found += [{**json.loads(fields["message"]), "id": entry_id}
                  for entry_id, fields in entries]
        if len(entries) < count:
            return found
        after = entries[-1][0]


# --- orders -----------------------------------------------------------------------------

# ORDER LIFETIMES. An order is kept while its team may still answer it, whatever ORDER_TTL_S
# says: a station's hand-over acknowledged on day 1 and filed on day 20 must find its order.
# - Live (issued, acknowledged, en route, on scene): the record and its records expire
#   `open_ttl_s` (ORDER_OPEN_TTL_S, 90 days) after the order was issued or its team last
#   answered it; the team's open set likewise after its last such write. That is the way out
#   of an order whose end never reached notify (its withdrawal lost, dead-lettered): it goes
#   unanswered that long after its team's last word.
# - Ended (resolved, handover, declined, withdrawn): the record and all its records expire
#   ORDER_TTL_S (`ttl_s`) after the end, set by the script that ends it. A later write to
#   one of its records (a receipt crossing the withdrawal, an attempt logged behind a push)
#   takes the record's own remaining time.
# - No script writes to an order's hash unless it exists (a withdrawal excepted: it creates
#   the record of an order it overtook, with its TTL): a write after the record expired
#   would leave a half order with no TTL.
OPEN_ORDER_TTL_S = 90 * 86_400

# Lua: `key` expires when the order `order_key` does (its remaining TTL; `ttl` when the order
# has none left or no TTL). The records of an order have the order's lifetime.
_LIKE_ORDER = """
local function like_order(order_key, key, ttl)
  local left = redis.call('TTL', order_key)
  if left > 0 then redis.call('EXPIRE', key, left) else redis.call('EXPIRE', key, ttl) end
end
"""


def _records(order_id: str) -> list[str]:
    """The order's records beside its hash: they expire with it."""
    key = _order(order_id)
    return [f"{key}:attempts", f"{key}:received", f"{key}:responses", f"{key}:fallback_sent"]


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: str
    team_id: str
    incident_id: str
    district: str
    state: str
    answered: bool
    withdrawn: bool
    received: int
    trace: dict[str, str]
    order: OrderIssued | None  # None: withdrawn before notify saw it issued
    last_response: str | None
    last_reinforce_at: datetime | None
    fallback_step: int
    updated_at: str | None
    # how often the order was amended here (0: as issued): what a fallback message carried
    version: int = 0
    # the last version whose amendment raised its priority or added an urgent flag (_AMEND;
    # not one that only brought the deadline forward): a phone whose message carried it, or
    # a later one, has all an update of the answered order would tell it
    raised_version: int = 0
    # the incident's flags that took the team off it (order.withdrawn's `barred_by`: a weapon)
    barred_by: tuple[str, ...] = ()
    # the display name of the member whose answer was taken last (None: not known), for the
    # team's own sockets' order_state
    answered_by: str | None = None

    @classmethod
    def from_hash(cls, order_id: str, data: dict[str, str]) -> OrderRecord:
        event = data.get("event")
        reinforce = data.get("last_reinforce_at")
        return cls(
            order_id=order_id,
            team_id=data.get("team_id", ""),
            incident_id=data.get("incident_id", ""),
            district=data.get("district", ""),
            state=data.get("state", "issued"),
            answered=data.get("answered") == "1",
            withdrawn=data.get("withdrawn") == "1",
            received=int(data.get("received") or 0),
            trace=json.loads(data.get("trace") or "{}"),
            order=OrderIssued.model_validate_json(event) if event else None,
            last_response=data.get("last_response") or None,
            last_reinforce_at=datetime.fromisoformat(reinforce) if reinforce else None,
            fallback_step=int(data.get("fallback_step") or 0),
            updated_at=data.get("updated_at"),
            version=int(data.get("version") or 0),
            # none kept (amended before it was): every version counts as raised
            raised_version=int(data.get("raised_version") or data.get("version") or 0),
            barred_by=tuple(json.loads(data.get("withdraw_barred") or "[]")),
            answered_by=data.get("answered_by") or None,
        )


@dataclass(frozen=True, slots=True)
class Saved:
    created: bool
    replicas: int | None  # replicas that heard the fan-out now; None: it did not go out now


# Creates the order once; a redelivered order.issued finds it and changes nothing. A
# withdrawal may have arrived first: then the order is kept withdrawn and never offered.
# With a fan-out message (ARGV[11]) the same script publishes it on the team's channel,
# records the attempt and marks the order pushed: one round trip per order, and no crash
# can leave the order stored but never announced, or announced twice. An order stored
# without its fan-out (`pushed` 0) gets it when its event comes again.
# ARGV[13] is the save's own token: redis-py sends the same script again when it lost the
# reply (Redis restarted after running it), and the run sent again answers what the first
# did (created, the replicas that heard it) instead of "pushed before", so the fan-out that
# went out is counted (DELIVERIES) once, not never.
_SAVE_ORDER = _LIKE_ORDER + """
local created = 1 - redis.call('HEXISTS', KEYS[1], 'event')
local state = redis.call('HGET', KEYS[1], 'state') or 'issued'
if created == 0 then
  local save = redis.call('HMGET', KEYS[1], 'saved_by', 'pushed', 'pushed_by', 'pushed_to')
  if save[1] == ARGV[13] then created = 1 end
  if save[2] == '1' then
    if save[3] == ARGV[13] then return {created, tonumber(save[4])} end
    return {created, -1}
  end
else
  redis.call('HSET', KEYS[1], 'event', ARGV[2], 'team_id', ARGV[3], 'incident_id', ARGV[4],
             'district', ARGV[5], 'trace', ARGV[6], 'state', state, 'pushed', '0',
             'fallback_step', '0', 'issued_at', ARGV[7], 'updated_at', ARGV[10],
             'saved_by', ARGV[13])
  redis.call('HSETNX', KEYS[1], 'answered', '0')
  redis.call('HSETNX', KEYS[1], 'received', '0')
  if state == 'issued' then
    redis.call('EXPIRE', KEYS[1], ARGV[14])
    redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
    redis.call('EXPIRE', KEYS[2], ARGV[14])
    if ARGV[8] ~= '' then redis.call('ZADD', KEYS[3], 'NX', ARGV[8], ARGV[1]) end
  else
    redis.call('EXPIRE', KEYS[1], ARGV[9])
  end
end
if ARGV[11] == '' or state == 'withdrawn' then return {created, -1} end
local replicas = redis.call('PUBLISH', KEYS[4], ARGV[11])
local outcome = 'no_socket'
if replicas > 0 then outcome = 'fanned_out' end
redis.call('RPUSH', KEYS[5], cjson.encode({at = ARGV[10], channel = 'websocket',
           outcome = outcome, detail = replicas .. ' replica(s) with a socket of the team'}))
redis.call('LTRIM', KEYS[5], -tonumber(ARGV[12]), -1)
like_order(KEYS[1], KEYS[5], ARGV[9])
redis.call('HSET', KEYS[1], 'pushed', '1', 'pushed_by', ARGV[13], 'pushed_to', replicas)
return {created, replicas}
"""


@dataclass(frozen=True, slots=True)
class NewOrder:
    order: OrderIssued
    trace: dict[str, str]  # the incident's trace context, for the device's answers
    fan_out: str | None = None  # the message for the team's replicas, if it goes out now


def _save_args(new: NewOrder, *, now: float, at: str, fallback_after_s: float | None,
               fallback_steps: int, ttl_s: int, open_ttl_s: int,
               token: str) -> tuple[list[str], list[str]]:
    order = new.order
    keys = [_order(order.order_id), _open(order.team_id), FALLBACK,
            fanout_channel(order.team_id), _attempts(order.order_id)]
    due = ""
    if fallback_after_s is not None:
        due = repr(now + wait_before_step(
            now=now, ack_by=order.ack_by.timestamp() if order.ack_by else None,
            after_s=fallback_after_s, steps_left=fallback_steps))
    args = [order.order_id, order.model_dump_json(), order.team_id, order.incident_id,
            order.district, json.dumps(new.trace), repr(now), due,
            str(ttl_s), at, new.fan_out or "", str(ATTEMPTS_KEPT), token,
            str(max(open_ttl_s, ttl_s))]
    return keys, args


async def save_orders(
    redis: Redis, orders: list[NewOrder], *, fallback_after_s: float | None, ttl_s: int,
    fallback_steps: int = 1, open_ttl_s: int = OPEN_ORDER_TTL_S,
) -> list[Saved]:
    """Stores each order and publishes its fan-out message unless that went out before (see
    _SAVE_ORDER): one script per order, all in one round trip. Each script stands alone:
    should one fail, the others still ran, and running them all again changes nothing; the
    first failure is raised once the fan-outs that went out are counted (raised before,
    they never were: the retry finds them pushed).

    `fallback_after_s` None: no fallback timer; else the first of the chain's
    `fallback_steps` steps is due as domain.fallback.wait_before_step says (at most
    FALLBACK_AFTER_S, sooner when the order's `ack_by` is near). The order is kept
    `open_ttl_s` while live, `ttl_s` once stored withdrawn (ORDER LIFETIMES)."""
    now, at, token = time.time(), utcnow().isoformat(), uuid.uuid4().hex
    async with redis.pipeline(transaction=False) as pipe:
        for new in orders:
            keys, args = _save_args(new, now=now, at=at, fallback_after_s=fallback_after_s,
                                    fallback_steps=fallback_steps, ttl_s=ttl_s,
                                    open_ttl_s=open_ttl_s, token=token)
            await run_script(pipe, _SAVE_ORDER, keys, args)
        replies = await pipe.execute(raise_on_error=False)
    saved = []
    for reply in replies:
        if isinstance(reply, Exception):
            continue
        created, heard = reply
        if heard < 0:
            saved.append(Saved(created=bool(created), replicas=None))
            continue
        DELIVERIES.add(1, {"channel": "websocket",
                           "outcome": "fanned_out" if heard else "no_socket"})
        saved.append(Saved(created=bool(created), replicas=heard))
    if failed := next((r for r in replies if isinstance(r, Exception)), None):
        raise failed
    return saved


# How long a page connecting is warned of its team taken off an order by the incident's
# flags (a weapon; Settings.barred_warning_s), and of how many of them at most.
BARRED_WARNING_S = 2 * 3600
BARRED_WARNINGS_MOST = 20  # the newest barred withdrawals a connecting page is warned of


# Marks the order withdrawn and, in the same script, tells the team's replicas (ARGV[8]) and
# marks that done: a redelivered order.withdrawn finds it done and changes nothing.
# A live order its team had been sent (its event stored) taken off it by the incident's
# flags (ARGV[10], a weapon) goes into the team's barred set (KEYS[9], _barred) at the
# withdrawal's time, for ARGV[11] seconds: a page connecting meanwhile that does not show
# the order (reloaded offline, a second phone) is warned all the same (barred_warnings).
_WITHDRAW = """
if redis.call('HGET', KEYS[1], 'withdrawn') == '1' then
  if redis.call('HGET', KEYS[1], 'withdraw_pushed') == '1' then return 0 end
else
  local state = redis.call('HGET', KEYS[1], 'state')
  local live = not state or state == 'issued' or state == 'acknowledged' or state == 'en_route'
     or state == 'on_scene'
  if live then
    redis.call('HSET', KEYS[1], 'state', 'withdrawn')
  end
  redis.call('HSET', KEYS[1], 'withdrawn', '1', 'withdraw_pushed', '0', 'withdraw_reason', ARGV[5],
             'updated_at', ARGV[7])
  -- the flags that took the team off it (a weapon), told again to a page back from a drop
  if ARGV[10] and ARGV[10] ~= '' then
    redis.call('HSET', KEYS[1], 'withdraw_barred', ARGV[10])
    if live and KEYS[9] and redis.call('HEXISTS', KEYS[1], 'event') == 1 then
      -- older ones are dropped here, so that a connecting page's read writes nothing
      redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf',
                 '(' .. tostring(tonumber(ARGV[9]) - tonumber(ARGV[11])))
      redis.call('ZADD', KEYS[9], ARGV[9], ARGV[1])
      redis.call('EXPIRE', KEYS[9], ARGV[11])
    end
  end
  redis.call('HSETNX', KEYS[1], 'team_id', ARGV[2])
  redis.call('HSETNX', KEYS[1], 'incident_id', ARGV[3])
  redis.call('HSETNX', KEYS[1], 'district', ARGV[4])
  for i = 1, math.min(#KEYS, 8) do
    if i == 1 or i > 4 then redis.call('EXPIRE', KEYS[i], ARGV[6]) end
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  -- a fallback message went (or was going): a timer takes it back where its channel can
  if redis.call('EXISTS', KEYS[8]) == 1 then
    redis.call('ZADD', KEYS[3], ARGV[9], ARGV[1] .. '#withdrawn')
  end
end
redis.call('PUBLISH', KEYS[4], ARGV[8])
redis.call('HSET', KEYS[1], 'withdraw_pushed', '1')
return 1
"""


async def withdraw_order(
    redis: Redis, *, order_id: str, team_id: str, incident_id: str, district: str, reason: str,
    ttl_s: int, fan_out: str, barred_by: tuple[str, ...] = (),
    warn_s: int = BARRED_WARNING_S,
) -> bool:
    """Marks the order withdrawn and publishes `fan_out` to the team's replicas; True when
    that happened now, False when an earlier delivery of the withdrawal already did it.
    The order and its records then expire `ttl_s` (ORDER_TTL_S) after the withdrawal. An
    order a fallback step was sent for gets a timer (withdrawal_timer, due now) that takes
    the messages back where their channel can (a Web Push waiting for an offline phone).
    A live order withdrawn with `barred_by` is kept in the team's barred set for `warn_s`
    (BARRED_WARNING_S): see barred_warnings."""
    return bool(await redis.eval(
        _WITHDRAW, 9, _order(order_id), _open(team_id), FALLBACK, fanout_channel(team_id),
        *_records(order_id), _barred(team_id), order_id, team_id, incident_id, district, reason,
        str(ttl_s), utcnow().isoformat(), fan_out, repr(time.time()),
        json.dumps(list(barred_by)) if barred_by else "", str(max(1, warn_s)),
    ))


# --- the danger warning of a team taken off an order (a weapon) ---------------------------


def _barred(team_id: str) -> str:
    """The team's orders taken off it by the incident's flags (a weapon), scored by when:
    kept BARRED_WARNING_S, so a page connecting meanwhile is warned (_WITHDRAW)."""
    return f"notify:team:{team_id}:barred"


def _warning_read(order_id: str) -> str:
    """The devices whose member has read the order's danger warning (warning_read)."""
    return f"notify:order:{order_id}:warning_read"


# The team's barred withdrawals since ARGV[1], newest first, at most ARGV[2], less those
# whose warning the device ARGV[3] has read: each one's id, time and hash. Each order's keys
# are built here from its id: ARGV[4] (_order) and ARGV[5] .. ':warning_read'
# (_warning_read). It writes nothing (older ones are dropped by _WITHDRAW, the set expires):
# a socket's replay only reads, so a phone stays connected while Redis refuses writes (a
# full disk) and is answered 503 only for what it asks to write.
_BARRED_WARNINGS = """
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[2]))
local reply = {}
for i = 1, #ids, 2 do
  if redis.call('SISMEMBER', ARGV[5] .. ids[i] .. ':warning_read', ARGV[3]) == 0 then
    local o = redis.call('HGETALL', ARGV[4] .. ids[i])
    if #o > 0 then
      reply[#reply + 1] = ids[i]
      reply[#reply + 1] = ids[i + 1]
      reply[#reply + 1] = o
    end
  end
end
return reply
"""


@dataclass(frozen=True, slots=True)
class BarredWarning:
    record: OrderRecord
    at: datetime  # when the team was taken off it


async def barred_warnings(redis: Redis, team_id: str, device_id: str, *,
                          warn_s: float) -> list[BarredWarning]:
    """The team's orders taken off it in the last `warn_s` because the incident's flags
    bar it (a weapon) whose warning this device has not read, newest first (at most
    BARRED_WARNINGS_MOST), in one round trip."""
    since = time.time() - warn_s
    reply = await run_script(redis, _BARRED_WARNINGS, [_barred(team_id)],
                             [repr(since), str(BARRED_WARNINGS_MOST), device_id, _order(""),
                              _order("")])
    found = []
    for order_id, score, flat in zip(reply[::3], reply[1::3], reply[2::3], strict=True):
        data = dict(zip(flat[::2], flat[1::2], strict=True))
        record = OrderRecord.from_hash(order_id, data)
        if record.team_id == team_id and record.barred_by and record.order is not None:
            found.append(BarredWarning(record, datetime.fromtimestamp(float(score), UTC)))
    return found


# The device's member has read the warning of an order its team was taken off (KEYS[1]
# holds the team ARGV[1] and a `withdraw_barred`): kept ARGV[3] seconds. 1 kept, 0 not such
# an order of the team.
_READ_WARNING = """
if redis.call('HGET', KEYS[1], 'team_id') ~= ARGV[1]
   or not redis.call('HGET', KEYS[1], 'withdraw_barred') then return 0 end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


async def read_warning(redis: Redis, order_id: str, *, team_id: str, device_id: str,
                       keep_s: int) -> bool:
    """The member has read, on this device, the danger warning of an order the team was
    taken off: a reconnect of the device is not warned of it again (barred_warnings)."""
    return bool(await run_script(redis, _READ_WARNING, [_order(order_id), _warning_read(order_id)],
                                 [team_id, device_id, str(max(1, keep_s))]))


# A stored order replaced by its amended version unless withdrawn or ended (an answer that
# ended it came first: its phones are told nothing of an order that is over); an amendment
# made again finds the same version stored and publishes nothing. Each one applied counts
# (`version`): a fallback message carries the version it was sent with. One that raised the
# order (ARGV[7]: '1'; 'u': raised only if nobody has answered it, judged here, as it stands
# now, not as the caller read it) of which some fallback message went (or was going) sets
# the timer that sends the order as it is now where they went (amendment_timer, due at
# once, ARGV[8]). The last version raised so whether answered or not ('1': a priority or an
# urgent flag, not a deadline alone) is kept (`raised_version`): answered by the time its
# timer fires, an order raised since only by its deadline has nothing new to send (an
# order amended before it was kept counts every earlier version as raised).
_AMEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'withdrawn') == '1' then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'resolved' or state == 'handover' or state == 'declined' then return 0 end
if redis.call('HGET', KEYS[1], 'event') == ARGV[1] then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'amended_at') or '0')
if tonumber(ARGV[4]) < last then return 0 end
redis.call('HSET', KEYS[1], 'event', ARGV[1], 'updated_at', ARGV[2], 'amended_at', ARGV[4])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'raised_version', version)
elseif redis.call('HEXISTS', KEYS[1], 'raised_version') == 0 then
  redis.call('HSET', KEYS[1], 'raised_version', version - 1)
end
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[3], 'XX', 'LT', ARGV[5], ARGV[6])
end
local raised = ARGV[7] == '1'
if ARGV[7] == 'u' then
  raised = (state or 'issued') == 'issued' and redis.call('HGET', KEYS[1], 'answered') ~= '1'
end
if raised and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[6] .. '#amended')
end
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""


async def amend_order(redis: Redis, record: OrderRecord, amended: OrderIssued, *,
                      fan_out: str, revised_at: datetime,
                      fallback_due: float | None = None, raised: bool = False,
                      raised_answered: bool | None = None) -> bool:
    """Stores the amended order (what a reconnecting phone is sent from now on) and
    publishes `fan_out` to the team's replicas; False: nothing to do (its record gone,
    withdrawn or ended, amended so already, or by a later revision: an amendment retried after a newer one is
    not applied over it). `fallback_due`: the next fallback step brought forward to then (a sooner
    deadline), if one is still scheduled and later. `raised` (more urgent: domain.orders.raised):
    a phone some fallback message went to (an SMS, a Web Push) is sent the order again
    (amendment_timer, set now when some message went or was going). `raised_answered`: so
    if the team has answered the order (a sooner deadline alone raises only an unanswered
    one), judged in the script as the order stands then, not as `record` was read (an
    answer may come in between); None: as `raised`."""
    if raised_answered is None:
        raised_answered = raised
    flag = "1" if raised and raised_answered else "u" if raised else "0"
    return bool(await run_script(
        redis, _AMEND, [_order(record.order_id), fanout_channel(record.team_id), FALLBACK,
                        _sent_marks(record.order_id)],
        [amended.model_dump_json(), utcnow().isoformat(), fan_out,
         repr(revised_at.timestamp()), "" if fallback_due is None else repr(fallback_due),
         record.order_id, flag, repr(time.time())]))


async def get_order(redis: Redis, order_id: str) -> OrderRecord | None:
    data = _strings(await redis.hgetall(_order(order_id)))
    if not data:
        return None
    return OrderRecord.from_hash(order_id, data)


_NOT_LIVE = FINISHED | {"withdrawn"}  # domain.responses.is_live

# The most orders one replay sends a socket (each its own frame, all queued at once: well
# inside the socket's send queue, SEND_QUEUE, 256 by default).
REPLAY_MOST = 100


class LiveOrders(list[OrderRecord]):
    """The team's live orders a replay sends, oldest first, and how many live orders were
    left out by its bound (`left_out`), of which `unanswered_left_out` await an answer."""

    def __init__(self, records: list[OrderRecord], *, left_out: int = 0,
                 unanswered_left_out: int = 0) -> None:
        super().__init__(records)
        self.left_out = left_out
        self.unanswered_left_out = unanswered_left_out


# The team's open set walked newest first, in one step: an entry whose order expired (no
# event), was withdrawn or ended is taken out of the set; of the live ones, those nobody has
# answered are chosen first, newest first, then those the team is working on, newest first,
# up to ARGV[1]. Answers the counts left out (live, and unanswered) and, oldest first, each
# chosen order's id and hash. Each order's key is built here: ARGV[2] and its id (_order);
# ARGV[3..] are the states an order is no longer live in.
_OPEN_ORDERS = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local most = tonumber(ARGV[1])
local over = {}
for i = 3, #ARGV do over[ARGV[i]] = true end
local waiting, taken = {}, {}
for i = #ids, 1, -1 do
  local o = redis.call('HMGET', ARGV[2] .. ids[i], 'event', 'withdrawn', 'state', 'answered')
  if not o[1] or o[2] == '1' or over[o[3] or 'issued'] then
    redis.call('ZREM', KEYS[1], ids[i])
  elseif o[4] == '1' then
    taken[#taken + 1] = i
  else
    waiting[#waiting + 1] = i
  end
end
local chosen = {}
for _, i in ipairs(waiting) do
  if #chosen < most then chosen[#chosen + 1] = i end
end
local unanswered_left_out = #waiting - #chosen
for _, i in ipairs(taken) do
  if #chosen < most then chosen[#chosen + 1] = i end
end
table.sort(chosen)
local reply = {#waiting + #taken - #chosen, unanswered_left_out}
for _, i in ipairs(chosen) do
  reply[#reply + 1] = ids[i]
  reply[#reply + 1] = redis.call('HGETALL', ARGV[2] .. ids[i])
end
return reply
"""


async def open_orders(redis: Redis, team_id: str, *, most: int = REPLAY_MOST) -> LiveOrders:
    """The team's live orders (not ended, not withdrawn), oldest first: those not yet
    answered and those it is working on; at most `most`, those nobody has answered first
    (the newest, should there be more of them), then the newest of those it is working on
    (LiveOrders counts those left out). One script, however many: the entries of orders
    expired, withdrawn or ended are taken out of the team's open set on the way."""
    reply = await run_script(redis, _OPEN_ORDERS, [_open(team_id)],
                             [str(most), _order(""), *sorted(_NOT_LIVE)])
    left_out, unanswered_left_out, *chosen = reply
    records = []
    for order_id, flat in zip(chosen[::2], chosen[1::2], strict=True):
        data = dict(zip(flat[::2], flat[1::2], strict=True))
        records.append(OrderRecord.from_hash(order_id, data))
    return LiveOrders(records, left_out=int(left_out),
                      unanswered_left_out=int(unanswered_left_out))


_STANDING = ("team_id", "state", "answered", "withdrawn", "last_response", "withdraw_barred",
             "answered_by")


async def where_orders_stand(redis: Redis, order_ids: list[str]) -> list[OrderRecord | None]:
    """Where each order stands (its team, state, answer and withdrawal: the record without
    the order itself or its trace), all in one round trip; None for an order gone."""
    async with redis.pipeline(transaction=False) as pipe:
        for order_id in order_ids:
            pipe.hmget(_order(order_id), _STANDING)
        found = await pipe.execute()
    standing: list[OrderRecord | None] = []
    for order_id, values in zip(order_ids, found, strict=True):
        data = {k: v for k, v in zip(_STANDING, values, strict=True) if v is not None}
        standing.append(OrderRecord.from_hash(order_id, data) if data else None)
    return standing


# --- responses and receipts -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    record: OrderRecord
    decision: Decision
    event_id: str | None  # the event the answer published; None: a repeat, nothing written


# A response's writes, made only if the order is as the decision saw it (its state and the
# time of its last change): 1 done, 0 changed meanwhile (decide again), -1 no such order.
# The same step XADDs the order.responded entry (first: what refuses it refuses the script
# before it writes anything) and tells the team's replicas (ARGV[11]): no outbox, no window
# between the answer recorded and the answer published.
_RESPOND = XADD_LUA + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local seen = redis.call('HMGET', KEYS[1], 'state', 'updated_at')
if (seen[1] or 'issued') ~= ARGV[1] or (seen[2] or '') ~= ARGV[2] then return 0 end
xadd(KEYS[5], ARGV[10], ARGV[9])
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'answered', '1', 'last_response', ARGV[4],
           'updated_at', ARGV[5], 'answered_by', ARGV[14])
if ARGV[4] == 'reinforce' then redis.call('HSET', KEYS[1], 'last_reinforce_at', ARGV[5]) end
redis.call('RPUSH', KEYS[4], ARGV[8])
local ttl = ARGV[12]  -- live: kept while its team may answer it
if ARGV[3] == 'resolved' or ARGV[3] == 'handover' or ARGV[3] == 'declined' then
  redis.call('ZREM', KEYS[2], ARGV[7])
  ttl = ARGV[6]  -- ended: ORDER_TTL_S from now
  -- declined: no longer the team's (dispatch withdraws nothing); a fallback message that
  -- went (or was going) to a teammate is taken back, as a withdrawal's (_WITHDRAW)
  if ARGV[3] == 'declined' and redis.call('EXISTS', KEYS[9]) == 1 then
    redis.call('ZADD', KEYS[3], ARGV[13], ARGV[7] .. '#withdrawn')
  end
else
  redis.call('EXPIRE', KEYS[2], ttl)
end
for _, key in ipairs({KEYS[1], KEYS[4], KEYS[7], KEYS[8], KEYS[9]}) do
  redis.call('EXPIRE', key, ttl)
end
redis.call('ZREM', KEYS[3], ARGV[7])
redis.call('PUBLISH', KEYS[6], ARGV[11])
return 1
"""


async def apply_response(
    redis: Redis,
    order_id: str,
    *,
    decide: Callable[[OrderRecord], tuple[Decision, OrderResponded | None]],
    fan_out: Callable[[Decision], str],
    response: str,
    member_id: str,
    device_id: str | None,
    ttl_s: int,
    record: OrderRecord | None = None,
    open_ttl_s: int = OPEN_ORDER_TTL_S,
    member_name: str | None = None,
) -> Outcome | None:
    """Applies one response atomically: None when the order is unknown.

    `decide` returns the decision and, when it must be published, the event; it may raise
    ResponseRefused, which propagates with nothing written. The event is written to
    order.responded by the same script, and `fan_out`'s message for the decision goes to
    the team's replicas. `record`: the order as the caller has just read it, decided on
    without reading it again; the script writes only if the order has not changed since
    (an answer on another device, a withdrawal), else it is read and decided again.
    An answer that ends the order has it and its records expire `ttl_s` (ORDER_TTL_S) from
    now; one that keeps it live, `open_ttl_s` from now (ORDER LIFETIMES). A decline of an
    order some fallback step was sent for sets its withdrawal_timer (due now), as a
    withdrawal does: the order is no longer the team's, and a teammate texted it must not go.
    `member_name`: the answering member's display name, kept on the order (answered_by) for
    the replay's order_state; an answer without one clears an earlier member's.
    """
    key = _order(order_id)
    stream = streams.ORDER_RESPONDED
    while True:
        if record is None:
            record = await get_order(redis, order_id)
            if record is None:
                return None
        decision, event = decide(record)
        if not decision.emit or event is None:
            return Outcome(record=record, decision=decision, event_id=None)
        now = utcnow().isoformat()
        answer = json.dumps({"at": now, "response": response, "member_id": member_id,
                             "device_id": device_id})
        # The producer span is the publish's; one whose write lost the race (a concurrent
        # answer) is followed by the decision taken again.
        async with entry_to_write(stream, event, event.event_id) as entry:
            done = await run_script(
                redis, _RESPOND,
                [key, _open(record.team_id), FALLBACK, f"{key}:responses", stream.name,
                 fanout_channel(record.team_id), f"{key}:attempts", f"{key}:received",
                 f"{key}:fallback_sent"],
                [record.state, record.updated_at or "", decision.state, response, now,
                 str(ttl_s), order_id, answer, entry, maxlen_arg(stream),
                 fan_out(decision), str(max(open_ttl_s, ttl_s)), repr(time.time()),
                 member_name or ""])
        if done < 0:
            return None
        if done:
            updated = replace(
                record, state=decision.state, answered=True, last_response=response,
                updated_at=now, answered_by=member_name or None,
                last_reinforce_at=(datetime.fromisoformat(now) if response == "reinforce"
                                   else record.last_reinforce_at))
            return Outcome(record=updated, decision=decision, event_id=event.event_id)
        record = None


async def gave_response(redis: Redis, order_id: str, *, device_id: str | None,
                        response: str) -> bool:
    """Whether this device's `response` to the order is recorded (its `:responses` list)."""
    if not device_id:
        return False
    for raw in await redis.lrange(f"{_order(order_id)}:responses", 0, -1):
        try:
            said = json.loads(raw)
        except ValueError:
            continue
        if said.get("device_id") == device_id and said.get("response") == response:
            return True
    return False


# The first receipt from a device records it, XADDs its order.delivered entry (first: what
# refuses it refuses the script before it writes anything) and records the attempt; a repeat
# does nothing. The fallback timer stays: its next step judges whether the receipt was the
# team's (fallback.FallbackTimers: a member on its shift), and stops or goes on. No outbox,
# no window between the two. The receipt recorded being this very one (ARGV[2], stamped
# with its time) means redis-py sent the script again after losing its reply: it answers as
# the run that recorded it did, so the receipt is counted (DELIVERIES) once, not never.
# A receipt of an order that has ended (withdrawn, or its team's answer finished it: a page's
# receipt retried late, or one crossing the withdrawal) is kept in the order's record but
# not published (2): dispatch would put on the timeline a team receiving an order after it
# was taken back or done, and notify stamps the event with the time it came, not when the
# phone had the order.
_RECEIVE = XADD_LUA + _LIKE_ORDER + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local had = redis.call('HGET', KEYS[2], ARGV[1])
if had then
  if had == ARGV[2] then return 1 end
  return 0
end
local order = redis.call('HMGET', KEYS[1], 'withdrawn', 'state')
local ended = order[1] == '1' or order[2] == 'resolved' or order[2] == 'handover'
              or order[2] == 'declined' or order[2] == 'withdrawn'
local attempt = ARGV[7]
if ended then attempt = ARGV[9] else xadd(KEYS[4], ARGV[6], ARGV[5]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
like_order(KEYS[1], KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], 'received', 1)
redis.call('RPUSH', KEYS[3], attempt)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[8]), -1)
like_order(KEYS[1], KEYS[3], ARGV[4])
if ended then return 2 end
return 1
"""


async def record_receipt(redis: Redis, event: OrderDelivered, *, ttl_s: int) -> bool:
    """True the first time this device confirms this order: the receipt, its attempt and
    the order.delivered event are then written, in one step; the event only while the
    order has not ended (_RECEIVE). False, with nothing written, also when the order's
    record is gone (expired since the caller read it)."""
    at = utcnow().isoformat()
    receipt = json.dumps({"member_id": event.member_id, "channel": event.channel, "at": at})
    attempt = _attempt_entry(event.channel, "received", device_id=event.device_id,
                             member_id=event.member_id, detail=None)
    late = _attempt_entry(event.channel, "received", device_id=event.device_id,
                          member_id=event.member_id,
                          detail="after the order ended; not published")
    key = _order(event.order_id)
    stream = streams.ORDER_DELIVERED
    # The producer span is the publish's; a repeated receipt's writes nothing.
    async with entry_to_write(stream, event, event.event_id) as entry:
        outcome = await run_script(
            redis, _RECEIVE,
            [key, f"{key}:received", _attempts(event.order_id), stream.name],
            [event.device_id, receipt, event.order_id, str(ttl_s), entry,
             maxlen_arg(stream), attempt, str(ATTEMPTS_KEPT), late])
    if outcome:
        DELIVERIES.add(1, {"channel": event.channel,
                           "outcome": "received" if outcome == 1 else "received_late"})
    return bool(outcome)


# --- deliveries ---------------------------------------------------------------------------


def _attempt_entry(channel: str, outcome: str, *, device_id: str | None,
                   member_id: str | None, detail: str | None) -> str:
    entry: dict[str, Any] = {"at": utcnow().isoformat(), "channel": channel, "outcome": outcome}
    if device_id is not None:
        entry["device_id"] = device_id
    if member_id is not None:
        entry["member_id"] = member_id
    if detail is not None:
        entry["detail"] = detail[:200]
    return json.dumps(entry)


def _attempt(channel: str, outcome: str, *, device_id: str | None, member_id: str | None,
             detail: str | None) -> str:
    DELIVERIES.add(1, {"channel": channel, "outcome": outcome})
    return _attempt_entry(channel, outcome, device_id=device_id, member_id=member_id,
                          detail=detail)


_APPEND_ATTEMPT = _LIKE_ORDER + """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
like_order(KEYS[2], KEYS[1], ARGV[3])
return 0
"""


def _append_attempt(pipe: Pipeline, order_id: str, entry: str, ttl_s: int) -> None:
    """Queues the attempt on the pipeline; the list expires with its order (`ttl_s` when the
    order's record is gone)."""
    pipe.eval(_APPEND_ATTEMPT, 2, _attempts(order_id), _order(order_id), entry,
              str(ATTEMPTS_KEPT), str(ttl_s))


async def record_attempt(
    redis: Redis, order_id: str, *, channel: str, outcome: str, device_id: str | None = None,
    member_id: str | None = None, detail: str | None = None, ttl_s: int,
) -> None:
    entry = _attempt(channel, outcome, device_id=device_id, member_id=member_id, detail=detail)
    async with redis.pipeline(transaction=False) as pipe:
        _append_attempt(pipe, order_id, entry, ttl_s)
        await pipe.execute()


class AttemptLog:
    """The sockets' delivery attempts, written behind the pushes.

    The fan-out listener pushes every order of a team to its sockets in turn; were it to
    wait for Redis to record each push, a burst of orders would queue behind those round
    trips (at 200 orders/s on two busy cores it did: ~1 s). It notes the attempt here and
    goes on; a writer task sends whatever piled up in one round trip. The log is the
    order's delivery history (GET /v1/orders/{id}/deliveries): an attempt lost with the
    process is a line missing from it, never an order missing from a socket.
    """

    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl = ttl_s
        self._pending: list[tuple[str, str]] = []
        self._wake = asyncio.Event()
        self._closing = False

    def add(self, order_id: str, *, channel: str, outcome: str, device_id: str | None = None,
            member_id: str | None = None) -> None:
        entry = _attempt(channel, outcome, device_id=device_id, member_id=member_id, detail=None)
        self._pending.append((order_id, entry))
        self._wake.set()

    async def run(self) -> None:
        """Writes what piles up, until closed: then it ends once what it holds is written."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    def close(self) -> None:
        """Ends `run` after its write under way, rather than a cancellation, which drops that
        write's attempts and on Python 3.11 may be swallowed by redis-py (shared.runtime.stop_task)."""
        self._closing = True
        self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for order_id, entry in batch:
                    _append_attempt(pipe, order_id, entry, self._ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the client has retried already
            log.warning("%d delivery attempt(s) not recorded: %s", len(batch),
                        type(exc).__name__)


async def deliveries(redis: Redis, order_id: str) -> dict[str, Any]:
    key = _order(order_id)
    attempts = [json.loads(x) for x in await redis.lrange(_attempts(order_id), 0, -1)]
    received = {
        device: json.loads(raw) for device, raw in (await redis.hgetall(f"{key}:received")).items()
    }
    responses = [json.loads(x) for x in await redis.lrange(f"{key}:responses", 0, -1)]
    return {"attempts": attempts, "received": received, "responses": responses}


# --- fallback timers ------------------------------------------------------------------------

# Claims due timers by pushing them a lease into the future: a replica that dies while
# working on one leaves it to come due again, so no timer is lost.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


async def claim_due_fallbacks(redis: Redis, *, lease_s: float,
                              limit: int = 50) -> tuple[list[str], float]:
    """Due fallback timers, leased until the time returned (their score, while ours)."""
    now = time.time()
    until = now + lease_s
    return await redis.eval(_CLAIM_DUE, 1, FALLBACK, repr(now), repr(until), str(limit)), until


async def holds_fallback(redis: Redis, order_id: str, leased_until: float) -> bool:
    """Whether the order's fallback timer is still the lease taken until `leased_until`:
    not claimed again by another replica (a lease outlived) nor moved on or cancelled."""
    score = await redis.zscore(FALLBACK, order_id)
    return score is not None and abs(score - leased_until) < 1e-3


# Timers whose lease is still the one given (ARGV: now, then timer and lease pairs) come due
# now: a replica stopping hands them back rather than leaving them to their lease.
_RELEASE = """
for i = 2, #ARGV, 2 do
  local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or '-1')
  if math.abs(score - tonumber(ARGV[i + 1])) < 0.001 then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  end
end
return 0
"""


async def release_fallbacks(redis: Redis, leases: list[tuple[str, float]]) -> None:
    """Makes each (timer, leased_until) this replica still holds due now."""
    if leases:
        await run_script(redis, _RELEASE, [FALLBACK],
                         [repr(time.time()), *(x for t, u in leases for x in (t, repr(u)))])


@dataclass(frozen=True, slots=True)
class SendMark:
    """Where one message of a fallback step (one device) stands, as a replica begins it."""

    state: str  # go: send it now (try `tries`); sent; done (not to be tried again);
    #             busy: another replica is sending it until `till`; stale: the order was
    #             amended since the sender read it
    tries: int = 0
    till: float | None = None


# One field per step and device in `notify:order:{id}:fallback_sent`: `sending` (with the
# time its sender must be done by and the try), then `sent`, `failed` (to be tried again) or
# `done`, and whether some try of it may have reached the phone (`went`: kept through the
# later tries, so a message given up after one went unanswered is still taken back should
# its order be withdrawn). A mark is taken before the message goes, so two replicas never
# send it at once;
# a `sending` mark past its time is a sender that died (a kill, a restart) with the message
# maybe sent: it is sent again, with the same reference for the gateway to deduplicate on,
# rather than lost. A mark from before the states (`1`) counts as sent.
# The mark names its sender (ARGV[5], one per begin): the same script run again (redis-py
# sends it again when its reply was lost) finds its own mark and goes on, rather than
# taking itself for another replica and sending nothing.
# A message of the order (ARGV[6]: the order's version the sender read, see _AMEND) is not
# begun once the order was amended since the sender read it (`stale`: read it again): begun
# with the old one, no amendment after it would know to follow it. The mark keeps the
# version its first try carried (`v`).
_BEGIN_SEND = _LIKE_ORDER + """
-- the order's own message, once it is withdrawn or declined: not sent (the withdrawal or
-- the decline set no timer to take back a message not yet begun); its take-back
-- ('withdrawn<step>') goes
if string.sub(ARGV[1], 1, 9) ~= 'withdrawn' then
  local order = redis.call('HMGET', KEYS[2], 'withdrawn', 'state', 'version')
  if order[1] == '1' or order[2] == 'declined' then return {'done'} end
  if ARGV[6] ~= '' and tonumber(order[3] or '0') ~= tonumber(ARGV[6]) then
    return {'stale'}
  end
end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local tries = 0
local went = nil
local v = tonumber(ARGV[6])
if raw then
  local ok, mark = pcall(cjson.decode, raw)
  if not ok or type(mark) ~= 'table' or mark.state == 'sent' then return {'sent'} end
  if mark.state == 'sending' then
    if mark.by == ARGV[5] then return {'go', tostring(mark.tries)} end
    if (tonumber(mark.till) or 0) > tonumber(ARGV[2]) then return {'busy', tostring(mark.till)} end
  elseif mark.state ~= 'failed' then return {'done'} end
  tries = tonumber(mark.tries) or 0
  went = mark.went
  v = mark.v  -- the first try's (none: a mark from before versions, read as 0)
end
tries = tries + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({state = 'sending', till = ARGV[3],
                                                   tries = tries, by = ARGV[5], went = went,
                                                   v = v}))
like_order(KEYS[2], KEYS[1], ARGV[4])
return {'go', tostring(tries)}
"""

_END_SEND = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local ok, mark = pcall(cjson.decode, raw)
if not ok or type(mark) ~= 'table' or mark.state ~= 'sending'
   or tonumber(mark.tries) ~= tonumber(ARGV[3]) then return 0 end
local went = 0
if ARGV[4] == '1' or mark.went == 1 then went = 1 end
redis.call('HSET', KEYS[1], ARGV[1],
           cjson.encode({state = ARGV[2], tries = tonumber(ARGV[3]), went = went, v = mark.v}))
return 1
"""


def _sent_marks(order_id: str) -> str:
    return f"{_order(order_id)}:fallback_sent"


@dataclass(frozen=True, slots=True)
class StepMark:
    """One fallback message as its mark stands: `step` (the chain's index), the device,
    where it is (sent, sending until `till`, failed, done), and whether a try of it may have
    reached the phone (`went`)."""

    step: int
    device_id: str
    state: str
    till: float | None = None
    went: bool | None = None  # None: a mark from before this was kept
    # the order's version (OrderRecord.version) its first try carried; an update's, the
    # version it sends (0 also for a mark from before versions were kept)
    version: int = 0

    @property
    def may_have_gone(self) -> bool:
        """Sent, being sent, or tried with no answer saying it was not taken (a timeout, a
        proxy's 502 or 504), whether tried again or given up. A message refused outright
        each time (503, 429, 4xx) never went: nothing to take back. A failed mark from
        before `went` was kept counts as maybe taken."""
        if self.state in ("sent", "sending") or self.went:
            return True
        return self.went is None and self.state == "failed"


def _step_mark(step: int, device_id: str, raw: str, *, version: int | None = None) -> StepMark:
    try:
        mark = json.loads(raw)
    except ValueError:
        mark = None
    if not isinstance(mark, dict):  # a mark from before the states: sent
        return StepMark(step, device_id, "sent", version=version or 0)
    till = mark.get("till")
    return StepMark(step, device_id, str(mark.get("state")),
                    float(till) if till is not None else None,
                    went=None if "went" not in mark else mark["went"] == 1,
                    version=version if version is not None else int(mark.get("v") or 0))


async def step_marks(redis: Redis, order_id: str) -> list[StepMark]:
    """The marks of the order's fallback messages (not those of taking them back, nor
    the updates of an amended order)."""
    found = []
    for field, raw in _strings(await redis.hgetall(_sent_marks(order_id))).items():
        step, _, device_id = field.partition(":")
        if not step.isdigit() or not device_id:
            continue
        found.append(_step_mark(int(step), device_id, raw))
    return found


AMENDED_STEP = "amended"


def amended_step(step: int, version: int) -> str:
    """The mark's name of the update of `step`'s message sending the order's `version`:
    one per version, so an amendment delivered again sends nothing twice."""
    return f"{AMENDED_STEP}{step}v{version}"


async def amended_marks(redis: Redis, order_id: str) -> list[StepMark]:
    """The marks of the updates sent for the order's amendments (amended_step), each with
    the step whose message it follows and the version it sends."""
    found = []
    for field, raw in _strings(await redis.hgetall(_sent_marks(order_id))).items():
        name, _, device_id = field.partition(":")
        step, sep, version = name.removeprefix(AMENDED_STEP).partition("v")
        if (not name.startswith(AMENDED_STEP) or not sep or not step.isdigit()
                or not version.isdigit() or not device_id):
            continue
        found.append(_step_mark(int(step), device_id, raw, version=int(version)))
    return found


_MESSAGES = ("order", "update", "withdrawal")


async def fallback_messages(redis: Redis, order_id: str) -> list[dict[str, Any]]:
    """The order's fallback messages as their marks stand, for the deliveries view: each
    `message` (`order`: its own, `update`: an amended order sent again, `withdrawal`: the
    message taking it back), the chain's `step` it went by, the device, the order's
    `version` it carried (None for a withdrawal), its `state` and `tries`. By step, then
    order, updates by version, withdrawal."""
    found = []
    for field, raw in _strings(await redis.hgetall(_sent_marks(order_id))).items():
        name, _, device_id = field.partition(":")
        if not device_id:
            continue
        if name.isdigit():
            message, step, version = "order", int(name), None
        elif name.startswith(AMENDED_STEP):
            step_text, sep, version_text = name.removeprefix(AMENDED_STEP).partition("v")
            if not sep or not step_text.isdigit() or not version_text.isdigit():
                continue
            message, step, version = "update", int(step_text), int(version_text)
        elif name.startswith("withdrawn") and name.removeprefix("withdrawn").isdigit():
            message, step, version = "withdrawal", int(name.removeprefix("withdrawn")), None
        else:
            continue
        mark = _step_mark(step, device_id, raw, version=version)
        try:
            tries = json.loads(raw).get("tries")
        except (ValueError, AttributeError):
            tries = None
        found.append({"message": message, "step": step, "device_id": device_id,
                      "version": None if message == "withdrawal" else mark.version,
                      "state": mark.state, "tries": tries})
    found.sort(key=lambda m: (m["step"], _MESSAGES.index(m["message"]), m["version"] or 0,
                              m["device_id"]))
    return found


async def begin_fallback_send(redis: Redis, order_id: str, *, step: int | str, device_id: str,
                              now: float, till: float, ttl_s: int,
                              version: int | None = None) -> SendMark:
    """Marks the order's fallback `step` as being sent to the device until `till` (by when
    this sender has its answer or gave up), unless it was sent, given up, or is being sent
    by another replica (one whose lease ran out while it sent): each message goes out once,
    and one whose sender died goes out again, not never. The order's own message is not
    begun once the order is withdrawn or declined (`done`): a withdrawal or a decline takes
    back only what was begun before it (_WITHDRAW's and _RESPOND's timer), so one begun
    after it would never be. `version`: the order's version (OrderRecord.version) the
    message carries; `stale`, nothing written, when the order was amended since (read it
    again and send it as it is now)."""
    reply = await run_script(redis, _BEGIN_SEND, [_sent_marks(order_id), _order(order_id)],
                             [f"{step}:{device_id}", repr(now), repr(till), str(ttl_s),
                              uuid.uuid4().hex, "" if version is None else str(version)])
    state = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    value = reply[1].decode() if len(reply) > 1 and isinstance(reply[1], bytes) else (
        reply[1] if len(reply) > 1 else None)
    if state == "go":
        return SendMark("go", tries=int(value or 1))
    if state == "busy":
        return SendMark("busy", till=float(value or 0))
    return SendMark(state)


async def end_fallback_send(redis: Redis, order_id: str, *, step: int | str, device_id: str,
                            tries: int, state: str, went: bool = False) -> None:
    """What came of try `tries` of the message: `sent`, `failed` (to be tried again) or
    `done` (not again: refused as wrong, the address gone, or given up); `went`: this try
    may have reached the phone. Nothing if another replica took the message over
    meanwhile (this sender was past its time)."""
    await run_script(redis, _END_SEND, [_sent_marks(order_id)],
                     [f"{step}:{device_id}", state, str(tries), "1" if went else "0"])


def retry_timer(order_id: str, step: int) -> str:
    """The timer that tries `step`'s failed messages again, beside the chain's own (an order
    id never holds `#`): the chain goes on to its next channel meanwhile. A receipt or the
    order's end leaves it in place; it finds the order needs no fallback and goes."""
    return f"{order_id}#{step}"


WITHDRAWN_TIMER = "#withdrawn"


def withdrawal_timer(order_id: str) -> str:
    """The timer that takes back the fallback messages of a withdrawn order (_WITHDRAW sets
    it, due at once, when some step was sent)."""
    return f"{order_id}{WITHDRAWN_TIMER}"


def is_withdrawal_timer(timer: str) -> bool:
    return timer.endswith(WITHDRAWN_TIMER)


AMENDED_TIMER = "#amended"


def amendment_timer(order_id: str) -> str:
    """The timer that sends an order raised by an amendment to the phones its fallback
    messages went to (_AMEND sets it, due at once, when some message went or was going)."""
    return f"{order_id}{AMENDED_TIMER}"


def is_amendment_timer(timer: str) -> bool:
    return timer.endswith(AMENDED_TIMER)


def timer_order(timer: str) -> tuple[str, int | None]:
    """A fallback timer's order, and the step it retries (None: the chain's own timer)."""
    order_id, sep, step = timer.partition("#")
    return order_id, int(step) if sep and step.isdigit() else None


async def schedule_retry(redis: Redis, order_id: str, *, step: int, due_at: float) -> None:
    await schedule_timer(redis, retry_timer(order_id, step), due_at=due_at)


async def schedule_timer(redis: Redis, timer: str, *, due_at: float) -> None:
    await redis.zadd(FALLBACK, {timer: due_at})


# The timer is due again at ARGV[2] ('': done, removed) only if it still holds the lease
# ARGV[1] ('': whatever it holds): one set again meanwhile (a newer amendment) stays as set.
_SETTLE_TIMER = """
if ARGV[1] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if not score or math.abs(tonumber(score) - tonumber(ARGV[1])) >= 0.001 then return 0 end
end
if ARGV[2] == '' then redis.call('ZREM', KEYS[1], ARGV[3])
else redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3]) end
return 1
"""


async def settle_timer(redis: Redis, timer: str, *, leased_until: float | None,
                       due_at: float | None) -> None:
    """The timer done (`due_at` None) or due again at `due_at`, unless it was set again
    since it was leased until `leased_until` (None: as it is)."""
    await run_script(redis, _SETTLE_TIMER, [FALLBACK],
                     ["" if leased_until is None else repr(leased_until),
                      "" if due_at is None else repr(due_at), timer])


async def forget_dead_channel(redis: Redis, device_id: str, *, field: str,
                              sent_to: Any) -> bool:
    """Removes the device's channel a service said is dead (a push subscription's 410), only
    if it is still the one the message went to: the browser may have renewed it meanwhile,
    and the new one must stay. True if removed."""
    key = _device(device_id)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                raw = await pipe.hget(key, field)
                if raw is None:
                    return False
                text = raw.decode() if isinstance(raw, bytes) else raw
                current: Any = json.loads(text) if field == "webpush" else text
                if current != sent_to:
                    return False
                pipe.multi()
                pipe.hdel(key, field)
                await pipe.execute()
                return True
            except WatchError:
                continue


_NEXT_FALLBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'fallback_step') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'fallback_step', tonumber(ARGV[1]) + 1)
if ARGV[2] == '' then redis.call('ZREM', KEYS[2], ARGV[3])
else redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3]) end
return 1
"""


async def next_fallback(redis: Redis, order_id: str, *, step: int,
                        due_at: float | None) -> None:
    """Records that `step` was tried and schedules the next one at `due_at` (None: the
    chain is done; XX: an answer or a withdrawal may have cancelled it), unless another
    replica has moved the order past `step` already. An order whose record is gone loses
    its timer, and nothing is written."""
    due = "" if due_at is None else repr(due_at)
    await redis.eval(_NEXT_FALLBACK, 2, _order(order_id), FALLBACK, str(step), due, order_id)


async def received_by(redis: Redis, order_id: str, device_id: str) -> bool:
    """Whether this device's receipt of the order is recorded."""
    return bool(await redis.hexists(f"{_order(order_id)}:received", device_id))


async def cancel_fallback(redis: Redis, order_id: str) -> None:
    await redis.zrem(FALLBACK, order_id)


async def fallback_due_at(redis: Redis, order_id: str) -> float | None:
    return await redis.zscore(FALLBACK, order_id)


# --- devices and their channels --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    member_id: str
    team_id: str
    webpush: dict[str, Any] | None
    phone: str | None


DEVICE_TTL_S = 90 * 86_400
# A request whose token was checked before the revocation writes seconds after it at most,
# and volunteers never gives a device id twice: a day is ample.
REVOKED_DEVICE_KEPT_S = 86_400

# A device's writes check its tombstone in the same step: a registration (or a socket)
# whose token was checked just before the revocation, and which writes after notify
# forgot the device, must not bring it back with its channels. Likewise a move: a touch
# whose token was checked (ARGV[9]) before notify applied the device's last move
# (`move_applied_at`) may carry the team its member left, and does not change the team
# (see move_device for the clocks). 0: revoked, nothing written; 2: moved since the token
# was checked, nothing written; -1: its team changed since the caller read it (read again).
_TOUCH_DEVICE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local previous = redis.call('HGET', KEYS[1], 'team_id') or ''
if previous ~= ARGV[1] then return -1 end
if previous ~= ARGV[3] and ARGV[9] ~= '' and
   tonumber(ARGV[9]) <= tonumber(redis.call('HGET', KEYS[1], 'move_applied_at') or '-1') then
  return 2
end
if previous ~= '' and previous ~= ARGV[3] then redis.call('SREM', KEYS[4], ARGV[2]) end
redis.call('HSET', KEYS[1], 'member_id', ARGV[4], 'team_id', ARGV[3], 'agency_kind', ARGV[5],
           'district', ARGV[6], 'seen_at', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[8])
return 1
"""

# A member of a team's device set whose record expired (a phone abandoned, its token lapsed
# and never revoked) or that serves another team now leaves the set: checked and removed in
# one step, so a device moved back meanwhile stays.
_PRUNE_DEVICE = """
if redis.call('HGET', KEYS[2], 'team_id') ~= ARGV[2] then
  return redis.call('SREM', KEYS[1], ARGV[1])
end
return 0
"""


async def _prune_team_devices(redis: Redis, team_id: str, device_ids: list[str]) -> None:
    if not device_ids:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for device_id in device_ids:
            await run_script(pipe, _PRUNE_DEVICE, [_team_devices(team_id), _device(device_id)],
                             [device_id, team_id])
        await pipe.execute()


_SET_CHANNEL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


async def touch_device(
    redis: Redis, *, device_id: str, member_id: str, team_id: str, agency_kind: str | None,
    district: str | None, checked_at: float | None = None,
) -> str | None:
    """Remembers which team a device belongs to now (a member may have moved team), as the
    caller's token said at `checked_at` (Principal.checked_at; None: as said, a test's
    seeding). Returns the team the device is filed under: `team_id`, or, when notify applied
    a move of the device after the token was checked, the team that move left it on ("" for
    a device not seen before the move), nothing written: the token's answer may predate
    the move, and would file the device back under the team its member left (that team's
    fallback pushes and texts to them, the new team's missed) until it touched again.
    None, with nothing written, for a revoked device.

    The team's device set expires with its freshest device (DEVICE_TTL_S after the last
    touch), and each touch takes out of it the teammates' devices whose record expired:
    an abandoned phone leaves at the next connect of any phone of its team, or with the
    set, not only when a fallback step reads it (which may never come: no fallback
    channel configured)."""
    key = _device(device_id)
    while True:
        previous = cast(str | None, await redis.hget(key, "team_id")) or ""
        done = await run_script(
            redis, _TOUCH_DEVICE,
            [key, _revoked_device(device_id), _team_devices(team_id),
             _team_devices(previous or team_id)],
            [previous, device_id, team_id, member_id, agency_kind or "", district or "",
             utcnow().isoformat(), str(DEVICE_TTL_S),
             "" if checked_at is None else repr(checked_at)])
        if done >= 0:
            break
    if done == 0:
        return None
    if done == 2:
        return previous
    others = [d for d in cast(set[str], await redis.smembers(_team_devices(team_id)))
              if d != device_id]
    await _prune_team_devices(redis, team_id, others)
    return team_id


async def set_device_channel(redis: Redis, device_id: str, *, field: str,
                             value: str | None) -> bool:
    """Sets (or with None removes) one of the device's channels; False, with nothing
    written, when the device was revoked (see _TOUCH_DEVICE)."""
    if value is None:
        await redis.hdel(_device(device_id), field)
        return True
    return bool(await run_script(redis, _SET_CHANNEL,
                                 [_device(device_id), _revoked_device(device_id)],
                                 [field, value]))


async def get_device(redis: Redis, device_id: str) -> DeviceRecord | None:
    data = _strings(await redis.hgetall(_device(device_id)))
    if not data:
        return None
    return DeviceRecord(
        device_id=device_id,
        member_id=data.get("member_id", ""),
        team_id=data.get("team_id", ""),
        webpush=json.loads(data["webpush"]) if data.get("webpush") else None,
        phone=data.get("phone") or None,
    )


async def team_devices(redis: Redis, team_id: str) -> list[DeviceRecord]:
    found: list[DeviceRecord] = []
    for device_id in sorted(cast(set[str], await redis.smembers(_team_devices(team_id)))):
        record = await get_device(redis, device_id)
        if record is None or record.team_id != team_id:
            await _prune_team_devices(redis, team_id, [device_id])
            continue
        found.append(record)
    return found


# A move is applied unless the device holds a later one (`moved_at`, the roster's time of
# the move; kept also for a device not seen here yet, whose socket's first touch then finds
# it), with notify's own time of applying it (`move_applied_at`, for _TOUCH_DEVICE):
# 1 applied (or the device revoked), 0 older than the move it holds, -1 its team changed
# since the caller read it (read again).
_MOVE_DEVICE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 1 end
local previous = redis.call('HGET', KEYS[1], 'team_id') or ''
if previous ~= ARGV[1] then return -1 end
if tonumber(ARGV[3]) < tonumber(redis.call('HGET', KEYS[1], 'moved_at') or '0') then return 0 end
if previous ~= '' and previous ~= ARGV[2] then
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('HSET', KEYS[1], 'team_id', ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('HSET', KEYS[1], 'moved_at', ARGV[3], 'move_applied_at', ARGV[6])
if previous == '' then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
"""


async def move_device(redis: Redis, device_id: str, *, team_id: str,
                      moved_at: datetime) -> bool:
    """A device whose member moved team: its fallback channels now serve the new team. False,
    with nothing written, for a move older than one the device already had: its event
    handled late (a dead letter replayed, another replica's slower read of an earlier
    import), it would put the device back on a team its member has left.

    A touch whose token was checked before this move was applied here does not change the
    device's team (_TOUCH_DEVICE). Both times are notify's wall clock (its replicas',
    kept in step by the hosts' NTP), not the roster's `moved_at`: volunteers commits a move
    before it publishes its event, and notify reads the event before this clock is read,
    so a token checked later was answered with this move (or a later one, whose event
    comes after). `moved_at` is volunteers' clock and may be stamped before its commit:
    a token checked in between would be answered with the old team yet taken as newer.
    Misjudged the safe way (a token checked later, naming another team: only a later
    move not yet handled here), the touch leaves the device where this move put it until
    that move's event comes."""
    key = _device(device_id)
    applied_at = repr(time.time())
    while True:
        previous = cast(str | None, await redis.hget(key, "team_id")) or ""
        done = await run_script(
            redis, _MOVE_DEVICE,
            [key, _team_devices(previous or team_id), _team_devices(team_id),
             _revoked_device(device_id)],
            [previous, team_id, repr(moved_at.timestamp()), device_id, str(DEVICE_TTL_S),
             applied_at])
        if done >= 0:
            return bool(done)


def _kind_change(event_id: str) -> str:
    return f"notify:kind-change:{event_id}"


async def kind_change_applied_at(redis: Redis, event_id: str) -> float:
    """When notify first applied the agency change `event_id` (its wall clock, as
    Principal.checked_at): a token checked since was answered with the new kind. The
    first reading's time also for a redelivery or a replay, so a socket that reconnected
    in between (its token saying the new kind) is not closed again. See move_device for
    the clocks."""
    key = _kind_change(event_id)
    await redis.set(key, repr(time.time()), nx=True, ex=REVOKED_DEVICE_KEPT_S)
    first = await redis.get(key)
    return float(first) if first is not None else time.time()


async def forget_device(redis: Redis, device_id: str) -> None:
    """A revoked device: its channels (push subscription, phone) go with it, for good."""
    team_id = cast(str | None, await redis.hget(_device(device_id), "team_id"))
    async with redis.pipeline(transaction=True) as pipe:
        if team_id:
            pipe.srem(_team_devices(team_id), device_id)
        pipe.delete(_device(device_id))
        pipe.set(_revoked_device(device_id), "1", ex=REVOKED_DEVICE_KEPT_S)
        await pipe.execute()
