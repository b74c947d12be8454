"""A 110 caller rings back 11 minutes later, and the people have moved a kilometre: the
call-taking system sends it as a follow-up of its report (intake), which joins the incident
whatever the distance and the time (dispatch), and its words reach the police officer's
phone already sent, never the guard's (notify); no second team goes."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.journey import (
    admin,
    bearer,
    connect_device,
    enrol,
    new_district,
    on_shift_at,
    register_system,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8400, 108.3400)
FIRST = "two men fighting outside the bank"
ADDED = "he has a knife now, they went into the mall"


async def test_a_callers_call_back_reaches_the_police_team_sent_and_sends_no_second_team(
        stack: Stack) -> None:
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        district = await new_district(client, stack, SCENE)
        guard = await enrol(client, stack, f"{district}-m-sec")
        police = await enrol(client, stack, f"{district}-m-near-1")
        guard_phone = await connect_device(stack, guard, exits)
        police_phone = await connect_device(stack, police, exits, as_the_page=True)
        await on_shift_at(client, stack, guard, lat + 0.001, lon)
        await on_shift_at(client, stack, police, lat + 0.002, lon)
        await wait_until_dispatch_sees(client, stack, district, 2)
        key = await register_system(client, stack, district)
        intake = f"{stack.url('intake')}/v1/incidents"

        # A fight, called in 11 minutes ago: police and the nearest security post go.
        at = (datetime.now(UTC) - timedelta(minutes=11)).isoformat()
        r = await client.post(intake, headers=bearer(key), json={
            "external_ref": f"call-{district}-1", "category": "violence", "district": district,
            "location": {"lat": lat, "lon": lon}, "description": FIRST, "reported_at": at})
        assert r.status_code == 202, r.text
        first = r.json()["incident_id"]
        to_police = await police_phone.order_for(client, stack, first, timeout=15)
        to_guard = await guard_phone.order_for(client, stack, first, timeout=15)
        assert to_police["description"] == FIRST and "description" not in to_guard

        # The caller rings back: a knife, and a kilometre north. Past the duplicate window
        # and radius, it was a second incident and a second team.
        r = await client.post(f"{intake}/{first}/follow-ups", headers=bearer(key), json={
            "external_ref": f"call-{district}-2", "category": "violence",
            "district": district, "location": {"lat": lat + 0.01, "lon": lon},
            "description": ADDED, "flags": ["weapon"]})
        assert r.status_code == 202, r.text
        added = r.json()
        assert (added["status"], added["linked_to"], added["follow_up_of"]) == (
            "linked", first, first)

        update = await police_phone.next_of("order_update", timeout=15)
        assert update["description"] == f"{FIRST}\n{ADDED}"
        assert "weapon" in update["flags"]
        guarded = await guard_phone.next_of("order_update", timeout=15)
        assert "weapon" in guarded["flags"] and "description" not in guarded
        assert "knife" not in str(guarded)

        async def told() -> list[dict[str, str]]:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{first}",
                                 headers=admin(stack))
            return [e for e in r.json()["timeline"] if e.get("detail_code") == "follow_up_linked"]

        await poll_until(told, "the incident's timeline saying a follow-up came")
        r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{added['incident_id']}",
                             headers=admin(stack))
        assert r.json()["status"] == "linked"
        # no second team: the phones got no other order
        assert [f for f in await police_phone.drain(1.0) if f["type"] == "order"] == []
        assert [f for f in await guard_phone.drain(0.1) if f["type"] == "order"] == []

    logs = "\n".join(p.read_text(errors="replace") for p in (stack.workdir / "logs").glob("*.log"))
    assert "knife" not in logs
