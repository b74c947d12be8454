"""The glossary of what members and the command room read: every code the system sends them
has its Chinese and its English word; a code it does not know is shown as itself."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from services.notify.domain.responses import OrderState
from services.volunteers.domain.points import Reason
from shared.events import IncidentStatus, OrderKind, Priority, Response, UnitState
from shared.labels import GLOSSARY, LANGUAGES, glossary, label, language_of
from shared.policy import DEFAULT_POLICY, load_policy

HAN = re.compile(r"[\u4e00-\u9fff]")


def test_every_category_of_the_shipped_policy_has_its_chinese_and_english_name() -> None:
    for category in load_policy(DEFAULT_POLICY).categories:
        zh, en = label("category", category, "zh"), label("category", category, "en")
        assert HAN.search(zh), (category, zh)  # a Chinese word, not the id
        assert en and not HAN.search(en), (category, en)


@pytest.mark.parametrize(("group", "codes"), [
    ("priority", get_args(Priority)),
    ("response", (*get_args(Response), "received")),
    ("order_state", get_args(OrderState)),
    ("order_kind", get_args(OrderKind)),
    ("team_status", get_args(UnitState)),
    ("incident_status", get_args(IncidentStatus)),
    ("flag", ("weapon", "injury", "in_progress")),
    ("points_reason", get_args(Reason)),
])
def test_every_code_a_member_or_the_command_room_reads_has_both_words(
        group: str, codes: tuple[str, ...]) -> None:
    assert set(codes) <= set(GLOSSARY[group]), sorted(set(codes) - set(GLOSSARY[group]))
    for code in codes:
        zh, en = GLOSSARY[group][code]
        assert HAN.search(zh) and en.strip() and not HAN.search(en), (code, zh, en)


def test_a_category_the_glossary_does_not_have_is_shown_as_its_id() -> None:
    # a deployment's own policy file may add one (gas_leak): named as other systems send it
    assert label("category", "gas_leak", "zh") == "gas_leak"
    assert label("category", "gas_leak", "en") == "gas_leak"


def test_chinese_is_the_default_and_a_page_gets_one_language_whole() -> None:
    assert label("category", "hazard_report") == "隐患上报"
    assert label("response", "reinforce", "en") == "Need help"
    for language in LANGUAGES:
        table = glossary(language)
        assert set(table) == set(GLOSSARY)
        assert table["category"]["noise"] == label("category", "noise", language)


@pytest.mark.parametrize(("given", "language"), [
    ("zh", "zh"), ("zh-CN", "zh"), ("zh_Hans", "zh"), (" EN ", "en"), ("en-US", "en"),
])
def test_a_language_as_a_setting_or_a_browser_names_it(given: str, language: str) -> None:
    assert language_of(given) == language


@pytest.mark.parametrize("given", ["", "fr", "chinese", "e"])
def test_a_language_the_glossary_does_not_have_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="not a language"):
        language_of(given)
