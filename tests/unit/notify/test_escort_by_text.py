"""A volunteer team sent to a P1 with no police or security team on the way (the order's
`escort` `awaited`), whose phones have the order only by SMS or Web Push (no data, the page
closed): the text says to wait for them at a safe distance, and an amendment that turns the
escort to `awaited` (the escort declined, timed out, was taken back) is news to send again,
as a higher priority is. `sent` alone is not (decided: the phone's last text already says
to wait for them; an escort's offer may still decline in its 30 s). The page's card says it
too (test_device_page_escort); tests/integration/notify/test_raised_after_a_text.py sends
it."""

from __future__ import annotations

import pytest

from services.notify.domain.orders import SMS_MAX_CHARS, raised, sms_fields, sms_text
from services.notify.page import SERVICE_WORKER
from shared.events import Location, OrderIssued
from tests.helpers import run_in_node

from .test_device_page import SW_HARNESS
from .test_orders import order

AWAITED = {"zh": "民警/保安尚未出动，请在安全距离外等候。",
           "en": " Police/security not yet on the way: wait at a safe distance."}
SENT = {"zh": "民警/保安已派出。", "en": " Police/security sent."}


def alone(escort: str | None = "awaited", **over: object) -> OrderIssued:
    """A volunteer team's P1 (someone hurt), as notify keeps it (no caller data)."""
    fields: dict[str, object] = dict(priority="P1", category="medical", flags=("injury",),
                                     escort=escort, caller=None, description=None)
    fields.update(over)
    return order("volunteer", **fields)


def test_the_sms_of_volunteers_alone_on_a_p1_tells_them_to_wait_at_a_safe_distance() -> None:
    assert sms_text(alone()) == ("【联防】P1特急 急救求助（有人受伤）：Minzu Ave 88。"
                                 f"{AWAITED['zh']}请于08:01:00前接单。指令号 ord_1。")
    assert sms_text(alone(), language="en") == (
        f"[Lianfang] P1 medical (injury) at Minzu Ave 88.{AWAITED['en']}"
        " Acknowledge by 08:01:00. Order ord_1.")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_sms_says_when_police_or_security_is_sent(language: str) -> None:
    text = sms_text(alone("sent"), language=language)  # type: ignore[arg-type]
    assert SENT[language] in text and AWAITED[language] not in text


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_order_with_no_escort_says_nothing_of_one(language: str) -> None:
    text = sms_text(alone(None), language=language)  # type: ignore[arg-type]
    assert "民警/保安" not in text and "Police/security" not in text


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_long_place_is_shortened_never_the_wait(language: str) -> None:
    # the 300 characters an address may have: the wait is what the member acts on
    place = "南宁市西乡塘区北湖街道明秀西路" * 20
    long = alone(location=Location(lat=22.8, lon=108.3, address=place))
    for text in (sms_text(long, language=language),  # type: ignore[arg-type]
                 sms_text(long, language=language, update=True,  # type: ignore[arg-type]
                          answered=True)):
        assert AWAITED[language] in text and "…" in text
        assert len(text.encode("utf-16-le")) // 2 <= SMS_MAX_CHARS
        assert text.endswith({"zh": "指令号 ord_1。", "en": "Order ord_1."}[language])


def test_a_gateway_filling_its_own_template_gets_the_escort() -> None:
    assert sms_fields(alone())["escort"] == "awaited"
    assert sms_fields(alone("sent"))["escort"] == "sent"
    assert sms_fields(alone(None))["escort"] is None


@pytest.mark.parametrize("answered", [False, True])
def test_an_escort_no_longer_coming_is_sent_again(answered: bool) -> None:
    # the escort's offer declined: "police/security sent" no longer holds, and the
    # volunteers, acknowledged and on their way or not, must hear it
    sent = alone("sent")
    assert raised(sent, alone("awaited"), answered=answered)
    # an order that had nothing to say of an escort (the incident raised to P1 is raised
    # by its priority anyway)
    assert raised(alone(None), alone("awaited"), answered=answered)


@pytest.mark.parametrize(("before", "after"), [
    ("awaited", "sent"),   # decided: the text they have says wait for them; no SMS per offer
    ("awaited", "awaited"),
    ("sent", None),        # lowered below P1 (`none`): nothing to act on
    ("awaited", None),
])
def test_other_escort_changes_are_not_sent_again(before: str, after: str | None) -> None:
    assert not raised(alone(before), alone(after), answered=False)
    assert not raised(alone(before), alone(after), answered=True)


def test_the_lock_screen_tells_volunteers_alone_to_wait_at_a_safe_distance() -> None:
    push = {"type": "order", "order_id": "ord_1", "priority": "P1", "category": "medical",
            "flags": ["injury"], "address": "Minzu Ave 88", "escort": "awaited"}
    shown = run_in_node(SW_HARNESS, {"worker": SERVICE_WORKER, "pushes": [
        push, {**push, "escort": "sent", "update": 1}, {**push, "escort": None}]})
    (_, awaited), (_, sent), (_, nothing) = shown
    assert awaited["body"] == "民警/保安尚未出动，请在安全距离外等候。 Minzu Ave 88"
    assert sent["body"] == "民警/保安已派出。 Minzu Ave 88"
    assert nothing["body"] == "Minzu Ave 88"
    ((_, english),) = run_in_node(SW_HARNESS, {"worker": SERVICE_WORKER, "languages": ["en"],
                                               "pushes": [push]})
    assert english["body"] == ("Police/security not yet on the way: wait at a safe distance."
                               " Minzu Ave 88")
