"""What a team sees of an order: need to know for caller data; frames carry what devices need."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain.orders import (
    amended,
    amended_frame,
    for_team,
    order_frame,
    outlived,
    push_payload,
    sms_fields,
    sms_text,
    sms_withdrawn_text,
    withdrawal_cause,
)
from shared.events import Caller, Location, OrderAmended, OrderIssued

ACK_BY = datetime(2026, 11, 23, 8, 1, tzinfo=UTC)


def order(kind: str = "police", **over: object) -> OrderIssued:
    fields: dict[str, object] = dict(
        district="d1", order_id="ord_1", incident_id="inc_1", team_id="t1", agency_kind=kind,
        category="dispute", priority="P2",
        location=Location(lat=22.817, lon=108.3665, address="Minzu Ave 88"),
        flags=("in_progress",), instructions="go to gate B", ack_by=ACK_BY,
        caller=Caller(phone="13877001234", name="Ms Liang"), description="neighbours arguing",
    )
    fields.update(over)
    return OrderIssued.model_validate(fields)


def test_a_police_order_frame_carries_the_caller_and_the_description() -> None:
    frame = order_frame(for_team(order("police")), traceparent="00-abc-def-01")
    assert frame["type"] == "order" and frame["order_id"] == "ord_1"
    assert frame["caller"] == {"phone": "13877001234", "name": "Ms Liang"}
    assert frame["description"] == "neighbours arguing"
    assert frame["location"] == {"lat": 22.817, "lon": 108.3665}
    assert frame["address"] == "Minzu Ave 88" and frame["instructions"] == "go to gate B"
    assert frame["ack_by"] == ACK_BY.isoformat() and frame["flags"] == ["in_progress"]
    assert frame["kind"] == "dispatch" and frame["traceparent"] == "00-abc-def-01"


@pytest.mark.parametrize("kind", ["security", "volunteer"])
def test_other_kinds_never_get_caller_data_in_any_form(kind: str) -> None:
    kept = for_team(order(kind))
    assert kept.caller is None and kept.description is None
    for text in (str(order_frame(kept, traceparent=None)), push_payload(kept).decode(),
                 sms_text(kept), sms_withdrawn_text(kept), kept.model_dump_json()):
        assert "13877001234" not in text and "Liang" not in text and "neighbours" not in text
    # even if an upstream bug left them on the event, the frame drops them
    frame = order_frame(order(kind), traceparent=None)
    assert "caller" not in frame and "description" not in frame


def test_optional_fields_are_left_out_when_absent() -> None:
    frame = order_frame(order("police", caller=None, description=None, instructions=None,
                              location=Location(lat=1, lon=2), ack_by=None), traceparent=None)
    assert "caller" not in frame and "description" not in frame
    assert "address" not in frame and "instructions" not in frame
    assert frame["ack_by"] is None


def test_the_push_payload_never_carries_caller_data_even_for_police() -> None:
    payload = push_payload(order("police")).decode()
    assert "13877001234" not in payload and "neighbours" not in payload
    assert '"order_id":"ord_1"' in payload


def test_the_sms_texts_never_carry_caller_data_even_for_police() -> None:
    # they cross the SMS gateway and stay in the phone's inbox
    for text in (sms_text(order("police")), sms_withdrawn_text(order("police"))):
        assert "13877001234" not in text and "Liang" not in text and "neighbours" not in text
        assert "Minzu Ave 88" in text and "ord_1" in text


def test_a_long_push_payload_drops_free_text_to_fit() -> None:
    payload = push_payload(order("security", instructions="x" * 5000))
    assert len(payload) < 3000 and b"xxxx" not in payload and b"ord_1" in payload


def test_an_order_issued_longer_ago_than_notify_keeps_orders_is_outlived() -> None:
    issued = order(occurred_at=ACK_BY)
    day = 86_400.0
    assert not outlived(issued, now=ACK_BY, remembered_s=14 * day)
    assert not outlived(issued, now=ACK_BY + timedelta(days=13, hours=23), remembered_s=14 * day)
    # a minute's allowance for dispatch's clock and notify's (and Redis's) to differ
    assert outlived(issued, now=ACK_BY + timedelta(days=14, seconds=-60), remembered_s=14 * day)
    assert outlived(issued, now=ACK_BY + timedelta(days=15), remembered_s=14 * day)
    # a short memory (tests) keeps half of it
    assert not outlived(issued, now=ACK_BY + timedelta(seconds=0.9), remembered_s=2)
    assert outlived(issued, now=ACK_BY + timedelta(seconds=1), remembered_s=2)


def test_an_sms_says_what_the_order_is_flagged_with() -> None:
    # A guard with no data on the phone has only the SMS: a knife at the scene is news.
    flagged = order("security", priority="P1", category="violence",
                    flags=("face_match:Wang Wei", "weapon", "injury"))
    assert "P1 violence (weapon, injury) at" in sms_text(flagged, language="en")
    text = sms_text(flagged)
    assert "打架斗殴（持械、有人受伤）" in text
    assert "Wang" not in text  # a calling system's own flag is its free text


def test_an_sms_is_in_chinese_unless_the_deployment_chose_english() -> None:
    # The members are the district's officers, guards and volunteer aunties and uncles:
    # "[Lianfang] P4 hazard_report at ..." was a text many of them could not read.
    hazard = order("volunteer", priority="P4", category="hazard_report", flags=())
    text = sms_text(hazard)
    assert text == ("【联防】P4一般 隐患上报：Minzu Ave 88。请于08:01:00前接单。"
                    "指令号 ord_1。")
    assert sms_text(hazard, language="en") == (
        "[Lianfang] P4 hazard report at Minzu Ave 88. Acknowledge by 08:01:00. Order ord_1.")
    withdrawn = sms_withdrawn_text(hazard)
    assert withdrawn.startswith("【联防】指令已撤回，请勿前往：P4一般 隐患上报（Minzu Ave 88）")
    assert withdrawn.endswith("指令号 ord_1。")
    assert sms_withdrawn_text(hazard, language="en").startswith(
        "[Lianfang] WITHDRAWN, do not go: P4 hazard report at Minzu Ave 88")
    # an order without a deadline (a hand-over) says none
    assert "请于" not in sms_text(order("police", ack_by=None))


def test_an_sms_names_a_category_the_glossary_does_not_have_by_its_id() -> None:
    # a deployment's own policy file added it; the member reads it as other systems send it
    assert "gas_leak" in sms_text(order("security", category="gas_leak"))
    fields = sms_fields(order("security", category="gas_leak"))
    assert fields["category"] == fields["category_name"] == "gas_leak"


def test_the_gateway_gets_the_texts_parts_with_its_language() -> None:
    # a gateway that sends only its filed templates fills them from these
    zh = sms_fields(order("security", category="noise"))
    assert (zh["category"], zh["category_name"], zh["language"]) == ("noise", "噪音扰民", "zh")
    en = sms_fields(order("security", category="noise"), language="en")
    assert (en["category_name"], en["language"]) == ("noise", "en")
    assert zh["flags"] == ["in_progress"] and zh["place"] == "Minzu Ave 88"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_long_address_is_shortened_never_the_deadline_or_the_order(language: str) -> None:
    # A video-analytics alert's place, at the 300 characters an address may have: the SMS
    # lost its end, where the acknowledge-by time and the order id were.
    place = ("南宁市西乡塘区北湖街道明秀西路" + "某小区东门对面天桥下摄像头" * 22)[:300]
    assert len(place) == 300
    long = order("volunteer", location=Location(lat=22.8, lon=108.3, address=place))
    text = sms_text(long, language=language)  # type: ignore[arg-type]
    assert text.endswith({"zh": "请于08:01:00前接单。指令号 ord_1。",
                          "en": "Acknowledge by 08:01:00. Order ord_1."}[language])
    assert place[:40] in text and "…" in text
    assert len(text) == 201  # three segments of a Chinese text (67 UCS-2 characters each)
    withdrawn = sms_withdrawn_text(long, language=language)  # type: ignore[arg-type]
    assert withdrawn.endswith({"zh": "指令号 ord_1。", "en": "Order ord_1."}[language])
    assert {"zh": "请勿前往", "en": "do not go"}[language] in withdrawn
    assert place[:40] in withdrawn and len(withdrawn) == 201


def test_a_place_with_characters_beyond_ucs2_is_shortened_as_the_sms_counts_them() -> None:
    # Some place names of the district are written with characters outside the Basic
    # Multilingual Plane (CJK Extension B: 𨱏, 𠮷): a phone counts each as two UCS-2 units.
    # Counted as one, the text went over its three parts, a fourth billed and, on some
    # gateways, the end (the deadline, the order id) lost.
    place = "南宁市𨱏𠮷村" * 50
    text = sms_text(order("volunteer", location=Location(lat=22.8, lon=108.3, address=place)))
    assert len(text.encode("utf-16-le")) // 2 <= 201
    assert text.endswith("请于08:01:00前接单。指令号 ord_1。") and "南宁市𨱏𠮷村" in text


def test_the_log_says_what_took_an_order_back() -> None:
    # dispatch sends `reassigned` when it takes a team off by its own decision (the command
    # room's take-back, the team moved on the roster, a weapon barring volunteers): the log
    # said "withdrawn (reassigned)" for a take-back, where nothing was reassigned
    assert "taken back by dispatch" in withdrawal_cause("reassigned")
    assert "command room" in withdrawal_cause("reassigned")
    assert "reassigned" not in withdrawal_cause("reassigned")
    assert "deadline" in withdrawal_cause("timeout")
    assert "closed" in withdrawal_cause("closed")
    assert "declined" in withdrawal_cause("declined")
    assert withdrawal_cause("something_new") == "something_new"  # a newer dispatch's


def amendment(**over: object) -> OrderAmended:
    fields: dict[str, object] = dict(district="d1", order_id="ord_1", incident_id="inc_1",
                                     team_id="t1", priority="P1", flags=("injury",))
    fields.update(over)
    return OrderAmended.model_validate(fields)


def test_a_volunteers_order_says_whether_police_or_security_goes_with_them() -> None:
    awaited = order("volunteer", priority="P1", escort="awaited")
    assert order_frame(for_team(awaited), traceparent=None)["escort"] == "awaited"
    assert "escort" not in order_frame(for_team(order("volunteer")), traceparent=None)
    assert "escort" in json.loads(push_payload(for_team(awaited)))


@pytest.mark.parametrize(("said", "now"), [("sent", "sent"), ("awaited", "awaited"),
                                           ("none", None), (None, "awaited")])
def test_an_amendment_changes_the_escort_only_when_it_says_something_of_it(
        said: str | None, now: str | None) -> None:
    before = order("volunteer", priority="P1", escort="awaited")
    after = amended(before, amendment(escort=said))
    assert after.escort == now
    assert amended_frame(after)["escort"] == now  # null: the page shows nothing


def test_an_amendment_never_pushes_the_deadline_back() -> None:
    before = order("volunteer", priority="P1")
    assert amended(before, amendment(ack_by=ACK_BY + timedelta(minutes=1))).ack_by == ACK_BY
    sooner = ACK_BY - timedelta(seconds=30)
    assert amended(before, amendment(ack_by=sooner)).ack_by == sooner
