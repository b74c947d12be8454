"""Nothing is kept for ever: every Redis key has a way out.

Redis holds everything in memory and, once full, refuses writes (new incidents among them),
and a station server runs for years. A day of a district is driven through the four
services as processes: a roster and its re-import, phones on shift and off (one reached by
SMS only), incidents that end every way an incident ends (resolved on site, handed over
and filed with its follow-up visit, linked, timed out, left unassigned and closed by the
command room, revised), device and coordinator tokens made and revoked, a member and a
team removed, a system's key revoked, a poison entry dead-lettered. Then every key is read (SCAN) and must
belong to one family of KEY_FAMILIES, which says how that family leaves: a TTL (checked on
every key), a named sweep, a bound on its length, or the size of the roster and of what the
admin configured. A key of a family nobody classified fails here. Then the sweeps run with
the clock moved past RECORDS_DAYS and KPI_DAYS: nothing of the day's incidents may be left
but what the KPIs keep, and then nothing at all.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from services.dispatch import engine as dispatch_engine
from services.dispatch import records
from services.dispatch import store as dispatch_store
from services.dispatch.locks import IncidentLocks
from services.notify import store as notify_store
from shared import audit, retention, streams
from shared.policy import DEFAULT_POLICY
from shared.settings import ServiceSettings
from tests.e2e import journey
from tests.e2e.journey import Device, SmsGateway, admin, bearer
from tests.e2e.test_district_day import District
from tests.helpers import poll_until, redis_as_compose_runs_it
from tools.redis_server import free_port
from tools.stack import DEFAULT_PORTS, Stack

pytestmark = pytest.mark.e2e

SHORT_DEADLINE_S = 4  # P3 and P4
FOLLOWUP_S = 4  # a dispute's follow-up visit, instead of 7 days
DAY_S = 86_400
# RETENTION_DAYS, RECORDS_DAYS, KPI_DAYS as shipped
DEFAULTS = ServiceSettings(admin_token="test-admin-token")
RETENTION_S = DEFAULTS.retention_days * DAY_S
RECORDS_S = DEFAULTS.records_days * DAY_S
KPI_S = DEFAULTS.kpi_days * DAY_S
ORDER_TTL_S = 14 * DAY_S  # notify's ORDER_TTL_S: kept after an order ended
ORDER_OPEN_TTL_S = 90 * DAY_S  # notify's ORDER_OPEN_TTL_S: an open order, from its last answer


# --- how each key family leaves --------------------------------------------------------------


@dataclass(frozen=True)
class Ttl:
    """Every key carries a TTL, at most `max_s` (from its last write)."""

    max_s: float


@dataclass(frozen=True)
class Sweep:
    """Removed, or its members removed, by a sweep the services run (`by`)."""

    by: Callable[..., Any]


@dataclass(frozen=True)
class Roster:
    """One key per roster entity, district, device or configured object: grows with what
    the admin set up, not with the days (`what`)."""

    what: str


@dataclass(frozen=True)
class Revocable:
    """One key per live roster entity or configured object (as `Roster`: `what`); once
    revoked (its hash's `field` set) it carries a TTL of at most `max_s`."""

    what: str
    max_s: float
    field: str = "revoked_at"


@dataclass(frozen=True)
class Bounded:
    """A single key (or one per roster entity) whose length a rule bounds (`rule`)."""

    rule: str


@dataclass(frozen=True)
class Stream:
    """A stream trimmed by age (shared.retention.keep_trimming, by the service that
    `trimmed_by` names), or by the MAXLEN of every write (`maxlen`)."""

    maxlen: int | None = None


Way = Ttl | Sweep | Roster | Revocable | Bounded | Stream

ID = r"[^:]+"
# (pattern with {id} placeholders, how it leaves). Every key must match exactly one.
KEY_FAMILIES: tuple[tuple[str, Way], ...] = (
    # streams: the events, their dead letters, the audit trails
    (r"(incident|order|unit|device)\.[a-z_]+", Stream()),
    (r"dlq\.(incident|order|unit|device)\.[a-z_]+", Stream()),
    (r"(dispatch|intake|roster|notify):audit", Stream(maxlen=audit.AUDIT_MAXLEN)),
    # dispatch: an incident's record, archived after RECORDS_DAYS, forgotten after KPI_DAYS
    (r"dispatch:incident:{id}", Sweep(records.forget_archived)),
    (r"dispatch:timeline:{id}", Sweep(records.archive_ended)),
    # the reports linked to an incident, and its sources' counts: with its timeline
    (r"dispatch:linked:{id}", Sweep(records.archive_ended)),
    (r"dispatch:linked-sources:{id}", Sweep(records.archive_ended)),
    (r"dispatch:orders:{id}", Sweep(records.archive_ended)),
    (r"dispatch:offered:{id}", Sweep(records.archive_ended)),
    (r"dispatch:order:{id}", Sweep(records.archive_ended)),
    (r"dispatch:ref:{id}:.+", Sweep(records.forget_archived)),
    (r"dispatch:incidents", Sweep(records.forget_archived)),
    (r"dispatch:district:{id}", Sweep(records.forget_archived)),
    (r"dispatch:received", Sweep(records.forget_archived)),
    (r"dispatch:received:{id}", Sweep(records.forget_archived)),
    (r"dispatch:flagged", Sweep(records.forget_archived)),
    (r"dispatch:flagged:{id}", Sweep(records.forget_archived)),
    (r"dispatch:ended", Sweep(records.archive_ended)),
    (r"dispatch:handovers", Sweep(records.archive_ended)),
    # every hand-over by its filing's due, archived too: leaves with its record
    (r"dispatch:filings-due", Sweep(records.forget_archived)),
    # a team's open hand-over and follow-up orders: each leaves with its incident's archive
    (r"dispatch:station-orders:{id}", Sweep(records.archive_ended)),
    (r"dispatch:station-orders-indexed", Bounded("one marker: the catch-up ran")),
    (r"dispatch:status-counts", Bounded("one field per status")),
    (r"dispatch:(ended:indexed|handovers:indexed|flagged-indexed|waiting-districts-indexed"
     r"|received-indexed|filings-due-indexed)",
     Bounded("a mark")),
    (r"dispatch:seen:.+", Ttl(dispatch_store.SEEN_TTL_S)),
    # the report sent out in place of an incident dispatch never received
    (r"dispatch:sent-on:{id}", Ttl(dispatch_store.SENT_ON_TTL_S)),
    (r"dispatch:lock:{id}", Ttl(60)),
    (r"dispatch:timers", Bounded("a timer fires and goes; one per live order or incident "
                                 "in hand")),
    (r"dispatch:waiting:{id}", Bounded("the district's incidents waiting for a team")),
    (r"dispatch:waiting-districts", Roster("districts")),
    # a waiting incident the sweep tried lately (WAITING_SWEEP_S)
    (r"dispatch:swept:{id}", Ttl(dispatch_store.SWEPT_MAX_S)),
    # a free team whose position fix read past the first page of the queue lately
    (r"dispatch:looked-on:{id}", Ttl(dispatch_engine.FIX_LOOKS_ON_EVERY_S)),
    # dispatch: the projection of the roster, the command room's people
    # (a team removed from the roster leaves them at volunteers' `UnitStatus.removed`; the
    # removal's time is kept while an older status or fix of it could still be read)
    (r"dispatch:unit:{id}", Roster("teams on the roster")),
    (r"dispatch:removed-unit:{id}", Ttl(2 * RETENTION_S)),
    (r"dispatch:claim:{id}", Roster("teams: one open order each")),
    (r"dispatch:units:{id}", Roster("districts")),
    (r"dispatch:geo:{id}", Roster("districts")),
    (r"dispatch:modes:{id}", Roster("districts")),
    (r"dispatch:duty:{id}", Roster("districts")),
    (r"dispatch:dispatchers", Roster("dispatcher tokens")),
    (r"dispatch:dispatcher:{id}", Roster("dispatcher tokens")),
    (r"dispatch:dispatcher-token:{id}", Roster("dispatcher tokens")),
    # a revoked dispatcher's name, for the timelines naming them: as long as their incidents
    (r"dispatch:former-dispatcher:{id}", Ttl(KPI_S)),
    # intake: an ended incident's view expires RECORDS_DAYS after it ended; a linked
    # report's, or one dispatch never took up (a dead letter never replayed),
    # RECORDS_DAYS + RETENTION_DAYS after it was recorded
    (r"intake:incident:{id}", Ttl(RECORDS_S + RETENTION_S)),
    (r"intake:timeline:{id}", Ttl(RECORDS_S + RETENTION_S)),
    (r"intake:seen:{id}", Ttl(RECORDS_S + RETENTION_S)),
    # the duplicates linked to an incident, for its window: as long as its record
    (r"intake:joined:{id}", Ttl(RECORDS_S + RETENTION_S)),
    (r"intake:ref:{id}:.+", Ttl(RECORDS_S + RETENTION_S)),
    (r"intake:open:{id}:{id}", Bounded("the open incidents of a district and category")),
    (r"intake:system:{id}", Revocable("reporting systems; a revoked one's record goes "
                                      "RECORDS_DAYS on, with its incidents' records",
                                      RECORDS_S)),
    (r"intake:key:{id}", Roster("reporting systems' live keys")),
    # a key added to a system, to replace its first (POST /v1/systems/{id}/keys): one line a
    # key the admin made; the lines go with the system's record, RECORDS_DAYS after its
    # revocation (tests/integration/intake/test_key_rotation.py checks that TTL)
    (r"intake:system_keys:{id}", Roster("the keys added to reporting systems")),
    # notify: an open order's state ORDER_OPEN_TTL_S after its issue or last answer, an
    # ended one's ORDER_TTL_S after its end
    (r"notify:order:{id}", Ttl(ORDER_OPEN_TTL_S)),
    (r"notify:order:{id}:(attempts|received|responses|fallback_sent)", Ttl(ORDER_OPEN_TTL_S)),
    (r"notify:team:{id}:open", Ttl(ORDER_OPEN_TTL_S)),
    (r"notify:team:{id}:devices", Ttl(notify_store.DEVICE_TTL_S)),
    (r"notify:device:{id}", Ttl(notify_store.DEVICE_TTL_S)),
    (r"notify:device:{id}:revoked", Ttl(notify_store.REVOKED_DEVICE_KEPT_S)),
    (r"notify:fallback", Bounded("a fallback timer fires and goes; one per live order")),
    (r"notify:control:log", Ttl(notify_store.CONTROL_KEPT_S)),
    # volunteers: the roster
    (r"roster:(agency|zone|team|member):{id}", Roster("roster entities")),
    (r"roster:idx:{id}", Roster("entity kinds")),
    (r"roster:idx:{id}:{id}", Roster("entity kinds and districts")),
    (r"roster:districts", Roster("districts")),
    (r"roster:team_members:{id}", Roster("teams")),
    (r"roster:agency_teams:{id}", Roster("agencies")),
    (r"roster:zones_rev:{id}", Roster("districts")),
    (r"roster:state:{id}", Roster("teams")),
    (r"roster:pos:{id}", Roster("teams")),
    (r"roster:check_ins", Roster("teams on shift")),
    (r"roster:plan:{id}", Roster("teams")),
    (r"roster:plans:{id}", Roster("districts")),
    # (a revoked device's hash, or a removed member's, goes 2 x RETENTION_DAYS on, as the
    # ledger's entries; its token's key went at once)
    (r"roster:device:{id}", Revocable("enrolled devices", 2 * RETENTION_S)),
    (r"roster:member_devices:{id}", Roster("members")),
    (r"roster:token:{id}", Roster("live device tokens")),
    # a revoked coordinator's record (its name, for the audit trail's `coordinator:<id>`)
    # goes KPI_DAYS on, as dispatch keeps a revoked dispatcher's name
    (r"roster:coordinator:{id}", Revocable("volunteer coordinators", KPI_S)),
    (r"roster:coordinators", Roster("volunteer coordinators")),
    (r"roster:coordinator_token:{id}", Roster("live coordinator tokens")),
    (r"roster:points:history:{id}", Bounded("HISTORY_KEPT entries per member")),
    (r"roster:points:history:{id}:seq", Roster("members")),
    (r"roster:points:balance:{id}", Roster("members")),
    (r"roster:points:board:{id}", Roster("districts")),
    (r"roster:points:adjust_retry:{id}", Ttl(600)),  # volunteers' ADJUSTMENT_RETRY_S
    (r"roster:import:(lock|journal)", Bounded("one import at a time")),
    (r"roster:import:as_of:{id}", Roster("districts")),
    (r"roster:import:staging:{id}", Ttl(DAY_S)),
    # volunteers: what an order, an award, an incident's resolutions need for redeliveries
    (r"roster:order:{id}", Ttl(100 * DAY_S)),
    (r"roster:resolutions:{id}", Ttl(100 * DAY_S)),
    (r"roster:hazard_confirmed:{id}", Ttl(100 * DAY_S)),
    (r"roster:hazard_reporters:{id}", Ttl(100 * DAY_S)),
    (r"roster:ledger:.+", Ttl(2 * RETENTION_S)),
)
FAMILIES = tuple((re.compile(pattern.replace("{id}", ID) + r"\Z"), pattern, way)
                 for pattern, way in KEY_FAMILIES)


def family_of(key: str) -> list[tuple[str, Way]]:
    return [(pattern, way) for regex, pattern, way in FAMILIES if regex.match(key)]


# --- the stack and the day ------------------------------------------------------------------


@contextmanager
def stack_with_sms(workdir: Path, sms_url: str) -> Iterator[Stack]:
    """tests/e2e/conftest.running_stack's stack, with short deadlines and follow-ups, and
    notify's SMS fallback after a second."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["deadlines_s"]["P3"] = SHORT_DEADLINE_S
    policy["deadlines_s"]["P4"] = SHORT_DEADLINE_S
    policy["followup_days"] = {"dispute": FOLLOWUP_S / DAY_S}
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy), encoding="utf-8")
    redis_server, passwords = redis_as_compose_runs_it(workdir / "redis")
    with redis_server:
        address = f"127.0.0.1:{redis_server.port}/0"
        running = Stack(redis_url=f"redis://admin:{passwords['admin']}@{address}",
                        redis_urls={name: f"redis://{name}:{passwords[name]}@{address}"
                                    for name in DEFAULT_PORTS},
                        admin_token=secrets.token_urlsafe(16),
                        workdir=workdir, ports={name: free_port() for name in DEFAULT_PORTS},
                        extra_env={"CLAIM_IDLE_MS": "2000", "LOG_LEVEL": "INFO",
                                   "POLICY_FILE": str(policy_file),
                                   "FALLBACK_CHANNELS": "sms", "SMS_GATEWAY_URL": sms_url,
                                   "FALLBACK_AFTER_S": "1"})
        running.start()
        try:
            running.wait_ready(timeout=60)
            yield running
        finally:
            running.stop()


@dataclass
class Day:
    stack: Stack
    district: str = ""
    incidents: dict[str, str] = field(default_factory=dict)  # how it ended -> incident id
    sms: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    with SmsGateway() as gateway, stack_with_sms(tmp_path_factory.mktemp("lifetimes"),
                                                 gateway.url) as running:
        driven = asyncio.run(drive_day(running))
        driven.sms = gateway.messages
        yield driven


async def enrol_device(client: httpx.AsyncClient, stack: Stack, member_id: str
                       ) -> tuple[str, str]:
    r = await client.post(f"{stack.url('volunteers')}/v1/members/{member_id}/devices",
                          headers=admin(stack))
    assert r.status_code == 201, r.text
    return r.json()["device_id"], r.json()["token"]


async def drive_day(stack: Stack) -> Day:
    day = Day(stack)
    async with httpx.AsyncClient(timeout=15) as client, AsyncExitStack() as exits:
        d = await District(client, stack, exits, (22.8210, 108.3210)).open()
        day.district = d.name
        dispatch, volunteers, notify = (stack.url(s) for s in ("dispatch", "volunteers",
                                                               "notify"))
        # the guards' phone has no socket: it is reached by SMS only
        await d.on_shift("sec", (0.001, 0), phone=False)
        for who, offset in (("near-1", (0.004, 0)), ("st", (0.015, 0)), ("vol", (0.002, 0))):
            await d.on_shift(who, offset)
        await journey.wait_until_dispatch_sees(client, stack, d.name, 4)
        r = await client.post(f"{notify}/v1/devices/me/sms", headers=bearer(d.tokens["sec"]),
                              json={"phone": "+8613800000001"})
        assert r.status_code == 200, r.text

        # a noise complaint: the guards get it by SMS and resolve it on site
        noise = (await d.report("noise", "noise"))["incident_id"]
        day.incidents["resolved"] = noise
        order = await poll_until(
            lambda: _board_order(client, stack, noise, d.team("sec-1")),
            "the guards' order", timeout=15)
        await d.answer("sec", order, "acknowledged", "on_scene", "resolved")
        await d.everyone_sees(noise, "resolved", "the guards resolved it")

        # a dispute: the patrol hands it over, the station files it and revisits it; a
        # second system reports it too (linked)
        dispute = (await d.report("dispute", "dispute"))["incident_id"]
        day.incidents["handed_over"] = dispute
        order_ = await order_for(d.phones["near-1"], dispute)
        await d.phones["near-1"].send({"type": "received", "order_id": order_["order_id"]})
        video = await journey.register_system(client, stack, d.name)
        lat, lon = d.scene
        linked = await d.report("cam", "dispute", key=video, at=(lat + 0.0005, lon))
        assert linked["status"] == "linked", linked
        day.incidents["linked"] = linked["incident_id"]
        await d.answer("near-1", order_["order_id"], "acknowledged", "on_scene", "handover")
        filing = await order_for(d.phones["st"], dispute)
        await d.answer("st", filing["order_id"], "acknowledged", "resolved")
        await d.everyone_sees(dispute, "resolved", "the station filed it")
        visit = await d.phones["st"].next_of("order", timeout=FOLLOWUP_S + 20)
        assert (visit["incident_id"], visit["kind"]) == (dispute, "followup")
        await d.answer("st", visit["order_id"], "acknowledged", "on_scene", "resolved")
        await poll_until(lambda: _order_state(client, stack, dispute, visit["order_id"],
                                              "resolved"), "the follow-up visit done")
        r = await client.post(f"{dispatch}/v1/incidents/{dispute}/evidence",
                              headers=admin(stack), json={"evidence": [
                                  {"kind": "video", "ref": "bodycam-0042"}]})
        assert r.status_code == 200, r.text
        for team in ("patrol-near", "station-1"):
            await d.team_free(team)

        # a help request the guards miss (timed out, SMS and all); the patrol takes it,
        # asks for a reinforcement and resolves it
        help_ = (await d.report("help", "help_request"))["incident_id"]
        day.incidents["timed_out"] = help_
        second = await order_for(d.phones["near-1"], help_, timeout=SHORT_DEADLINE_S + 20)
        await d.answer("near-1", second["order_id"], "acknowledged", "on_scene", "reinforce")
        await d.answer("near-1", second["order_id"], "resolved")
        await d.everyone_sees(help_, "resolved", "the patrol resolved it")

        # a hazard the volunteers resolve; the command room raises it first (order.amended)
        # and closes it after (the hazard confirmed: points)
        hazard = (await d.report("hole", "hazard_report"))["incident_id"]
        day.incidents["closed"] = hazard
        order_ = await order_for(d.phones["vol"], hazard)
        await d.answer("vol", order_["order_id"], "acknowledged")
        r = await client.patch(f"{dispatch}/v1/incidents/{hazard}", headers=admin(stack),
                               json={"priority": "P3", "note": "a deep hole"})
        assert r.status_code == 200, r.text
        await d.phones["vol"].next_of("order_update", timeout=10)
        await d.answer("vol", order_["order_id"], "on_scene", "resolved")
        await d.everyone_sees(hazard, "resolved", "the volunteers fenced it off")
        r = await client.post(f"{dispatch}/v1/incidents/{hazard}/close", headers=admin(stack))
        assert r.status_code == 200, r.text
        await d.everyone_sees(hazard, "closed", "the command room closed it")
        r = await client.post(f"{volunteers}/v1/members/{d.name}-m-vol/points",
                              headers=admin(stack), json={"points": 5, "note": "good work"})
        assert r.status_code == 201, r.text
        for team in ("patrol-near", "sec-1", "station-1", "vol-1"):
            await d.team_free(team)

        # everyone checks out; a fire then finds nobody (unassigned) and the command room
        # closes it
        for who in ("sec", "near-1", "st", "vol"):
            r = await client.post(f"{volunteers}/v1/me/shift/end", headers=bearer(d.tokens[who]))
            assert r.status_code == 200, r.text
        for team in ("patrol-near", "sec-1", "station-1", "vol-1"):
            await d.team_free(team, on_shift=False)
        nobody = (await d.report("smoke", "fire"))["incident_id"]
        day.incidents["unassigned"] = nobody
        await d.everyone_sees(nobody, "unassigned", "nobody on shift")
        r = await client.post(f"{dispatch}/v1/incidents/{nobody}/close", headers=admin(stack))
        assert r.status_code == 200, r.text
        await d.everyone_sees(nobody, "closed", "the command room closed it")

        # the command room's people: a dispatcher takes the duty, then is revoked
        r = await client.post(f"{dispatch}/v1/dispatchers", headers=admin(stack),
                              json={"name": "Desk 1", "districts": [d.name]})
        assert r.status_code == 201, r.text
        dispatcher = r.json()["dispatcher_id"]
        r = await client.put(f"{dispatch}/v1/duty/{d.name}", headers=admin(stack),
                             json={"dispatcher_id": dispatcher})
        assert r.status_code == 200, r.text
        r = await client.delete(f"{dispatch}/v1/dispatchers/{dispatcher}", headers=admin(stack))
        assert r.status_code == 204, r.text

        # device tokens made and revoked; a coordinator kept and one revoked; a re-import
        # moves a member; a member and a team removed; the video system's key revoked
        device, _ = await enrol_device(client, stack, f"{d.name}-m-vol")
        for name in ("Officer Li", "Officer Wu"):
            r = await client.post(f"{volunteers}/v1/coordinators", headers=admin(stack),
                                  json={"name": name, "districts": [d.name]})
            assert r.status_code == 201, r.text
        r = await client.delete(f"{volunteers}/v1/coordinators/{r.json()['coordinator_id']}",
                                headers=admin(stack))
        assert r.status_code == 204, r.text
        r = await client.delete(f"{volunteers}/v1/members/{d.name}-m-vol/devices/{device}",
                                headers=admin(stack))
        assert r.status_code == 204, r.text
        roster = journey.district_roster(d.name, d.scene)
        for member in roster["members"]:
            if member["id"] == f"{d.name}-m-near-2":
                member["team_id"] = f"{d.name}-patrol-far"
        r = await client.post(f"{volunteers}/v1/roster/import", headers=admin(stack),
                              json=roster)
        assert r.status_code == 200, r.text
        await enrol_device(client, stack, f"{d.name}-m-far")
        for member in ("m-far", "m-near-2"):
            r = await client.delete(f"{volunteers}/v1/members/{d.name}-{member}",
                                    headers=admin(stack))
            assert r.status_code == 204, r.text
        r = await client.delete(f"{volunteers}/v1/teams/{d.name}-patrol-far",
                                headers=admin(stack))
        assert r.status_code == 204, r.text
        r = await client.get(f"{stack.url('intake')}/v1/systems", headers=admin(stack))
        system = [s["system_id"] for s in r.json()["systems"] if s["revoked_at"] is None][-1]
        r = await client.post(f"{stack.url('intake')}/v1/systems/{system}/keys",
                              headers=admin(stack))  # its key replaced once, as 110's is
        assert r.status_code == 201, r.text
        r = await client.delete(f"{stack.url('intake')}/v1/systems/{system}",
                                headers=admin(stack))
        assert r.status_code == 204, r.text

    # an entry that is no event: dead-lettered by both groups that read the stream
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        await client.xadd(streams.INCIDENT_CLOSED.name, {"junk": "not an event"})

        async def dead_lettered() -> bool:
            return await client.xlen(streams.INCIDENT_CLOSED.dead_letters) >= 2

        await poll_until(dead_lettered, "the junk entry dead-lettered", timeout=30)
    finally:
        await client.aclose()
    return day


async def order_for(phone: Device, incident_id: str, timeout: float = 15) -> dict[str, Any]:
    """The phone's next order of the incident (an earlier one taken back may come first)."""
    async with asyncio.timeout(timeout):
        while True:
            order = await phone.next_of("order", timeout=timeout)
            if order["incident_id"] == incident_id:
                return order


async def _board_order(client: httpx.AsyncClient, stack: Stack, incident_id: str,
                       team_id: str) -> str | None:
    r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                         headers=admin(stack))
    if r.status_code != 200:
        return None
    return next((o["order_id"] for o in r.json()["orders"]
                 if o["team_id"] == team_id and o["state"] == "offered"), None)


async def _order_state(client: httpx.AsyncClient, stack: Stack, incident_id: str,
                       order_id: str, state: str) -> bool:
    r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                         headers=admin(stack))
    return any(o["order_id"] == order_id and o["state"] == state for o in r.json()["orders"])


# --- reading Redis --------------------------------------------------------------------------


async def keys_with_ttl(client: aioredis.Redis) -> dict[str, tuple[str, int]]:
    """Every key with its type and TTL in seconds (-1: none)."""
    found = {}
    async for key in client.scan_iter(count=1000):
        found[key] = (await client.type(key), await client.ttl(key))
    return {k: v for k, v in found.items() if v[0] != "none"}  # expired meanwhile


async def mentions(client: aioredis.Redis, needles: set[str]) -> dict[str, int]:
    """The keys that name one of `needles` in their name or hold it in a member, field or
    element (a stream's entries aside), with their TTL."""
    found: dict[str, int] = {}
    async for key in client.scan_iter(count=1000):
        kind = await client.type(key)
        text = key
        if kind == "zset":
            text += " ".join(await client.zrange(key, 0, -1))
        elif kind == "set":
            text += " ".join(await client.smembers(key))
        elif kind == "hash":
            text += " ".join(f"{k} {v}" for k, v in (await client.hgetall(key)).items())
        elif kind == "list":
            text += " ".join(await client.lrange(key, 0, -1))
        elif kind == "string":
            text += await client.get(key) or ""
        if any(needle in text for needle in needles):
            found[key] = await client.ttl(key)
    return found


# --- the tests ------------------------------------------------------------------------------


def test_every_key_of_a_district_s_day_belongs_to_a_family_that_says_how_it_leaves(
        day: Day) -> None:
    async def read() -> tuple[dict[str, tuple[str, int]], set[str]]:
        client = aioredis.Redis.from_url(day.stack.redis_url, decode_responses=True)
        try:
            keys = await keys_with_ttl(client)
            revoked = set()
            for key in keys:
                ways = [w for _, w in family_of(key) if isinstance(w, Revocable)]
                if ways and await client.hget(key, ways[0].field):
                    revoked.add(key)
            # the team removed during the day: gone from dispatch's projection
            team = f"{day.district}-patrol-far"

            async def team_gone() -> bool:
                return not (await client.exists(f"dispatch:unit:{team}")
                            or await client.sismember(f"dispatch:units:{day.district}", team)
                            or await client.zscore(f"dispatch:geo:{day.district}", team)
                            is not None)

            await poll_until(team_gone, "the removed team out of dispatch's projection",
                             timeout=30)
            return keys, revoked
        finally:
            await client.aclose()

    keys, revoked = asyncio.run(read())
    for pattern, way in KEY_FAMILIES:
        if isinstance(way, Revocable):
            assert [k for k in revoked if family_of(k)[0][0] == pattern], (
                f"the day revoked nothing of {pattern}")
    assert day.sms, "the day reached a phone by SMS (notify's fallback keys)"
    unclassified = sorted(k for k in keys if not family_of(k))
    assert unclassified == [], (
        "keys of no family in KEY_FAMILIES: say how each family leaves Redis (a TTL, a "
        f"sweep, a bound) or give it one: {unclassified}")
    ambiguous = {k: [p for p, _ in family_of(k)] for k in keys if len(family_of(k)) > 1}
    assert ambiguous == {}, ambiguous

    trimmed = {name for service in streams.SERVICES
               for name in retention.trimmed_by(service)}
    wrong = []
    for key, (kind, ttl) in sorted(keys.items()):
        [(pattern, way)] = family_of(key)
        if isinstance(way, Ttl) and not 0 < ttl <= way.max_s:
            wrong.append(f"{key} ({pattern}): TTL {ttl}, wants at most {way.max_s:.0f} s")
        if isinstance(way, Revocable) and key in revoked and not 0 < ttl <= way.max_s:
            wrong.append(f"{key} ({pattern}), revoked: TTL {ttl}, wants at most "
                         f"{way.max_s:.0f} s")
        if isinstance(way, Stream):
            if kind != "stream":
                wrong.append(f"{key}: a {kind}, not a stream")
            elif way.maxlen is None and key not in trimmed:
                wrong.append(f"{key}: a stream no service trims (shared.retention.trimmed_by)")
    assert wrong == [], wrong


def test_nothing_of_an_ended_incident_outlives_its_records_and_kpi_days(day: Day) -> None:
    asyncio.run(_outlives(day))


# What the KPIs keep of an archived incident until KPI_DAYS: its figures and its places in
# the board's indexes, and a hand-over's in that of filings by their due.
KPI_KEPT = (r"dispatch:incident:{id}", r"dispatch:incidents", r"dispatch:district:{id}",
            r"dispatch:received", r"dispatch:received:{id}", r"dispatch:ref:{id}:.+",
            r"dispatch:filings-due")
# Kept past KPI_DAYS by design, with the incident's id only: a volunteer's points history
# (its latest HISTORY_KEPT awards name their orders) and the audit trails (by MAXLEN).
LEDGERS = (r"roster:points:history:{id}",)


def _in(key: str, patterns: tuple[str, ...]) -> bool:
    return any(pattern for pattern, _ in family_of(key) if pattern in patterns)


async def _outlives(day: Day) -> None:
    client = aioredis.Redis.from_url(day.stack.redis_url, decode_responses=True)
    locks = IncidentLocks(client)
    try:
        ids = set(day.incidents.values())
        orders = {order_id for incident_id in ids
                  for order_id in await client.lrange(dispatch_store.orders_key(incident_id),
                                                      0, -1)}
        assert len(orders) >= 6, orders
        needles = ids | orders

        # RECORDS_DAYS after they ended: archived, the figures kept
        assert await records.archive_ended(client, locks, ended_before=time.time() + 1) == len(ids)
        left = await mentions(client, needles)
        beyond = {}
        for key, ttl in left.items():
            if _in(key, KPI_KEPT + LEDGERS):
                continue
            way = family_of(key)[0][1] if family_of(key) else None
            # a TTL that runs out by RECORDS_DAYS after the end, or one its family declares
            # longer (a linked report's view at intake)
            if ttl > 0 and isinstance(way, Ttl) and ttl <= way.max_s:
                continue
            beyond[key] = ttl
        assert beyond == {}, f"left of archived incidents past RECORDS_DAYS: {beyond}"
        for incident_id in ids:
            figures = await client.hgetall(dispatch_store.incident_key(incident_id))
            assert figures["archived_at"]
            assert not {"caller", "description", "address", "trace_ctx"} & set(figures)

        # KPI_DAYS after they were reported: nothing left but what expires sooner
        assert await records.forget_archived(client, locks,
                                             reported_before=time.time() + 1) == len(ids)
        left = await mentions(client, needles)
        beyond = {key: ttl for key, ttl in left.items()
                  if not _in(key, LEDGERS) and not 0 < ttl <= KPI_S}
        assert beyond == {}, f"left of incidents past KPI_DAYS: {beyond}"
        # and nothing brings one back: a remark on a forgotten incident is a 404
        gone = day.incidents["resolved"]
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(f"{day.stack.url('dispatch')}/v1/incidents/{gone}/remarks",
                                headers=admin(day.stack), json={"note": "too late"})
        assert r.status_code == 404, r.text
        assert [k for k in await mentions(client, {gone}) if k.startswith("dispatch:")] == []

        # the streams, RETENTION_DAYS on: no entry names them (the audit trails, kept by
        # their MAXLEN, name incidents by id only)
        later = time.time() + RETENTION_S + 60
        for service in streams.SERVICES:
            for name, groups in retention.trimmed_by(service).items():
                point = await retention.safe_trim_point(client, name, retention_s=RETENTION_S,
                                                        groups=groups, now=later)
                if point != "0-0":
                    await client.xtrim(name, minid=point, approximate=False)
        raw = aioredis.Redis.from_url(day.stack.redis_url)
        try:
            kept = []
            for name in [k async for k in client.scan_iter(_type="stream")]:
                if family_of(name) and isinstance(family_of(name)[0][1], Stream) \
                        and family_of(name)[0][1].maxlen is None:
                    for entry_id, fields in await raw.xrange(name):
                        blob = b" ".join(fields.values())
                        if any(n.encode() in blob for n in needles):
                            kept.append((name, entry_id))
            assert kept == [], f"stream entries of the incidents past RETENTION_DAYS: {kept}"
        finally:
            await raw.aclose()
    finally:
        await locks.close()
        await client.aclose()


async def test_a_stream_s_last_entry_goes_once_every_group_handled_it_and_it_is_old(
        clean_redis: str) -> None:
    # A quiet stream (the last report of the night, with its caller's phone) kept its last
    # handled entry for ever: the cut stopped at each group's last delivered id, which
    # XTRIM MINID keeps.
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        old_ms = int((time.time() - RETENTION_S - DAY_S) * 1000)
        for n in range(3):
            await client.xadd("incident.reported", {"caller": f"1380000000{n}"},
                              id=f"{old_ms + n}-0")
        await client.xgroup_create("incident.reported", "dispatch", id="0")
        [(_, read)] = await client.xreadgroup("dispatch", "c", {"incident.reported": ">"})
        await client.xack("incident.reported", "dispatch", *[i for i, _ in read])

        assert await retention.trim_stream(client, "incident.reported",
                                           retention_s=RETENTION_S,
                                           groups=("dispatch",)) == 3
        assert await client.xlen("incident.reported") == 0
        # the group reads on from where it was: nothing is read twice
        await client.xadd("incident.reported", {"caller": "new"})
        [(_, read)] = await client.xreadgroup("dispatch", "c", {"incident.reported": ">"})
        assert [fields for _, fields in read] == [{"caller": "new"}]
    finally:
        await client.aclose()
