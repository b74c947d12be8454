"""Notify as real uvicorn servers against the real Redis, with real WebSocket clients.

Volunteers, the SMS gateway and a push service are stood in for by small real HTTP servers
on loopback ports (no mocks): the volunteers stand-in answers device introspection from a
token table the test controls, and the roster's districts (intake's and dispatch's
integration tests: `roster_of`); the gateway records what it receives.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.redis import RedisBroker
from websockets.asyncio.client import ClientConnection, connect

from services.notify.config import Settings
from services.notify.main import create_app
from shared import streams
from shared.events import Location, OrderIssued, OrderWithdrawn, new_id
from shared.tokens import DEVICE_TOKEN_PREFIX
from tests.helpers import serving  # serving: notify's tests import it from here

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- volunteers stand-in ----------------------------------------------------------------------


@dataclass
class Member:
    token: str
    device_id: str
    member_id: str
    team_id: str
    agency_kind: str = "police"
    district: str = "d1"

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Volunteers:
    url: str = ""
    members: dict[str, Member] = field(default_factory=dict)
    calls: int = 0
    districts: set[str] = field(default_factory=set)  # whose roster was imported
    # the roster's agencies, by id: (district, kind); dispatch asks before an agency desk
    agencies: dict[str, tuple[str, str]] = field(default_factory=dict)

    def enrol(self, team_id: str, agency_kind: str = "police") -> Member:
        member = Member(token=f"{DEVICE_TOKEN_PREFIX}{secrets.token_urlsafe(16)}", device_id=new_id("dev"),
                        member_id=new_id("mem"), team_id=team_id, agency_kind=agency_kind)
        self.members[member.token] = member
        return member

    def revoke(self, member: Member) -> None:
        self.members.pop(member.token, None)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/devices/introspect")
        async def introspect(request: Request) -> Response:
            self.calls += 1
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            member = self.members.get(token) if scheme.lower() == "bearer" else None
            if member is None:
                return JSONResponse({"error": {"code": "unauthorized", "message": "no"}},
                                    status_code=401)
            return JSONResponse({
                "device_id": member.device_id, "member_id": member.member_id,
                "member_name": f"Member {member.member_id[-4:]}", "team_id": member.team_id,
                "agency_id": f"ag-{member.agency_kind}", "agency_kind": member.agency_kind,
                "district": member.district,
            })

        @app.get("/v1/districts")
        async def districts() -> dict[str, list[str]]:
            return {"districts": sorted(self.districts)}

        @app.get("/v1/agencies/{agency_id}")
        async def agency(agency_id: str) -> Response:
            if agency_id not in self.agencies:
                return JSONResponse({"error": {"code": "not_found", "message": "no"}},
                                    status_code=404)
            district, kind = self.agencies[agency_id]
            return JSONResponse({"id": agency_id, "district": district, "name": agency_id,
                                 "kind": kind, "role": None, "team_ids": []})

        return app


@asynccontextmanager
async def roster_of(*districts: str) -> AsyncIterator[Volunteers]:
    """Volunteers stood in, its roster holding `districts`: intake makes a reporting system's
    key, and dispatch a desk's token, only for a district volunteers knows (the first day
    imports the roster first)."""
    standin = Volunteers(districts=set(districts))
    async with serving(standin.app()) as url:
        standin.url = url
        yield standin


@pytest.fixture
async def volunteers() -> AsyncIterator[Volunteers]:
    async with roster_of() as standin:
        yield standin


# --- a recording HTTP endpoint (SMS gateway, push service) -----------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Gateway:
    url: str = ""
    received: list[Recorded] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # path -> status to answer

    def at(self, path: str) -> list[Recorded]:
        return [r for r in self.received if r.path == path]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def record(path: str, request: Request) -> Response:
            self.received.append(Recorded("/" + path, dict(request.headers), await request.body()))
            return Response(status_code=self.status.get("/" + path, 201))

        return app


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    recorder = Gateway()
    async with serving(recorder.app()) as url:
        recorder.url = url
        yield recorder


# --- notify -------------------------------------------------------------------------------------

NotifyFactory = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
async def notify_factory(clean_redis: str, volunteers: Volunteers) -> AsyncIterator[NotifyFactory]:
    """Starts notify replicas: each its own app, Redis clients, broker and consumer name."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        options: dict[str, Any] = {
            "redis_url": clean_redis, "admin_token": ADMIN_TOKEN, "volunteers_url": volunteers.url,
            "consumer_name": f"notify-test-{secrets.token_hex(4)}",
        }
        settings = Settings(**{**options, **overrides})
        async with serving(create_app(settings)) as url:
            yield url

    yield start


@pytest.fixture
async def notify(notify_factory: NotifyFactory) -> AsyncIterator[str]:
    async with notify_factory() as url:
        yield url


@pytest.fixture
async def broker(clean_redis: str) -> AsyncIterator[RedisBroker]:
    """Dispatch's side, for the test: publishes order events into the real Redis."""
    async with RedisBroker(clean_redis) as publisher:
        yield publisher


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def an_order(team_id: str, *, agency_kind: str = "police", **over: Any) -> OrderIssued:
    fields: dict[str, Any] = dict(
        district="d1", order_id=new_id("ord"), incident_id=new_id("inc"), team_id=team_id,
        agency_kind=agency_kind, category="dispute", priority="P2",
        location=Location(lat=22.817, lon=108.3665, address="Minzu Ave 88"),
        instructions="north gate", flags=("in_progress",),
    )
    fields.update(over)
    return OrderIssued.model_validate(fields)


async def issue(broker: RedisBroker, order: OrderIssued, headers: dict[str, str] | None = None
                ) -> None:
    await broker.publish(order, stream=streams.ORDER_ISSUED.name, headers=headers)


async def withdraw(broker: RedisBroker, order: OrderIssued, reason: str = "timeout") -> None:
    await broker.publish(
        OrderWithdrawn(district=order.district, order_id=order.order_id,
                       incident_id=order.incident_id, team_id=order.team_id, reason=reason),
        stream=streams.ORDER_WITHDRAWN.name,
    )


# --- devices -------------------------------------------------------------------------------------


class Device:
    """A member's phone holding the notify WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def next_of(self, kind: str, timeout: float = 10.0,
                      where: Callable[[dict[str, Any]], bool] = lambda f: True) -> dict[str, Any]:
        for frame in self.frames:
            if frame.get("type") == kind and where(frame):
                self.frames.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == kind and where(frame):
                    return frame
                self.frames.append(frame)

    async def drain(self, seconds: float, *, heartbeats: bool = False) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds`, plus what was kept (heartbeats only if asked)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    self.frames.append(json.loads(await self.ws.recv()))
        except TimeoutError:
            pass
        kept = [f for f in self.frames
                if heartbeats or f.get("type") not in ("ping", "pong", "hello")]
        self.frames = []
        return kept

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))


def ws_url(notify_url: str) -> str:
    return notify_url.replace("http://", "ws://") + "/v1/devices/stream"


@asynccontextmanager
async def device(notify_url: str, member: Member, *, query: bool = False) -> AsyncIterator[Device]:
    if query:
        cm = connect(f"{ws_url(notify_url)}?token={member.token}")
    else:
        cm = connect(ws_url(notify_url), additional_headers=member.bearer)
    async with cm as ws:
        phone = Device(ws)
        await phone.next_of("hello")  # subscribed to the team's fan-out from here on
        yield phone


async def devices(exits: AsyncExitStack, notify_url: str, *members: Member) -> list[Device]:
    return [await exits.enter_async_context(device(notify_url, m)) for m in members]

