"""The member's page as a phone's browser uses it, against the four services as processes:
the page comes from notify, learns where volunteers and intake are, and calls them across
origins (preflight first, then the call with the device token), as the page's script does:
check in, share the position, be dispatched, report a hazard from the street and follow it,
read the points, check out. Another origin gets no preflight through."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.e2e import journey
from tests.e2e.journey import bearer, enrol
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8500, 108.3500)


class Browser:
    """What a browser does for the page's fetch() to another origin: a preflight, then the
    request with the page's Origin; the answer is readable only if the allow header says so."""

    def __init__(self, client: httpx.AsyncClient, origin: str, token: str) -> None:
        self.client, self.origin, self.token = client, origin, token

    async def fetch(self, method: str, url: str, body: Any = None) -> httpx.Response:
        ask = {"Origin": self.origin, "Access-Control-Request-Method": method,
               "Access-Control-Request-Headers": "authorization,content-type"}
        pre = await self.client.options(url, headers=ask)
        assert pre.status_code == 200, (url, pre.status_code, pre.text)
        assert pre.headers["access-control-allow-origin"] == self.origin
        assert method in pre.headers["access-control-allow-methods"]
        r = await self.client.request(method, url, json=body,
                                      headers={**bearer(self.token), "Origin": self.origin})
        assert r.headers.get("access-control-allow-origin") == self.origin, (url, r.text)
        return r


async def test_a_volunteer_s_day_from_the_member_page(stack: Stack) -> None:
    lat, lon = SCENE
    notify = stack.url("notify")
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        district = await journey.new_district(client, stack, SCENE)
        token = await enrol(client, stack, f"{district}-m-vol")
        page = await client.get(f"{notify}/device")
        assert page.status_code == 200 and "/v1/me/shift/" in page.text
        assert "/v1/incidents" in page.text and "watchPosition" in page.text

        answer = await client.get(f"{notify}/v1/devices/me", headers=bearer(token))
        # the page counts an order's deadline down by notify's clock, read from this header
        assert answer.headers.get("date"), "notify's answers carry its clock (Date)"
        me = answer.json()
        volunteers, intake = me["services"]["volunteers"], me["services"]["intake"]
        assert (volunteers, intake) == (stack.url("volunteers"), stack.url("intake"))
        policy = page.headers["content-security-policy"]  # what the browser lets fetch() reach
        [connect] = [d for d in policy.split(";") if d.strip().startswith("connect-src")]
        assert volunteers in connect.split() and intake in connect.split()
        browser = Browser(client, notify, token)
        phone = await journey.connect_device(stack, token, exits)

        # check in and share the position: dispatch sees the team
        r = await browser.fetch("GET", f"{volunteers}/v1/me")
        assert r.json()["team"]["district"] == district and r.json()["state"]["on_shift"] is False
        r = await browser.fetch("POST", f"{volunteers}/v1/me/shift/start")
        assert r.status_code == 200 and r.json()["on_shift"] is True
        r = await browser.fetch("PUT", f"{volunteers}/v1/me/position",
                                {"lat": lat, "lon": lon, "accuracy_m": 9})
        assert r.status_code == 200 and r.json()["accepted"] is True
        await journey.wait_until_dispatch_sees(client, stack, district, 1)

        # a report from the street, from the page's form: the categories, then the report
        r = await browser.fetch("GET", f"{intake}/v1/categories")
        assert "hazard_report" in [c["category"] for c in r.json()]
        report = {"external_ref": f"app-{district}-1", "category": "hazard_report",
                  "district": district, "location": {"lat": lat, "lon": lon},
                  "description": "loose railing on the footbridge"}
        r = await browser.fetch("POST", f"{intake}/v1/incidents", report)
        assert r.status_code == 202, r.text
        incident_id = r.json()["incident_id"]
        r = await browser.fetch("POST", f"{intake}/v1/incidents", report)  # the page's retry
        assert (r.status_code, r.json()["incident_id"]) == (200, incident_id)

        # the volunteer's own team is the nearest: the order comes to this phone
        order = await phone.next_of("order", timeout=15)
        assert order["incident_id"] == incident_id
        await phone.send({"type": "response", "order_id": order["order_id"],
                          "response": "resolved"})

        async def followed() -> bool:
            r = await browser.fetch("GET", f"{intake}/v1/incidents/{incident_id}")
            return r.json()["status"] == "resolved"

        await poll_until(followed, "the page seeing its report resolved", timeout=15)

        async def paid() -> bool:
            r = await browser.fetch("GET", f"{volunteers}/v1/me/points?limit=1")
            return r.json()["balance"] > 0

        # the order's 10 (their own team's word on their own hazard report confirms nothing:
        # no hazard points, tests/integration/volunteers/test_hazard_reports.py)
        await poll_until(paid, "the volunteer's points for the resolved order", timeout=15)

        async def free() -> bool:
            r = await browser.fetch("POST", f"{volunteers}/v1/me/shift/end")
            return r.status_code == 200 and r.json()["on_shift"] is False

        await poll_until(free, "checking out once the order is over", timeout=15)

        # another site in the same browser: its preflight is refused, nothing readable
        ask = {"Origin": "http://attacker.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
        for url in (f"{volunteers}/v1/me/shift/start", f"{intake}/v1/incidents"):
            r = await client.options(url, headers=ask)
            assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
