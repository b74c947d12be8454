"""Web Push endpoints: only a push service's are taken, and notify connects only to public
addresses, so a device's subscription cannot make notify POST inside the network (SSRF)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from py_vapid import Vapid02

from services.notify.channels import public_only
from services.notify.channels.public_only import is_public, public_only_transport
from services.notify.channels.subscription import endpoint_problem
from services.notify.channels.webpush import WebPushChannel
from services.notify.store import DeviceRecord

from .test_webpush import browser_subscription, the_order

PUSH_SERVICES = [
    "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH",
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
    "https://web.push.apple.com/QGuQyavXutnMH5y3",
    "https://wns2-by3p.notify.windows.com/w/?token=BQYAAAD",
    "https://push.example.com:8443/x",
]
REFUSED = [
    "http://push.example.com/x",                      # not https
    "ftp://push.example.com/x",
    "https://127.0.0.1/x",                            # IP literals, private or not
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/x",
    "https://192.168.1.20:8080/x",
    "https://[::1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://8.8.8.8/x",
    "https://127.1/x",                                # what getaddrinfo reads as 127.0.0.1
    "https://0x7f.1/x",
    "https://2130706433/x",
    "https://localhost/x",                            # local names
    "https://push.localhost/x",
    "https://redis:6379/x",                           # a compose service
    "https://metadata.google.internal/x",
    "https://printer.local/x",
    "https://push.example.com:99999/x",               # not a port
    "https://push.example.com:0/x",
    "https://[zz]/x",                                 # not a host
    "https://[1.2.3.4]/x",
    "https:///x",
    "https://push_service.example.com/x",
    "https://push.example.com\\@127.0.0.1/x",
    "https://user:secret@push.example.com/x",         # credentials
    "https://push.example.com/x y",
    "https://push.example.com/x\n",
]


@pytest.mark.parametrize("endpoint", PUSH_SERVICES)
def test_a_push_services_endpoint_is_taken(endpoint: str) -> None:
    assert endpoint_problem(endpoint, allow_private=False) is None


@pytest.mark.parametrize("endpoint", REFUSED)
def test_an_endpoint_that_is_not_a_push_services_is_refused(endpoint: str) -> None:
    problem = endpoint_problem(endpoint, allow_private=False)
    assert problem is not None
    assert "127" not in problem and "example" not in problem  # never echoes the endpoint


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080/push/1", "https://10.0.0.5/x",
                                      "http://push-service:8080/x", "https://[::1]:8443/x",
                                      "https://localhost/x"])
def test_the_setting_lets_in_a_private_push_service(endpoint: str) -> None:
    assert endpoint_problem(endpoint, allow_private=True) is None


@pytest.mark.parametrize("endpoint", ["https://push.example.com:99999/x", "https://[zz]/x",
                                      "ftp://127.0.0.1/x", "https://u:p@127.0.0.1/x",
                                      "https://127.0.0.1/x\r\nHost: a"])
def test_the_setting_still_wants_a_url(endpoint: str) -> None:
    assert endpoint_problem(endpoint, allow_private=True) is not None


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.215.14", True), ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("255.255.255.255", False), ("240.0.0.1", False),
    ("::1", False), ("::", False), ("fe80::1%eth0", False), ("fd00::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False),
    ("64:ff9b::a9fe:a9fe", False), ("64:ff9b::5db8:d70e", True), ("not an address", False),
])
def test_public_addresses_are_told_apart(address: str, public: bool) -> None:
    assert is_public(address) is public


@asynccontextmanager
async def loopback_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A real HTTP server on loopback that records each request it gets."""
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, requests


def resolving_to(*addresses: str) -> public_only.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


LIMITS = httpx.Limits(max_connections=10)


async def test_the_push_client_never_connects_to_a_private_address() -> None:
    async with loopback_server() as (port, requests):
        async with httpx.AsyncClient() as plain:  # the server answers a client without guard
            assert (await plain.post(f"http://127.0.0.1:{port}/x")).status_code == 201
        assert len(requests) == 1
        cases = [(f"http://127.0.0.1:{port}/x", public_only.resolve),
                 (f"http://localhost:{port}/x", public_only.resolve),
                 # a public-looking name whose DNS answers loopback (or rebinds to it)
                 (f"http://push.lianfang.invalid:{port}/x", resolving_to("127.0.0.1")),
                 (f"http://push.lianfang.invalid:{port}/x",
                  resolving_to("93.184.215.14", "127.0.0.1"))]
        for url, resolver in cases:
            transport = public_only_transport(limits=LIMITS, resolver=resolver)
            async with httpx.AsyncClient(transport=transport) as guarded:
                with pytest.raises(httpx.ConnectError, match="not at a public address"):
                    await guarded.post(url)
        assert len(requests) == 1  # none of them reached it


@pytest.mark.parametrize("allow_private", [False, True])
async def test_notifys_push_client_connects_to_private_addresses_only_if_allowed(
        allow_private: bool) -> None:
    from services.notify.config import Settings
    from services.notify.main import build_push_client

    settings = Settings(admin_token="test-admin-token", webpush_allow_private_endpoints=allow_private)
    async with loopback_server() as (port, requests), build_push_client(settings) as client:
        try:
            await client.post(f"http://127.0.0.1:{port}/x")
        except httpx.ConnectError:
            pass
    assert len(requests) == (1 if allow_private else 0)


async def test_the_push_client_connects_to_the_address_it_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # No second lookup: the name (which no DNS answers) is never resolved but by the check.
    monkeypatch.setattr(public_only, "is_public", lambda address: address == "127.0.0.1")
    async with loopback_server() as (port, requests):
        transport = public_only_transport(limits=LIMITS, resolver=resolving_to("127.0.0.1"))
        async with httpx.AsyncClient(transport=transport) as guarded:
            r = await guarded.post(f"http://push.lianfang.invalid:{port}/wpush/1")
    assert r.status_code == 201
    [request] = requests
    assert request.startswith(b"POST /wpush/1 ")
    assert f"host: push.lianfang.invalid:{port}".encode() in request.lower()


def channel_posting_to(calls: list[httpx.Request], *, allow_private: bool) -> WebPushChannel:
    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(201)

    vapid = Vapid02()
    vapid.generate_keys()
    return WebPushChannel(httpx.AsyncClient(transport=httpx.MockTransport(record)), vapid=vapid,
                          subject="mailto:ops@example.test", ttl_s=60, timeout_s=2,
                          allow_private=allow_private)


def device_subscribed_to(endpoint: str) -> DeviceRecord:
    sub, _, _ = browser_subscription()
    webpush: dict[str, Any] = {"endpoint": endpoint, "keys": sub.model_dump()["keys"]}
    return DeviceRecord(device_id="dev_1", member_id="m1", team_id="t1", phone=None,
                        webpush=webpush)


async def test_a_stored_endpoint_the_rules_refuse_is_gone_and_never_posted_to() -> None:
    # stored before the rule, or while WEBPUSH_ALLOW_PRIVATE_ENDPOINTS was on
    calls: list[httpx.Request] = []
    device = device_subscribed_to("http://169.254.169.254/latest/meta-data/")
    outcome = await channel_posting_to(calls, allow_private=False).send(the_order(), device)
    assert (outcome.status, calls) == ("gone", [])
    outcome = await channel_posting_to(calls, allow_private=True).send(the_order(), device)
    assert outcome.status == "sent" and len(calls) == 1
