"""The command room takes back an order whose team something else depends on: a backup a
team on scene asked for, a station's hand-over. What the order was for still happens."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def respond(publisher: RedisBroker, order: OrderIssued, *responses: str) -> None:
    for response in responses:
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, member_id="m1", response=response,
            note="needs the station" if response == "handover" else None),
            stream=streams.ORDER_RESPONDED.name)


def kinds_and_teams(url: str, incident_id: str) -> list[tuple[str, str]]:
    return [(o.kind, o.team_id) for o in orders_for(url, incident_id)]


async def test_a_backup_taken_back_is_replaced_by_the_next_free_team(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The guard on scene asked for backup; the command room takes the backup team back
    # (wanted at a P1): the guard still needs one, as after a refusal.
    await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
    await team(publisher, "third", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(clean_redis, 3)
    incident_id = await report(publisher, "noise", priority="P4")
    (first,) = await poll_until(lambda: orders_for(clean_redis, incident_id), "the first order")
    await respond(publisher, first, "acknowledged", "on_scene", "reinforce")
    orders = await poll_until(lambda: orders_for(clean_redis, incident_id)[1:], "the backup")
    assert (orders[0].kind, orders[0].team_id) == ("reinforcement", "backup")
    r = await console.post(f"/v1/orders/{orders[0].order_id}/withdraw", headers=ADMIN,
                           json={"note": "needed at a P1"})
    assert r.status_code == 200, r.text
    await poll_until(lambda: len(orders_for(clean_redis, incident_id)) == 3, "another backup")
    assert kinds_and_teams(clean_redis, incident_id) == [
        ("dispatch", "first"), ("reinforcement", "backup"), ("reinforcement", "third")]


async def test_a_station_s_hand_over_order_taken_back_goes_to_another_of_its_teams(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The command room takes the station's hand-over order from one of its teams (the wrong
    # car): the station still owes the filing, so another of its teams on shift gets it, and
    # the handed-over incident is not put in the emergencies' waiting queue.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await team(publisher, "station-car-2", kind="police", lat=22.8400, lon=108.3665)
    await wait_for_units(clean_redis, 3)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id), "the guard's order")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
        await respond(publisher, order, "acknowledged", "handover")
        [station] = await poll_until(lambda: [o for o in orders_for(clean_redis, incident_id)
                                              if o.kind == "handover"], "the station's order")
        assert station.team_id == "station-car"
        r = await console.post(f"/v1/orders/{station.order_id}/withdraw", headers=ADMIN,
                               json={"note": "wrong team"})
        assert r.status_code == 200, r.text
        await poll_until(lambda: len(orders_for(clean_redis, incident_id)) == 3,
                         "the other station team's order")
        assert kinds_and_teams(clean_redis, incident_id)[1:] == [
            ("handover", "station-car"), ("handover", "station-car-2")]
        fields = client.hgetall(store.incident_key(incident_id))
        assert fields["status"] == "handed_over"
        assert fields["handover_order"] == orders_for(clean_redis, incident_id)[2].order_id
        assert client.zscore(f"dispatch:waiting:{DISTRICT}", incident_id) is None
    finally:
        client.close()


async def off_shift(publisher: RedisBroker, team_id: str) -> None:
    """volunteers' unit.status for a team whose shift ended (its check-out came before the
    order reached volunteers, or its last member was taken off the roster)."""
    from datetime import timedelta

    from shared.events import UnitStatus, utcnow

    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="off_duty", agency_id="ag-security",
        agency_kind="security", mode="car", on_shift=False,
        occurred_at=utcnow() + timedelta(milliseconds=5)), stream=streams.UNIT_STATUS.name)


async def test_an_offer_to_a_team_that_went_off_shift_goes_to_the_next_team_at_once(
        dispatch: str, publisher: RedisBroker) -> None:
    # Not after its deadline (five minutes for a P4): nobody on that team will answer.
    await team(publisher, "leaving", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "next", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "noise", priority="P4")
    [first] = await poll_until(lambda: orders_for(dispatch, incident_id), "the first order")
    assert first.team_id == "leaving"
    await off_shift(publisher, "leaving")
    await poll_until(lambda: len(orders_for(dispatch, incident_id)) == 2, "the next team's order")
    assert kinds_and_teams(dispatch, incident_id) == [("dispatch", "leaving"),
                                                      ("dispatch", "next")]
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.hget(store.order_key(first.order_id), "state") == "withdrawn"
    finally:
        client.close()


async def removed_from_the_roster(publisher: RedisBroker, team_id: str) -> None:
    """volunteers' unit.status for a team a roster import removed (to be imported again
    under its id: a move to another agency made as a removal and a new team)."""
    from datetime import timedelta

    from shared.events import UnitStatus, utcnow

    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="off_duty", agency_id="ag-security",
        agency_kind="security", mode="car", on_shift=False, removed=True,
        occurred_at=utcnow() + timedelta(milliseconds=5)), stream=streams.UNIT_STATUS.name)


@pytest.mark.parametrize("gone", [off_shift, removed_from_the_roster],
                         ids=["off_shift", "removed_and_imported_again"])
async def test_a_team_whose_offer_went_with_its_shift_is_offered_the_incident_when_back(
        dispatch: str, publisher: RedisBroker, gone: Any) -> None:
    # Nobody turned the team down for the incident: its shift ended (or an import took it
    # off the roster) before the offer reached it, and dispatch took the offer back. The
    # incident waits, flagged, with no other team; when the team is on shift again (the
    # next shift's crew, or imported again), it is offered the incident as any free team
    # is, not passed over for as long as the incident waits. (A team the command room
    # takes back is never offered that incident again: test_assign.py.)
    await team(publisher, "leaving", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [first] = await poll_until(lambda: orders_for(dispatch, incident_id), "the first order")
    await gone(publisher, "leaving")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        await poll_until(lambda: client.hmget(store.incident_key(incident_id), "status",
                                              "flagged") == ["unassigned", "1"],
                         "the incident waiting, flagged: its only team is gone")
        assert client.hget(store.order_key(first.order_id), "state") == "withdrawn"
        await team(publisher, "leaving", kind="security", lat=22.8171, lon=108.3665)
        await poll_until(lambda: len(orders_for(dispatch, incident_id)) == 2,
                         "the incident offered to the team back on shift")
        assert kinds_and_teams(dispatch, incident_id) == [("dispatch", "leaving"),
                                                          ("dispatch", "leaving")]
        assert client.hget(store.incident_key(incident_id), "status") == "assigned"
    finally:
        client.close()


async def test_a_team_that_went_off_shift_while_on_its_order_flags_the_incident_once(
        dispatch: str, publisher: RedisBroker) -> None:
    from .test_assign import timeline

    await team(publisher, "leaving", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await respond(publisher, order, "acknowledged", "en_route")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        await poll_until(lambda: client.hget(store.order_key(order.order_id), "state")
                         == "en_route", "en route")
        await off_shift(publisher, "leaving")
        await off_shift(publisher, "leaving")  # and again: one note
        await poll_until(lambda: client.hget(store.incident_key(incident_id), "flagged") == "1",
                         "the incident flagged")
        await poll_until(lambda: client.xpending(streams.UNIT_STATUS.name, "dispatch")[
            "pending"] == 0, "both statuses handled")
        assert client.hget(store.order_key(order.order_id), "state") == "en_route"
    finally:
        client.close()
    notes = [e["detail"] for e in timeline(dispatch, incident_id) if e["kind"] == "note"]
    assert notes == ["leaving went off shift while en route on this order: the command room "
                     "decides"]


async def test_a_team_off_shift_again_while_its_first_check_out_is_judged_flags_the_incident(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its check-out's `offshift:` timer fires; the team is back on shift when it is read
    # (nothing to do), then checks out again before that firing ends. The second check-out's
    # timer, set then, is not lost with the one that fired (it was: set only if absent, a
    # no-op on the leased one, then removed as handled: the order stayed with a team off
    # shift and the command room was never told).
    from datetime import timedelta

    from services.dispatch.engine import Dispatcher
    from shared.events import UnitStatus, utcnow

    from .test_assign import timeline

    def status(on_shift: bool) -> UnitStatus:
        return UnitStatus(
            district=DISTRICT, unit_id="leaving", status="en_route" if on_shift else "off_duty",
            name="leaving", agency_id="ag-security", agency_kind="security", mode="car",
            on_shift=on_shift, occurred_at=utcnow() + timedelta(milliseconds=5))

    real = Dispatcher.on_off_shift_due
    raced: list[str] = []

    async def back_on_then_off_again(engine: Dispatcher, order_id: str) -> Any:
        if raced:
            return await real(engine, order_id)
        raced.append(order_id)
        await engine.on_unit_status(status(on_shift=True))
        again = await real(engine, order_id)  # back on shift: nothing to do
        await engine.on_unit_status(status(on_shift=False))
        return again

    monkeypatch.setattr(Dispatcher, "on_off_shift_due", back_on_then_off_again)
    await team(publisher, "leaving", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: orders_for(dispatch, incident_id), "the order")
    await respond(publisher, order, "acknowledged", "en_route")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        await poll_until(lambda: client.hget(store.order_key(order.order_id), "state")
                         == "en_route", "en route")
        await off_shift(publisher, "leaving")
        await poll_until(lambda: raced, "the first check-out judged")
        await poll_until(lambda: client.hget(store.incident_key(incident_id), "flagged") == "1",
                         "the incident flagged for the second check-out")
        assert client.hget(store.order_key(order.order_id), "state") == "en_route"
    finally:
        client.close()
    notes = [e["detail"] for e in timeline(dispatch, incident_id) if e["kind"] == "note"]
    assert notes == ["leaving went off shift while en route on this order: the command room "
                     "decides"]


async def test_the_flag_of_a_team_gone_off_shift_goes_once_the_command_room_took_its_order_back(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # "The command room decides": it takes the order back and the next team goes. The
    # incident no longer calls for a decision (it stayed flagged until it ended).
    await team(publisher, "leaving", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: orders_for(clean_redis, incident_id), "the order")
    await respond(publisher, order, "acknowledged", "en_route")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        await poll_until(lambda: client.hget(store.order_key(order.order_id), "state")
                         == "en_route", "en route")
        await off_shift(publisher, "leaving")
        await poll_until(lambda: client.hget(store.incident_key(incident_id), "flagged") == "1",
                         "the incident flagged")
        await team(publisher, "next", kind="security", lat=22.8300, lon=108.3665)
        await poll_until(lambda: client.hget("dispatch:unit:next", "fix_ts"), "the next team")
        r = await console.post(f"/v1/orders/{order.order_id}/withdraw", headers=ADMIN,
                               json={"note": "gone home"})
        assert r.status_code == 200, r.text
        await poll_until(lambda: len(orders_for(clean_redis, incident_id)) == 2,
                         "the next team's order")
        fields = client.hgetall(store.incident_key(incident_id))
        assert (fields["status"], fields["flagged"]) == ("assigned", "0")
    finally:
        client.close()


async def station_order_taken_back_then_closed(
        url: str, console: httpx.AsyncClient, publisher: RedisBroker, kind: str) -> OrderIssued:
    """An incident of ag-police's place whose station order (`handover`: the guard handed
    it over; `followup`: its visit came due) the command room took back with no other team
    of the station on shift, then closed; the order taken back."""
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id = await report(publisher, "dispute", priority="P3")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
        if kind == "handover":
            await respond(publisher, order, "acknowledged", "handover")
        else:
            client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
        [station] = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                              if o.kind == kind], "the station's order")
        r = await console.post(f"/v1/orders/{station.order_id}/withdraw", headers=ADMIN)
        assert r.status_code == 200, r.text
        r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert client.hget(store.incident_key(incident_id), "status") == "closed"
    finally:
        client.close()
    return station


@pytest.mark.parametrize("kind", ["handover", "followup"])
async def test_a_take_back_asked_again_after_the_close_sends_the_station_nothing(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        kind: str) -> None:
    # The take-back's answer was lost; the dispatcher's browser asks again once the case
    # is closed and another car of the station has come on shift: it gets no order for a
    # closed case (the close ended the station's retries and the visit's timer).
    station = await station_order_taken_back_then_closed(clean_redis, console, publisher, kind)
    await team(publisher, "station-car-2", kind="police", lat=22.8400, lon=108.3665)
    await wait_for_units(clean_redis, 3)
    before = orders_for(clean_redis, station.incident_id)
    r = await console.post(f"/v1/orders/{station.order_id}/withdraw", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "withdrawn"
    assert orders_for(clean_redis, station.incident_id) == before
    # the audit log tells the take-back from its retry, which withdrew nothing
    r = await console.get("/v1/admin/audit", headers=ADMIN)
    assert [e["detail"] for e in r.json()["entries"] if e["action"] == "order.withdraw"] == [
        f"team {station.team_id}, order {station.order_id}, already withdrawn",
        f"team {station.team_id}, order {station.order_id}"]
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        assert client.hget(store.incident_key(station.incident_id), "status") == "closed"
    finally:
        client.close()


async def test_a_team_taken_back_goes_to_another_incident_and_the_one_it_left_is_flagged(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The command room takes the only team off a noise complaint (it is never offered that
    # one again): it still goes to the other incident waiting for a team, and the one it
    # left, with nobody else to go, waits on the board flagged for the command room.
    await team(publisher, "only", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    left = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: orders_for(clean_redis, left), "the first order")
    waiting = await report(publisher, "noise", priority="P4")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        await poll_until(lambda: client.zscore(f"dispatch:waiting:{DISTRICT}", waiting)
                         is not None, "the second incident waiting: its only team is busy")
        r = await console.post(f"/v1/orders/{order.order_id}/withdraw", headers=ADMIN,
                               json={"note": "wanted elsewhere"})
        assert r.status_code == 200, r.text
        [given] = await poll_until(lambda: orders_for(clean_redis, waiting),
                                   "the waiting incident given the team taken back")
        assert given.team_id == "only"
        assert client.hmget(store.incident_key(left), "status", "flagged") == [
            "unassigned", "1"]
        board = await console.get("/v1/incidents", headers=ADMIN,
                                  params={"district": DISTRICT, "flagged": "true"})
        assert [i["incident_id"] for i in board.json()["incidents"]] == [left]
    finally:
        client.close()


async def test_a_take_back_the_close_got_to_first_is_audited_as_withdrawing_nothing(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another dispatcher closes the incident while this one's take-back waits for its
    lock: the close withdraws the order, the take-back nothing. The route judged "asked
    again" from the order read before the lock, so the audit log said a take-back by this
    dispatcher of an order the close had withdrawn."""
    from services.dispatch.engine import Dispatcher

    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id), "the order")
    take_back = Dispatcher.take_back

    async def closed_first(self: Dispatcher, order_id: str, **kw: Any) -> dict[str, str]:
        await self.close(incident_id, by="dispatcher:d-other")  # held the lock first
        return await take_back(self, order_id, **kw)

    monkeypatch.setattr(Dispatcher, "take_back", closed_first)
    r = await console.post(f"/v1/orders/{order.order_id}/withdraw", headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await console.get("/v1/admin/audit", headers=ADMIN)
    assert [e["detail"] for e in r.json()["entries"] if e["action"] == "order.withdraw"] == [
        f"team guard, order {order.order_id}, already withdrawn"]
