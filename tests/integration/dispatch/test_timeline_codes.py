"""The timeline's entries carry what they say as a code and its arguments beside the English
detail (the console says them in its dispatcher's language), through the engine on a real
Redis and dispatch's API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker

from services.dispatch.main import create_app
from shared import streams
from shared.events import IncidentUpdated
from tests.helpers import read_stream

from .conftest import settings_for
from .test_close import ADMIN, offered
from .test_engine import offered_twice


def entries(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in body["timeline"] if e["kind"] == kind]


async def test_a_routing_timeout_says_its_deadline_as_a_code_and_an_instant(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id, orders = await offered_twice(clean_redis, publisher, monkeypatch)
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as client:
            body = (await client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
    # the first order's (the second's 1-s deadline may pass too while the app runs)
    (timeout,) = [e for e in entries(body, "timeout") if e["order_id"] == orders[0].order_id]
    assert timeout["detail_code"] == "routing_timeout"
    ack_by = timeout["detail_args"]["ack_by"]
    assert set(timeout["detail_args"]) == {"ack_by"}
    assert datetime.fromisoformat(ack_by) == orders[0].ack_by  # the order's deadline
    assert timeout["detail"] == f"no acknowledgement by {ack_by} (routing timeout)"
    # the same on the event intake reads
    (told,) = [u.entry for u in read_stream(clean_redis, streams.INCIDENT_UPDATED.name,
                                            IncidentUpdated)
               if u.incident_id == incident_id and u.entry.kind == "timeout"
               and u.entry.order_id == orders[0].order_id]
    assert (told.detail_code, told.detail_args) == ("routing_timeout", {"ack_by": ack_by})
    offers = entries(body, "offer")
    assert [e["detail_args"]["team"] for e in offers] == ["first", "second"]
    assert {e["detail_code"] for e in offers} <= {"offer", "offer_eta"}


async def test_a_close_and_the_report_and_offer_before_it_carry_their_codes(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, order_id = await offered(clean_redis, publisher)
    assert (await console.post(f"/v1/incidents/{incident_id}/close",
                               headers=ADMIN)).status_code == 200
    body = (await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
    (reported,) = entries(body, "reported")
    assert (reported["detail"], reported["detail_code"], reported["detail_args"]) == (
        "noise P4", "reported", {"category": "noise", "priority": "P4"})
    (offer,) = entries(body, "offer")
    assert offer["order_id"] == order_id and offer["detail_code"] in ("offer", "offer_eta")
    assert {k: offer["detail_args"][k] for k in ("kind", "team", "agency_kind")} == {
        "kind": "dispatch", "team": "t1", "agency_kind": "security"}
    (closed,) = entries(body, "closed")
    assert (closed["detail"], closed["detail_code"], closed["detail_args"]) == (
        "closed by admin:admin", "closed", {"by": "admin:admin"})
    # an entry that says nothing more than its kind carries no code
    assert all(e["detail_code"] is None for e in entries(body, "status"))
