"""An order raised by an amendment: when it counts as raised, and how the phone that had it
only by SMS or Web Push is told (tests/integration/notify/test_raised_after_a_text.py sends
it)."""

from __future__ import annotations

import json
from datetime import timedelta

from services.notify.domain.orders import push_payload, raised, sms_text
from services.notify.page import SERVICE_WORKER
from tests.helpers import run_in_node

from .test_device_page import SW_HARNESS
from .test_orders import ACK_BY, order


def test_an_amendment_raises_an_order_made_more_urgent() -> None:
    before = order("security", priority="P2", flags=("in_progress",))
    assert raised(before, before.model_copy(update={"priority": "P1"}))
    assert raised(before, before.model_copy(update={"flags": ("in_progress", "weapon")}))
    assert raised(before, before.model_copy(update={"ack_by": ACK_BY - timedelta(seconds=20)}))
    # not: lowered, a flag taken off, a calling system's own flag, nothing new
    assert not raised(before, before.model_copy(update={"priority": "P3"}))
    assert not raised(before, before.model_copy(update={"flags": ()}))
    assert not raised(before, before.model_copy(update={"flags": ("in_progress", "vip")}))
    assert not raised(before, before)
    assert not raised(before.model_copy(update={"ack_by": None}),
                      before.model_copy(update={"ack_by": ACK_BY}))


def test_the_sms_of_a_raised_order_says_it_is_an_update() -> None:
    # the first text stays in the inbox: the member must read this one as replacing it
    knife = order("security", priority="P1", category="violence", flags=("weapon",))
    assert sms_text(knife, update=True) == (
        "【联防】指令更新：P1特急 打架斗殴（持械）：Minzu Ave 88。请于08:01:00前接单。指令号 ord_1。")
    assert sms_text(knife, update=True, language="en").startswith(
        "[Lianfang] UPDATED: P1 violence (weapon) at Minzu Ave 88.")
    assert "更新" not in sms_text(knife)


def test_the_push_of_a_raised_order_carries_its_version() -> None:
    knife = order("security", priority="P1", flags=("weapon",))
    assert json.loads(push_payload(knife, update=2))["update"] == 2
    assert "update" not in json.loads(push_payload(knife))


def test_the_lock_screen_says_a_raised_order_is_an_update_and_names_the_knife() -> None:
    first = {"type": "order", "order_id": "ord_1", "priority": "P2", "category": "dispute",
             "flags": [], "address": "Minzu Ave 88"}
    raised_to = {**first, "priority": "P1", "flags": ["weapon", "vip"], "update": 1}
    (title, alert), (again, update) = run_in_node(
        SW_HARNESS, {"worker": SERVICE_WORKER, "pushes": [first, raised_to]})
    assert title == "P2紧急 纠纷"
    assert again == "指令更新：P1特急 纠纷（持械）"
    assert update["tag"] == alert["tag"] == "ord_1" and update["renotify"] is True
    (_, _), (english, _) = run_in_node(
        SW_HARNESS, {"worker": SERVICE_WORKER, "languages": ["en"],
                     "pushes": [first, raised_to]})
    assert english == "UPDATED: P1 emergency dispute (weapon)"
