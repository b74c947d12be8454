"""Device routes: enrolment and revocation (admin, the member's district's coordinator), token
introspection (the device's token)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from faststream.redis import RedisBroker
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from starlette.types import Scope

from shared import audit
from shared.events import utcnow
from shared.http import ApiError, InputFirstRoute, Principal, not_found, when_not_answered

from ..store import devices as devices_store
from ..store import roster as roster_store
from ..store.coordinators import TOKEN_PREFIX as COORDINATOR_PREFIX
from ..store.coordinators import CoordinatorTokens
from ..store.devices import TOKEN_PREFIX, TokenResolver
from ..store.tx import Contended
from . import coordinators as coordinators_api
from .deps import AdminOrCoordinator, Device, IdPath, check_own_record, check_own_volunteers
from .stints import Stints

log = logging.getLogger(__name__)


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label: str | None = Field(default=None, max_length=100, description="e.g. the phone's model")


def principal_of(identity: devices_store.DeviceIdentity) -> Principal:
    return Principal(
        kind="device", subject=identity.device_id, districts=(identity.district,),
        member_id=identity.member_id, team_id=identity.team_id, agency_id=identity.agency_id,
        agency_kind=identity.agency_kind, device_id=identity.device_id,
        extra={"member_name": identity.member_name, "district": identity.district},
    )


def device_resolver(tokens: TokenResolver,
                    coordinators: CoordinatorTokens):  # -> shared.http.TokenResolver
    """The tokens volunteers issues, told apart by their prefix: members' devices and the
    volunteer coordinators'."""
    async def resolve(token: str) -> Principal | None:
        if token.startswith(COORDINATOR_PREFIX):
            coordinator = await coordinators.resolve(token)
            return coordinators_api.principal_of(coordinator) if coordinator else None
        identity = await tokens.resolve(token)
        return principal_of(identity) if identity else None

    return resolve


INTROSPECT_PATH = "/v1/devices/introspect"


def asked_for_a_caller(scope: Scope, token: str | None) -> bool:
    """A device token notify or intake asks about for a caller of theirs: a failure is
    counted there, by that caller's address (shared.http.AuthFailures). Counted here, by
    notify's and intake's own address, a few callers' failures would lock notify and intake
    out, and the district's phones with them. (ADMIN_TOKEN may not look like a device
    token: guessing it here would not be counted.)"""
    return (scope["path"] == INTROSPECT_PATH and token is not None
            and token.startswith(TOKEN_PREFIX))


def build_router(*, redis: Redis, broker: RedisBroker, revoked_kept_s: int,
                 stints: Stints) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)

    @router.post("/members/{member_id}/devices", status_code=201,
                 summary="Enrol a device; its token is shown once (admin, the member's "
                 "district's coordinator)")
    @when_not_answered("asking again enrols another device; one the first request may have "
                       "enrolled was never shown: revoke it (GET /v1/members/{id}/devices "
                       "lists it)")
    async def create_device(
        member_id: IdPath, who: AdminOrCoordinator, body: DeviceIn | None = None,
    ) -> dict[str, str]:
        await check_own_record(redis, who, "members", member_id, "member")
        created = await devices_store.create_device(
            redis, member_id=member_id, now=utcnow(), label=body.label if body else None)
        if created is None:
            raise not_found("member")
        device_id, token = created
        await audit.record(redis, "volunteers", who, "device.issue", device_id,
                           f"member {member_id}")
        log.info("device %s enrolled for member %s", device_id, member_id)
        return {"device_id": device_id, "token": token}

    @router.get("/members/{member_id}/devices", summary="A member's active devices (admin, "
                "the member's district's coordinator)")
    async def list_devices(
        member_id: IdPath, who: AdminOrCoordinator
    ) -> list[dict[str, Any]]:
        member = await roster_store.get(redis, "members", member_id)
        if not member:
            raise not_found("member")
        await check_own_volunteers(redis, who, member, "member")
        return await devices_store.devices_of(redis, member_id)

    @router.delete("/members/{member_id}/devices/{device_id}", status_code=204,
                   summary="Revoke a device's token at once, everywhere; the member's "
                   "stint ends if it is the device they are on the shift with (admin, the "
                   "member's district's coordinator)")
    async def revoke_device(
        member_id: IdPath, device_id: IdPath, who: AdminOrCoordinator
    ) -> Response:
        # the member's, for a coordinator (a removed member's devices went with them: 404)
        await check_own_record(redis, who, "members", member_id, "member")
        result = await devices_store.revoke_device(
            redis, broker=broker, member_id=member_id, device_id=device_id, now=utcnow(),
            kept_s=revoked_kept_s)
        if result == "not_found":
            raise not_found("device")
        # The device the member is on the shift with (a phone lost mid-shift): their stint
        # ends as their check-out would, or it ran on until it ran out, paid to the cap, the
        # team on shift with nobody able to answer. Also when asked again: the first asking
        # may have revoked the token and lost its answer before it got here.
        try:
            ended = await stints.device_revoked(member_id=member_id, device_id=device_id)
        except Contended as exc:
            raise ApiError(503, "unavailable", "the device is revoked; ending the member's "
                           "stint met the team changing meanwhile: retry") from exc
        if result == "revoked" or ended:
            await audit.record(redis, "volunteers", who, "device.revoke", device_id,
                               f"member {member_id}" + ("; their stint ended" if ended else ""))
            log.info("device %s of member %s revoked", device_id, member_id)
        return Response(status_code=204)

    @router.get(INTROSPECT_PATH.removeprefix("/v1"),
                summary="Who a device token belongs to (for notify); 401 if unknown or revoked")
    async def introspect(who: Device) -> dict[str, str]:
        return {
            "device_id": who.device_id or who.subject,
            "member_id": who.member_id or "",
            "member_name": who.extra.get("member_name", ""),
            "team_id": who.team_id or "",
            "agency_id": who.agency_id or "",
            "agency_kind": who.agency_kind or "",
            "district": who.extra.get("district", ""),
        }

    return router
