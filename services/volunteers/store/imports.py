"""A district's roster import: validated under one lock, then written as a journal of small
steps, each its own short transaction, which a crash cannot leave half done.

Redis runs one command at a time, so what an import holds it for, every other client waits
(dispatch placing an incident included). A city's roster in one MULTI/EXEC was 62,000 commands
(~110 ms), and the WATCH of its 14,000 keys 1-2 s (Redis 7.0 compares each key with those
already watched); a re-import of the same roster paid the WATCH too, and any team that
checked in during the seconds before EXEC lost the import its round (503 after five). So:
- one import at a time (`import_lock`; ids are global, so of any district), and removals wait
  for it (`outside_imports`): what the validation read stays true without watching it;
- the writes are steps of at most STEP_COMMANDS commands: the rows (agencies, zones, teams,
  members, in that order, so a row's references are written before it), then the teams'
  states with their `unit.status`, each team's written only if its state is still the one
  read (a team that checks in meanwhile is decided again, not the import);
- the steps are written to a journal before the first is applied, and renamed into place
  whole: from then on the import is committed. Each step leaves the journal in the
  transaction (or script) that applies it, so whoever holds the lock next (the next import,
  or the service's own sweep, `keep_finishing`) finishes what a crash left, each step once
  (but for a crash between two rounds of a step of teams: a team written in the first is
  announced again, with the same state).
Readers see the roster change step by step for the second or so the steps take; a refused
import (InvalidRoster) writes nothing, and a committed one is written whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import uuid4

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from shared import streams
from shared.bus import queue_publish
from shared.events import DeviceRevoked
from shared.http import TryAgain
from shared.runtime import stop_task
from shared.scripts import RUN_COMMANDS_LUA, commands_as_args, queued_commands, run_script

from ..domain.points import LedgerEntry, award_patrol
from ..domain.roster import (
    ENTITIES,
    ROLES_BY_KIND,
    ImportPlan,
    RosterDoc,
    RowError,
    Write,
    ZoneRow,
    agencies_to_know,
    as_of_ahead,
    beyond_volunteers,
    check_references,
    conflicting_claims,
    plan_import,
    referenced_ids,
    stale_import,
)
from ..domain.status import (
    CheckInLimit,
    TeamState,
    expire_check_ins,
    leave_shift,
    unmanned,
)
from . import keys
from .points import AWARD_LUA, award_call
from .teams import decode_state, encode_state, publish_unit_status, queue_check_in_index
from .tx import ATTEMPTS, Contended, atomically, contention_pause

log = logging.getLogger(__name__)
T = TypeVar("T")

# Commands of one step's transaction or script: a few ms of Redis for 1,000 of them.
STEP_COMMANDS = 1_000
# A step's rows or teams at most: a step of rows watches its moved members' devices, and a
# WATCH costs Redis 7.0 the square of its keys.
STEP_ITEMS = 250
# What a team costs its step: its state's check, its write and its XADD, and the commands of
# an award (store.points' `award`) for each member leaving its shift.
TEAM_COMMANDS = 3
AWARD_COMMANDS = 8
# A team whose agency's kind changed: an XADD for each of its members' devices (a guess: a
# team of a few members with a phone or two each; a larger step costs a little more).
REKINDED_COMMANDS = 10
LOCK_TTL_MS = 30_000  # renewed while its import runs; a crashed holder's runs out
LOCK_WAIT_S = 30.0  # a city's import takes a few seconds
STAGING_TTL_S = 3600  # a journal whose writer died before it was whole
READ_CHUNK = 1_000
FINISH_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class ImportResult:
    plan: ImportPlan
    announced: int
    # (member, old team, new team) of each member the import moved to another team
    moved: tuple[tuple[str, str, str], ...] = ()
    # the district's latest `as_of` once this import is taken (None: none ever given)
    as_of: datetime | None = None
    # entity -> the ids of the district's stored rows the import did not name, for each
    # entity it sent (`RosterDoc.sent`), ordered by id: kept, an upsert removes nothing
    not_in_import: dict[str, list[str]] = field(default_factory=dict)


class NotACoordinatorsChange(Exception):
    """A coordinator's import that creates or changes zones, or rows beyond its volunteers'
    (`beyond_volunteers`): nothing is written."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} zone(s)")
        self.errors = errors


class StaleImport(Exception):
    """The import is older (`as_of`) than the last one applied for its district: nothing is
    written. The message says both times and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class TeamChange:
    """What an import does to a team's state: `leaving` members leave its shift, `emptied`
    (nobody left on its roster) ends it, `announce` (its profile changed) publishes it,
    `rekinded` (its agency's kind changed: moved to an agency of another kind, or its
    agency's kind changed) tells notify of each device of its members."""

    team_id: str
    leaving: tuple[str, ...] = ()
    emptied: bool = False
    announce: bool = False
    rekinded: bool = False


# --- the lock ----------------------------------------------------------------------------

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class _Importing(Exception):
    """An import holds the roster: a removal waits."""


async def _take_lock(redis: Redis, *, wait_s: float) -> str | None:
    token = uuid4().hex
    deadline = time.monotonic() + wait_s
    while not await redis.set(keys.import_lock(), token, nx=True, px=LOCK_TTL_MS):
        if await redis.get(keys.import_lock()) == token:
            break  # taken by the send whose reply was lost: redis-py's second one found it
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.05)
    return token


async def _keep_lock(redis: Redis, token: str) -> None:
    while True:
        await asyncio.sleep(LOCK_TTL_MS / 3000)
        try:
            if not await run_script(redis, _RENEW, [keys.import_lock()], [token, LOCK_TTL_MS]):
                return  # lost: each step checks the lock, so this import writes no more
        except RedisError as exc:
            log.warning("renewing the roster import lock failed: %s", type(exc).__name__)


async def release_lock(redis: Redis, token: str) -> None:
    await run_script(redis, _RELEASE, [keys.import_lock()], [token])


@asynccontextmanager
async def import_lock(redis: Redis, *, wait_s: float = LOCK_WAIT_S) -> AsyncIterator[str]:
    """Hold the roster for one import (TryAgain if another holds it past `wait_s`); its
    token, which every step checks."""
    token = await _take_lock(redis, wait_s=wait_s)
    if token is None:
        raise TryAgain("another roster import is running; retry")
    renewing = asyncio.create_task(_keep_lock(redis, token), name="roster-import-lock")
    try:
        yield token
    finally:
        # cancelled until it has ended: on Python 3.11 a cancellation landing as redis-py
        # finishes a renewal's write is swallowed (stop_task), and the renewer carried on
        # holding the lock for every later import
        await stop_task(renewing)
        await release_lock(redis, token)


def _lock_lost() -> TryAgain:
    return TryAgain("the roster import lost its lock; retry (what it committed is finished)")


async def _check_lock(pipe: Pipeline, token: str) -> None:
    """On a pipeline watching the lock: still ours, so no other import writes meanwhile."""
    if await pipe.get(keys.import_lock()) != token:
        raise _lock_lost()


async def outside_imports(redis: Redis, watch: Sequence[str],
                          body: Callable[[Pipeline], Awaitable[T]],
                          *, wait_s: float = LOCK_WAIT_S) -> T:
    """`atomically(redis, watch, body)` while no import holds the roster: a removal between
    an import's steps would be undone by a later one (a member written back) or contradict
    its validation (members written to a team just removed). Waits for the import, and for
    the journal a crashed one left (its lock ran out before `keep_finishing` took it)."""
    deadline = time.monotonic() + wait_s

    async def guarded(pipe: Pipeline) -> T:
        if await pipe.exists(keys.import_lock(), keys.import_journal()):
            raise _Importing
        return await body(pipe)

    while True:
        try:
            return await atomically(redis, [keys.import_lock(), keys.import_journal(), *watch],
                                    guarded)
        except _Importing:
            if time.monotonic() >= deadline:
                raise TryAgain("a roster import is being written; retry") from None
            await asyncio.sleep(0.05)


# --- reads -------------------------------------------------------------------------------


async def read_hashes(redis: Redis, wanted: Sequence[str]) -> list[dict[str, str]]:
    """HGETALL of each key, a pipeline of READ_CHUNK at a time."""
    out: list[dict[str, str]] = []
    for start in range(0, len(wanted), READ_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for key in wanted[start:start + READ_CHUNK]:
                pipe.hgetall(key)
            out += await pipe.execute()
    return out


async def read_sets(redis: Redis, wanted: Sequence[str]) -> list[set[str]]:
    """SMEMBERS of each key, a pipeline of READ_CHUNK at a time."""
    out: list[set[str]] = []
    for start in range(0, len(wanted), READ_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for key in wanted[start:start + READ_CHUNK]:
                pipe.smembers(key)
            out += [set(s) for s in await pipe.execute()]
    return out


# --- validation against what is stored ---------------------------------------------------


async def _check_members_left_behind(redis: Redis, doc: RosterDoc,
                                     stored: dict[str, dict[str, dict[str, str]]]) -> None:
    """A team the document moves to another agency, or an agency whose kind it changes,
    must not leave stored members behind that the document does not name: they would keep
    the old agency, or a role the new kind does not have (a guard in a volunteer patrol).
    InvalidRoster naming the team's agency or the agency's kind, and the members to move."""
    named = {m.id for m in doc.members}
    moved = [(team, loc) for team, loc in zip(doc.teams, doc.locs["teams"], strict=True)
             if (old := stored["teams"].get(team.id)) and old.get("agency_id") != team.agency_id]
    rekinded = [(agency, loc) for agency, loc in zip(doc.agencies, doc.locs["agencies"],
                                                     strict=True)
                if (old := stored["agencies"].get(agency.id)) and old.get("kind") != agency.kind]
    if not moved and not rekinded:
        return
    errors: list[RowError] = []
    rosters = await read_sets(redis, [keys.team_members(team.id) for team, _ in moved])
    for (_, loc), roster in zip(moved, rosters, strict=True):
        left = sorted(roster - named)
        if left:
            errors.append(loc.error("teams", "agency_id", "the team's members "
                                    f"{', '.join(left[:10])} would stay with its old agency: "
                                    "move them in the same import"))
    for agency, loc in rekinded:
        teams = sorted(await redis.smembers(keys.agency_teams(agency.id)))
        on_teams = await read_sets(redis, [keys.team_members(t) for t in teams])
        member_ids = sorted(set().union(*on_teams) - named)
        roles = await read_hashes(redis, [keys.member(m) for m in member_ids])
        wrong = [m for m, record in zip(member_ids, roles, strict=True)
                 if record.get("role") not in ROLES_BY_KIND[agency.kind]]
        if wrong:
            errors.append(loc.error("agencies", "kind", f"members {', '.join(wrong[:10])} have "
                                    f"roles a {agency.kind} agency does not have: give them "
                                    "their new roles in the same import"))
    doc.raise_errors(errors)


async def _stored_zone_ids(redis: Redis, doc: RosterDoc) -> list[str]:
    """The district's stored zones that the document does not name."""
    in_doc = {zone.id for zone in doc.zones}
    return [z for z in await redis.zrange(keys.index("zones", doc.district), 0, -1)
            if z not in in_doc]


async def _check_zones_left_behind(redis: Redis, doc: RosterDoc,
                                   stored: dict[str, dict[str, dict[str, str]]]) -> None:
    """A police station that the document makes a patrol, or gives another kind, must not
    keep stored zones the document does not give to another station: dispatch would hand
    its territory's incidents over to a street patrol or a company, and find no station for
    its fraud warnings. InvalidRoster naming the agency's role (or kind) and the zones."""
    demoted = [(agency, loc) for agency, loc in zip(doc.agencies, doc.locs["agencies"],
                                                    strict=True)
               if (old := stored["agencies"].get(agency.id))
               and (old.get("kind"), old.get("role")) == ("police", "station")
               and (agency.kind, agency.role) != ("police", "station")]
    if not demoted:
        return
    zone_ids = await _stored_zone_ids(redis, doc)  # check_references checked the document's
    owners = [z.get("owner_agency_id") for z in
              await read_hashes(redis, [keys.entity("zones", z) for z in zone_ids])]
    errors: list[RowError] = []
    for agency, loc in demoted:
        owned = sorted(z for z, owner in zip(zone_ids, owners, strict=True) if owner == agency.id)
        if owned:
            what = "kind" if agency.kind != "police" else "role"
            errors.append(loc.error("agencies", what, f"the agency owns zones "
                                    f"{', '.join(owned[:10])}: a zone's owner is a police "
                                    "station; give them to another station in the same import"))
    doc.raise_errors(errors)


async def _check_ground_claimed(redis: Redis, doc: RosterDoc) -> None:
    """The document's zones must not claim ground a stored zone of another station holds
    (`conflicting_claims`; those in the document were checked against each other). A
    stored zone claims its ground until it is re-cut or removed (`DELETE /v1/zones/{id}`):
    territory re-cut under new ids alone would leave the old zones claiming it, and the
    lookup giving it to the old station. InvalidRoster naming the stored zone."""
    if not doc.zones:
        return
    zone_ids = await _stored_zone_ids(redis, doc)
    records = await read_hashes(redis, [keys.entity("zones", z) for z in zone_ids])
    stored = [ZoneRow.model_construct(
        id=r["id"], name=r.get("name", r["id"]), owner_agency_id=r["owner_agency_id"],
        polygon=tuple((float(x), float(y)) for x, y in json.loads(r["polygon"])))
        for r in records if r]
    zones = [*doc.zones, *stored]
    errors: list[RowError] = []
    for earlier, later in conflicting_claims(zones):
        if later < len(doc.zones):
            continue  # two of the document's: check_document named them
        if earlier >= len(doc.zones):
            continue  # two stored ones: an earlier import's to mend, not this one's
        other = zones[later]
        errors.append(doc.locs["zones"][earlier].error(
            "zones", "polygon", f"overlaps stored zone {other.id} of station "
            f"{other.owner_agency_id}: re-import it with its new polygon or owner in the "
            "same import"))
    doc.raise_errors(errors)


async def _rekinded_teams(redis: Redis, plan: ImportPlan) -> set[str]:
    """The stored teams whose agency's kind the import changes (the team moved to an
    agency of another kind, or its agency's kind changed), their ids kept: their members'
    sockets at notify read orders as the old kind (a police order's caller)."""
    agencies = [w for w in plan.writes if w.entity == "agencies"]
    after = {w.id: w.record["kind"] for w in agencies}
    before = {w.id: w.previous.get("kind", "") for w in agencies if w.previous}
    moved = [(w.id, w.previous.get("agency_id", ""), w.record["agency_id"])
             for w in plan.writes if w.entity == "teams" and w.previous
             and w.previous.get("agency_id") != w.record["agency_id"]]
    unread = sorted({a for _, old, new in moved for a in (old, new)} - set(after))
    for agency_id, record in zip(unread, await read_hashes(
            redis, [keys.agency(a) for a in unread]), strict=True):
        before[agency_id] = after[agency_id] = record.get("kind", "")
    rekinded_agencies = sorted(a for a in before if a in after and before[a] != after[a])
    teams: set[str] = set().union(*await read_sets(
        redis, [keys.agency_teams(a) for a in rekinded_agencies]))
    for team_id, old, new in moved:  # its old agency's kind before, its new one's after
        if before.get(old, "") != after.get(new, ""):
            teams.add(team_id)
        else:
            teams.discard(team_id)
    return teams


async def _plan(redis: Redis, doc: RosterDoc
                ) -> tuple[ImportPlan, list[TeamChange], tuple[tuple[str, str, str], ...]]:
    """Validate the document against what is stored (InvalidRoster); what it writes, what
    it does to teams' states, and the members it moves (member, old team, new team)."""
    ids = referenced_ids(doc)
    wanted = [(entity, i) for entity in ENTITIES for i in sorted(ids[entity])]
    records = await read_hashes(redis, [keys.entity(entity, i) for entity, i in wanted])
    stored: dict[str, dict[str, dict[str, str]]] = {e: {} for e in ENTITIES}
    for (entity, entity_id), record in zip(wanted, records, strict=True):
        if record:
            stored[entity][entity_id] = record
    check_references(doc, stored)
    await _check_members_left_behind(redis, doc, stored)
    await _check_zones_left_behind(redis, doc, stored)
    await _check_ground_claimed(redis, doc)
    plan = plan_import(doc, stored)

    announce = set(plan.teams_changed)
    # Teams of agencies whose kind or role changed: their UnitStatus profile changed too.
    announce |= set().union(*await read_sets(
        redis, [keys.agency_teams(a) for a in sorted(plan.agencies_profile_changed)]))
    moved = tuple(sorted((w.id, w.previous["team_id"], w.record["team_id"])
                         for w in plan.writes if w.entity == "members" and w.previous
                         and w.previous.get("team_id") not in (None, w.record["team_id"])))
    leaving: dict[str, list[str]] = {}
    for member_id, old_team, _ in moved:
        leaving.setdefault(old_team, []).append(member_id)
    # Teams the moves leave with nobody on their roster (`leave`'s `emptied`).
    left_teams = sorted(leaving)
    arriving = {w.record["team_id"] for w in plan.writes if w.entity == "members"}
    rosters = await read_sets(redis, [keys.team_members(t) for t in left_teams])
    emptied = {t for t, roster in zip(left_teams, rosters, strict=True)
               if t not in arriving and not roster - set(leaving[t])}
    rekinded = await _rekinded_teams(redis, plan)
    changes = [TeamChange(t, tuple(leaving.get(t, ())), t in emptied, t in announce,
                          t in rekinded)
               for t in sorted(announce | set(leaving) | rekinded)]
    return plan, changes, moved


async def agency_kinds(redis: Redis, agency_ids: Iterable[str]) -> dict[str, str]:
    """The stored kind of each agency ("" for one not stored)."""
    wanted = sorted(agency_ids)
    records = await read_hashes(redis, [keys.agency(a) for a in wanted])
    return {a: r.get("kind", "") for a, r in zip(wanted, records, strict=True)}


async def _volunteers_of(redis: Redis, member_ids: list[str]) -> list[str]:
    """Those of `member_ids` (stored) who are members of a volunteer agency."""
    records = await read_hashes(redis, [keys.member(m) for m in member_ids])
    kinds = await agency_kinds(redis, {r.get("agency_id", "") for r in records} - {""})
    return [m for m, r in zip(member_ids, records, strict=True)
            if kinds.get(r.get("agency_id", "")) == "volunteer"]


async def _not_in_import(redis: Redis, doc: RosterDoc, *,
                         volunteers_only: bool = False) -> dict[str, list[str]]:
    """For each entity the import sends, the district's stored ids it does not name, by id.

    A roster exported from a spreadsheet again, with a member who quit deleted from it, is
    an upsert that removes nobody: they stay on the roster with their phones, their shift,
    their points and their place on the leaderboard. Said in the answer, the coordinator
    removes them on purpose (DELETE /v1/members/{id}); removing them here would take the
    points of everyone a partial file left out (a file of one agency's members).
    `volunteers_only` (a coordinator's import): the members of volunteer agencies only, the
    ones it removes; an officer's or a guard's id is none of its business."""
    sent = [e for e in ENTITIES if e in doc.sent]
    async with redis.pipeline(transaction=False) as pipe:
        for entity in sent:
            pipe.zrange(keys.index(entity, doc.district), 0, -1)
        stored = await pipe.execute()
    left_out = {entity: sorted(set(ids) - {row.id for row in doc.rows(entity)})
                for entity, ids in zip(sent, stored, strict=True)}
    if volunteers_only and left_out.get("members"):
        left_out["members"] = await _volunteers_of(redis, left_out["members"])
    return left_out


# --- the journal's steps -----------------------------------------------------------------


def in_steps(costs: Sequence[int], *, budget: int, most: int) -> list[range]:
    """Consecutive runs of items, in order, each costing at most `budget` in all (an item
    that costs more alone is a run of its own) and holding at most `most` items."""
    runs: list[range] = []
    start, spent = 0, 0
    for i, cost in enumerate(costs):
        if i > start and (spent + cost > budget or i - start >= most):
            runs.append(range(start, i))
            start, spent = i, 0
        spent += cost
    if start < len(costs):
        runs.append(range(start, len(costs)))
    return runs


def _row_cost(write: Write) -> int:
    """The record, its two indexes, its team's or agency's sets; a moved member's devices."""
    moved = write.entity == "members" and bool(write.previous)
    return 5 + (2 if moved else 0)


def _parent(write: Write) -> str:
    """The agency a stored team had, the team a stored member had: the sets it leaves."""
    field = {"teams": "agency_id", "members": "team_id"}.get(write.entity)
    return (write.previous or {}).get(field, "") if field else ""


def journal_steps(plan: ImportPlan, changes: Sequence[TeamChange], *, now: datetime,
                  max_patrol_hours: float, ledger_ttl_s: int,
                  grace_hours: float | None = None) -> list[dict[str, Any]]:
    """The import's steps as the journal keeps them: the rows, then the teams' states
    (`grace_hours`: CHECKIN_GRACE_HOURS, so that the teams' run-out check-ins end first)."""
    writes = plan.writes
    steps: list[dict[str, Any]] = [
        {"do": "rows", "district": plan.district,
         "rows": [[w.entity, w.id, w.record, _parent(w)] for w in writes[run.start:run.stop]]}
        for run in in_steps([_row_cost(w) for w in writes], budget=STEP_COMMANDS,
                            most=STEP_ITEMS)]
    steps += [
        {"do": "teams", "district": plan.district, "now": now.isoformat(),
         "max_hours": max_patrol_hours, "ledger_ttl_s": ledger_ttl_s,
         **({"grace_hours": grace_hours} if grace_hours is not None else {}),
         "teams": [[c.team_id, list(c.leaving), c.emptied, c.announce, c.rekinded]
                   for c in changes[run.start:run.stop]]}
        for run in in_steps([TEAM_COMMANDS + AWARD_COMMANDS * len(c.leaving)
                             + (REKINDED_COMMANDS if c.rekinded else 0) for c in changes],
                            budget=STEP_COMMANDS, most=STEP_ITEMS)]
    with_zones = [s for s in steps if s["do"] == "rows"
                  and any(entity == "zones" for entity, *_ in s["rows"])]
    if len(with_zones) > 1:
        # Zones written in several steps (a city's re-cut): between two of them the map is
        # half new, with a gap or an overlap two stations claim, which dispatch's projection
        # would keep until its next refresh. The commit marks the district's zones as being
        # written (zones_importing), the last of these steps clears the mark, and the zones'
        # readers serve the map from before it meanwhile (store.zones.ZoneLookup).
        with_zones[-1]["zones_end"] = True
    return steps


async def _last_as_of(redis: Redis, district: str) -> datetime | None:
    raw = await redis.get(keys.import_as_of(district))
    return datetime.fromisoformat(raw) if raw else None


def _queue_as_of(pipe: Pipeline, mark: tuple[str, datetime] | None) -> None:
    if mark is not None:
        district, as_of = mark
        pipe.set(keys.import_as_of(district), as_of.isoformat())


async def _record_as_of(redis: Redis, token: str, mark: tuple[str, datetime]) -> None:
    """The district's new `as_of`, for an import that writes nothing else (its roster was
    as stored): a document older than it still undoes it."""

    async def body(pipe: Pipeline) -> None:
        await _check_lock(pipe, token)
        pipe.multi()
        _queue_as_of(pipe, mark)

    await atomically(redis, [keys.import_lock()], body)


async def _commit(redis: Redis, token: str, steps: Sequence[dict[str, Any]],
                  mark: tuple[str, datetime] | None = None) -> None:
    """Write the journal whole under a key of its own, then rename it into place: from this
    moment the import is committed (a crash before leaves nothing; after, it is finished),
    and so is the district's new `as_of` (`mark`), in the same transaction."""
    staging = keys.import_staging(token)
    async with redis.pipeline(transaction=False) as pipe:
        for step in steps:
            pipe.rpush(staging, json.dumps(step, separators=(",", ":")))
        pipe.expire(staging, STAGING_TTL_S)
        await pipe.execute()

    marked = {step["district"] for step in steps if step.get("zones_end")}

    async def body(pipe: Pipeline) -> None:
        await _check_lock(pipe, token)
        if not await pipe.exists(staging):
            return  # renamed by the try whose reply was lost (a WatchError here)
        # The zones' revs change only under the import lock (an import's steps, a zone's
        # removal), which this import holds: read here, they are the map before it.
        revs = {district: await pipe.get(keys.zones_rev(district)) or "0"
                for district in sorted(marked)}
        pipe.multi()
        pipe.rename(staging, keys.import_journal())
        pipe.persist(keys.import_journal())
        for district, rev in revs.items():
            pipe.set(keys.zones_importing(district), rev)
        _queue_as_of(pipe, mark)

    await atomically(redis, [keys.import_lock(), staging], body)


def leave(
    state: TeamState, member_ids: Sequence[str], *, team: dict[str, str] | None,
    agency: dict[str, str] | None, now: datetime, max_hours: float, emptied: bool = False,
    limit: CheckInLimit | None = None,
) -> tuple[TeamState, list[LedgerEntry]]:
    """`member_ids` leave the team's shift (moved or removed): its state after, and their
    patrol points so far. Queued in the same transaction as the team's state, so no later
    step (which a crash could skip) is needed to take them off the old shift. The shift
    ends even if it holds an order (`status.unmanned`: dispatch hears it off shift, and the
    command room decides) when they were the last on it (their phones are another team's,
    or revoked with them: nobody on it is left to answer, as when the last one's phone is
    revoked, `status.device_revoked`), or `emptied`: the last members of its roster.

    `limit`: first end the check-ins that ran out by `now` (`expire_check_ins`), as every
    transition and the sweep do: a member whose check-in ran out before the sweep came was
    on the shift until it ran out, not until they were moved (a deadline missed between
    would cost them the missed-order 2, read late), and is paid to the cap with the
    sweep's entry (the same id: the sweep, coming later, finds nothing to pay)."""
    ledger: list[LedgerEntry] = []
    were_on = any(m in state.shift_members for m in member_ids)
    if limit is not None:
        expired = expire_check_ins(state, now=now, limit=limit)
        state = expired.state
        if team and agency:
            for ended in expired.ended:
                ledger += award_patrol(ended=ended, team_id=team["id"],
                                       district=team["district"],
                                       agency_kind=agency.get("kind", ""),
                                       max_hours=limit.max_stint.total_seconds() / 3600)
    for member_id in member_ids:
        outcome = leave_shift(state, member_id=member_id, now=now)
        state = outcome.state
        if outcome.ended is not None and team and agency:
            ledger += award_patrol(ended=outcome.ended, team_id=team["id"],
                                   district=team["district"], agency_kind=agency.get("kind", ""),
                                   max_hours=max_hours)
    if (emptied and member_ids) or (were_on and not state.shift_members):
        state = unmanned(state)
    return state, ledger


async def _write_rows(redis: Redis, token: str, step: dict[str, Any], raw: str) -> int:
    """A step of rows and their indexes and sets; a member moved to another team has its
    devices' sockets closed (notify: DeviceRevoked `team_changed`, the phones reconnect to
    the new team) in the same write. Written only while the step (`raw`) heads the journal:
    an EXEC whose reply was lost comes back as a WatchError, and the step, run again, would
    take the next one off the journal unwritten."""
    district = step["district"]
    rows = step["rows"]
    moved = [(member_id, record["team_id"]) for entity, member_id, record, old in rows
             if entity == "members" and old and old != record["team_id"]]

    async def body(pipe: Pipeline) -> int:
        await _check_lock(pipe, token)
        if await pipe.lindex(keys.import_journal(), 0) != raw:
            return 0  # written by the try whose reply was lost
        device_ids: list[set[str]] = []
        if moved:
            await pipe.watch(*(keys.member_devices(m) for m, _ in moved))
            device_ids = await read_sets(redis, [keys.member_devices(m) for m, _ in moved])
        pipe.multi()
        pipe.sadd(keys.districts(), district)
        for entity, entity_id, record, old in rows:
            pipe.hset(keys.entity(entity, entity_id), mapping=record)
            pipe.zadd(keys.index(entity, district), {entity_id: 0})
            pipe.zadd(keys.index(entity, None), {entity_id: 0})
            if entity == "teams":
                if old and old != record["agency_id"]:
                    pipe.srem(keys.agency_teams(old), entity_id)
                pipe.sadd(keys.agency_teams(record["agency_id"]), entity_id)
            elif entity == "members":
                if old and old != record["team_id"]:
                    pipe.srem(keys.team_members(old), entity_id)
                pipe.sadd(keys.team_members(record["team_id"]), entity_id)
        for (member_id, team_id), devices in zip(moved, device_ids, strict=True):
            for device_id in sorted(devices):
                await queue_publish(pipe, streams.DEVICE_REVOKED, DeviceRevoked(
                    district=district, device_id=device_id, member_id=member_id,
                    team_id=team_id, reason="team_changed"))
        if any(entity == "zones" for entity, *_ in rows):
            pipe.incr(keys.zones_rev(district))
        if step.get("zones_end"):
            pipe.delete(keys.zones_importing(district))
        pipe.lpop(keys.import_journal())
        return 0

    return await atomically(redis, [keys.import_lock(), keys.import_journal()], body)


# A step's teams, each written only if its state is still the one read (as a transition's
# _COMMIT would have it, without WATCH: a team that checks in meanwhile is decided again in
# the next round, the others are written). KEYS[1] the lock (ARGV[1] its token: -1 if lost),
# KEYS[2] the journal (ARGV[2] the step, its head: -2 if no longer, for then a send of this
# script whose reply was lost, which redis-py sends again, wrote it); ARGV[3] the number of
# teams, then for each: its state key, the `seq` and `state` read, the number of words that
# follow its six, its commands' count and its awards' count, the commands (RUN_COMMANDS_LUA)
# and the awards (store.points' award, nine words each). Returns the (1-based) places of the
# teams not written; none: the step is done and leaves the journal.
_SETTLE = RUN_COMMANDS_LUA + AWARD_LUA + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[2] then return -2 end
local left = {}
local i = 4
for n = 1, tonumber(ARGV[3]) do
  local now = redis.call('HMGET', ARGV[i], 'seq', 'state')
  if (now[1] or '') == ARGV[i + 1] and (now[2] or '') == ARGV[i + 2] then
    local j = run_commands(i + 6, tonumber(ARGV[i + 4]))
    for _ = 1, tonumber(ARGV[i + 5]) do
      award(ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4], ARGV[j + 5],
            ARGV[j + 6], ARGV[j + 7], ARGV[j + 8])
      j = j + 9
    end
  else
    left[#left + 1] = n
  end
  i = i + 6 + tonumber(ARGV[i + 3])
end
if #left == 0 then redis.call('LPOP', KEYS[2]) end
return left
"""


async def _team_writes(redis: Redis, change: TeamChange, data: dict[str, str],
                       team: dict[str, str] | None, agency: dict[str, str] | None, *,
                       now: datetime, max_hours: float, ledger_ttl_s: int,
                       devices: Sequence[tuple[str, str]] = (),
                       limit: CheckInLimit | None = None) -> tuple[list[Any], bool]:
    """One team's part of `_SETTLE`'s arguments, and whether it announces the team;
    `devices` (member, device) are told their agency's kind changed; `limit`: its run-out
    check-ins end first (`leave`)."""
    before = decode_state(data)
    state, ledger = leave(before, change.leaving, team=team, agency=agency, now=now,
                          max_hours=max_hours, emptied=change.emptied, limit=limit)
    announce = bool(team and agency) and (change.announce
                                          or state.visible() != before.visible())
    async with redis.pipeline(transaction=False) as pipe:  # collects; never sent
        if state != before:
            pipe.hset(keys.state(change.team_id), mapping=encode_state(
                state, seq=int(data.get("seq") or 0) + 1, now=now))
            if state.shift_members != before.shift_members:  # as a transition keeps it
                queue_check_in_index(pipe, change.team_id, state)
        elif change.announce:
            # A transition that read the team and its agency before this import must read
            # them again, or its unit.status would carry the old profile after this one's
            # (it compares the state's seq, not the agency).
            pipe.hincrby(keys.state(change.team_id), "seq", 1)
        if announce and team and agency:
            await publish_unit_status(pipe, team=team, agency=agency, state=state)
        if team:
            # with the team's new profile, so notify closes the sockets as dispatch hears
            # the new kind; a device enrolled since the rows were written reads it already
            for member_id, device_id in devices:
                await queue_publish(pipe, streams.DEVICE_REVOKED, DeviceRevoked(
                    district=team["district"], device_id=device_id, member_id=member_id,
                    team_id=change.team_id, reason="agency_changed"))
        commands = queued_commands(pipe)
    words = commands_as_args(commands)
    for entry in ledger:
        award_keys, award_args = award_call(entry, ledger_ttl_s=ledger_ttl_s)
        words += [*award_keys, *award_args]
    return [keys.state(change.team_id), data.get("seq", ""), data.get("state", ""), len(words),
            len(commands), len(ledger), *words], announce


async def _members_devices(redis: Redis, team_ids: Sequence[str]
                           ) -> dict[str, list[tuple[str, str]]]:
    """Each team's (member, device) pairs, as stored now."""
    rosters = await read_sets(redis, [keys.team_members(t) for t in team_ids])
    members = [(t, m) for t, roster in zip(team_ids, rosters, strict=True)
               for m in sorted(roster)]
    found: dict[str, list[tuple[str, str]]] = {}
    for (team_id, member_id), devices in zip(members, await read_sets(
            redis, [keys.member_devices(m) for _, m in members]), strict=True):
        found.setdefault(team_id, []).extend((member_id, d) for d in sorted(devices))
    return found


async def _settle_teams(redis: Redis, token: str, step: dict[str, Any], raw: str) -> int:
    """A step of teams: moved members leave their old teams' shifts (patrol points so far
    paid; a shift left with nobody and no order ends), and each team whose profile or
    visible state changed is announced (UnitStatus) with the state it has now. Returns how
    many were announced."""
    # (a journal written before `rekinded` was has four fields a team)
    pending = [TeamChange(t, tuple(leaving), emptied, announce, bool(rekinded and rekinded[0]))
               for t, leaving, emptied, announce, *rekinded in step["teams"]]
    now = datetime.fromisoformat(step["now"])
    # (a journal written before `grace_hours` was ends no run-out check-in: the sweep does)
    limit = (CheckInLimit.of(max_hours=step["max_hours"], grace_hours=step["grace_hours"])
             if step.get("grace_hours") is not None else None)
    announced = 0
    for attempt in range(ATTEMPTS):
        states = await read_hashes(redis, [keys.state(c.team_id) for c in pending])
        profiles = await read_hashes(redis, [keys.team(c.team_id) for c in pending])
        agency_ids = sorted({p["agency_id"] for p in profiles if p})
        agencies = dict(zip(agency_ids, await read_hashes(
            redis, [keys.agency(a) for a in agency_ids]), strict=True))
        devices = await _members_devices(redis, [c.team_id for c in pending if c.rekinded])
        args: list[Any] = [token, raw, len(pending)]
        announces: list[bool] = []
        for change, data, profile in zip(pending, states, profiles, strict=True):
            agency = (agencies.get(profile["agency_id"]) or None) if profile else None
            words, announce = await _team_writes(
                redis, change, data, profile or None, agency, now=now, max_hours=step["max_hours"],
                ledger_ttl_s=step["ledger_ttl_s"], devices=devices.get(change.team_id, ()),
                limit=limit)
            args += words
            announces.append(announce)
        left = await run_script(redis, _SETTLE, [keys.import_lock(), keys.import_journal()],
                                args)
        if left == -1:
            raise _lock_lost()
        if left == -2:  # this round's teams were all written by the send whose reply was lost
            return announced + sum(announces)
        written = set(range(1, len(pending) + 1)) - set(left)
        announced += sum(announces[n - 1] for n in written)
        if not left:
            return announced
        pending = [pending[n - 1] for n in left]
        await contention_pause(attempt)
    raise Contended(f"gave up after {ATTEMPTS} concurrent changes of a team")


async def apply_step(redis: Redis, token: str, raw: str) -> int:
    """Apply one step of the journal (`raw`, its head as stored) and take it off; teams it
    announced."""
    step = json.loads(raw)
    if step["do"] == "rows":
        return await _write_rows(redis, token, step, raw)
    return await _settle_teams(redis, token, step, raw)


async def finish(redis: Redis, token: str) -> int:
    """Apply the journal's steps in order, under the lock `token`; teams announced."""
    announced = 0
    while (raw := await redis.lindex(keys.import_journal(), 0)) is not None:
        announced += await apply_step(redis, token, raw)
    return announced


async def import_roster(redis: Redis, *, doc: RosterDoc, now: datetime,
                        max_patrol_hours: float, ledger_ttl_s: int,
                        check_in_grace_hours: float | None = None,
                        coordinator: bool = False) -> ImportResult:
    """Validate against what is stored, then write everything, or nothing (InvalidRoster;
    NotACoordinatorsChange: a `coordinator`'s import that creates or changes a zone, or a
    row that is not a volunteer agency's; StaleImport: older than the district's last
    import, by `as_of`).

    A member moved to another team leaves the old team's shift in the import (their patrol
    points so far paid; a shift left with nobody and no order ends); a team whose state it
    writes has the check-ins that ran out by `now` ended first, as the sweep would
    (`check_in_grace_hours`: CHECKIN_GRACE_HOURS; None: left to the sweep). A document that
    changes nothing writes nothing (but a later `as_of`)."""
    if (ahead := as_of_ahead(doc, now)) is not None:
        doc.errors.append(ahead)  # told with the document's other errors (check_references)
    async with import_lock(redis) as token:
        await finish(redis, token)  # one a crash cut off was committed first
        plan, changes, moved = await _plan(redis, doc)
        # After the document's errors, before the 409 (DESIGN's order: 422, 403, 409).
        if coordinator and (refused := beyond_volunteers(
                doc, plan, await agency_kinds(redis, agencies_to_know(plan)))):
            raise NotACoordinatorsChange(refused)
        # After the document's errors (DESIGN's order: 422, then 409). Under the lock, which
        # every import holds from this read to its commit, which writes the new mark.
        last = await _last_as_of(redis, doc.district)
        if (why := stale_import(doc, last)) is not None:
            raise StaleImport(why)
        mark = ((doc.district, doc.as_of)
                if doc.as_of is not None and (last is None or doc.as_of > last) else None)
        as_of = mark[1] if mark else last
        left_out = await _not_in_import(redis, doc, volunteers_only=coordinator)
        steps = journal_steps(plan, changes, now=now, max_patrol_hours=max_patrol_hours,
                              ledger_ttl_s=ledger_ttl_s, grace_hours=check_in_grace_hours)
        if not steps:
            if mark is not None:
                await _record_as_of(redis, token, mark)
            return ImportResult(plan, 0, moved, as_of, left_out)
        await _commit(redis, token, steps, mark)
        announced = await finish(redis, token)
    return ImportResult(plan, announced, moved, as_of, left_out)


async def keep_finishing(redis: Redis, stop: asyncio.Event, *,
                         every_s: float = FINISH_EVERY_S) -> None:
    """Finish a committed import whose writer died (its lock ran out): its journal is
    written whole here, whether or not another import comes."""
    while not stop.is_set():
        try:
            if await redis.exists(keys.import_journal()):
                async with import_lock(redis, wait_s=0) as token:
                    announced = await finish(redis, token)
                    log.info("finished an interrupted roster import (%d teams announced)",
                             announced)
        except TryAgain:
            pass  # an import holds the lock: it finishes the journal first
        except Exception as exc:  # the next round tries again; the journal stays
            log.warning("finishing an interrupted roster import failed: %s",
                        type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
