"""A roster import that moves a member whose check-in has run out (`MAX_PATROL_HOURS` +
`CHECKIN_GRACE_HOURS`) before the sweep came by ends it as the sweep would have: on the shift
until it ran out, paid to the cap, the same ledger entry (against a real Redis)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.volunteers import handlers
from services.volunteers.api import me as me_api
from services.volunteers.domain.status import TeamState
from services.volunteers.store import keys
from services.volunteers.store.check_ins import end_run_out
from shared.events import Location, OrderIssued, OrderWithdrawn, utcnow

from .conftest import ADMIN, DISTRICT, running

H = timedelta(hours=1)


def district(wang_team: str) -> dict[str, Any]:
    """The test district with a second volunteer team, Wang on `wang_team`."""
    doc = copy.deepcopy(DISTRICT)
    doc["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Uncles",
                         "mode": "foot", "skills": [], "home_zone_id": "z-cell"})
    for member in doc["members"]:
        if member["id"] == "m-wang":
            member["team_id"] = wang_team
    return doc


async def stored_state(redis: Redis, team_id: str) -> TeamState:
    """The team's state as stored (the API shows a run-out check-in as over already)."""
    return TeamState.model_validate_json(await redis.hget(keys.state(team_id), "state"))


async def history(client: Any, device: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/v1/me/points", headers=device)
    assert response.status_code == 200, response.text
    return response.json()["history"]


async def test_a_member_moved_after_her_check_in_ran_out_is_ended_as_the_sweep_would(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(clean_redis, checkin_sweep_s=3600) as v:  # the sweep is not due
        await v.import_district(district("t-vol"))
        wang = await v.enrol("m-wang")
        now = utcnow()
        joined = now - 20 * H  # her check-in ran out 4 h ago (14 h + 2 h), paid to 6 h ago
        with monkeypatch.context() as m:
            m.setattr(me_api, "utcnow", lambda: joined)
            assert (await v.client.post("/v1/me/shift/start",
                                        headers=wang)).status_code == 200
        # An order came 5 h ago, in her grace, and was read then; its deadline, 2 h ago,
        # came after her check-in ran out: nobody was on the shift to miss it.
        deadline = now - 2 * H
        with monkeypatch.context() as m:
            m.setattr(handlers, "utcnow", lambda: now - 5 * H)
            await publisher.publish(OrderIssued(
                district="d1", order_id="ord_1", incident_id="inc_ord_1", team_id="t-vol",
                agency_kind="volunteer", category="traffic", priority="P3",
                location=Location(lat=22.03, lon=108.03), ack_by=deadline),
                stream="order.issued")
            await v.consumed("order.issued")
        held = await stored_state(v.redis, "t-vol")
        assert (list(held.shift_members), list(held.orders)) == (["m-wang"], ["ord_1"])

        # The coordinator moves her to the other team before the sweep has come by
        await v.import_district(district("t-vol2"))
        # The timeout, read after the import (dispatch catching up)
        await publisher.publish(OrderWithdrawn(
            district="d1", order_id="ord_1", incident_id="inc_ord_1", team_id="t-vol",
            reason="timeout", delivered=True, ack_by=deadline, occurred_at=deadline),
            stream="order.withdrawn")
        await v.consumed("order.withdrawn")

        # As the sweep would have it: on the shift until her check-in ran out, so the
        # deadline after it costs her nothing; her patrol paid to the cap and says why
        mine = await history(v.client, wang)
        assert [(e["reason"], e.get("minutes"), e["points"]) for e in mine] == [
            ("patrol", 840, 70)]
        assert datetime.fromisoformat(mine[0]["at"]) == joined + 14 * H
        assert "automatically" in (mine[0]["note"] or "")
        left = (await stored_state(v.redis, "t-vol")).left["m-wang"]
        assert left == ((joined, joined + 16 * H),)
        # nothing left for the sweep: the team's entry in its index went with her check-in
        assert await v.redis.zscore(keys.check_ins(), "t-vol") is None

        # The sweep, coming by now, pays nothing twice
        redis = Redis.from_url(clean_redis, decode_responses=True)
        try:
            await end_run_out(redis, now=utcnow(), limit=v.settings.check_in_limit(),
                              ledger_ttl_s=None)
        finally:
            await redis.aclose()
        assert [(e["reason"], e["points"]) for e in await history(v.client, wang)] == [
            ("patrol", 70)]
        team = (await v.client.get("/v1/teams/t-vol", headers=ADMIN)).json()["state"]
        assert (team["status"], team["on_shift"]) == ("off_duty", False)
