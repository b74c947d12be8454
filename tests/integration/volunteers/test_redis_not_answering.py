"""A Redis that stops answering without going away (the process frozen, its disk stalled):
volunteers' routes and its position fast path (ahead of FastAPI) are answered 503 within
REQUEST_TIMEOUT_S, where each was held for about a minute: a read and a fix told to ask
again, an adjustment of points that whether it was made is not known. Once Redis answers
again, the adjustment's retry with the same key records it once, whether the first attempt
was made or not, and fixes are taken. In-process, against a real redis-server of the test's
own, stopped with SIGSTOP."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import freezable_redis, poll_until
from tests.integration.stream_probes import ADMIN, DISTRICT, HERE, on_shift, running

AWAY = {"error": {"code": "unavailable", "message": "the store is not answering; ask again"}}


async def test_volunteers_is_answered_while_redis_does_not_answer(tmp_path: Path) -> None:
    with freezable_redis(tmp_path / "redis") as server:
        async with running("volunteers", server.url, served=True, request_timeout_s=1) as svc:
            device = await on_shift(svc, "frozen")
            fix = {"lat": HERE[0], "lon": HERE[1]}
            # the device's identity in the fast path's memory, as after its first fix
            r = await svc.client.put("/v1/me/position", headers=device, json=fix)
            assert r.status_code == 200, r.text
            shifts = {"district": DISTRICT}
            award = ("/v1/members/m-frozen/points",
                     {"points": 5, "note": "night patrol", "adjustment_id": "night-0001"})

            server.freeze()
            read = await svc.client.get("/v1/shifts/now", headers=ADMIN, params=shifts)
            assert read.status_code == 503, read.text
            assert read.headers["retry-after"] and read.json() == AWAY
            position = await svc.client.put("/v1/me/position", headers=device, json=fix)
            assert position.status_code == 503, position.text
            assert position.headers["retry-after"] and position.json() == AWAY
            write = await svc.client.post(award[0], headers=ADMIN, json=award[1])
            assert write.status_code == 503, write.text
            assert write.headers["retry-after"]
            assert write.json()["error"]["code"] == "unavailable"
            assert "whether this change was made is not known" in write.text

            server.thaw()

            async def served() -> bool:  # redis-py's reconnects, then the answer
                r = await svc.client.get("/v1/shifts/now", headers=ADMIN, params=shifts)
                return r.status_code == 200

            await poll_until(served, "volunteers serving again", 30)
            again = await svc.client.post(award[0], headers=ADMIN, json=award[1])
            assert again.status_code in (200, 201), again.text  # 200: the first was made
            r = await svc.client.get("/v1/me/points", headers=device)
            assert r.status_code == 200, r.text
            assert r.json()["balance"] == 5, r.text
            r = await svc.client.put("/v1/me/position", headers=device, json=fix)
            assert r.status_code == 200, r.text
