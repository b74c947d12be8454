"""The command room's timeline of an incident (DESIGN.md: each offer, receipt, response,
timeout and status change, with time and team): in the order things happened, each at the
time it happened, also when dispatch handled an answer late."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import streams
from shared.events import utcnow
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

