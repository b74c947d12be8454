"""The member's page (notify's /device) calls volunteers from the phone's browser: only the
origins of CORS_ORIGINS are let in, preflights are answered before authentication, and the
position fixes, answered ahead of FastAPI, carry the same allow header as every other route."""

from __future__ import annotations

from .conftest import running

PAGE = "http://127.0.0.1:8004"
ELSEWHERE = "http://evil.example"


def preflight(origin: str, method: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type"}


async def test_the_member_page_checks_in_shares_its_position_and_reads_points(
        clean_redis: str) -> None:
    async with running(clean_redis, cors_origins=f"{PAGE}, http://localhost:8004/") as service:
        await service.import_district()
        device = await service.enrol("m-wang")
        client = service.client

        # preflights: no token (a browser sends none), answered before authentication
        for path, method in [("/v1/me/position", "PUT"), ("/v1/me/shift/start", "POST"),
                             ("/v1/me/points", "GET")]:
            r = await client.options(path, headers=preflight(PAGE, method))
            assert r.status_code == 200, (path, r.text)
            assert r.headers["access-control-allow-origin"] == PAGE
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            assert method in r.headers["access-control-allow-methods"]
        r = await client.options("/v1/me/position",
                                 headers=preflight("http://localhost:8004", "PUT"))
        assert r.headers["access-control-allow-origin"] == "http://localhost:8004"

        page = {**device, "Origin": PAGE}
        r = await client.post("/v1/me/shift/start", headers=page)
        assert r.status_code == 200 and r.json()["on_shift"] is True
        assert r.headers["access-control-allow-origin"] == PAGE
        r = await client.put("/v1/me/position", headers=page,
                             json={"lat": 22.03, "lon": 108.03, "accuracy_m": 12})
        assert r.status_code == 200 and r.json()["accepted"] is True
        assert r.headers["access-control-allow-origin"] == PAGE  # the fast path too
        r = await client.get("/v1/me/points", headers=page)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PAGE

        # a refusal reaches the page readable (it shows the message), still authenticated
        r = await client.put("/v1/me/position", headers={"Origin": PAGE},
                             json={"lat": 22.03, "lon": 108.03})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PAGE
        r = await client.get("/v1/me", headers={"Origin": PAGE})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PAGE

        # any other origin: no preflight, no allow header; the token still decides the rest
        r = await client.options("/v1/me/position", headers=preflight(ELSEWHERE, "PUT"))
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        for r in [await client.get("/v1/me", headers={**device, "Origin": ELSEWHERE}),
                  await client.put("/v1/me/position", headers={**device, "Origin": ELSEWHERE},
                                   json={"lat": 22.03, "lon": 108.03})]:
            assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_without_cors_origins_no_browser_is_let_in(clean_redis: str) -> None:
    async with running(clean_redis) as service:
        await service.import_district()
        device = await service.enrol("m-wang")
        r = await service.client.options("/v1/me/position", headers=preflight(PAGE, "PUT"))
        assert r.status_code == 401 and "access-control-allow-origin" not in r.headers
        await service.client.post("/v1/me/shift/start", headers=device)
        r = await service.client.put("/v1/me/position", headers={**device, "Origin": PAGE},
                                     json={"lat": 22.03, "lon": 108.03})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
