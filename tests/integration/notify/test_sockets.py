"""The device socket: who may open it, bad frames (and frames Redis refused) answered without
closing it, revocation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from services.notify import main as notify_main
from services.notify import store
from services.notify.hub import Hub
from shared import streams
from shared.events import DeviceRevoked
from shared.http import TELEMETRY
from shared.telemetry import tracer_provider
from tools.redis_server import free_port

from .conftest import ADMIN, ADMIN_TOKEN, NotifyFactory, Volunteers, an_order, device, issue, ws_url


async def refused_with(url: str, headers: dict[str, str] | None = None) -> int | None:
    """The close code of a socket that must get nothing but its close."""
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            frame = await ws.recv()
            raise AssertionError(f"a refused socket got a frame: {frame!r}")
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_a_socket_needs_a_device_token(notify: str, volunteers: Volunteers) -> None:
    # Accepted, then closed with 4401: a close before the accept is an HTTP 403, which the
    # page cannot tell from a dropped network (it would retry for ever).
    assert await refused_with(ws_url(notify)) == 4401
    assert await refused_with(ws_url(notify), {"Authorization": "Bearer not-a-token"}) == 4401
    assert await refused_with(f"{ws_url(notify)}?token=not-a-token") == 4401  # as the page
    async with connect(ws_url(notify), additional_headers=ADMIN) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_bad_frames_get_an_error_frame_and_the_socket_lives_on(
        notify: str, volunteers: Volunteers) -> None:
    member = volunteers.enrol("t1")
    async with device(notify, member) as phone:
        cases = [
            ("{not json", "bad_json", None),
            ("[1]", "bad_frame", None),
            (json.dumps({"type": "shout"}), "unknown_type", "type"),
            (json.dumps({"type": "received"}), "invalid_field", "order_id"),
            (json.dumps({"type": "response", "order_id": "o1", "response": "later"}),
             "invalid_field", "response"),
            (json.dumps({"type": "received", "order_id": "ord_unknown"}), "not_found", None),
            (json.dumps({"type": "ping", "pad": "x" * 9000}), "too_large", None),
        ]
        for raw, code, field in cases:
            await phone.send(raw)
            error = await phone.next_of("error")
            assert error["code"] == code, (raw[:40], error)
            assert error.get("field") == field
            assert "later" not in error["message"]  # never echoes the frame
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong") == {"type": "pong"}


async def test_a_deeply_nested_frame_is_bad_json_and_the_socket_lives_on(
        notify: str, volunteers: Volunteers) -> None:
    # 6 KB, under MAX_FRAME_BYTES: json's decoder recursed past the interpreter's limit and
    # the RecursionError closed the socket.
    member = volunteers.enrol("t1")
    async with device(notify, member) as phone:
        for raw in ("[" * 3000 + "]" * 3000, '{"a":' * 1200 + "1" + "}" * 1200):
            await phone.send(raw)
            error = await phone.next_of("error")
            assert error["code"] == "bad_json" and "order_id" not in error
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong") == {"type": "pong"}


async def test_a_flood_of_frames_is_rate_limited_without_closing_the_socket(
        notify: str, volunteers: Volunteers) -> None:
    member = volunteers.enrol("t1")
    async with device(notify, member) as phone:
        for _ in range(40):  # burst 20, then 5 per second
            await phone.send({"type": "ping"})
        frames = await phone.drain(1.0, heartbeats=True)
        pongs = [f for f in frames if f["type"] == "pong"]
        limited = [f for f in frames if f["type"] == "error"]
        assert len(pongs) + len(limited) == 40
        assert 20 <= len(pongs) <= 25 and len(limited) >= 15
        assert {f["code"] for f in limited} == {"rate_limited"}
        await phone.send({"type": "ping"})  # a second later the socket answers again
        assert await phone.next_of("pong") == {"type": "pong"}


async def test_a_revoked_device_is_closed_at_once_and_cannot_come_back(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    async with device(notify, member) as phone, device(notify, teammate) as other:
        volunteers.revoke(member)
        await broker.publish(
            DeviceRevoked(district="d1", device_id=member.device_id, member_id=member.member_id,
                          team_id="t1"),
            stream=streams.DEVICE_REVOKED.name,
        )
        with pytest.raises(ConnectionClosed) as closed:
            await phone.next_of("never", timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        await other.send({"type": "ping"})
        await other.next_of("pong")  # the teammate's socket is untouched

    assert await refused_with(ws_url(notify), member.bearer) == 4401
    r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
    assert r.status_code == 401


async def test_a_member_moved_to_another_team_is_reconnected_to_it_at_once(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str) -> None:
    member = volunteers.enrol("t1")
    async with device(notify, member) as phone:
        await phone.send({"type": "ping"})
        await phone.next_of("pong")
        # the roster moved the member to t2: the token stays good, for the new team
        volunteers.members[member.token] = dataclasses.replace(member, team_id="t2")
        await broker.publish(
            DeviceRevoked(district="d1", device_id=member.device_id, member_id=member.member_id,
                          team_id="t2", reason="team_changed"),
            stream=streams.DEVICE_REVOKED.name,
        )
        with pytest.raises(ConnectionClosed) as closed:
            await phone.next_of("never", timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        # its fallback channels now serve the new team, not the old one
        assert [d.device_id for d in await store.team_devices(redis, "t2")] == [member.device_id]
        assert await store.team_devices(redis, "t1") == []
        await issue(broker, an_order("t1"))
        async with device(notify, member) as phone:  # the phone reconnects: to t2
            assert [f for f in await phone.drain(0.7) if f["type"] == "order"] == []
            for_t2 = an_order("t2")
            await issue(broker, for_t2)
            assert (await phone.next_of("order"))["order_id"] == for_t2.order_id
    finally:
        await redis.aclose()


async def test_when_volunteers_cannot_be_asked_device_calls_get_503_and_admin_still_works(
        notify_factory: NotifyFactory, volunteers: Volunteers) -> None:
    member = volunteers.enrol("t1")
    async with notify_factory(volunteers_url=f"http://127.0.0.1:{free_port()}") as notify, \
            httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert r.headers["cache-control"] == "no-store"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(notify), additional_headers=member.bearer):
                pass
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["cache-control"] == "no-store"
        r = await http.get(f"{notify}/v1/orders/ord_x/deliveries", headers=ADMIN)
        assert r.status_code == 404  # the admin token needs no introspection


def store_away_once(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """The first call of notify's store.`name` fails as a Redis that went away would."""
    from services.notify import store

    real, failures = getattr(store, name), []

    async def fails_once(*args: object, **kwargs: object) -> object:
        if not failures:
            failures.append(name)
            raise RedisConnectionError("Connection refused")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, name, fails_once)
    return failures


async def test_an_answer_redis_could_not_take_is_refused_and_the_socket_lives_on(
        notify: str, volunteers: Volunteers, broker: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        failures = store_away_once(monkeypatch, "apply_response")
        answer = {"type": "response", "order_id": order.order_id, "response": "acknowledged"}
        await phone.send(answer)
        error = await phone.next_of("error")
        assert failures == ["apply_response"]
        assert error == {"type": "error", "code": "unavailable", "order_id": order.order_id,
                         "message": "the store is not answering; send it again"}
        await phone.send(answer)  # the same socket, sent again
        state = await phone.next_of("order_state")
        assert (state["state"], state["answered"]) == ("acknowledged", True)


async def test_an_id_naming_one_of_notifys_own_keys_is_refused_and_the_socket_lives_on(
        notify: str, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    # `<order id>:attempts` named notify's own list of the order's attempts, read as an
    # order hash: Redis's WRONGTYPE closed the socket (1011), and over HTTP it was a 500.
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        for suffix in (":attempts", ":responses", ":received", ":fallback_sent"):
            await phone.send({"type": "received", "order_id": f"{order.order_id}{suffix}"})
            error = await phone.next_of("error", timeout=3)
            assert (error["code"], error["field"]) == ("invalid_field", "order_id"), error
            assert "order_id" not in error  # an id it cannot be is not echoed
        await phone.send({"type": "holding", "order_ids": [f"{order.order_id}:attempts"]})
        error = await phone.next_of("error", timeout=3)
        assert (error["code"], error["field"]) == ("invalid_field", "order_ids.0")
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong", timeout=3) == {"type": "pong"}
    attempts = f"{notify}/v1/orders/{order.order_id}:attempts"
    for method, url, headers, body in (
            ("GET", attempts, member.bearer, None), ("GET", f"{attempts}/deliveries", ADMIN, None),
            ("POST", f"{attempts}/responses", member.bearer, {"response": "acknowledged"})):
        r = await http.request(method, url, headers=headers, json=body)
        assert r.status_code == 422, (url, r.text)
        assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (
            "invalid_field", "order_id")
    r = await http.get(f"{attempts}/deliveries")
    assert r.status_code == 401  # the token is checked first


async def test_an_error_redis_answers_a_frame_with_never_closes_the_socket(
        notify: str, volunteers: Volunteers, broker: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        real = store.record_receipt

        async def refused(*args: object, **kwargs: object) -> bool:
            monkeypatch.setattr(store, "record_receipt", real)
            raise ResponseError("READONLY You can't write against a read only replica.")

        monkeypatch.setattr(store, "record_receipt", refused)
        await phone.send({"type": "received", "order_id": order.order_id})
        error = await phone.next_of("error", timeout=3)
        assert (error["code"], error["order_id"]) == ("unavailable", order.order_id)
        await phone.send({"type": "received", "order_id": order.order_id})  # sent again
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong", timeout=3) == {"type": "pong"}
        assert [f for f in await phone.drain(0.3) if f["type"] == "error"] == []


async def test_a_receipt_refused_by_the_rate_limit_names_its_order_and_is_asked_for_again(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with notify_factory(ping_interval_s=0.3, frame_burst=1, frame_rate_per_s=0.5) \
            as notify, device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        await phone.send({"type": "ping"})  # the burst
        await phone.send({"type": "received", "order_id": order.order_id})
        error = await phone.next_of("error", timeout=3)
        assert (error["code"], error["order_id"]) == ("rate_limited", order.order_id)
        again = await phone.next_of("order", timeout=3)  # a heartbeat asks for it again
        assert again["order_id"] == order.order_id


async def test_a_socket_opened_while_redis_is_away_is_told_to_try_again(
        notify: str, volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    member = volunteers.enrol("t1")
    store_away_once(monkeypatch, "touch_device")
    async with connect(ws_url(notify), additional_headers=member.bearer) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    async with device(notify, member) as phone:  # the next attempt gets in (its hello)
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong") == {"type": "pong"}


async def leaves_the_team(volunteers: Volunteers, broker: RedisBroker, member: Any,
                          reason: str) -> None:
    """The member's device is revoked, moved to team t2, or its team t1 moved out of the
    police, as volunteers says it."""
    if reason == "revoked":
        volunteers.revoke(member)
    elif reason == "agency_changed":
        volunteers.members[member.token] = dataclasses.replace(member, agency_kind="security")
    else:
        volunteers.members[member.token] = dataclasses.replace(member, team_id="t2")
    await broker.publish(DeviceRevoked(
        district="d1", device_id=member.device_id, member_id=member.member_id,
        team_id="t2" if reason == "team_changed" else "t1", reason=reason),  # type: ignore[arg-type]
        stream=streams.DEVICE_REVOKED.name)


@pytest.mark.parametrize(("reason", "code"), [("revoked", 4401), ("team_changed", 4409),
                                            ("agency_changed", 4409)])
async def test_a_revocation_handled_while_the_socket_connects_still_closes_it(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        monkeypatch: pytest.MonkeyPatch, reason: str, code: int) -> None:
    # The token was checked a moment ago; the revocation (or the member's move) reaches
    # notify before the socket is attached, so the control message finds nothing to close.
    member = volunteers.enrol("t1")
    touch = store.touch_device

    async def touch_while_revoked(redis: Any, **kw: Any) -> None:
        await touch(redis, **kw)
        await leaves_the_team(volunteers, broker, member, reason)
        await asyncio.sleep(1.0)  # notify handles it, and its control message, meanwhile

    monkeypatch.setattr(store, "touch_device", touch_while_revoked)
    async with notify_factory() as notify, connect(
            ws_url(notify), additional_headers=member.bearer) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


@pytest.mark.parametrize(("reason", "code"), [("revoked", 4401), ("team_changed", 4409),
                                            ("agency_changed", 4409)])
async def test_a_revocation_told_while_the_fanout_listener_was_away_still_closes_the_socket(
        notify: str, volunteers: Volunteers, broker: RedisBroker, clean_redis: str,
        monkeypatch: pytest.MonkeyPatch, reason: str, code: int) -> None:
    # Pub/Sub drops what is published while a subscriber is disconnected: the listener's
    # connection is cut just before the control message goes out, and it resubscribes
    # after. Without a way to learn what it missed, the socket would live on until its
    # token's re-check (REAUTH_INTERVAL_S, 300 s).
    member = volunteers.enrol("t1")
    publish, heard = Hub.publish_revoked, []
    admin = Redis.from_url(clean_redis, decode_responses=True)

    async def cut_then_publish(hub: Hub, device_id: str, **kw: Any) -> int:
        for client in await admin.client_list():
            if int(client.get("sub", 0)) > 0:  # the replica's fan-out listener
                await admin.client_kill_filter(_id=client["id"])
        heard.append(await publish(hub, device_id, **kw))
        return heard[-1]

    monkeypatch.setattr(Hub, "publish_revoked", cut_then_publish)
    try:
        async with device(notify, member) as phone:
            await leaves_the_team(volunteers, broker, member, reason)
            with pytest.raises(ConnectionClosed) as closed:
                await phone.next_of("never", timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        assert heard == [0]  # no replica heard the control message itself
    finally:
        await admin.aclose()


BROWSER = "lianfang.v1"  # the subprotocol the member's page offers beside its token's


async def closed_by_subprotocol(url: str, token: str) -> tuple[int | None, str | None]:
    """A browser's refused socket, its token given as a subprotocol: the close code, and the
    subprotocol the handshake chose (a browser fails a handshake that chose none of those it
    offered, and sees 1006 instead of the code)."""
    async with connect(url, subprotocols=[Subprotocol(BROWSER), Subprotocol(f"token.{token}")]
                       ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            frame = await ws.recv()
            raise AssertionError(f"a refused socket got a frame: {frame!r}")
    return (closed.value.rcvd.code if closed.value.rcvd is not None else None), ws.subprotocol


async def test_a_token_given_as_a_subprotocol_is_refused_as_one_in_the_query(
        notify: str, volunteers: Volunteers) -> None:
    for token, code in (("lfd_not-a-token", 4401), (ADMIN_TOKEN, 4403)):  # unknown, no device
        assert await refused_with(f"{ws_url(notify)}?token={token}") == code
        assert await closed_by_subprotocol(ws_url(notify), token) == (code, BROWSER)


@pytest.mark.parametrize("form", ["subprotocol", "query"])
async def test_a_browser_s_token_opens_the_stream_and_reaches_no_log_line_nor_span(
        form: str, notify_factory: NotifyFactory, volunteers: Volunteers,
        monkeypatch: pytest.MonkeyPatch, service_log: Callable[[], str],
        caplog: pytest.LogCaptureFixture) -> None:
    # A TLS proxy in front logs each request's URL, a query string's token with it: the
    # member's page gives its token as a subprotocol. Devices that send ?token= go on.
    spans = InMemorySpanExporter()
    provider = tracer_provider("notify")  # as setup_telemetry makes it: credentials masked
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(notify_main, "TELEMETRY", {**TELEMETRY, "tracer_provider": provider})
    caplog.set_level(logging.INFO)
    member = volunteers.enrol("t1")
    async with notify_factory() as notify:
        if form == "subprotocol":
            opened = connect(ws_url(notify), subprotocols=[
                Subprotocol(BROWSER), Subprotocol(f"token.{member.token}")])
        else:
            opened = connect(f"{ws_url(notify)}?token={member.token}")
        async with opened as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            # the fixed name only, never the token: a proxy may log the answer's headers
            assert ws.subprotocol == (BROWSER if form == "subprotocol" else None)
            assert member.token not in str(ws.response.headers)
    written = service_log()
    assert '"WebSocket /v1/devices/stream' in written  # uvicorn's line of the socket
    assert member.token not in written
    if form == "subprotocol":
        assert member.token not in caplog.text  # in no line at all, masked or not
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert member.token not in server.to_json()
    assert all(member.token not in s.to_json() for s in spans.get_finished_spans())
