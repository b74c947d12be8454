"""One service in-process against a real Redis, and for each stream it consumes a valid event
with a visible effect: the proof that its consumer still works (poison and fuzz tests).

Each service has a scenario: valid events on every stream it reads, in an order that makes
sense (a team before the incident it is sent to). The scenario hands each event to a `step`,
which publishes it (after poisoning the stream, for the poison test) and waits for the effect.
`tag` makes every id in a scenario unique, so anything a test published before cannot
collide with it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol
from uuid import uuid4

import httpx
from faststream.redis import RedisBroker
from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import BaseModel
from redis.asyncio import Redis

from shared import streams
from shared.events import (
    DeviceRevoked,
    IncidentCancelRequested,
    IncidentClosed,
    IncidentHandedOver,
    IncidentReported,
    IncidentUpdated,
    Location,
    OrderAmended,
    OrderDelivered,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    TimelineEntry,
    UnitPosition,
    UnitStatus,
    utcnow,
)
from shared.runtime import proxy_options
from tests.helpers import poll_until, serving
from tests.integration.notify.conftest import roster_of

ADMIN_TOKEN = "probe-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UNREACHABLE = "http://127.0.0.1:9"  # dispatch's zone lookups fail fast: no volunteers here
HERE = (22.8170, 108.3665)
DISTRICT = "d1"

Effect = Callable[[], Awaitable[Any]]


class Step(Protocol):
    async def __call__(self, stream: streams.Stream, valid: BaseModel, effect: Effect) -> None: ...


async def envelope(body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """FastStream's own binary envelope, as a publisher writes it, around `body`."""
    return await BinaryMessageFormatV1.encode(
        message=body, reply_to=None, correlation_id=uuid4().hex,
        headers={"content-type": "application/json"} if headers is None else headers)


@dataclass
class Service:
    name: str
    client: httpx.AsyncClient  # the app, in-process
    redis: Redis  # bytes, as another service reads the streams
    broker: RedisBroker  # publishes as the producing service would
    covered: set[str] = field(default_factory=set)

    async def publish(self, stream: streams.Stream, event: BaseModel) -> None:
        await self.broker.publish(event, stream=stream.name)

    async def dead_letters(self, stream: str) -> list[dict[bytes, bytes]]:
        return [f for _, f in await self.redis.xrange(f"dlq.{stream}")
                if f.get(b"group") == self.name.encode()]

    async def drained(self, stream: str) -> bool:
        """This service's group has read everything in `stream` and holds nothing pending."""
        if not await self.redis.exists(stream):
            return True
        for group in await self.redis.xinfo_groups(stream):
            if group["name"] == self.name.encode():
                if group["pending"]:
                    return False
                last = group["last-delivered-id"].decode()
                return not await self.redis.xrange(stream, min=f"({last}", count=1)
        return False

    async def all_drained(self) -> bool:
        for stream in streams.consumed_by(self.name):
            if not await self.drained(stream.name):
                return False
        return True

    async def ready(self) -> bool:
        return (await self.client.get("/readyz")).status_code == 200

    def assert_every_consumed_stream_covered(self) -> None:
        consumed = {s.name for s in streams.consumed_by(self.name)}
        assert self.covered == consumed, f"streams {self.name} reads without a check: " \
                                         f"{sorted(consumed - self.covered)}"

    async def replay_the_dead_letter(self, stream: streams.Stream) -> None:
        """Replay, through the service's admin endpoint, its one dead letter of `stream`."""
        r = await self.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                  params={"stream": stream.name})
        assert r.status_code == 200, r.text
        (letter,) = [d for d in r.json()["dead_letters"] if d["group"] == self.name]
        r = await self.client.post(
            f"/v1/admin/dead-letters/{stream.name}/{letter['dead_letter_id']}/replay",
            headers=ADMIN)
        assert r.status_code == 200, r.text


@asynccontextmanager
async def running(name: str, redis_url: str, roster: Sequence[str] = (DISTRICT,),
                  *, served: bool = False, **overrides: Any) -> AsyncIterator[Service]:
    """The service's app with its lifespan (groups, broker, subscribers), in this process.
    Intake finds volunteers stood in, its roster holding the districts of `roster` (a
    system's key is made for those only); the others find none. `served`: behind a real
    uvicorn server, for what httpx's in-process transport cannot show (it answers only once
    the app has returned, where a server sends what the app sent at once)."""
    main = importlib.import_module(f"services.{name}.main")
    config = importlib.import_module(f"services.{name}.config")
    async with AsyncExitStack() as stack:
        volunteers_url = UNREACHABLE
        if name == "intake" and "volunteers_url" not in overrides:
            volunteers_url = (await stack.enter_async_context(roster_of(*roster))).url
        options: dict[str, Any] = {"claim_idle_ms": 200, "max_deliveries": 3,
                                   "consumer_name": f"probe-{uuid4().hex[:6]}",
                                   "volunteers_url": volunteers_url, **overrides}
        settings = config.Settings(redis_url=redis_url, admin_token=ADMIN_TOKEN, **options)
        app = main.create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        if served:
            url = await stack.enter_async_context(
                serving(app, lifespan="off", **proxy_options(settings)))
            client_options: dict[str, Any] = {"base_url": url, "timeout": 30}
        else:
            client_options = {"transport": httpx.ASGITransport(app=app),
                              "base_url": f"http://{name}"}
        redis = Redis.from_url(redis_url)
        broker = RedisBroker(redis_url)
        await broker.connect()
        try:
            async with httpx.AsyncClient(**client_options) as client:
                yield Service(name, client, redis, broker)
        finally:
            await broker.stop()
            await redis.aclose()


def plain_step(svc: Service) -> Step:
    """Publish the valid event and wait for its effect."""
    async def step(stream: streams.Stream, valid: BaseModel, effect: Effect) -> None:
        assert svc.name in stream.consumers
        await svc.publish(stream, valid)
        await poll_until(effect, f"{svc.name} processing a valid {stream.name} event", 15)
        svc.covered.add(stream.name)

    return step


# --- events ---------------------------------------------------------------------------------


def incident_updated(incident_id: str, status: str = "assigned") -> IncidentUpdated:
    return IncidentUpdated(district=DISTRICT, incident_id=incident_id, seq=1, status=status,
                           priority="P4", entry=TimelineEntry(kind="status"))


def unit_status(team_id: str) -> UnitStatus:
    return UnitStatus(district=DISTRICT, unit_id=team_id, status="available", agency_id="a1",
                      agency_kind="police", agency_role="patrol", mode="car", on_shift=True)


def unit_position(team_id: str) -> UnitPosition:
    return UnitPosition(district=DISTRICT, unit_id=team_id, lat=HERE[0] + 0.001, lon=HERE[1],
                        at=utcnow())


def incident_reported(incident_id: str, category: str = "noise") -> IncidentReported:
    return IncidentReported(district=DISTRICT, incident_id=incident_id, system_id="s1",
                            external_ref=incident_id, category=category, priority="P4",
                            location=Location(lat=HERE[0], lon=HERE[1]), reported_at=utcnow())


def cancel_requested(incident_id: str) -> IncidentCancelRequested:
    return IncidentCancelRequested(district=DISTRICT, incident_id=incident_id,
                                   report_id=incident_id, system_id="s1",
                                   external_ref=f"cancel-{incident_id}",
                                   reason="the caller says he dialled by mistake",
                                   requested_at=utcnow())


def order_delivered(order_id: str, incident_id: str, team_id: str) -> OrderDelivered:
    return OrderDelivered(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                          team_id=team_id, member_id="m1", device_id="dev1")


def order_responded(order_id: str, incident_id: str, team_id: str,
                    response: str) -> OrderResponded:
    return OrderResponded(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                          team_id=team_id, member_id="m1", device_id="dev1",
                          response=response)  # type: ignore[arg-type]


def order_issued(order_id: str, team_id: str, incident_id: str = "inc1") -> OrderIssued:
    return OrderIssued(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                       team_id=team_id, agency_kind="security", category="noise",
                       priority="P4", location=Location(lat=HERE[0], lon=HERE[1]),
                       ack_by=utcnow() + timedelta(minutes=5))


def order_amended(order_id: str, team_id: str, incident_id: str = "inc1") -> OrderAmended:
    return OrderAmended(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                        team_id=team_id, priority="P1", flags=("weapon",))


def order_withdrawn(order_id: str, team_id: str, incident_id: str = "inc1") -> OrderWithdrawn:
    return OrderWithdrawn(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                          team_id=team_id, reason="timeout")


def stood_down(order_id: str, team_id: str, incident_id: str = "inc1") -> OrderWithdrawn:
    """A team's withdrawal because the incident ended without it: it carries its entry."""
    return OrderWithdrawn(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                          team_id=team_id, reason="closed", entry=TimelineEntry(
                              kind="withdrawn", team_id=team_id, order_id=order_id,
                              detail="stood down: the incident was closed by admin:admin",
                              detail_code="stood_down_closed", detail_args={"by": "admin:admin"}))


def incident_closed(incident_id: str, category: str,
                    resolved_by: tuple[str, ...] = ()) -> IncidentClosed:
    return IncidentClosed(district=DISTRICT, incident_id=incident_id, final_status="resolved",
                          resolved_by=resolved_by, category=category)


def device_revoked(device_id: str, team_id: str) -> DeviceRevoked:
    return DeviceRevoked(district=DISTRICT, device_id=device_id, member_id="m1",
                         team_id=team_id)


# Examples of every consumed stream's event, for fuzzing: in a district and with ids of
# their own, so that what the fuzzer makes of them never competes with a scenario's.
def _samples() -> dict[str, BaseModel]:
    def fz(event: BaseModel) -> BaseModel:
        return event.model_copy(update={"district": "fz-district"})

    return {
        streams.INCIDENT_REPORTED.name: fz(incident_reported("fz-inc")),
        streams.INCIDENT_CANCEL_REQUESTED.name: fz(cancel_requested("fz-inc")),
        streams.INCIDENT_UPDATED.name: fz(incident_updated("fz-inc")),
        streams.INCIDENT_CLOSED.name: fz(incident_closed("fz-inc", "hazard_report",
                                                         ("fz-team",))),
        streams.ORDER_ISSUED.name: fz(order_issued("fz-ord", "fz-team", "fz-inc")),
        streams.ORDER_WITHDRAWN.name: fz(stood_down("fz-ord", "fz-team", "fz-inc")),
        streams.ORDER_AMENDED.name: fz(order_amended("fz-ord", "fz-team", "fz-inc")),
        streams.ORDER_DELIVERED.name: fz(order_delivered("fz-ord", "fz-inc", "fz-team")),
        streams.ORDER_RESPONDED.name: fz(order_responded("fz-ord", "fz-inc", "fz-team",
                                                         "resolved")),
        streams.UNIT_STATUS.name: fz(unit_status("fz-team")),
        streams.UNIT_POSITION.name: fz(unit_position("fz-team")),
        streams.DEVICE_REVOKED.name: fz(device_revoked("fz-dev", "fz-team")),
        streams.INCIDENT_HANDED_OVER.name: IncidentHandedOver(
            district="fz-district", incident_id="fz-inc", station_agency_id="fz-station"),
    }


SAMPLES: dict[str, BaseModel] = _samples()


# --- intake -----------------------------------------------------------------------------------


async def reported_at_intake(svc: Service, tag: str) -> str:
    r = await svc.client.post("/v1/systems", headers=ADMIN,
                              json={"name": "110", "districts": [DISTRICT]})
    assert r.status_code == 201, r.text
    key = {"Authorization": f"Bearer {r.json()['api_key']}"}
    r = await svc.client.post("/v1/incidents", headers=key, json={
        "external_ref": f"ref-{tag}", "category": "noise", "district": DISTRICT,
        "location": {"lat": HERE[0], "lon": HERE[1]}})
    assert r.status_code == 202, r.text
    return str(r.json()["incident_id"])


async def intake_incident(svc: Service, incident_id: str) -> dict[str, Any]:
    r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def intake_scenario(svc: Service, step: Step, tag: str) -> None:
    incident_id = await reported_at_intake(svc, tag)

    async def assigned() -> bool:
        return (await intake_incident(svc, incident_id))["status"] == "assigned"

    async def off_the_open_index() -> bool:
        return await svc.redis.zscore(f"intake:open:{DISTRICT}:noise", incident_id) is None

    async def stood_down_seen() -> bool:
        timeline = (await intake_incident(svc, incident_id))["timeline"]
        return any(e.get("detail_code") == "stood_down_closed" for e in timeline)

    await step(streams.INCIDENT_UPDATED, incident_updated(incident_id), assigned)
    await step(streams.ORDER_WITHDRAWN, stood_down(f"ord-{tag}", "t1", incident_id),
               stood_down_seen)
    await step(streams.INCIDENT_CLOSED, incident_closed(incident_id, "noise"), off_the_open_index)


# --- dispatch -----------------------------------------------------------------------------------


async def dispatch_units(svc: Service) -> dict[str, dict[str, Any]]:
    r = await svc.client.get("/v1/units", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    return {u["team_id"]: u for u in r.json()["units"]}


async def dispatch_incident(svc: Service, incident_id: str) -> dict[str, Any] | None:
    r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code in (200, 404), r.text
    return dict(r.json()) if r.status_code == 200 else None


async def dispatch_status(svc: Service, incident_id: str) -> str | None:
    return ((await dispatch_incident(svc, incident_id)) or {}).get("status")


async def dispatch_scenario(svc: Service, step: Step, tag: str) -> None:
    team, incident_id = f"t-{tag}", f"inc-{tag}"

    async def known() -> bool:
        return team in await dispatch_units(svc)

    async def placed() -> bool:
        unit = (await dispatch_units(svc)).get(team)
        return bool(unit and unit["position"] and unit["status"] == "available")

    async def assigned() -> bool:
        return await dispatch_status(svc, incident_id) == "assigned"

    await step(streams.UNIT_STATUS, unit_status(team), known)
    await step(streams.UNIT_POSITION, unit_position(team), placed)
    await step(streams.INCIDENT_REPORTED, incident_reported(incident_id), assigned)
    inc = await dispatch_incident(svc, incident_id) or {}
    order_id = next(o["order_id"] for o in inc["orders"] if o["team_id"] == team)

    async def receipt() -> bool:
        inc = await dispatch_incident(svc, incident_id) or {}
        return any(e["kind"] == "receipt" for e in inc["timeline"])

    async def acknowledged() -> bool:
        return await dispatch_status(svc, incident_id) == "acknowledged"

    await step(streams.ORDER_DELIVERED, order_delivered(order_id, incident_id, team), receipt)
    await step(streams.ORDER_RESPONDED,
               order_responded(order_id, incident_id, team, "acknowledged"), acknowledged)

    async def flagged_for_the_command_room() -> bool:
        inc = await dispatch_incident(svc, incident_id) or {}
        return "cancel_requested" in inc.get("flagged_for", ())

    await step(streams.INCIDENT_CANCEL_REQUESTED, cancel_requested(incident_id),
               flagged_for_the_command_room)


async def assigned_in_dispatch(svc: Service, tag: str) -> tuple[str, str, str]:
    """A team on shift and an incident given to it: (team, incident, order)."""
    team, incident_id = f"t-{tag}", f"inc-{tag}"
    await plain_step(svc)(streams.UNIT_STATUS, unit_status(team),
                          lambda: _truthy(dispatch_units(svc), team))
    await svc.publish(streams.UNIT_POSITION, unit_position(team))

    async def placed() -> bool:
        unit = (await dispatch_units(svc)).get(team)
        return bool(unit and unit["position"])

    await poll_until(placed, "dispatch knowing where the team is")
    await svc.publish(streams.INCIDENT_REPORTED, incident_reported(incident_id))
    await poll_until(lambda: _is(dispatch_status(svc, incident_id), "assigned"), "assigned")
    inc = await dispatch_incident(svc, incident_id) or {}
    return team, incident_id, inc["orders"][0]["order_id"]


# --- notify -------------------------------------------------------------------------------------


async def notify_order(svc: Service, order_id: str) -> dict[str, Any] | None:
    r = await svc.client.get(f"/v1/orders/{order_id}", headers=ADMIN)
    assert r.status_code in (200, 404), r.text
    return dict(r.json()) if r.status_code == 200 else None


async def notify_scenario(svc: Service, step: Step, tag: str) -> None:
    team, order_id, device = f"t-{tag}", f"o-{tag}", f"dev-{tag}"

    async def withdrawn() -> bool:
        return bool((await notify_order(svc, order_id) or {}).get("withdrawn"))

    async def forgotten() -> bool:
        return not await svc.redis.exists(f"notify:device:{device}")

    async def amended() -> bool:
        stored = await svc.redis.hget(f"notify:order:{order_id}", "event")
        return stored is not None and OrderIssued.model_validate_json(stored).priority == "P1"

    await step(streams.ORDER_ISSUED, order_issued(order_id, team), lambda: notify_order(svc, order_id))
    await step(streams.ORDER_AMENDED, order_amended(order_id, team), amended)
    await step(streams.ORDER_WITHDRAWN, order_withdrawn(order_id, team), withdrawn)
    await svc.redis.hset(f"notify:device:{device}", mapping={"member_id": "m1", "team_id": team})
    await svc.redis.sadd(f"notify:team:{team}:devices", device)
    await step(streams.DEVICE_REVOKED, device_revoked(device, team), forgotten)


# --- volunteers ---------------------------------------------------------------------------------


def roster(tag: str) -> dict[str, Any]:
    return {
        "district": DISTRICT,
        "agencies": [{"id": f"v-{tag}", "name": "Red armbands", "kind": "volunteer"}],
        "zones": [],
        "teams": [{"id": f"t-{tag}", "agency_id": f"v-{tag}", "name": "Aunties", "mode": "foot",
                   "skills": [], "home_zone_id": None}],
        "members": [{"id": f"m-{tag}", "name": "Auntie Wang", "agency_id": f"v-{tag}",
                     "team_id": f"t-{tag}", "role": "volunteer"}],
    }


async def on_shift(svc: Service, tag: str) -> dict[str, str]:
    """A volunteer team of one on shift; returns its member's device headers."""
    r = await svc.client.post("/v1/roster/import", headers=ADMIN, json=roster(tag))
    assert r.status_code == 200, r.text
    r = await svc.client.post(f"/v1/members/m-{tag}/devices", headers=ADMIN)
    assert r.status_code == 201, r.text
    device = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await svc.client.post("/v1/me/shift/start", headers=device)
    assert r.status_code == 200, r.text
    return device


async def team_status(svc: Service, team_id: str) -> str:
    r = await svc.client.get(f"/v1/teams/{team_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return str(r.json()["state"]["status"])


async def points(svc: Service, device: dict[str, str]) -> list[str]:
    r = await svc.client.get("/v1/me/points", headers=device)
    assert r.status_code == 200, r.text
    return [h["reason"] for h in r.json()["history"]]


async def volunteers_scenario(svc: Service, step: Step, tag: str) -> None:
    device = await on_shift(svc, tag)
    team = f"t-{tag}"
    await step(streams.ORDER_ISSUED, order_issued(f"o1-{tag}", team),
               lambda: _is(team_status(svc, team), "dispatched"))
    await step(streams.ORDER_RESPONDED,
               order_responded(f"o1-{tag}", f"inc1-{tag}", team, "resolved"),
               lambda: _is(team_status(svc, team), "available"))
    await svc.publish(streams.ORDER_ISSUED, order_issued(f"o2-{tag}", team))
    await poll_until(lambda: _is(team_status(svc, team), "dispatched"), "the second order")
    await step(streams.ORDER_WITHDRAWN, order_withdrawn(f"o2-{tag}", team),
               lambda: _is(team_status(svc, team), "available"))
    # a hazard report the team resolved (its answer read before its order): the closing
    # pays those who were on its shift then
    await svc.publish(streams.ORDER_RESPONDED,
                      order_responded(f"o3-{tag}", f"inc3-{tag}", team, "resolved"))

    async def resolution_kept() -> bool:
        return bool(await svc.redis.exists(f"roster:order:o3-{tag}"))

    await poll_until(resolution_kept, "the resolution recorded")
    await step(streams.INCIDENT_CLOSED, incident_closed(f"inc3-{tag}", "hazard_report", (team,)),
               lambda: _contains(points(svc, device), "hazard_report"))


SCENARIOS: dict[str, Callable[[Service, Step, str], Awaitable[None]]] = {
    "intake": intake_scenario,
    "dispatch": dispatch_scenario,
    "notify": notify_scenario,
    "volunteers": volunteers_scenario,
}


# --- small awaitable predicates -----------------------------------------------------------------


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def _truthy(value: Awaitable[dict[str, Any]], key: str) -> bool:
    return bool((await value).get(key))


async def _contains(value: Awaitable[list[str]], item: str) -> bool:
    return item in await value


def as_json(event: BaseModel) -> dict[str, Any]:
    return dict(json.loads(event.model_dump_json()))
