"""Who counts as having the order: a receipt from a member on the team's shift stops the
fallback; one from a member off shift (at home, the page open) does not, and the members
on shift, offline, still get their SMS. Volunteers (who knows the shift) not answering
falls back to any receipt, and never holds up a step."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from services.notify.channels import Outcome
from services.notify.config import Settings
from services.notify.fallback import FallbackTimers
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as create_volunteers
from shared.events import OrderDelivered
from shared.runtime import stop_task
from shared.tokens import service_key
from tests.helpers import poll_until

from .conftest import (
    ADMIN,
    ADMIN_TOKEN,
    Gateway,
    Member,
    NotifyFactory,
    Volunteers,
    an_order,
    device,
    issue,
    serving,
)
from .test_fallback import Browser, settings_for

SCENE = (22.817, 108.3665)


AFTER_S = 1.0  # FALLBACK_AFTER_S: the SMS step's wait (an order without a deadline)


def sms_only(gateway: Gateway) -> dict[str, Any]:
    """One fallback step, SMS, AFTER_S after the order."""
    return {"sms_gateway_url": f"{gateway.url}/sms", "fallback_after_s": AFTER_S,
            "fallback_poll_s": 0.05}


def sms_to(gateway: Gateway, phone: str) -> list[dict[str, Any]]:
    return [body for body in (json.loads(r.body) for r in gateway.at("/sms"))
            if body["to"] == phone]


async def register_phone(http: httpx.AsyncClient, notify: str, member: Member,
                         phone: str) -> None:
    r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                        json={"phone": phone})
    assert r.status_code == 200 and r.json()["registered"], r.text


async def chain_over(redis_url: str, order_id: str, *, not_before: float = 0.0) -> bool:
    """Whether the order's fallback chain has nothing left scheduled, once its step was due
    (`not_before`)."""
    if time.time() < not_before:
        return False
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        return await store.fallback_due_at(client, order_id) is None
    finally:
        await client.aclose()


# --- with the real volunteers service ------------------------------------------------------


def roster(district: str) -> dict[str, object]:
    lat, lon = SCENE
    d = 0.02
    return {
        "district": district,
        "agencies": [{"id": f"{district}-ps", "name": "Station", "kind": "police",
                      "role": "station"}],
        "zones": [{"id": f"{district}-z1", "name": "Zone 1", "owner_agency_id": f"{district}-ps",
                   "polygon": [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d],
                               [lon - d, lat + d], [lon - d, lat - d]]}],
        "teams": [{"id": f"{district}-t1", "agency_id": f"{district}-ps", "name": "Patrol 1",
                   "mode": "car", "skills": [], "home_zone_id": f"{district}-z1"}],
        "members": [{"id": f"{district}-{m}", "name": f"Officer {m}",
                     "agency_id": f"{district}-ps", "team_id": f"{district}-t1",
                     "role": "officer"} for m in ("on", "off")],
    }


@dataclass
class Team:
    volunteers_url: str
    on: Member   # checked in: on the team's shift
    off: Member  # at home, the page open


@asynccontextmanager
async def a_team(clean_redis: str, http: httpx.AsyncClient, *,
                 checked_in: bool = True) -> AsyncIterator[Team]:
    """The real volunteers with a team of two members, one of them on shift (or nobody)."""
    district = f"d{secrets.token_hex(4)}"
    app = create_volunteers(VolunteersSettings(redis_url=clean_redis, admin_token=ADMIN_TOKEN,
                                               consumer_name=f"vol-{district}"))
    async with serving(app) as url:
        r = await http.post(f"{url}/v1/roster/import", headers=ADMIN, json=roster(district))
        assert r.status_code == 200, r.text
        members = []
        for m in ("on", "off"):
            r = await http.post(f"{url}/v1/members/{district}-{m}/devices", headers=ADMIN)
            assert r.status_code in (200, 201), r.text
            members.append(Member(token=r.json()["token"], device_id=r.json()["device_id"],
                                  member_id=f"{district}-{m}", team_id=f"{district}-t1",
                                  district=district))
        on, off = members
        if checked_in:
            r = await http.post(f"{url}/v1/me/shift/start", headers=on.bearer)
            assert r.status_code == 200 and r.json()["shift_member_ids"] == [on.member_id], r.text
        yield Team(url, on, off)


async def test_a_receipt_from_a_member_off_shift_leaves_the_sms_to_the_members_on_shift(
        notify_factory: NotifyFactory, clean_redis: str, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # The member off shift has the page open at home and confirms the order; the member on
    # shift, whose phone is offline, got no SMS: the team missed its deadline.
    async with a_team(clean_redis, http) as team, \
            notify_factory(volunteers_url=team.volunteers_url, **sms_only(gateway)) as notify:
        await register_phone(http, notify, team.on, "+8613800000001")
        await register_phone(http, notify, team.off, "+8613800000002")
        async with device(notify, team.off) as home_page:
            order = an_order(team.on.team_id, district=team.on.district)
            await issue(broker, order)
            await home_page.next_of("order")
            await home_page.send({"type": "received", "order_id": order.order_id})
            sms = await poll_until(lambda: sms_to(gateway, "+8613800000001"),
                                   "the SMS to the member on shift")
            assert sms[0]["order_id"] == order.order_id
            await poll_until(lambda: chain_over(clean_redis, order.order_id), "the chain done")
            r = await http.get(f"{notify}/v1/orders/{order.order_id}/deliveries",
                               headers=ADMIN)
        # the member who has it on the page is not texted it too
        assert sms_to(gateway, "+8613800000002") == []
        assert [(a["channel"], a["outcome"], a.get("member_id")) for a in r.json()["attempts"]
                if a["channel"] == "sms"] == [("sms", "sent", team.on.member_id)]


async def test_a_receipt_from_a_member_on_shift_stops_the_fallback(
        notify_factory: NotifyFactory, clean_redis: str, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    async with a_team(clean_redis, http) as team, \
            notify_factory(volunteers_url=team.volunteers_url, **sms_only(gateway)) as notify:
        await register_phone(http, notify, team.off, "+8613800000002")
        async with device(notify, team.on) as phone:
            order, due = an_order(team.on.team_id, district=team.on.district), time.time() + AFTER_S
            await issue(broker, order)
            await phone.next_of("order")
            await phone.send({"type": "received", "order_id": order.order_id})
            await poll_until(lambda: chain_over(clean_redis, order.order_id, not_before=due),
                             "the SMS step judged")
        assert gateway.received == []


async def test_a_team_with_nobody_on_shift_has_the_order_with_any_receipt(
        notify_factory: NotifyFactory, clean_redis: str, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # Called in off duty by the command room: whoever confirms has it for the team.
    async with a_team(clean_redis, http, checked_in=False) as team, \
            notify_factory(volunteers_url=team.volunteers_url, **sms_only(gateway)) as notify:
        await register_phone(http, notify, team.on, "+8613800000001")
        async with device(notify, team.off) as phone:
            order, due = an_order(team.on.team_id, district=team.on.district), time.time() + AFTER_S
            await issue(broker, order)
            await phone.next_of("order")
            await phone.send({"type": "received", "order_id": order.order_id})
            await poll_until(lambda: chain_over(clean_redis, order.order_id, not_before=due),
                             "the SMS step judged")
        assert gateway.received == []


# --- volunteers slow or away: the stand-in's team view ----------------------------------------


@dataclass
class ShiftVolunteers(Volunteers):
    """The conftest's stand-in, also answering the team view (the services' key) with a shift the test
    sets; `hang` makes it never answer it, `status` answer that instead."""

    shifts: dict[str, list[str]] = field(default_factory=dict)
    hang: bool = False
    status: int = 200
    team_calls: int = 0

    def app(self) -> FastAPI:
        app = super().app()

        @app.get("/v1/teams/{team_id}")
        async def team(team_id: str, request: Request) -> Response:
            self.team_calls += 1
            if request.headers.get("authorization") != f"Bearer {service_key(ADMIN_TOKEN)}":
                return JSONResponse({"error": {"code": "unauthorized", "message": "no"}},
                                    status_code=401)
            if self.hang:
                await asyncio.sleep(3600)
            if self.status != 200:
                return JSONResponse({"error": {"code": "unavailable", "message": "no"}},
                                    status_code=self.status)
            return JSONResponse({"id": team_id, "state": {
                "team_id": team_id, "on_shift": bool(self.shifts.get(team_id)),
                "shift_member_ids": self.shifts.get(team_id, [])}})

        return app


@pytest.fixture
async def volunteers() -> AsyncIterator[ShiftVolunteers]:
    standin = ShiftVolunteers()
    async with serving(standin.app()) as url:
        standin.url = url
        yield standin


@pytest.mark.parametrize("trouble", ["hang", "503"])
async def test_volunteers_unable_to_say_who_is_on_shift_means_any_receipt_counts(
        notify_factory: NotifyFactory, volunteers: ShiftVolunteers, clean_redis: str,
        gateway: Gateway, broker: RedisBroker, http: httpx.AsyncClient, trouble: str) -> None:
    on, off = volunteers.enrol("t1"), volunteers.enrol("t1")
    volunteers.shifts["t1"] = [on.member_id]
    volunteers.hang, volunteers.status = trouble == "hang", 503 if trouble == "503" else 200
    async with notify_factory(**sms_only(gateway), shift_lookup_timeout_s=0.3) as notify:
        await register_phone(http, notify, on, "+8613800000001")
        async with device(notify, off) as home_page:
            order, due = an_order("t1"), time.time() + AFTER_S
            await issue(broker, order)
            await home_page.next_of("order")
            await home_page.send({"type": "received", "order_id": order.order_id})
            await poll_until(lambda: chain_over(clean_redis, order.order_id, not_before=due),
                             "the SMS step judged")
        assert volunteers.team_calls >= 1  # asked, and not waited for past the timeout
        assert gateway.received == []  # as before notify knew shifts


async def test_an_order_nobody_confirmed_goes_out_without_asking_volunteers(
        notify_factory: NotifyFactory, volunteers: ShiftVolunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # Volunteers hanging never holds a step up: with no receipt there is nothing to judge.
    on, off = volunteers.enrol("t1"), volunteers.enrol("t1")
    volunteers.shifts["t1"] = [on.member_id]
    volunteers.hang = True
    async with notify_factory(**sms_only(gateway)) as notify:
        await register_phone(http, notify, on, "+8613800000001")
        await register_phone(http, notify, off, "+8613800000002")
        order = an_order("t1")
        await issue(broker, order)
        await poll_until(lambda: len(gateway.at("/sms")) >= 2, "both SMS")
    # off shift too: like the socket, the fallback reaches every device of the team
    assert sorted(json.loads(r.body)["to"] for r in gateway.at("/sms")) == [
        "+8613800000001", "+8613800000002"]
    assert volunteers.team_calls == 0


async def test_a_member_on_shift_confirming_after_the_first_step_stops_the_next(
        notify_factory: NotifyFactory, volunteers: ShiftVolunteers, clean_redis: str,
        gateway: Gateway, broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # Web Push then SMS. The member off shift confirms at once: the member on shift still
    # gets the Web Push, opens the page from it and confirms: the SMS is not sent.
    on, off = volunteers.enrol("t1"), volunteers.enrol("t1")
    volunteers.shifts["t1"] = [on.member_id]
    browser = Browser(f"{gateway.url}/push/on")
    settings = {**settings_for(gateway, 2.0), "fallback_poll_s": 0.05}
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=on.bearer,
                            json={"subscription": browser.subscription})
        assert r.status_code == 200, r.text
        await register_phone(http, notify, on, "+8613800000001")
        await register_phone(http, notify, off, "+8613800000002")
        async with device(notify, off) as home_page:
            order = an_order("t1")
            await issue(broker, order)
            await home_page.next_of("order")
            await home_page.send({"type": "received", "order_id": order.order_id})
            pushes = await poll_until(lambda: gateway.at("/push/on"), "the Web Push")
            sms_due = time.time() + 2.0
            assert browser.read(pushes[0].body)["order_id"] == order.order_id
            async with device(notify, on) as phone:  # opened from the notification
                await phone.next_of("order")
                await phone.send({"type": "received", "order_id": order.order_id})
                await poll_until(
                    lambda: chain_over(clean_redis, order.order_id, not_before=sms_due),
                    "the SMS step judged")
        assert gateway.at("/sms") == []
        r = await http.get(f"{notify}/v1/orders/{order.order_id}/deliveries", headers=ADMIN)
        assert [(a["channel"], a["outcome"], a.get("member_id")) for a in r.json()["attempts"]
                if a["channel"] != "websocket"] == [("webpush", "sent", on.member_id)]


# --- a receipt while a step is being sent ------------------------------------------------------


@dataclass
class FixedShifts:
    """Volunteers' answer, as the test sets it."""

    members: frozenset[str]

    async def on_shift(self, team_id: str) -> frozenset[str] | None:
        return self.members


@dataclass
class ReceiptWhileSending:
    """An SMS gateway; while its first message goes, the member off shift's page confirms
    the order (store.record_receipt): the step goes on to the members on shift."""

    sent: list[str]
    receipt: OrderDelivered
    redis: Redis
    name: str = "sms"
    contact_field: str = "phone"

    def reaches(self, device: store.DeviceRecord) -> bool:
        return device.phone is not None

    async def send(self, order: Any, device: store.DeviceRecord) -> Outcome:
        if not self.sent:
            await store.record_receipt(self.redis, self.receipt, ttl_s=600)
        self.sent.append(device.device_id)
        return Outcome("sent")


async def test_a_receipt_off_shift_while_a_step_goes_does_not_stop_it(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis, decode_responses=True)
    for device_id, member_id, phone in (("t5-dev0", "m0", "+8613800000010"),
                                        ("t5-dev1", "m1", "+8613800000011"),
                                        ("t5-dev9", "m9", None)):
        await store.touch_device(redis, device_id=device_id, member_id=member_id, team_id="t5",
                                 agency_kind="police", district="d1")
        if phone:
            await store.set_device_channel(redis, device_id, field="phone", value=phone)
    order = an_order("t5")
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0, ttl_s=600)
    sent: list[str] = []
    channel = ReceiptWhileSending(sent, OrderDelivered(
        district="d1", order_id=order.order_id, incident_id=order.incident_id, team_id="t5",
        member_id="m9", device_id="t5-dev9", channel="websocket"), redis)
    settings = Settings(redis_url=clean_redis, admin_token=ADMIN_TOKEN, fallback_poll_s=0.05)
    timers = FallbackTimers(redis=redis, orders=None, chain=[channel],  # type: ignore[arg-type]
                            settings=settings,
                            shifts=FixedShifts(frozenset({"m0", "m1"})))
    task = asyncio.create_task(timers.run())
    try:
        await poll_until(lambda: chain_over(clean_redis, order.order_id), "the step done")
        await poll_until(lambda: len(sent) >= 2, "both members on shift texted", 3)
    finally:
        await stop_task(task)
        await redis.aclose()
    assert sent == ["t5-dev0", "t5-dev1"]
