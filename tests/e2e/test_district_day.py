"""A district's day with the four services as processes: at each step of an incident, what the
reporting system (intake), the command room (dispatch's board, timeline, KPIs), the teams'
phones (notify's frames) and the roster (volunteers: status, shift, points) each see, and
whether they agree.

These journeys run on a stack of their own whose policy shortens the waits a day holds (P3
and P4 acknowledgement deadlines of a few seconds, a dispute's 7-day follow-up of a few
seconds), so that a missed deadline and a follow-up visit happen within a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.e2e import journey
from tests.e2e.conftest import running_stack
from tests.e2e.journey import Device, admin, bearer, enrol
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SHORT_DEADLINE_S = 4  # P3 and P4
FOLLOWUP_S = 5  # a dispute's follow-up visit, instead of 7 days


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    def shorter(policy: dict[str, Any]) -> None:
        policy["deadlines_s"]["P3"] = SHORT_DEADLINE_S
        policy["deadlines_s"]["P4"] = SHORT_DEADLINE_S
        policy["followup_days"] = {"dispute": FOLLOWUP_S / 86400}

    with running_stack(tmp_path_factory.mktemp("day"), shorter) as running:
        yield running


class District:
    """One district's parties: the command room, a reporting system, the teams' phones."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack, exits: AsyncExitStack,
                 scene: tuple[float, float]) -> None:
        self.client, self.stack, self.exits, self.scene = client, stack, exits, scene
        self.name = ""
        self.key = ""
        self.tokens: dict[str, str] = {}
        self.phones: dict[str, Device] = {}

    async def open(self) -> District:
        self.name = await journey.new_district(self.client, self.stack, self.scene)
        self.key = await journey.register_system(self.client, self.stack, self.name)
        return self

    def team(self, short: str) -> str:
        return f"{self.name}-{short}"

    async def on_shift(self, who: str, offset: tuple[float, float], *,
                       phone: bool = True) -> None:
        token = self.tokens.get(who) or await enrol(self.client, self.stack,
                                                    f"{self.name}-m-{who}")
        self.tokens[who] = token
        if phone:
            self.phones[who] = await journey.connect_device(self.stack, token, self.exits)
        lat, lon = self.scene
        await journey.on_shift_at(self.client, self.stack, token, lat + offset[0],
                                  lon + offset[1])

    async def staff(self, *teams: tuple[str, tuple[float, float]]) -> None:
        """Each member's team on shift at its offset from the scene, and dispatch seeing them."""
        for who, offset in teams:
            await self.on_shift(who, offset)
        await journey.wait_until_dispatch_sees(self.client, self.stack, self.name, len(teams))

    async def report(self, ref: str, category: str, *, flags: tuple[str, ...] = (),
                     key: str | None = None, at: tuple[float, float] | None = None
                     ) -> dict[str, Any]:
        lat, lon = at or self.scene
        r = await self.client.post(
            f"{self.stack.url('intake')}/v1/incidents", headers=bearer(key or self.key),
            json={"external_ref": f"{ref}-{self.name}", "category": category,
                  "district": self.name, "location": {"lat": lat, "lon": lon},
                  "flags": list(flags)})
        assert r.status_code == 202, r.text
        return r.json()

    async def answer(self, who: str, order_id: str, *responses: str) -> None:
        for response in responses:
            body = {"response": response}
            if response in ("declined", "handover"):
                body["note"] = f"{response}: see the log"
            r = await self.client.post(
                f"{self.stack.url('notify')}/v1/orders/{order_id}/responses",
                headers=bearer(self.tokens[who]), json=body)
            assert r.status_code == 200, (response, r.text)

    async def intake_view(self, incident_id: str, key: str | None = None) -> dict[str, Any]:
        r = await self.client.get(f"{self.stack.url('intake')}/v1/incidents/{incident_id}",
                                  headers=bearer(key or self.key))
        assert r.status_code == 200, r.text
        return r.json()

    async def board_view(self, incident_id: str) -> dict[str, Any]:
        r = await self.client.get(f"{self.stack.url('dispatch')}/v1/incidents/{incident_id}",
                                  headers=admin(self.stack))
        assert r.status_code == 200, r.text
        return r.json()

    async def board(self, **params: str) -> list[dict[str, Any]]:
        r = await self.client.get(f"{self.stack.url('dispatch')}/v1/incidents",
                                  headers=admin(self.stack),
                                  params={"district": self.name, **params})
        assert r.status_code == 200, r.text
        body = r.json()
        return body["incidents"] if isinstance(body, dict) else body

    async def units(self) -> dict[str, dict[str, Any]]:
        r = await self.client.get(f"{self.stack.url('dispatch')}/v1/units",
                                  headers=admin(self.stack), params={"district": self.name})
        return {u["team_id"]: u for u in r.json()["units"]}

    async def roster_team(self, short: str) -> dict[str, Any]:
        r = await self.client.get(f"{self.stack.url('volunteers')}/v1/teams/{self.team(short)}",
                                  headers=admin(self.stack))
        assert r.status_code == 200, r.text
        return r.json()

    async def kpis(self) -> dict[str, Any]:
        r = await self.client.get(f"{self.stack.url('dispatch')}/v1/kpis",
                                  headers=admin(self.stack), params={"district": self.name})
        assert r.status_code == 200, r.text
        return r.json()

    async def points(self, who: str) -> list[tuple[str, float]]:
        r = await self.client.get(f"{self.stack.url('volunteers')}/v1/me/points",
                                  headers=bearer(self.tokens[who]))
        assert r.status_code == 200, r.text
        return sorted((e["reason"], e["points"]) for e in r.json()["history"])

    async def everyone_sees(self, incident_id: str, status: str, what: str) -> None:
        """Intake (the reporting system's view) and dispatch (the board) show `status`."""
        async def agree() -> bool:
            r = await self.client.get(f"{self.stack.url('dispatch')}/v1/incidents/{incident_id}",
                                      headers=admin(self.stack))
            if r.status_code == 404:  # not read from the stream yet
                return False
            intake, board = await self.intake_view(incident_id), r.json()
            return (intake["status"] == board["status"] == status
                    and intake["priority"] == board["priority"]
                    and intake["flagged"] == board["flagged"])

        await poll_until(agree, f"intake and dispatch both showing {status}: {what}",
                         timeout=15)

    async def teams_agree(self, incident_id: str) -> list[tuple[str, str]]:
        """Intake's and dispatch's teams of the incident, with their orders' states, agree:
        those (team, state) pairs, sorted."""
        async def both() -> list[tuple[str, str]] | None:
            intake = sorted((t["team_id"], t["status"])
                            for t in (await self.intake_view(incident_id))["teams"])
            board = sorted((t["team_id"], t["status"])
                           for t in (await self.board_view(incident_id))["teams"])
            return board if intake == board else None

        return await poll_until(both, "intake's teams as dispatch's", timeout=10)

    async def team_free(self, short: str, *, on_shift: bool = True) -> None:
        """The team is back to what its shift says, at volunteers and at dispatch alike."""
        want = "available" if on_shift else "off_duty"
        team_id = self.team(short)

        async def free() -> bool:
            roster = await self.roster_team(short)
            unit = (await self.units()).get(team_id)
            return (roster["state"]["status"] == want and not roster["state"]["open_orders"]
                    and unit is not None and unit["status"] == want
                    and not unit["open_order_id"])

        await poll_until(free, f"{team_id} {want} at volunteers and dispatch", timeout=15)


async def orders_on(phone: Device, seconds: float = 0.5) -> list[dict[str, Any]]:
    return [f for f in await phone.drain(seconds) if f.get("type") == "order"]


async def test_a_fight_with_a_knife_next_to_the_aunties_goes_to_police_and_guards_only(
        day: Stack) -> None:
    # The volunteers stand 20 m from the fight; a knife bars them, the patrol and the guard
    # go (a joint response), and every party sees the same incident through to the end.
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8010, 108.3010)).open()
        await d.staff(("vol", (0.0002, 0)), ("near-1", (0.004, 0)), ("sec", (0.002, 0)))

        accepted = await d.report("fight", "violence", flags=("weapon",))
        incident_id = accepted["incident_id"]
        assert accepted["priority"] == "P1"
        police = await d.phones["near-1"].next_of("order", timeout=15)
        guard = await d.phones["sec"].next_of("order", timeout=15)
        assert police["incident_id"] == guard["incident_id"] == incident_id
        assert police["flags"] == guard["flags"] == ["weapon"]
        assert await orders_on(d.phones["vol"]) == []

        await d.everyone_sees(incident_id, "assigned", "two orders out")
        await d.answer("near-1", police["order_id"], "acknowledged", "on_scene")
        await d.answer("sec", guard["order_id"], "acknowledged")
        await d.everyone_sees(incident_id, "on_scene", "the most advanced live order")
        roster = await d.roster_team("patrol-near")
        assert roster["state"]["status"] == "on_scene"

        await d.answer("near-1", police["order_id"], "resolved")
        await d.everyone_sees(incident_id, "resolved", "the patrol resolved it")
        # the guard's order ended with the incident: its phone is told, its team is free
        withdrawn = await d.phones["sec"].next_of("order_withdrawn", timeout=10)
        assert withdrawn["order_id"] == guard["order_id"]
        for team in ("patrol-near", "sec-1", "vol-1"):
            await d.team_free(team)
        assert await d.teams_agree(incident_id) == [
            (d.team("patrol-near"), "resolved"), (d.team("sec-1"), "withdrawn")]
        kpis = await d.kpis()
        assert kpis["incidents"] == 1 and kpis["routing_timeouts"] == 0
        assert await d.points("vol") == []


async def test_a_decline_then_a_missed_deadline_then_the_command_room_assigns_by_hand(
        day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8020, 108.3020)).open()
        await d.staff(("sec", (0.001, 0)), ("near-1", (0.01, 0)))

        accepted = await d.report("help", "help_request")
        incident_id = accepted["incident_id"]
        assert accepted["priority"] == "P3"
        # the guard post is first for a help request, and declines (on another errand)
        first = await d.phones["sec"].next_of("order", timeout=15)
        await d.answer("sec", first["order_id"], "declined")
        # the patrol is next and never answers
        second = await d.phones["near-1"].next_of("order", timeout=10)
        assert second["incident_id"] == incident_id
        withdrawn = await d.phones["near-1"].next_of("order_withdrawn",
                                                     timeout=SHORT_DEADLINE_S + 10)
        assert withdrawn["order_id"] == second["order_id"]

        async def waiting() -> dict[str, Any] | None:
            body = await d.board_view(incident_id)
            return body if body["status"] == "unassigned" else None

        body = await poll_until(waiting, "the incident back on the board, unassigned", timeout=15)
        assert body["routing_timeouts"] == 1
        await d.everyone_sees(incident_id, "unassigned", "nobody left to offer it to")
        # both teams are free again, at volunteers and at dispatch
        await d.team_free("sec-1")
        await d.team_free("patrol-near")

        # the dispatcher rings the guard post and assigns it by hand
        r = await client.post(f"{day.url('dispatch')}/v1/incidents/{incident_id}/assign",
                              headers=admin(day), json={"team_id": d.team("sec-1")})
        assert r.status_code == 200, r.text
        manual = await d.phones["sec"].next_of("order", timeout=10)
        assert (manual["incident_id"], manual["kind"]) == (incident_id, "manual")
        await d.everyone_sees(incident_id, "assigned", "the hand assignment")
        await d.answer("sec", manual["order_id"], "acknowledged", "on_scene", "resolved")
        await d.everyone_sees(incident_id, "resolved", "the guard resolved it")
        await d.team_free("sec-1")
        await d.team_free("patrol-near")
        assert await orders_on(d.phones["near-1"]) == []

        body = await d.board_view(incident_id)
        states = sorted((o["team_id"], o["state"]) for o in body["orders"])
        assert states == sorted([(d.team("sec-1"), "declined"), (d.team("sec-1"), "resolved"),
                                 (d.team("patrol-near"), "timed_out")]), states
        kinds = [e["kind"] for e in body["timeline"]]
        for kind in ("offer", "response", "timeout"):
            assert kind in kinds, kinds
        board = {i["incident_id"]: i for i in await d.board()}
        assert board[incident_id]["status"] == "resolved"
        kpis = await d.kpis()
        assert kpis["routing_timeouts"] == 1 and kpis["incidents"] == 1
        assert await d.teams_agree(incident_id) == states


async def test_a_dispute_handed_over_is_filed_by_the_station_and_revisited_after_the_interval(
        day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8030, 108.3030)).open()
        await d.staff(("near-1", (0.004, 0)), ("st", (0.015, 0)))

        incident_id = (await d.report("dispute", "dispute"))["incident_id"]
        order = await d.phones["near-1"].next_of("order", timeout=15)
        assert order["incident_id"] == incident_id
        await d.answer("near-1", order["order_id"], "acknowledged", "on_scene", "handover")

        handover = await d.phones["st"].next_of("order", timeout=10)
        assert (handover["incident_id"], handover["kind"]) == (incident_id, "handover")
        assert handover["filing_due"]
        await d.everyone_sees(incident_id, "handed_over", "the patrol handed it over")
        await d.team_free("patrol-near")
        await d.team_free("station-1")  # paperwork does not take the team
        board = await d.board(status="handed_over")
        assert incident_id in [i["incident_id"] for i in board]

        # the station files it: the incident is done for everyone
        await d.answer("st", handover["order_id"], "acknowledged", "resolved")
        await d.everyone_sees(incident_id, "resolved", "the station filed it")
        await d.team_free("station-1")

        # seven days later (here seconds), the station revisits the mediated dispute
        visit = await d.phones["st"].next_of("order", timeout=FOLLOWUP_S + 15)
        assert (visit["incident_id"], visit["kind"]) == (incident_id, "followup")
        assert visit.get("ack_by") is None
        await d.answer("st", visit["order_id"], "acknowledged", "on_scene", "resolved")

        async def visited() -> dict[str, Any] | None:
            body = await d.board_view(incident_id)
            order = next(o for o in body["orders"] if o["order_id"] == visit["order_id"])
            return body if order["state"] == "resolved" else None

        body = await poll_until(visited, "the visit recorded as done")

        # the reporting system sees the visit done too
        assert await d.teams_agree(incident_id) == sorted(
            (t["team_id"], t["status"]) for t in body["teams"])
        await d.everyone_sees(incident_id, "resolved", "the visit found the agreement holding")
        await d.team_free("station-1")
        await d.team_free("patrol-near")
        kpis = await d.kpis()
        assert kpis["handed_over"] == 1
        assert await orders_on(d.phones["st"], 1.0) == []


async def test_a_second_system_s_report_of_the_same_dispute_adds_an_injury(day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8040, 108.3040)).open()
        await d.staff(("near-1", (0.004, 0)), ("sec", (0.002, 0)), ("vol", (0.001, 0)))
        video = await journey.register_system(client, day, d.name)

        first = await d.report("dispute", "dispute")
        incident_id = first["incident_id"]
        assert first["priority"] == "P2"
        order = await d.phones["near-1"].next_of("order", timeout=15)
        await d.answer("near-1", order["order_id"], "acknowledged")

        lat, lon = d.scene
        second = await d.report("cam", "dispute", flags=("injury",), key=video,
                                at=(lat + 0.0005, lon))
        assert second["status"] == "linked" and second["linked_to"] == incident_id
        # the patrol on it is told; an injury makes it P1, which wants a second unit: the
        # guard (volunteers never answer a dispute)
        update = await d.phones["near-1"].next_of("order_update", timeout=10)
        assert (update["order_id"], update["priority"], update["flags"]) == (
            order["order_id"], "P1", ["injury"])
        extra = await d.phones["sec"].next_of("order", timeout=10)
        assert (extra["incident_id"], extra["priority"]) == (incident_id, "P1")
        assert await orders_on(d.phones["vol"]) == []
        await d.everyone_sees(incident_id, "acknowledged", "the patrol on it, now a P1")
        assert (await d.board_view(incident_id))["priority"] == "P1"
        linked = await d.intake_view(second["incident_id"], key=video)
        assert (linked["status"], linked["linked_to"]) == ("linked", incident_id)

        await d.answer("sec", extra["order_id"], "acknowledged", "on_scene")
        await d.everyone_sees(incident_id, "on_scene", "the guard first on scene")
        await d.answer("near-1", order["order_id"], "on_scene", "resolved")
        await d.everyone_sees(incident_id, "resolved", "resolved on site")
        # the guard was still on scene: its order ends with the incident, and it is told
        withdrawn = await d.phones["sec"].next_of("order_withdrawn", timeout=10)
        assert withdrawn["order_id"] == extra["order_id"]
        for team in ("patrol-near", "sec-1", "vol-1"):
            await d.team_free(team)
        open_ = [i["incident_id"] for i in await d.board()
                 if i["status"] not in ("resolved", "closed", "linked")]
        assert open_ == [], open_
        kpis = await d.kpis()
        assert kpis["resolved_on_site"] == 1, kpis


async def test_the_aunties_confirm_a_reported_hazard_and_are_paid_once(day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8050, 108.3050)).open()
        await d.staff(("vol", (0.001, 0)), ("sec", (0.003, 0)))

        incident_id = (await d.report("hazard", "hazard_report"))["incident_id"]
        order = await d.phones["vol"].next_of("order", timeout=15)
        assert order["incident_id"] == incident_id
        assert "caller" not in order and "description" not in order
        await d.answer("vol", order["order_id"], "acknowledged", "on_scene", "resolved")
        await d.everyone_sees(incident_id, "resolved", "the volunteers fenced it off")
        await d.team_free("vol-1")

        async def paid() -> list[tuple[str, float]] | None:
            history = await d.points("vol")
            return history if len(history) >= 2 else None

        history = await poll_until(paid, "the resolved order's and the hazard's points")
        assert history == [("hazard_report", 3), ("resolved_order", 10)]
        # the command room closes the day's case: nothing is paid again
        r = await client.post(f"{day.url('dispatch')}/v1/incidents/{incident_id}/close",
                              headers=admin(day))
        assert r.status_code == 200, r.text
        await d.everyone_sees(incident_id, "closed", "the command room closed it")
        r = await client.post(f"{day.url('volunteers')}/v1/me/shift/end",
                              headers=bearer(d.tokens["vol"]))
        assert r.status_code == 200, r.text
        await d.team_free("vol-1", on_shift=False)
        assert await orders_on(d.phones["vol"], 1.0) == []
        assert await d.points("vol") == history


async def test_a_phone_that_drops_mid_incident_sees_only_what_is_still_its_team_s(
        day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8060, 108.3060)).open()
        await d.staff(("near-1", (0.004, 0)))
        incident_id = (await d.report("dispute", "dispute"))["incident_id"]
        order = await d.phones["near-1"].next_of("order", timeout=15)
        await d.phones["near-1"].ws.close()  # Officer Li's phone drops in a lift

        # the auxiliary's phone, switched on meanwhile, gets the team's unanswered order
        d.tokens["near-2"] = await enrol(client, day, f"{d.name}-m-near-2")
        wang = await journey.connect_device(day, d.tokens["near-2"], exits)
        assert (await wang.next_of("order"))["order_id"] == order["order_id"]
        li = await journey.connect_device(day, d.tokens["near-1"], exits)
        assert (await li.next_of("order"))["order_id"] == order["order_id"]
        await li.send({"type": "response", "order_id": order["order_id"],
                       "response": "acknowledged"})
        await d.everyone_sees(incident_id, "acknowledged", "Li's answer on the socket")

        # Li, the last on its shift, cannot check out while the team holds the order
        r = await client.post(f"{day.url('volunteers')}/v1/me/shift/end",
                              headers=bearer(d.tokens["near-1"]))
        assert r.status_code == 409, r.text
        # answered: a reconnecting phone no longer gets it as a new order
        await li.ws.close()
        li = await journey.connect_device(day, d.tokens["near-1"], exits)
        assert await orders_on(li, 1.0) == []
        assert [f["state"] for f in li.frames if f.get("type") == "order_state"] == [
            "acknowledged"]

        # the command room takes the order back (needed elsewhere): both phones are told
        r = await client.post(f"{day.url('dispatch')}/v1/orders/{order['order_id']}/withdraw",
                              headers=admin(day), json={"note": "needed at the station"})
        assert r.status_code == 200, r.text
        for phone in (wang, li):
            assert (await phone.next_of("order_withdrawn"))["order_id"] == order["order_id"]
        await d.team_free("patrol-near")
        await d.everyone_sees(incident_id, "unassigned", "its only team taken off it")
        await li.ws.close()
        li = await journey.connect_device(day, d.tokens["near-1"], exits)
        assert [f for f in await li.drain(1.0) if f.get("type") in ("order", "order_state")] == []
        r = await client.post(f"{day.url('volunteers')}/v1/me/shift/end",
                              headers=bearer(d.tokens["near-1"]))
        assert r.status_code == 200, r.text
        await d.team_free("patrol-near", on_shift=False)


def first_aid_roster(district: str, scene: tuple[float, float]) -> dict[str, Any]:
    roster = journey.district_roster(district, scene)
    for team in roster["teams"]:
        if team["id"] == f"{district}-vol-1":
            team["skills"] = ["first_aid"]
    return roster


async def test_volunteers_first_at_a_collapse_get_an_escort_and_their_points(
        day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = District(client, day, exits, (22.8070, 108.3070))
        d.name = journey.unique_district()
        r = await client.post(f"{day.url('volunteers')}/v1/roster/import", headers=admin(day),
                              json=first_aid_roster(d.name, d.scene))
        assert r.status_code == 200, r.text
        d.key = await journey.register_system(client, day, d.name)
        await d.staff(("vol", (0.0005, 0)), ("sec", (0.002, 0)))

        incident_id = (await d.report("collapse", "medical"))["incident_id"]
        first = await d.phones["vol"].next_of("order", timeout=15)
        escort = await d.phones["sec"].next_of("order", timeout=15)
        assert first["incident_id"] == escort["incident_id"] == incident_id
        await d.answer("vol", first["order_id"], "acknowledged", "on_scene")
        await d.answer("sec", escort["order_id"], "acknowledged", "en_route")
        await d.everyone_sees(incident_id, "on_scene", "the volunteers on scene")
        await d.answer("vol", first["order_id"], "resolved")
        await d.everyone_sees(incident_id, "resolved", "the volunteers resolved it")
        # the escort, still on its way, is told it is no longer needed
        withdrawn = await d.phones["sec"].next_of("order_withdrawn", timeout=10)
        assert withdrawn["order_id"] == escort["order_id"]
        for team in ("vol-1", "sec-1"):
            await d.team_free(team)

        async def paid() -> list[tuple[str, float]] | None:
            return await d.points("vol") or None

        assert await poll_until(paid, "the volunteers' points") == [("resolved_order", 10)]
        assert await d.teams_agree(incident_id) == [
            (d.team("sec-1"), "withdrawn"), (d.team("vol-1"), "resolved")]



async def test_a_guard_post_checking_out_as_an_order_comes_leaves_nobody_stuck(
        day: Stack) -> None:
    # The guards go home at the moment a noise complaint comes in: whichever dispatch or
    # volunteers hears first, the complaint ends with the patrol, the guards' post off duty
    # with nothing open anywhere, and no live order on their phone.
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8110, 108.3110)).open()
        await d.staff(("sec", (0.001, 0)), ("near-1", (0.01, 0)))

        incident_id = (await d.report("noise", "noise"))["incident_id"]
        r = await client.post(f"{day.url('volunteers')}/v1/me/shift/end",
                              headers=bearer(d.tokens["sec"]))
        guard = d.phones["sec"]
        if r.status_code == 409:  # the order reached them first: they decline it, then go
            first = await guard.next_of("order", timeout=10)
            await d.answer("sec", first["order_id"], "declined")
            r = await client.post(f"{day.url('volunteers')}/v1/me/shift/end",
                                  headers=bearer(d.tokens["sec"]))
        assert r.status_code == 200, r.text
        order = await d.phones["near-1"].next_of("order", timeout=15)
        assert order["incident_id"] == incident_id
        await d.answer("near-1", order["order_id"], "acknowledged", "on_scene", "resolved")
        await d.everyone_sees(incident_id, "resolved", "the patrol took it")
        await d.team_free("patrol-near")
        await d.team_free("sec-1", on_shift=False)
        # an offer that reached the guards' phone before dispatch heard of the check-out
        # was taken back (or declined): none is left live on it
        await guard.drain(1.0)
        offered = {f["order_id"] for f in guard.frames if f.get("type") == "order"}
        ended = {f["order_id"] for f in guard.frames if f.get("type") == "order_withdrawn"}
        body = await d.board_view(incident_id)
        states = {o["order_id"]: o["state"] for o in body["orders"]}
        assert all(o in ended or states.get(o) == "declined" for o in offered), (
            guard.frames, states)


async def test_a_phone_offline_when_its_order_timed_out_learns_it_on_reconnecting(
        day: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8120, 108.3120)).open()
        await d.staff(("sec", (0.001, 0)), ("near-1", (0.01, 0)))
        incident_id = (await d.report("noise", "noise"))["incident_id"]
        order = await d.phones["sec"].next_of("order", timeout=15)
        await d.phones["sec"].send({"type": "received", "order_id": order["order_id"]})
        await d.phones["sec"].ws.close()  # the guard's phone loses the network

        second = await d.phones["near-1"].next_of("order", timeout=SHORT_DEADLINE_S + 10)
        assert second["incident_id"] == incident_id
        await d.team_free("sec-1")
        # back online, the page names the orders it still shows: the one that timed out
        # meanwhile is ended on it, and not offered again
        guard = await journey.connect_device(day, d.tokens["sec"], exits)
        await guard.send({"type": "holding", "order_ids": [order["order_id"]]})
        assert (await guard.next_of("order_withdrawn"))["order_id"] == order["order_id"]
        assert await orders_on(guard) == []
        r = await client.get(f"{day.url('notify')}/v1/orders/{order['order_id']}",
                             headers=bearer(d.tokens["sec"]))
        assert r.json()["withdrawn"] is True and r.json()["allowed"] == []
        r = await client.post(f"{day.url('notify')}/v1/orders/{order['order_id']}/responses",
                              headers=bearer(d.tokens["sec"]), json={"response": "acknowledged"})
        assert r.status_code == 409, r.text
        body = await d.board_view(incident_id)
        assert body["routing_timeouts"] == 1 and body["status"] == "assigned"
        await d.everyone_sees(incident_id, "assigned", "the patrol has it now")


async def test_volunteers_the_command_room_calls_in_off_duty_are_paid_for_what_they_resolve(
        day: Stack) -> None:
    # Nobody on shift for a hazard report; the dispatcher rings the aunties at home and
    # assigns them by hand (an off-duty team's order stands). They go, fence the hole off
    # and resolve it from the phone without checking in: the points of a resolved order and
    # of a confirmed hazard are theirs, once.
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8170, 108.3170)).open()
        await d.on_shift("vol", (0.001, 0))
        # dispatch has seen the check-in, so the check-out it shows next is this one
        await journey.wait_until_dispatch_sees(client, day, d.name, 1)
        r = await client.post(f"{day.url('volunteers')}/v1/me/shift/end",
                              headers=bearer(d.tokens["vol"]))
        assert r.status_code == 200, r.text
        await d.team_free("vol-1", on_shift=False)

        incident_id = (await d.report("hazard", "hazard_report"))["incident_id"]
        await d.everyone_sees(incident_id, "unassigned", "nobody on shift to send")
        r = await client.post(f"{day.url('dispatch')}/v1/incidents/{incident_id}/assign",
                              headers=admin(day), json={"team_id": d.team("vol-1")})
        assert r.status_code == 200, r.text
        order = await d.phones["vol"].next_of("order", timeout=10)
        assert (order["incident_id"], order["kind"]) == (incident_id, "manual")
        await d.answer("vol", order["order_id"], "acknowledged", "on_scene", "resolved")
        await d.everyone_sees(incident_id, "resolved", "the called-in volunteers resolved it")
        await d.team_free("vol-1", on_shift=False)

        async def paid() -> list[tuple[str, float]] | None:
            history = await d.points("vol")
            return history if len(history) >= 2 else None

        history = await poll_until(paid, "the called-in volunteer's points")
        assert history == [("hazard_report", 3), ("resolved_order", 10)]
        r = await client.post(f"{day.url('dispatch')}/v1/incidents/{incident_id}/close",
                              headers=admin(day))
        assert r.status_code == 200, r.text
        await d.everyone_sees(incident_id, "closed", "the command room closed it")
        assert await d.points("vol") == history


async def test_a_revisit_that_finds_the_agreement_broken_is_not_counted_as_holding(
        day: Stack) -> None:
    # The station filed the mediation (resolved) and visits after the interval: the couple
    # are fighting again. The KPIs' "agreements holding" must not count it, and a second
    # visit only planned is not a visit made.
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = await District(client, day, exits, (22.8130, 108.3130)).open()
        await d.staff(("near-1", (0.004, 0)), ("st", (0.015, 0)))
        incident_id = (await d.report("dispute", "dispute"))["incident_id"]
        order = await d.phones["near-1"].next_of("order", timeout=15)
        await d.answer("near-1", order["order_id"], "acknowledged", "on_scene", "handover")
        filing = await d.phones["st"].next_of("order", timeout=10)
        await d.answer("st", filing["order_id"], "acknowledged", "resolved")
        await d.everyone_sees(incident_id, "resolved", "the station filed the mediation")
        visit = await d.phones["st"].next_of("order", timeout=FOLLOWUP_S + 15)
        assert (visit["incident_id"], visit["kind"]) == (incident_id, "followup")
        await d.answer("st", visit["order_id"], "acknowledged", "on_scene", "handover")

        async def second_visit_due() -> bool:
            body = await d.board_view(incident_id)
            return any(e["kind"] == "followup" and "does not hold" in (e["detail"] or "")
                       for e in body["timeline"])

        await poll_until(second_visit_due, "the broken agreement on the timeline")
        followups = (await d.kpis())["followups"]
        assert followups == {"incidents": 1, "visits": 1, "agreements_holding": 0}


async def test_first_aid_volunteers_sent_alone_to_a_collapse_are_flagged_to_the_command_room(
        day: Stack) -> None:
    # Only the first-aid aunties are free for a collapse (a P1): they go, and the command
    # room's board flags it, for nobody escorts them ("volunteers are never the only
    # responders to a P1": the dispatcher may call a police unit by radio).
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        d = District(client, day, exits, (22.8150, 108.3150))
        d.name = journey.unique_district()
        r = await client.post(f"{day.url('volunteers')}/v1/roster/import", headers=admin(day),
                              json=first_aid_roster(d.name, d.scene))
        assert r.status_code == 200, r.text
        d.key = await journey.register_system(client, day, d.name)
        await d.staff(("vol", (0.0005, 0)))
        incident_id = (await d.report("collapse", "medical"))["incident_id"]
        order = await d.phones["vol"].next_of("order", timeout=15)
        assert (order["incident_id"], order["priority"]) == (incident_id, "P1")
        await d.everyone_sees(incident_id, "assigned", "the volunteers sent")

        async def flagged() -> bool:
            return bool((await d.board_view(incident_id))["flagged"])

        await poll_until(flagged, "the unescorted volunteers flagged on the board")
