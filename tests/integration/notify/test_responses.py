"""Responses over HTTP and the socket: who may answer, what the state allows, one event each."""

from __future__ import annotations

from typing import Any

import httpx
import redis as redis_sync
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderDelivered, OrderIssued, OrderResponded
from tests.helpers import decode_entry, poll_until, read_stream

from .conftest import ADMIN, Member, Volunteers, an_order, device, issue, withdraw


def delivered(url: str) -> list[OrderDelivered]:
    return read_stream(url, streams.ORDER_DELIVERED.name, OrderDelivered)


def responded(url: str) -> list[OrderResponded]:
    return read_stream(url, streams.ORDER_RESPONDED.name, OrderResponded)


async def stored(http: httpx.AsyncClient, notify: str, order_id: str) -> None:
    async def known() -> bool:
        r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
        return r.status_code == 200
    await poll_until(known, f"notify has stored {order_id}")


async def issued_to(team: str, volunteers: Volunteers, broker: RedisBroker,
                    http: httpx.AsyncClient, notify: str, **order_fields: Any
                    ) -> tuple[Member, OrderIssued]:
    """A member of `team` and an order to the team that notify has stored."""
    member = volunteers.enrol(team)
    order = an_order(team, **order_fields)
    await issue(broker, order)
    await stored(http, notify, order.order_id)
    return member, order


async def test_responses_move_forward_and_refuse_what_the_state_forbids(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, other_team = volunteers.enrol("t1"), volunteers.enrol("t2")
    order = an_order("t1")
    await issue(broker, order)
    await stored(http, notify, order.order_id)
    url = f"{notify}/v1/orders/{order.order_id}/responses"

    r = await http.post(url, json={"response": "acknowledged"})
    assert r.status_code == 401
    r = await http.post(url, headers=other_team.bearer, json={"response": "acknowledged"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = await http.post(f"{notify}/v1/orders/ord_nope/responses", headers=member.bearer,
                        json={"response": "acknowledged"})
    assert r.status_code == 404
    r = await http.post(url, headers=member.bearer, json={"response": "maybe"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "response"

    r = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged" and r.json()["answered"] is True
    again = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
    assert again.status_code == 200 and again.json()["state"] == "acknowledged"

    r = await http.post(url, headers=member.bearer, json={"response": "declined",
                                                          "note": "too far"})
    assert r.status_code == 409
    message = r.json()["error"]["message"]
    assert "acknowledged" in message and "declined is allowed only before acknowledged" in message

    r = await http.post(url, headers=member.bearer, json={"response": "on_scene",
                                                          "note": "crowd of ten"})
    assert r.status_code == 200 and r.json()["state"] == "on_scene"
    r = await http.post(url, headers=member.bearer, json={"response": "en_route"})
    assert r.status_code == 409 and "forward only" in r.json()["error"]["message"]
    r = await http.post(url, headers=member.bearer, json={"response": "reinforce"})
    assert r.status_code == 200 and r.json()["state"] == "on_scene"
    r = await http.post(url, headers=member.bearer, json={"response": "resolved"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    r = await http.post(url, headers=member.bearer, json={"response": "reinforce"})
    assert r.status_code == 409
    assert "finished (resolved)" in r.json()["error"]["message"]

    await poll_until(lambda: len(responded(clean_redis)) >= 4, "four order.responded events")
    events = responded(clean_redis)
    assert [e.response for e in events] == ["acknowledged", "on_scene", "reinforce", "resolved"]
    assert {(e.order_id, e.team_id, e.member_id, e.device_id) for e in events} == {
        (order.order_id, "t1", member.member_id, member.device_id)}
    assert events[1].note == "crowd of ten"


async def test_a_withdrawn_order_takes_no_response(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    await issue(broker, order)
    await stored(http, notify, order.order_id)
    await withdraw(broker, order)

    async def withdrawn() -> bool:
        r = await http.get(f"{notify}/v1/orders/{order.order_id}", headers=member.bearer)
        return r.json()["withdrawn"]

    await poll_until(withdrawn, "the order withdrawn")
    r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses", headers=member.bearer,
                        json={"response": "acknowledged"})
    assert r.status_code == 409 and "withdrawn" in r.json()["error"]["message"]


async def test_a_response_on_the_socket_continues_the_incidents_trace(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member = volunteers.enrol("t1")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    order, by_http = an_order("t1"), an_order("t1")
    async with device(notify, member) as phone:
        for o in (order, by_http):
            await issue(broker, o, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        frames = {f["order_id"]: f for f in [await phone.next_of("order") for _ in range(2)]}
        assert frames[order.order_id]["traceparent"].split("-")[1] == trace_id

        # a decline on the socket, with no reason given (DESIGN.md's `note` is optional)
        await phone.send({"type": "response", "order_id": order.order_id, "response": "declined"})
        assert (await phone.next_of("order_state"))["state"] == "declined"
        # A bad response on the socket is an error frame naming the order; the socket lives.
        await phone.send({"type": "response", "order_id": order.order_id,
                          "response": "acknowledged"})
        error = await phone.next_of("error")
        assert error["code"] == "conflict" and error["order_id"] == order.order_id
        await phone.send({"type": "ping"})
        await phone.next_of("pong")

    r = await http.post(f"{notify}/v1/orders/{by_http.order_id}/responses",
                        headers={**member.bearer,
                                 "traceparent": frames[by_http.order_id]["traceparent"]},
                        json={"response": "acknowledged"})
    assert r.status_code == 200

    client = redis_sync.Redis.from_url(clean_redis)
    try:
        await poll_until(lambda: client.xlen(streams.ORDER_RESPONDED.name) >= 2,
                         "two order.responded entries")
        entries = client.xrange(streams.ORDER_RESPONDED.name)
    finally:
        client.close()
    for _, fields in entries:
        _, headers = decode_entry(fields)
        assert headers["traceparent"].split("-")[1] == trace_id, headers


async def test_a_response_is_recorded_and_published_in_one_step(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, order = await issued_to("t1", volunteers, broker, http, notify)
    r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                        headers=member.bearer, json={"response": "acknowledged"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    # written with the answer, by the same script: there when the answer is
    (event,) = responded(clean_redis)
    assert (event.order_id, event.response, event.member_id) == (
        order.order_id, "acknowledged", member.member_id)


async def test_a_receipt_is_recorded_and_published_in_one_step_once(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member = volunteers.enrol("t1")
    order = an_order("t1")
    async with device(notify, member) as phone:
        await issue(broker, order)
        await phone.next_of("order")
        for _ in range(2):  # the second is a repeat (a phone that reconnected): nothing more
            await phone.send({"type": "received", "order_id": order.order_id})
        await phone.send({"type": "ping"})
        await phone.next_of("pong")  # frames are handled in order: both receipts are done
    (event,) = delivered(clean_redis)
    assert (event.order_id, event.device_id, event.channel) == (
        order.order_id, member.device_id, "websocket")
    r = await http.get(f"{notify}/v1/orders/{order.order_id}/deliveries", headers=ADMIN)
    assert list(r.json()["received"]) == [member.device_id]
    assert [a["outcome"] for a in r.json()["attempts"]].count("received") == 1


async def test_a_decline_goes_with_its_reason_or_without_one(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    # DESIGN.md's `note` is optional: a device that declines without one is not refused
    # (refused, its team's "no" went unheard until the order's deadline)
    member, order = await issued_to("t1", volunteers, broker, http, notify)
    r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                        headers=member.bearer, json={"response": "declined", "note": "   "})
    assert r.status_code == 200 and r.json()["state"] == "declined", r.text
    [event] = responded(clean_redis)
    assert (event.response, event.note) == ("declined", None)
    member, order = await issued_to("t2", volunteers, broker, http, notify)
    r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                        headers=member.bearer,
                        json={"response": "declined", "note": " holding a suspect "})
    assert r.status_code == 200 and r.json()["state"] == "declined"
    assert [(e.response, e.note) for e in responded(clean_redis)] == [
        ("declined", None), ("declined", "holding a suspect")]


async def test_a_station_cannot_hand_its_own_hand_over_to_anybody(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, order = await issued_to("station-car", volunteers, broker, http, notify,
                                    kind="handover")
    url = f"{notify}/v1/orders/{order.order_id}/responses"
    r = await http.post(url, headers=member.bearer, json={"response": "handover"})
    assert r.status_code == 409 and "resolved once the case is filed" in r.text
    assert responded(clean_redis) == []
    r = await http.post(url, headers=member.bearer, json={"response": "resolved"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"


async def test_an_answer_carries_the_body_camera_files_to_dispatch(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, order = await issued_to("t1", volunteers, broker, http, notify)
    url = f"{notify}/v1/orders/{order.order_id}/responses"
    r = await http.post(url, headers=member.bearer, json={
        "response": "resolved", "evidence": [{"kind": "tape", "ref": "bwc-1.mp4"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "evidence.0.kind"
    r = await http.post(url, headers=member.bearer, json={
        "response": "resolved", "evidence": {"kind": "video", "ref": "bwc-1.mp4"}})
    assert r.status_code == 422 and r.json()["error"] == {  # not "a valid tuple"
        "code": "invalid_field", "message": "evidence must be a list", "field": "evidence"}
    assert responded(clean_redis) == []
    r = await http.post(url, headers=member.bearer, json={
        "response": "resolved", "evidence": [{"kind": "video", "ref": " bwc-1.mp4 "},
                                             {"kind": "photo", "ref": "img/2211.jpg"}]})
    assert r.status_code == 200, r.text
    [event] = responded(clean_redis)
    assert [(e.kind, e.ref) for e in event.evidence or ()] == [
        ("video", "bwc-1.mp4"), ("photo", "img/2211.jpg")]


async def test_a_phone_repeating_an_answer_taken_before_a_teammates_is_told_where_it_stands(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    # The phone's acknowledgement was taken, its reply lost in a dead spot; a teammate then
    # answered en route, and the phone sends its answer again on reconnect. Refused (409,
    # "forward only"), the member read that the answer they gave had been turned down.
    member, order = await issued_to("t1", volunteers, broker, http, notify)
    teammate, late = volunteers.enrol("t1"), volunteers.enrol("t1")
    url = f"{notify}/v1/orders/{order.order_id}/responses"
    r = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
    assert r.status_code == 200, r.text
    r = await http.post(url, headers=teammate.bearer, json={"response": "en_route"})
    assert r.status_code == 200, r.text

    again = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
    assert again.status_code == 200, again.text
    assert (again.json()["state"], again.json()["last_response"]) == ("en_route", "en_route")
    async with device(notify, member) as phone:  # and on the socket
        await phone.send({"type": "response", "order_id": order.order_id,
                          "response": "acknowledged"})
        reply = await phone.next_of("order_state", where=lambda f: "response" in f
                                    and f["response"] == "acknowledged")
        assert reply["state"] == "en_route"

    # a phone that never gave that answer is still told it goes forward only
    r = await http.post(url, headers=late.bearer, json={"response": "acknowledged"})
    assert r.status_code == 409 and "forward only" in r.json()["error"]["message"]
    r = await http.post(url, headers=teammate.bearer, json={"response": "resolved"})
    assert r.status_code == 200
    r = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
    assert r.status_code == 409 and "finished (resolved)" in r.json()["error"]["message"]
    await poll_until(lambda: len(responded(clean_redis)) >= 3, "three order.responded events")
    assert [e.response for e in responded(clean_redis)] == [
        "acknowledged", "en_route", "resolved"]


async def test_a_call_for_backup_before_acknowledging_takes_the_order(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    # A guard sees "fight in progress" and presses "need backup" first: the team has taken
    # the order (its answer stops the fallback and its teammates' alarms), so the order is
    # acknowledged, no longer declinable, and a teammate's acknowledgement or the same call
    # again changes nothing.
    member, order = await issued_to("t1", volunteers, broker, http, notify)
    teammate = volunteers.enrol("t1")
    url = f"{notify}/v1/orders/{order.order_id}/responses"

    r = await http.post(url, headers=member.bearer,
                        json={"response": "reinforce", "note": "fight in progress"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["answered"]) == ("acknowledged", True)
    assert "declined" not in r.json()["allowed"] and "acknowledged" not in r.json()["allowed"]
    view = (await http.get(f"{notify}/v1/orders/{order.order_id}", headers=ADMIN)).json()
    assert (view["state"], view["last_response"]) == ("acknowledged", "reinforce")

    r = await http.post(url, headers=teammate.bearer, json={"response": "declined",
                                                            "note": "too far"})
    assert r.status_code == 409
    assert "declined is allowed only before acknowledged" in r.json()["error"]["message"]
    again = await http.post(url, headers=member.bearer, json={"response": "reinforce"})
    assert again.status_code == 200 and again.json()["state"] == "acknowledged"
    late = await http.post(url, headers=teammate.bearer, json={"response": "acknowledged"})
    assert late.status_code == 200 and late.json()["state"] == "acknowledged"
    r = await http.post(url, headers=member.bearer, json={"response": "en_route"})
    assert r.status_code == 200 and r.json()["state"] == "en_route"

    await poll_until(lambda: len(responded(clean_redis)) >= 2, "two order.responded events")
    assert [(e.response, e.note) for e in responded(clean_redis)] == [
        ("reinforce", "fight in progress"), ("en_route", None)]
