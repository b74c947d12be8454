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
