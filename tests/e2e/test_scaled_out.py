"""The stack scaled out as docs/operations.md ("Scaling out") advises: volunteers with
HTTP_WORKERS=2, two notify replicas (the phones of one team on different ones) and two
dispatch processes, on one Redis. An order reaches every phone of its team once whichever
replica it is on, an answer given on either replica is taken once, a missed deadline fires
once and its SMS goes once (once too when a dispatch process dies), and the phones of a
replica that dies get the order from the other when they reconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from shared import streams
from shared.events import OrderResponded
from tests.e2e.conftest import running_stack
from tests.e2e.journey import (
    Device,
    SmsGateway,
    admin,
    bearer,
    enrol,
    new_district,
    on_shift_at,
    register_system,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until, read_stream
from tools.redis_server import free_port
from tools.stack import Service, Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8170, 108.3665)
SMS_PHONE = "+8613800000001"


def scaled_out(stack: Stack) -> None:
    """volunteers with two workers; a second notify and a second dispatch (`notify-2`,
    `dispatch-2`), each on a port of its own with the environment of the first."""
    stack.services["volunteers"].env["HTTP_WORKERS"] = "2"
    for name in ("notify", "dispatch"):
        port = free_port()
        env = {**stack.services[name].env, "HTTP_PORT": str(port),
               "TRACES_FILE": str(stack.traces_dir / f"{name}-2.jsonl")}
        stack.services[f"{name}-2"] = Service(name, port, env,
                                              stack.workdir / "logs" / f"{name}-2.log")


@pytest.fixture(scope="module")
def sms_gateway() -> Iterator[SmsGateway]:
    with SmsGateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sms_gateway: SmsGateway) -> Iterator[Stack]:
    def shorter(policy: dict[str, Any]) -> None:
        policy["deadlines_s"]["P4"] = 3

    env = {"FALLBACK_CHANNELS": "sms", "SMS_GATEWAY_URL": sms_gateway.url,
           "FALLBACK_AFTER_S": "1"}
    with running_stack(tmp_path_factory.mktemp("scaled"), shorter, env,
                       scale=scaled_out) as running:
        yield running


async def phone(stack: Stack, replica: str, token: str, exits: AsyncExitStack) -> Device:
    url = stack.url(replica).replace("http://", "ws://") + "/v1/devices/stream"
    return Device(await exits.enter_async_context(connect(url,
                                                          additional_headers=bearer(token))))


def orders_among(frames: list[dict[str, Any]], order_id: str) -> int:
    return sum(1 for f in frames if f.get("type") == "order" and f.get("order_id") == order_id)


class District:
    def __init__(self, client: httpx.AsyncClient, stack: Stack) -> None:
        self.client, self.stack = client, stack
        self.name = ""
        self.key = ""

    async def open(self, *members: str) -> list[str]:
        self.name = await new_district(self.client, self.stack, SCENE)
        tokens = [await enrol(self.client, self.stack, f"{self.name}-m-{m}") for m in members]
        return tokens

    async def report(self, category: str, ref: str) -> str:
        if not self.key:
            self.key = await register_system(self.client, self.stack, self.name)
        lat, lon = SCENE
        r = await self.client.post(f"{self.stack.url('intake')}/v1/incidents",
                                   headers=bearer(self.key), json={
                                       "external_ref": f"{ref}-{self.name}",
                                       "category": category, "district": self.name,
                                       "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 202, r.text
        return r.json()["incident_id"]

    async def timeline(self, incident_id: str, replica: str = "dispatch") -> list[dict]:
        r = await self.client.get(f"{self.stack.url(replica)}/v1/incidents/{incident_id}",
                                  headers=admin(self.stack))
        if r.status_code == 404:  # the report not yet read by dispatch
            return []
        assert r.status_code == 200, r.text
        return r.json()["timeline"]


async def test_every_process_is_ready_and_volunteers_workers_count_on_their_own(
        stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in stack.services:
            r = await client.get(f"{stack.url(name)}/readyz")
            assert r.status_code == 200, (name, r.text)
            r = await client.get(f"{stack.url(name)}/metrics", headers=admin(stack))
            assert r.status_code == 200, (name, r.text)
            # two workers: each worker's series its own; one process: no such label
            labelled = [line for line in r.text.splitlines()
                        if line.startswith("lianfang_") and "service_instance_id=" in line]
            assert bool(labelled) == (name == "volunteers"), (name, labelled[:3])


async def test_an_order_reaches_each_phone_once_on_either_replica_and_one_answer_is_taken(
        stack: Stack) -> None:
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = District(client, stack)
        officer, auxiliary = await d.open("near-1", "near-2")
        on_one = await phone(stack, "notify", officer, exits)
        on_two = await phone(stack, "notify-2", auxiliary, exits)
        # the fixes go through volunteers' two workers
        await on_shift_at(client, stack, officer, lat + 0.004, lon)
        await on_shift_at(client, stack, auxiliary, lat + 0.004, lon)
        await wait_until_dispatch_sees(client, stack, d.name, 1, timeout=20)

        incident_id = await d.report("dispute", "scaled")
        order = await on_one.order_for(client, stack, incident_id, timeout=15)
        assert (await on_two.order_for(client, stack, incident_id))["order_id"] == \
            order["order_id"]
        # both members acknowledge at once, each on their replica, by socket and by HTTP
        await asyncio.gather(
            on_one.send({"type": "response", "order_id": order["order_id"],
                         "response": "acknowledged"}),
            client.post(f"{stack.url('notify-2')}/v1/orders/{order['order_id']}/responses",
                        headers=bearer(auxiliary), json={"response": "acknowledged"}))

        async def acknowledged() -> bool:
            timeline = await d.timeline(incident_id, "dispatch-2")
            return any(e["kind"] == "response" for e in timeline)

        await poll_until(acknowledged, "the acknowledgement at dispatch", timeout=15)
        for device in (on_one, on_two):
            await device.drain(2)
            assert orders_among(device.frames, order["order_id"]) == 0, device.frames
        answers = [e for e in read_stream(stack.redis_url, streams.ORDER_RESPONDED.name,
                                          OrderResponded) if e.order_id == order["order_id"]]
        assert [a.response for a in answers] == ["acknowledged"]
        timeline = await d.timeline(incident_id)
        assert [e["status"] for e in timeline if e["kind"] == "response"] == ["acknowledged"]


async def test_a_missed_deadline_fires_once_and_its_sms_goes_once(
        stack: Stack, sms_gateway: SmsGateway) -> None:
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client:
        d = District(client, stack)
        [guard] = await d.open("sec")
        await on_shift_at(client, stack, guard, lat + 0.001, lon)
        r = await client.post(f"{stack.url('notify-2')}/v1/devices/me/sms",
                              headers=bearer(guard), json={"phone": SMS_PHONE})
        assert r.status_code == 200, r.text
        await wait_until_dispatch_sees(client, stack, d.name, 1, timeout=20)

        incident_id = await d.report("noise", "missed")  # P4: 3 s here

        async def timed_out() -> list[dict]:
            return [e for e in await d.timeline(incident_id) if e["kind"] == "timeout"]

        [timeout] = await poll_until(timed_out, "the deadline missed", timeout=20)

        def texts() -> list[str]:
            return [m["kind"] for m in sms_gateway.messages
                    if m.get("order_id") == timeout["order_id"]]

        await poll_until(lambda: "withdrawn" in texts(), "the withdrawal's SMS", timeout=20)
        await asyncio.sleep(3)  # a second firing, by the other process, would be in by now
        assert sorted(texts()) == ["order", "withdrawn"]
        assert [e["order_id"] for e in await timed_out()] == [timeout["order_id"]]


async def test_the_phones_of_a_killed_replica_get_the_order_from_the_other(
        stack: Stack) -> None:
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = District(client, stack)
        officer, auxiliary = await d.open("near-1", "near-2")
        on_one = await phone(stack, "notify", officer, exits)
        await phone(stack, "notify-2", auxiliary, exits)
        await on_shift_at(client, stack, officer, lat + 0.004, lon)
        await on_shift_at(client, stack, auxiliary, lat + 0.004, lon)
        await wait_until_dispatch_sees(client, stack, d.name, 1, timeout=20)

        incident_id = await d.report("dispute", "killed")
        stack.kill("notify-2")  # SIGKILL: whatever it had read stays pending for the other
        assert not stack.services["notify-2"].alive()
        moved = await phone(stack, "notify", auxiliary, exits)
        order = await moved.order_for(client, stack, incident_id, timeout=20)
        assert (await on_one.order_for(client, stack, incident_id))["order_id"] == \
            order["order_id"]
        for device in (on_one, moved):
            await device.drain(2)
            assert orders_among(device.frames, order["order_id"]) == 0, \
                json.dumps(device.frames)


async def test_the_deadline_of_an_order_fires_once_when_a_dispatch_process_dies(
        stack: Stack) -> None:
    # Both dispatch processes scan the timers; whichever holds one's lease dies with it: the
    # other fires it once the lease runs out (TIMER_LEASE_S), never not at all.
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = District(client, stack)
        [guard] = await d.open("sec")
        guard_phone = await phone(stack, "notify", guard, exits)
        await on_shift_at(client, stack, guard, lat + 0.001, lon)
        await wait_until_dispatch_sees(client, stack, d.name, 1, timeout=20)

        incident_id = await d.report("noise", "dispatch-died")  # P4: 3 s here
        order = await guard_phone.order_for(client, stack, incident_id, timeout=15)
        stack.kill("dispatch")
        assert not stack.services["dispatch"].alive()

        withdrawn = await guard_phone.next_of("order_withdrawn", timeout=30)
        assert withdrawn["order_id"] == order["order_id"]
        await asyncio.sleep(3)  # a second firing would be in by now
        timeline = await d.timeline(incident_id, "dispatch-2")
        assert [e["order_id"] for e in timeline if e["kind"] == "timeout"] == [order["order_id"]]
