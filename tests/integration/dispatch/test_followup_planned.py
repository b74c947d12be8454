"""A follow-up visit planned is on the incident's timeline, in-process against a real Redis:
when it is due (the district's date) and which station it goes to, written with its timer,
once however often the step that plans it is made (a hand-over's, a resolution's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.exceptions import ConnectionError as RedisConnectionError

from services.dispatch import store
from services.dispatch.engine import Dispatcher, StepEnd
from shared import streams
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, settings_for
from .test_assign import timeline
from .test_engine import orders_for, report
from .test_followup_resolved import _handled, answered, resolution
from .test_zone_pending import zones_back


def visits_planned(url: str, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(url, incident_id)
            if (e.get("detail_code") or "").startswith("followup_planned")]


def planned_for(url: str, incident_id: str) -> float | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.zscore(store.TIMERS, f"followup:{incident_id}")
    finally:
        client.close()


def says_its_timer(entry: dict[str, Any], url: str, incident_id: str) -> None:
    """The entry names the station and the district's date of the visit's timer."""
    tz = settings_for(url).timezone
    due = planned_for(url, incident_id)
    assert due is not None
    date = f"{datetime.fromtimestamp(due, ZoneInfo(tz)):%Y-%m-%d}"
    assert (entry["kind"], entry["detail_code"]) == ("followup", "followup_planned")
    assert entry["detail_args"] == {"date": date, "timezone": tz, "station": "ag-police"}
    assert entry["detail"] == (f"follow-up visit due by {date} ({tz}; station ag-police)")


async def test_a_dispute_resolved_on_site_says_when_its_station_visits_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    url = clean_redis
    zones_back(monkeypatch)  # the scene's zone is ag-police's
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)}):
        incident_id = await report(publisher, "dispute")
        [guard] = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        resolved = resolution(guard)
        await answered(publisher, resolved)
        await poll_until(lambda: visits_planned(url, incident_id), "the visit on the timeline")
        # the answer read again: redelivered, and a second event of it (a step made again)
        await answered(publisher, resolved)
        again = resolution(guard)
        await answered(publisher, again)
        await poll_until(lambda: _handled(url, again), "the second resolution handled")
    [planned] = visits_planned(url, incident_id)
    says_its_timer(planned, url, incident_id)
    kinds = [e["kind"] for e in timeline(url, incident_id)]
    assert kinds.index("response") < kinds.index("followup")  # after the resolution


async def test_a_dispute_handed_over_says_when_its_station_visits_once_if_the_step_is_made_again(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # dispatch loses Redis as it ends the hand-over's step, after the visit's write: the
    # answer, handled again, plans the visit (and writes its entry) no second time
    url = clean_redis
    zones_back(monkeypatch)
    failed: list[str] = []
    real_end = Dispatcher._end

    async def end(engine: Dispatcher, step: StepEnd, *args: Any, **kwargs: Any) -> bool:
        if step.done in handing_over and not failed:
            failed.append(step.done)
            raise RedisConnectionError("Redis went away")
        return await real_end(engine, step, *args, **kwargs)

    handing_over: set[str] = set()
    monkeypatch.setattr(Dispatcher, "_end", end)
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)}):
        incident_id = await report(publisher, "dispute")
        [guard] = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        handover = resolution(guard, "handover")
        handing_over.add(f"responded:{handover.event_id}")
        await answered(publisher, handover)
        await poll_until(lambda: failed, "the hand-over's step failing at its end")
        planned = planned_for(url, incident_id)
        assert planned is not None
        await poll_until(lambda: _handled(url, handover), "the hand-over handled again")
        # the entry is acknowledged after its step's done mark, in a round trip of its own
        await poll_until(lambda: not _pending(url), "the hand-over's entry acknowledged")
    [entry] = visits_planned(url, incident_id)
    says_its_timer(entry, url, incident_id)
    assert planned_for(url, incident_id) == planned  # not moved by the step made again
    assert [o.kind for o in orders_for(url, incident_id)] == ["dispatch", "handover"]


@pytest.mark.parametrize("category", ["dispute", "fraud_warning"])
async def test_a_case_filed_before_its_hand_over_is_handled_again_has_its_visit_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch,
        category: str) -> None:
    # The hand-over's step loses Redis after its station order, before recording it; the
    # station files the case meanwhile, and the hand-over is handled again (_hand_over's
    # `again`). Its visit, planned by the hand-over (a dispute: followup_days) or by the
    # filing (a fraud warning: followup_resolved_days), is planned and timelined once.
    url = clean_redis
    zones_back(monkeypatch)
    away = [True]
    tries: list[str] = []
    real_record = Dispatcher._record_station_order

    async def record_station_order(engine: Dispatcher, *args: Any, **kwargs: Any) -> None:
        if away[0]:
            tries.append("failed")
            raise RedisConnectionError("Redis went away")
        await real_record(engine, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_record_station_order", record_station_order)
    street = "volunteer" if category == "fraud_warning" else "security"
    async with dispatch_with_teams(url, publisher, {"own-station": ("police", 22.8300),
                                                   "street": (street, 22.8180)}):
        incident_id = await report(publisher, category, priority="P4")
        first = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                          if o.team_id == "street"], "the street team's order")
        await answered(publisher, resolution(first[0], "handover"))
        await poll_until(lambda: tries, "the station order's record failing")
        handover = (await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                              if o.kind == "handover"], "the hand-over"))[0]
        filed = resolution(handover)
        await answered(publisher, filed)
        await poll_until(lambda: _handled(url, filed), "the case filed")
        away[0] = False  # Redis answers again: the hand-over is handled again
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            await poll_until(lambda: not client.xpending(streams.ORDER_RESPONDED.name,
                                                         "dispatch")["pending"],
                             "the hand-over handled again")
            assert client.hget(store.incident_key(incident_id), "status") == "resolved"
        finally:
            client.close()
    [entry] = visits_planned(url, incident_id)
    says_its_timer(entry, url, incident_id)
    assert [o.kind for o in orders_for(url, incident_id)].count("handover") == 1


def _pending(url: str) -> int:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return int(client.xpending(streams.ORDER_RESPONDED.name, "dispatch")["pending"])
    finally:
        client.close()
