"""Notify's HTTP routes: order responses, delivery records, a device's channels, the member's page."""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis

from shared.events import EvidenceRecords, TeamNote
from shared.events import Response as ResponseKind
from shared.http import (
    ApiError,
    InputFirstRoute,
    Principal,
    not_found,
    page_headers,
    page_scripts,
    require,
    unauthorized,
)

from . import store
from .channels.subscription import Subscription, endpoint_problem
from .config import Settings
from .domain.orders import OrderId
from .domain.phones import PHONE_RULE, e164
from .page import DEVICE_PAGE, SERVICE_WORKER
from .service import Orders

log = logging.getLogger(__name__)

PUBLIC_PATHS = ("/device", "/device/sw.js")
DeviceCaller = Annotated[Principal, Depends(require("device"))]
# Not an order id (e.g. `<id>:attempts`): 422 naming `order_id`, before any key is read.
OrderIdPath = Annotated[OrderId, Path(description="the order's id, as dispatch made it")]


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    response: ResponseKind
    note: TeamNote = None
    evidence: EvidenceRecords = None


class WebPushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscription: Subscription


class SmsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(max_length=32, description="a mobile number: 13800138000, "
                       "+86 138 0013 8000, +85291234567; kept in E.164, as the gateway gets it")

    @field_validator("phone")
    @classmethod
    def _mobile(cls, value: str) -> str:
        number = e164(value)
        if number is None:
            raise PydanticCustomError("phone", "must be " + PHONE_RULE)
        return number


DELIVERIES_DESCRIPTION = (
    "The order as notify holds it (`state`, `answered`, `withdrawn`; `version`: how often "
    "the command room's amendments raised it here, 0 as issued; `fallback_step` and "
    "`fallback_due_at`: the chain's next step and when, null once none is due) and what "
    "became of it on the phones. `attempts` (the last "
    f"{store.ATTEMPTS_KEPT}, oldest first): each `{{at, channel, outcome, device_id?, "
    "member_id?, detail?}}`. On `websocket`: `fanned_out` (a replica with a socket of the "
    "team had it) or `no_socket`, then per socket `sent` or `failed`, and `received` (a "
    "phone confirmed it; `detail` says one that came after the order ended). On a fallback "
    "channel (`webpush`, `sms`): the order's own message `sent`, `failed` (tried again while "
    "it can be acknowledged), `gone` (the phone's subscription or number is dead, "
    "forgotten), `no_recipient` (no phone of the team reachable on it) or `too_late` (its "
    "acknowledge-by had passed); an amended order sent again as an update, "
    "`update_sent`, `update_failed` or `update_gone`; the message taking a withdrawn or "
    "declined order back (a Web Push replacing it, an SMS saying not to go), "
    "`withdrawal_sent`, `withdrawal_failed` or `withdrawal_gone`. `messages`: each fallback "
    "message as it stands, one per phone and message, by step: `message` (`order`, "
    "`update` or `withdrawal`), `step` and `channel` (null: a step of a chain configured "
    "otherwise since), `device_id`, `version` (the order's version the message carried: "
    "the update that carried the raised order; null for a withdrawal), `state` (`sent`, "
    "`sending`, `failed`: to be tried again, `done`: not tried again: refused, its address "
    "gone, or given up) and `tries`. "
    "`received`: each device's receipt `{member_id, channel, at}`. `responses`: the team's "
    "answers `{at, response, member_id, device_id}`, oldest first.")


def build_router(*, settings: Settings, redis: Redis, orders: Orders,
                 webpush_key: str | None, sms_enabled: bool) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)
    # the fallback chain's channels by step, as main.build_channels makes it: those of
    # FALLBACK_CHANNELS that are configured (a message's mark names its step)
    chain = [name for name in settings.channel_order
             if (name == "webpush" and webpush_key is not None)
             or (name == "sms" and sms_enabled)]

    @router.post("/orders/{order_id}/responses",
                 summary="Answer an order (device token of a member of the order's team)")
    async def respond(
        order_id: OrderIdPath, body: ResponseIn, who: DeviceCaller
    ) -> dict[str, Any]:
        return await orders.respond(order_id=order_id, who=who, response=body.response,
                                    note=body.note, evidence=body.evidence)

    @router.get("/orders/{order_id}", summary="An order's state (its team's devices, admin)")
    async def get_order(
        order_id: OrderIdPath, who: Annotated[Principal, Depends(require("device", "admin"))]
    ) -> dict[str, Any]:
        return await orders.view(order_id=order_id, who=who)

    @router.get("/orders/{order_id}/deliveries",
                summary="Every delivery attempt, receipt and response of an order (admin)",
                description=DELIVERIES_DESCRIPTION)
    async def deliveries(
        order_id: OrderIdPath, _: Annotated[Principal, Depends(require("admin"))]
    ) -> dict[str, Any]:
        record = await store.get_order(redis, order_id)
        if record is None:
            raise not_found("order")
        due = await store.fallback_due_at(redis, order_id)
        messages = [{**m, "channel": chain[m["step"]] if m["step"] < len(chain) else None}
                    for m in await store.fallback_messages(redis, order_id)]
        return {
            "order_id": order_id,
            "incident_id": record.incident_id,
            "team_id": record.team_id,
            "state": record.state,
            "answered": record.answered,
            "withdrawn": record.withdrawn,
            "version": record.version,
            "fallback_step": record.fallback_step,
            "fallback_due_at": due,
            **await store.deliveries(redis, order_id),
            "messages": messages,
        }

    async def _touch(who: Principal) -> None:
        # A token checked before the member's move was applied here leaves the device on
        # the team it moved to (store.touch_device); the request itself goes on: the device
        # and its channels are still the member's, and its socket is closed to reconnect
        # to the new team by the move itself.
        await store.touch_device(
            redis, device_id=who.device_id or who.subject, member_id=who.member_id or "",
            team_id=who.team_id or "", agency_kind=who.agency_kind,
            district=who.districts[0] if who.districts else None, checked_at=who.checked_at,
        )

    @router.get("/devices/me", summary="This device and its delivery channels")
    async def me(who: DeviceCaller) -> dict[str, Any]:
        await _touch(who)
        record = await store.get_device(redis, who.device_id or who.subject)
        return {
            "device_id": who.device_id,
            "member_id": who.member_id,
            "member_name": who.extra.get("member_name"),
            "team_id": who.team_id,
            "webpush": {"enabled": webpush_key is not None, "public_key": webpush_key,
                        "subscribed": bool(record and record.webpush)},
            "sms": {"enabled": sms_enabled, "registered": bool(record and record.phone)},
            "fallback_after_s": settings.fallback_after_s,
            # where the page finds the member's other services (None: not offered)
            "services": {"intake": _base(settings.intake_public_url),
                         "volunteers": _base(settings.volunteers_public_url)},
        }

    async def _push_subscription(body: WebPushIn) -> WebPushIn:
        """The body, its endpoint checked: notify will POST to this URL, so only a push
        service's (see endpoint_problem). A dependency, not the route: it runs before a
        token of the wrong kind is refused, so a wrong endpoint is a 422 first (DESIGN's
        order); not the model, as the check reads a setting. No name is resolved here."""
        problem = endpoint_problem(body.subscription.endpoint,
                                   allow_private=settings.webpush_allow_private_endpoints)
        if problem is not None:
            raise ApiError(422, "invalid_field", f"subscription.endpoint {problem}",
                           "subscription.endpoint")
        return body

    @router.post("/devices/me/webpush", summary="Receive orders by Web Push while the page is closed")
    async def subscribe_webpush(who: DeviceCaller,
                                body: WebPushIn = Depends(_push_subscription)) -> dict[str, Any]:
        await _touch(who)
        if not await store.set_device_channel(redis, who.device_id or who.subject,
                                              field="webpush",
                                              value=json.dumps(body.subscription.stored())):
            raise unauthorized("this device was revoked")
        return {"subscribed": True, "enabled": webpush_key is not None}

    @router.delete("/devices/me/webpush", summary="Stop Web Push to this device")
    async def unsubscribe_webpush(who: DeviceCaller) -> dict[str, Any]:
        await store.set_device_channel(redis, who.device_id or who.subject, field="webpush",
                                       value=None)
        return {"subscribed": False}

    @router.post("/devices/me/sms", summary="Receive orders by SMS when nothing else reached")
    async def register_sms(body: SmsIn, who: DeviceCaller) -> dict[str, Any]:
        await _touch(who)
        if not await store.set_device_channel(redis, who.device_id or who.subject,
                                              field="phone", value=body.phone):
            raise unauthorized("this device was revoked")
        return {"registered": True, "enabled": sms_enabled}

    @router.delete("/devices/me/sms", summary="Stop SMS to this device")
    async def unregister_sms(who: DeviceCaller) -> dict[str, Any]:
        await store.set_device_channel(redis, who.device_id or who.subject, field="phone",
                                       value=None)
        return {"registered": False}

    return router


def build_page_router(settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False, route_class=InputFirstRoute)
    # The page may call notify, and intake and volunteers where they are configured (fetch()
    # only: its one socket is notify's).
    others = "".join(f" {origin}" for origin in sorted(
        {_origin(url) for url in (settings.intake_public_url, settings.volunteers_public_url)
         if url}))
    scripts = page_scripts(DEVICE_PAGE)  # its own script (by its hash) and the service worker's file

    @router.get("/device")
    async def device_page(request: Request) -> HTMLResponse:
        policy = (f"default-src 'self'; script-src {scripts} 'self'; "
                  "style-src 'unsafe-inline'; "
                  f"connect-src 'self'{_own_sockets(request)}{others}; img-src 'self' data:")
        return HTMLResponse(DEVICE_PAGE, headers={**page_headers(policy),
                                                  "Cache-Control": "no-store"})

    @router.get("/device/sw.js")
    async def service_worker() -> Response:
        return Response(SERVICE_WORKER, media_type="text/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    return router


# A Host header as a browser sends it: a name or an IPv4 address, and maybe a port.
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}(?::[0-9]{1,5})?\Z")


def _own_sockets(request: Request) -> str:
    """The page's own WebSocket sources (" ws://host wss://host"), for the host the page was
    asked for: its script opens the socket to `location.host`, which is the Host header the
    browser sent for the page. 'self' names them too, but not in the phones' older browsers
    (Safari before 15.4, older Android WebViews), and `ws: wss:` would let a script slipped
    into the page send the member's token and position to any host.
    Taken from the request, not from a setting: it is right by construction behind any
    address (a station's IP, a name, a TLS proxy that passes the Host on), where a public
    URL of notify set wrong would leave those phones without orders. A forged Host reaches
    only the answer to its own request (no-store: no cache keeps it); one that is not a
    plain host (`;`, spaces: a directive of its own) is named nowhere, and 'self' stays.
    Behind a proxy that sends its upstream's name as Host (nginx's default) the phone's
    host is the first of X-Forwarded-Host (Caddy, Traefik, nginx told to), named too: else
    those browsers would refuse the socket, and the member get no orders; forged, it names
    one more host in the answer to its own request only, as a forged Host does."""
    forwarded = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    hosts = dict.fromkeys(h for h in (request.headers.get("host", ""), forwarded)
                          if _HOST.match(h))
    return "".join(f" ws://{host} wss://{host}" for host in hosts)


def _base(url: str | None) -> str | None:
    return url.rstrip("/") if url else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
