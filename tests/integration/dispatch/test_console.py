"""The console page is served without a token and holds no data itself."""

from __future__ import annotations

import re

import httpx

from services.dispatch.config import Settings
from services.dispatch.main import create_app


async def test_the_console_page_is_public_and_self_contained(clean_redis: str) -> None:
    app = create_app(Settings(redis_url=clean_redis, admin_token="test-admin"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dispatch") as client:
        r = await client.get("/console")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "connect-src 'self'" in r.headers["content-security-policy"]
        # no CDN, no map tiles: it works offline (the SVG namespace is a name, not a fetch)
        outside = re.findall(r"https?://[^\s\"']+", r.text)
        assert set(outside) == {"http://www.w3.org/2000/svg"}, outside
        assert 'id="map"' in r.text  # the district on one screen
        assert (await client.get("/v1/incidents")).status_code == 401


async def test_the_map_s_zones_are_a_503_to_ask_again_while_volunteers_is_away(
        console: httpx.AsyncClient) -> None:
    # these tests' dispatch has no volunteers: its zones cannot be loaded
    r = await console.get("/v1/zones", params={"district": "qingxiu"},
                          headers={"Authorization": "Bearer test-admin"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "zones are not loaded" in r.json()["error"]["message"]
    r = await console.get("/v1/zones", headers={"Authorization": "Bearer test-admin"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"
