"""What the admin removes or revokes leaves Redis: a removed team tells dispatch it is gone
(not merely off duty), and a revoked device's record expires while its token stays refused."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from faststream.redis import RedisBroker

from shared.events import OrderResponded, OrderWithdrawn, UnitStatus

from .conftest import ADMIN, DISTRICT, Volunteers
from .test_status import issued, team_status

DAY_S = 86_400


async def test_a_removed_team_s_last_status_tells_dispatch_it_is_gone(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    assert (await client.delete("/v1/members/m-guard", headers=ADMIN)).status_code == 204
    emptied = [e for e in await volunteers.events("unit.status", UnitStatus)
               if e.unit_id == "t-guards"]
    assert not any(e.removed for e in emptied)  # nobody on it: off duty, still on the roster

    assert (await client.delete("/v1/teams/t-guards", headers=ADMIN)).status_code == 204
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == "t-guards"][-1]
    assert (last.status, last.on_shift, last.removed) == ("off_duty", False, True)
    assert (last.district, last.agency_kind, last.mode) == ("d1", "security", "foot")
    others = [e for e in await volunteers.events("unit.status", UnitStatus)
              if e.unit_id != "t-guards"]
    assert others and not any(e.removed for e in others)


async def test_an_order_read_while_its_team_was_removed_holds_it_not_once_imported_again(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    """Dispatch sent an order to a team the admin had just removed; its entry is read again
    (redelivered: the ack was lost) after the team was imported again. The order was never
    the new team's: it must not make it dispatched, with no withdrawal ever to come (dispatch
    withdrew it, unheard, while the team was gone)."""
    await volunteers.import_district()
    client = volunteers.client
    assert (await client.delete("/v1/members/m-guard", headers=ADMIN)).status_code == 204
    assert (await client.delete("/v1/teams/t-guards", headers=ADMIN)).status_code == 204
    order = issued("ord_gone", "t-guards", kind="security")
    await publisher.publish(order, stream="order.issued")
    await volunteers.consumed("order.issued")

    await volunteers.import_district()  # the team and its guard are back
    await publisher.publish(order, stream="order.issued")  # the same event, read again
    await volunteers.consumed("order.issued")
    assert await team_status(volunteers, "t-guards") == "off_duty"
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == "t-guards"][-1]
    assert (last.status, last.order_id) == ("off_duty", None)


async def test_a_penalty_is_given_back_by_an_answer_in_time_read_after_its_team_was_removed(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    """Wang acknowledged in time; dispatch, its answers behind, timed the order out, and
    volunteers read the withdrawal first: her 2 were taken. Before her answer is read (a
    backlog, or its entry dead-lettered and replayed later), the aunties are merged into
    t-vol2 and t-vol is removed. Her answer still shows she missed nothing: the 2 come back
    (the order's record keeps whom they cost, whatever their team is now)."""
    doc = copy.deepcopy(DISTRICT)
    doc["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                         "mode": "foot"})
    await volunteers.import_district(doc)
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    order = issued("ord_tm", "t-vol", kind="volunteer").model_copy(update={"ack_by": deadline})
    await publisher.publish(order, stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_tm", incident_id="inc_ord_tm", team_id="t-vol",
        reason="timeout", delivered=True, occurred_at=deadline + timedelta(minutes=2)),
        stream="order.withdrawn")
    await volunteers.consumed("order.withdrawn")
    assert (await volunteers.client.get("/v1/me/points", headers=wang)).json()["balance"] == -2

    for member in doc["members"]:
        if member["team_id"] == "t-vol":
            member["team_id"] = "t-vol2"
    await volunteers.import_district(doc)
    assert (await volunteers.client.delete("/v1/teams/t-vol", headers=ADMIN)).status_code == 204
    answer = OrderResponded(district="d1", order_id="ord_tm", incident_id="inc_ord_tm",
                            team_id="t-vol", member_id="m-wang", response="acknowledged",
                            occurred_at=deadline - timedelta(seconds=10))
    for _ in range(2):  # redelivered: given back once
        await publisher.publish(answer, stream="order.responded")
        await volunteers.consumed("order.responded")

    r = await volunteers.client.get("/v1/me/points", headers=wang)
    assert sorted((e["entry_id"], e["points"]) for e in r.json()["history"]) == [
        ("missed:ord_tm:m-wang", -2), ("missed_reversed:ord_tm:m-wang", 2)]
    assert r.json()["balance"] == 0


async def test_a_revoked_device_s_record_expires_and_its_token_stays_refused(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    created = (await client.post("/v1/members/m-officer/devices", headers=ADMIN)).json()
    device = {"Authorization": f"Bearer {created['token']}"}
    key = f"roster:device:{created['device_id']}"
    assert await volunteers.redis.ttl(key) == -1  # a live device stays while enrolled

    url = f"/v1/members/m-officer/devices/{created['device_id']}"
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    kept = 2 * volunteers.settings.retention_days * DAY_S
    assert 0 < await volunteers.redis.ttl(key) <= kept
    assert await volunteers.redis.ttl(key) > kept - 60
    assert (await client.delete(url, headers=ADMIN)).status_code == 204  # still a no-op

    # once the record has gone (its TTL ran out), the token is refused still
    await volunteers.redis.delete(key)
    assert (await client.get("/v1/devices/introspect", headers=device)).status_code == 401
    assert (await client.get("/v1/me", headers=device)).status_code == 401
    assert (await client.put("/v1/me/position", headers=device,
                             json={"lat": 22.05, "lon": 108.05})).status_code == 401


async def test_a_removed_member_s_device_records_expire(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    client = volunteers.client
    phones = [(await client.post("/v1/members/m-wang/devices", headers=ADMIN)).json()
              for _ in range(2)]
    assert (await client.delete("/v1/members/m-wang", headers=ADMIN)).status_code == 204
    kept = 2 * volunteers.settings.retention_days * DAY_S
    for phone in phones:
        assert 0 < await volunteers.redis.ttl(f"roster:device:{phone['device_id']}") <= kept
        await volunteers.redis.delete(f"roster:device:{phone['device_id']}")
        response = await client.get("/v1/devices/introspect",
                                    headers={"Authorization": f"Bearer {phone['token']}"})
        assert response.status_code == 401
    assert await volunteers.redis.keys("roster:member_devices:m-wang") == []
