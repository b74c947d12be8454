"""The roster's keys: reads and lists, explicit removals (the import: `imports`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared import streams
from shared.events import DeviceRevoked

from ..domain.status import CheckInLimit, Refused, TeamState
from . import keys
from .imports import agency_kinds, leave, outside_imports, read_hashes, read_sets
from .points import queue_entries
from .teams import decode_state, encode_state, publish_unit_status, queue_check_in_index

# --- reads ------------------------------------------------------------------------------


async def get(redis: Redis, entity: str, entity_id: str) -> dict[str, str] | None:
    return await redis.hgetall(keys.entity(entity, entity_id)) or None


async def records(redis: Redis, entity: str, entity_ids: Sequence[str]
                  ) -> list[dict[str, str]]:
    """Many records at once ({} for one that is gone), in the order of `entity_ids`."""
    return await read_hashes(redis, [keys.entity(entity, i) for i in entity_ids])


async def districts(redis: Redis) -> list[str]:
    """The districts an import wrote rows of, by name. An agency is never removed, so a
    district once imported stays one; a refused import writes nothing, names none."""
    return sorted(await redis.smembers(keys.districts()))


async def is_district(redis: Redis, district: str) -> bool:
    """Whether an import wrote rows of `district` (one of `districts`)."""
    return bool(await redis.sismember(keys.districts(), district))


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
    records = [r for r in await read_hashes(redis, [keys.entity(entity, i) for i in ids]) if r]
    return records, (ids[-1] if more and ids else None)


async def volunteers_page(
    redis: Redis, *, district: str, cursor: str | None, limit: int
) -> tuple[list[dict[str, str]], str | None]:
    """As `page` of members, the members of volunteer agencies alone (what a coordinator
    lists): up to `limit` of them after `cursor`, the others between them passed over, and
    the next cursor (None: no member after the last, volunteer or not)."""
    kept: list[dict[str, str]] = []
    while True:  # read in batches of 200 or more: a page of 1 is not a round trip an officer
        records, cursor = await page(redis, "members", district=district, cursor=cursor,
                                     limit=max(limit, 200))
        kinds = await agency_kinds(redis, {r["agency_id"] for r in records})
        kept.extend(r for r in records if kinds.get(r["agency_id"]) == "volunteer")
        if len(kept) > limit:  # the next page begins after the last one shown
            return kept[:limit], kept[limit - 1]["id"]
        if len(kept) == limit or cursor is None:
            return kept, cursor


async def team_member_ids(redis: Redis, team_id: str) -> list[str]:
    return sorted(await redis.smembers(keys.team_members(team_id)))


async def teams_with_members(redis: Redis, team_ids: Sequence[str]
                             ) -> list[tuple[dict[str, str], list[dict[str, str]]]]:
    """Each team's record ({} for a team that is gone) and its members, ordered by id: a
    pipeline per thousand keys, not a round trip per team and member."""
    teams = await read_hashes(redis, [keys.team(t) for t in team_ids])
    rosters = [sorted(r) for r in await read_sets(
        redis, [keys.team_members(t) for t in team_ids])]
    members = await read_hashes(redis, [keys.member(m) for roster in rosters for m in roster])
    out: list[tuple[dict[str, str], list[dict[str, str]]]] = []
    start = 0
    for team, roster in zip(teams, rosters, strict=True):
        out.append((team, [m for m in members[start:start + len(roster)] if m]))
        start += len(roster)
    return out


async def agency_team_ids(redis: Redis, agency_id: str) -> list[str]:
    return sorted(await redis.smembers(keys.agency_teams(agency_id)))


# --- removals ---------------------------------------------------------------------------


async def delete_member(redis: Redis, *, broker: RedisBroker, member_id: str, now: datetime,
                        max_patrol_hours: float, ledger_ttl_s: int,
                        check_in_limit: CheckInLimit | None = None) -> bool:
    """Remove a member: its devices are revoked (DeviceRevoked each); it leaves its team's
    shift in the same write (patrol points so far paid; a shift left with nobody and no
    order ends, and dispatch hears it); its points balance and history go; its devices'
    records expire `ledger_ttl_s` later (their tokens are deleted at once).

    `check_in_limit`: first end the team's check-ins that ran out by `now`, as the sweep
    and every transition do (`imports.leave`): a teammate whose check-in ran out is not
    left on the shift after the removal, which dispatch would hear as the team on shift
    and available with nobody on it until the sweep came (None: left to the sweep)."""
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
        state, ledger = leave(before, [member_id], team=team, agency=agency, now=now,
                               max_hours=max_patrol_hours, emptied=not others,
                               limit=check_in_limit)
        if member_id in state.left:  # gone with their points: no late answer pays them
            state = state.model_copy(update={
                "left": {m: s for m, s in state.left.items() if m != member_id}})
        pipe.multi()
        for device_id, device in zip(device_ids, devices, strict=True):
            if device.get("token_hash"):
                pipe.delete(keys.token(device["token_hash"]))
            pipe.hset(keys.device(device_id), "revoked_at", "member removed")
            # kept as a revoked device's (devices.revoked_kept: the same twice RETENTION_DAYS)
            pipe.expire(keys.device(device_id), ledger_ttl_s)
            await broker.publish(
                DeviceRevoked(district=member["district"], device_id=device_id,
                              member_id=member_id, team_id=team_id),
                stream=streams.DEVICE_REVOKED.name, pipeline=pipe,
            )
        if state != before:
            pipe.hset(keys.state(team_id), mapping=encode_state(
                state, seq=int(state_data.get("seq") or 0) + 1, now=now))
            if state.shift_members != before.shift_members:  # as a transition keeps it
                queue_check_in_index(pipe, team_id, state)
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

    return await outside_imports(redis, watch, body)


async def delete_team(redis: Redis, *, broker: RedisBroker, team_id: str) -> bool:
    """Remove a team with no members and no open order; dispatch hears it as off duty and
    removed (`UnitStatus.removed`), and drops it from its projection."""
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
        pipe.zrem(keys.check_ins(), team_id)
        if agency:
            await publish_unit_status(pipe, team=team, agency=agency,
                                      state=TeamState(status="off_duty"), removed=True)
        return True

    return await outside_imports(redis, watch, body)


async def teams_at_home_in(redis: Redis, district: str, zone_id: str) -> list[str]:
    """The district's teams whose home zone is `zone_id`, ordered by id (only a team of
    the zone's own district may name it: the import checks)."""
    team_ids = await redis.zrange(keys.index("teams", district), 0, -1)
    records = await read_hashes(redis, [keys.team(t) for t in team_ids])
    return [t for t, record in zip(team_ids, records, strict=True)
            if record.get("home_zone_id") == zone_id]


async def delete_zone(redis: Redis, *, zone_id: str) -> dict[str, str] | None:
    """Remove a zone that no team has as its home zone (Refused naming them); its record,
    or None for no such zone. Lookups, the district's zones (dispatch's projection reads
    them) and later imports' overlap checks no longer hold it: the district's zones_rev
    is bumped with it, so every replica's lookup cache is built again."""
    watch = [keys.entity("zones", zone_id)]

    async def body(pipe: Pipeline) -> dict[str, str] | None:
        zone = await pipe.hgetall(keys.entity("zones", zone_id))
        if not zone:
            return None
        district = zone["district"]
        # Only an import names a home zone, and none runs while this is watched
        # (outside_imports): what is read here stays true until the write.
        at_home = await teams_at_home_in(redis, district, zone_id)
        if at_home:
            raise Refused(f"the zone is the home zone of {len(at_home)} team(s): "
                          f"{', '.join(at_home[:10])}; allowed: re-import them with another "
                          "home_zone_id, or none, first")
        pipe.multi()
        pipe.delete(keys.entity("zones", zone_id))
        pipe.zrem(keys.index("zones", district), zone_id)
        pipe.zrem(keys.index("zones", None), zone_id)
        pipe.incr(keys.zones_rev(district))
        return zone

    return await outside_imports(redis, watch, body)
