"""Notify as every service is: probes, the public member's page, the operations routes."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from .conftest import NotifyFactory, Volunteers


async def test_probes_page_and_dead_letters(notify: str, http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{notify}/healthz")).status_code == 200
    r = await http.get(f"{notify}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}

    page = await http.get(f"{notify}/device")  # public: no token
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/devices/stream" in page.text and "<script src" not in page.text  # self-contained
    worker = await http.get(f"{notify}/device/sw.js")
    assert worker.status_code == 200 and "showNotification" in worker.text

    # Mounted and behind the admin token (shared.dead_letters; its admin answer is tested there).
    assert (await http.get(f"{notify}/v1/admin/dead-letters")).status_code == 401


def connect_sources(policy: str) -> list[str]:
    """Where a Content-Security-Policy lets the page's script connect (fetch, WebSocket)."""
    [connect] = [d.strip() for d in policy.split(";") if d.strip().startswith("connect-src")]
    return connect.split()[1:]


async def test_the_page_learns_where_the_members_other_services_are(
        notify_factory: NotifyFactory, volunteers: Volunteers, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    async with notify_factory() as notify:
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.json()["services"] == {"intake": None, "volunteers": None}  # orders only
        policy = (await http.get(f"{notify}/device")).headers["content-security-policy"]
        host = urlsplit(notify).netloc
        assert connect_sources(policy) == ["'self'", f"ws://{host}", f"wss://{host}"]
    async with notify_factory(intake_public_url="https://lianfang.example:8001/",
                              volunteers_public_url="https://lianfang.example:8003") as notify:
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.json()["services"] == {"intake": "https://lianfang.example:8001",
                                         "volunteers": "https://lianfang.example:8003"}
        # and the page's content security policy lets its fetch() reach them, nothing else
        policy = (await http.get(f"{notify}/device")).headers["content-security-policy"]
        host = urlsplit(notify).netloc
        assert connect_sources(policy) == ["'self'", f"ws://{host}", f"wss://{host}",
                                           "https://lianfang.example:8001",
                                           "https://lianfang.example:8003"]
