"""Whether an incident's path through the services is moving (GET /v1/pipeline, the
console's banner): for each hop dispatch's Redis user may read, how long the oldest entry
its consumer group has not finished has waited, and whether team positions still come.

A service that is down or far behind says nothing itself: its group's backlog on the
stream it reads is what tells. The gauges (shared.metrics.observe_streams) tell operations
staff; this tells the dispatcher, who falls back to the radio and the phone. Read in two
round trips of a few commands each, never scanning a stream: the console asks at most 10 s
apart, sooner when a threshold is shorter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import streams
from shared.metrics import COUNTED_LAG, after_delivered, count_unread
from shared.policy import Policy

from . import store


# How long the oldest unfinished entry of a hop may wait before the console says the hop
# is behind. Handling an entry takes milliseconds; a reclaimed one (a consumer died holding
# it) waits CLAIM_IDLE_MS, 15 s, and is then rightly said.
#
# New reports, orders and teams' answers: a third of a P1's acknowledge deadline (the
# policy's deadlines_s; 30 s in shared/policy.yaml, so 10 s; a deployment's file that
# shortens it shortens these). An order not on the phones by then has spent a third of it:
# said then, the dispatcher still has the other two thirds (20 s) to reach the team by radio
# before dispatch takes the order back for a missed acknowledgement. A report waiting that
# long is a P1 that no team has been sent to yet, and no deadline runs for it until one is.
# Teams' answers (acknowledged, on scene, need help): unread, the board shows old states and
# a call for backup waits; dispatch itself waits for them before timing an order out
# (engine._answers_behind). As short as the orders: a "reinforce" is a P1's second unit.
def p1_behind_s(policy: Policy) -> float:
    """How long reports, orders and answers may wait: a third of the P1 deadline."""
    return policy.deadlines_s["P1"] / 3


# Check-ins, check-outs and busy/available: unread, teams that came on shift are not
# offered and teams that left still are (offers to them time out). Half a minute.
STATUSES_BEHIND_S = 30.0
# Positions dispatch has not read: team choice ranks teams where they were. A car at 30 km/h
# moves 500 m a minute; fixes count for 10 minutes (fix_max_age_s). A minute.
POSITIONS_BEHIND_S = 60.0
# No fix at all, from any team, while teams are on shift: phones report every 5 s
# (volunteers publishes one per team every 2 s at most), so three minutes of silence is a
# stopped feed (volunteers down, or not publishing), not a quiet street. Said well before
# the 10 minutes after which the last fixes stop counting and teams drop out of the
# nearest-team choice altogether.
POSITIONS_SILENT_S = 180.0


@dataclass(frozen=True, slots=True)
class Hop:
    name: str  # the console's key for it
    stream: str
    group: str
    behind_s: float | None  # None: p1_behind_s, the policy's
    what: str

    def threshold_s(self, policy: Policy) -> float:
        return p1_behind_s(policy) if self.behind_s is None else self.behind_s


# The hops of an incident's path whose streams deploy/redis/users.acl.template lets
# dispatch read (order.issued is dispatch's own: notify's group on it is readable too).
HOPS: tuple[Hop, ...] = (
    Hop("reports", streams.INCIDENT_REPORTED.name, "dispatch", None,
        "new reports waiting for dispatch"),
    Hop("orders", streams.ORDER_ISSUED.name, "notify", None,
        "orders not yet pushed to phones"),
    Hop("answers", streams.ORDER_RESPONDED.name, "dispatch", None,
        "teams' answers waiting for dispatch"),
    Hop("statuses", streams.UNIT_STATUS.name, "dispatch", STATUSES_BEHIND_S,
        "teams' check-ins and status changes waiting for dispatch"),
    Hop("positions", streams.UNIT_POSITION.name, "dispatch", POSITIONS_BEHIND_S,
        "teams' positions waiting for dispatch"),
)


def _ms(entry_id: str | bytes) -> int:
    """An entry id's milliseconds: the Redis clock when it was added."""
    return streams.entry_id_order(entry_id)[0]


def _age(now: float, entry_id: str | bytes | None) -> float | None:
    return None if entry_id is None else round(max(0.0, now - _ms(entry_id) / 1000), 3)


async def read_pipeline(redis: Redis, *, districts: Sequence[str] | None, now: float,
                        policy: Policy) -> dict[str, Any]:
    """Each hop's backlog and verdict, and whether positions still come (teams on shift
    looked for in `districts`; None: not looked for, a silence is said all the same), the
    thresholds of the hops a P1 waits on by `policy`'s P1 deadline.
    `now`: seconds since 1970, as entry ids count them (dispatch's clock: Redis's TIME is
    not among the commands dispatch's Redis user may run).

    First round trip: each stream's groups (last delivered id, lag, pending) and length,
    each hop's pending summary (its oldest pending id), the newest position, and whether a
    team of the districts is on shift. Second: for the groups Redis does not say are
    caught up, the entries after their last delivered one, COUNTED_LAG + 1 at most (as the
    gauges count them): the first is the oldest not read yet."""
    names = sorted({hop.stream for hop in HOPS})
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.xinfo_groups(name)
            pipe.xlen(name)
        for hop in HOPS:
            pipe.xpending(hop.stream, hop.group)
        # the values as Redis holds them (FastStream's binary envelope is no text)
        pipe.execute_command("XREVRANGE", streams.UNIT_POSITION.name, "+", "-", "COUNT", 1,
                             NEVER_DECODE=True)
        if districts is not None:
            await store.queue_any_on_shift(pipe, districts)
        replies = await pipe.execute(raise_on_error=False)
    groups: dict[str, list[dict[str, Any]]] = {}
    lengths: dict[str, int] = {}
    for n, name in enumerate(names):
        infos, length = replies[2 * n], replies[2 * n + 1]
        for reply in (infos, length):
            _raise_unless_missing(reply)
        # no stream at all: no group ever made it (groups are made with MKSTREAM)
        groups[name] = [] if isinstance(infos, Exception) else infos
        lengths[name] = 0 if isinstance(length, Exception) else int(length)
    summaries = replies[2 * len(names):2 * len(names) + len(HOPS)]
    newest, *on_shift = replies[2 * len(names) + len(HOPS):]
    for reply in (*summaries, newest, *on_shift):
        _raise_unless_missing(reply)

    infos_of = [next((i for i in groups[hop.stream] if _text(i["name"]) == hop.group), None)
                for hop in HOPS]
    not_caught_up = [n for n, info in enumerate(infos_of)
                     if info is not None and info.get("lag") != 0]
    after: dict[int, list[Any]] = {}
    if not_caught_up:
        async with redis.pipeline(transaction=False) as pipe:
            for n in not_caught_up:
                pipe.execute_command("XRANGE", HOPS[n].stream, after_delivered(infos_of[n]),
                                     "+", "COUNT", COUNTED_LAG + 1, NEVER_DECODE=True)
            for n, found in zip(not_caught_up, await pipe.execute(), strict=True):
                after[n] = found

    hops = [_hop(hop, hop.threshold_s(policy), info, after.get(n, []), summaries[n],
                 lengths[hop.stream], now)
            for n, (hop, info) in enumerate(zip(HOPS, infos_of, strict=True))]
    teams_on_shift = None if districts is None else bool(on_shift[0])
    fixes = [] if isinstance(newest, Exception) else newest
    newest_age = _age(now, fixes[0][0]) if fixes else None
    silent = teams_on_shift is not False and (newest_age is None
                                              or newest_age > POSITIONS_SILENT_S)
    positions = {"stream": streams.UNIT_POSITION.name, "newest_age_s": newest_age,
                 "teams_on_shift": teams_on_shift, "threshold_s": POSITIONS_SILENT_S,
                 "verdict": "behind" if silent else "ok",
                 "what": "no team positions coming in while teams are on shift"}
    return {"ok": all(h["verdict"] == "ok" for h in hops) and not silent,
            "hops": hops, "positions_feed": positions}


def _hop(hop: Hop, behind_s: float, info: dict[str, Any] | None, after: list[Any],
         summary: Any, length: int, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {"hop": hop.name, "stream": hop.stream, "group": hop.group,
                           "what": hop.what, "threshold_s": behind_s}
    if info is None or isinstance(summary, Exception):
        return {**out, "unread": None, "pending": None, "oldest_age_s": None,
                "verdict": "no_group"}
    pending = int(summary.get("pending") or 0)
    # A pending entry was delivered before every unread one: the oldest unfinished is the
    # oldest pending, else the first after the last delivered.
    oldest = summary["min"] if pending else after[0][0] if after else None
    age = _age(now, oldest)
    return {**out, "unread": count_unread(info, after, lambda: length), "pending": pending,
            "oldest_age_s": age,
            "verdict": "behind" if age is not None and age > behind_s else "ok"}


def _raise_unless_missing(reply: Any) -> None:
    """A reply that failed for a missing stream or group is an answer (no_group); any
    other failure (Redis away, a refused command) is the route's."""
    if isinstance(reply, ResponseError) and any(
            why in str(reply) for why in ("no such key", "NOGROUP", "No such key")):
        return
    if isinstance(reply, Exception):
        raise reply


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
