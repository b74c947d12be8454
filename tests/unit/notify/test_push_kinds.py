"""A push names its order's kind, as the SMS does (（移交）, （回访）, （增援）): a station member
may hold a hand-over to file, a revisit a week on and a live dispatch at once, and the lock
screen must not make the first two read as an emergency to run to, nor leave a member
guessing which order a withdrawal took back. The words are the page's (its language), the
kind a code from dispatch: never caller data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.notify.domain.orders import (
    PUSH_PAYLOAD_LIMIT,
    push_payload,
    withdrawn_push_payload,
)
from services.notify.page import SERVICE_WORKER
from shared.events import Location
from tests.helpers import run_in_node

from .test_device_page import SW_HARNESS
from .test_orders import order

PUSH = {"type": "order", "order_id": "ord_1", "priority": "P2", "category": "dispute",
        "flags": [], "address": "Minzu Ave 88"}
TAKEN_BACK = {"type": "order_withdrawn", "order_id": "ord_1", "priority": "P2",
              "category": "dispute", "address": "Minzu Ave 88"}


def shown(*pushes: dict[str, Any], languages: list[str] | None = None) -> list[str]:
    return [title for title, _ in run_in_node(
        SW_HARNESS, {"worker": SERVICE_WORKER, "languages": languages or [],
                     "pushes": list(pushes)})]


def test_both_pushes_carry_the_orders_kind() -> None:
    handover = order("police").model_copy(update={"kind": "handover"})
    assert json.loads(push_payload(handover))["kind"] == "handover"
    taken_back = json.loads(withdrawn_push_payload(handover))
    assert taken_back["kind"] == "handover"
    assert "Liang" not in str(taken_back) and "neighbours" not in str(taken_back)
    # an ordinary dispatch's withdrawal as it always was (the worker says no kind for it)
    assert "kind" not in json.loads(withdrawn_push_payload(order("police")))


def test_a_long_push_keeps_its_kind_and_stays_under_the_limit() -> None:
    far = order("security", instructions="x" * 5000,
                location=Location(lat=1, lon=2, address="路" * 300),
                ).model_copy(update={"kind": "followup"})
    for payload in (push_payload(far), withdrawn_push_payload(far),
                    push_payload(far, update=3)):
        assert len(payload) < PUSH_PAYLOAD_LIMIT
        assert json.loads(payload)["kind"] == "followup"


@pytest.mark.parametrize(("kind", "zh", "en"), [
    ("handover", "（移交）", "(handover) "),
    ("followup", "（回访）", "(follow-up) "),
    ("reinforcement", "（增援）", "(reinforcement) "),
])
def test_the_lock_screen_names_the_orders_kind(kind: str, zh: str, en: str) -> None:
    raised = {**PUSH, "kind": kind, "priority": "P1", "flags": ["weapon"], "update": 1}
    first, update, withdrawn = shown({**PUSH, "kind": kind}, raised,
                                     {**TAKEN_BACK, "kind": kind})
    assert first == f"{zh}P2紧急 纠纷"
    assert update == f"指令更新：{zh}P1特急 纠纷（持械）"
    # which order was taken back: the hand-over, not the live dispatch beside it
    assert withdrawn == f"已撤回：{zh}P2紧急 纠纷"
    first, update, withdrawn = shown({**PUSH, "kind": kind}, raised,
                                     {**TAKEN_BACK, "kind": kind}, languages=["en-GB"])
    assert first == f"{en}P2 urgent dispute"
    assert update == f"UPDATED: {en}P1 emergency dispute (weapon)"
    assert withdrawn == f"Withdrawn: {en}P2 urgent dispute"


def test_an_ordinary_dispatch_reads_as_it_always_did() -> None:
    assert shown({**PUSH, "kind": "dispatch"}, {**TAKEN_BACK, "kind": "dispatch"}, PUSH) == [
        "P2紧急 纠纷", "已撤回：P2紧急 纠纷", "P2紧急 纠纷"]
