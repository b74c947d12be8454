"""An SMS says what kind of order it is (a hand-over to file, a follow-up visit), and a
hand-over's filing deadline with its date: not every text is a live emergency."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.notify.domain.orders import sms_fields, sms_text, sms_withdrawn_text
from shared.events import OrderIssued

from .test_orders import order

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 16:30 UTC: 00:30 the next day in Shanghai (a time alone would read as today's)
FILING_DUE = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)


def of_kind(kind: str, agency: str = "police", **over: object) -> OrderIssued:
    """An order of this kind (`order`'s own first argument is the team's agency kind)."""
    return order(agency, **over).model_copy(update={"kind": kind})


def handover() -> OrderIssued:
    return of_kind("handover", ack_by=None, filing_due=FILING_DUE)


def test_a_hand_over_sms_says_it_is_one_and_when_it_must_be_filed() -> None:
    # A station member got "P2紧急 纠纷：…。指令号 …" for a hand-over they have a day to file:
    # it read as a live emergency.
    text = sms_text(handover(), tz=SHANGHAI)
    assert text == ("【联防】（移交）P2紧急 纠纷（正在发生）：Minzu Ave 88。"
                    "立案期限11月24日00:30。指令号 ord_1。")
    assert sms_text(handover(), tz=SHANGHAI, language="en") == (
        "[Lianfang] (handover) P2 dispute (in progress) at Minzu Ave 88. "
        "Filing due 2026-11-24 00:30. Order ord_1.")


def test_a_follow_up_visit_sms_says_it_is_one() -> None:
    visit = of_kind("followup", ack_by=None, priority="P4", flags=())
    assert sms_text(visit) == "【联防】（回访）P4一般 纠纷：Minzu Ave 88。指令号 ord_1。"
    assert sms_text(visit, language="en").startswith("[Lianfang] (follow-up) P4 dispute at")
    backup = of_kind("reinforcement", "security")
    assert sms_text(backup).startswith("【联防】（增援）P2紧急 纠纷")


def test_an_ordinary_dispatch_sms_reads_as_before() -> None:
    assert sms_text(order("security")).startswith("【联防】P2紧急 纠纷（正在发生）：")


def test_the_gateway_gets_the_orders_kind_and_its_filing_deadline() -> None:
    # a gateway that sends only filed templates needs them to say the same
    fields = sms_fields(handover(), tz=SHANGHAI)
    assert fields["order_kind"] == "handover"
    assert fields["filing_due"] == "2026-11-24T00:30:00+08:00"
    plain = sms_fields(order("security"))
    assert (plain["order_kind"], plain["filing_due"]) == ("dispatch", None)


def test_a_hand_over_sms_never_carries_caller_data() -> None:
    for language in ("zh", "en"):
        text = sms_text(handover(), tz=SHANGHAI, language=language)
        assert "13877001234" not in text and "Liang" not in text and "neighbours" not in text
        assert "go to gate B" not in text  # instructions: free text, in the page only


def test_a_withdrawal_sms_names_the_kind_of_the_order_it_takes_back() -> None:
    # A station member holds a hand-over and a live dispatch at the same place: "指令已撤回"
    # must say which one, as the order's own text did.
    text = sms_withdrawn_text(handover())
    assert text == ("【联防】指令已撤回，请勿前往：（移交）P2紧急 纠纷（Minzu Ave 88）"
                    "已不是本组的指令。指令号 ord_1。")
    assert sms_withdrawn_text(handover(), language="en") == (
        "[Lianfang] WITHDRAWN, do not go: (handover) P2 dispute at Minzu Ave 88 "
        "is no longer your team's. Order ord_1.")
    assert "（回访）" in sms_withdrawn_text(of_kind("followup", ack_by=None))
    # an ordinary dispatch reads as before
    assert sms_withdrawn_text(order("security")).startswith(
        "【联防】指令已撤回，请勿前往：P2紧急 纠纷（Minzu Ave 88）")


def test_a_withdrawal_sms_of_a_hand_over_never_carries_caller_data() -> None:
    for language in ("zh", "en"):
        text = sms_withdrawn_text(handover(), language=language)
        assert "13877001234" not in text and "Liang" not in text and "neighbours" not in text
        assert "go to gate B" not in text
