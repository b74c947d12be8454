"""The member's page in the members' language: Chinese unless the browser puts English first
or the member chose English with the page's switch, which the phone remembers (the page's
script runs in node, as in test_device_page_day)."""

from __future__ import annotations

import re

import pytest

from services.notify.page import DEVICE_PAGE
from services.notify.page_text import PAGE_TEXT, WORKER_TEXT
from shared.labels import label
from tests.unit.notify.test_device_page_day import SERVICES, day, deliver, hello, said
from tests.unit.test_pages import ORDER, script

# what a step reads of the page: its language, a button, the card, the status line
SEEN = ("[document.documentElement.lang, text('connect'), text('o-ord_1'), text('status'), "
        "text('lang'), $('token').placeholder]")


def test_the_page_speaks_chinese_by_default_and_english_once_the_member_chooses_it() -> None:
    # An auxiliary officer's phone, its browser in Chinese: every word was English
    # ("Acknowledge", "dispute", "NEW"); the aunties and uncles on patrol could not read it.
    zh, en, stored = day(
        f"{hello()}; {deliver(ORDER)}; {SEEN}",
        f"$('lang').onclick(); {SEEN}",
        "localStorage.getItem('lf_lang')",
    )
    lang, connect, card, status, switch, hint = zh
    assert (lang, connect, status, switch) == ("zh-CN", "连接", "已连接", "English")
    assert hint == "粘贴您的设备令牌"
    # the order: its priority's word, the category and the answers, in the glossary's words
    assert card.startswith("P2 紧急 | 纠纷 | ") and "新指令" in card
    assert " | 接单 | " in card and "请求增援" in card
    lang, connect, card, status, switch, hint = en
    assert (lang, connect, status, switch) == ("en", "Connect", "connected", "中文")
    assert hint == "paste your device token"
    assert card.startswith("P2 urgent | dispute | ") and "NEW" in card
    assert " | Acknowledge | " in card and "Need help" in card
    assert stored == "en"  # remembered on this phone


@pytest.mark.parametrize(("languages", "kept", "expected"), [
    (["en-US", "zh-CN"], None, "en"),   # the browser puts English first
    (["en"], None, "en"),
    (["zh-CN", "en-US"], None, "zh-CN"),
    (["fr-FR", "en-GB"], None, "zh-CN"),  # English not first: Chinese
    (["en-US"], "zh", "zh-CN"),          # the member's own choice wins
    (["zh-CN"], "en", "en"),
])
def test_the_pages_language_follows_the_browser_unless_the_member_chose(
        languages: list[str], kept: str | None, expected: str) -> None:
    (shown,) = day(f"{hello()}; {deliver(ORDER)}; {SEEN}", languages=languages,
                   storage={"lf_lang": kept} if kept else None)
    assert shown[0] == expected
    assert shown[1] == PAGE_TEXT["zh" if expected == "zh-CN" else "en"]["connect"]


def test_a_category_the_glossary_does_not_have_shows_as_its_id() -> None:
    # a deployment's own policy file added it
    (card,) = day(f"{hello()}; {deliver({**ORDER, 'category': 'gas_leak'})}; text('o-ord_1')")
    assert " | gas_leak | " in card


def test_the_page_before_its_script_runs_is_chinese() -> None:
    markup = re.sub(r"<script>.*?</script>", "", DEVICE_PAGE, flags=re.DOTALL)
    assert '<html lang="zh-CN">' in markup and "{{" not in markup
    assert ">连接</button>" in markup and "Connect" not in markup


@pytest.mark.parametrize("table", [PAGE_TEXT, WORKER_TEXT], ids=["page", "worker"])
def test_both_languages_say_everything_with_the_same_blanks(
        table: dict[str, dict[str, str]]) -> None:
    zh, en = table["zh"], table["en"]
    assert set(zh) == set(en), sorted(set(zh) ^ set(en))
    for key in zh:
        assert set(re.findall(r"{(\w+)}", zh[key])) == set(re.findall(r"{(\w+)}", en[key])), key


def test_every_message_the_script_names_is_in_the_table() -> None:
    # a key missing from the table would throw where the member needs the message
    code = script(DEVICE_PAGE)
    named = set(re.findall(r'(?:say|setStatus|stopSharing|tokenGone)\("(\w+)"', code))
    for first, second in re.findall(r'\? "(\w+)" : "(\w+)"\)', code):
        named |= {first, second}
    assert named and named <= set(PAGE_TEXT["zh"]), sorted(named - set(PAGE_TEXT["zh"]))


def test_the_points_line_names_the_reason_of_the_last_entry_in_the_members_words() -> None:
    # A volunteer's last entry without a coordinator's note read "积分：20（最近一次 +10,
    # resolved_order）": the ledger's code. It is the glossary's word, in either language.
    boot = ('token = "dev-token"; stopped = false; open_(); ws.readyState = 1; ws.onopen(); '
            f"{SERVICES} var base = net; net = async (url, init) => "
            "url.startsWith('https://vol.test/v1/me/points') ? [200, { balance: 20, history: "
            "[{ points: 10, reason: 'resolved_order', note: null }] }] : base(url, init); loadMe();")
    _, zh, en = day("1", "text('pointsline')", "$('lang').onclick(); text('pointsline')",
                    boot=boot)
    assert zh == said("points_last", balance=20,
                      last="+10, " + label("points_reason", "resolved_order", "zh"))
    assert "resolved_order" not in en
    assert label("points_reason", "resolved_order", "en") in en


def test_a_coordinators_note_is_shown_as_the_reason_of_an_adjustment() -> None:
    boot = ('token = "dev-token"; stopped = false; open_(); ws.readyState = 1; ws.onopen(); '
            f"{SERVICES} var base = net; net = async (url, init) => "
            "url.startsWith('https://vol.test/v1/me/points') ? [200, { balance: 5, history: "
            "[{ points: -5, reason: 'adjustment', note: '巡逻中吸烟' }] }] : base(url, init); loadMe();")
    _, line = day("1", "text('pointsline')", boot=boot)
    assert line == said("points_last", balance=5, last="-5, 巡逻中吸烟")
