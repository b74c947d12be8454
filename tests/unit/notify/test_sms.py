"""The SMS channel's request to the gateway, in the deployment's SMS_LANGUAGE."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from services.notify.channels.sms import SmsChannel
from services.notify.config import Settings
from services.notify.store import DeviceRecord
from shared.events import Location, OrderIssued

ORDER = OrderIssued(district="d1", order_id="ord_1", incident_id="inc_1", team_id="t1",
                    agency_kind="volunteer", category="hazard_report", priority="P4",
                    location=Location(lat=22.8, lon=108.3, address="明秀西路12号"),
                    ack_by=datetime(2026, 11, 23, 8, 1, tzinfo=UTC))
PHONE = DeviceRecord(device_id="dev_1", team_id="t1", member_id="mem_1", webpush=None,
                     phone="+8613800000001")


async def _sent(**language: str) -> list[dict[str, object]]:
    """What the gateway gets for the order and its withdrawal."""
    bodies: list[dict[str, object]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as client:
        sms = SmsChannel(client, url="https://gw.test/sms", token=None, timeout_s=1,
                         **language)  # type: ignore[arg-type]
        assert (await sms.send(ORDER, PHONE)).status == "sent"
        assert await sms.take_back(ORDER, PHONE) is not None
    return bodies


async def test_members_are_texted_in_chinese_by_default() -> None:
    order, withdrawn = await _sent()
    assert str(order["text"]).startswith("【联防】P4一般 隐患上报：明秀西路12号")
    assert "请勿前往" in str(withdrawn["text"])
    for body in (order, withdrawn):
        # the parts, for a gateway that fills its own filed template: with the language
        assert body["language"] == "zh" and body["category_name"] == "隐患上报"
        assert body["category"] == "hazard_report" and body["place"] == "明秀西路12号"


async def test_a_deployment_may_text_its_members_in_english() -> None:
    order, withdrawn = await _sent(language="en")
    assert str(order["text"]).startswith("[Lianfang] P4 hazard report at 明秀西路12号")
    assert "WITHDRAWN, do not go" in str(withdrawn["text"])
    assert order["language"] == withdrawn["language"] == "en"


@pytest.mark.parametrize(("given", "language"), [("zh", "zh"), ("zh-CN", "zh"), ("EN", "en")])
def test_sms_language_is_taken_as_people_write_it(given: str, language: str) -> None:
    assert Settings(admin_token="a-test-admin-token", sms_language=given).sms_language == language
    assert Settings(admin_token="a-test-admin-token").sms_language == "zh"


def test_an_sms_language_the_glossary_does_not_have_stops_notify_at_start() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(admin_token="a-test-admin-token", sms_language="fr")
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("sms_language",) and "not a language" in error["msg"]


async def test_a_withdrawal_for_a_weapon_gives_a_templated_gateway_the_flag_too() -> None:
    # Mainland carriers send only filed templates: a relay fills its own from the fields,
    # not from `text`. Without the flags that took the volunteers off, it can only send its
    # "withdrawn, do not go" template to a volunteer who may be standing next to the knife.
    bodies: list[dict[str, object]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as client:
        sms = SmsChannel(client, url="https://gw.test/sms", token=None, timeout_s=1)
        assert await sms.take_back(ORDER, PHONE, barred_by=("weapon",)) is not None
        assert await sms.take_back(ORDER, PHONE) is not None
        assert (await sms.send(ORDER, PHONE)).status == "sent"
    barred, plain, order = bodies
    assert barred["kind"] == "withdrawn" and barred["barred_by"] == ["weapon"]
    assert "持械" in str(barred["text"])
    assert plain["barred_by"] == [] and "barred_by" not in order
