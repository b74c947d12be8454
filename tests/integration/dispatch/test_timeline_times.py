"""The command room's timeline of an incident (DESIGN.md: each offer, receipt, response,
timeout and status change, with time and team): in the order things happened, each at the
time it happened, also when dispatch handled an answer late."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import streams
from shared.events import OrderDelivered, utcnow
from tests.helpers import poll_until
from tests.integration import stream_probes as probes
from tests.integration.stream_probes import ADMIN

from .test_kpis_through_the_engine import answer


async def timeline(svc: probes.Service, incident_id: str) -> list[dict[str, Any]]:
    r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["timeline"])


async def test_an_answer_given_before_the_close_but_handled_after_it_stands_before_it(
        clean_redis: str) -> None:
    """The team acknowledged; the command room, not seeing that yet, closed the incident,
    and dispatch handled the close first. The acknowledgement is on the timeline (and in
    the KPIs) at the time the team gave it: listed before the order's withdrawal and the
    close, not after them as if the team had answered an incident already closed."""
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "late")
        taken = answer(order_id, incident_id, team, "acknowledged", utcnow())
        r = await svc.client.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code == 200, r.text
        await svc.publish(streams.ORDER_RESPONDED, taken)
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "answer handled")
        kinds = [(e["kind"], e.get("detail")) for e in await timeline(svc, incident_id)]
        assert kinds.index(("response", "acknowledged")) < kinds.index(
            ("closed", "closed by admin:admin")), kinds
        times = [datetime.fromisoformat(e["at"]) for e in await timeline(svc, incident_id)]
        assert times == sorted(times)


async def test_a_receipt_and_an_answer_are_on_the_timeline_at_the_time_they_were_given(
        clean_redis: str) -> None:
    """Dispatch handles a phone's receipt and a team's answer when it reads them: after an
    outage or a backlog, minutes after the team gave them. The timeline says when the
    phone had the order and when the team answered (the times the order's record and the
    KPIs hold), not when dispatch caught up."""
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "given")
        issued = datetime.fromisoformat(
            next(e["at"] for e in await timeline(svc, incident_id) if e["kind"] == "offer"))
        received, taken = issued + timedelta(seconds=2), issued + timedelta(seconds=9)
        await svc.publish(streams.ORDER_DELIVERED, OrderDelivered(
            district=probes.DISTRICT, order_id=order_id, incident_id=incident_id,
            team_id=team, member_id="m1", device_id="dev1", channel="websocket",
            occurred_at=received))
        await svc.publish(streams.ORDER_RESPONDED,
                          answer(order_id, incident_id, team, "acknowledged", taken))
        for stream in (streams.ORDER_DELIVERED, streams.ORDER_RESPONDED):
            await poll_until(lambda s=stream: svc.drained(s.name), f"{stream.name} handled")
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        view = r.json()
        at = {e["kind"]: datetime.fromisoformat(e["at"]) for e in view["timeline"]
              if e["kind"] in ("receipt", "response")}
        assert at == {"receipt": received, "response": taken}
        [order] = view["orders"]
        assert datetime.fromisoformat(order["delivered_at"]) == received
        assert datetime.fromisoformat(order["acknowledged_at"]) == taken
