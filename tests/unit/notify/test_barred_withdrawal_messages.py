"""An order taken back because the incident's flags now bar volunteers (a weapon reported)
says so in the fallback messages too: a volunteer with no data, who had the order by SMS or
a Web Push, may be on the way or on scene, and "withdrawn, do not go" alone does not tell
them of the knife, nor to leave (the page's own words: test_device_page_called_off)."""

from __future__ import annotations

import json

from services.notify.domain.orders import sms_withdrawn_text, withdrawn_push_payload
from services.notify.page import SERVICE_WORKER
from services.notify.page_text import WORKER_TEXT
from tests.helpers import run_in_node

from .test_device_page import SW_HARNESS
from .test_orders import order

HELP = order("volunteer", category="help_request", priority="P3", flags=())


def test_the_sms_taking_the_order_back_names_the_weapon_and_says_to_leave() -> None:
    text = sms_withdrawn_text(HELP, barred_by=("weapon",))
    assert text.startswith("【联防】危险")
    assert "持械" in text and "立即离开" in text and "请勿前往" in text
    assert "Minzu Ave 88" in text and text.endswith("指令号 ord_1。")
    assert "Liang" not in text and "neighbours" not in text
    en = sms_withdrawn_text(HELP, language="en", barred_by=("weapon",))
    assert en.startswith("[Lianfang] DANGER") and "weapon" in en and "leave now" in en
    # any other withdrawal as before
    assert sms_withdrawn_text(HELP).startswith("【联防】指令已撤回，请勿前往")


def test_the_push_taking_the_order_back_carries_the_flags_and_the_worker_says_to_leave(
) -> None:
    payload = json.loads(withdrawn_push_payload(HELP, barred_by=("weapon",)))
    assert payload["barred_by"] == ["weapon"]
    assert "barred_by" not in json.loads(withdrawn_push_payload(HELP))
    [(title, opts)] = run_in_node(SW_HARNESS, {"worker": SERVICE_WORKER, "languages": [],
                                               "pushes": [payload]})
    assert title.startswith("已撤回")
    assert opts["body"].startswith(WORKER_TEXT["zh"]["barred_leave"].format(flags="持械"))
    assert opts["silent"] is False and opts["requireInteraction"] is True
