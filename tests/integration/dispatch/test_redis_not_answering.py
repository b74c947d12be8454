"""A Redis that stops answering without going away (the process frozen, its disk stalled):
the command room's reads and writes are answered 503 within REQUEST_TIMEOUT_S, where each
was held for about a minute: a read told to ask again, a write that whether it was made is
not known. Once Redis answers again the remark's retry puts it on the timeline once,
whether the first attempt was made or not. In-process, against a real redis-server of the
test's own, stopped with SIGSTOP."""

from __future__ import annotations

from pathlib import Path

from shared import streams
from tests.helpers import freezable_redis, poll_until
from tests.integration.stream_probes import (
    ADMIN,
    DISTRICT,
    dispatch_incident,
    incident_reported,
    running,
)


async def test_the_command_room_is_answered_while_redis_does_not_answer(tmp_path: Path) -> None:
    with freezable_redis(tmp_path / "redis") as server:
        async with running("dispatch", server.url, served=True, request_timeout_s=1) as svc:
            await svc.publish(streams.INCIDENT_REPORTED, incident_reported("inc-frozen"))
            await poll_until(lambda: dispatch_incident(svc, "inc-frozen"), "the incident", 15)
            board = {"district": DISTRICT}
            remark = {"note": "called the caller back: no answer"}

            server.freeze()
            read = await svc.client.get("/v1/incidents", headers=ADMIN, params=board)
            assert read.status_code == 503, read.text
            assert read.headers["retry-after"]
            assert read.json() == {"error": {"code": "unavailable", "message":
                                             "the store is not answering; ask again"}}
            write = await svc.client.post("/v1/incidents/inc-frozen/remarks", headers=ADMIN,
                                          json=remark)
            assert write.status_code == 503, write.text
            assert write.headers["retry-after"]
            assert write.json()["error"]["code"] == "unavailable"
            assert "whether this change was made is not known" in write.text

            server.thaw()

            async def served() -> bool:  # redis-py's reconnects, then the answer
                r = await svc.client.get("/v1/incidents", headers=ADMIN, params=board)
                return r.status_code == 200

            await poll_until(served, "dispatch serving again", 30)
            again = await svc.client.post("/v1/incidents/inc-frozen/remarks", headers=ADMIN,
                                          json=remark)
            assert again.status_code == 201, again.text
            incident = await dispatch_incident(svc, "inc-frozen")
            assert incident is not None
            assert [e.get("note") for e in incident["timeline"]
                    if e["kind"] == "remark"] == [remark["note"]]
