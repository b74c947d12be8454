"""Volunteer coordinators' tokens (admin): made for some districts of the roster, shown once,
listed without them, revoked at once."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from shared import audit
from shared.districts import check_known_districts
from shared.events import DistrictName, utcnow
from shared.http import InputFirstRoute, Principal, not_found, when_not_answered

from ..store import coordinators as coordinators_store
from ..store import roster as roster_store
from ..store.coordinators import CoordinatorIdentity
from .deps import Admin, Coordinator, IdPath

log = logging.getLogger(__name__)


class CoordinatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100,
                      description="who holds it (the community-policing officer), for the admin's "
                      "list; never logged nor audited")
    districts: list[DistrictName] = Field(
        min_length=1, max_length=64, description="the districts it coordinates, of the roster "
        "(GET /v1/districts)")


def principal_of(identity: CoordinatorIdentity) -> Principal:
    return Principal(kind="coordinator", subject=identity.coordinator_id,
                     districts=identity.districts)


def build_router(*, redis: Redis, revoked_kept_s: int) -> APIRouter:
    """`revoked_kept_s`: how long a revoked coordinator's record (its name) stays, for who
    reads the audit trail's `coordinator:<id>` (KPI_DAYS, as dispatch keeps a revoked
    dispatcher's name)."""
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)

    @router.post("/coordinators", status_code=201,
                 summary="Make a volunteer coordinator's token; shown once (admin)",
                 description="For districts of the roster only (422 naming `districts.<i>` of "
                 "one it does not hold). The token opens, for those districts only and their "
                 "volunteers only, the roster's import and reads, members' removal, devices, "
                 "check-outs by hand, shift plans, shifts and points at volunteers (police "
                 "and security rows stay the admin's); nothing at the other services.")
    @when_not_answered("asking again makes another token; one the first request may have "
                       "made was never shown: revoke it (GET /v1/coordinators lists it)")
    async def create_coordinator(body: CoordinatorIn, who: Admin) -> dict[str, str]:
        check_known_districts(body.districts, await roster_store.districts(redis))
        coordinator_id, token = await coordinators_store.create_coordinator(
            redis, name=body.name, districts=body.districts, now=utcnow())
        await audit.record(redis, "volunteers", who, "coordinator.create", coordinator_id,
                           f"districts {','.join(sorted(set(body.districts)))}")
        log.info("coordinator %s made", coordinator_id)
        return {"coordinator_id": coordinator_id, "token": token}

    @router.get("/coordinators", summary="Volunteer coordinators, revoked ones with "
                "`revoked_at` (admin); never a token")
    async def coordinators(_: Admin) -> dict[str, Any]:
        rows = await coordinators_store.list_coordinators(redis)
        return {"coordinators": rows, "count": len(rows)}

    @router.get("/coordinators/me", summary="Who this coordinator's token is: its id, name "
                "and districts (the coordinator's own)",
                description="What a coordinator's page or script asks first: the districts "
                "its lists and imports must name. Never the token.")
    async def me(who: Coordinator) -> dict[str, Any]:
        found = await coordinators_store.get_coordinator(redis, who.subject)
        if found is None:  # revoked and gone since its token was resolved
            raise not_found("coordinator")
        return {key: found[key] for key in ("coordinator_id", "name", "districts",
                                            "created_at")}

    @router.delete("/coordinators/{coordinator_id}", status_code=204,
                   summary="Revoke a coordinator's token at once (admin)")
    async def revoke_coordinator(coordinator_id: IdPath, who: Admin) -> Response:
        revoked = await coordinators_store.revoke_coordinator(
            redis, coordinator_id, now=utcnow(), kept_s=revoked_kept_s)
        if revoked.result == "not_found":
            raise not_found("coordinator")
        if revoked.result == "revoked":  # asked again: done already, said once
            await audit.record(redis, "volunteers", who, "coordinator.revoke", coordinator_id,
                               f"districts {','.join(revoked.districts)}")
            # also here: a restore of Redis takes the audit trail back with the revocation
            log.info("coordinator %s revoked", coordinator_id)
        return Response(status_code=204)

    return router
