"""The access matrix: every route of the four services, asked by every kind of caller.

DESIGN: every endpoint authenticates; each system, agency and member sees only what it
should. Each row is one route with what each caller gets. A token a service does not know
(a system key at volunteers, a device token at dispatch, a volunteer coordinator's anywhere
but volunteers) is unknown there: 401, as a made-up one. The services' own key
(shared.tokens.service_key) is known to all four and opens the five reads of volunteers'
they call it for. d1's volunteer coordinator does the admin's work on d1's roster at
volunteers, and is refused d2's (COORDINATOR_DECISIONS). Rows that would change what other rows read are
not asked of the callers allowed to make the change (None), or name an object that does not
exist (404: past authentication).

The four services run in this process under uvicorn (notify and intake ask volunteers about
device tokens over HTTP), on one real Redis, seeded once for the module: district d1 with a
police patrol team (A) and a security post (B) on shift, each holding an order of a P1 fight
reported by d1's system; district d2's incident, given by hand to a d2 team.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, compile_path
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.main import create_app as dispatch_app
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as volunteers_app
from shared.tokens import service_key
from tests.e2e.journey import district_roster
from tests.helpers import poll_until
from tests.integration.four_services import four_services

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = f"matrix-admin-{secrets.token_hex(8)}"
SCENE = {"d1": (22.8300, 108.3300), "d2": (22.9300, 108.4300)}
MISSING = "nope-404"
CALLER_PHONE = "13912345678"

CALLERS = ("none", "malformed", "admin", "system_d1", "system_d2", "desk_d1", "inspector_d1",
           "agency_d1", "coordinator_d1", "device_a", "device_b", "revoked_device",
           "revoked_system", "revoked_desk", "revoked_coordinator", "services")
# The callers each service knows; any other token is unknown there. agency_d1: the desk of
# d1's security company (d1-sec), whose team B holds the fight's second order;
# coordinator_d1: d1's volunteer coordinator, known to volunteers alone.
KNOWS = {
    "intake": {"admin", "system_d1", "system_d2", "device_a", "device_b", "services"},
    "dispatch": {"admin", "desk_d1", "inspector_d1", "agency_d1", "services"},
    "volunteers": {"admin", "coordinator_d1", "device_a", "device_b", "services"},
    "notify": {"admin", "device_a", "device_b", "services"},
}
COMMAND_ROOM = ("admin", "desk_d1")
READERS = ("admin", "desk_d1", "inspector_d1")
AGENCY = "agency_d1"
COORDINATOR = "coordinator_d1"
ADMIN_AND_COORDINATOR = ("admin", COORDINATOR)
DEVICES = ("device_a", "device_b")
SYSTEMS = ("system_d1", "system_d2")


@dataclass(frozen=True)
class Row:
    service: str
    method: str
    path: str  # `{name}` placeholders: World.names
    answers: Mapping[str, int | None]  # caller -> status; None: not asked
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def row(service: str, method: str, path: str, allowed: Mapping[str, int | None],
        body: Any = None) -> Row:
    """`allowed`: the callers that pass with what they get; every other caller the
    service knows is refused (403), the rest are unknown to it (401)."""
    answers = {c: allowed[c] if c in allowed else 403 if c in KNOWS[service] else 401
               for c in CALLERS}
    return Row(service, method, path, answers, body)


def each(callers: Iterable[str], status: int | None) -> dict[str, int | None]:
    return dict.fromkeys(callers, status)


def public(service: str, path: str) -> Row:
    return Row(service, "GET", path, each(CALLERS, 200))


def admin_only(service: str, method: str, path: str, status: int = 200,
               body: Any = None) -> Row:
    return row(service, method, path, {"admin": status}, body)


def for_services(path: str, **more: int | None) -> Row:
    """A read of volunteers' the other services make with their own key (shared.tokens);
    `more`: other callers' answers (d1's coordinator's)."""
    return row("volunteers", "GET", path, {"admin": 200, "services": 200, **more})


def coordinated(method: str, path: str, status: int = 200, body: Any = None) -> Row:
    """A route of volunteers the admin and d1's coordinator both get `status` of."""
    return row("volunteers", method, path, each(ADMIN_AND_COORDINATOR, status), body)


def of_d2(method: str, path: str, admin: int | None = 200, body: Any = None,
          **more: int | None) -> Row:
    """A route of volunteers asked of d2's roster: 403 to d1's coordinator; the admin's
    answer `admin` (None: not asked, it would change what other rows read)."""
    return row("volunteers", method, path, {"admin": admin, COORDINATOR: 403, **more}, body)


def operations(service: str) -> list[Row]:
    """What every service serves: probes, its docs, metrics, audit and dead letters."""
    stream = {"intake": "incident.updated", "dispatch": "incident.reported",
              "volunteers": "order.issued", "notify": "order.issued"}[service]
    return [
        public(service, "/healthz"),
        public(service, "/readyz"),
        public(service, "/docs"),
        public(service, "/openapi.json"),
        public(service, "/docs/static/swagger-ui-bundle.js"),
        admin_only(service, "GET", "/metrics"),
        admin_only(service, "GET", "/v1/admin/audit"),
        admin_only(service, "GET", "/v1/admin/dead-letters"),
        admin_only(service, "POST", f"/v1/admin/dead-letters/{stream}/1-1/replay", 404),
        admin_only(service, "DELETE", f"/v1/admin/dead-letters/{stream}/1-1", 404),
    ]


PLAN = {"shifts": {"main": {"start": "08:00", "end": "18:00"}}, "rotation": ["main"],
        "anchor": "2026-01-05"}
SUBSCRIPTION = {"subscription": {"endpoint": "https://push.example.com/send/abc",
                                 "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTp"
                                          "Qtux6TePqIEsM5iIVsDqa-SrY5QeSo6-HAWc1Gb-1Nnak",
                                          "auth": "tBHItJI5svbpez7KI4CCXg"}}}

MATRIX: list[Row] = [
    # --- intake: the front door for systems, and members' reports from the street -------
    *operations("intake"),
    admin_only("intake", "POST", "/v1/systems", 201, {"name": "cctv", "districts": ["d1"]}),
    admin_only("intake", "GET", "/v1/systems"),
    admin_only("intake", "DELETE", f"/v1/systems/{MISSING}", 404),
    admin_only("intake", "POST", f"/v1/systems/{MISSING}/keys", 404),
    admin_only("intake", "DELETE", f"/v1/systems/{MISSING}/keys/key_0", 404),
    row("intake", "GET", "/v1/categories", each(("admin", *SYSTEMS, *DEVICES), 200)),
    row("intake", "GET", "/v1/flags", each(("admin", *SYSTEMS, *DEVICES), 200)),
    row("intake", "POST", "/v1/incidents", {**each(("system_d1", *DEVICES), 202),
                                            "system_d2": 403},
        {"external_ref": "matrix-d1", "category": "hazard_report", "district": "d1",
         "location": {"lat": 22.70, "lon": 108.20}}),
    row("intake", "POST", "/v1/incidents", {"system_d1": 403, "system_d2": 202,
                                            **each(DEVICES, 403)},
        {"external_ref": "matrix-d2", "category": "hazard_report", "district": "d2",
         "location": {"lat": 22.95, "lon": 108.45}}),
    row("intake", "GET", "/v1/incidents/{inc_d1}", {"admin": 200, "system_d1": 200}),
    row("intake", "GET", "/v1/incidents/{inc_d2}", {"admin": 200, "system_d2": 200}),
    row("intake", "GET", "/v1/incidents/{inc_a}", {"admin": 200, "device_a": 200}),
    row("intake", "GET", f"/v1/incidents/{MISSING}", each(("admin", *SYSTEMS, *DEVICES), 404)),
    # a follow-up is its report's system's (or member's): scoped as a read of the report,
    # though the admin, who reads every report, reports none
    row("intake", "POST", "/v1/incidents/{inc_d1}/follow-ups", {"system_d1": 202},
        {"external_ref": "matrix-follow-up", "category": "violence", "district": "d1",
         "location": {"lat": 22.8301, "lon": 108.3301}}),
    row("intake", "POST", f"/v1/incidents/{MISSING}/follow-ups", each((*SYSTEMS, *DEVICES), 404),
        {"external_ref": "matrix-follow-up-404", "category": "violence", "district": "d1",
         "location": {"lat": 22.8301, "lon": 108.3301}}),
    # a cancel request likewise (its own system or member: not asked, it would flag the
    # fight other rows read; the admin reports none)
    row("intake", "POST", "/v1/incidents/{inc_d1}/cancel-requests", {"system_d1": None},
        {"external_ref": "matrix-cancel", "reason": "dialled by mistake"}),
    row("intake", "POST", "/v1/incidents/{inc_a}/cancel-requests", {"device_a": None},
        {"external_ref": "matrix-cancel", "reason": "dialled by mistake"}),
    row("intake", "POST", f"/v1/incidents/{MISSING}/cancel-requests",
        each((*SYSTEMS, *DEVICES), 404), {"external_ref": "matrix-cancel-404",
                                          "reason": "dialled by mistake"}),

    # --- dispatch: the command room's ------------------------------------------------------
    *operations("dispatch"),
    public("dispatch", "/console"),
    public("dispatch", "/agency"),  # an agency desk's page: holds no data, reads with its token
    row("dispatch", "GET", "/v1/me", each((*READERS, AGENCY), 200)),
    row("dispatch", "GET", "/v1/incidents", each((*READERS, AGENCY), 200)),
    row("dispatch", "GET", "/v1/incidents?district=d1", each((*READERS, AGENCY), 200)),
    # the command room's filters are not an agency desk's
    row("dispatch", "GET", "/v1/incidents?district=d1&flagged=true", each(READERS, 200)),
    row("dispatch", "GET", "/v1/incidents?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/incidents?district=d2&ref=matrix-d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/incidents/{inc_d1}", each((*READERS, AGENCY), 200)),
    # A's report, which no team of the security company's was sent to
    row("dispatch", "GET", "/v1/incidents/{inc_a}", each(READERS, 200)),
    row("dispatch", "GET", "/v1/incidents/{inc_d2}", {"admin": 200}),
    row("dispatch", "GET", f"/v1/incidents/{MISSING}", each((*READERS, AGENCY), 404)),
    # reports dispatch gave up on: a desk's own districts' (not in the matrix before)
    row("dispatch", "GET", "/v1/reports-not-handled", each(READERS, 200)),
    row("dispatch", "GET", "/v1/reports-not-handled?district=d1", each(READERS, 200)),
    row("dispatch", "GET", "/v1/reports-not-handled?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/incidents/{inc_d1}/teams", each(READERS, 200)),
    row("dispatch", "GET", "/v1/incidents/{inc_d2}/teams", {"admin": 200}),
    row("dispatch", "GET", f"/v1/incidents/{MISSING}/teams", each(READERS, 404)),
    # a d2 team to a d1 incident, a d1 team to a d2 incident: only who covers both
    row("dispatch", "POST", "/v1/incidents/{inc_d1}/assign", {"admin": None},
        {"team_id": "d2-patrol-far"}),
    row("dispatch", "POST", "/v1/incidents/{inc_d2}/assign", {"admin": None},
        {"team_id": "d1-patrol-far"}),
    row("dispatch", "POST", f"/v1/incidents/{MISSING}/assign", each(COMMAND_ROOM, 404),
        {"team_id": "d1-patrol-far"}),
    row("dispatch", "PATCH", "/v1/incidents/{inc_d2}", {"admin": None}, {"priority": "P1"}),
    row("dispatch", "PATCH", f"/v1/incidents/{MISSING}", each(COMMAND_ROOM, 404),
        {"priority": "P1"}),
    row("dispatch", "POST", "/v1/orders/{order_d2}/withdraw", {"admin": None}, {}),
    row("dispatch", "POST", f"/v1/orders/{MISSING}/withdraw", each(COMMAND_ROOM, 404), {}),
    row("dispatch", "POST", "/v1/incidents/{inc_d2}/evidence", {"admin": 200},
        {"evidence": [{"kind": "video", "ref": "bwc-matrix.mp4"}]}),
    row("dispatch", "POST", "/v1/incidents/{inc_d2}/remarks", {"admin": 201},
        {"note": "checked by the matrix"}),
    # d2's incident is no linked report: 409 for who may unlink it
    row("dispatch", "POST", "/v1/incidents/{inc_d2}/unlink", {"admin": 409}, {}),
    row("dispatch", "POST", f"/v1/incidents/{MISSING}/unlink", each(COMMAND_ROOM, 404), {}),
    row("dispatch", "POST", "/v1/incidents/{inc_d2}/close", {"admin": None}),
    row("dispatch", "POST", f"/v1/incidents/{MISSING}/close", each(COMMAND_ROOM, 404)),
    row("dispatch", "GET", "/v1/duty/d1", each(READERS, 200)),
    row("dispatch", "GET", "/v1/duty/d2", {"admin": 200}),
    row("dispatch", "PUT", "/v1/duty/d1", {"admin": 422, "desk_d1": 200}, {}),
    row("dispatch", "PUT", "/v1/duty/d2", {"admin": 422}, {}),
    admin_only("dispatch", "POST", "/v1/dispatchers", 201, {"name": "x", "districts": ["d1"]}),
    admin_only("dispatch", "GET", "/v1/dispatchers"),
    admin_only("dispatch", "DELETE", f"/v1/dispatchers/{MISSING}", 404),
    row("dispatch", "GET", "/v1/zones?district=d1", each(READERS, 200)),
    row("dispatch", "GET", "/v1/zones?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/units?district=d1", each((*READERS, AGENCY), 200)),
    row("dispatch", "GET", "/v1/units?district=d2", {"admin": 200}),
    # volunteers' plans and check-ins, asked by dispatch for a desk's own districts
    row("dispatch", "GET", "/v1/shift-check-ins?district=d1", each((*READERS, AGENCY), 200)),
    row("dispatch", "GET", "/v1/shift-check-ins?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/kpis", {"admin": 200, "desk_d1": 422, "inspector_d1": 422,
                                        AGENCY: 422}),
    row("dispatch", "GET", "/v1/kpis?district=d1", each((*READERS, AGENCY), 200)),
    row("dispatch", "GET", "/v1/kpis?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/kpis/teams",
        {"admin": 200, "desk_d1": 422, "inspector_d1": 422}),
    row("dispatch", "GET", "/v1/kpis/teams?district=d1&agency_kind=volunteer",
        each(READERS, 200)),
    row("dispatch", "GET", "/v1/kpis/teams?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/heatmap?district=d1", each(READERS, 200)),
    row("dispatch", "GET", "/v1/heatmap?district=d2", {"admin": 200}),
    row("dispatch", "GET", "/v1/pipeline", each(READERS, 200)),
    row("dispatch", "GET", "/v1/pipeline?district=d1", each(READERS, 200)),
    row("dispatch", "GET", "/v1/pipeline?district=d2", {"admin": 200}),

    # --- volunteers: the roster (admin) and a member's own day (device) ----------------------
    *operations("volunteers"),
    row("volunteers", "GET", "/v1/me", each(DEVICES, 200)),
    row("volunteers", "GET", "/v1/me/points", each(DEVICES, 200)),
    row("volunteers", "POST", "/v1/me/shift/start", each(DEVICES, 200)),
    # both teams hold an order: checking out is refused for its state, not its caller
    row("volunteers", "POST", "/v1/me/shift/end", each(DEVICES, 409)),
    row("volunteers", "PUT", "/v1/me/status", each(DEVICES, 409), {"status": "available"}),
    row("volunteers", "PUT", "/v1/me/position", each(DEVICES, 200),
        {"lat": 22.8301, "lon": 108.3301, "accuracy_m": 5}),
    row("volunteers", "GET", "/v1/devices/introspect", each(DEVICES, 200)),
    # sound on its own, refused against the stored roster: a malformed one is a 422 for
    # every caller (DESIGN: the input before the caller's kind); d1's coordinator imports
    # d1's roster (the same again: unchanged), never d2's (403, after the document's own 422s)
    coordinated("POST", "/v1/roster/import", 422, {"district": "d1", "teams": [
        {"id": "t-matrix", "agency_id": "no-such-agency", "name": "Matrix", "mode": "foot"}]}),
    coordinated("POST", "/v1/roster/import", 200, {"district": "d1", "agencies": [
        {"id": "d1-vol", "name": "Red Armband Volunteers", "kind": "volunteer"}]}),
    of_d2("POST", "/v1/roster/import", 422, {"district": "d2", "teams": [
        {"id": "t-matrix", "agency_id": "no-such-agency", "name": "Matrix", "mode": "foot"}]}),
    # a coordinator's lists are of one of its districts (422 without one)
    row("volunteers", "GET", "/v1/agencies", {"admin": 200, COORDINATOR: 422}),
    coordinated("GET", "/v1/agencies?district=d1"),
    of_d2("GET", "/v1/agencies?district=d2"),
    coordinated("GET", "/v1/teams?district=d1"),
    of_d2("GET", "/v1/teams?district=d2"),
    coordinated("GET", "/v1/members?district=d1"),
    of_d2("GET", "/v1/members?district=d2"),
    # dispatch asks it before it makes an agency's desk token
    for_services("/v1/agencies/d1-sec", **{COORDINATOR: 200}),
    of_d2("GET", "/v1/agencies/d2-sec", services=200),
    coordinated("GET", "/v1/zones/d1-z1"),
    of_d2("GET", "/v1/zones/d2-z1"),
    for_services("/v1/teams/d1-vol-1", **{COORDINATOR: 200}),
    of_d2("GET", "/v1/teams/d2-sec-1", services=200),
    coordinated("GET", "/v1/members/d1-m-vol"),
    of_d2("GET", "/v1/members/d2-m-sec"),
    coordinated("GET", "/v1/members/d1-m-vol/devices"),
    of_d2("GET", "/v1/members/d2-m-sec/devices"),
    coordinated("POST", "/v1/members/d1-m-vol/devices", 201),
    coordinated("POST", f"/v1/members/{MISSING}/devices", 404),
    of_d2("POST", "/v1/members/d2-m-sec/devices", None),
    coordinated("DELETE", f"/v1/members/d1-m-vol/devices/{MISSING}", 404),
    of_d2("DELETE", f"/v1/members/d2-m-sec/devices/{MISSING}", 404),
    coordinated("DELETE", f"/v1/members/{MISSING}", 404),
    of_d2("DELETE", "/v1/members/d2-m-sec", None),
    # m-vol is on no shift: checked out of none (200, checked_out false)
    coordinated("POST", "/v1/members/d1-m-vol/check-out"),
    coordinated("POST", f"/v1/members/{MISSING}/check-out", 404),
    of_d2("POST", "/v1/members/d2-m-sec/check-out", None),
    coordinated("DELETE", f"/v1/teams/{MISSING}", 404),
    of_d2("DELETE", "/v1/teams/d2-sec-1", 409),  # it has members: 403 before 409
    # a zone is a police station's territory: the admin's to remove (and to draw)
    admin_only("volunteers", "DELETE", f"/v1/zones/{MISSING}", 404),
    coordinated("PUT", "/v1/teams/d1-vol-1/shift-plan", 200, PLAN),
    coordinated("PUT", f"/v1/teams/{MISSING}/shift-plan", 404, PLAN),
    of_d2("PUT", "/v1/teams/d2-sec-1/shift-plan", None, PLAN),
    coordinated("GET", "/v1/teams/d1-vol-1/shift-plan"),
    of_d2("GET", "/v1/teams/d2-sec-1/shift-plan", 404),
    # its own district's police and security (an officer's, a guard's record; a patrol's
    # team): the volunteers' coordinator's in none of them (403 after 404, before 409)
    row("volunteers", "GET", "/v1/members/d1-m-sec", {"admin": 200, COORDINATOR: 403}),
    row("volunteers", "GET", "/v1/teams/d1-patrol-near",
        {"admin": 200, "services": 200, COORDINATOR: 403}),
    row("volunteers", "GET", "/v1/members/d1-m-far/devices", {"admin": 200, COORDINATOR: 403}),
    row("volunteers", "POST", "/v1/members/d1-m-far/devices", {"admin": 201, COORDINATOR: 403}),
    row("volunteers", "DELETE", f"/v1/members/d1-m-sec/devices/{MISSING}",
        {"admin": 404, COORDINATOR: 403}),
    row("volunteers", "DELETE", "/v1/members/d1-m-far", {"admin": None, COORDINATOR: 403}),
    row("volunteers", "POST", "/v1/members/d1-m-far/check-out", {"admin": 200, COORDINATOR: 403}),
    row("volunteers", "DELETE", "/v1/teams/d1-sec-1", {"admin": 409, COORDINATOR: 403}),
    row("volunteers", "PUT", "/v1/teams/d1-patrol-far/shift-plan",
        {"admin": 200, COORDINATOR: 403}, PLAN),
    row("volunteers", "GET", "/v1/teams/d1-sec-1/shift-plan", {"admin": 404, COORDINATOR: 403}),
    coordinated("GET", "/v1/shifts?district=d1&date=2026-01-05"),
    of_d2("GET", "/v1/shifts?district=d2&date=2026-01-05"),
    # the desk asks dispatch (GET /v1/shift-check-ins), which asks this with the admin token
    for_services("/v1/shifts/now?district=d1", **{COORDINATOR: 200}),
    of_d2("GET", "/v1/shifts/now?district=d2", services=200),
    coordinated("GET", "/v1/points/leaderboard?district=d1"),
    coordinated("GET", "/v1/points/leaderboard?district=d1&month=2026-01"),
    of_d2("GET", "/v1/points/leaderboard?district=d2"),
    # the admin's first; the coordinator's, the same again within 10 minutes, its retry
    row("volunteers", "POST", "/v1/members/d1-m-vol/points", {"admin": 201, COORDINATOR: 200},
        {"points": 5, "note": "matrix"}),
    coordinated("POST", f"/v1/members/{MISSING}/points", 404, {"points": 5, "note": "matrix"}),
    of_d2("POST", "/v1/members/d2-m-sec/points", 409, {"points": 5, "note": "matrix"}),
    # the coordinator answering a member who disputes their balance; a device reads its own
    coordinated("GET", "/v1/members/d1-m-vol/points"),
    of_d2("GET", "/v1/members/d2-m-sec/points"),
    row("volunteers", "GET", "/v1/members/d1-m-sec/points", {"admin": 200, COORDINATOR: 403}),
    row("volunteers", "POST", "/v1/members/d1-m-sec/points", {"admin": 409, COORDINATOR: 403},
        {"points": 5, "note": "matrix"}),
    for_services("/v1/districts"),
    for_services("/v1/zones?district=d1", **{COORDINATOR: 200}),
    of_d2("GET", "/v1/zones?district=d2", services=200),
    coordinated("GET", "/v1/zones/lookup?district=d1&lat=22.83&lon=108.33"),
    of_d2("GET", "/v1/zones/lookup?district=d2&lat=22.93&lon=108.43"),
    admin_only("volunteers", "POST", "/v1/coordinators", 201, {"name": "x", "districts": ["d1"]}),
    admin_only("volunteers", "GET", "/v1/coordinators"),
    admin_only("volunteers", "DELETE", f"/v1/coordinators/{MISSING}", 404),
    row("volunteers", "GET", "/v1/coordinators/me", {COORDINATOR: 200}),

    # --- notify: a team's orders, a device's channels ------------------------------------------
    *operations("notify"),
    public("notify", "/device"),
    public("notify", "/device/sw.js"),
    row("notify", "GET", "/v1/orders/{order_a}", {"admin": 200, "device_a": 200}),
    row("notify", "GET", "/v1/orders/{order_b}", {"admin": 200, "device_b": 200}),
    row("notify", "GET", f"/v1/orders/{MISSING}", each(("admin", *DEVICES), 404)),
    row("notify", "POST", "/v1/orders/{order_a}/responses", {"device_a": 200},
        {"response": "en_route"}),
    row("notify", "POST", "/v1/orders/{order_b}/responses", {"device_b": 200},
        {"response": "en_route"}),
    admin_only("notify", "GET", "/v1/orders/{order_a}/deliveries"),
    row("notify", "GET", "/v1/devices/me", each(DEVICES, 200)),
    row("notify", "POST", "/v1/devices/me/sms", each(DEVICES, 200), {"phone": "+8613800000000"}),
    row("notify", "DELETE", "/v1/devices/me/sms", each(DEVICES, 200)),
    row("notify", "POST", "/v1/devices/me/webpush", each(DEVICES, 200), SUBSCRIPTION),
    row("notify", "DELETE", "/v1/devices/me/webpush", each(DEVICES, 200)),
]


# What an agency's desk (AGENCY) gets of each route of dispatch, decided route by route:
# "own", a view of its own teams and their orders (filtered: another agency's teams and
# orders, callers and the command room's own notes are in none); "refused", 403 whatever it
# asks; "public", what anyone gets. A route of dispatch's app missing here fails
# test_each_dispatch_route_is_decided_for_an_agency_desk: dispatch refuses a kind a route
# does not name (require), and whoever adds a route says so here, and the matrix asks it.
AGENCY_DESK: dict[str, str] = {
    "GET /openapi.json": "public", "GET /docs": "public", "* /docs/static": "public",
    "GET /healthz": "public", "GET /readyz": "public", "GET /console": "public",
    "GET /agency": "public",  # its own page (no data in it: what it reads, its token's)
    "GET /metrics": "refused", "GET /v1/admin/audit": "refused",
    "GET /v1/admin/dead-letters": "refused",
    "POST /v1/admin/dead-letters/{stream}/{dead_letter_id}/replay": "refused",
    "DELETE /v1/admin/dead-letters/{stream}/{dead_letter_id}": "refused",
    "GET /v1/me": "own",
    "GET /v1/incidents": "own",  # the incidents its teams were sent to, its orders only
    "GET /v1/reports-not-handled": "refused",
    "GET /v1/incidents/{incident_id}": "own",  # one of those, its orders only
    "GET /v1/incidents/{incident_id}/teams": "refused",
    "POST /v1/incidents/{incident_id}/assign": "refused",
    "POST /v1/incidents/{incident_id}/unlink": "refused",
    "PATCH /v1/incidents/{incident_id}": "refused",
    "POST /v1/orders/{order_id}/withdraw": "refused",
    "POST /v1/incidents/{incident_id}/evidence": "refused",
    "POST /v1/incidents/{incident_id}/remarks": "refused",
    "POST /v1/incidents/{incident_id}/close": "refused",
    "GET /v1/duty/{district}": "refused",
    "PUT /v1/duty/{district}": "refused",
    "POST /v1/dispatchers": "refused",
    "GET /v1/dispatchers": "refused",
    "DELETE /v1/dispatchers/{dispatcher_id}": "refused",
    "GET /v1/zones": "refused",
    "GET /v1/units": "own",  # its own teams
    "GET /v1/shift-check-ins": "own",  # its own teams planned now
    "GET /v1/pipeline": "refused",
    "GET /v1/kpis": "own",  # its own teams' figures
    # every team of the district (the coordinator's record of who keeps declining): its own
    # teams' are in its /v1/kpis
    "GET /v1/kpis/teams": "refused",
    "GET /v1/heatmap": "refused",
}


# What d1's volunteer coordinator (COORDINATOR) gets of each route of volunteers, decided
# route by route as AGENCY_DESK is: "own", the admin's work on its own districts' roster (a
# row of another district's answers it 403: every "own" route has one, and one it passes,
# 2xx, or 404 and 409 past its kind, which `require` would refuse before them); "self",
# its own token's record, of no district (2xx); "refused", 403 whatever it asks; "public",
# what anyone gets. A route of volunteers' app missing here fails
# test_each_volunteers_route_is_decided_for_a_coordinator.
COORDINATOR_DECISIONS: dict[str, str] = {
    "GET /openapi.json": "public", "GET /docs": "public", "* /docs/static": "public",
    "GET /healthz": "public", "GET /readyz": "public",
    "GET /metrics": "refused", "GET /v1/admin/audit": "refused",  # every action, any district
    "GET /v1/admin/dead-letters": "refused",
    "POST /v1/admin/dead-letters/{stream}/{dead_letter_id}/replay": "refused",
    "DELETE /v1/admin/dead-letters/{stream}/{dead_letter_id}": "refused",
    "POST /v1/roster/import": "own",  # its district's, drawing no zone
    "GET /v1/districts": "refused",  # every district's name: the admin's and the services'
    "GET /v1/agencies": "own", "GET /v1/teams": "own", "GET /v1/members": "own",
    "GET /v1/agencies/{agency_id}": "own", "GET /v1/zones/{zone_id}": "own",
    "GET /v1/teams/{team_id}": "own", "GET /v1/members/{member_id}": "own",
    "GET /v1/zones": "own", "GET /v1/zones/lookup": "own",
    "DELETE /v1/members/{member_id}": "own", "DELETE /v1/teams/{team_id}": "own",
    # a police station's territory (where a place's hand-overs go): the admin's
    "DELETE /v1/zones/{zone_id}": "refused",
    "POST /v1/members/{member_id}/devices": "own",
    "GET /v1/members/{member_id}/devices": "own",
    "DELETE /v1/members/{member_id}/devices/{device_id}": "own",
    "POST /v1/members/{member_id}/check-out": "own",
    "PUT /v1/teams/{team_id}/shift-plan": "own", "GET /v1/teams/{team_id}/shift-plan": "own",
    "GET /v1/shifts": "own", "GET /v1/shifts/now": "own",
    "POST /v1/members/{member_id}/points": "own", "GET /v1/members/{member_id}/points": "own",
    "GET /v1/points/leaderboard": "own",
    # a member's phone's own (the coordinator is no member of a team)
    "GET /v1/devices/introspect": "refused", "GET /v1/me": "refused",
    "POST /v1/me/shift/start": "refused", "POST /v1/me/shift/end": "refused",
    "PUT /v1/me/status": "refused", "PUT /v1/me/position": "refused",
    "GET /v1/me/points": "refused",
    # the coordinators' tokens: the admin's
    "POST /v1/coordinators": "refused", "GET /v1/coordinators": "refused",
    "DELETE /v1/coordinators/{coordinator_id}": "refused",
    "GET /v1/coordinators/me": "self",  # who it is: its id, name, districts
}


def _dispatch_routes() -> dict[str, re.Pattern[str]]:
    """Each route of dispatch's app (see _routes_of)."""
    return _routes_of(dispatch_app(DispatchSettings(redis_url="redis://127.0.0.1:9",
                                                    admin_token=ADMIN_TOKEN)))


def _volunteers_routes() -> dict[str, re.Pattern[str]]:
    """Each route of volunteers' app (see _routes_of)."""
    return _routes_of(volunteers_app(VolunteersSettings(redis_url="redis://127.0.0.1:9",
                                                        admin_token=ADMIN_TOKEN)))


def _routes_of(app: FastAPI) -> dict[str, re.Pattern[str]]:
    """Each route of a service's app ("METHOD /path", "* /path" for a mount) with the pattern
    of the paths it serves; the app built, not started (nothing connects to Redis)."""
    routes: dict[str, re.Pattern[str]] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            routes[f"* {context.path}"] = re.compile(re.escape(context.path) + "/.*")
            continue
        pattern, _, _ = compile_path(context.path)
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                routes[f"{method} {context.path}"] = pattern
    return routes


def _route_of(case: Row, routes: dict[str, re.Pattern[str]]) -> str | None:
    """The route of a service's (`routes`) that a row of the matrix asks, by its method and
    path (the first that serves it, as the app's router finds it)."""
    path = re.sub(r"[{][a-z_0-9]+[}]", "x", case.path).partition("?")[0]
    for key, pattern in routes.items():
        method, _, _ = key.partition(" ")
        if method in (case.method, "*") and pattern.fullmatch(path):
            return key
    return None


@dataclass
class World:
    urls: dict[str, str]
    tokens: dict[str, str]  # caller -> bearer token (none: no header)
    names: dict[str, str] = field(default_factory=dict)  # placeholders of the rows' paths

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {"Authorization": f"Bearer {token}"} if token else {}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _created(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
                   ) -> dict[str, Any]:
    r = await client.request(method, url, headers=ADMIN, **kwargs)
    assert r.status_code in (200, 201, 204), r.text
    return r.json() if r.content else {}


async def _seed(client: httpx.AsyncClient, urls: dict[str, str]) -> World:
    for district, scene in SCENE.items():
        await _created(client, "POST", f"{urls['volunteers']}/v1/roster/import",
                       json=district_roster(district, scene))
    world = World(urls=urls, tokens=await _tokens(client, urls))
    await _on_shift(client, world)
    world.names = await _incidents(client, world)
    return world


async def _tokens(client: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, str]:
    """Every caller's token; the revoked ones made and revoked first."""
    volunteers, intake, dispatch = urls["volunteers"], urls["intake"], urls["dispatch"]

    async def device_of(member_id: str) -> dict[str, Any]:
        return await _created(client, "POST", f"{volunteers}/v1/members/{member_id}/devices")

    async def system(district: str) -> dict[str, Any]:
        return await _created(client, "POST", f"{intake}/v1/systems",
                              json={"name": f"110 {district}", "districts": [district]})

    async def desk(role: str, **body: str) -> dict[str, Any]:
        return await _created(client, "POST", f"{dispatch}/v1/dispatchers",
                              json={"name": f"{role} d1", "districts": ["d1"], "role": role,
                                    **body})

    async def coordinator() -> dict[str, Any]:
        return await _created(client, "POST", f"{volunteers}/v1/coordinators",
                              json={"name": "Officer Li", "districts": ["d1"]})

    gone_device, gone_system, gone_desk, gone_coordinator = (
        await device_of("d1-m-vol"), await system("d1"), await desk("dispatcher"),
        await coordinator())
    await _created(client, "DELETE", f"{volunteers}/v1/members/d1-m-vol/devices/"
                   f"{gone_device['device_id']}")
    await _created(client, "DELETE", f"{intake}/v1/systems/{gone_system['system_id']}")
    await _created(client, "DELETE", f"{dispatch}/v1/dispatchers/{gone_desk['dispatcher_id']}")
    await _created(client, "DELETE",
                   f"{volunteers}/v1/coordinators/{gone_coordinator['coordinator_id']}")
    return {
        "malformed": "not-a-token", "admin": ADMIN_TOKEN,
        "system_d1": (await system("d1"))["api_key"], "system_d2": (await system("d2"))["api_key"],
        "desk_d1": (await desk("dispatcher"))["token"],
        "inspector_d1": (await desk("inspector"))["token"],
        "agency_d1": (await desk("agency", agency_id="d1-sec"))["token"],
        "coordinator_d1": (await coordinator())["token"],
        "device_a": (await device_of("d1-m-near-1"))["token"],
        "device_b": (await device_of("d1-m-sec"))["token"],
        "revoked_device": gone_device["token"], "revoked_system": gone_system["api_key"],
        "revoked_desk": gone_desk["token"], "revoked_coordinator": gone_coordinator["token"],
        "services": service_key(ADMIN_TOKEN),
    }


async def _on_shift(client: httpx.AsyncClient, world: World) -> None:
    """A and B on shift at d1's scene, as dispatch sees them."""
    lat, lon = SCENE["d1"]
    for caller in DEVICES:
        r = await client.post(f"{world.urls['volunteers']}/v1/me/shift/start",
                              headers=world.headers(caller))
        assert r.status_code == 200, r.text
        r = await client.put(f"{world.urls['volunteers']}/v1/me/position",
                             headers=world.headers(caller), json={"lat": lat + 0.001, "lon": lon})
        assert r.status_code == 200, r.text

    async def on_the_map() -> bool:
        r = await client.get(f"{world.urls['dispatch']}/v1/units", headers=ADMIN,
                             params={"district": "d1", "status": "available"})
        return sum(1 for u in r.json()["units"] if u["position"]) == 2

    await poll_until(on_the_map, "dispatch seeing A and B available")


async def _incidents(client: httpx.AsyncClient, world: World) -> dict[str, str]:
    """d1's fight with its two orders, answered; d2's incident given by hand to a d2 team;
    A's own report from the street. Their ids, and the orders'."""
    intake, dispatch, notify = (world.urls[s] for s in ("intake", "dispatch", "notify"))

    async def report(caller: str, body: dict[str, Any]) -> str:
        r = await client.post(f"{intake}/v1/incidents", headers=world.headers(caller), json=body)
        assert r.status_code == 202, r.text
        return r.json()["incident_id"]

    async def orders_of(incident_id: str) -> dict[str, str] | None:
        """The incident's orders by team, once dispatch holds it."""
        r = await client.get(f"{dispatch}/v1/incidents/{incident_id}", headers=ADMIN)
        return ({o["team_id"]: o["order_id"] for o in r.json()["orders"]}
                if r.status_code == 200 else None)

    # A fight in d1: police (A) and the nearest security post (B) both go
    lat, lon = SCENE["d1"]
    names = {"inc_d1": await report("system_d1", {
        "external_ref": "fight-d1", "category": "violence", "district": "d1",
        "location": {"lat": lat, "lon": lon}, "flags": ["in_progress"],
        "caller": {"phone": CALLER_PHONE, "name": "Huang Xiaoming"},
        "description": "two men fighting at the north gate"})}

    async def joint_response() -> dict[str, str] | None:
        orders = await orders_of(names["inc_d1"])
        return orders if orders and len(orders) == 2 else None

    orders = await poll_until(joint_response, "both orders of the fight")
    names |= {"order_a": orders["d1-patrol-near"], "order_b": orders["d1-sec-1"]}
    for caller, order_id in (("device_a", names["order_a"]), ("device_b", names["order_b"])):
        # answered at once: no acknowledgement deadline runs out while the matrix is asked
        async def delivered(order_id: str = order_id) -> bool:
            r = await client.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
            return r.status_code == 200

        await poll_until(delivered, f"notify holding {order_id}")
        r = await client.post(f"{notify}/v1/orders/{order_id}/responses",
                              headers=world.headers(caller), json={"response": "acknowledged"})
        assert r.status_code == 200, r.text

    # After the fight's orders: A and B are taken, so these go to nobody on their own
    names["inc_a"] = await report("device_a", {
        "external_ref": "hazard-a", "category": "hazard_report", "district": "d1",
        "location": {"lat": lat - 0.02, "lon": lon}})
    names["inc_d2"] = await report("system_d2", {
        "external_ref": "noise-d2", "category": "noise", "district": "d2",
        "location": {"lat": SCENE["d2"][0], "lon": SCENE["d2"][1]}})

    async def both_at_dispatch() -> bool:
        return all([await orders_of(names[n]) is not None for n in ("inc_a", "inc_d2")])

    await poll_until(both_at_dispatch, "A's report and d2's incident at dispatch")
    r = await client.post(f"{dispatch}/v1/incidents/{names['inc_d2']}/assign", headers=ADMIN,
                          json={"team_id": "d2-patrol-near"})
    assert r.status_code == 200, r.text
    return names | {"order_d2": r.json()["order_id"]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str) -> AsyncIterator[World]:
    async with four_services(redis_url, ADMIN_TOKEN) as urls, \
            httpx.AsyncClient(timeout=10) as http:
        yield await _seed(http, urls)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.mark.parametrize("case", MATRIX, ids=[r.id for r in MATRIX])
async def test_each_caller_gets_what_design_says(world: World, http: httpx.AsyncClient,
                                                 case: Row) -> None:
    url = world.urls[case.service] + case.path.format(**world.names)
    got: dict[str, int | None] = {}
    for caller, expected in case.answers.items():
        if expected is None:
            got[caller] = None
            continue
        r = await http.request(case.method, url, headers=world.headers(caller),
                               json=case.body)
        got[caller] = r.status_code
        if r.status_code in (401, 403):
            assert r.json()["error"]["code"] in ("unauthorized", "forbidden"), r.text
        if r.headers.get("content-type", "").startswith("application/json"):
            # callers, members' names and phones, positions: kept by no browser nor proxy
            assert r.headers.get("cache-control") == "no-store", (caller, r.status_code)
    assert got == dict(case.answers)


async def test_each_dispatch_route_is_decided_for_an_agency_desk() -> None:
    """An agency's desk sees only what it should (DESIGN, DOMAIN's non-negotiables): every
    route of dispatch has its decision in AGENCY_DESK, and none is listed that is gone."""
    routes = set(_dispatch_routes())
    assert sorted(routes - set(AGENCY_DESK)) == [], "decide what an agency desk gets of these"
    assert sorted(set(AGENCY_DESK) - routes) == [], "no such route of dispatch's any more"


async def test_the_matrix_asks_an_agency_desk_each_dispatch_route_as_decided() -> None:
    """Each route of dispatch is asked of the agency desk by a row of the matrix at least,
    and answers as AGENCY_DESK decided: a refused route 403 in every row, its own view 2xx in
    one row at least (another district's or agency's object may still be a 403), a public
    one 200."""
    routes = _dispatch_routes()
    asked: dict[str, list[int]] = {key: [] for key in routes}
    for case in MATRIX:
        if case.service != "dispatch" or case.answers[AGENCY] is None:
            continue
        key = _route_of(case, routes)
        assert key is not None, f"{case.id}: no route of dispatch's serves it"
        asked[key].append(case.answers[AGENCY])  # type: ignore[arg-type]
    for key, answers in asked.items():
        decided = AGENCY_DESK.get(key)
        assert answers, f"{key}: the matrix never asks it of an agency desk"
        if decided == "refused":
            assert set(answers) == {403}, (key, answers)
        elif decided == "own":
            assert any(200 <= a < 300 for a in answers), (key, answers)
        else:
            assert decided == "public" and set(answers) == {200}, (key, decided, answers)


async def test_each_volunteers_route_is_decided_for_a_coordinator() -> None:
    """A volunteer coordinator sees only what it should (DESIGN, DOMAIN's non-negotiables):
    every route of volunteers has its decision in COORDINATOR_DECISIONS, and none is listed
    that is gone."""
    routes = set(_volunteers_routes())
    assert sorted(routes - set(COORDINATOR_DECISIONS)) == [], (
        "decide what a volunteer coordinator gets of these")
    assert sorted(set(COORDINATOR_DECISIONS) - routes) == [], "no such route of volunteers' any more"


async def test_the_matrix_asks_a_coordinator_each_volunteers_route_as_decided() -> None:
    """Each route of volunteers is asked of d1's coordinator by a row of the matrix at least,
    and answers as COORDINATOR_DECISIONS decided: a refused route 403 in every row; its own
    work past its kind in one row at least (2xx, or the 404 or 409 `require` would have
    answered 403 before) and 403 for d2's roster in another; its own record 2xx; a public
    one 200."""
    routes = _volunteers_routes()
    asked: dict[str, list[int]] = {key: [] for key in routes}
    for case in MATRIX:
        if case.service != "volunteers" or case.answers[COORDINATOR] is None:
            continue
        key = _route_of(case, routes)
        assert key is not None, f"{case.id}: no route of volunteers' serves it"
        asked[key].append(case.answers[COORDINATOR])  # type: ignore[arg-type]
    for key, answers in asked.items():
        decided = COORDINATOR_DECISIONS.get(key)
        assert answers, f"{key}: the matrix never asks it of a coordinator"
        if decided == "refused":
            assert set(answers) == {403}, (key, answers)
        elif decided == "own":
            assert any(200 <= a < 300 or a in (404, 409) for a in answers), (key, answers)
            assert 403 in answers, (key, "never asked of another district's", answers)
        elif decided == "self":
            assert all(200 <= a < 300 for a in answers), (key, answers)
        else:
            assert decided == "public" and set(answers) == {200}, (key, decided, answers)


async def test_a_coordinator_reads_its_own_district_s_roster_only(
        world: World, http: httpx.AsyncClient) -> None:
    """d1's coordinator: d1's volunteers with their phones, no officer nor guard; nothing of
    d2 in what it reads."""
    volunteers = world.urls["volunteers"]
    r = await http.get(f"{volunteers}/v1/members", params={"district": "d1", "limit": 500},
                       headers=world.headers(COORDINATOR))
    assert r.status_code == 200, r.text
    assert {(m["district"], m["role"]) for m in r.json()["items"]} == {("d1", "volunteer")}
    r = await http.get(f"{volunteers}/v1/shifts/now", params={"district": "d1"},
                       headers=world.headers(COORDINATOR))
    assert r.status_code == 200 and "d2-" not in r.text, r.text
    assert {t["agency_kind"] for t in r.json()["teams"]} <= {"volunteer"}


@pytest.mark.parametrize("service", ["intake", "dispatch", "volunteers", "notify"])
async def test_the_api_page_needs_nothing_from_the_internet(world: World, http: httpx.AsyncClient,
                                                            service: str) -> None:
    # A station's server is often off the Internet, and `/docs` shares its origin with the
    # console, whose token the browser keeps: Swagger UI's script and style came from a CDN
    # (a blank page offline, and a third party's script beside the dispatcher's token).
    page = await http.get(world.urls[service] + "/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text, page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = await http.get(f"{world.urls[service]}/docs/static/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
        assert "no-store" not in r.headers.get("cache-control", "")  # no one's data: cacheable
    assert (await http.get(world.urls[service] + "/docs/static/../../metrics")).status_code in (
        401, 404)


# The device socket: a team's device gets its `hello` and then its own team's orders only;
# the admin's token and the services' key (of no team) are closed with 4403, any other
# caller with 4401.
SOCKET: dict[str, int | str] = {**each(CALLERS, 4401), "admin": 4403, "services": 4403,
                                "device_a": "order_a", "device_b": "order_b"}


@pytest.mark.parametrize("in_url", [False, True], ids=["header", "query"])
@pytest.mark.parametrize("caller", CALLERS)
async def test_the_device_socket_gives_each_team_its_own_orders(world: World, caller: str,
                                                                in_url: bool) -> None:
    url = world.urls["notify"].replace("http://", "ws://") + "/v1/devices/stream"
    token = world.tokens.get(caller)
    if in_url and token:  # as the member's page must: a browser sets no socket headers
        opened = connect(f"{url}?token={token}")
    else:
        opened = connect(url, additional_headers=world.headers(caller))
    frames: list[dict[str, Any]] = []
    async with opened as ws:
        try:
            frames.append(json.loads(await ws.recv()))
            # the connect's replay is queued before the socket reads: the pong comes after it
            await ws.send(json.dumps({"type": "ping"}))
            while frames[-1]["type"] != "pong":
                frames.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            assert (caller, closed.rcvd.code) == (caller, SOCKET[caller])
            return
    expected = world.names[str(SOCKET[caller])]
    assert frames[0]["type"] == "hello"
    assert {f["order_id"] for f in frames if "order_id" in f} == {expected}
    # need to know: the caller's number reaches the police team's phones only
    assert (CALLER_PHONE in json.dumps(frames)) == (caller == "device_a")


async def test_a_desk_reads_its_own_districts_only(world: World,
                                                   http: httpx.AsyncClient) -> None:
    dispatch = world.urls["dispatch"]

    async def read(caller: str, path: str) -> dict[str, Any]:
        r = await http.get(f"{dispatch}{path}", headers=world.headers(caller))
        assert r.status_code == 200, r.text
        return r.json()

    for caller in ("desk_d1", "inspector_d1"):
        board = await read(caller, "/v1/incidents")
        assert {i["district"] for i in board["incidents"]} == {"d1"}
        assert {world.names["inc_d1"], world.names["inc_a"]} <= {
            i["incident_id"] for i in board["incidents"]}
        hunted = await read(caller, "/v1/incidents?problem=routing_timeout")
        assert {i["district"] for i in hunted["incidents"]} <= {"d1"}
        units = await read(caller, "/v1/units?district=d1")
        assert units["count"] and all(u["team_id"].startswith("d1-") for u in units["units"])
        kpis = await read(caller, "/v1/kpis?district=d1")
        assert "noise" not in kpis["by_category"]  # d2's incident
    board = await read("admin", "/v1/incidents")
    assert {i["district"] for i in board["incidents"]} == {"d1", "d2"}


async def test_an_agency_desk_reads_its_own_teams_and_orders_only(
        world: World, http: httpx.AsyncClient) -> None:
    """d1's security company: its guard post (B) and B's order of the fight, never the
    police patrol (A) beside it nor A's order, nor the caller the police order carried."""
    dispatch = world.urls["dispatch"]

    async def read(path: str) -> dict[str, Any]:
        r = await http.get(f"{dispatch}{path}", headers=world.headers(AGENCY))
        assert r.status_code == 200, r.text
        assert CALLER_PHONE not in r.text and "Huang" not in r.text and "north gate" not in r.text
        assert world.names["order_a"] not in r.text and "d1-patrol-near" not in r.text
        return r.json()

    units = await read("/v1/units?district=d1")
    assert [(u["team_id"], u["agency_id"], u["open_order_id"]) for u in units["units"]] == [
        ("d1-sec-1", "d1-sec", world.names["order_b"])]
    board = await read("/v1/incidents")
    assert [(i["incident_id"], [o["order_id"] for o in i["orders"]])
            for i in board["incidents"]] == [(world.names["inc_d1"], [world.names["order_b"]])]
    fight = await read(f"/v1/incidents/{world.names['inc_d1']}")
    [order] = fight["orders"]
    assert order["order_id"] == world.names["order_b"] and order["acknowledged_at"]
    figures = await read("/v1/kpis?district=d1")
    assert (figures["incidents"], figures["orders"], list(figures["by_team"])) == (
        1, 1, ["d1-sec-1"])
