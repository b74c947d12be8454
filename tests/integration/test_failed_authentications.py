"""Failed bearer authentications, counted per client address: an address that keeps
presenting tokens nobody issued is answered 429 for a while, whatever token it sends then;
callers that authenticate fine are never counted (a station's phones behind one NAT address).

The four services run under uvicorn in this process (four_services), with a small limit;
each test's callers come from loopback addresses of their own (127.0.0.x), as clients
behind different addresses would.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shared.introspect import DEVICE_TOKEN_PREFIX
from tests.e2e.journey import district_roster
from tests.helpers import poll_until
from tests.integration.four_services import four_services

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
                             auth_lockout_s=LOCKOUT_S) as started:
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


async def test_position_fixes_count_as_the_rest_of_volunteers(urls: dict[str, str]) -> None:
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


async def test_refused_device_sockets_count_and_a_locked_out_address_gets_no_socket(
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

    for n in range(LIMIT):
        assert await closed_with(f"{DEVICE_TOKEN_PREFIX}{n:043d}") == 4401
    assert await closed_with(device_token) == 1013  # a good token, not checked: try later


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
                                          headers=bearer(device_token))).status_code == 429
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
    # its default): a guesser behind the proxy is locked out, not the proxy's other clients
    url = f"{urls['intake']}/v1/admin/audit"
    guesser, member = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    async with httpx.AsyncClient(timeout=10) as proxy:
        for n in range(LIMIT):
            assert (await proxy.get(url, headers={**guess(n), **guesser})).status_code == 401
        assert (await proxy.get(url, headers={**ADMIN, **guesser})).status_code == 429
        assert (await proxy.get(url, headers={**ADMIN, **member})).status_code == 200
