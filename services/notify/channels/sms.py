"""An SMS gateway adapter: POSTs JSON to a configurable HTTP endpoint (SMS_GATEWAY_URL)."""

from __future__ import annotations

from datetime import UTC, tzinfo

import httpx

from shared.events import OrderIssued
from shared.labels import DEFAULT_LANGUAGE, Language

from ..domain.orders import sms_fields, sms_text, sms_withdrawn_text
from ..domain.phones import e164
from ..store import DeviceRecord
from . import Outcome, refused, unreached


class SmsChannel:
    name = "sms"
    contact_field = "phone"

    def __init__(self, client: httpx.AsyncClient, *, url: str, token: str | None,
                 timeout_s: float, tz: tzinfo = UTC,
                 language: Language = DEFAULT_LANGUAGE, page_url: str | None = None) -> None:
        self._client = client
        # the member's page (Settings.device_page_url), linked in an order's SMS: the same
        # for every phone, never a token (the page keeps its own in the browser)
        self._page_url = page_url
        self._language = language  # the deployment's SMS_LANGUAGE
        self._tz = tz  # the district's local time: the deadline as the member's clock shows it
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout_s

    def reaches(self, device: DeviceRecord) -> bool:
        return device.phone is not None

    async def send(self, order: OrderIssued, device: DeviceRecord, *,
                   version: int = 0, answered: bool = False) -> Outcome:
        # The gateway may deduplicate on this: one message per order and device (and per
        # version of an amended order sent again: its own). The same on every try, so a
        # message sent again after an answer that never came (the gateway may have taken
        # it) reaches the phone once.
        reference = f"{order.order_id}:{device.device_id}"
        if version:
            reference += f":v{version}"
        return await self._post(order, device, kind="order_update" if version else "order",
                                text=sms_text(order, tz=self._tz, language=self._language,
                                              update=bool(version), answered=answered,
                                              link=self._page_url),
                                reference=reference, answered=answered if version else None,
                                page_url=self._page_url)

    async def take_back(self, order: OrderIssued, device: DeviceRecord, *,
                        barred_by: tuple[str, ...] = ()) -> Outcome | None:
        # An SMS cannot be unsent, and stays in the inbox: a second one says not to go.
        # `barred_by` in the fields too: a gateway that sends only its filed templates
        # picks the one that says why and to leave by it, not by the text
        return await self._post(order, device, kind="withdrawn",
                                text=sms_withdrawn_text(order, language=self._language,
                                                        barred_by=barred_by),
                                reference=f"{order.order_id}:{device.device_id}:withdrawn",
                                barred_by=barred_by)

    async def _post(self, order: OrderIssued, device: DeviceRecord, *, kind: str, text: str,
                    reference: str, answered: bool | None = None,
                    barred_by: tuple[str, ...] | None = None,
                    page_url: str | None = None) -> Outcome:
        body = {
            # a number registered before they were kept in E.164 goes as it is
            "to": e164(device.phone or "") or device.phone,
            "text": text,
            "reference": reference,
            # the text's parts, for a gateway that sends only its own filed templates
            "kind": kind,
            "order_id": order.order_id,
            **sms_fields(order, tz=self._tz, language=self._language,
                         answered=bool(answered)),
            # where the order is answered (None: a withdrawal, or no NOTIFY_PUBLIC_URL)
            "page_url": page_url,
        }
        if answered is not None:  # an update: whether the team has acknowledged the order
            body["answered"] = answered
        if barred_by is not None:  # a withdrawal: the flags that took the volunteers off it
            body["barred_by"] = list(barred_by)
        try:
            response = await self._client.post(
                self._url, json=body, headers={**self._headers, "Idempotency-Key": reference},
                timeout=self._timeout)
        except httpx.HTTPError as exc:
            return unreached(exc)
        if 200 <= response.status_code < 300:
            return Outcome("sent", f"HTTP {response.status_code}")
        return refused(response)
