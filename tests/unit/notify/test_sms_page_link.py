"""An order's SMS links the member's page (NOTIFY_PUBLIC_URL's /device), where the member
answers it: the text said 「请于…前接单」 and gave no way to. Never a token, nor any secret:
an SMS crosses the carrier in clear, and the page keeps its token in the browser."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from services.notify.channels.sms import SmsChannel
from services.notify.config import Settings
from services.notify.domain.orders import SMS_LINK_MAX_CHARS, SMS_MAX_CHARS, sms_text
from services.notify.store import DeviceRecord
from shared.events import Location, OrderIssued

from .test_orders import order

PAGE = "https://lianfang.example.cn/device"
PHONES = [DeviceRecord(device_id=f"dev_{n}", team_id="t1", member_id=f"mem_{n}", webpush=None,
                       phone=f"+861380000000{n}") for n in (1, 2)]


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def _bodies(page_url: str | None, language: str = "zh") -> list[dict[str, object]]:
    """What the gateway gets: the order to two phones of the team, its update (the team has
    not answered, then has), and its withdrawal."""
    bodies: list[dict[str, object]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as client:
        sms = SmsChannel(client, url="https://gw.test/sms", token="gw-secret", timeout_s=1,
                         language=language, page_url=page_url)  # type: ignore[arg-type]
        for phone in PHONES:
            assert (await sms.send(order("volunteer"), phone)).status == "sent"
        await sms.send(order("volunteer"), PHONES[0], version=1)
        await sms.send(order("volunteer"), PHONES[0], version=2, answered=True)
        await sms.take_back(order("volunteer"), PHONES[0])
    return bodies


@pytest.mark.parametrize(("language", "ask", "seen"), [
    ("zh", "在此接单：", "查看："), ("en", " Answer: ", " View: ")])
async def test_an_orders_sms_ends_with_the_members_page(language: str, ask: str,
                                                        seen: str) -> None:
    first, second, update, answered, withdrawn = await _bodies(PAGE, language)
    for body in (first, second, update):
        # last in the text: a phone's link detector takes nothing after it for the address
        assert str(body["text"]).endswith(ask + PAGE) and body["page_url"] == PAGE
        assert str(body["text"]).count("ord_1") == 1  # the order id is still there
    # an update the team has acknowledged asks nobody to acknowledge: the page to look at it
    assert str(answered["text"]).endswith(seen + PAGE) and answered["page_url"] == PAGE


async def test_a_withdrawal_links_nothing() -> None:
    # "do not go", with nothing to answer: a link would only invite a member to act on it
    *_, withdrawn = await _bodies(PAGE)
    assert "http" not in str(withdrawn["text"]) and withdrawn["page_url"] is None


async def test_the_link_holds_no_token_nor_anything_of_the_phone() -> None:
    # One address for every phone: the page has its token in the browser's storage; a
    # token in the link would hand it to the carrier and sit in the inbox for anyone.
    first, second, *_ = await _bodies(PAGE)
    assert first["page_url"] == second["page_url"] == PAGE
    assert str(first["text"]).replace("+8613800000001", "") == str(second["text"]).replace(
        "+8613800000002", "")
    for body in (first, second):
        for secret in ("dev_", "mem_", "token", "gw-secret", "?", "#"):
            assert secret not in str(body["text"]) and secret not in str(body["page_url"])


async def test_without_a_public_address_the_sms_is_as_before() -> None:
    first, _, update, answered, withdrawn = await _bodies(None)
    for body in (first, update, answered, withdrawn):
        assert "http" not in str(body["text"]) and body["page_url"] is None
    assert str(first["text"]).endswith("指令号 ord_1。")


def _settings(url: str) -> Settings:
    return Settings(admin_token="a-test-admin-token", notify_public_url=url)


@pytest.mark.parametrize(("given", "page"), [
    ("https://lianfang.example.cn", PAGE), ("https://lianfang.example.cn/", PAGE),
    ("http://203.0.113.7:8004", "http://203.0.113.7:8004/device"),
    ("https://gov.example.cn/lianfang/", "https://gov.example.cn/lianfang/device")])
def test_the_page_is_notifys_public_address_and_device(given: str, page: str) -> None:
    assert _settings(given).device_page_url == page
    assert Settings(admin_token="a-test-admin-token").device_page_url is None


@pytest.mark.parametrize("url", [
    "https://lianfang.example.cn/?token=dt_abc",  # a credential in the query
    "https://lianfang.example.cn/#dt_abc",  # or in the fragment
    "https://admin:pw@lianfang.example.cn",  # or a user and password
    "ftp://lianfang.example.cn", "lianfang.example.cn", "https://",
    "https://" + "x" * SMS_LINK_MAX_CHARS + ".cn",  # it would crowd the place out of the SMS
])
def test_a_public_address_that_could_carry_a_secret_or_not_fit_stops_notify(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(url)
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("notify_public_url",)


LINK = "https://" + "x" * (SMS_LINK_MAX_CHARS - len("https://.cn/device")) + ".cn/device"
PLACE = ("南宁市西乡塘区明秀西路" * 30)[:300]  # the 300 characters an address may have


def crowded(**over: object) -> OrderIssued:
    """The update of a volunteer team's reinforcement P1 with every flag, its escort not yet
    sent, the longest order id: all an order's text may say at once (only a hand-over has a
    filing deadline, and never an escort)."""
    fields: dict[str, object] = {
        "priority": "P1", "category": "violence", "escort": "awaited",
        "flags": ("weapon", "injury", "in_progress"),
        "location": Location(lat=22.8, lon=108.3, address=PLACE), **over}
    return order("volunteer", **fields).model_copy(update={"kind": "reinforcement",
                                      "order_id": "ord_0123456789abcdef0123"})


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_long_place_is_shortened_for_the_link_never_the_deadline(language: str) -> None:
    assert len(LINK) == SMS_LINK_MAX_CHARS
    handover = order("police", ack_by=None, flags=("weapon",),
                     filing_due=datetime(2026, 11, 24, 8, 0, tzinfo=UTC),
                     location=Location(lat=22.8, lon=108.3, address=PLACE)).model_copy(
                         update={"kind": "handover", "order_id": "ord_0123456789abcdef0123"})
    ordinary = order("police", location=Location(lat=22.8, lon=108.3, address=PLACE))
    # (in English a volunteer team's P1 with every flag is too full for it: below)
    for long in ([crowded(), crowded(escort="sent")] if language == "zh" else []) + [
            crowded(escort=None, flags=("weapon",)), handover, ordinary]:
        text = sms_text(long, language=language, link=LINK)  # type: ignore[arg-type]
        assert _units(text) <= SMS_MAX_CHARS and text.endswith(LINK)
        assert long.order_id in text and PLACE[:16] in text
        assert "08:01:00" in text if long.ack_by else "08:00" in text


def test_in_a_text_too_full_for_it_the_link_gives_way_to_the_place() -> None:
    # In English everything at once leaves the place no room even without a link: the
    # text goes as it did, the place before the link (the gateway's field still has it).
    long = crowded()
    text = sms_text(long, language="en", update=True, link=LINK)
    assert text == sms_text(long, language="en", update=True)
    assert _units(text) <= SMS_MAX_CHARS and LINK not in text
    zh = sms_text(long, language="zh", update=True, link=LINK)
    assert _units(zh) <= SMS_MAX_CHARS and zh.endswith(LINK) and PLACE[:16] in zh
