"""Every service's admin routes that take a stream entry id (`GET /v1/admin/audit?before=`,
`GET /v1/admin/dead-letters?before=`,
`POST /v1/admin/dead-letters/{stream}/{dead_letter_id}/replay` and its `DELETE`) refuse an
id Redis would refuse with a 422 naming the parameter, and accept the largest id Redis accepts. The dead
letters' routes refuse a stream the service does not read the same way, before a token of
the wrong kind gets its 403 (DESIGN's order)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from httpx import Response

from shared import audit, streams
from shared.bus import dead_letter_entry
from shared.http import Principal

from .stream_probes import ADMIN, running

SERVICES = ["intake", "dispatch", "volunteers", "notify"]
LARGEST = "18446744073709551615-18446744073709551615"  # 2**64 - 1 both parts, Redis's last id
NOT_IDS = [
    "99999999999999999999-0",  # 20 digits, above 2**64 - 1
    "18446744073709551616-0",  # 2**64
    "0-18446744073709551616",
    "\u0663-\u0663",  # Arabic-Indic digits: \d admits them, Redis does not
    "1-2-3",
    "-1-0",
]


async def each_refused_naming(field: str, send: Callable[[str], Awaitable[Response]]) -> None:
    """Each of NOT_IDS, sent: a 422 naming `field`."""
    for value in NOT_IDS:
        r = await send(value)
        assert r.status_code == 422, (value, r.text)
        assert r.json()["error"]["code"] == "invalid_field"
        assert r.json()["error"]["field"] == field


@pytest.mark.parametrize("service", SERVICES)
async def test_an_audit_page_before_an_id_redis_cannot_read_is_a_422_naming_before(
    clean_redis: str, service: str,
) -> None:
    async with running(service, clean_redis) as svc:
        await each_refused_naming("before", lambda before: svc.client.get(
            "/v1/admin/audit", params={"before": before}, headers=ADMIN))

        await audit.record(svc.redis, service, Principal(kind="admin", subject="admin"),
                           "probe.action", "t1")
        r = await svc.client.get("/v1/admin/audit", params={"before": LARGEST}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert [e["action"] for e in r.json()["entries"]] == ["probe.action"]


@pytest.mark.parametrize("service", SERVICES)
async def test_a_dead_letter_page_before_an_id_redis_cannot_read_is_a_422_naming_before(
    clean_redis: str, service: str,
) -> None:
    stream = streams.consumed_by(service)[0].name
    async with running(service, clean_redis) as svc:
        await each_refused_naming("before", lambda before: svc.client.get(
            "/v1/admin/dead-letters", params={"before": before}, headers=ADMIN))

        await dead_letter_entry(svc.redis, stream=stream, entry_id=b"1-0", fields={b"x": b"1"},
                                group=service, reason="probe", attempts=1)
        r = await svc.client.get("/v1/admin/dead-letters", params={"before": LARGEST},
                                 headers=ADMIN)
        assert r.status_code == 200, r.text
        assert [d["original_entry_id"] for d in r.json()["dead_letters"]] == ["1-0"]
        r = await svc.client.get("/v1/admin/dead-letters", params={"before": "0-0"},
                                 headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["dead_letters"] == [] and r.json()["total"] == 1  # nothing before 0-0


@pytest.mark.parametrize("service", SERVICES)
async def test_replaying_a_dead_letter_id_redis_cannot_read_is_a_422_naming_the_id(
    clean_redis: str, service: str,
) -> None:
    stream = streams.consumed_by(service)[0].name
    async with running(service, clean_redis) as svc:
        await each_refused_naming("dead_letter_id", lambda entry_id: svc.client.post(
            f"/v1/admin/dead-letters/{stream}/{entry_id}/replay", headers=ADMIN))
        await each_refused_naming("dead_letter_id", lambda entry_id: svc.client.delete(
            f"/v1/admin/dead-letters/{stream}/{entry_id}", headers=ADMIN))

        r = await svc.client.post(f"/v1/admin/dead-letters/{stream}/{LARGEST}/replay",
                                  headers=ADMIN)
        assert r.status_code == 404, r.text
        r = await svc.client.delete(f"/v1/admin/dead-letters/{stream}/{LARGEST}",
                                    headers=ADMIN)
        assert r.status_code == 404, r.text


async def test_a_stream_intake_does_not_read_is_a_422_naming_it_before_a_systems_403(
    clean_redis: str,
) -> None:
    async with running("intake", clean_redis) as svc:
        r = await svc.client.post("/v1/systems", headers=ADMIN,
                                  json={"name": "110", "districts": ["d1"]})
        assert r.status_code == 201, r.text
        system = {"Authorization": f"Bearer {r.json()['api_key']}"}
        readable = sorted(s.name for s in streams.consumed_by("intake"))
        message = f"stream must be one of: {', '.join(readable)}"

        def asks(stream: str, who: dict[str, str]) -> list[Callable[[], Awaitable[Response]]]:
            return [lambda: svc.client.get("/v1/admin/dead-letters", params={"stream": stream},
                                           headers=who),
                    lambda: svc.client.post(f"/v1/admin/dead-letters/{stream}/1-0/replay",
                                            headers=who),
                    lambda: svc.client.delete(f"/v1/admin/dead-letters/{stream}/1-0",
                                              headers=who)]

        for who in (system, ADMIN):
            for ask in asks("nope", who):
                r = await ask()
                assert r.status_code == 422, r.text
                error = r.json()["error"]
                assert (error["code"], error["field"], error["message"]) == (
                    "invalid_field", "stream", message)
        for ask in asks(readable[0], system):
            r = await ask()
            assert r.status_code == 403, r.text
