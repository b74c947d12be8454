"""Who may call: the callers' kinds as annotated dependencies (module level, so FastAPI can
resolve them from string annotations); the district a read names, and a coordinator's own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Path, Query
from redis.asyncio import Redis

from shared.districts import unknown_district
from shared.http import ApiError, Principal, forbidden, not_found, require

from ..store import roster as roster_store

# The roster's reads too: members' names and phones, every district's. Volunteers resolves
# no desk tokens; the command room sees its districts' teams through dispatch.
Admin = Annotated[Principal, Depends(require("admin"))]
Device = Annotated[Principal, Depends(require("device"))]
# What the other services read with their own key (shared.tokens.service_key): the roster's
# districts, a district's zones and shifts worked now, a team's view (who is on its shift),
# an agency (dispatch, before it makes an agency's desk token).
AdminOrService = Annotated[Principal, Depends(require("admin", "service"))]
# A district's volunteer coordinator (POST /v1/coordinators): the admin's work on the roster,
# for its own districts only (check_district, check_own). What a route does not name it for
# (the zones' removal, the roster's districts, coordinators' tokens, the audit trail, dead
# letters, metrics) is refused it: tests/integration/test_access_matrix.py's COORDINATOR.
AdminOrCoordinator = Annotated[Principal, Depends(require("admin", "coordinator"))]
Coordinator = Annotated[Principal, Depends(require("coordinator"))]  # its own record only
Reader = Annotated[Principal, Depends(require("admin", "service", "coordinator"))]
IdPath = Annotated[str, Path(min_length=1, max_length=64)]


def check_district(who: Principal, district: str, field: str = "district") -> None:
    """A coordinator works on its own districts only: 403 naming the request's `field` for
    another (one the roster does not hold too: its districts were the roster's, and which
    districts the roster holds is not its to learn)."""
    if who.kind == "coordinator" and district not in who.districts:
        raise forbidden(f"this coordinator does not cover district '{district[:64]}'", field)


def required_district(who: Principal, district: str | None) -> None:
    """A list the admin reads whole is read by a coordinator a district at a time: 422
    naming `district` without one (as dispatch's KPIs are of a desk), else check_district."""
    if district is None:
        if who.kind == "coordinator":
            raise ApiError(422, "invalid_field", "district is required of a coordinator: one "
                           "of its districts", "district")
        return
    check_district(who, district)


def check_own(who: Principal, record: Mapping[str, str], what: str) -> None:
    """An object a coordinator names by id (its stored record, found: the 404 comes first) is
    of one of its districts, or 403 (no field: the id is no district)."""
    if who.kind == "coordinator" and record.get("district") not in who.districts:
        raise forbidden(f"this {what} is of a district this coordinator does not cover")


def check_volunteers(who: Principal, kind: str, what: str) -> None:
    """A coordinator runs volunteers: a team or member of a police or security agency (its
    agency's `kind`) is refused it, 403 naming the kind (no field: the id is none). An
    officer's record given a device would receive police orders, with the caller's phone and
    name, and answer for a police team; a guard's, a company's; their removal, check-out,
    shift plan and points are their agency's business, through the admin."""
    if who.kind == "coordinator" and kind != "volunteer":
        raise forbidden(f"this {what} is of a {kind or 'no longer known'} agency: a "
                        "coordinator acts on volunteer agencies' teams and members only; "
                        "police and security ones are the admin's")


async def agency_kind(redis: Redis, record: Mapping[str, str]) -> str:
    """The kind of the agency a team's or member's record names ("" if it is gone)."""
    agency = await roster_store.get(redis, "agencies", record.get("agency_id", ""))
    return (agency or {}).get("kind", "")


async def check_own_volunteers(redis: Redis, who: Principal, record: Mapping[str, str],
                               what: str) -> None:
    """A team's or member's record found (the 404 comes first): for a coordinator, of one of
    its districts (check_own), then of a volunteer agency (check_volunteers)."""
    if who.kind != "coordinator":
        return
    check_own(who, record, what)
    check_volunteers(who, await agency_kind(redis, record), what)


async def check_own_record(redis: Redis, who: Principal, entity: str, entity_id: str,
                           what: str) -> None:
    """For a coordinator, before a route that finds its team or member itself: 404 for no
    such object, 403 for one of another district, then for one of a police or security
    agency. Nothing asked for anyone else. Ids are global and an import refuses one of
    another district: an object's district, read here, holds for the route's own write (but
    for an object removed and imported into another district between the two); so does its
    agency's kind, but for an admin's import moving it to another kind between the two."""
    if who.kind != "coordinator":
        return
    record = await roster_store.get(redis, entity, entity_id)
    if record is None:
        raise not_found(what)
    await check_own_volunteers(redis, who, record, what)


async def require_district(redis: Redis, district: str) -> None:
    """422 naming `district` when the roster holds no such district (a misspelling, or one
    never imported), as intake's keys and dispatch's desks are refused for one: a read of it
    answered empty, "nobody planned" for a typo. A district of the roster with nothing in
    it yet is answered empty. Called in the route, once the caller is known to be the admin:
    the refusal names the roster's districts."""
    if not await roster_store.is_district(redis, district):
        raise unknown_district("district", await roster_store.districts(redis))


MAX_POINTS_OFFSET = 1_000_000  # far past the history a member has kept


async def _points_page(
    # bounded: Redis refuses an LRANGE index past a signed 64-bit number
    offset: Annotated[int, Query(ge=0, le=MAX_POINTS_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(
        ge=1, le=MAX_POINTS_OFFSET ** 2, description="the `next` of the page before: "
        "the entries older than those it showed, however many came since")] = None,
) -> tuple[int, int, int | None]:
    """The page of a member's points asked for: (offset, limit, before). Checked here, not
    in the route: a dependency runs before the route refuses a token of the wrong kind, so
    a page asked for wrongly is a 422 first, as a wrong field is (DESIGN's order)."""
    if before is not None and offset:
        raise ApiError(422, "invalid_field", "give before or offset, not both", "before")
    return offset, limit, before


PointsPage = Annotated[tuple[int, int, int | None], Depends(_points_page)]
