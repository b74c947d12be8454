"""A reporting system's key (intake) and a dispatcher desk's token (dispatch) are scoped to
districts typed by an administrator: each is made only for a district whose roster
volunteers holds, asked of volunteers itself (the four services in this process, one real
Redis). A key for `chaoyang` where the roster says `Chaoyang`, or for a district never
imported, was made: its system's reports were flagged unassigned on a board nobody watched.
"""

from __future__ import annotations

import secrets

import httpx

from tests.integration.four_services import four_services

ADMIN_TOKEN = f"districts-admin-{secrets.token_hex(8)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAOYANG = {"district": "Chaoyang", "agencies": [
    {"id": "cy-ps", "name": "Chaoyang police station", "kind": "police"}]}


async def test_keys_and_desks_wait_for_their_districts_roster_and_match_its_names(
        redis_url: str) -> None:
    async with four_services(redis_url, ADMIN_TOKEN) as urls, \
            httpx.AsyncClient(timeout=10, headers=ADMIN) as http:
        keys, desks = f"{urls['intake']}/v1/systems", f"{urls['dispatch']}/v1/dispatchers"

        async def refused(url: str, districts: list[str]) -> dict[str, str]:
            r = await http.post(url, json={"name": "110", "districts": districts})
            assert r.status_code == 422, r.text
            return r.json()["error"]

        for url in (keys, desks):  # the first day, before the roster
            error = await refused(url, ["Chaoyang"])
            assert error["field"] == "districts.0", error
            assert "no district yet" in error["message"], error
            assert "POST /v1/roster/import" in error["message"], error

        r = await http.post(f"{urls['volunteers']}/v1/roster/import", json=CHAOYANG)
        assert r.status_code == 200, r.text
        for url in (keys, desks):
            error = await refused(url, ["chaoyang"])
            assert error["field"] == "districts.0" and "Chaoyang" in error["message"], error
            r = await http.post(url, json={"name": "110", "districts": ["Chaoyang"]})
            assert r.status_code == 201, r.text
        assert (await http.get(keys)).json()["count"] == 1
        assert (await http.get(desks)).json()["count"] == 1
