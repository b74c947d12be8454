"""Device routes (`/v1/me/*`, the device token's own member and team): shifts, status,
positions, points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from faststream.redis import RedisBroker
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from shared.events import new_id, utcnow
from shared.http import (
    ApiError,
    InputFirstRoute,
    Principal,
    bearer_token,
    conflict,
    not_found,
    unauthorized,
)

from ..config import Settings
from ..domain import points, status
from ..domain.positions import PositionIn
from ..store import points as points_store
from ..store import roster as roster_store
from ..store import teams as teams_store
from ..store.devices import DeviceIdentity, token_hash
from ..store.teams import Applied, Decision, PositionWriter, TeamView
from ..store.tx import Contended
from . import views
from .deps import Device, PointsPage
from .positions import accept_position, checked_fix


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: status.DeviceStatus


def build_router(
    *, settings: Settings, redis: Redis, broker: RedisBroker, positions: PositionWriter
) -> APIRouter:
    router = APIRouter(prefix="/v1/me", route_class=InputFirstRoute)
    ledger_ttl_s = points_store.ledger_ttl(settings.retention_days)
    check_in_limit = settings.check_in_limit()

    async def change(who: Principal, decide: Callable[[TeamView], Decision]) -> Applied:
        try:
            applied = await teams_store.transition(redis, team_id=who.team_id or "",
                                                   decide=decide, now=utcnow(),
                                                   ledger_ttl_s=ledger_ttl_s,
                                                   member_id=who.member_id or "",
                                                   check_ins=check_in_limit)
        except status.Refused as exc:
            raise conflict(exc.message) from exc
        except Contended as exc:
            raise ApiError(503, "unavailable", "the team changed meanwhile; retry") from exc
        if applied is None:
            raise not_found("team")
        return applied

    def patrol_points(view: TeamView, outcome: status.Outcome) -> tuple[points.LedgerEntry, ...]:
        return teams_store.patrol_ledger(view, outcome, max_hours=settings.max_patrol_hours)

    def answer(who: Principal, applied: Applied) -> dict[str, Any]:
        out = views.state(applied.before.team["id"], applied.decision.state)
        out["checked_in_here"] = here(who, applied.decision.state)
        earned = [e.points for e in applied.decision.ledger if e.member_id == who.member_id]
        if earned:
            out["points_awarded"] = sum(earned)
        return out

    def here(who: Principal, state: status.TeamState) -> bool:
        """Whether the asking device is the member's on the shift (its fixes move the team):
        what the member's page decides by, not the member's `checked_in` alone."""
        return status.on_shift_with(state, member_id=who.member_id or "",
                                    device_id=who.device_id or "")

    @router.get("", summary="The device's member, team and status")
    async def me(who: Device) -> dict[str, Any]:
        team_id = who.team_id or ""
        member = await roster_store.get(redis, "members", who.member_id or "")
        view = await teams_store.load_view(redis, team_id)
        if member is None or view is None:
            raise not_found("member")
        # As the team stands now: a check-in that ran out is over, whether or not the sweep
        # has come by yet (a read writes nothing).
        state = status.expire_check_ins(view.state, now=utcnow(), limit=check_in_limit).state
        joined = state.shift_members.get(who.member_id or "")
        return {
            "device_id": who.device_id,
            "member": views.member(member),
            "team": {**views.team(view.team), "agency_kind": view.agency.get("kind")},
            "state": views.state(team_id, state),
            "checked_in": joined is not None,
            "checked_in_at": joined.isoformat() if joined is not None else None,
            "checked_in_here": here(who, state),
            "position": await teams_store.latest_position(redis, team_id),
        }

    @router.post("/shift/start", summary="Check in: the team goes on shift, available; the "
                 "device's fixes move it (checked in already: this device's, from now)")
    async def shift_start(who: Device) -> dict[str, Any]:
        now, shift_id = utcnow(), new_id("shf")

        def decide(view: TeamView) -> Decision:
            outcome = status.start_shift(view.state, member_id=who.member_id or "", now=now,
                                         shift_id=shift_id, device_id=who.device_id)
            return Decision(outcome.state)

        return answer(who, await change(who, decide))

    @router.post("/shift/end", summary="Check out: the member leaves the team's shift; the "
                 "last one out ends it (409 for the last while the team holds an open order)")
    async def shift_end(who: Device) -> dict[str, Any]:
        now, member_id = utcnow(), who.member_id or ""
        was_on = False

        def decide(view: TeamView) -> Decision:
            nonlocal was_on  # of the attempt that is written (a contended one decides again)
            was_on = member_id in view.state.shift_members
            outcome = status.check_out(view.state, member_id=member_id, now=now)
            return Decision(outcome.state, ledger=patrol_points(view, outcome))

        out = answer(who, await change(who, decide))
        # What the member's page tells them: whether this ended their stint (false: they
        # were not on the shift: a retry, a check-in that had run out), and, by the state
        # (`on_shift`, `shift_member_ids`), whether the team's shift goes on without them.
        out["checked_out"] = was_on
        return out

    @router.put("/status", summary="Set the team's status: available, busy or off_duty")
    async def set_status(body: StatusIn, who: Device) -> dict[str, Any]:
        now, shift_id = utcnow(), new_id("shf")

        def decide(view: TeamView) -> Decision:
            outcome = status.set_status(view.state, body.status, member_id=who.member_id or "",
                                        now=now, shift_id=shift_id, device_id=who.device_id)
            return Decision(outcome.state, ledger=patrol_points(view, outcome))

        return answer(who, await change(who, decide))

    async def settled_fix(body: PositionIn) -> PositionIn:
        """The fix, once the settings' limits take it: checked as a dependency, which runs
        before the route refuses a token of the wrong kind, so their 422 comes before that
        403 (DESIGN's order), as the fast path answers."""
        checked_fix(body, now=utcnow(), settings=settings)
        return body

    @router.put("/position", summary="The team's position fix (the heaviest traffic)")
    async def put_position(who: Device, request: Request,
                           body: PositionIn = Depends(settled_fix)) -> dict[str, Any]:
        # Answered by api.positions.PositionFastPath before routing; this route documents
        # the path and answers the same way should a request ever reach it.
        identity = DeviceIdentity(
            device_id=who.device_id or "", member_id=who.member_id or "",
            member_name=who.extra.get("member_name", ""), team_id=who.team_id or "",
            agency_id=who.agency_id or "", agency_kind=who.agency_kind or "",
            district=who.extra["district"])
        result, out = await accept_position(
            body, identity, token=token_hash(bearer_token(request.scope) or ""),
            positions=positions, settings=settings)
        if result == teams_store.POSITION_NOT_CURRENT:
            raise unauthorized("unknown or revoked token")
        return out

    @router.get("/points", summary="The member's points balance and history (the latest "
                f"{points_store.HISTORY_KEPT:,} entries), newest first")
    async def my_points(who: Device, page: PointsPage) -> dict[str, Any]:
        offset, limit, before = page
        member_id = who.member_id or ""
        found = await points_store.history_page(
            redis, member_id, before=before, offset=offset, limit=limit)
        return {"member_id": member_id, "balance": found.balance, "history": found.history,
                "count": found.count, "next": found.next}

    return router
