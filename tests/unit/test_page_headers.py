"""The browser pages' security headers: the command room's console and the members' page.

Both keep their token in the browser (localStorage) and act with one click (close an
incident, take an order back, decline an order), so another site must not show them in a
frame of its own and have the click land on a button it hides (clickjacking).
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from services.dispatch.console import build_console_router
from services.notify.api import build_page_router
from services.notify.config import Settings as NotifySettings


def _app(page: str) -> FastAPI:
    app = FastAPI()
    if page == "/console":
        app.include_router(build_console_router())
    else:
        app.include_router(build_page_router(NotifySettings(admin_token="x")))
    return app


async def _served(page: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(page)),
                                 base_url="http://station") as client:
        r = await client.get(page)
    assert r.status_code == 200
    return r


def _directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if part.strip():
            name, *values = part.split()
            out[name] = values
    return out


@pytest.mark.parametrize("page", ["/console", "/device"])
async def test_no_other_site_may_show_the_page_in_a_frame(page: str) -> None:
    r = await _served(page)
    assert _directives(r.headers["content-security-policy"]).get("frame-ancestors") == ["'none'"]
    assert r.headers.get("x-frame-options") == "DENY"  # browsers older than frame-ancestors
    assert r.headers.get("x-content-type-options") == "nosniff"
