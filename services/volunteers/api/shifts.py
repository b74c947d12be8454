"""Shift plan routes (admin, the district's coordinator): a team's plan, the shifts worked on
a date, and those worked now with whether each team has checked in (dispatch asks it for the
command room)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis

from shared import audit
from shared.events import utcnow
from shared.http import InputFirstRoute, Principal, not_found
from shared.timezones import CalendarDate, parse_timezone

from ..config import Settings
from ..domain.shifts import OFF, ShiftPlan, shifts_at, shifts_during
from ..domain.status import expire_check_ins
from ..store import roster as roster_store
from ..store import shifts as shifts_store
from ..store import teams as teams_store
from ..store.imports import agency_kinds
from .deps import (
    AdminOrCoordinator,
    IdPath,
    Reader,
    check_district,
    check_own_record,
    require_district,
)


class ShiftPlanIn(ShiftPlan):
    """A plan as the admin sends it. The rotation is checked against the shifts here, as a
    check of `rotation`: the plan's own model-level check (still run) names no field, so a
    request would hear that its body is not an object."""

    @field_validator("rotation")
    @classmethod
    def _rotation_names_shifts(cls, value: list[str | None],
                               info: ValidationInfo) -> list[str | None]:
        shifts = info.data.get("shifts")  # absent when the shifts were wrong: that error stands
        if shifts is not None and any(e is not None and e != OFF and e not in shifts
                                      for e in value):
            raise PydanticCustomError(
                "unknown_shift", "must name a shift of the plan, 'off' or null on every day")
        return value


def volunteers_or_not_asked(who: Principal, kind: str) -> bool:
    """Whether a team of an agency of `kind` is in `who`'s shifts: a coordinator's are its
    volunteer teams (whether a police patrol or a guard post is checked in now, and who of
    it, are the command room's: dispatch shows each desk its own); everyone's for the admin
    and the services."""
    return who.kind != "coordinator" or kind == "volunteer"


def build_router(*, settings: Settings, redis: Redis) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)
    default_tz = parse_timezone(settings.timezone)
    check_in_limit = settings.check_in_limit()

    @router.put("/teams/{team_id}/shift-plan", summary="Set a team's shift plan (admin, its "
                "district's coordinator)")
    async def put_plan(
        team_id: IdPath, plan: ShiftPlanIn, who: AdminOrCoordinator
    ) -> dict[str, Any]:
        await check_own_record(redis, who, "teams", team_id, "team")
        if not await shifts_store.put_plan(redis, team_id=team_id, plan=plan):
            raise not_found("team")
        await audit.record(redis, "volunteers", who, "shift_plan.set", team_id)
        return {"team_id": team_id, **plan.model_dump(mode="json")}

    @router.get("/teams/{team_id}/shift-plan", summary="A team's shift plan (admin, its "
                "district's coordinator)")
    async def get_plan(team_id: IdPath, who: AdminOrCoordinator) -> dict[str, Any]:
        await check_own_record(redis, who, "teams", team_id, "team")
        plan = await shifts_store.get_plan(redis, team_id)
        if plan is None:
            raise not_found("shift plan")
        return {"team_id": team_id, **plan.model_dump(mode="json")}

    @router.get("/shifts", summary="The shifts worked on a date (also those begun the day "
                "before and running into it), their teams and members (admin, the district's "
                "coordinator)")
    async def planned(
        who: AdminOrCoordinator,
        district: Annotated[str, Query(min_length=1, max_length=64)],
        day: Annotated[CalendarDate, Query(alias="date", ge=date(1970, 1, 1),
                                           le=date(9998, 12, 31),
                                           description="YYYY-MM-DD, a day on the "
                                           "district's clock (TIMEZONE)")],
    ) -> dict[str, Any]:
        check_district(who, district)
        await require_district(redis, district)  # a typo is not "nobody was planned"
        plans = await shifts_store.plans_of(redis, district)
        # The date on the district's clock: a night shift begun the evening before is on the
        # street in its first hours, and the commander asking then for today's must see it.
        shifts = {team_id: found for team_id, plan in plans.items()
                  if (found := shifts_during(plan, day, day_tz=default_tz,
                                             default_tz=default_tz))}
        # A city plans thousands of teams: their records in a few round trips, not four each.
        team_ids = sorted(shifts)
        states = await teams_store.team_states(redis, team_ids)
        found = await roster_store.teams_with_members(redis, team_ids)
        kinds = await agency_kinds(redis, {team["agency_id"] for team, _ in found if team})
        now = utcnow()
        teams: list[dict[str, Any]] = []
        for team_id, (team, members), stored in zip(team_ids, found, states, strict=True):
            # a team gone from the roster, or imported into another district since its plan
            # was filed under this one: none of this district's (as in worked_now below)
            if not team or team.get("district") != district:
                continue
            if not volunteers_or_not_asked(who, kinds.get(team["agency_id"], "")):
                continue
            # As the team stands now (GET /v1/teams/{id}): a check-in that ran out is over,
            # whether or not the sweep has ended it yet. A team may be on its shift with
            # nobody checked in (an order holds it): who is in is said apart.
            state = expire_check_ins(stored, now=now, limit=check_in_limit).state
            joined = state.shift_members
            teams.extend({  # a team on two of the day's shifts: once for each
                "team_id": team_id, "team_name": team["name"], "agency_id": team["agency_id"],
                "shift": shift.shift, "start": shift.start.isoformat(),
                "end": shift.end.isoformat(), "status": state.status, "on_shift": state.on_shift,
                "checked_in": bool(joined),
                "checked_in_at": min(joined.values()).isoformat() if joined else None,
                "members": [{"member_id": m["id"], "name": m["name"], "role": m["role"],
                             "checked_in": m["id"] in joined} for m in members],
            } for shift in shifts[team_id])
        # by the moment each starts: a plan on another clock writes another offset
        teams.sort(key=lambda t: (datetime.fromisoformat(t["start"]), t["team_id"]))
        return {"district": district, "date": day.isoformat(), "teams": teams}

    @router.get("/shifts/now", summary="The shifts being worked now in a district, each "
                "team planned on them with whether anyone of it has checked in (admin, "
                "services, the district's coordinator; dispatch asks it for the command "
                "room's console)")
    async def worked_now(
        who: Reader, district: Annotated[str, Query(min_length=1, max_length=64)],
    ) -> dict[str, Any]:
        check_district(who, district)
        await require_district(redis, district)
        now = utcnow()
        plans = await shifts_store.plans_of(redis, district)
        # An instant, not a day: the same on volunteers', dispatch's and the desk's clocks.
        shifts = {team_id: found for team_id, plan in plans.items()
                  if (found := shifts_at(plan, now, default_tz=default_tz))}
        team_ids = sorted(shifts)
        found_teams = await roster_store.records(redis, "teams", team_ids)
        states = await teams_store.team_states(redis, team_ids)
        agency_ids = sorted({team["agency_id"] for team in found_teams if team})
        agencies = dict(zip(agency_ids, await roster_store.records(redis, "agencies", agency_ids),
                            strict=True))
        teams: list[dict[str, Any]] = []
        for team_id, team, state in zip(team_ids, found_teams, states, strict=True):
            # a team gone from the roster, or imported into another district since its plan
            # was set: none of this district's (a desk sees its own districts' teams only)
            if not team or team.get("district") != district:
                continue
            agency = agencies.get(team["agency_id"]) or {}
            if not volunteers_or_not_asked(who, agency.get("kind", "")):
                continue
            # a check-in that ran out (a dead phone, a forgotten check-out) is nobody in,
            # whether or not the sweep has ended it yet (as GET /v1/me says it)
            joined = expire_check_ins(state, now=now, limit=check_in_limit).state.shift_members
            teams.extend({
                "team_id": team_id, "team_name": team["name"], "agency_id": team["agency_id"],
                "agency_name": agency.get("name"), "agency_kind": agency.get("kind"),
                "shift": shift.shift, "start": shift.start.isoformat(),
                "end": shift.end.isoformat(), "checked_in": bool(joined),
                "checked_in_at": min(joined.values()).isoformat() if joined else None,
            } for shift in shifts[team_id])
        teams.sort(key=lambda t: (datetime.fromisoformat(t["start"]), t["team_id"]))
        return {"district": district, "at": now.isoformat(), "teams": teams}

    return router
