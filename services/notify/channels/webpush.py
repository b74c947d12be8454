"""Web Push (RFC 8030) with VAPID (RFC 8292) and an aes128gcm payload (RFC 8291), sent with httpx.

Needs py-vapid and http-ece; main.py imports this module only when VAPID_PRIVATE_KEY is set.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, b64urlencode

from shared.events import OrderIssued

from ..domain.orders import push_payload, withdrawn_push_payload
from ..store import DeviceRecord
from . import Outcome, refused, unreached
from .subscription import Subscription, SubscriptionKeys, b64url_decode, endpoint_problem

log = logging.getLogger(__name__)


VAPID_KEY_RULE = ("must be a P-256 private key: raw, 32 bytes in base64url (43 characters), "
                  "or PEM")


def load_vapid(key: str) -> Vapid02:
    """The VAPID key of VAPID_PRIVATE_KEY; ValueError (VAPID_KEY_RULE, never the key) when
    it is not one. py-vapid takes any base64url text as a raw key: a typo or a placeholder
    became a key of a few bits, signing every push."""
    key = key.strip()
    try:
        if "BEGIN" in key:
            vapid = Vapid02.from_pem(key.encode())
        elif len(b64url_decode(key)) != 32:
            raise ValueError("not 32 bytes")
        else:
            vapid = Vapid02.from_raw(key.encode())
    except Exception:  # noqa: BLE001 (each library's own error may quote the key)
        raise ValueError(VAPID_KEY_RULE) from None
    if not isinstance(vapid.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            vapid.private_key.curve, ec.SECP256R1):
        raise ValueError(VAPID_KEY_RULE)
    return vapid


def public_key(vapid: Vapid02) -> str:
    """The applicationServerKey a page subscribes with."""
    point = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64urlencode(point)


def encrypt(payload: bytes, keys: SubscriptionKeys) -> bytes:
    """The aes128gcm body; a fresh sender key per message, as RFC 8291 requires."""
    sender = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(
        payload,
        private_key=sender,
        dh=b64url_decode(keys.p256dh),
        auth_secret=b64url_decode(keys.auth),
        version="aes128gcm",
    )


def build_request(
    order: OrderIssued, subscription: Subscription, *, vapid: Vapid02, subject: str, ttl_s: int,
    withdrawn: bool = False, version: int = 0, answered: bool = False,
    barred_by: tuple[str, ...] = (),
) -> tuple[str, dict[str, str], bytes]:
    """The order's push; `withdrawn`: the push that takes it back (the same Topic);
    `version` > 0: the order sent again as amended (the same Topic: it replaces the first
    push should that still wait for the phone); `answered`: the team has acknowledged the
    order, whose acknowledge-by then bounds nothing."""
    parts = urlsplit(subscription.endpoint)
    claims = {"aud": f"{parts.scheme}://{parts.netloc}", "sub": subject,
              "exp": int(time.time()) + 12 * 3600}
    headers = dict(vapid.sign(claims))
    if not withdrawn and not answered and order.ack_by is not None:
        # Kept for an offline phone no longer than the order lives: at its deadline dispatch
        # withdraws it and offers the incident to another team. The push taking it back
        # keeps `ttl_s`: it must outlive any push of the order it replaces; so does the
        # update of an order the team acknowledged (it lives on past that deadline, which
        # may be gone: a TTL of 0 would reach only a phone connected that very moment).
        ttl_s = max(0, min(ttl_s, int(order.ack_by.timestamp() - time.time())))
    headers.update({
        "TTL": str(ttl_s),
        "Urgency": "high" if order.priority in ("P1", "P2") else "normal",
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        # A newer push for the same order replaces an undelivered older one.
        "Topic": order.order_id.replace("_", "")[:32],
    })
    payload = (withdrawn_push_payload(order, barred_by) if withdrawn
               else push_payload(order, update=version))
    return subscription.endpoint, headers, encrypt(payload, subscription.keys)


class WebPushChannel:
    name = "webpush"
    contact_field = "webpush"

    def __init__(self, client: httpx.AsyncClient, *, vapid: Vapid02, subject: str, ttl_s: int,
                 timeout_s: float, allow_private: bool = False) -> None:
        self._client = client  # main.py gives it a transport to public addresses only
        self._vapid = vapid
        self._subject = subject
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._allow_private = allow_private

    def reaches(self, device: DeviceRecord) -> bool:
        return device.webpush is not None

    async def send(self, order: OrderIssued, device: DeviceRecord, *,
                   version: int = 0, answered: bool = False) -> Outcome:
        return await self._post(order, device, withdrawn=False, version=version,
                                answered=answered)

    async def take_back(self, order: OrderIssued, device: DeviceRecord, *,
                        barred_by: tuple[str, ...] = ()) -> Outcome | None:
        return await self._post(order, device, withdrawn=True, barred_by=barred_by)

    async def _post(self, order: OrderIssued, device: DeviceRecord, *,
                    withdrawn: bool, version: int = 0, answered: bool = False,
                    barred_by: tuple[str, ...] = ()) -> Outcome:
        subscription = Subscription.model_validate(device.webpush or {})
        # Checked again before each send: a subscription stored before the rule, or under
        # WEBPUSH_ALLOW_PRIVATE_ENDPOINTS since switched off, is forgotten, never sent to.
        problem = endpoint_problem(subscription.endpoint, allow_private=self._allow_private)
        if problem is not None:
            log.warning("push endpoint of device %s refused: it %s", device.device_id, problem)
            return Outcome("gone", f"endpoint {problem}")
        url, headers, body = build_request(
            order, subscription, vapid=self._vapid, subject=self._subject, ttl_s=self._ttl,
            withdrawn=withdrawn, version=version, answered=answered, barred_by=barred_by,
        )
        try:
            response = await self._client.post(url, headers=headers, content=body,
                                               timeout=self._timeout)
        except httpx.HTTPError as exc:
            return unreached(exc)
        return _outcome(response)


def _outcome(response: httpx.Response) -> Outcome:
    detail = f"HTTP {response.status_code}"
    if response.status_code in (200, 201, 202):
        return Outcome("sent", detail)
    if response.status_code in (404, 410):
        return Outcome("gone", detail)
    return refused(response)  # 429 and 5xx: worth again; 400, 413: never

