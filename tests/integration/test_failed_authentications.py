"""Failed bearer authentications, counted per client address: an address that keeps
presenting tokens nobody issued is answered 429 for a while, whatever token it sends then
but one of the shape the services issue (256 random bits: checked, and counted, as ever);
callers that authenticate fine are never counted (a station's phones behind one NAT address).

The four services run under uvicorn in this process (four_services), with a small limit;
each test's callers come from loopback addresses of their own (127.0.0.x), as clients
behind different addresses would.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from shared.tokens import DEVICE_TOKEN_PREFIX, SYSTEM_KEY_PREFIX, service_key
from tests.e2e.journey import district_roster
from tests.helpers import poll_until
from tests.integration.four_services import four_services
from tests.integration.stream_probes import ADMIN as PROBE_ADMIN
from tests.integration.stream_probes import running

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 5  # AUTH_FAILURE_LIMIT: 5/minute here, few requests
LOCKOUT_S = 2  # AUTH_LOCKOUT_S
ADMIN_TOKEN = f"failures-admin-{secrets.token_hex(8)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICES = ("intake", "dispatch", "volunteers", "notify")
_ADDRESSES = (f"127.0.0.{n}" for n in itertools.count(10))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def guess(n: int) -> dict[str, str]:
    return bearer(f"guessed-token-{n:08d}")


def from_new_address() -> httpx.AsyncClient:
    """A client from a loopback address no other caller of the module uses."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(local_address=next(_ADDRESSES)), timeout=10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def urls(redis_url: str) -> AsyncIterator[dict[str, str]]:
    async with four_services(redis_url, ADMIN_TOKEN, auth_failure_limit=f"{LIMIT}/minute",
                             auth_lockout_s=LOCKOUT_S, forwarded_allow_ips="127.0.0.1") as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def device_token(urls: dict[str, str]) -> str:
    async with from_new_address() as http:
        r = await http.post(f"{urls['volunteers']}/v1/roster/import", headers=ADMIN,
                            json=district_roster("d1", (22.83, 108.33)))
        assert r.status_code == 200, r.text
        r = await http.post(f"{urls['volunteers']}/v1/members/d1-m-sec/devices", headers=ADMIN)
        assert r.status_code == 201, r.text
        return r.json()["token"]


async def assert_locked_out(http: httpx.AsyncClient, url: str) -> None:
    r = await http.get(url, headers=ADMIN)  # the right token: not even checked
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= LOCKOUT_S
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("service", SERVICES)
async def test_an_address_that_keeps_failing_is_refused_whatever_its_token_then_heard_again(
        urls: dict[str, str], service: str) -> None:
    url = f"{urls[service]}/v1/admin/audit"
    async with from_new_address() as guesser, from_new_address() as other:
        for n in range(LIMIT):
            assert (await guesser.get(url, headers=guess(n))).status_code == 401, n
        await assert_locked_out(guesser, url)
        assert (await guesser.get(url)).status_code == 429  # nor asked for a token at all
        assert (await guesser.get(f"{urls[service]}/healthz")).status_code == 200  # public
        assert (await other.get(url, headers=ADMIN)).status_code == 200  # another address
        for elsewhere in SERVICES:  # each service counts its own callers
            if elsewhere != service:
                r = await guesser.get(f"{urls[elsewhere]}/v1/admin/audit", headers=ADMIN)
                assert r.status_code == 200, elsewhere

        async def heard_again() -> bool:
            return (await guesser.get(url, headers=ADMIN)).status_code == 200

        await poll_until(heard_again, "the lockout's end", timeout=LOCKOUT_S + 10, interval=0.2)


async def test_callers_who_authenticate_are_neither_counted_nor_forgive_the_failures(
        urls: dict[str, str]) -> None:
    # One NAT address, a whole station: many good requests, a few mistyped tokens
    url = f"{urls['dispatch']}/v1/admin/audit"
    async with from_new_address() as station:
        for _ in range(4 * LIMIT):
            assert (await station.get(url, headers=ADMIN)).status_code == 200
        for n in range(LIMIT - 1):
            assert (await station.get(url, headers=guess(n))).status_code == 401
            for _ in range(LIMIT):
                assert (await station.get(url, headers=ADMIN)).status_code == 200
        # successes in between forgave nothing: the limit's last failure locks it out
        assert (await station.get(url, headers=guess(LIMIT))).status_code == 401
        await assert_locked_out(station, url)


async def test_position_fixes_count_as_the_rest_of_volunteers(urls: dict[str, str],
                                                              device_token: str) -> None:
    # PUT /v1/me/position is answered ahead of FastAPI: it counts and refuses the same way
    fixes = f"{urls['volunteers']}/v1/me/position"
    fix = {"lat": 22.83, "lon": 108.33, "accuracy_m": 5}
    async with from_new_address() as guesser:
        for n in range(LIMIT):
            token = bearer(f"{DEVICE_TOKEN_PREFIX}{n:043d}")
            where = fixes if n % 2 else f"{urls['volunteers']}/v1/me"
            r = await guesser.request("PUT" if n % 2 else "GET", where, headers=token,
                                      json=fix if n % 2 else None)
            assert r.status_code == 401, (n, r.text)
        r = await guesser.put(fixes, headers=ADMIN, json=fix)
        assert r.status_code == 429 and r.headers["Retry-After"], r.text
        await assert_locked_out(guesser, f"{urls['volunteers']}/v1/admin/audit")
        # a device's own token is checked all the same (its member is off shift: 409)
        r = await guesser.put(fixes, headers=bearer(device_token), json=fix)
        assert r.status_code == 409, r.text
        r = await guesser.put(fixes, headers=bearer(service_key(ADMIN_TOKEN)), json=fix)
        assert r.status_code == 403, r.text  # the services' key: checked, not a device's


async def test_refused_device_sockets_count_and_a_locked_out_address_gets_a_device_socket_only(
        urls: dict[str, str], device_token: str) -> None:
    stream = urls["notify"].replace("http://", "ws://") + "/v1/devices/stream"
    address = next(_ADDRESSES)

    async def closed_with(token: str) -> int | None:
        try:
            async with connect(f"{stream}?token={token}", local_addr=(address, 0)) as ws:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None

    async def closed_with_subprotocol(token: str) -> int | None:  # as the member's page
        offered = [Subprotocol("lianfang.v1"), Subprotocol(f"token.{token}")]
        try:
            async with connect(stream, subprotocols=offered, local_addr=(address, 0)) as ws:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None

    for n in range(LIMIT):
        assert await closed_with(f"{DEVICE_TOKEN_PREFIX}{n:043d}") == 4401
    assert await closed_with(ADMIN_TOKEN) == 1013  # not an issued token's shape: try later
    assert await closed_with_subprotocol(ADMIN_TOKEN) == 1013
    assert await closed_with(f"{DEVICE_TOKEN_PREFIX}{7:043d}") == 4401  # checked: still no
    assert await closed_with_subprotocol(f"{DEVICE_TOKEN_PREFIX}{8:043d}") == 4401
    async with connect(f"{stream}?token={device_token}", local_addr=(address, 0)) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"  # a device's token: checked
    async with connect(stream, subprotocols=[Subprotocol("lianfang.v1"),
                                             Subprotocol(f"token.{device_token}")],
                       local_addr=(address, 0)) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_failed_device_tokens_notify_and_intake_ask_about_never_lock_them_out(
        urls: dict[str, str], device_token: str) -> None:
    # notify and intake ask volunteers about each device token they are shown, from their
    # own address: counted at volunteers, their callers' failures would lock the whole
    # district's phones out of notify and intake. Each counts its own callers instead.
    for service, path in (("notify", "/v1/devices/me"), ("intake", "/v1/categories")):
        for _ in range(3):  # three guessers, each up to its own lockout
            async with from_new_address() as guesser:
                for n in range(LIMIT):
                    r = await guesser.get(urls[service] + path,
                                          headers=bearer(f"{DEVICE_TOKEN_PREFIX}{n:043d}"))
                    assert r.status_code == 401, (service, r.text)
                assert (await guesser.get(urls[service] + path,
                                          headers=ADMIN)).status_code == 429
        async with from_new_address() as phone:
            r = await phone.get(urls[service] + path, headers=bearer(device_token))
            assert r.status_code == 200, (service, r.text)
    # who guesses other tokens at volunteers' introspection is counted as anywhere else
    async with from_new_address() as guesser:
        for n in range(LIMIT):
            r = await guesser.get(f"{urls['volunteers']}/v1/devices/introspect",
                                  headers=guess(n))
            assert r.status_code == 401
        await assert_locked_out(guesser, f"{urls['volunteers']}/v1/devices/introspect")


async def test_behind_a_trusted_proxy_each_client_is_counted_by_its_own_address(
        urls: dict[str, str]) -> None:
    # uvicorn takes X-Forwarded-For from the proxies of FORWARDED_ALLOW_IPS (here: loopback,
    # named in the module's settings): a guesser behind the proxy is locked out, not the
    # proxy's other clients
    url = f"{urls['intake']}/v1/admin/audit"
    guesser, member = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    async with httpx.AsyncClient(timeout=10) as proxy:
        for n in range(LIMIT):
            assert (await proxy.get(url, headers={**guess(n), **guesser})).status_code == 401
        assert (await proxy.get(url, headers={**ADMIN, **guesser})).status_code == 429
        assert (await proxy.get(url, headers={**ADMIN, **member})).status_code == 200


async def test_without_forwarded_allow_ips_no_caller_names_itself_another_address(
        redis_url: str) -> None:
    # uvicorn's own default trusts X-Forwarded-For from 127.0.0.1: under `make run` any local
    # process could name a new address with each guess and never be locked out. Unset,
    # FORWARDED_ALLOW_IPS trusts no proxy: the guesses all count against 127.0.0.1.
    async with running("dispatch", redis_url, served=True, auth_failure_limit=f"{LIMIT}/minute",
                       auth_lockout_s=60) as dispatch:
        url = "/v1/admin/audit"
        for n in range(LIMIT):
            r = await dispatch.client.get(url, headers={**guess(n),
                                                        "X-Forwarded-For": f"203.0.113.{n}"})
            assert r.status_code == 401, (n, r.text)
        r = await dispatch.client.get(url, headers={**PROBE_ADMIN,
                                                    "X-Forwarded-For": "203.0.113.99"})
        assert r.status_code == 429, r.text
        assert (await dispatch.client.get(url, headers=PROBE_ADMIN)).status_code == 429


async def test_from_a_locked_out_address_issued_tokens_are_checked_and_the_services_call_on(
        urls: dict[str, str], device_token: str) -> None:
    # Every caller of `make run` comes from 127.0.0.1, the services' own calls to volunteers
    # too: a stale token tried there locks them all out. Tokens of 256 random bits (of an
    # issued token's shape) are checked all the same; an ADMIN_TOKEN guess is not.
    async with from_new_address() as admin:
        r = await admin.post(f"{urls['intake']}/v1/systems", headers=ADMIN,
                             json={"name": "110 centre", "districts": ["d1"]})
        assert r.status_code == 201, r.text
        system_key = r.json()["api_key"]
        r = await admin.post(f"{urls['dispatch']}/v1/dispatchers", headers=ADMIN,
                             json={"name": "desk 1", "districts": ["d1"]})
        assert r.status_code == 201, r.text
        desk_token = r.json()["token"]
        r = await admin.post(f"{urls['volunteers']}/v1/members/d1-m-sec/devices", headers=ADMIN)
        assert r.status_code == 201, r.text
        new_device = r.json()["token"]  # notify has not asked volunteers about it yet
    services_own = httpx.AsyncClient(  # where the services' calls to volunteers come from
        transport=httpx.AsyncHTTPTransport(local_address="127.0.0.1"), timeout=10)
    async with services_own as local, from_new_address() as elsewhere:
        for service in SERVICES:
            url = f"{urls[service]}/v1/admin/audit"
            for n in range(LIMIT):
                assert (await local.get(url, headers=guess(n))).status_code == 401, service
            await assert_locked_out(local, url)
            for junk in ("lfd_short", f"{DEVICE_TOKEN_PREFIX}{'x' * 44}", f"x{system_key}"):
                assert (await local.get(url, headers=bearer(junk))).status_code == 429

        # (a) tokens the services issued, checked from the locked-out address
        for url, token in ((f"{urls['volunteers']}/v1/me", device_token),
                           (f"{urls['notify']}/v1/devices/me", new_device),
                           (f"{urls['intake']}/v1/categories", system_key),
                           (f"{urls['dispatch']}/v1/me", desk_token)):
            r = await local.get(url, headers=bearer(token))
            assert r.status_code == 200, (url, r.text)
        stream = urls["notify"].replace("http://", "ws://") + "/v1/devices/stream"
        async with connect(f"{stream}?token={device_token}", local_addr=("127.0.0.1", 0)) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
        # ...and one of their shape nobody issued is checked, and refused: 401, not 429
        unknown = f"{SYSTEM_KEY_PREFIX}{secrets.token_urlsafe(32)}"
        r = await local.get(f"{urls['intake']}/v1/categories", headers=bearer(unknown))
        assert r.status_code == 401, r.text

        # (b) the admin token, user-chosen, is still not even checked there
        for service in SERVICES:
            await assert_locked_out(local, f"{urls[service]}/v1/admin/audit")

        # (c) the services' own calls to volunteers, from 127.0.0.1, go on
        r = await elsewhere.get(f"{urls['dispatch']}/v1/shift-check-ins",
                                params={"district": "d1"}, headers=bearer(desk_token))
        assert r.status_code == 200, r.text  # dispatch -> volunteers GET /v1/shifts/now
        r = await elsewhere.post(f"{urls['intake']}/v1/systems", headers=ADMIN,
                                 json={"name": "door access", "districts": ["d1"]})
        assert r.status_code == 201, r.text  # intake -> volunteers GET /v1/districts
        r = await elsewhere.post(f"{urls['dispatch']}/v1/dispatchers", headers=ADMIN,
                                 json={"name": "desk 2", "districts": ["d1"]})
        assert r.status_code == 201, r.text  # dispatch -> volunteers GET /v1/districts
        r = await elsewhere.get(f"{urls['dispatch']}/v1/zones", params={"district": "d1"},
                                headers=bearer(desk_token))
        assert r.status_code == 200 and r.json()["zones"], r.text  # GET /v1/zones
        r = await elsewhere.get(f"{urls['notify']}/v1/devices/me", headers=bearer(new_device))
        assert r.status_code == 200, r.text  # notify -> volunteers' introspection
        # notify -> volunteers GET /v1/teams/{id} (who is on shift), with the services' key
        key = bearer(service_key(ADMIN_TOKEN))
        r = await local.get(f"{urls['volunteers']}/v1/teams/d1-sec-1", headers=key)
        assert r.status_code == 200 and "shift_member_ids" in r.json()["state"], r.text
        # the key opens those reads only, not the admin's API, at volunteers or elsewhere
        r = await local.post(f"{urls['volunteers']}/v1/members/d1-m-sec/devices", headers=key)
        assert r.status_code == 403, r.text
        for service in SERVICES:
            r = await elsewhere.get(f"{urls[service]}/v1/admin/audit", headers=key)
            assert r.status_code == 403, (service, r.text)

        async def heard_again() -> bool:  # the module's later tests are not locked out
            answers = [await local.get(f"{urls[s]}/v1/admin/audit", headers=ADMIN)
                       for s in SERVICES]
            return all(r.status_code == 200 for r in answers)

        await poll_until(heard_again, "the lockout's end", timeout=LOCKOUT_S + 10, interval=0.2)
