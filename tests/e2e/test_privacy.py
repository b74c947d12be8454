"""Need to know: callers' data reaches police devices only, and never logs or traces; nor
do the devices' and systems' credentials, nor the members' names and phone numbers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.notify.domain.phones import e164
from tests.e2e.conftest import running_stack
from tests.e2e.journey import (
    SmsGateway,
    admin,
    all_exported_text,
    bearer,
    connect_device,
    district_roster,
    enrol,
    on_shift_at,
    register_system,
    unique_district,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8300, 108.3300)
PHONE = "13912345678"
NAME = "Huang Xiaoming"
DESCRIPTION = "neighbour upstairs drilling at midnight"
BODY_CAM = "bwc-0417-20261205-2140.mp4"  # a team's file: the command room's, not the caller's


@pytest.fixture(scope="module")
def sms_gateway() -> Iterator[SmsGateway]:
    with SmsGateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sms_gateway: SmsGateway) -> Iterator[Stack]:
    """The four services with the shipped policy and notify's SMS fallback to `sms_gateway`
    a second after an order no socket confirmed: a member's number goes out by it, and must
    go nowhere else."""
    env = {"FALLBACK_CHANNELS": "sms", "SMS_GATEWAY_URL": sms_gateway.url,
           "FALLBACK_AFTER_S": "1"}
    with running_stack(tmp_path_factory.mktemp("privacy"), lambda _: None, env) as running:
        yield running


async def test_caller_data_goes_to_police_orders_only_and_never_into_logs_or_traces(
        stack: Stack) -> None:
    district = unique_district()
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text
        guard = await enrol(client, stack, f"{district}-m-sec")
        police = await enrol(client, stack, f"{district}-m-near-1")
        guard_phone = await connect_device(stack, guard, exits, in_the_url=True)
        police_phone = await connect_device(stack, police, exits, as_the_page=True)
        await on_shift_at(client, stack, guard, lat + 0.001, lon)
        await on_shift_at(client, stack, police, lat + 0.002, lon)

        await wait_until_dispatch_sees(client, stack, district, 2)
        key = await register_system(client, stack, district)
        # A P1 fight: police and the nearest security post both go (a joint response).
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"priv-{district}", "category": "violence", "district": district,
            "location": {"lat": lat, "lon": lon}, "flags": ["in_progress"],
            "caller": {"phone": PHONE, "name": NAME}, "description": DESCRIPTION})
        assert r.status_code == 202, r.text

        to_guard = await guard_phone.next_of("order", timeout=15)
        to_police = await police_phone.next_of("order", timeout=15)
        assert to_police["caller"] == {"phone": PHONE, "name": NAME}
        assert to_police["description"] == DESCRIPTION
        assert "caller" not in to_guard and "description" not in to_guard
        assert PHONE not in str(to_guard) and NAME not in str(to_guard)

        for frame, token in ((to_guard, guard), (to_police, police)):
            r = await client.post(f"{stack.url('notify')}/v1/orders/{frame['order_id']}/responses",
                                  headers=bearer(token), json={
                                      "response": "acknowledged", "note": f"call {PHONE}",
                                      "evidence": [{"kind": "video", "ref": BODY_CAM}]})
            assert r.status_code == 200, r.text

        async def acknowledged() -> bool:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/"
                                 f"{to_police['incident_id']}", headers=admin(stack))
            return r.json()["status"] == "acknowledged"

        await poll_until(acknowledged, "the incident acknowledged")
        seen_by_reporter = await client.get(f"{stack.url('intake')}/v1/incidents/"
                                            f"{to_police['incident_id']}", headers=bearer(key))
        trace_id = seen_by_reporter.json()["trace_id"]
        # the teams' notes are the command room's: not the reporting system's, nor the
        # caller's number they happen to hold
        assert PHONE not in seen_by_reporter.text and BODY_CAM not in seen_by_reporter.text
        r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{to_police['incident_id']}",
                             headers=admin(stack))
        assert f"call {PHONE}" in [e.get("note") for e in r.json()["timeline"]]
        assert BODY_CAM in r.text  # the command room has the body camera's file
        metrics = ""
        for service in ("intake", "dispatch", "volunteers", "notify"):
            r = await client.get(f"{stack.url(service)}/metrics", headers=admin(stack))
            assert r.status_code == 200
            metrics += r.text

    # Give the batch span processors time to flush this journey's spans.
    await poll_until(lambda: trace_id in all_exported_text(stack.traces_dir), "spans exported")
    await poll_until(lambda: _spans_with(stack, trace_id) >= 10, "the journey's spans")
    exported = all_exported_text(stack.traces_dir)
    logs = "\n".join(p.read_text(errors="replace") for p in (stack.workdir / "logs").glob("*.log"))
    assert "/v1/devices/stream" in logs  # the sockets' lines are there, their tokens not
    for secret in (PHONE, NAME, DESCRIPTION, "midnight", police, guard, key):
        assert secret not in exported, f"{secret!r} in exported spans"
        assert secret not in logs, f"{secret!r} in service logs"
        assert secret not in metrics, f"{secret!r} in metrics"


def _spans_with(stack: Stack, trace_id: str) -> int:
    return all_exported_text(stack.traces_dir).count(trace_id)


async def test_a_credential_in_a_request_s_query_string_never_reaches_the_spans(
        stack: Stack) -> None:
    # A phone whose proxy dropped the WebSocket upgrade of `/v1/devices/stream?token=`, a
    # system that puts its key in the URL: refused with 401, and FastAPI's server span keeps
    # the query string (`url.query`), which must reach no exporter with the token in it.
    district = unique_district()
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text
        device = await enrol(client, stack, f"{district}-m-sec")
        key = await register_system(client, stack, district)
        r = await client.get(f"{stack.url('notify')}/v1/devices/stream",
                             params={"token": device, "probe": district})
        assert r.status_code == 401
        r = await client.get(f"{stack.url('intake')}/v1/categories",
                             params={"token": key, "probe": district})
        assert r.status_code == 401

    probe = f"probe={district}"
    await poll_until(lambda: all_exported_text(stack.traces_dir).count(probe) == 2,
                     "both requests' server spans exported")
    exported = all_exported_text(stack.traces_dir)
    leaked = [what for what, secret in (("device token", device), ("system key", key))
              if secret in exported]
    assert leaked == [], f"in the exported spans: {leaked}"
    assert exported.count(f'"url.query":"token=***&{probe}"') == 2


# Each member's name and number as the roster gives them (numbers typed as people say them),
# distinct from anything else a run writes: any of them in a log line, a span or a metric is
# a member's personal data where it has no business.
MEMBERS = {
    "near-1": ("Officer Ouyang Ruolan", "139 0771 4101"),
    "near-2": ("Auxiliary Situ Haochen", "+86 139-0771-4102"),
    "far": ("Officer Zhuge Mingyue", "0086 13907714103"),
    "st": ("Officer Shangguan Yixin", "13907714104"),
    "sec": ("Guard Dongfang Qingyu", "(139) 0771 4105"),
    "vol": ("Volunteer Murong Xiaowan", "+8613907714106"),
}
MOVED = ("Auxiliary Situ Haoran", "139 0771 4107")  # near-2 as a CSV re-import has them
SMS_PHONE = "+86 139 0771 4108"  # the number the volunteer gives notify for SMS
REFUSED = ("Officer Nangong Wanqing", "139 0771 4109 ext 2")  # a JSON row refused for it
HEADERLESS = ("Officer Ximen Chuiyun", "13907714110")  # a CSV whose header row is missing
# a route of each service that a request without a token is refused: its span, last
SERVICES = {"intake": "/v1/categories", "dispatch": "/v1/units", "volunteers": "/v1/districts",
            "notify": "/v1/devices/me"}
ALL_DAY = {"timezone": "UTC", "shifts": {"day": {"start": "00:00", "end": "00:00"}},
           "rotation": ["day"], "anchor": "2026-01-05"}


def member_secrets() -> list[str]:
    """Every name and number seeded, each number also as its bare 11 digits (which the
    number in E.164, or typed with separators, holds or is made of)."""
    seeded = [*MEMBERS.values(), MOVED, ("", SMS_PHONE), REFUSED, HEADERLESS]
    out = [name for name, _ in seeded if name]
    for _, phone in seeded:
        mobile = re.search(r"1[3-9][0-9]{9}", re.sub(r"[^0-9]", "", phone))
        assert mobile is not None, phone
        out += [phone, mobile.group()]
    return out


def members_csv(district: str, rows: list[tuple[str, str, str, str, str, str]], *,
                header: bool = True) -> str:
    lines = ["id,name,agency_id,team_id,role,phone"] if header else []
    lines += [",".join(row) for row in rows]
    return "\n".join(lines) + "\n"


async def test_members_names_and_numbers_never_reach_logs_spans_or_metrics(
        stack: Stack, sms_gateway: SmsGateway) -> None:
    district = unique_district()
    lat, lon = SCENE
    volunteers, notify = stack.url("volunteers"), stack.url("notify")
    roster = district_roster(district, SCENE)
    for member in roster["members"]:
        member["name"], member["phone"] = MEMBERS[member["id"].removeprefix(f"{district}-m-")]
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        # refused imports: a number that is no number, a members file without its header row
        refused = json.loads(json.dumps(roster))
        refused["members"][1].update(name=REFUSED[0], phone=REFUSED[1])
        r = await client.post(f"{volunteers}/v1/roster/import", headers=admin(stack),
                              json=refused)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["errors"][0]["path"] == "members.1.phone"
        headerless = members_csv(district, [(
            f"{district}-m-x", HEADERLESS[0], f"{district}-sps", f"{district}-patrol-near",
            "officer", HEADERLESS[1])], header=False)
        r = await client.post(f"{volunteers}/v1/roster/import", headers=admin(stack),
                              data={"district": district},
                              files={"members": ("members.csv", headerless, "text/csv")})
        assert r.status_code == 422, r.text

        r = await client.post(f"{volunteers}/v1/roster/import", headers=admin(stack),
                              json=roster)
        assert r.status_code == 200, r.text
        for team in ("patrol-near", "sec-1", "vol-1"):
            r = await client.put(f"{volunteers}/v1/teams/{district}-{team}/shift-plan",
                                 headers=admin(stack), json=ALL_DAY)
            assert r.status_code == 200, r.text
        tokens = {who: await enrol(client, stack, f"{district}-m-{who}")
                  for who in ("near-1", "near-2", "sec", "vol")}
        for who, token in tokens.items():
            r = await client.get(f"{volunteers}/v1/members/{district}-m-{who}",
                                 headers=admin(stack))
            assert r.status_code == 200, r.text
            assert (r.json()["name"], r.json()["phone"]) == MEMBERS[who]
            r = await client.get(f"{volunteers}/v1/me", headers=bearer(token))
            assert r.json()["member"]["name"] == MEMBERS[who][0], r.text
        # the police and the guards on their sockets; the volunteers' phone by SMS only
        await connect_device(stack, tokens["near-1"], exits, as_the_page=True)
        await connect_device(stack, tokens["near-2"], exits)
        await connect_device(stack, tokens["sec"], exits)
        r = await client.post(f"{notify}/v1/devices/me/sms", headers=bearer(tokens["vol"]),
                              json={"phone": SMS_PHONE})
        assert r.status_code == 200, r.text
        r = await client.get(f"{notify}/v1/devices/me", headers=bearer(tokens["vol"]))
        assert r.json()["member_name"] == MEMBERS["vol"][0], r.text
        for who, north in (("near-1", 0.004), ("near-2", 0.004), ("sec", 0.003),
                           ("vol", 0.001)):
            await on_shift_at(client, stack, tokens[who], lat + north, lon)
        await wait_until_dispatch_sees(client, stack, district, 3)
        today = datetime.now(UTC).date().isoformat()
        for url, params in ((f"{volunteers}/v1/shifts", {"district": district, "date": today}),
                            (f"{volunteers}/v1/shifts/now", {"district": district}),
                            (f"{stack.url('dispatch')}/v1/shift-check-ins",
                             {"district": district})):
            r = await client.get(url, headers=admin(stack), params=params)
            assert r.status_code == 200, r.text

        # the guard reports a hazard from the street; the volunteers, nearest, are texted it
        r = await client.post(f"{stack.url('intake')}/v1/incidents",
                              headers=bearer(tokens["sec"]), json={
                                  "external_ref": f"hazard-{district}",
                                  "category": "hazard_report", "district": district,
                                  "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 202, r.text

        def texted() -> list[dict[str, Any]]:
            return [m for m in sms_gateway.messages
                    if m.get("to") == e164(SMS_PHONE) and m.get("kind") == "order"]

        order_id = (await poll_until(texted, "the volunteers' order texted"))[0]["order_id"]
        for response in ("acknowledged", "on_scene", "resolved"):
            r = await client.post(f"{notify}/v1/orders/{order_id}/responses",
                                  headers=bearer(tokens["vol"]), json={"response": response})
            assert r.status_code == 200, r.text

        async def paid() -> bool:
            r = await client.get(f"{volunteers}/v1/me/points", headers=bearer(tokens["vol"]))
            return bool(r.json()["history"])

        await poll_until(paid, "the volunteer's points for the resolved order")
        r = await client.post(f"{volunteers}/v1/members/{district}-m-vol/points",
                              headers=admin(stack), json={"points": 5, "note": "night patrol"})
        assert r.status_code == 201, r.text
        r = await client.get(f"{volunteers}/v1/points/leaderboard", headers=admin(stack),
                             params={"district": district})
        assert r.status_code == 200, r.text
        r = await client.post(f"{volunteers}/v1/me/shift/end", headers=bearer(tokens["sec"]))
        assert r.status_code == 200, r.text

        # a CSV re-import moves the auxiliary to the other patrol, renamed and renumbered
        moved = members_csv(district, [(f"{district}-m-near-2", MOVED[0], f"{district}-sps",
                                        f"{district}-patrol-far", "auxiliary", MOVED[1])])
        r = await client.post(f"{volunteers}/v1/roster/import", headers=admin(stack),
                              data={"district": district},
                              files={"members": ("members.csv", moved, "text/csv")})
        assert r.status_code == 200, r.text
        assert r.json()["counts"]["members"]["updated"] == 1, r.text

        async def moved_on() -> bool:
            r = await client.get(f"{volunteers}/v1/me", headers=bearer(tokens["near-2"]))
            return r.json()["team"]["id"] == f"{district}-patrol-far"

        await poll_until(moved_on, "the auxiliary on the other patrol")
        r = await client.delete(f"{volunteers}/v1/members/{district}-m-far",
                                headers=admin(stack))
        assert r.status_code == 204, r.text
        metrics = ""
        for service in ("intake", "dispatch", "volunteers", "notify"):
            r = await client.get(f"{stack.url(service)}/metrics", headers=admin(stack))
            assert r.status_code == 200
            metrics += r.text
        # one last request to each service: once its span is exported, so is every span of
        # the journey that service ended before it
        probe = f"{district}-done"
        for service, path in SERVICES.items():
            r = await client.get(f"{stack.url(service)}{path}", params={"probe": probe})
            assert r.status_code == 401, r.text

    def probed() -> bool:
        # the service's file and those rotated from it (`notify.1.jsonl`)
        return all(any(f"probe={probe}" in path.read_text(encoding="utf-8")
                       for path in stack.traces_dir.glob(f"{service}.*jsonl"))
                   for service in SERVICES)

    await poll_until(probed, "each service's last span exported")
    exported = all_exported_text(stack.traces_dir)
    logs = "\n".join(p.read_text(errors="replace") for p in (stack.workdir / "logs").glob("*.log"))
    assert f"roster import for district {district}" in logs  # the import's line is there
    leaks = [(secret, where) for secret in member_secrets()
             for where, text in (("spans", exported), ("logs", logs), ("metrics", metrics))
             if secret in text]
    assert leaks == [], f"members' names or numbers (secret, where): {leaks}"
