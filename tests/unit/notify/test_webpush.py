"""Web Push: the message the adapter builds decrypts with the subscription's keys to the order."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import http_ece
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from py_vapid import Vapid02, b64urlencode
from pydantic import ValidationError

from services.notify.channels.subscription import Subscription
from services.notify.channels.webpush import (
    WebPushChannel,
    build_request,
    load_vapid,
    public_key,
)
from services.notify.config import Settings
from services.notify.store import DeviceRecord
from shared.events import Caller, Location, OrderIssued
from shared.telemetry import trace_outside_calls


def browser_subscription() -> tuple[Subscription, ec.EllipticCurvePrivateKey, bytes]:
    """What a browser makes: a P-256 key pair and a 16-byte auth secret."""
    receiver = ec.generate_private_key(ec.SECP256R1())
    point = receiver.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
    auth = os.urandom(16)
    sub = Subscription.model_validate({
        "endpoint": "https://push.example.test/wpush/v2/abc123",
        "keys": {"p256dh": b64urlencode(point), "auth": b64urlencode(auth)},
    })
    return sub, receiver, auth


ACK_BY = datetime.now(UTC) + timedelta(minutes=30)  # the push lives until then at most


def the_order() -> OrderIssued:
    return OrderIssued(
        district="d1", order_id="ord_7", incident_id="inc_7", team_id="t1",
        agency_kind="police", category="violence", priority="P1",
        location=Location(lat=22.8, lon=108.3, address="Qingxiu Rd 3"), flags=("weapon",),
        instructions="wait for the second unit",
        ack_by=ACK_BY,
        caller=Caller(phone="13877001234"), description="a man with a knife",
    )


def test_the_push_message_decrypts_with_the_subscriptions_keys_to_the_order() -> None:
    sub, receiver, auth = browser_subscription()
    vapid = Vapid02()
    vapid.generate_keys()
    url, headers, body = build_request(the_order(), sub, vapid=vapid,
                                       subject="mailto:ops@example.test", ttl_s=120)

    plain = http_ece.decrypt(body, private_key=receiver, auth_secret=auth, version="aes128gcm")
    message = json.loads(plain)
    assert message["order_id"] == "ord_7" and message["incident_id"] == "inc_7"
    assert message["priority"] == "P1" and message["category"] == "violence"
    assert message["location"] == {"lat": 22.8, "lon": 108.3}
    assert message["address"] == "Qingxiu Rd 3" and message["flags"] == ["weapon"]
    assert "13877001234" not in plain.decode() and "knife" not in plain.decode()

    assert url == sub.endpoint
    assert headers["Content-Encoding"] == "aes128gcm" and headers["TTL"] == "120"
    assert headers["Urgency"] == "high"
    assert headers["Authorization"].startswith("vapid t=")
    assert Vapid02.verify(headers["Authorization"])  # signed by the server's VAPID key


def test_the_push_taking_an_order_back_has_its_topic_and_no_caller_data() -> None:
    sub, receiver, auth = browser_subscription()
    vapid = Vapid02()
    vapid.generate_keys()
    _, first, _ = build_request(the_order(), sub, vapid=vapid, subject="mailto:a@b.test",
                                ttl_s=1)
    _, headers, body = build_request(the_order(), sub, vapid=vapid, subject="mailto:a@b.test",
                                     ttl_s=1, withdrawn=True)
    plain = http_ece.decrypt(body, private_key=receiver, auth_secret=auth, version="aes128gcm")
    assert json.loads(plain) == {"type": "order_withdrawn", "order_id": "ord_7",
                                 "category": "violence", "priority": "P1",
                                 "address": "Qingxiu Rd 3"}
    assert headers["Topic"] == first["Topic"]  # it replaces the order's push still waiting


def test_each_message_uses_a_fresh_sender_key() -> None:
    sub, receiver, auth = browser_subscription()
    vapid = Vapid02()
    vapid.generate_keys()
    _, _, one = build_request(the_order(), sub, vapid=vapid, subject="mailto:a@b.test", ttl_s=1)
    _, _, two = build_request(the_order(), sub, vapid=vapid, subject="mailto:a@b.test", ttl_s=1)
    assert one != two
    assert http_ece.decrypt(two, private_key=receiver, auth_secret=auth,
                            version="aes128gcm") == http_ece.decrypt(
        one, private_key=receiver, auth_secret=auth, version="aes128gcm")


def test_a_vapid_key_loads_from_its_raw_form_and_gives_the_page_its_public_key() -> None:
    original = Vapid02()
    original.generate_keys()
    raw = original.private_key.private_numbers().private_value.to_bytes(32, "big")
    loaded = load_vapid(b64urlencode(raw))
    assert public_key(loaded) == public_key(original)
    assert len(public_key(loaded)) == 87  # 65 bytes, base64url without padding


@pytest.mark.parametrize("keys", [
    {"p256dh": b64urlencode(b"\x04" + b"1" * 10), "auth": b64urlencode(b"a" * 16)},
    {"p256dh": b64urlencode(b"\x04" + b"1" * 64), "auth": b64urlencode(b"a" * 8)},
])
def test_a_subscription_with_bad_keys_is_refused(keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Subscription.model_validate({"endpoint": "https://push.example.test/x", "keys": keys})


async def test_a_push_endpoints_path_never_reaches_a_span_or_the_log(
        service_log: Callable[[], str]) -> None:
    # The endpoint's path is the browser's push registration: whoever holds it can push.
    secret = "fGx7pushREGISTRATIONtoken-APA91bH"
    sub, _, _ = browser_subscription()
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(201)))
    trace_outside_calls(client, tracer_provider=provider)
    vapid = Vapid02()
    vapid.generate_keys()
    channel = WebPushChannel(client, vapid=vapid, subject="mailto:ops@example.test", ttl_s=60,
                             timeout_s=2)
    device = DeviceRecord(device_id="dev_1", member_id="m1", team_id="t1", phone=None,
                          webpush={"endpoint": f"https://fcm.googleapis.com/fcm/send/{secret}",
                                   "keys": sub.model_dump()["keys"]})
    try:
        outcome = await channel.send(the_order(), device)
    finally:
        await client.aclose()
    assert outcome.status == "sent"
    [span] = spans.get_finished_spans()
    urls = [v for k, v in (span.attributes or {}).items() if k in ("url.full", "http.url")]
    assert urls == ["https://fcm.googleapis.com/"]
    assert secret not in json.dumps(dict(span.attributes or {}))
    log = service_log()
    assert secret not in log


def test_an_orders_push_lives_at_the_push_service_no_longer_than_its_deadline() -> None:
    # A phone offline at a P1's push, back four minutes later: with WEBPUSH_TTL_S (300 s)
    # the push service still handed it the order, withdrawn at its 30 s deadline and given
    # to another team (the take-back waits for notify, which may be away then).
    sub, _, _ = browser_subscription()
    vapid = Vapid02()
    vapid.generate_keys()
    soon = datetime.now(UTC) + timedelta(seconds=20)
    order = the_order().model_copy(update={"ack_by": soon})
    _, headers, _ = build_request(order, sub, vapid=vapid, subject="mailto:a@b.test",
                                  ttl_s=300)
    assert 0 < int(headers["TTL"]) <= 20
    passed = the_order().model_copy(update={"ack_by": datetime.now(UTC) - timedelta(seconds=5)})
    _, headers, _ = build_request(passed, sub, vapid=vapid, subject="mailto:a@b.test",
                                  ttl_s=300)
    assert headers["TTL"] == "0"
    # an order without a deadline (a hand-over), and the push taking an order back (it
    # must outlive any push of the order it replaces), keep the setting
    _, headers, _ = build_request(the_order().model_copy(update={"ack_by": None}), sub,
                                  vapid=vapid, subject="mailto:a@b.test", ttl_s=300)
    assert headers["TTL"] == "300"
    _, headers, _ = build_request(order, sub, vapid=vapid, subject="mailto:a@b.test",
                                  ttl_s=300, withdrawn=True)
    assert headers["TTL"] == "300"


def a_raw_vapid_key() -> str:
    vapid = Vapid02()
    vapid.generate_keys()
    return b64urlencode(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.mark.parametrize("wrong", [
    "garbage",  # taken as a 40-bit private key: Web Push 'on', signed with a guessable key
    "public",  # the public key pasted in its place (65 bytes): a traceback in each worker
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----",
])
def test_a_vapid_key_that_is_not_one_stops_notify_naming_the_variable(wrong: str) -> None:
    if wrong == "public":
        vapid = Vapid02()
        vapid.generate_keys()
        wrong = public_key(vapid)
    with pytest.raises(ValidationError) as refused:
        Settings(admin_token="test-admin-token", vapid_private_key=wrong)
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("vapid_private_key",) and "P-256" in error["msg"]
    assert wrong not in error["msg"]


def test_a_vapid_key_in_either_form_is_taken() -> None:
    raw = a_raw_vapid_key()
    pem = load_vapid(raw).private_pem().decode()
    for key in (raw, pem):
        settings = Settings(admin_token="test-admin-token", vapid_private_key=key)
        assert settings.vapid_private_key is not None


def test_a_vapid_subject_push_services_would_refuse_stops_notify() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(admin_token="test-admin-token", vapid_subject="ops@station.example.org")
    assert refused.value.errors()[0]["loc"] == ("vapid_subject",)
    assert Settings(admin_token="test-admin-token", vapid_subject="https://station.example.org").vapid_subject
