"""How volunteers' unit.status and unit.position become dispatch's projection of the teams
(the unit record, the district's list and GEO index) on a real Redis."""

from __future__ import annotations

import redis as sync_redis
from faststream.redis import RedisBroker

from shared import streams
from shared.events import UnitPosition, UnitStatus, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, team, wait_for_units
from .test_removed_team import all_read


async def test_a_fix_beyond_the_maps_latitudes_is_a_dead_letter_not_the_teams_place(
        dispatch: str, publisher: RedisBroker) -> None:
    # Redis's GEO index holds latitudes within +-85.05112878 only. A fix past that (latitude
    # and longitude swapped, a producer that does not check) was half written: the record
    # took it, the map did not, nothing was dead-lettered, and every later status of the
    # team failed on it (its check-out among them: dispatch kept sending a team gone home).
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    # as a producer that does not check would write it
    await publisher.publish(UnitPosition.model_construct(
        district=DISTRICT, unit_id="t1", lat=86.0, lon=108.3665, at=utcnow(), accuracy_m=None,
        event_id="fix-north", occurred_at=utcnow(), schema_version=1),
        stream=streams.UNIT_POSITION.name)
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    raw = sync_redis.Redis.from_url(dispatch)  # a dead letter keeps the entry's bytes
    try:
        [(_, letter)] = await poll_until(lambda: raw.xrange("dlq.unit.position"),
                                         "the fix dead-lettered", timeout=20)
        assert letter[b"reason"].startswith(b"invalid UnitPosition: lat")
        assert client.hget("dispatch:unit:t1", "lat") == "22.8171"

        await publisher.publish(UnitStatus(
            district=DISTRICT, unit_id="t1", status="off_duty", agency_id="ag-security",
            agency_kind="security", mode="car", on_shift=False),
            stream=streams.UNIT_STATUS.name)
        await poll_until(lambda: client.hget("dispatch:unit:t1", "status") == "off_duty",
                         "the check-out projected")
        await poll_until(lambda: all_read(dispatch), "the check-out handled", timeout=20)
        assert client.xlen("dlq.unit.status") == 0
    finally:
        client.close()
        raw.close()
