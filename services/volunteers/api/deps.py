"""Who may call: the callers' kinds as annotated dependencies (module level, so FastAPI can
resolve them from string annotations); the district a read names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from redis.asyncio import Redis

from shared.districts import unknown_district
from shared.http import ApiError, Principal, require

from ..store import roster as roster_store

# The roster's reads too: members' names and phones, every district's. Volunteers resolves
# no desk tokens; the command room sees its districts' teams through dispatch.
Admin = Annotated[Principal, Depends(require("admin"))]
Device = Annotated[Principal, Depends(require("device"))]
# What the other services read with their own key (shared.tokens.service_key): the roster's
# districts, a district's zones and shifts worked now, a team's view (who is on its shift),
# an agency (dispatch, before it makes an agency's desk token).
AdminOrService = Annotated[Principal, Depends(require("admin", "service"))]
IdPath = Annotated[str, Path(min_length=1, max_length=64)]


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
