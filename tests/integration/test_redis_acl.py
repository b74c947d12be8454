"""The compose deployment's Redis ACLs on a real redis-server: every service can do its
work with its own user, and cannot read another service's keys or run dangerous commands."""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from shared import streams
from tools.redis_acl import password_variable, template
from tools.redis_server import RedisServer, find_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str]]]:
    """Redis started by the compose deployment's own entrypoint script and ACL template."""
    passwords = {s: secrets.token_urlsafe(16) for s in streams.SERVICES}
    passwords["admin"] = secrets.token_urlsafe(16)
    workdir = tmp_path_factory.mktemp("acl-redis")
    env = {"REDIS_ADMIN_PASSWORD": passwords["admin"],
           **{password_variable(s): passwords[s] for s in streams.SERVICES},
           "ACL_TEMPLATE": str(ROOT / "deploy" / "redis" / "users.acl.template"),
           "ACL_FILE": str(workdir / "users.acl"), "REDIS_SERVER": find_binary() or "",
           "REDIS_USER": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with RedisServer(workdir, appendonly=False, binary=str(ROOT / "deploy" / "redis" /
                                                               "entrypoint.sh"),
                         ready_auth=("admin", passwords["admin"])) as server:
            yield server.port, passwords
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def client(port: int, user: str, password: str) -> sync_redis.Redis:
    return sync_redis.Redis(port=port, username=user, password=password, decode_responses=True)


def test_the_committed_acl_template_matches_the_stream_map() -> None:
    committed = (ROOT / "deploy" / "redis" / "users.acl.template").read_text()
    assert committed == template(), "run `python -m tools.redis_acl > deploy/redis/users.acl.template`"


def test_the_compose_file_gives_each_service_its_own_user() -> None:
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    for service in streams.SERVICES:
        assert f"redis://{service}:${{{password_variable(service)}" in compose, service


def test_the_default_user_is_off(acl_redis) -> None:
    port, _ = acl_redis
    with pytest.raises(sync_redis.exceptions.AuthenticationError):
        sync_redis.Redis(port=port).ping()


@pytest.mark.parametrize("service", streams.SERVICES)
def test_a_service_user_cannot_touch_other_keys_or_dangerous_commands(acl_redis,
                                                                      service: str) -> None:
    port, passwords = acl_redis
    admin = client(port, "admin", passwords["admin"])
    for other, prefix in streams.KEY_PREFIX.items():
        admin.set(f"{prefix}secret", other)
    mine = client(port, service, passwords[service])
    assert mine.get(f"{streams.KEY_PREFIX[service]}secret") == service
    for other, prefix in streams.KEY_PREFIX.items():
        if other != service:
            with pytest.raises(sync_redis.exceptions.NoPermissionError):
                mine.get(f"{prefix}secret")
    for command in (("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "*"), ("ACL", "LIST"),
                    ("SHUTDOWN",)):
        with pytest.raises(sync_redis.exceptions.NoPermissionError):
            mine.execute_command(*command)
    produced = streams.produced_by(service)
    if produced:
        mine.xadd(produced[0].name, {"probe": "1"})
    for stream in streams.ALL:
        if service not in stream.consumers and stream.producer != service:
            with pytest.raises(sync_redis.exceptions.NoPermissionError):
                mine.xrange(stream.name)


def _entrypoint_refuses(tmp_path: Path, passwords: dict[str, str]) -> str:
    """What deploy/redis/entrypoint.sh says when it refuses to start Redis with `passwords`
    (each user's: "admin" and the services'); fails if it would start it."""
    import subprocess

    env = {"PATH": os.environ["PATH"], "REDIS_ADMIN_PASSWORD": passwords["admin"],
           **{password_variable(s): passwords[s] for s in streams.SERVICES},
           "ACL_TEMPLATE": str(ROOT / "deploy" / "redis" / "users.acl.template"),
           "ACL_FILE": str(tmp_path / "users.acl"), "REDIS_SERVER": "true", "REDIS_USER": ""}
    done = subprocess.run(["sh", str(ROOT / "deploy" / "redis" / "entrypoint.sh")], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0, "Redis would have started"
    for password in passwords.values():
        assert password not in done.stderr  # named by its variable, never shown
    return done.stderr


@pytest.mark.parametrize("user", ["admin", *streams.SERVICES])
def test_redis_does_not_start_with_a_password_short_enough_to_guess(tmp_path: Path,
                                                                     user: str) -> None:
    # The services' users are reached by every container on compose's network (the collector
    # and Jaeger too): a user's password is as long as ADMIN_TOKEN must be, 16 or more.
    passwords = {u: secrets.token_urlsafe(16) for u in ("admin", *streams.SERVICES)}
    passwords[user] = "redis123"
    said = _entrypoint_refuses(tmp_path, passwords)
    variable = "REDIS_ADMIN_PASSWORD" if user == "admin" else password_variable(user)
    assert f"{variable} must be at least 16 characters" in said, said


def test_redis_does_not_start_with_one_password_for_two_users(tmp_path: Path) -> None:
    # One value pasted into every REDIS_PASSWORD_*: any service's password logs in as any
    # other, and as admin, and each user's limits to its own keys protect nothing.
    passwords = {u: secrets.token_urlsafe(16) for u in ("admin", *streams.SERVICES)}
    passwords["notify"] = passwords["intake"]
    said = _entrypoint_refuses(tmp_path, passwords)
    assert ("REDIS_PASSWORD_NOTIFY is the same as REDIS_PASSWORD_INTAKE: each user needs a "
            "password of its own") in said, said


@pytest.mark.parametrize("service", streams.SERVICES)
def test_a_service_user_cannot_flush_kill_or_replace_the_scripts_every_service_shares(
        acl_redis, service: str) -> None:
    # Scripts and functions are the server's, not a user's: SCRIPT FLUSH drops every
    # service's cached scripts, SCRIPT KILL stops another service's running one, FUNCTION
    # LOAD/DELETE/FLUSH change the server's libraries. No service needs any of them (they
    # EVAL/EVALSHA and SCRIPT LOAD their own), so one taken over must not have them either.
    port, passwords = acl_redis
    mine = client(port, service, passwords[service])
    sha = mine.script_load("return 1")  # what the services do
    assert mine.evalsha(sha, 0) == 1
    for command in (("SCRIPT", "FLUSH"), ("SCRIPT", "KILL"), ("FUNCTION", "FLUSH"),
                    ("FUNCTION", "DELETE", "lianfang"), ("FUNCTION", "KILL"),
                    ("FUNCTION", "LOAD", "#!lua name=taken\n"
                     "redis.register_function('f', function() return 1 end)"),
                    ("FUNCTION", "RESTORE", "x")):
        with pytest.raises(sync_redis.exceptions.NoPermissionError):
            mine.execute_command(*command)
    assert mine.script_exists(sha) == [True]


@pytest.mark.parametrize("service", streams.SERVICES)
def test_a_script_given_no_key_for_an_optional_slot_runs_with_each_service_user(
        acl_redis, service: str) -> None:
    # The services' scripts take '' for a key they are not given (volunteers' team view
    # without an order: a member's shift start; dispatch's step end without a team to free):
    # refused by the ACL, every shift start under compose answered 500.
    port, passwords = acl_redis
    mine = client(port, service, passwords[service])
    own = f"{streams.KEY_PREFIX[service]}probe"
    script = "if KEYS[2] ~= '' then return 2 end return redis.call('EXISTS', KEYS[1])"
    assert mine.eval(script, 2, own, "") == 0
    with pytest.raises(sync_redis.exceptions.NoPermissionError):  # still only its own keys
        mine.eval(script, 2, "elsewhere:probe", "")


@pytest.mark.parametrize("service", streams.SERVICES)
async def test_a_service_starts_and_is_ready_with_its_own_user(acl_redis, service: str) -> None:
    port, passwords = acl_redis
    url = f"redis://{service}:{passwords[service]}@127.0.0.1:{port}/0"
    settings = importlib.import_module(f"services.{service}.config").Settings(
        redis_url=url, admin_token="acl-admin-token-16", volunteers_url="http://127.0.0.1:9")
    app = importlib.import_module(f"services.{service}.main").create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{service}") as http:
        r = await http.get("/readyz")
        assert r.status_code == 200, r.text
        r = await http.get("/metrics", headers={"Authorization": "Bearer acl-admin-token-16"})
        assert r.status_code == 200
        r = await http.get("/v1/admin/audit", headers={"Authorization": "Bearer acl-admin-token-16"})
        assert r.status_code == 200


async def test_intake_records_and_publishes_a_report_in_one_script_with_its_own_user(
        acl_redis) -> None:
    from datetime import UTC, datetime

    from redis.asyncio import Redis

    from services.intake import store
    from shared.bus import entry_to_write
    from shared.events import IncidentReported, Location, new_id

    port, passwords = acl_redis
    redis = Redis(port=port, username="intake", password=passwords["intake"],
                  decode_responses=True)
    incident_id, here = new_id("inc"), Location(lat=22.8, lon=108.3)
    event = IncidentReported(district="d1", incident_id=incident_id, system_id="sys_acl",
                             external_ref="acl-1", category="noise", priority="P4",
                             location=here, reported_at=datetime.now(UTC))
    async with entry_to_write(streams.INCIDENT_REPORTED, event, incident_id) as entry:
        recording = await store.record_incident(
            redis, incident_id=incident_id, system_id="sys_acl", external_ref="acl-1",
            category="noise", priority="P4", district="d1", location=here,
            reported_at=event.reported_at, linked_to=None, trace_id=None, entry=entry)
    assert recording == store.Recording()
    assert (await store.get_incident(redis, incident_id) or {}).get("published") == "1"
    await redis.aclose()


async def test_notify_answers_and_receipts_publish_in_one_script_with_its_own_user(
        acl_redis) -> None:
    """The scripts XADD notify's own streams and PUBLISH on its channels: its user may."""
    from redis.asyncio import Redis

    from services.notify import store
    from services.notify.domain.responses import Decision
    from shared.events import OrderDelivered, OrderResponded
    from tests.integration.notify.conftest import an_order

    port, passwords = acl_redis
    redis = Redis(port=port, username="notify", password=passwords["notify"],
                  decode_responses=True)
    order = an_order("t-acl")
    before = [await redis.xlen(s.name) for s in (streams.ORDER_RESPONDED, streams.ORDER_DELIVERED)]
    await store.save_orders(redis, [store.NewOrder(order, {}, None)], fallback_after_s=30,
                            ttl_s=60)

    def decide(rec: store.OrderRecord) -> tuple[Decision, OrderResponded | None]:
        return Decision("acknowledged", emit=True), OrderResponded(
            district=rec.district, order_id=rec.order_id, incident_id=rec.incident_id,
            team_id=rec.team_id, member_id="m1", device_id="d1", response="acknowledged")

    outcome = await store.apply_response(
        redis, order.order_id, decide=decide, fan_out=lambda _: "{}", response="acknowledged",
        member_id="m1", device_id="d1", ttl_s=60)
    assert outcome is not None and outcome.event_id is not None
    assert await store.record_receipt(redis, OrderDelivered(
        district=order.district, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", device_id="d1", channel="websocket"), ttl_s=60)
    after = [await redis.xlen(s.name) for s in (streams.ORDER_RESPONDED, streams.ORDER_DELIVERED)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]
    await redis.aclose()


async def test_dispatch_reads_every_hop_of_the_pipeline_with_its_own_user(acl_redis) -> None:
    """The console's warning (GET /v1/pipeline) reads other services' groups on the streams
    dispatch may touch (notify's on order.issued), their pending summaries, the newest
    position and its own projection: all allowed to its user, a missing group included."""
    import time

    from redis.asyncio import Redis

    from services.dispatch import pipeline
    from shared.policy import load_policy

    port, passwords = acl_redis
    admin = client(port, "admin", passwords["admin"])
    for hop in pipeline.HOPS:  # (the services started above made some)
        with contextlib.suppress(sync_redis.exceptions.ResponseError):  # BUSYGROUP
            admin.xgroup_create(hop.stream, hop.group, id="0", mkstream=True)
    last = pipeline.HOPS[-1]
    admin.xgroup_destroy(last.stream, last.group)  # missing: said, not refused
    admin.xgroup_setid(streams.ORDER_ISSUED.name, "notify", "$")
    admin.xadd(streams.ORDER_ISSUED.name, {"probe": "x"})
    redis = Redis(port=port, username="dispatch", password=passwords["dispatch"],
                  decode_responses=True)
    answer = await pipeline.read_pipeline(redis, districts=["d1"], now=time.time(),
                                          policy=load_policy())
    await redis.aclose()
    verdicts = {h["hop"]: (h["verdict"], h["unread"]) for h in answer["hops"]}
    assert verdicts[pipeline.HOPS[-1].name] == ("no_group", None), verdicts
    assert verdicts["orders"] == ("ok", 1), verdicts
    assert answer["positions_feed"]["teams_on_shift"] is False


def test_redis_started_as_compose_starts_again_on_its_data_after_a_kill(tmp_path: Path) -> None:
    # the e2e stacks' Redis (tests.helpers.redis_as_compose_runs_it), as the chaos test kills it
    from tests.helpers import redis_as_compose_runs_it

    server, passwords = redis_as_compose_runs_it(tmp_path / "redis")
    with server:
        admin = client(server.port, "admin", passwords["admin"])
        admin.set("intake:kept", "1")
        admin.close()
        server.kill()
        server.start()
        admin = client(server.port, "admin", passwords["admin"])
        assert admin.get("intake:kept") == "1"
        admin.close()


def test_a_service_users_scripts_and_transactions_survive_a_redis_restart(tmp_path: Path) -> None:
    # Redis replays the AOF as the default user, and rechecks that user's permissions at each
    # EXEC (redis/redis#14541): with it `-@all`, every script or transaction that wrote twice
    # (nearly every step of the services) was dropped at the next start, without an error to
    # anyone: a Redis restart under compose lost the incidents, orders and keys.
    from tests.helpers import redis_as_compose_runs_it

    # `always`: each write is in the AOF before its reply, so the kill below loses none
    # (with everysec, a write Redis postpones while a slow fsync runs, as on a loaded
    # machine, was lost to the kill: a failure of the test's timing, not of the ACL)
    server, passwords = redis_as_compose_runs_it(tmp_path / "redis", appendfsync="always")
    with server:
        intake = client(server.port, "intake", passwords["intake"])
        intake.eval("redis.call('SET', KEYS[1], '1') redis.call('SET', KEYS[2], '1')", 2,
                    "intake:scripted-1", "intake:scripted-2")
        with intake.pipeline(transaction=True) as pipe:
            pipe.set("intake:multi-1", "1").set("intake:multi-2", "1").execute()
        intake.xadd("incident.reported", {"k": "v"})
        intake.close()
        server.kill()
        server.start()
        admin = client(server.port, "admin", passwords["admin"])
        kept = {k: admin.get(k) for k in ("intake:scripted-1", "intake:scripted-2",
                                           "intake:multi-1", "intake:multi-2")}
        assert kept == dict.fromkeys(kept, "1")
        assert admin.xlen("incident.reported") == 1
        admin.close()
        with pytest.raises(sync_redis.exceptions.AuthenticationError):
            sync_redis.Redis(port=server.port).ping()  # the default user is still off
