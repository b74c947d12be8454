"""A city's roster at DOMAIN's scale (11,000 members, 3,000 teams, 50 zones) in the middle of a
working day: the import succeeds, never holds Redis in one long command or transaction (Redis
is single-threaded: dispatch waits behind it), stays all or nothing across a crash and a
concurrent import, and a re-import of the same roster costs nothing."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.asyncio.client import Pipeline as RedisPipeline
from redis.asyncio.client import Redis as RedisClient

from services.volunteers.store import imports, keys
from shared.events import UnitStatus

from .conftest import ADMIN, Volunteers, poll_until, running, stream_events

MEMBER_ROLE = {"police": "officer", "security": "guard", "volunteer": "volunteer"}

# What one write may hold at most: 2,000 commands run in ~3 ms; a WATCH of n keys costs
# Redis 7.0 O(n²) (each key is compared with those already watched: 14,000 keys took 1 s).
MAX_TRANSACTION = 3_000
MAX_WATCH = 1_000
MAX_SCRIPT = 3_000


def city(district: str = "city", *, members: int = 11_000, teams: int = 3_000,
         zones: int = 50, skills: tuple[str, ...] = ()) -> dict[str, Any]:
    """DOMAIN's city: 4 police stations, 2 service stations, security companies and
    volunteer patrols; zones in a grid, owned by the stations."""
    agencies = [{"id": f"{district}-ps{i}", "name": f"Station {i}", "kind": "police"}
                for i in range(4)]
    agencies += [{"id": f"{district}-pp{i}", "name": f"Service station {i}", "kind": "police",
                  "role": "patrol"} for i in range(2)]
    agencies += [{"id": f"{district}-s{i}", "name": f"Guards {i}", "kind": "security"}
                 for i in range(24)]
    agencies += [{"id": f"{district}-v{i}", "name": f"Volunteers {i}", "kind": "volunteer"}
                 for i in range(30)]
    kinds = {a["id"]: a["kind"] for a in agencies}
    zone_rows = []
    for i in range(zones):
        lon, lat = 108 + (i % 10) * 0.01, 22 + (i // 10) * 0.01
        zone_rows.append({"id": f"{district}-z{i}", "name": f"Grid {i}",
                          "owner_agency_id": f"{district}-ps{i % 4}",
                          "polygon": [[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01],
                                      [lon, lat + 0.01]]})
    team_rows = [{"id": f"{district}-t{i:05d}", "agency_id": agencies[i % len(agencies)]["id"],
                  "name": f"Team {i}", "mode": ("foot", "bike", "ebike", "car")[i % 4],
                  "skills": list(skills), "home_zone_id": zone_rows[i % zones]["id"]}
                 for i in range(teams)]
    member_rows = []
    for i in range(members):
        team = team_rows[i % teams]
        member_rows.append({"id": f"{district}-m{i:05d}", "name": f"Member {i}",
                            "agency_id": team["agency_id"], "team_id": team["id"],
                            "role": MEMBER_ROLE[kinds[team["agency_id"]]]})
    return {"district": district, "agencies": agencies, "zones": zone_rows,
            "teams": team_rows, "members": member_rows}


_LINE = re.compile(rb'^[\d.]+ \[\d+ ([^\]]*)\] (.*)$')
_WORD = re.compile(rb'"((?:[^"\\]|\\.)*)"')


@dataclass
class Writes:
    """What each client made Redis run in one go, read from MONITOR."""

    transactions: list[int] = field(default_factory=list)  # commands of each MULTI/EXEC
    watches: list[int] = field(default_factory=list)  # keys of each WATCH
    scripts: list[int] = field(default_factory=list)  # commands each script ran
    commands: Counter[tuple[str, str]] = field(default_factory=Counter)  # (command, key)

    def roster_writes(self) -> int:
        reads = {"HGETALL", "HGET", "HMGET", "SMEMBERS", "ZRANGE", "ZRANGEBYLEX", "GET",
                 "EXISTS", "SCARD", "WATCH", "UNWATCH", "MULTI", "EXEC", "LLEN", "LRANGE",
                 "SISMEMBER", "TYPE", "PTTL", "TTL", "ZRANGEBYSCORE", "ZSCORE"}
        return sum(n for (command, key), n in self.commands.items()
                   if key.startswith("roster:") and command not in reads
                   and not key.startswith("roster:import:") and key != "roster:audit")


class Monitor:
    """MONITOR from `start` to `stop`: the size of every transaction, WATCH and script."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lines: list[bytes] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._marker = b"city-scale-monitor-stop"

    def _run(self) -> None:
        client = redis.Redis.from_url(self._url)
        with client.monitor() as monitor:
            self._started.set()
            while True:
                line = monitor.connection.read_response()
                if self._marker in line:
                    break
                self._lines.append(line)
        client.close()

    def __enter__(self) -> Monitor:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> Writes:
        if self._thread.is_alive():
            client = redis.Redis.from_url(self._url)
            client.echo(self._marker)
            client.close()
            self._thread.join(30)
        return self.writes()

    def writes(self) -> Writes:
        out = Writes()
        in_multi: dict[str, int] = {}
        script: int | None = None
        for line in self._lines:
            m = _LINE.match(line)
            if m is None:
                continue
            who = m.group(1).decode()
            words = [w.decode("unicode_escape", errors="replace")
                     for w in _WORD.findall(m.group(2))]
            if not words:
                continue
            command = words[0].upper()
            if who == "lua":
                script = (script or 0) + 1
            elif script is not None:
                out.scripts.append(script)
                script = None
            if command in ("EVAL", "EVALSHA"):
                script = 0
            if who != "lua" and command == "MULTI":
                in_multi[who] = 0
            elif who != "lua" and command in ("EXEC", "DISCARD"):
                out.transactions.append(in_multi.pop(who, 0))
            elif who in in_multi:
                in_multi[who] += 1
            if command == "WATCH":
                out.watches.append(len(words) - 1)
            out.commands[(command, words[1] if len(words) > 1 else "")] += 1
        if script is not None:
            out.scripts.append(script)
        return out


def report(url: str, what: str, writes: Writes) -> None:
    """Prints what Redis recorded (nothing is asserted on time): the slowest commands and the
    longest latency events, while MONITOR ran (it slows every command several-fold)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    slow = sorted(client.slowlog_get(10_000), key=lambda e: -e["duration"])[:5]
    latest = client.execute_command("LATENCY", "LATEST")
    client.close()
    print(f"\n{what}: largest transaction {max(writes.transactions, default=0)} commands, "
          f"largest WATCH {max(writes.watches, default=0)} keys, largest script "
          f"{max(writes.scripts, default=0)} commands; roster writes {writes.roster_writes()}")
    for entry in slow:
        print(f"  slowlog {entry['duration'] / 1000:.1f} ms {str(entry['command'])[:70]}")
    print(f"  latency latest {latest}")


def fresh_measures(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.config_set("slowlog-log-slower-than", 2000)  # µs
    client.config_set("latency-monitor-threshold", 2)  # ms
    client.slowlog_reset()
    client.execute_command("LATENCY", "RESET")
    client.close()


async def import_doc(volunteers: Volunteers, doc: dict[str, Any]) -> dict[str, Any]:
    response = await volunteers.client.post("/v1/roster/import", json=doc, headers=ADMIN,
                                            timeout=120)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def assert_small(writes: Writes) -> None:
    assert max(writes.transactions, default=0) <= MAX_TRANSACTION, writes.transactions[-5:]
    assert max(writes.watches, default=0) <= MAX_WATCH
    assert max(writes.scripts, default=0) <= MAX_SCRIPT


async def test_a_city_roster_imports_in_writes_that_never_hold_redis_long(
    volunteers: Volunteers, clean_redis: str,
) -> None:
    doc = city()
    fresh_measures(clean_redis)
    with Monitor(clean_redis) as monitor:
        result = await import_doc(volunteers, doc)
    writes = monitor.writes()
    report(clean_redis, "city import", writes)
    assert result["counts"]["members"]["created"] == 11_000
    assert result["counts"]["teams"]["created"] == 3_000
    assert result["unit_status_published"] == 3_000
    assert_small(writes)
    # all of it is there, every team announced once
    assert await volunteers.redis.zcard("roster:idx:members:city") == 11_000
    assert await volunteers.redis.scard("roster:team_members:city-t02999") == 3
    announced = Counter(e.unit_id for e in await volunteers.events("unit.status", UnitStatus))
    assert len(announced) == 3_000 and set(announced.values()) == {1}


async def test_reimporting_an_unchanged_city_writes_and_announces_nothing(
    volunteers: Volunteers, clean_redis: str,
) -> None:
    doc = city()
    await import_doc(volunteers, doc)
    before = await volunteers.redis.xlen("unit.status")
    fresh_measures(clean_redis)
    with Monitor(clean_redis) as monitor:
        again = await import_doc(volunteers, doc)
    writes = monitor.writes()
    report(clean_redis, "unchanged re-import", writes)
    assert again["counts"]["members"] == {"created": 0, "updated": 0, "unchanged": 11_000}
    assert again["unit_status_published"] == 0
    assert_small(writes)
    assert await volunteers.redis.xlen("unit.status") == before
    assert writes.roster_writes() == 0


async def test_a_changed_city_imports_while_teams_check_in_and_out(clean_redis: str) -> None:
    """Mid-day: every team gets a skill while teams keep checking in and out. The import
    had to see no team's state change from its first read to its write, seconds at this
    scale: it lost every round and answered 503."""
    async with running(clean_redis, rate_limit_device="1000/second") as volunteers:
        await import_doc(volunteers, city())
        phones = [await volunteers.enrol(f"city-m{i:05d}") for i in range(8)]
        stop = asyncio.Event()
        moves = 0

        async def shifts(phone: dict[str, str]) -> None:
            nonlocal moves
            while not stop.is_set():
                for step in ("start", "end"):
                    r = await volunteers.client.post(f"/v1/me/shift/{step}", headers=phone)
                    assert r.status_code == 200, r.text
                    moves += 1
                    await asyncio.sleep(0.1)  # a busy team: ten changes a second

        busy = [asyncio.create_task(shifts(p)) for p in phones]
        try:
            await poll_until(lambda: asyncio.sleep(0, moves > 16), "teams checking in and out")
            result = await import_doc(volunteers, city(skills=("first_aid",)))
            assert moves > 32  # the teams kept moving while it ran
        finally:
            stop.set()
            await asyncio.gather(*busy)
        assert result["counts"]["teams"]["updated"] == 3_000
        last = {e.unit_id: e for e in await volunteers.events("unit.status", UnitStatus)}
        assert all(e.skills == ("first_aid",) for e in last.values())


async def test_an_import_cut_off_halfway_is_finished_by_the_service(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash between two of the import's writes: the service finishes the rest (once
    its journal is written, the import is committed), so no half roster stays, and no team
    is announced twice."""
    monkeypatch.setattr(imports, "STEP_COMMANDS", 200)
    doc = city("half", members=600, teams=200, zones=4)
    applied = 0
    original = imports.apply_step

    class Crash(Exception):
        pass

    async def crashing(*args: Any, **kwargs: Any) -> int:
        nonlocal applied
        if applied == 12:  # members half written, no team's state yet
            raise Crash("the process died here")
        applied += 1
        return await original(*args, **kwargs)

    async def dead(*_: Any) -> None:
        """A dead process releases nothing: its lock runs out."""

    async with running(clean_redis) as volunteers:
        monkeypatch.setattr(imports, "apply_step", crashing)
        monkeypatch.setattr(imports, "release_lock", dead)
        r = await volunteers.client.post("/v1/roster/import", json=doc, headers=ADMIN)
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal", r.text
        monkeypatch.undo()
        assert 0 < await volunteers.redis.zcard("roster:idx:members:half") < 600
        assert await volunteers.redis.xlen("unit.status") == 0
    await volunteers.redis.delete(keys.import_lock())  # what its TTL does
    async with running(clean_redis) as restarted:
        async def finished() -> bool:
            return not await restarted.redis.exists(keys.import_journal())

        await poll_until(finished, "the restarted service finished the import", timeout=20)
        assert await restarted.redis.zcard("roster:idx:members:half") == 600
        assert await restarted.redis.scard("roster:team_members:half-t00199") == 3
        announced = Counter(e.unit_id for e in await stream_events(
            restarted.redis, "unit.status", UnitStatus))
        assert len(announced) == 200 and set(announced.values()) == {1}
        again = await import_doc(restarted, doc)
        assert again["counts"]["members"]["unchanged"] == 600


async def test_two_districts_claiming_the_same_id_at_once_get_one_of_them(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ids are global: of two imports naming the same team in two districts at the same
    time, one is refused, however their (now several) writes interleave."""
    monkeypatch.setattr(imports, "STEP_COMMANDS", 100)
    north = city("north", members=300, teams=100, zones=4)
    south = city("south", members=300, teams=100, zones=4)
    south["teams"].append(dict(north["teams"][0], agency_id="south-s0",
                               home_zone_id="south-z0"))
    answers = await asyncio.gather(*(volunteers.client.post(
        "/v1/roster/import", json=doc, headers=ADMIN) for doc in (north, south)))
    assert sorted(r.status_code for r in answers) == [200, 422]
    winner, loser = ("north", "south") if answers[0].status_code == 200 else ("south", "north")
    refused = next(r for r in answers if r.status_code == 422).json()["error"]
    assert refused["errors"][0]["field"] == "id"
    team = await volunteers.redis.hgetall("roster:team:north-t00000")
    assert team[b"district"].decode() == winner
    assert await volunteers.redis.zcard(f"roster:idx:teams:{winner}") == 100 + (
        winner == "south")
    assert await volunteers.redis.zcard(f"roster:idx:teams:{loser}") == 0


async def test_a_team_removed_during_an_import_giving_it_members_is_not_left_with_them(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The import found the team (no members yet) and gives it members; a removal of the
    team between the import's writes would leave them on a team that is gone. It waits
    for the import, and then refuses: the team has members."""
    monkeypatch.setattr(imports, "STEP_COMMANDS", 100)
    doc = city("mid", members=600, teams=200, zones=4)
    empty = dict(doc["teams"][0], id="mid-empty", name="Empty team")
    await import_doc(volunteers, {**doc, "teams": [*doc["teams"], empty]})
    joining = [{"id": f"mid-joiner{i}", "name": f"Joiner {i}", "team_id": "mid-empty",
                "agency_id": empty["agency_id"], "role": "officer"} for i in range(3)]
    changed = city("mid", members=600, teams=200, zones=4, skills=("first_aid",))
    changed["members"] += joining
    removal: list[asyncio.Task[Any]] = []
    original = imports.apply_step

    async def removing_meanwhile(*args: Any, **kwargs: Any) -> int:
        if not removal:  # the import has validated and is writing
            removal.append(asyncio.create_task(
                volunteers.client.delete("/v1/teams/mid-empty", headers=ADMIN)))
        await asyncio.sleep(0)
        return await original(*args, **kwargs)

    monkeypatch.setattr(imports, "apply_step", removing_meanwhile)
    await import_doc(volunteers, changed)
    removed = await removal[0]
    assert removed.status_code == 409, removed.text
    assert await volunteers.redis.exists("roster:team:mid-empty")
    assert await volunteers.redis.scard("roster:team_members:mid-empty") == 3


async def test_the_days_shifts_of_a_city_are_read_in_a_few_round_trips(
    volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET /v1/shifts read each planned team's profile, state and members one after the
    other: four round trips a team, 12,000 for a city's 3,000 (seconds of the service's
    time, beside its 2,000 fixes a second). Now a few, however many teams are planned."""
    await import_doc(volunteers, city("plans", members=900, teams=300, zones=4))
    plan = {"shifts": {"main": {"start": "08:00", "end": "18:00"}}, "rotation": ["main"],
            "anchor": "2026-11-23"}
    for i in range(300):
        r = await volunteers.client.put(f"/v1/teams/plans-t{i:05d}/shift-plan", json=plan,
                                        headers=ADMIN)
        assert r.status_code == 200
    round_trips = 0
    read = ("roster:team:", "roster:state:", "roster:team_members:", "roster:member:",
            "roster:plan")

    def reads_roster(args: tuple[Any, ...]) -> bool:
        return any(isinstance(a, str) and a.startswith(read) for a in args)

    single = RedisClient.execute_command
    batch = RedisPipeline.execute

    async def one(self: RedisClient, *args: Any, **options: Any) -> Any:
        nonlocal round_trips
        round_trips += reads_roster(args)
        return await single(self, *args, **options)

    async def many(self: RedisPipeline, raise_on_error: bool = True) -> Any:
        nonlocal round_trips
        round_trips += any(reads_roster(c[0]) for c in self.command_stack)
        return await batch(self, raise_on_error)

    monkeypatch.setattr(RedisClient, "execute_command", one)
    monkeypatch.setattr(RedisPipeline, "execute", many)
    response = await volunteers.client.get("/v1/shifts", params={
        "district": "plans", "date": "2026-12-06"}, headers=ADMIN)
    monkeypatch.undo()
    assert response.status_code == 200
    teams = response.json()["teams"]
    assert len(teams) == 300 and all(len(t["members"]) == 3 for t in teams)
    assert teams[0]["members"][0] == {"member_id": "plans-m00000", "name": "Member 0",
                                      "role": "officer", "checked_in": False}
    assert round_trips <= 10, round_trips
