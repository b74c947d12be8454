"""DESIGN.md's order of checks on notify's answers: 401, 400/422, 404, 403, 409."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderResponded
from tests.helpers import read_stream

from .conftest import ADMIN, Volunteers, an_order, device, issue
from .test_fallback import Browser
from .test_responses import stored


async def test_a_field_that_is_wrong_is_a_422_before_the_order_is_looked_up(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, other_team = volunteers.enrol("t1"), volunteers.enrol("t2")
    order = an_order("t1")
    await issue(broker, order)
    await stored(http, notify, order.order_id)
    url = f"{notify}/v1/orders/{order.order_id}/responses"
    bare = {"response": "declined", "note": "x" * 501}  # a note of 500 characters at most

    r = await http.post(url, json=bare)
    assert r.status_code == 401  # the token first
    for who, target in ((member, f"{notify}/v1/orders/ord_unknown/responses"),  # not 404
                        (other_team, url)):                                      # not 403
        r = await http.post(target, headers=who.bearer, json=bare)
        assert r.status_code == 422, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["field"]) == ("invalid_field",
                                                                          "note")
    r = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
    assert r.status_code == 200
    r = await http.post(url, headers=member.bearer, json=bare)  # not 409: the field first
    assert r.status_code == 422 and r.json()["error"]["field"] == "note"
    r = await http.post(url, headers=member.bearer, json={"response": "declined"})
    assert r.status_code == 409 and "declined is allowed only before acknowledged" in r.text

    async with device(notify, volunteers.enrol("t2")) as phone:  # and on the socket
        await phone.send({"type": "response", "order_id": order.order_id, **bare})
        error = await phone.next_of("error")
        assert (error["code"], error["field"], error["order_id"]) == (
            "invalid_field", "note", order.order_id)
        await phone.send({"type": "response", "order_id": order.order_id, **bare,
                          "note": "not ours"})
        error = await phone.next_of("error")
        assert (error["code"], error["order_id"]) == ("forbidden", order.order_id)
    assert [e.response for e in read_stream(clean_redis, streams.ORDER_RESPONDED.name,
                                            OrderResponded)] == ["acknowledged"]


async def test_a_token_of_another_kind_is_told_of_a_wrong_field_before_it_is_refused(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    # Answers are for the order's team's devices: the admin's token is refused (403), but
    # after the field it got wrong (422), as any caller's; for an order that is not there
    # too (the kind is refused before the order is looked up: no order is the admin's).
    order = an_order("t1")
    await issue(broker, order)
    await stored(http, notify, order.order_id)
    bare = {"response": "declined", "note": "x" * 501}
    for target in (order.order_id, "ord_unknown"):
        url = f"{notify}/v1/orders/{target}/responses"
        r = await http.post(url, headers=ADMIN, json=bare)
        assert r.status_code == 422, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["field"]) == ("invalid_field",
                                                                          "note")
        r = await http.post(url, headers=ADMIN, json={"response": "acknowledged"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert read_stream(clean_redis, streams.ORDER_RESPONDED.name, OrderResponded) == []


async def test_a_push_endpoint_that_is_wrong_is_a_422_for_a_token_of_another_kind_too(
        notify: str, volunteers: Volunteers, http: httpx.AsyncClient) -> None:
    # Web Push is for devices: the admin's token is refused (403), but after an endpoint
    # that is no push service's (422 naming it), as a device is told; a right one: 403.
    member = volunteers.enrol("t1")
    keys = Browser("https://x.example.com/").subscription["keys"]
    url = f"{notify}/v1/devices/me/webpush"
    wrong = {"subscription": {"endpoint": "https://127.0.0.1/x", "keys": keys}}
    for who in (ADMIN, member.bearer):
        r = await http.post(url, headers=who, json=wrong)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert (error["code"], error["field"], error["message"]) == (
            "invalid_field", "subscription.endpoint", "subscription.endpoint must name a push "
            "service's host, not an IP address")
    r = await http.post(url, headers=ADMIN, json={
        "subscription": {"endpoint": "https://push.example.com/x", "keys": keys}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
