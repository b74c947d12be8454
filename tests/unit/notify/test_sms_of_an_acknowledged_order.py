"""The update of an order the team has already acknowledged (a teammate did, or the member on
another phone): it says so, and asks no one to acknowledge it by a deadline that no longer
holds (tests/integration/notify/test_raised_after_a_text.py sends it)."""

from __future__ import annotations

from services.notify.domain.orders import sms_fields, sms_text

from .test_orders import order
from .test_sms_order_kinds import SHANGHAI, handover


def test_the_update_of_an_acknowledged_order_says_so_and_gives_no_deadline() -> None:
    knife = order("security", priority="P1", category="violence", flags=("weapon",))
    assert sms_text(knife, update=True, answered=True) == (
        "【联防】指令更新：P1特急 打架斗殴（持械）：Minzu Ave 88。本组已接单。指令号 ord_1。")
    english = sms_text(knife, update=True, answered=True, language="en")
    assert english == ("[Lianfang] UPDATED: P1 violence (weapon) at Minzu Ave 88. "
                       "Your team has acknowledged it. Order ord_1.")
    assert sms_fields(knife, answered=True)["ack_by"] is None
    # not answered: as before
    assert "请于08:01:00前接单" in sms_text(knife, update=True)
    assert sms_fields(knife)["ack_by"] is not None


def test_an_acknowledged_hand_over_keeps_its_filing_deadline() -> None:
    # acknowledging a hand-over does not file it: the filing deadline still stands
    text = sms_text(handover(), tz=SHANGHAI, update=True, answered=True)
    assert text == ("【联防】指令更新：（移交）P2紧急 纠纷（正在发生）：Minzu Ave 88。本组已接单。"
                    "立案期限11月24日00:30。指令号 ord_1。")
