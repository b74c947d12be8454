"""A handed-over dispute's follow-up visit (its timer in dispatch:timers), in-process against
a real Redis: one order to the owning station's team, also when the first firing failed
after its offer."""

from __future__ import annotations

import json
import time

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import OrderIssued, OrderResponded
from shared.policy import load_policy
from shared.zones import Zone
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, fail_a_write_once
from .test_engine import DISTRICT, orders_for, report
from .test_supervision import ADMIN, board


def followups(url: str, incident_id: str) -> list[OrderIssued]:
    return [o for o in orders_for(url, incident_id) if o.kind == "followup"]


async def run_followup(url: str, publisher: RedisBroker) -> tuple[str, list[OrderIssued]]:
    """An incident whose station is ag-police, its follow-up made due now; the follow-ups
    issued once the timer fired (and, if it failed, fired again after its lease)."""
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "dispute", priority="P3")
        await poll_until(lambda: orders_for(url, incident_id), "the first order")
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(f"dispatch:incident:{incident_id}", "station_agency_id", "ag-police")
            client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}",
                                                 "followup_order"), "the follow-up recorded", 8)
            await poll_until(lambda: client.zscore(store.TIMERS, f"followup:{incident_id}")
                             is None, "the timer finished")
        finally:
            client.close()
    return incident_id, followups(url, incident_id)


async def test_the_station_gets_one_follow_up_order(clean_redis: str,
                                                    publisher: RedisBroker) -> None:
    incident_id, orders = await run_followup(clean_redis, publisher)
    assert [(o.team_id, o.kind) for o in orders] == [("station-car", "followup")]
    assert orders[0].instructions and "Follow-up visit" in orders[0].instructions


async def test_a_firing_that_failed_after_its_offer_sends_no_second_order(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = fail_a_write_once(monkeypatch, "followup_order")
    incident_id, orders = await run_followup(clean_redis, publisher)
    assert failures == ["failed"]
    assert [(o.team_id, o.kind) for o in orders] == [("station-car", "followup")]
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        recorded = client.hget(f"dispatch:incident:{incident_id}", "followup_order")
    finally:
        client.close()
    assert recorded == orders[0].order_id


NOT_HOLDING = "the neighbours are quarrelling over the wall again"


async def answer(publisher: RedisBroker, order: OrderIssued, response: str,
                 note: str | None = None) -> None:
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", response=response, note=note),  # type: ignore[arg-type]
        stream=streams.ORDER_RESPONDED.name)


def incident_fields(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(f"dispatch:incident:{incident_id}")
    finally:
        client.close()


def followup_due_in_days(url: str, incident_id: str) -> float | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        due = client.zscore(store.TIMERS, f"followup:{incident_id}")
    finally:
        client.close()
    return None if due is None else (due - time.time()) / 86400


async def test_a_visit_that_finds_the_agreement_broken_orders_another_until_it_holds(
        clean_redis: str, publisher: RedisBroker) -> None:
    incident_id, [first] = await run_followup(clean_redis, publisher)
    async with dispatch_with_teams(clean_redis, publisher, {}, timer_lease_s=0.5):
        await answer(publisher, first, "acknowledged")
        await answer(publisher, first, "handover", NOT_HOLDING)  # "not holding: visit again"
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get(
            "followup_visits") == "2", "the second visit planned")
        assert incident_fields(clean_redis, incident_id)["followup_order"] == ""
        assert 6.9 < (followup_due_in_days(clean_redis, incident_id) or 0) <= 7  # dispute: 7 days
        assert len(orders_for(clean_redis, incident_id)) == 2  # no hand-over to the station
        # one visit made, which found the agreement broken (the case was filed: resolved)
        async with board(clean_redis) as client:
            kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
        assert kpis["followups"] == {"incidents": 1, "visits": 1, "agreements_holding": 0}

        # a week later: the station visits again, told what the last visit found
        client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
        finally:
            client.close()
        second = (await poll_until(lambda: followups(clean_redis, incident_id)[1:],
                                   "the second follow-up order"))[0]
        assert second.team_id == "station-car"
        assert second.instructions == ("Follow-up visit 2: check that the mediated agreement "
                                       f"holds. Last visit: {NOT_HOLDING}")
        await answer(publisher, second, "resolved")  # "agreement holds": the visit's verdict
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("followup_held")
                         == "1", "the agreement holding")
    assert followup_due_in_days(clean_redis, incident_id) is None
    timeline = kinds_and_details(clean_redis, incident_id)
    assert ("followup", f"{NOT_HOLDING}") in [(k, n) for k, _, n in timeline]
    assert len(followups(clean_redis, incident_id)) == 2
    async with board(clean_redis) as client:
        kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
    assert kpis["followups"] == {"incidents": 1, "visits": 2, "agreements_holding": 1}


async def test_a_visit_ordered_but_not_yet_made_is_not_counted_as_a_revisit(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The KPIs' follow-ups are the incidents revisited and, of them, those whose last visit
    found the agreement holding (the console: "agreements holding 0 of 1"). A visit only
    ordered, or taken but not yet made, has no verdict: counted, it read as an agreement
    not holding."""
    incident_id, [first] = await run_followup(clean_redis, publisher)
    async with dispatch_with_teams(clean_redis, publisher, {}, timer_lease_s=0.5):
        async with board(clean_redis) as client:
            kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
            assert kpis["followups"] == {"incidents": 0, "visits": 0, "agreements_holding": 0}
            await answer(publisher, first, "acknowledged")
            await poll_until(lambda: _order_state(clean_redis, first) == "acknowledged",
                             "the visit taken")
            kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
            assert kpis["followups"] == {"incidents": 0, "visits": 0, "agreements_holding": 0}
            await answer(publisher, first, "resolved")  # "the agreement holds"
            await poll_until(lambda: incident_fields(clean_redis, incident_id).get(
                "followup_held") == "1", "the visit's verdict")
            kpis = (await client.get("/v1/kpis", headers=ADMIN)).json()
    assert kpis["followups"] == {"incidents": 1, "visits": 1, "agreements_holding": 1}


def _order_state(url: str, order: OrderIssued) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(store.order_key(order.order_id), "state")
    finally:
        client.close()


async def test_after_the_last_visit_the_command_room_decides(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    real = load_policy()
    monkeypatch.setattr("services.dispatch.main.load_policy",
                        lambda *_: real.model_copy(update={"followup_max_visits": 1}))
    incident_id, [only] = await run_followup(clean_redis, publisher)
    async with dispatch_with_teams(clean_redis, publisher, {}, timer_lease_s=0.5):
        await answer(publisher, only, "handover", NOT_HOLDING)
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("flagged") == "1",
                         "the incident flagged for the command room")
    assert followup_due_in_days(clean_redis, incident_id) is None  # no visit planned
    [(_, detail, note)] = [e for e in kinds_and_details(clean_redis, incident_id)
                           if e[0] == "followup" and e[2]]
    assert "after 1 visits" in detail and note == NOT_HOLDING


def kinds_and_details(url: str, incident_id: str) -> list[tuple[str, str, str | None]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()
    return [(e["kind"], e.get("detail") or "", e.get("note")) for e in entries]


async def test_a_follow_up_finds_the_station_by_the_zone_when_the_report_knew_none(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The zones were not loaded when the dispute was reported (no station on it); by the
    # follow-up they are: the station is the zone's owner, as the hand-over finds it.
    async with dispatch_with_teams(clean_redis, publisher, {"guard": ("security", 22.8171),
                                                           "station-car": ("police", 22.8300)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "dispute", priority="P3")
        await poll_until(lambda: orders_for(clean_redis, incident_id), "the first order")
        assert incident_fields(clean_redis, incident_id).get("station_agency_id") == ""
        zone = Zone(zone_id="z-1", name="Territory", owner_agency_id="ag-police",
                    polygon=((108.3, 22.8), (108.4, 22.8), (108.4, 22.9), (108.3, 22.8)))

        async def zone_of(_engine: Dispatcher, _district: str, lat: float, lon: float) -> Zone:
            return zone

        monkeypatch.setattr(Dispatcher, "_zone_of", zone_of)
        client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        try:
            client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}",
                                                 "followup_order"), "the follow-up ordered", 8)
        finally:
            client.close()
    assert [o.team_id for o in followups(clean_redis, incident_id)] == ["station-car"]


async def test_a_visit_the_station_team_declines_goes_to_another_of_its_teams_or_later(
        clean_redis: str, publisher: RedisBroker) -> None:
    from .test_engine import wait_for_units

    url = clean_redis
    incident_id, (visit,) = await run_followup(url, publisher)
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300),
                                                   "station-foot": ("police", 22.8310)}):
        await wait_for_units(url, 3)  # the guard of the first part too
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=visit.order_id, incident_id=incident_id,
            team_id=visit.team_id, member_id="m1", response="declined",
            note="no officer free today"), stream=streams.ORDER_RESPONDED.name)
        orders = await poll_until(lambda: followups(url, incident_id)[1:], "another visit")
        assert [o.team_id for o in orders] == ["station-foot"]
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            assert client.hget(f"dispatch:incident:{incident_id}",
                               "followup_order") == orders[0].order_id
        finally:
            client.close()
        # station-foot declines too, and the station has nobody else on shift: in an hour
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=orders[0].order_id, incident_id=incident_id,
            team_id="station-foot", member_id="m1", response="declined"),
            stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: ("note", "follow-up visit declined; no other team of the "
                                  "station on shift: ordered again in an hour", None)
                         in kinds_and_details(url, incident_id), "the note")
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            due = client.zscore(store.TIMERS, f"followup:{incident_id}")
            assert client.hget(f"dispatch:incident:{incident_id}", "followup_order") == ""
        finally:
            client.close()
        assert due is not None and due > time.time() + 59 * 60
        assert len(followups(url, incident_id)) == 2
