"""Devices and members over time: a member moved between teams and the news of it handled late
or out of order, a phone replayed its orders as one is withdrawn, the SMS a closed page gets
(against a real Redis and notify's real sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.notify import store
from services.notify.hub import Hub, withdrawn_message
from shared import streams
from shared.events import DeviceRevoked, utcnow
from tests.helpers import poll_until

from .conftest import (
    ADMIN,
    Gateway,
    Member,
    NotifyFactory,
    Volunteers,
    an_order,
    device,
    issue,
    ws_url,
)


async def moved(broker: RedisBroker, member: Member, team_id: str, **over: object) -> None:
    await broker.publish(
        DeviceRevoked(district="d1", device_id=member.device_id, member_id=member.member_id,
                      team_id=team_id, reason="team_changed", **over),  # type: ignore[arg-type]
        stream=streams.DEVICE_REVOKED.name)


async def revoked(broker: RedisBroker, member: Member) -> None:
    await broker.publish(
        DeviceRevoked(district="d1", device_id=member.device_id, member_id=member.member_id,
                      team_id=member.team_id),
        stream=streams.DEVICE_REVOKED.name)


async def test_an_older_move_handled_after_a_newer_one_leaves_the_device_on_its_team(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str) -> None:
    # Two roster imports a minute apart moved the member t1 -> t2, then t2 -> t3. The first
    # move's event is handled only now (a dead letter replayed; another notify replica that
    # read it first and finished last): the device is on t3 and must stay there, its socket
    # open, its Web Push and SMS serving t3's orders, not t2's.
    member = volunteers.enrol("t1")
    first_move_at = utcnow() - timedelta(minutes=1)
    async with device(notify, member) as phone:
        volunteers.members[member.token] = dataclasses.replace(member, team_id="t3")
        await moved(broker, member, "t3")
        with pytest.raises(ConnectionClosed) as closed:
            await phone.next_of("never", timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409

    now_on_t3 = volunteers.members[member.token]
    marker = volunteers.enrol("t9")  # its revocation, handled after the stale move, marks it done
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        async with device(notify, now_on_t3) as phone, device(notify, marker) as watched:
            await moved(broker, member, "t2", occurred_at=first_move_at)
            volunteers.revoke(marker)
            await revoked(broker, marker)
            with pytest.raises(ConnectionClosed):
                await watched.next_of("never", timeout=5)  # device.revoked is read in order
            await phone.send({"type": "ping"})
            await phone.next_of("pong", timeout=3)  # the t3 socket was not closed
            assert [d.device_id for d in await store.team_devices(redis, "t3")] == [
                member.device_id]
            assert await store.team_devices(redis, "t2") == []
    finally:
        await redis.aclose()


async def test_an_older_move_handled_after_a_newer_one_of_a_device_not_yet_seen_changes_nothing(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str) -> None:
    # As above, but the newer move came before the phone ever connected to notify (nothing
    # of the device to move then): the phone connects on t3, then the older move is handled.
    member = dataclasses.replace(volunteers.enrol("t1"), team_id="t3")
    volunteers.members[member.token] = member
    first_move_at = utcnow() - timedelta(minutes=1)
    first_marker = volunteers.enrol("t9")
    async with device(notify, first_marker) as watched:
        await moved(broker, member, "t3")
        volunteers.revoke(first_marker)
        await revoked(broker, first_marker)
        with pytest.raises(ConnectionClosed):
            await watched.next_of("never", timeout=5)  # the move to t3 handled by now
    marker = volunteers.enrol("t9")
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        async with device(notify, member) as phone, device(notify, marker) as watched:
            await moved(broker, member, "t2", occurred_at=first_move_at)
            volunteers.revoke(marker)
            await revoked(broker, marker)
            with pytest.raises(ConnectionClosed):
                await watched.next_of("never", timeout=5)
            await phone.send({"type": "ping"})
            await phone.next_of("pong", timeout=3)  # the t3 socket was not closed
            assert await store.team_devices(redis, "t2") == []
            assert [d.device_id for d in await store.team_devices(redis, "t3")] == [
                member.device_id]
    finally:
        await redis.aclose()


def moved_before_the_touch(monkeypatch: pytest.MonkeyPatch, volunteers: Volunteers,
                           broker: RedisBroker, redis: Redis, member: Member,
                           team_id: str) -> None:
    """The next touch of the member's device comes after the roster moved the member to
    `team_id` and notify applied the move, with the identity read before it: its token
    checked (volunteers said the old team) a moment before the move."""
    touch = store.touch_device

    async def moved_meanwhile(client: Redis, **kw: Any) -> Any:
        monkeypatch.setattr(store, "touch_device", touch)  # once
        volunteers.members[member.token] = dataclasses.replace(member, team_id=team_id)
        await moved(broker, member, team_id)
        await poll_until(lambda: on_team(redis, member.device_id, team_id), "the move applied")
        return await touch(client, **kw)

    monkeypatch.setattr(store, "touch_device", moved_meanwhile)


async def on_team(redis: Redis, device_id: str, team_id: str) -> bool:
    record = await store.get_device(redis, device_id)
    return record is not None and record.team_id == team_id


async def filed_under(redis: Redis, *teams: str) -> dict[str, list[str]]:
    return {team: [d.device_id for d in await store.team_devices(redis, team)] for team in teams}


async def test_a_request_whose_token_was_checked_before_a_move_leaves_the_device_moved(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The page registers its SMS number as the roster moves its member from t1 to t2: the
    # request was let in as t1's (its token checked, or the answer cached, a moment before),
    # notify applied the move, then the request filed the device. Filed back under t1, t1's
    # fallback texts went to a member who left it and t2's missed them, until the socket
    # reconnected (nothing did, on a page already told of the move).
    member = volunteers.enrol("t1")
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.status_code == 200 and await on_team(redis, member.device_id, "t1")
        moved_before_the_touch(monkeypatch, volunteers, broker, redis, member, "t2")
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": "+8613800138000"})
        assert r.status_code == 200  # the request itself goes on: its device is the member's
        assert await filed_under(redis, "t1", "t2") == {"t1": [], "t2": [member.device_id]}
        record = await store.get_device(redis, member.device_id)
        assert record is not None and record.phone == "+8613800138000"
    finally:
        await redis.aclose()


async def test_a_socket_whose_token_was_checked_before_a_move_reconnects_and_leaves_it_moved(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # As above, for the socket: its token checked as t1's, the move applied, then its touch.
    # It is told to reconnect (4409, as a socket the move closes) without joining t1's
    # fan-out (t1's orders), and the device stays on t2.
    member = volunteers.enrol("t1")
    redis = Redis.from_url(clean_redis, decode_responses=True)
    attach, attached = Hub.attach, []

    async def noting_teams(hub: Hub, conn: Any) -> None:
        attached.append(conn.team_id)
        await attach(hub, conn)

    monkeypatch.setattr(Hub, "attach", noting_teams)
    try:
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.status_code == 200 and await on_team(redis, member.device_id, "t1")
        moved_before_the_touch(monkeypatch, volunteers, broker, redis, member, "t2")
        async with connect(ws_url(notify), additional_headers=member.bearer) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
        assert await filed_under(redis, "t1", "t2") == {"t1": [], "t2": [member.device_id]}
        async with device(notify, member) as phone:  # the reconnect: its token checked again
            await phone.send({"type": "ping"})
            await phone.next_of("pong", timeout=3)
        assert await filed_under(redis, "t1", "t2") == {"t1": [], "t2": [member.device_id]}
        assert attached == ["t2"]
    finally:
        await redis.aclose()


async def test_an_order_withdrawn_while_a_reconnecting_phone_is_replayed_is_not_shown_as_live(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The phone comes back after a while offline; notify reads the team's open orders for it
    # and, before it sends them, the deadline passes and the order is withdrawn: the
    # withdrawal reaches the new socket first, then the replay sends the order it had read.
    # The page shows it as a new, live order, and no later heartbeat corrects it (the socket
    # counts it as told ended): the member goes to an incident that is someone else's now.
    member = volunteers.enrol("t1")
    order = an_order("t1")
    withdrawal_told = asyncio.Event()
    dispatch = Hub._dispatch

    async def noting_withdrawals(hub: Hub, message: dict[str, Any]) -> None:
        await dispatch(hub, message)
        if message.get("type") == "message" and '"withdrawn"' in str(message.get("data")):
            withdrawal_told.set()

    read_open = store.open_orders

    async def withdrawn_once_read(redis: Redis, team_id: str, most: int) -> store.LiveOrders:
        records = await read_open(redis, team_id, most=most)
        if records and not withdrawal_told.is_set():
            await store.withdraw_order(
                redis, order_id=order.order_id, team_id=order.team_id,
                incident_id=order.incident_id, district=order.district, reason="timeout",
                ttl_s=600, fan_out=withdrawn_message(order.order_id))
            await asyncio.wait_for(withdrawal_told.wait(), timeout=5)
        return records

    monkeypatch.setattr(Hub, "_dispatch", noting_withdrawals)
    async with notify_factory(ping_interval_s=0.3) as notify:
        await issue(broker, order)
        await poll_until(lambda: stored(http, notify, order.order_id), "the order stored")
        monkeypatch.setattr(store, "open_orders", withdrawn_once_read)
        async with device(notify, member) as phone:
            await phone.next_of("order_withdrawn", where=lambda f: f["order_id"] == order.order_id)
            # frames go out in order: whatever the connect's replay sent came before the pong
            await phone.send({"type": "ping"})
            await phone.next_of("pong")
            sent = [f for f in phone.frames if f.get("order_id") == order.order_id]
            assert not [f for f in sent if f["type"] in ("order", "order_state")], sent
            # nor does a heartbeat bring it back
            ending = await phone.drain(1.0)
            assert not [f for f in ending if f.get("order_id") == order.order_id
                        and f["type"] in ("order", "order_state")]


async def stored(http: httpx.AsyncClient, notify: str, order_id: str) -> bool:
    r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
    return r.status_code == 200


@pytest.mark.parametrize("language", [None, "en"])
async def test_an_sms_gives_the_deadline_in_the_districts_local_time(
        language: str | None, notify_factory: NotifyFactory, volunteers: Volunteers,
        gateway: Gateway, broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # The page is closed; the order reaches the member's phone by SMS. Its "acknowledge by"
    # is read off a wall clock in Nanning: in UTC it is eight hours off, with nothing to say so.
    # In Chinese, unless the deployment set SMS_LANGUAGE=en.
    member = volunteers.enrol("t1")
    ack_by = (utcnow() + timedelta(minutes=5)).replace(microsecond=0)
    order = an_order("t1", ack_by=ack_by)
    async with notify_factory(sms_gateway_url=f"{gateway.url}/sms", fallback_after_s=0.2,
                              fallback_poll_s=0.1,
                              **({"sms_language": language} if language else {})) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": "+8613877001234"})
        assert r.status_code == 200, r.text
        await issue(broker, order)
        [sms] = await poll_until(lambda: gateway.at("/sms"), "an SMS gateway request")
    text = json.loads(sms.body)["text"]
    local = ack_by.astimezone(ZoneInfo("Asia/Shanghai"))
    said = f"Acknowledge by {local:%H:%M:%S}" if language == "en" else f"请于{local:%H:%M:%S}前接单"
    assert said in text, text
