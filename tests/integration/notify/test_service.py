"""Notify as every service is: probes, the public member's page, the operations routes."""

from __future__ import annotations

import httpx


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
