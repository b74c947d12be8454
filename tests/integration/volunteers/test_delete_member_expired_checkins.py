"""Removing a member (DELETE /v1/members/{id}) ends the teammates' check-ins that have run
out (`MAX_PATROL_HOURS` + `CHECKIN_GRACE_HOURS`) before the sweep came by, as the sweep
would have, and as a roster import does: dispatch hears at once that nobody is left on the
shift, and the teammate's stint is the sweep's (against a real Redis)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.volunteers.api import me as me_api
from services.volunteers.store import keys
from services.volunteers.store.check_ins import end_run_out
from shared.events import UnitStatus, utcnow

from .conftest import ADMIN, running
from .test_import_expired_checkins import history, stored_state

H = timedelta(hours=1)


async def test_removing_the_last_member_validly_on_the_shift_ends_a_run_out_teammate(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(clean_redis, checkin_sweep_s=3600) as v:  # the sweep is not due
        await v.import_district()
        chen = await v.enrol("m-chen")
        wang = await v.enrol("m-wang")
        now = utcnow()
        joined = now - 20 * H  # Chen's check-in ran out 4 h ago (14 h + 2 h), paid to 6 h ago
        with monkeypatch.context() as m:
            m.setattr(me_api, "utcnow", lambda: joined)
            assert (await v.client.post("/v1/me/shift/start",
                                        headers=chen)).status_code == 200
        # Wang joined her 5 h ago, before it ran out; nothing touched the team since
        with monkeypatch.context() as m:
            m.setattr(me_api, "utcnow", lambda: now - 5 * H)
            assert (await v.client.post("/v1/me/shift/start",
                                        headers=wang)).status_code == 200
        held = await stored_state(v.redis, "t-vol")
        assert sorted(held.shift_members) == ["m-chen", "m-wang"]

        # Wang, the only one validly on the shift, is removed before the sweep came by
        response = await v.client.delete("/v1/members/m-wang", headers=ADMIN)
        assert response.status_code == 204, response.text

        # Dispatch hears at once that the team is off duty: nobody is on its shift
        last = [e for e in await v.events("unit.status", UnitStatus)
                if e.unit_id == "t-vol"][-1]
        assert (last.status, last.on_shift) == ("off_duty", False)
        state = await stored_state(v.redis, "t-vol")
        assert (state.status, state.on_shift, state.shift_members) == ("off_duty", False, {})
        # Chen was on the shift until her check-in ran out, paid to the cap, and told why
        assert state.left["m-chen"] == ((joined, joined + 16 * H),)
        mine = await history(v.client, chen)
        assert [(e["reason"], e.get("minutes"), e["points"]) for e in mine] == [
            ("patrol", 840, 70)]
        assert datetime.fromisoformat(mine[0]["at"]) == joined + 14 * H
        assert "automatically" in (mine[0]["note"] or "")
        # nothing left for the sweep: the team's entry went with the check-ins
        assert await v.redis.zscore(keys.check_ins(), "t-vol") is None

        # The sweep, coming by now, pays nothing twice
        redis = Redis.from_url(clean_redis, decode_responses=True)
        try:
            await end_run_out(redis, now=utcnow(), limit=v.settings.check_in_limit(),
                              ledger_ttl_s=None)
        finally:
            await redis.aclose()
        assert [(e["reason"], e["points"]) for e in await history(v.client, chen)] == [
            ("patrol", 70)]
