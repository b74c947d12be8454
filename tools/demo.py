"""`make demo`: a simulated district fed into a running `make run`.

Imports a district roster (police stations, a street service station, security teams and
volunteer teams around Nanning's Minzu Avenue), plans each team's shifts (main 08:00-18:00
and secondary 18:00-08:00 on the district's clock, swapping every day), enrols a simulated
phone per team that holds the notify WebSocket, starts its shift and reports positions (but
for a few planned teams held back, whom the command room's roll call shows as not checked
in), then posts incidents at RATE per minute and prints a line per incident as it moves:
reported -> assigned -> acked.

Environment: RATE (incidents per minute, default 6), DURATION (seconds, default: until
Ctrl-C), DISTRICT (default qingxiu), TIMEZONE (the district's clock, as volunteers is given
it; default Asia/Shanghai). URLs and the admin token come from var/run.env.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from contextlib import AsyncExitStack, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from shared.timezones import DEFAULT_TIMEZONE, parse_timezone

ROOT = Path(__file__).resolve().parent.parent
CENTRE = (22.8170, 108.3665)
CATEGORIES = ["dispute", "noise", "help_request", "traffic", "suspicious", "theft_in_progress",
              "violence", "medical", "hazard_report", "ebike_theft", "lost_person", "fire"]
WEIGHTS = [14, 12, 12, 8, 8, 4, 3, 4, 6, 6, 3, 1]
# What a team says when it cannot take an order, or hands one over to the station.
DECLINE_REASONS = ["vehicle broken down", "already holding a suspect for the station",
                   "member injured, returning to post", "escorting a lost child home"]
HANDOVER_NOTES = ["parties agreed to mediation; revisit needed", "damage to be assessed for a case",
                  "suspect left before we arrived; CCTV at the gate", "landlord dispute, documents needed"]
# DOMAIN.md's shifts: main at the station by day, secondary on the vehicle through the night,
# swapping every day. The plans name no time zone: volunteers' TIMEZONE, the district's clock.
SHIFTS = {"main": {"start": "08:00", "end": "18:00"},
          "secondary": {"start": "18:00", "end": "08:00"}}
# The teams on the secondary shift today (main tomorrow); every other team is on the main
# shift today. Each half works one of the shifts at any hour.
NIGHT_FIRST = frozenset({"ps-nanhu-duty", "sps-patrol-2", "sec-post-2", "sec-post-3",
                         "vol-team-2", "vol-team-4"})
# Planned teams whose phones never check in (late, a dead battery): a security post and a
# volunteer team of each half, so the command room's roll call has someone to call whichever
# shift is being worked. Every other phone checks in, whether or not its team is planned now.
HELD_BACK = frozenset({"sec-post-1", "vol-team-3", "sec-post-3", "vol-team-2"})


def settings() -> dict[str, str]:
    values = dict(os.environ)
    run_env = Path(os.environ.get("LIANFANG_VAR", ROOT / "var")) / "run.env"
    if run_env.exists():
        for line in run_env.read_text().splitlines():
            key, _, value = line.partition("=")
            values.setdefault(key, value)
    missing = [k for k in ("ADMIN_TOKEN", "INTAKE_URL", "VOLUNTEERS_URL", "NOTIFY_URL",
                           "DISPATCH_URL") if k not in values]
    if missing:
        sys.exit(f"start the system with `make run` first (missing {', '.join(missing)})")
    return values


def square(lat: float, lon: float, half: float) -> list[list[float]]:
    return [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half], [lon - half, lat - half]]


def roster(district: str) -> dict[str, Any]:
    lat0, lon0 = CENTRE
    agencies = [
        {"id": "ps-xinzhu", "name": "新竹派出所", "kind": "police", "role": "station"},
        {"id": "ps-nanhu", "name": "南湖派出所", "kind": "police", "role": "station"},
        {"id": "ps-zhonghua", "name": "中华派出所", "kind": "police",
         "role": "station"},
        {"id": "sps-minzu", "name": "民族大道街面警务站", "kind": "police",
         "role": "patrol"},
        {"id": "sec-hengan", "name": "恒安保安公司", "kind": "security"},
        {"id": "vol-redarm", "name": "青秀红袖标志愿者队", "kind": "volunteer"},
    ]
    zones = [
        {"id": "z-xinzhu", "name": "新竹社区", "owner_agency_id": "ps-xinzhu",
         "polygon": square(lat0 + 0.01, lon0 - 0.01, 0.01)},
        {"id": "z-nanhu", "name": "南湖社区", "owner_agency_id": "ps-nanhu",
         "polygon": square(lat0 - 0.01, lon0 - 0.01, 0.01)},
        {"id": "z-zhonghua", "name": "中华社区", "owner_agency_id": "ps-zhonghua",
         "polygon": square(lat0, lon0 + 0.01, 0.01)},
    ]
    teams: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []

    def add(team_id: str, agency: str, name: str, mode: str, zone: str, people: list[str],
            role: str, skills: list[str] | None = None) -> None:
        teams.append({"id": team_id, "agency_id": agency, "name": name, "mode": mode,
                      "skills": skills or [], "home_zone_id": zone})
        for i, person in enumerate(people):
            members.append({"id": f"{team_id}-m{i + 1}", "name": person, "agency_id": agency,
                            "team_id": team_id, "role": role if i == 0 else
                            ("auxiliary" if role == "officer" else role)})

    add("ps-xinzhu-duty", "ps-xinzhu", "新竹值班组", "car", "z-xinzhu",
        ["陈伟", "卢强"], "officer")
    add("ps-nanhu-duty", "ps-nanhu", "南湖值班组", "car", "z-nanhu",
        ["韦志刚", "莫海"], "officer")
    add("ps-zhonghua-duty", "ps-zhonghua", "中华值班组", "car", "z-zhonghua",
        ["覃立新", "谭军"], "officer")
    for n, zone in enumerate(["z-xinzhu", "z-nanhu", "z-zhonghua"], start=1):
        add(f"sps-patrol-{n}", "sps-minzu", f"街面巡逻{n}组", "car" if n == 1 else "ebike",
            zone, [f"巡警{n}甲", f"辅警{n}乙"], "officer", ["first_aid"])
        add(f"sec-post-{n}", "sec-hengan", f"保安{n}号岗", "foot", zone,
            [f"保安员{n}甲", f"保安员{n}乙"], "guard", ["first_aid"] if n == 2 else [])
    for n, zone in enumerate(["z-xinzhu", "z-nanhu", "z-zhonghua", "z-xinzhu"], start=1):
        add(f"vol-team-{n}", "vol-redarm", f"红袖标{n}队", "bike" if n % 2 else "foot",
            zone, [f"志愿者{n}甲", f"志愿者{n}乙", f"志愿者{n}丙"], "volunteer")
    return with_district_ids({"district": district, "agencies": agencies, "zones": zones,
                              "teams": teams, "members": members})


ID_FIELDS = ("id", "agency_id", "owner_agency_id", "team_id", "home_zone_id")


def with_district_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """Roster ids are global (volunteers refuses one already used in another district): the
    district in each id lets demos of several districts share one Redis."""
    for entity in ("agencies", "zones", "teams", "members"):
        for row in doc[entity]:
            row.update({f: f"{doc['district']}-{row[f]}" for f in ID_FIELDS if f in row})
    return doc


def _said(r: httpx.Response) -> str:
    """What a service's error answer says: its message, else the start of its body."""
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return r.text[:300]


class Demo:
    def __init__(self, env: dict[str, str], district: str) -> None:
        self.env = env
        self.district = district
        self.admin = {"Authorization": f"Bearer {env['ADMIN_TOKEN']}"}
        self.client = httpx.AsyncClient(timeout=10)
        self.started: dict[str, float] = {}
        self.team_names: dict[str, str] = {}

    def line(self, incident_id: str, text: str) -> None:
        t0 = self.started.get(incident_id)
        at = f"+{time.monotonic() - t0:5.1f}s" if t0 else "       "
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} {incident_id} {at} {text}\n")
        sys.stdout.flush()

    async def wait_ready(self, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        for name in ("INTAKE_URL", "DISPATCH_URL", "VOLUNTEERS_URL", "NOTIFY_URL"):
            while True:
                with suppress(httpx.HTTPError):
                    if (await self.client.get(f"{self.env[name]}/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    sys.exit(f"{self.env[name]} is not ready: is `make run` running?")
                await asyncio.sleep(0.5)

    async def close_leftovers(self) -> None:
        """A previous demo run that was stopped leaves incidents open and its teams busy:
        the command room closes them, which withdraws their orders and frees the teams.
        Asked once the district's roster is imported: dispatch refuses (422) to list a
        district the roster does not hold. What it refuses is said, not skipped."""
        dispatch = self.env["DISPATCH_URL"]
        open_ones: list[str] = []
        params: dict[str, str | int] = {"district": self.district, "limit": 500}
        while True:
            r = await self.client.get(f"{dispatch}/v1/incidents", headers=self.admin,
                                      params=params)
            if r.status_code != 200:
                sys.stderr.write("incidents left open by an earlier run not closed: listing "
                                 f"them, dispatch answered {r.status_code}: {_said(r)}\n")
                return
            page = r.json()
            open_ones += [i["incident_id"] for i in page["incidents"]
                          if i["status"] not in ("resolved", "closed", "linked")]
            if not page.get("next"):
                break
            params = {**params, "after": page["next"]}
        refused = []
        for incident_id in open_ones:
            r = await self.client.post(f"{dispatch}/v1/incidents/{incident_id}/close",
                                       headers=self.admin)
            if r.status_code != 200:
                refused.append(f"{incident_id}: {r.status_code} {_said(r)}")
        if closed := len(open_ones) - len(refused):
            sys.stdout.write(f"closed {closed} incident(s) left open by an earlier run\n")
        if refused:
            sys.stderr.write(f"{len(refused)} incident(s) left open by an earlier run not "
                             f"closed: {'; '.join(refused[:3])}\n")

    async def setup(self) -> list[tuple[dict[str, Any], str]]:
        await self.wait_ready()
        doc = roster(self.district)
        r = await self.client.post(f"{self.env['VOLUNTEERS_URL']}/v1/roster/import",
                                   headers=self.admin, json=doc)
        r.raise_for_status()
        sys.stdout.write(f"roster imported for district {self.district}: {r.json()}\n")
        await self.close_leftovers()
        await self.plan_shifts(doc)
        await self.take_duty()
        phones = []
        for team in doc["teams"]:
            self.team_names[team["id"]] = team["name"]
            member = next(m for m in doc["members"] if m["team_id"] == team["id"])
            r = await self.client.post(
                f"{self.env['VOLUNTEERS_URL']}/v1/members/{member['id']}/devices",
                headers=self.admin)
            r.raise_for_status()
            phones.append((team, r.json()["token"]))
        await self.browser_phone(doc)
        return phones

    def local_id(self, team_id: str) -> str:
        """A team's id in the roster above, without the district (`with_district_ids`)."""
        return team_id.removeprefix(f"{self.district}-")

    def held_back(self, team: dict[str, Any]) -> bool:
        return self.local_id(team["id"]) in HELD_BACK

    async def plan_shifts(self, doc: dict[str, Any]) -> None:
        """Each team's shift plan, through volunteers' shift-planning API: the rotation starts
        today on the district's clock (TIMEZONE, as volunteers reads the plans)."""
        tz = parse_timezone(self.env.get("TIMEZONE") or DEFAULT_TIMEZONE)
        anchor = datetime.now(tz).date().isoformat()
        for team in doc["teams"]:
            rotation = (["secondary", "main"] if self.local_id(team["id"]) in NIGHT_FIRST
                        else ["main", "secondary"])
            r = await self.client.put(
                f"{self.env['VOLUNTEERS_URL']}/v1/teams/{team['id']}/shift-plan",
                headers=self.admin, json={"shifts": SHIFTS, "rotation": rotation,
                                          "anchor": anchor})
            r.raise_for_status()
        held = ", ".join(t["name"] for t in doc["teams"] if self.held_back(t))
        sys.stdout.write(f"shift plans set from {anchor}: main 08:00-18:00, secondary "
                         "18:00-08:00 (the district's clock), swapping every day; not "
                         f"checking in: {held}\n")

    async def browser_phone(self, doc: dict[str, Any]) -> None:
        """A device for a member nobody simulates (the second of a volunteer team), as a link
        to the member's page: a browser becomes that member's phone."""
        member = next(m for m in doc["members"] if m["id"] == f"{self.district}-vol-team-4-m2")
        r = await self.client.post(
            f"{self.env['VOLUNTEERS_URL']}/v1/members/{member['id']}/devices", headers=self.admin)
        r.raise_for_status()
        sys.stdout.write(f"{member['name']}'s phone ({doc['teams'][-1]['name']}) in a browser: "
                         f"{self.env['NOTIFY_URL']}/device#token={r.json()['token']}\n")

    async def take_duty(self) -> None:
        """A duty leader for the district (one, kept across runs), so that the console shows
        every new incident's supervisor."""
        dispatch = self.env["DISPATCH_URL"]
        r = await self.client.get(f"{dispatch}/v1/dispatchers", headers=self.admin)
        r.raise_for_status()
        name = "值班长（演示）"
        leader = next((d["dispatcher_id"] for d in r.json()["dispatchers"]
                       if d["name"] == name and self.district in d["districts"]), None)
        if leader is None:
            r = await self.client.post(f"{dispatch}/v1/dispatchers", headers=self.admin,
                                       json={"name": name, "districts": [self.district]})
            r.raise_for_status()
            leader = r.json()["dispatcher_id"]
        r = await self.client.put(f"{dispatch}/v1/duty/{self.district}", headers=self.admin,
                                  json={"dispatcher_id": leader})
        r.raise_for_status()
        sys.stdout.write(f"{name} leads the duty of {self.district}\n")

    async def stay_out(self, token: str) -> None:
        """A held-back team's phone: it does not check in. Checked in by an earlier run
        (which held back other teams, or none), it checks out; refused while an order of that
        run still holds the team (`close_leftovers` has it withdrawn), it asks again."""
        url = f"{self.env['VOLUNTEERS_URL']}/v1/me/shift/end"
        for _ in range(30):
            with suppress(httpx.HTTPError):
                r = await self.client.post(url, headers={"Authorization": f"Bearer {token}"})
                if r.status_code != 409 and r.status_code < 500:
                    return
            await asyncio.sleep(1)

    async def roll_call(self) -> None:
        """What the command room's roll call shows: the teams planned for the shift being
        worked now and not checked in (dispatch asks volunteers)."""
        r = await self.client.get(f"{self.env['DISPATCH_URL']}/v1/shift-check-ins",
                                  headers=self.admin, params={"district": self.district})
        if r.status_code != 200:
            sys.stdout.write(f"roll call not read: {r.status_code} {r.text}\n")
            return
        found = r.json()
        missing = [self.team_names.get(t["team_id"], t["team_id"]) for t in found["teams"]
                   if not t["checked_in"]]
        sys.stdout.write(f"roll call: {found['planned']} team(s) planned for the shift now, "
                         f"{found['not_checked_in']} not checked in "
                         f"({', '.join(missing) or 'none'})\n")

    async def phone(self, team: dict[str, Any], token: str) -> None:
        """One member's phone: shift on, positions every 5 s, answers orders. Like the member's
        page, it reconnects when its socket drops (`make run` restarting notify, Redis away)."""
        auth = {"Authorization": f"Bearer {token}"}
        vol = self.env["VOLUNTEERS_URL"]
        lat = CENTRE[0] + random.uniform(-0.02, 0.02)
        lon = CENTRE[1] + random.uniform(-0.02, 0.02)
        await self.client.post(f"{vol}/v1/me/shift/start", headers=auth)
        ws_url = self.env["NOTIFY_URL"].replace("http://", "ws://") + "/v1/devices/stream"

        async def report_positions() -> None:
            nonlocal lat, lon
            while True:
                lat += random.uniform(-0.0005, 0.0005)
                lon += random.uniform(-0.0005, 0.0005)
                with suppress(httpx.HTTPError):
                    await self.client.put(f"{vol}/v1/me/position", headers=auth,
                                          json={"lat": lat, "lon": lon, "accuracy_m": 10})
                await asyncio.sleep(5)

        positions = asyncio.create_task(report_positions())
        in_hand: set[str] = set()  # a reconnect replays the orders not answered yet
        try:
            while True:
                try:
                    async with connect(ws_url, additional_headers=auth) as ws:
                        async for raw in ws:
                            frame = json.loads(raw)
                            if frame.get("type") != "order":
                                continue
                            await ws.send(json.dumps({"type": "received",
                                                      "order_id": frame["order_id"]}))
                            if frame["order_id"] not in in_hand:
                                in_hand.add(frame["order_id"])
                                asyncio.create_task(self.work(team, token, frame, in_hand))
                except (OSError, WebSocketException):
                    await asyncio.sleep(2)
        finally:
            positions.cancel()

    async def work(self, team: dict[str, Any], token: str, order: dict[str, Any],
                   in_hand: set[str]) -> None:
        """The team's answers, over HTTP: they outlive the socket the order came on."""
        incident_id = order["incident_id"]
        eta = f", ETA {order['eta_s'] / 60:.1f} min" if order.get("eta_s") else ""
        self.line(incident_id, f"assigned to {team['name']} ({order['kind']}{eta})")
        try:
            await asyncio.sleep(random.uniform(1, 6))
            if random.random() < 0.08:
                reason = random.choice(DECLINE_REASONS)
                if await self.answer(token, order["order_id"],
                                     {"response": "declined", "note": reason}):
                    self.line(incident_id, f"declined by {team['name']}: {reason}")
                return
            steps = [("acknowledged", 0), ("en_route", 3), ("on_scene", 8),
                     ("handover" if random.random() < 0.15 else "resolved", 15)]
            if order.get("kind") in ("handover", "followup"):
                steps = [("acknowledged", 0), ("resolved", 20)]
            for response, pause in steps:
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))
                body: dict[str, Any] = {"response": response}
                if response == "handover":
                    body["note"] = random.choice(HANDOVER_NOTES)
                if response in ("resolved", "handover") and random.random() < 0.5:
                    # the body camera's file, as its docking station will name it
                    body["evidence"] = [{"kind": "video",
                                         "ref": f"bwc-{team['name']}-{int(time.time())}.mp4"}]
                if not await self.answer(token, order["order_id"], body):
                    return  # taken back meanwhile: a missed deadline, the command room
                if response in ("acknowledged", "resolved", "handover"):
                    self.line(incident_id, f"{response} by {team['name']}")
        finally:
            in_hand.discard(order["order_id"])

    async def answer(self, token: str, order_id: str, body: dict[str, Any]) -> bool:
        """True once notify took the answer; False when it refused it (the order was taken
        back or has ended). Sent again while notify is away (restarting, or 503 while Redis
        is), as a phone would, however long that lasts: a lost answer would keep the team
        busy for ever (given up after a minute, it was taken for a refusal, and a Redis away
        longer left every team on an order busy until the command room took each back)."""
        url = f"{self.env['NOTIFY_URL']}/v1/orders/{order_id}/responses"
        while True:
            with suppress(httpx.HTTPError):
                r = await self.client.post(url, headers={"Authorization": f"Bearer {token}"},
                                           json=body)
                if r.status_code < 500 and r.status_code != 429:
                    return r.is_success
            await asyncio.sleep(1)

    async def post_incidents(self, rate_per_min: float) -> None:
        r = await self.client.post(f"{self.env['INTAKE_URL']}/v1/systems", headers=self.admin,
                                   json={"name": "demo 110 feed", "districts": [self.district]})
        r.raise_for_status()
        key = {"Authorization": f"Bearer {r.json()['api_key']}"}
        n = 0
        while True:
            n += 1
            category = random.choices(CATEGORIES, WEIGHTS)[0]
            flags = ["weapon"] if category == "violence" and random.random() < 0.3 else []
            body = {
                "external_ref": f"demo-{int(time.time())}-{n}", "category": category,
                "district": self.district, "flags": flags,
                "location": {"lat": CENTRE[0] + random.uniform(-0.018, 0.018),
                             "lon": CENTRE[1] + random.uniform(-0.018, 0.018),
                             "address": f"民族大道{random.randint(1, 300)}号"},
                "caller": {"phone": "138" + "".join(random.choices("0123456789", k=8))},
            }
            try:
                r = await self.client.post(f"{self.env['INTAKE_URL']}/v1/incidents",
                                           headers=key, json=body)
            except httpx.HTTPError as e:  # `make run` restarting it: the next report finds it
                sys.stdout.write(f"intake did not answer ({type(e).__name__})\n")
            else:
                self.reported(r, category)
            await asyncio.sleep(60.0 / rate_per_min)

    def reported(self, r: httpx.Response, category: str) -> None:
        if r.status_code not in (200, 202):
            sys.stdout.write(f"intake refused an incident: {r.status_code} {r.text}\n")
            return
        data = r.json()
        self.started[data["incident_id"]] = time.monotonic()
        extra = f" (duplicate of {data['linked_to']})" if data.get("linked_to") else ""
        self.line(data["incident_id"],
                  f"reported: {category} {data['priority']} {data['status']}{extra}")
        asyncio.create_task(self.watch_unassigned(data["incident_id"]))

    async def watch_unassigned(self, incident_id: str) -> None:
        await asyncio.sleep(3)
        try:
            r = await self.client.get(f"{self.env['DISPATCH_URL']}/v1/incidents/{incident_id}",
                                      headers=self.admin)
        except httpx.HTTPError:
            return  # dispatch restarting: the board flags the incident anyway
        if r.status_code == 200 and r.json()["status"] == "unassigned":
            self.line(incident_id, "UNASSIGNED: no suitable team free; flagged on the board")


async def main() -> None:
    env = settings()
    demo = Demo(env, os.environ.get("DISTRICT", "qingxiu"))
    rate = float(os.environ.get("RATE", "6"))
    duration = float(os.environ.get("DURATION", "0"))
    async with AsyncExitStack():
        phones = await demo.setup()
        tasks = [asyncio.create_task(demo.stay_out(token) if demo.held_back(team)
                                     else demo.phone(team, token)) for team, token in phones]
        await asyncio.sleep(3)  # let shifts start and the first fixes arrive
        with suppress(httpx.HTTPError):
            await demo.roll_call()
        tasks.append(asyncio.create_task(demo.post_incidents(rate)))
        try:
            if duration:
                await asyncio.sleep(duration)
            else:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await demo.client.aclose()


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        asyncio.run(main())
