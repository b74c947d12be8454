"""A fraud warning whose zones stayed away for ZONE_WAIT goes to any station's team; once
the zones load, a car of another station than the place's is taken off (its zone's own
station's car offered). No import changed anything: the timeline said "zone Territory is
now a zone of ag-police", as if one had given the zone to another station. It says the
place's station is now known, and the place is written (the review counts the incident
under its zone, no longer as one whose zone was never known)."""

from __future__ import annotations

import time

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import engine as engine_module
from services.dispatch import store
from tests.helpers import poll_until

from .test_engine import orders_for
from .test_followup import incident_fields, kinds_and_details
from .test_station_orders_of_a_removed_team import withdrawn
from .test_zone_pending import fire_now, orders_once, waiting_fraud_warning, zones_back

KNOWN = ("withdrawn", "the place's station is now known, ag-police (zone Territory): "
                      "fraud_warning goes to its zone's own station: other-station of "
                      "ag-other taken off", None)


def rezoned_now(url: str, order_id: str) -> None:
    """What on_zones_changed does once the zones are read: the order judged now."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.zadd(store.TIMERS, {f"rezoned:{order_id}": time.time()})
    finally:
        client.close()


async def test_a_car_sent_while_the_station_was_unknown_is_taken_off_as_not_the_places(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "ZONE_WAIT", engine_module.timedelta(seconds=0))
    async with waiting_fraud_warning(clean_redis, publisher) as incident_id:
        fire_now(clean_redis, incident_id)
        orders = await poll_until(lambda: orders_once(clean_redis, incident_id, 2), "two orders")
        (other,) = [o for o in orders if o.team_id == "other-station"]
        assert incident_fields(clean_redis, incident_id)["zone_unknown"] == "1"
        zones_back(monkeypatch)
        rezoned_now(clean_redis, other.order_id)
        await poll_until(lambda: withdrawn(clean_redis, other.order_id), "the car taken off",
                         20)
    details = kinds_and_details(clean_redis, incident_id)
    assert KNOWN in details
    assert not any(kind == "withdrawn" and "is now a zone of" in detail
                   for kind, detail, _ in details)
    fields = incident_fields(clean_redis, incident_id)
    assert (fields["zone_id"], fields["station_agency_id"], fields["zone_unknown"]) == (
        "z-1", "ag-police", "")
    assert [o.team_id for o in orders_for(clean_redis, incident_id)
            if not withdrawn(clean_redis, o.order_id)] == ["own-station"]
