"""docs/operations.md, dead letters: a replay goes back on the stream, so every group of it
reads the event again, also those that had handled it; "that is harmless for a group that
had handled the event only while it remembers having done so". Here, within that time, on
the streams two services read: the group that had handled it changes nothing."""

from __future__ import annotations

from shared import streams
from shared.bus import dead_letter_entry
from tests.helpers import poll_until
from tests.integration.stream_probes import (
    ADMIN,
    DISTRICT,
    Service,
    _is,
    incident_closed,
    intake_incident,
    on_shift,
    order_issued,
    order_responded,
    points,
    reported_at_intake,
    running,
    team_status,
)


async def given_up_by(svc: Service, stream: streams.Stream, group: str, *, nth: int) -> None:
    """The stream's `nth` entry, which `svc` handled, dead-lettered by the other `group`
    (its bug, since fixed), then replayed at `svc` as the runbook says."""
    entry_id, fields = (await svc.redis.xrange(stream.name))[nth]
    await dead_letter_entry(svc.redis, stream=stream.name, entry_id=entry_id, fields=fields,
                            group=group, reason="RuntimeError: bug", attempts=5)
    r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                             params={"stream": stream.name})
    (letter,) = r.json()["dead_letters"]
    assert letter["group"] == group
    r = await svc.client.post(
        f"/v1/admin/dead-letters/{stream.name}/{letter['dead_letter_id']}/replay", headers=ADMIN)
    assert r.status_code == 200, r.text
    await poll_until(lambda: svc.drained(stream.name), f"{svc.name} read the replay of {stream.name}")
    assert await svc.redis.xlen(stream.dead_letters) == 0


async def test_volunteers_pay_and_free_a_team_once_when_dispatch_s_resolution_is_replayed(
        clean_redis: str) -> None:
    async with running("volunteers", clean_redis) as svc:
        device = await on_shift(svc, "rp")
        await svc.publish(streams.ORDER_ISSUED, order_issued("o-rp", "t-rp", "inc-rp"))
        await poll_until(lambda: _is(team_status(svc, "t-rp"), "dispatched"), "the order")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded("o-rp", "inc-rp", "t-rp", "resolved"))
        await poll_until(lambda: _is(team_status(svc, "t-rp"), "available"), "the resolution")
        paid = await points(svc, device)
        assert paid, "the resolution paid nothing"
        announced = await svc.redis.xlen(streams.UNIT_STATUS.name)
        # a second order keeps the team busy: the replayed order.issued must not free it,
        # nor make the first order live again
        await svc.publish(streams.ORDER_ISSUED, order_issued("o-rp2", "t-rp", "inc-rp2"))
        await poll_until(lambda: _is(team_status(svc, "t-rp"), "dispatched"), "the 2nd order")
        announced += 1

        await given_up_by(svc, streams.ORDER_RESPONDED, "dispatch", nth=0)
        await given_up_by(svc, streams.ORDER_ISSUED, "notify", nth=0)  # the resolved order

        assert await points(svc, device) == paid  # paid once
        assert await team_status(svc, "t-rp") == "dispatched"  # still on the 2nd order
        assert await svc.redis.xlen(streams.UNIT_STATUS.name) == announced  # nothing re-told


async def test_intake_ends_an_incident_once_when_volunteers_closing_is_replayed(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        incident_id = await reported_at_intake(svc, "rp")
        open_index = f"intake:open:{DISTRICT}:noise"
        await svc.publish(streams.INCIDENT_CLOSED, incident_closed(incident_id, "noise"))

        async def ended() -> bool:
            return await svc.redis.zscore(open_index, incident_id) is None

        await poll_until(ended, "the incident off intake's open index")
        before = await intake_incident(svc, incident_id)
        keys = sorted(await svc.redis.keys("intake:*"))
        await given_up_by(svc, streams.INCIDENT_CLOSED, "volunteers", nth=0)
        assert await intake_incident(svc, incident_id) == before
        assert sorted(await svc.redis.keys("intake:*")) == keys
        assert await ended()
