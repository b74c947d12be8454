"""The command room's timeline says who acted by name: "taken back by dispatcher:dsp_5fac…"
told a desk nothing (the list of dispatchers is the admin's). Dispatch names them as it
answers the command room, read at once for the whole timeline; the entries it stores, which
reach the reporting systems through intake, keep the id alone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from tests.helpers import poll_until

from .test_engine import DISTRICT, report
from .test_supervision import ADMIN, store_incident


async def desk(console: httpx.AsyncClient, name: str, role: str = "dispatcher"
               ) -> tuple[str, dict[str, str]]:
    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": name, "districts": [DISTRICT], "role": role})
    assert r.status_code == 201, r.text
    return r.json()["dispatcher_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def names_looked_up(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ids of each look-up of dispatchers' names from now on."""
    calls: list[list[str]] = []
    real = store.dispatcher_names

    async def looked_up(redis: Any, ids: Any) -> dict[str, str]:
        calls.append(sorted(ids))
        return await real(redis, ids)

    monkeypatch.setattr(store, "dispatcher_names", looked_up)
    return calls


def stored_and_published(url: str, incident_id: str) -> bytes:
    """The incident's stored timeline and every incident.updated (a binary envelope), as
    Redis holds them."""
    client = sync_redis.Redis.from_url(url)
    try:
        kept = client.lrange(store.timeline_key(incident_id), 0, -1)
        sent = [value for _, fields in client.xrange(streams.INCIDENT_UPDATED.name)
                for value in fields.values()]
    finally:
        client.close()
    return b"\n".join([*kept, *sent])


@pytest.mark.roster(DISTRICT)
async def test_each_entry_naming_a_dispatcher_carries_their_name_read_once_for_the_timeline(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wang, wang_desk = await desk(console, "Wang Lei")
    li, li_desk = await desk(console, "Li Na")
    zhao, zhao_desk = await desk(console, "Zhao Min")
    _, inspector = await desk(console, "Chen Jie", role="inspector")
    incident_id = await report(publisher, "noise", priority="P4")  # no team: it waits
    await poll_until(lambda: store_incident(clean_redis, incident_id).get("status")
                     == "unassigned", "the incident waiting")
    path = f"/v1/incidents/{incident_id}"
    for who, note in ((wang_desk, "caller rang again"), (zhao_desk, "neighbours too"),
                      (ADMIN, "checked the camera")):
        r = await console.post(f"{path}/remarks", headers=who, json={"note": note})
        assert r.status_code == 201, r.text
    r = await console.patch(path, headers=li_desk, json={"priority": "P3"})
    assert r.status_code == 200, r.text
    r = await console.post(f"{path}/close", headers=li_desk)
    assert r.status_code == 200, r.text
    r = await console.delete(f"/v1/dispatchers/{zhao}", headers=ADMIN)  # Zhao left
    assert r.status_code == 204, r.text
    looked_up = names_looked_up(monkeypatch)

    r = await console.get(path, headers=inspector)
    assert r.status_code == 200, r.text
    entries = [e for e in r.json()["timeline"] if e.get("detail_code") in (
        "remark", "revised_priority", "closed")]
    said = [(e["detail_code"], e["detail_args"]["by"], e.get("detail_names")) for e in entries]
    assert said == [
        ("remark", f"dispatcher:{wang}", {"by": "Wang Lei"}),
        # revoked since: the name they acted under still stands (the audit's trail)
        ("remark", f"dispatcher:{zhao}", {"by": "Zhao Min"}),
        ("remark", "admin:admin", None),
        ("revised_priority", f"dispatcher:{li}", {"by": "Li Na"}),
        ("closed", f"dispatcher:{li}", {"by": "Li Na"}),
    ]
    assert looked_up == [sorted({wang, li, zhao})]  # once for the whole timeline
    # the dispatcher's and the admin's answers name them too
    for who in (li_desk, ADMIN):
        r = await console.get(path, headers=who)
        assert [e.get("detail_names") for e in r.json()["timeline"]
                if e.get("detail_code") == "closed"] == [{"by": "Li Na"}]
    # what is stored and sent on (intake's view is made of it) keeps the id alone
    kept = stored_and_published(clean_redis, incident_id)
    assert f"dispatcher:{wang}".encode() in kept and f"dispatcher:{li}".encode() in kept
    assert b"Wang Lei" not in kept and b"Li Na" not in kept and b"detail_names" not in kept


@pytest.mark.roster(DISTRICT)
async def test_a_timeline_naming_no_dispatcher_is_answered_as_it_is(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: store_incident(clean_redis, incident_id).get("status")
                     == "unassigned", "the incident waiting")
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["timeline"] and not any("detail_names" in e for e in r.json()["timeline"])
