"""A member's stint ended for them (admin, the member's district's coordinator): their
check-out by hand (`POST /v1/members/{id}/check-out`, a member who lost their phone), and the
end a revocation of the device they are on the shift with makes (`Stints.device_revoked`,
called by the revocation)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from redis.asyncio import Redis

from shared import audit
from shared.events import utcnow
from shared.http import ApiError, InputFirstRoute, conflict, not_found

from ..config import Settings
from ..domain import status
from ..store import keys
from ..store import points as points_store
from ..store import roster as roster_store
from ..store import teams as teams_store
from ..store.teams import Applied, Decision, TeamView
from ..store.tx import Contended
from . import views
from .deps import AdminOrCoordinator, IdPath, check_own_record

Rule = Callable[[status.TeamState, datetime], status.Outcome]


class Stints:
    """Ends a member's stint on their team's shift by a `Rule` (a check-out, a revocation),
    through the team's transition: their patrol points to now, the team's state and its
    `unit.status` as a check-out writes them."""

    def __init__(self, *, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._max_hours = settings.max_patrol_hours
        self._ledger_ttl_s = points_store.ledger_ttl(settings.retention_days)
        self._limit = settings.check_in_limit()

    async def end(self, member_id: str, rule: Rule) -> tuple[Applied, bool] | None:
        """The change written and whether it ended the member's stint; None: no such
        member (or team). `status.Refused` when the rule refuses (nothing written)."""
        for _ in range(2):
            member = await roster_store.get(self._redis, "members", member_id)
            if member is None:
                return None
            try:
                return await self._end_on(member["team_id"], member_id, rule)
            except status.Refused:
                if await self._team_of(member_id) == member["team_id"]:
                    raise
                # an import moved them meanwhile: their stint is on the new team's shift
        raise Contended("the member moved between teams twice meanwhile")

    async def _end_on(self, team_id: str, member_id: str,
                      rule: Rule) -> tuple[Applied, bool] | None:
        now, ended = utcnow(), False

        def decide(view: TeamView) -> Decision:
            nonlocal ended  # of the attempt that is written
            outcome = rule(view.state, now)
            ended = (member_id in view.state.shift_members
                     and member_id not in outcome.state.shift_members)
            return Decision(outcome.state, ledger=teams_store.patrol_ledger(
                view, outcome, max_hours=self._max_hours))

        applied = await teams_store.transition(
            self._redis, team_id=team_id, decide=decide, now=now,
            ledger_ttl_s=self._ledger_ttl_s, member_id=member_id, check_ins=self._limit)
        return None if applied is None else (applied, ended)

    async def _team_of(self, member_id: str) -> str | None:
        return await self._redis.hget(keys.member(member_id), "team_id")

    async def device_revoked(self, *, member_id: str, device_id: str) -> bool:
        """The member's device was revoked: if it is the one they are on the shift with,
        their stint ends (`status.device_revoked`). Whether it ended one. Asked again (a
        revocation's answer lost after it revoked the token), it ends what the first left."""
        last = not await self._redis.scard(keys.member_devices(member_id))

        def rule(state: status.TeamState, now: datetime) -> status.Outcome:
            return status.device_revoked(state, member_id=member_id, device_id=device_id,
                                         now=now, last_device=last)

        done = await self.end(member_id, rule)
        return done is not None and done[1]


def build_router(*, redis: Redis, stints: Stints) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)

    @router.post("/members/{member_id}/check-out",
                 summary="Check a member out of their team's shift, as their own check-out "
                 "(admin, the member's district's coordinator: a member who lost their "
                 "phone)")
    async def check_out(member_id: IdPath, who: AdminOrCoordinator) -> dict[str, Any]:
        await check_own_record(redis, who, "members", member_id, "member")
        def rule(state: status.TeamState, now: datetime) -> status.Outcome:
            try:
                return status.check_out(state, member_id=member_id, now=now)
            except status.Refused as exc:
                raise status.Refused(
                    f"{member_id} is the last on the team's shift, which is {state.status} "
                    f"with open order {state.open_order}: their check-out would leave the "
                    "order with nobody; allowed: once the order is resolved, handed over, "
                    "declined or withdrawn (the command room can take it back or give it to "
                    "another team)") from exc

        try:
            done = await stints.end(member_id, rule)
        except status.Refused as exc:
            raise conflict(exc.message) from exc
        except Contended as exc:
            raise ApiError(503, "unavailable", "the team changed meanwhile; retry") from exc
        if done is None:
            raise not_found("member")
        applied, ended = done
        team_id = applied.before.team["id"]
        await audit.record(redis, "volunteers", who, "member.check_out", member_id,
                           f"team {team_id}: " + ("stint ended" if ended else "not on the shift"))
        out = views.state(team_id, applied.decision.state)
        out["checked_out"] = ended
        earned = [e.points for e in applied.decision.ledger if e.member_id == member_id]
        if earned:
            out["points_awarded"] = sum(earned)
        return out

    return router
