"""Retention: streams are trimmed by age (XTRIM MINID), never past what a group still needs.

Each service trims the streams it produces, and the dead letters of those it consumes (a
stream's consumers share its `dlq.` stream: trimming by age is the same cut whoever makes
it). An entry goes only when it is older than the retention (default 30 days, so the
command room's history survives) AND every consumer group shared.streams declares for the
stream has read and acknowledged it: the cut stops before the oldest pending entry and
before the first entry any such group has not yet read, and a stream one of them has no
group on yet (it will read from id 0) is not trimmed at all. Other groups (an older release's,
one made by hand) are named in a warning and otherwise ignored: one that reads nothing
would keep the stream growing until Redis is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import streams
from shared.scripts import run_script

log = logging.getLogger(__name__)


def _text(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def _name(group: dict[str, str | bytes]) -> str:
    name = group["name"]
    return name.decode() if isinstance(name, bytes) else name


async def safe_trim_point(redis: Redis, stream: str, *, retention_s: float,
                          groups: Collection[str] | None = None,
                          now: float | None = None) -> str:
    """The MINID below which every entry is both old enough and done by every group of
    `groups` (None: every group the stream has)."""
    if not await redis.exists(stream):
        return "0-0"
    cut = (int(((now or time.time()) - retention_s) * 1000), 0)
    present = await redis.xinfo_groups(stream)
    if missing := sorted(set(groups or ()) - {_name(group) for group in present}):
        # A declared group not created yet (its service not started since Redis came back
        # empty, or not deployed) will read the stream from id 0: all of it is still needed.
        log.warning("stream %s is not trimmed: its consumer group(s) %s do not exist yet",
                    stream, ", ".join(missing))
        return "0-0"
    for group in present:
        name = _name(group)
        if groups is not None and name not in groups:
            log.warning("stream %s has consumer group %s, which shared.streams does not "
                        "declare: it does not hold back trimming (XGROUP DESTROY it if "
                        "nothing reads it)", stream, name)
            continue
        # XTRIM MINID keeps the id it is given: the cut goes just past the last entry the
        # group was given (else a quiet stream kept its last handled entry for ever, the
        # last report of the night with its caller's phone), and stops at one it has not
        # acknowledged yet (below)
        delivered = streams.entry_id_order(group["last-delivered-id"])
        cut = min(cut, (delivered[0], delivered[1] + 1))
        summary = await redis.xpending(stream, name)
        if summary and summary.get("pending"):
            cut = min(cut, streams.entry_id_order(summary["min"]))
    return _text(cut)


async def trim_stream(redis: Redis, stream: str, *, retention_s: float,
                      groups: Collection[str] | None = None) -> int:
    point = await safe_trim_point(redis, stream, retention_s=retention_s, groups=groups)
    if point == "0-0":
        return 0
    return int(await redis.xtrim(stream, minid=point, approximate=False))


def trimmed_by(service: str) -> dict[str, tuple[str, ...]]:
    """The streams `service` trims, each with the consumer groups declared for it: those it
    produces, and the dead letters of those it consumes (its Redis user may touch only
    those; no group reads a dead-letter stream)."""
    produced = {s.name: s.consumers for s in streams.produced_by(service)}
    return produced | {s.dead_letters: () for s in streams.consumed_by(service)}


STALE_CONSUMER_MS = 86_400_000  # a day without a read: its process is gone


async def forget_stale_consumers(redis: Redis, service: str, *,
                                 idle_ms: int = STALE_CONSUMER_MS) -> int:
    """Each process reads as a consumer of its own name (host and pid), so every restart
    leaves one behind in each group the service reads. Those that hold nothing (their
    pending entries were reclaimed by the living) and have not read for `idle_ms` are
    deleted; the number deleted. One still holding entries stays until they are claimed."""
    forgotten = 0
    for stream in streams.consumed_by(service):
        if not await redis.exists(stream.name):
            continue
        for consumer in await redis.xinfo_consumers(stream.name, service):
            name = _name(consumer)
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_ms:
                # judged again and deleted in one script: DELCONSUMER drops the entries the
                # consumer holds, and a living reclaimer may have claimed one since XINFO
                forgotten += await run_script(redis, _FORGET_IF_IDLE, [stream.name],
                                              [service, name, idle_ms])
    return forgotten


# KEYS[1] a stream; ARGV[1] a group, ARGV[2] one of its consumers, ARGV[3] idle ms. Deletes
# the consumer only if it holds nothing and has been idle that long, now: 1 if deleted.
_FORGET_IF_IDLE = """
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #consumer, 2 do f[consumer[i]] = consumer[i + 1] end
  if f['name'] == ARGV[2] then
    if tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
"""


async def keep_trimming(redis: Redis, service: str, *, retention_s: float, stop: asyncio.Event,
                        interval_s: float = 600.0, first_after_s: float = 30.0) -> None:
    """Trim this service's streams every `interval_s` until `stop` is set. It stops between
    commands, never in the middle of one (a cancelled command can stall the client)."""
    owned = trimmed_by(service)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=first_after_s)
    while not stop.is_set():
        for name, groups in owned.items():
            if stop.is_set():
                return
            try:
                removed = await trim_stream(redis, name, retention_s=retention_s,
                                            groups=groups)
                if removed:
                    log.info("trimmed %d entries older than retention from %s", removed, name)
            except RedisError as exc:
                log.warning("trimming %s failed: %s", name, type(exc).__name__)
        try:
            if forgotten := await forget_stale_consumers(redis, service):
                log.info("deleted %d consumers idle for a day with nothing pending", forgotten)
        except RedisError as exc:
            log.warning("deleting idle consumers failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
