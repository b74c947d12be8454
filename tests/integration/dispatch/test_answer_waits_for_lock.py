"""An answer that finds its incident locked by another step waits for that step and is
then applied (the lock and the state are read together only when the lock is free)."""

from __future__ import annotations

from services.dispatch import locks
from shared import streams
from tests.helpers import poll_until
from tests.integration import stream_probes as probes


async def test_an_answer_to_a_locked_incident_waits_for_the_lock_then_applies(
        clean_redis: str) -> None:
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "l1")
        await svc.redis.set(locks.key(incident_id), "another step", px=30_000)
        await svc.publish(streams.ORDER_RESPONDED,
                          probes.order_responded(order_id, incident_id, team, "acknowledged"))

        async def taken_up() -> bool:
            pending = await svc.redis.xpending(streams.ORDER_RESPONDED.name, "dispatch")
            return pending["pending"] >= 1

        await poll_until(taken_up, "dispatch reading the answer")
        assert await probes.dispatch_status(svc, incident_id) == "assigned"  # waits for the lock
        assert await svc.redis.get(locks.key(incident_id)) == b"another step"
        await svc.redis.delete(locks.key(incident_id))  # the other step ends
        await poll_until(lambda: probes._is(probes.dispatch_status(svc, incident_id), "acknowledged"),
                         "the answer applied once the lock was free")
        assert await svc.redis.exists(locks.key(incident_id)) == 0  # and its own released
