"""docs/operations.md, "Back up and restore", done as the page says on the four services:
BGREWRITEAOF, wait until no rewrite runs or waits, copy `appendonlydir/` while the stack
runs; later stop it, put the copy in place and start again. Every incident accepted before
the copy comes back as it stood (an order unanswered then is unanswered again, and the phone
gets it on reconnecting), what came after is gone (the reporting system's GET is a 404), and
the services carry on from the copy without issuing any order twice."""

from __future__ import annotations

import secrets
import shutil
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from shared import streams
from shared.events import OrderIssued
from tests.e2e.journey import (
    admin,
    bearer,
    connect_device,
    enrol,
    new_district,
    on_shift_at,
    register_system,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until, read_stream, redis_as_compose_runs_it
from tools.redis_server import free_port
from tools.stack import DEFAULT_PORTS, Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8170, 108.3660)
ELSEWHERE = (22.8290, 108.3660)  # 1.3 km north: not linked to the first


def backup(admin_url: str, data: Path, into: Path) -> None:
    """The page's backup: BGREWRITEAOF, wait for `aof_rewrite_in_progress:0` and
    `aof_rewrite_scheduled:0`, then copy the AOF folder."""
    client = sync_redis.Redis.from_url(admin_url)
    try:
        client.bgrewriteaof()
        deadline = time.monotonic() + 30
        while True:
            info = client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                break
            assert time.monotonic() < deadline, "the AOF rewrite did not end"
            time.sleep(0.05)
    finally:
        client.close()
    shutil.copytree(data / "appendonlydir", into)


def settled(admin_url: str) -> bool:
    """Every group of every stream has read all and holds nothing pending."""
    client = sync_redis.Redis.from_url(admin_url)
    try:
        for stream in streams.ALL:
            if not client.exists(stream.name):
                continue
            last = client.xinfo_stream(stream.name)["last-generated-id"]
            for group in client.xinfo_groups(stream.name):
                if group["pending"] or group["last-delivered-id"] != last:
                    return False
        return True
    finally:
        client.close()


async def test_a_restore_brings_back_what_the_copy_held_and_issues_no_order_twice(
        tmp_path: Path) -> None:
    redis_server, passwords = redis_as_compose_runs_it(tmp_path / "redis")
    with redis_server:
        address = f"127.0.0.1:{redis_server.port}/0"
        admin_url = f"redis://admin:{passwords['admin']}@{address}"
        stack = Stack(redis_url=admin_url, admin_token=secrets.token_urlsafe(16),
                      redis_urls={name: f"redis://{name}:{passwords[name]}@{address}"
                                  for name in DEFAULT_PORTS},
                      workdir=tmp_path, ports={name: free_port() for name in DEFAULT_PORTS},
                      extra_env={"CLAIM_IDLE_MS": "2000"})
        stack.start()
        try:
            stack.wait_ready(timeout=60)
            async with httpx.AsyncClient(timeout=15) as client, AsyncExitStack() as exits:
                district = await new_district(client, stack, SCENE)
                key = bearer(await register_system(client, stack, district))
                phone = await enrol(client, stack, f"{district}-m-near-1")
                await on_shift_at(client, stack, phone, *SCENE)
                await wait_until_dispatch_sees(client, stack, district, teams=1)
                device = await connect_device(stack, phone, exits)

                async def reported(scene: tuple[float, float], ref: str) -> str:
                    body = {"external_ref": ref, "category": "noise", "district": district,
                            "location": {"lat": scene[0], "lon": scene[1]}}
                    r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=key,
                                          json=body)
                    assert r.status_code == 202, r.text
                    return str(r.json()["incident_id"])

                async def answer(order_id: str, response: str) -> None:
                    r = await client.post(
                        f"{stack.url('notify')}/v1/orders/{order_id}/responses",
                        headers=bearer(phone), json={"response": response})
                    assert r.status_code == 200, r.text

                # before the copy: one incident done, one whose order nobody has answered
                done = await reported(SCENE, "before-1")
                await answer((await device.order_for(client, stack, done))["order_id"],
                             "resolved")
                in_flight = await reported(SCENE, "before-2")
                order = (await device.order_for(client, stack, in_flight))["order_id"]
                await poll_until(lambda: settled(admin_url), "the stack settled", 20)
                backup(admin_url, redis_server.workdir, tmp_path / "copy")
                issued = [o.order_id for o in read_stream(
                    admin_url, streams.ORDER_ISSUED.name, OrderIssued)]

                # after the copy: an answer and a report the restore will take back
                await answer(order, "acknowledged")
                after = await reported(ELSEWHERE, "after-1")
                await exits.aclose()  # the phone's socket

            stack.stop()
            redis_server.stop()
            shutil.rmtree(redis_server.workdir / "appendonlydir")
            shutil.copytree(tmp_path / "copy", redis_server.workdir / "appendonlydir")
            redis_server.start()
            stack.start()
            stack.wait_ready(timeout=60)

            async with httpx.AsyncClient(timeout=15) as client, AsyncExitStack() as exits:
                async def status(service: str, incident_id: str) -> tuple[int, str | None]:
                    r = await client.get(f"{stack.url(service)}/v1/incidents/{incident_id}",
                                         headers=admin(stack))
                    return r.status_code, r.json().get("status") if r.status_code == 200 \
                        else None

                assert await status("dispatch", done) == (200, "resolved")
                assert await status("intake", done) == (200, "resolved")
                assert (await status("dispatch", in_flight))[0] == 200
                r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{in_flight}",
                                     headers=admin(stack))
                (kept,) = r.json()["orders"]
                assert (kept["order_id"], kept["state"]) == (order, "offered")
                assert await status("intake", after) == (404, None)
                assert await status("dispatch", after) == (404, None)

                device = await connect_device(stack, phone, exits)
                again = await device.order_for(client, stack, in_flight)
                assert again["order_id"] == order  # the copy's unanswered order, once more

                await poll_until(lambda: settled(admin_url), "the restored stack settled", 30)
                now = [o.order_id for o in read_stream(
                    admin_url, streams.ORDER_ISSUED.name, OrderIssued)]
                assert Counter(now) == Counter(issued), "an order issued again after the restore"
        finally:
            stack.stop()
