"""Points and zone routes: the district leaderboard, a coordinator's rewards and penalties,
a district's zones, point-to-zone lookup."""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis

from shared import audit
from shared.events import utcnow
from shared.http import ApiError, InputFirstRoute, conflict, not_found

from ..domain import points
from ..store import points as points_store
from ..store import roster as roster_store
from ..store.zones import ZoneLookup
from .deps import (
    AdminOrCoordinator,
    IdPath,
    PointsPage,
    Reader,
    check_district,
    check_own,
    check_own_volunteers,
    check_volunteers,
    require_district,
)

ADJUSTMENT_KEY = r"^[A-Za-z0-9_.:-]{1,64}$"
# An adjustment sent without a key, sent again as it was (the same member, amount and reason)
# within this, is its retry (the reply was lost on the network): recorded once. Later, it is
# the coordinator's own second reward or penalty.
ADJUSTMENT_RETRY_S = 600


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    points: int = Field(ge=-points.MAX_ADJUSTMENT, le=points.MAX_ADJUSTMENT,
                        description="a reward (> 0) or a penalty (< 0), never 0")
    note: str = Field(min_length=1, max_length=200,
                      description="the rule or the reason, which the member reads")
    adjustment_id: str | None = Field(
        default=None, pattern=ADJUSTMENT_KEY,
        description="your key for it: the same key again records it once (or send it as "
        "the Idempotency-Key header). Without one, the same member, amount and note again "
        f"within {ADJUSTMENT_RETRY_S // 60} minutes is taken as a retry and recorded once")

    @field_validator("points")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        # Checked with the body, not in the route: the route runs after a token of the
        # wrong kind is refused, and DESIGN's order tells wrong input (422) first.
        if value == 0:
            raise PydanticCustomError("zero_points", "must not be 0")
        return value


class ZoneOut(BaseModel):
    zone_id: str
    name: str
    owner_agency_id: str = Field(description="the police station that owns the zone")
    polygon: list[tuple[float, float]] = Field(description="[lon, lat] pairs (WGS-84)")


class DistrictZones(BaseModel):
    district: str
    zones: list[ZoneOut]


FIRST_YEAR, LAST_YEAR = 1970, 9998


def month_period(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The instants a month `YYYY-MM` begins and ends on the district's clock (`tz`): in
    Asia/Shanghai, November begins at 16:00 UTC on 31 October. 422 naming `month` for a
    month that is none (2026-13)."""
    try:
        year, number = (int(part) for part in month.split("-"))
        if not FIRST_YEAR <= year <= LAST_YEAR:  # no award is older; the calendar ends
            raise ValueError(year)
        first = date(year, number, 1)
        after = date(year + number // 12, number % 12 + 1, 1)
    except ValueError as exc:
        raise ApiError(422, "invalid_field", f"month must be a month YYYY-MM (01 to 12, "
                       f"{FIRST_YEAR} to {LAST_YEAR})", "month") from exc
    return (datetime.combine(first, time(), tzinfo=tz),
            datetime.combine(after, time(), tzinfo=tz))


def build_router(*, redis: Redis, zones: ZoneLookup, ledger_ttl_s: int,
                 tz: tzinfo) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)

    @router.get("/points/leaderboard", summary="A district's volunteers by points, of all "
                "time or of one month (admin, its coordinator)")
    async def leaderboard(
        who: AdminOrCoordinator,
        district: Annotated[str, Query(min_length=1, max_length=64)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        month: Annotated[str | None, Query(
            pattern=r"^\d{4}-\d{2}$", description="YYYY-MM: the points earned in that "
            "month on the district's clock (TIMEZONE), for the monthly commendation; "
            "without it, every point of all time")] = None,
    ) -> dict[str, Any]:
        # checked before the district, as every wrong field is (DESIGN's order: 422 first)
        period = month_period(month, tz) if month is not None else None
        check_district(who, district)
        await require_district(redis, district)
        if period is None:
            return {"district": district,
                    "entries": await points_store.leaderboard(redis, district, limit=limit)}
        since, until = period
        return {"district": district, "month": month, "since": since.isoformat(),
                "until": until.isoformat(),
                "entries": await points_store.leaderboard_between(
                    redis, district, since=since, until=until, limit=limit,
                    late_s=ledger_ttl_s)}

    @router.post("/members/{member_id}/points", status_code=201,
                 summary="Reward or penalise a volunteer by hand, with the reason (admin, "
                 "their district's coordinator)")
    async def adjust(
        member_id: IdPath, body: AdjustmentIn, who: AdminOrCoordinator, response: Response,
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", pattern=ADJUSTMENT_KEY,
            description="the adjustment's key, as `adjustment_id` (the same, if both are "
            "sent)")] = None,
    ) -> dict[str, Any]:
        if idempotency_key and body.adjustment_id and idempotency_key != body.adjustment_id:
            raise ApiError(422, "invalid_field", "Idempotency-Key is not the body's "
                           "adjustment_id: send the key once, or the same in both",
                           "Idempotency-Key")
        found = await roster_store.member_and_kind(redis, member_id)
        if found is None:
            raise not_found("member")
        member, kind = found
        # 403 before the member's kind's 409: a coordinator's own district's volunteers only
        check_own(who, member, "member")
        check_volunteers(who, kind, "member")
        if kind != "volunteer":
            raise conflict("points are kept for volunteers only")
        key = body.adjustment_id or idempotency_key or await points_store.adjustment_key(
            redis, member_id=member_id, points=body.points, note=body.note,
            window_s=ADJUSTMENT_RETRY_S)
        entry = points.adjustment(
            adjustment_id=key, member_id=member_id,
            team_id=member["team_id"], district=member["district"], points=body.points,
            note=body.note, at=utcnow())
        (written,) = await points_store.award_each(redis, [entry], ledger_ttl_s=ledger_ttl_s)
        if written == points_store.NO_MEMBER:  # removed since it was read: nothing written
            raise not_found("member")
        if not written:
            there = await points_store.entry(redis, entry.entry_id) or {}
            if (there.get("member_id"), there.get("points"), there.get("note")) != (
                    member_id, body.points, body.note):
                # the key is not repeated (DESIGN: a message never echoes the body)
                raise conflict("this adjustment_id was used for another adjustment (another "
                               "member, amount or note); allowed: a new key")
            response.status_code = 200  # recorded already under that key: nothing added
            return {"entry": there, "recorded": False}
        # the reason stays in the ledger: the audit names the entry and the amount only
        await audit.record(redis, "volunteers", who, "points.adjust", member_id,
                           f"{entry.entry_id} {body.points:+d}")
        return {"entry": entry.model_dump(mode="json", exclude_none=True), "recorded": True}

    @router.get("/members/{member_id}/points",
                summary="A member's points balance and history, newest first (admin, their "
                "district's coordinator): what their own page shows, to answer a volunteer "
                "who disputes it")
    async def member_points(member_id: IdPath, who: AdminOrCoordinator,
                            page: PointsPage) -> dict[str, Any]:
        # The member calls the coordinator about their balance; the coordinator holds the
        # admin token, not the member's phone. The same page as GET /v1/me/points, with who
        # it is and the points of the entries no longer kept (HISTORY_KEPT): the balance is
        # `brought_forward` plus the kept entries' sum, so the two always add up.
        member = await roster_store.get(redis, "members", member_id)
        if member is None:
            raise not_found("member")
        await check_own_volunteers(redis, who, member, "member")
        offset, limit, before = page
        found = await points_store.history_page(
            redis, member_id, before=before, offset=offset, limit=limit, brought_forward=True)
        return {"member_id": member_id, "name": member["name"], "team_id": member["team_id"],
                "district": member["district"], "balance": found.balance,
                "brought_forward": found.brought_forward, "history": found.history,
                "count": found.count, "next": found.next}

    # The only GET /v1/zones: dispatch's zone projection (services/dispatch/zones.py) reads
    # this shape, a whole district in one answer; the roster's paginated lists leave zones out.
    @router.get("/zones", summary="A district's zones with their polygons and owning stations "
                "(admin, services, its coordinator; dispatch keeps a projection of them)",
                description="Every zone of the district in one answer, not paged. One zone: "
                "`GET /v1/zones/{zone_id}`.")
    async def district_zones(
        who: Reader, district: Annotated[str, Query(min_length=1, max_length=64)],
    ) -> DistrictZones:
        check_district(who, district)
        index = await zones.index(district)
        return DistrictZones(district=district, zones=[
            ZoneOut(zone_id=z.zone_id, name=z.name, owner_agency_id=z.owner_agency_id,
                    polygon=list(z.polygon)) for z in index.zones])

    @router.get("/zones/lookup", summary="The zone of a point, and its owning police station "
                "(admin, the district's coordinator)")
    async def zone_lookup(
        who: AdminOrCoordinator,
        district: Annotated[str, Query(min_length=1, max_length=64)],
        lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
        lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    ) -> dict[str, str]:
        check_district(who, district)
        await require_district(redis, district)  # not "no zone covers this point"
        index = await zones.index(district)
        zone = index.lookup(lat=lat, lon=lon)
        if zone is None:
            raise not_found("zone covering this point")
        return {"zone_id": zone.zone_id, "zone_name": zone.name,
                "owner_agency_id": zone.owner_agency_id}

    return router
