"""Helpers for end-to-end journeys: a district roster, devices, sockets, spans."""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import AsyncExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tools.stack import Stack


def admin(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def district_roster(district: str, scene: tuple[float, float]) -> dict[str, Any]:
    """A small district around `scene` (lat, lon): a police station owning the zone, a street
    patrol station, a security company and a volunteer association, one team each, plus a
    second patrol team far away."""
    lat, lon = scene
    d = 0.02
    return {
        "district": district,
        "agencies": [
            {"id": f"{district}-ps", "name": "Xinzhu Police Station", "kind": "police",
             "role": "station"},
            {"id": f"{district}-sps", "name": "Minzu Avenue Service Station", "kind": "police",
             "role": "patrol"},
            {"id": f"{district}-sec", "name": "Hengan Security", "kind": "security"},
            {"id": f"{district}-vol", "name": "Red Armband Volunteers", "kind": "volunteer"},
        ],
        "zones": [{
            "id": f"{district}-z1", "name": "Xinzhu community", "owner_agency_id": f"{district}-ps",
            "polygon": [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d],
                        [lon - d, lat + d], [lon - d, lat - d]],
        }],
        "teams": [
            {"id": f"{district}-patrol-near", "agency_id": f"{district}-sps",
             "name": "Patrol 1", "mode": "car", "skills": ["first_aid"],
             "home_zone_id": f"{district}-z1"},
            {"id": f"{district}-patrol-far", "agency_id": f"{district}-sps",
             "name": "Patrol 2", "mode": "car", "skills": [], "home_zone_id": f"{district}-z1"},
            {"id": f"{district}-station-1", "agency_id": f"{district}-ps",
             "name": "Station duty team", "mode": "car", "skills": [],
             "home_zone_id": f"{district}-z1"},
            {"id": f"{district}-sec-1", "agency_id": f"{district}-sec", "name": "Guard post 3",
             "mode": "foot", "skills": [], "home_zone_id": f"{district}-z1"},
            {"id": f"{district}-vol-1", "agency_id": f"{district}-vol", "name": "Aunties 1",
             "mode": "foot", "skills": [], "home_zone_id": f"{district}-z1"},
        ],
        "members": [
            {"id": f"{district}-m-near-1", "name": "Officer Li", "agency_id": f"{district}-sps",
             "team_id": f"{district}-patrol-near", "role": "officer"},
            {"id": f"{district}-m-near-2", "name": "Auxiliary Wang",
             "agency_id": f"{district}-sps", "team_id": f"{district}-patrol-near",
             "role": "auxiliary"},
            {"id": f"{district}-m-far", "name": "Officer Zhao", "agency_id": f"{district}-sps",
             "team_id": f"{district}-patrol-far", "role": "officer"},
            {"id": f"{district}-m-st", "name": "Officer Chen", "agency_id": f"{district}-ps",
             "team_id": f"{district}-station-1", "role": "officer"},
            {"id": f"{district}-m-sec", "name": "Guard Huang", "agency_id": f"{district}-sec",
             "team_id": f"{district}-sec-1", "role": "guard"},
            {"id": f"{district}-m-vol", "name": "Volunteer Zhou", "agency_id": f"{district}-vol",
             "team_id": f"{district}-vol-1", "role": "volunteer"},
        ],
    }


def unique_district() -> str:
    return f"d{uuid4().hex[:8]}"


async def new_district(client: httpx.AsyncClient, stack: Stack,
                       scene: tuple[float, float]) -> str:
    """A new district's roster (district_roster) imported at volunteers; its name."""
    district = unique_district()
    r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                          headers=admin(stack), json=district_roster(district, scene))
    assert r.status_code == 200, r.text
    return district


async def enrol(client: httpx.AsyncClient, stack: Stack, member_id: str) -> str:
    r = await client.post(f"{stack.url('volunteers')}/v1/members/{member_id}/devices",
                          headers=admin(stack))
    assert r.status_code == 201, r.text
    return r.json()["token"]


async def on_shift_at(client: httpx.AsyncClient, stack: Stack, token: str,
                      lat: float, lon: float) -> None:
    r = await client.post(f"{stack.url('volunteers')}/v1/me/shift/start", headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await client.put(f"{stack.url('volunteers')}/v1/me/position", headers=bearer(token),
                         json={"lat": lat, "lon": lon, "accuracy_m": 8})
    assert r.status_code in (200, 202, 204), r.text


async def register_system(client: httpx.AsyncClient, stack: Stack, district: str) -> str:
    r = await client.post(f"{stack.url('intake')}/v1/systems", headers=admin(stack),
                          json={"name": "110 call-taking", "districts": [district]})
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


class Device:
    """A member's phone holding the notify WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def next_of(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        for frame in self.frames:
            if frame.get("type") == kind:
                self.frames.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == kind:
                    return frame
                self.frames.append(frame)

    async def order_for(self, client: httpx.AsyncClient, stack: Stack, incident_id: str,
                        timeout: float = 10.0) -> dict[str, Any]:
        """The next order frame; if none comes, a failure that says what dispatch and the
        units' projection made of the incident and its district meanwhile (a rare wait in a
        loaded suite is then diagnosable from the test's output alone)."""
        try:
            return await self.next_of("order", timeout=timeout)
        except TimeoutError:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                                 headers=admin(stack))
            view = r.json() if r.status_code == 200 else r.text
            district = view.get("district") if isinstance(view, dict) else None
            units = None
            if district:
                u = await client.get(f"{stack.url('dispatch')}/v1/units",
                                     params={"district": district}, headers=admin(stack))
                units = u.json() if u.status_code == 200 else u.text
            raise AssertionError(f"no order frame within {timeout} s for {incident_id}; "
                                 f"frames held: {self.frames!r}; dispatch's view: {view!r}; "
                                 f"its units: {units!r}") from None

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        try:
            async with asyncio.timeout(seconds):
                while True:
                    self.frames.append(json.loads(await self.ws.recv()))
        except TimeoutError:
            pass
        return [f for f in self.frames if f.get("type") not in ("ping", "pong", "hello")]

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))


async def connect_device(stack: Stack, token: str, exits: AsyncExitStack, *,
                         as_the_page: bool = False, in_the_url: bool = False) -> Device:
    """A phone's socket, its token in a header; `as_the_page`: offered as a subprotocol, as
    the member's page does (a browser sets no headers on a WebSocket); `in_the_url`: as
    `?token=`, as devices built before it do."""
    ws_url = stack.url("notify").replace("http://", "ws://") + "/v1/devices/stream"
    if as_the_page:
        ws = await exits.enter_async_context(connect(ws_url, subprotocols=[
            Subprotocol("lianfang.v1"), Subprotocol(f"token.{token}")]))
        assert ws.subprotocol == "lianfang.v1"
    elif in_the_url:
        ws = await exits.enter_async_context(connect(f"{ws_url}?token={token}"))
    else:
        ws = await exits.enter_async_context(connect(ws_url, additional_headers=bearer(token)))
    return Device(ws)


def spans_of_trace(traces_dir: Path, trace_id: str) -> list[dict[str, Any]]:
    # `*.jsonl`: each service's file and those rotated from it (`dispatch.1.jsonl`)
    spans = []
    for path in traces_dir.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                span = json.loads(line)
                if span["trace_id"] == trace_id:
                    spans.append(span)
    return spans


def all_exported_text(traces_dir: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in traces_dir.glob("*.jsonl"))


async def wait_until_dispatch_sees(client: httpx.AsyncClient, stack: Stack, district: str,
                                   teams: int, *, timeout: float = 10.0) -> None:
    """Status and fixes reach dispatch asynchronously: wait until it holds `teams` available
    teams of the district with a position. An answer other than 200 (a 503 while it is busy
    on a loaded machine) or none is waited through; the failure at the deadline says the
    last answer."""
    from tests.helpers import poll_until

    last = "no answer yet"

    async def ready() -> bool:
        nonlocal last
        try:
            r = await client.get(f"{stack.url('dispatch')}/v1/units", headers=admin(stack),
                                 params={"district": district, "status": "available"})
        except httpx.TransportError as exc:
            last = f"no answer ({type(exc).__name__})"
            return False
        if r.status_code != 200:
            last = f"{r.status_code}: {r.text[:500]}"
            return False
        placed = sum(1 for u in r.json()["units"] if u["position"])
        last = f"200: {placed} available team(s) with a position"
        return placed == teams

    try:
        await poll_until(ready, f"dispatch seeing {teams} available team(s) with a position",
                         timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; dispatch's last answer: {last}") from None


class SmsGateway:
    """An SMS gateway that takes every message (as a real one answers 200)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.messages.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/sms"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SmsGateway:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
