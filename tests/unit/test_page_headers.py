"""The browser pages' security headers: the command room's console, an agency desk's page
and the members' page.

Each keeps its token in the browser (localStorage); the console and the members' page act
with one click (close an incident, take an order back, decline an order), so another site
must not show them in a frame of its own and have the click land on a button it hides
(clickjacking). The agency desk's page changes nothing, and is held to the same headers.
"""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from fastapi import FastAPI

from services.dispatch.agency_page import build_agency_page_router
from services.dispatch.console import build_console_router
from services.notify.api import build_page_router
from services.notify.config import Settings as NotifySettings


def _app(page: str) -> FastAPI:
    app = FastAPI()
    if page == "/console":
        app.include_router(build_console_router())
    elif page == "/agency":
        app.include_router(build_agency_page_router())
    else:
        app.include_router(build_page_router(NotifySettings(admin_token="test-admin-token")))
    return app


async def _served(page: str, host: str | None = None, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(page)),
                                 base_url="http://station") as client:
        r = await client.get(page, headers={**({} if host is None else {"Host": host}),
                                            **headers})
    assert r.status_code == 200
    return r


def _directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if part.strip():
            name, *values = part.split()
            out[name] = values
    return out


@pytest.mark.parametrize("page", ["/console", "/agency", "/device"])
async def test_no_other_site_may_show_the_page_in_a_frame(page: str) -> None:
    r = await _served(page)
    assert _directives(r.headers["content-security-policy"]).get("frame-ancestors") == ["'none'"]
    assert r.headers.get("x-frame-options") == "DENY"  # browsers older than frame-ancestors
    assert r.headers.get("x-content-type-options") == "nosniff"


def _inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)


@pytest.mark.parametrize("page", ["/console", "/agency", "/device"])
async def test_the_page_runs_its_own_script_and_no_script_put_into_it(page: str) -> None:
    """Whatever server data a page shows (a description, a caller's name, a team's note)
    could only ever run as a script if the policy let any inline script run: it lets the
    page's own script run, by its hash, and nothing else inline (no event handler attributes
    either, which a policy without 'unsafe-inline' would block)."""
    r = await _served(page)
    scripts = _inline_scripts(r.text)
    assert scripts, "the page's script"
    allowed = _directives(r.headers["content-security-policy"])["script-src"]
    assert "'unsafe-inline'" not in allowed and "'unsafe-eval'" not in allowed, allowed
    for text in scripts:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed
    markup = re.sub(r"<script>.*?</script>", "", r.text, flags=re.DOTALL)
    assert not re.search(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", markup), "an inline event handler"
    assert "javascript:" not in r.text.lower()
    directives = _directives(r.headers["content-security-policy"])
    assert directives.get("base-uri") == ["'none'"]  # no <base> turns its fetches elsewhere
    assert directives.get("object-src") == ["'none'"]


@pytest.mark.parametrize("host", ["station", "10.0.0.5:8004", "lianfang.example:443"])
async def test_the_member_s_page_may_open_a_socket_to_notify_only(host: str) -> None:
    """The member's page opens its socket to the host it came from, which the policy names
    (ws:// and wss://: the phones' older browsers do not take 'self' for a socket) and no
    other: a script slipped into the page cannot send the member's token or position
    elsewhere."""
    r = await _served("/device", host)
    connect = _directives(r.headers["content-security-policy"])["connect-src"]
    assert connect == ["'self'", f"ws://{host}", f"wss://{host}"]


async def test_behind_a_proxy_that_renames_the_host_the_phone_s_host_is_named_too() -> None:
    """A proxy that sends notify its own upstream name as Host (nginx's default) and the
    phone's in X-Forwarded-Host (Caddy, Traefik, nginx told to): the page's socket goes to
    the phone's host, which the policy must name for the older browsers."""
    r = await _served("/device", "notify:8002",
                      **{"X-Forwarded-Host": "lianfang.example, proxy.internal"})
    connect = _directives(r.headers["content-security-policy"])["connect-src"]
    assert connect == ["'self'", "ws://notify:8002", "wss://notify:8002",
                       "ws://lianfang.example", "wss://lianfang.example"]


@pytest.mark.parametrize("forged", ["x.example; script-src *", "x.example ws:", "*", ""])
@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host"])
async def test_a_forged_host_adds_nothing_to_the_member_s_page_policy(forged: str,
                                                                       header: str) -> None:
    r = await (_served("/device", forged) if header == "Host"
               else _served("/device", **{header: forged}))
    directives = _directives(r.headers["content-security-policy"])
    # the page's socket in today's browsers, and the real Host's beside a forged forward
    assert directives["connect-src"] == (["'self'"] if header == "Host" else
                                         ["'self'", "ws://station", "wss://station"])
    assert "x.example" not in r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in directives["script-src"]
