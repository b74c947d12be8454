"""The roster's keys: an import as one transaction, reads and lists, explicit removals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared import streams
from shared.events import DeviceRevoked

from ..domain.points import LedgerEntry, award_patrol
from ..domain.roster import (
    ENTITIES,
    ROLES_BY_KIND,
    ImportPlan,
    RosterDoc,
    RowError,
    ZoneRow,
    check_references,
    conflicting_claims,
    plan_import,
    referenced_ids,
)
from ..domain.status import Refused, TeamState, leave_shift, unmanned
from . import keys
from .points import queue_entries
from .teams import decode_state, encode_state, publish_unit_status
from .tx import atomically


@dataclass(frozen=True, slots=True)
class ImportResult:
    plan: ImportPlan
    announced: int
    # (member, old team, new team) of each member the import moved to another team
    moved: tuple[tuple[str, str, str], ...] = ()


def _leave(
    state: TeamState, member_ids: list[str], *, team: dict[str, str] | None,
    agency: dict[str, str] | None, now: datetime, max_hours: float, emptied: bool = False,
) -> tuple[TeamState, list[LedgerEntry]]:
    """`member_ids` leave the team's shift (moved or removed): its state after, and their
    patrol points so far. Queued in the same transaction as the move or removal, so no later
    step (which a crash could skip) is needed to take them off the old shift. `emptied`:
    they were the last members of its roster, so its shift ends even if it holds an order
    (`status.unmanned`: dispatch hears it off shift, and the command room decides)."""
    ledger: list[LedgerEntry] = []
    for member_id in member_ids:
        outcome = leave_shift(state, member_id=member_id, now=now)
        state = outcome.state
        if outcome.ended is not None and team and agency:
            ledger += award_patrol(ended=outcome.ended, team_id=team["id"],
                                   district=team["district"], agency_kind=agency.get("kind", ""),
                                   max_hours=max_hours)
    if emptied and member_ids:
        state = unmanned(state)
    return state, ledger


async def _check_members_left_behind(redis: Redis, pipe: Pipeline, doc: RosterDoc,
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
    for team, loc in moved:
        await pipe.watch(keys.team_members(team.id))
        left = sorted(set(await redis.smembers(keys.team_members(team.id))) - named)
        if left:
            errors.append(loc.error("teams", "agency_id", "the team's members "
                                    f"{', '.join(left[:10])} would stay with its old agency: "
                                    "move them in the same import"))
    for agency, loc in rekinded:
        await pipe.watch(keys.agency_teams(agency.id))  # a team given to it meanwhile
        teams = sorted(await redis.smembers(keys.agency_teams(agency.id)))
        if not teams:  # nobody to check (and WATCH takes at least one key)
            continue
        await pipe.watch(*(keys.team_members(t) for t in teams))
        member_ids = sorted({m for t in teams for m in await redis.smembers(keys.team_members(t))}
                            - named)
        roles = await _read_many(redis, [keys.member(m) for m in member_ids])
        wrong = [m for m, record in zip(member_ids, roles, strict=True)
                 if record.get("role") not in ROLES_BY_KIND[agency.kind]]
        if wrong:
            errors.append(loc.error("agencies", "kind", f"members {', '.join(wrong[:10])} have "
                                    f"roles a {agency.kind} agency does not have: give them "
                                    "their new roles in the same import"))
    doc.raise_errors(errors)


async def _check_zones_left_behind(redis: Redis, pipe: Pipeline, doc: RosterDoc,
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
    await pipe.watch(keys.index("zones", doc.district))
    in_doc = {zone.id for zone in doc.zones}  # check_references checked their owners
    zone_ids = [z for z in await redis.zrange(keys.index("zones", doc.district), 0, -1)
                if z not in in_doc]
    if zone_ids:
        await pipe.watch(*(keys.entity("zones", z) for z in zone_ids))
    async with redis.pipeline(transaction=False) as p:
        for zone_id in zone_ids:
            p.hget(keys.entity("zones", zone_id), "owner_agency_id")
        owners = await p.execute() if zone_ids else []
    errors: list[RowError] = []
    for agency, loc in demoted:
        owned = sorted(z for z, owner in zip(zone_ids, owners, strict=True) if owner == agency.id)
        if owned:
            what = "kind" if agency.kind != "police" else "role"
            errors.append(loc.error("agencies", what, f"the agency owns zones "
                                    f"{', '.join(owned[:10])}: a zone's owner is a police "
                                    "station; give them to another station in the same import"))
    doc.raise_errors(errors)


async def _check_ground_claimed(redis: Redis, pipe: Pipeline, doc: RosterDoc) -> None:
    """The document's zones must not claim ground a stored zone of another station holds
    (`conflicting_claims`; those in the document were checked against each other). Zones
    cannot be deleted: re-cut territory under new ids would leave the old zones claiming it,
    and the lookup giving it to the old station. InvalidRoster naming the stored zone."""
    if not doc.zones:
        return
    await pipe.watch(keys.index("zones", doc.district))
    in_doc = {zone.id for zone in doc.zones}
    zone_ids = [z for z in await redis.zrange(keys.index("zones", doc.district), 0, -1)
                if z not in in_doc]
    if not zone_ids:
        return
    await pipe.watch(*(keys.entity("zones", z) for z in zone_ids))
    records = await _read_many(redis, [keys.entity("zones", z) for z in zone_ids])
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


async def _read_many(redis: Redis, wanted: list[str]) -> list[dict[str, str]]:
    async with redis.pipeline(transaction=False) as pipe:
        for key in wanted:
            pipe.hgetall(key)
        return await pipe.execute()


async def import_roster(
    redis: Redis, *, broker: RedisBroker, doc: RosterDoc, now: datetime, max_patrol_hours: float,
    ledger_ttl_s: int,
) -> ImportResult:
    """Validate against what is stored, then write everything, or nothing (InvalidRoster).

    A member moved to another team leaves the old team's shift in the same write (their
    patrol points so far paid; a shift left with nobody and no order ends)."""
    ids = referenced_ids(doc)
    wanted = [(entity, i) for entity in ENTITIES for i in sorted(ids[entity])]
    watch = [keys.entity(entity, i) for entity, i in wanted]

    async def body(pipe: Pipeline) -> ImportResult:
        # WATCH is on `pipe`'s connection; the bulk reads go through another in one round trip.
        records = await _read_many(redis, watch)
        stored: dict[str, dict[str, dict[str, str]]] = {e: {} for e in ENTITIES}
        for (entity, entity_id), record in zip(wanted, records, strict=True):
            if record:
                stored[entity][entity_id] = record
        check_references(doc, stored)
        await _check_members_left_behind(redis, pipe, doc, stored)
        await _check_zones_left_behind(redis, pipe, doc, stored)
        await _check_ground_claimed(redis, pipe, doc)
        plan = plan_import(doc, stored)

        new = {e: dict(stored[e]) for e in ENTITIES}
        for write in plan.writes:
            new[write.entity][write.id] = write.record
        announce = set(plan.teams_changed)
        extra_teams: list[str] = []
        if plan.agencies_profile_changed:
            async with redis.pipeline(transaction=False) as p:
                for agency_id in sorted(plan.agencies_profile_changed):
                    p.smembers(keys.agency_teams(agency_id))
                for members in await p.execute():
                    extra_teams += sorted(t for t in members if t not in announce)
            announce |= set(extra_teams)
        # Members moving to another team: they leave the old team's shift, and their devices'
        # sockets must stop getting the old team's orders now (notify closes them; the
        # phones reconnect to the new team).
        moved = sorted((w.id, w.previous["team_id"]) for w in plan.writes
                       if w.entity == "members" and w.previous
                       and w.previous.get("team_id") not in (None, w.record["team_id"]))
        leaving: dict[str, list[str]] = {}
        for member_id, old_team in moved:
            leaving.setdefault(old_team, []).append(member_id)
        team_ids = sorted(announce | set(leaving))
        # Teams the moves leave with nobody on their roster (`_leave`'s `emptied`).
        emptied: set[str] = set()
        if leaving:
            left_teams = sorted(leaving)
            await pipe.watch(*(keys.team_members(t) for t in left_teams))
            arriving = {w.record["team_id"] for w in plan.writes if w.entity == "members"}
            async with redis.pipeline(transaction=False) as p:
                for team_id in left_teams:
                    p.smembers(keys.team_members(team_id))
                rosters = await p.execute()
            emptied = {t for t, roster in zip(left_teams, rosters, strict=True)
                       if t not in arriving and not set(roster) - set(leaving[t])}
        profiles = extra_teams + sorted(t for t in leaving
                                        if t not in new["teams"] and t not in extra_teams)
        more_watch = [keys.state(t) for t in team_ids] + [keys.team(t) for t in profiles]
        if more_watch:
            await pipe.watch(*more_watch)
        states = await _read_many(redis, [keys.state(t) for t in team_ids])
        if profiles:
            for team_id, record in zip(profiles, await _read_many(
                redis, [keys.team(t) for t in profiles]), strict=True
            ):
                if record:
                    new["teams"][team_id] = record
        moved_devices: list[list[str]] = []
        if moved:
            async with redis.pipeline(transaction=False) as p:
                for member_id, _ in moved:
                    p.smembers(keys.member_devices(member_id))
                moved_devices = [sorted(d) for d in await p.execute()]
        agencies_needed = {new["teams"][t]["agency_id"] for t in team_ids if t in new["teams"]}
        missing = sorted(a for a in agencies_needed if a not in new["agencies"])
        for agency_id, record in zip(missing, await _read_many(
            redis, [keys.agency(a) for a in missing]), strict=True
        ):
            new["agencies"][agency_id] = record

        pipe.multi()
        pipe.sadd(keys.districts(), doc.district)
        for write in plan.writes:
            pipe.hset(keys.entity(write.entity, write.id), mapping=write.record)
            pipe.zadd(keys.index(write.entity, doc.district), {write.id: 0})
            pipe.zadd(keys.index(write.entity, None), {write.id: 0})
            old = write.previous or {}
            if write.entity == "teams":
                if old.get("agency_id") and old["agency_id"] != write.record["agency_id"]:
                    pipe.srem(keys.agency_teams(old["agency_id"]), write.id)
                pipe.sadd(keys.agency_teams(write.record["agency_id"]), write.id)
            elif write.entity == "members":
                if old.get("team_id") and old["team_id"] != write.record["team_id"]:
                    pipe.srem(keys.team_members(old["team_id"]), write.id)
                pipe.sadd(keys.team_members(write.record["team_id"]), write.id)
        for (member_id, _), device_ids in zip(moved, moved_devices, strict=True):
            for device_id in device_ids:
                await broker.publish(
                    DeviceRevoked(district=doc.district, device_id=device_id,
                                  member_id=member_id,
                                  team_id=new["members"][member_id]["team_id"],
                                  reason="team_changed"),
                    stream=streams.DEVICE_REVOKED.name, pipeline=pipe)
        if plan.zones_changed:
            pipe.incr(keys.zones_rev(doc.district))
        announced = 0
        for team_id, state_data in zip(team_ids, states, strict=True):
            team = new["teams"].get(team_id)
            agency = new["agencies"].get(team["agency_id"]) if team else None
            before = decode_state(state_data)
            state, ledger = _leave(before, leaving.get(team_id, []), team=team, agency=agency,
                                   now=now, max_hours=max_patrol_hours,
                                   emptied=team_id in emptied)
            if state != before:
                pipe.hset(keys.state(team_id), mapping=encode_state(
                    state, seq=int(state_data.get("seq") or 0) + 1, now=now))
            elif team_id in announce:
                # A transition that read the team and its agency before this import must read
                # them again, or its unit.status would carry the old profile after this
                # one's (it compares the state's seq, not the agency).
                pipe.hincrby(keys.state(team_id), "seq", 1)
            queue_entries(pipe, ledger, ledger_ttl_s=ledger_ttl_s)
            if not team or not agency:
                continue
            if team_id in announce or state.visible() != before.visible():
                await publish_unit_status(pipe, team=team, agency=agency, state=state)
                announced += 1
        return ImportResult(plan, announced, tuple(
            (member_id, old_team, new["members"][member_id]["team_id"])
            for member_id, old_team in moved))

    return await atomically(redis, watch, body, attempts=5)


# --- reads ------------------------------------------------------------------------------


async def get(redis: Redis, entity: str, entity_id: str) -> dict[str, str] | None:
    return await redis.hgetall(keys.entity(entity, entity_id)) or None


async def member_and_kind(redis: Redis, member_id: str) -> tuple[dict[str, str], str] | None:
    """A member's record and their agency's kind (police, security, volunteer; "" if the
    agency is gone); None for no such member."""
    member = await get(redis, "members", member_id)
    if member is None:
        return None
    agency = await get(redis, "agencies", member["agency_id"]) or {}
    return member, agency.get("kind", "")


async def page(
    redis: Redis, entity: str, *, district: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, str]], str | None]:
    """Up to `limit` records after `cursor` (an id), ordered by id; and the next cursor."""
    ids = await redis.zrangebylex(
        keys.index(entity, district), f"({cursor}" if cursor else "-", "+", start=0,
        num=limit + 1,
    )
    more = len(ids) > limit
    ids = ids[:limit]
    records = [r for r in await _read_many(redis, [keys.entity(entity, i) for i in ids]) if r]
    return records, (ids[-1] if more and ids else None)


async def team_member_ids(redis: Redis, team_id: str) -> list[str]:
    return sorted(await redis.smembers(keys.team_members(team_id)))


async def members_of(redis: Redis, team_id: str) -> list[dict[str, str]]:
    return [r for r in await _read_many(
        redis, [keys.member(m) for m in await team_member_ids(redis, team_id)]) if r]


async def agency_team_ids(redis: Redis, agency_id: str) -> list[str]:
    return sorted(await redis.smembers(keys.agency_teams(agency_id)))


# --- removals ---------------------------------------------------------------------------


async def delete_member(redis: Redis, *, broker: RedisBroker, member_id: str, now: datetime,
                        max_patrol_hours: float, ledger_ttl_s: int) -> bool:
    """Remove a member: its devices are revoked (DeviceRevoked each); it leaves its team's
    shift in the same write (patrol points so far paid; a shift left with nobody and no
    order ends, and dispatch hears it); its points balance and history go."""
    watch = [keys.member(member_id), keys.member_devices(member_id)]

    async def body(pipe: Pipeline) -> bool:
        member = await pipe.hgetall(keys.member(member_id))
        if not member:
            return False
        team_id = member["team_id"]
        await pipe.watch(keys.state(team_id), keys.team(team_id), keys.team_members(team_id))
        state_data = await pipe.hgetall(keys.state(team_id))
        others = set(await pipe.smembers(keys.team_members(team_id))) - {member_id}
        team = await pipe.hgetall(keys.team(team_id)) or None
        agency = (await pipe.hgetall(keys.agency(team["agency_id"])) or None) if team else None
        device_ids = sorted(await pipe.smembers(keys.member_devices(member_id)))
        devices = [await pipe.hgetall(keys.device(d)) for d in device_ids]
        before = decode_state(state_data)
        state, ledger = _leave(before, [member_id], team=team, agency=agency, now=now,
                               max_hours=max_patrol_hours, emptied=not others)
        if member_id in state.left:  # gone with their points: no late answer pays them
            state = state.model_copy(update={
                "left": {m: s for m, s in state.left.items() if m != member_id}})
        pipe.multi()
        for device_id, device in zip(device_ids, devices, strict=True):
            if device.get("token_hash"):
                pipe.delete(keys.token(device["token_hash"]))
            pipe.hset(keys.device(device_id), "revoked_at", "member removed")
            await broker.publish(
                DeviceRevoked(district=member["district"], device_id=device_id,
                              member_id=member_id, team_id=team_id),
                stream=streams.DEVICE_REVOKED.name, pipeline=pipe,
            )
        if state != before:
            pipe.hset(keys.state(team_id), mapping=encode_state(
                state, seq=int(state_data.get("seq") or 0) + 1, now=now))
            if team and agency and state.visible() != before.visible():
                await publish_unit_status(pipe, team=team, agency=agency, state=state)
        queue_entries(pipe, ledger, ledger_ttl_s=ledger_ttl_s)
        pipe.delete(keys.member(member_id), keys.member_devices(member_id),
                    keys.points_history(member_id), keys.points_seq(member_id),
                    keys.points_balance(member_id))
        pipe.srem(keys.team_members(team_id), member_id)
        pipe.zrem(keys.index("members", member["district"]), member_id)
        pipe.zrem(keys.index("members", None), member_id)
        pipe.zrem(keys.leaderboard(member["district"]), member_id)
        return True

    return await atomically(redis, watch, body)


async def delete_team(redis: Redis, *, broker: RedisBroker, team_id: str) -> bool:
    """Remove a team with no members and no open order; dispatch hears it as off duty."""
    watch = [keys.team(team_id), keys.team_members(team_id), keys.state(team_id)]

    async def body(pipe: Pipeline) -> bool:
        team = await pipe.hgetall(keys.team(team_id))
        if not team:
            return False
        members = await pipe.scard(keys.team_members(team_id))
        state = decode_state(await pipe.hgetall(keys.state(team_id)))
        if members:
            raise Refused(f"the team still has {members} member(s); allowed: remove or move "
                          "them (DELETE /v1/members/{id} or a re-import) first")
        if state.orders:
            raise Refused(f"the team is {state.status} with open order {state.open_order}; "
                          "allowed: remove it once its orders are finished")
        agency = await pipe.hgetall(keys.agency(team["agency_id"]))
        pipe.multi()
        pipe.delete(keys.team(team_id), keys.state(team_id), keys.position(team_id),
                    keys.plan(team_id), keys.team_members(team_id))
        pipe.srem(keys.agency_teams(team["agency_id"]), team_id)
        pipe.srem(keys.plans(team["district"]), team_id)
        pipe.zrem(keys.index("teams", team["district"]), team_id)
        pipe.zrem(keys.index("teams", None), team_id)
        if agency:
            await publish_unit_status(pipe, team=team, agency=agency,
                                      state=TeamState(status="off_duty"))
        return True

    return await atomically(redis, watch, body)
