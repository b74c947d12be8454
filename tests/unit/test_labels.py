"""The glossary of what members and the command room read: every code the system sends them
has its Chinese and its English word; a code it does not know is shown as itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from services.notify.domain.responses import OrderState
from services.volunteers.domain.points import Reason
from shared.events import (
    AgencyKind,
    AgencyRole,
    EvidenceKind,
    IncidentStatus,
    OrderKind,
    Priority,
    Response,
    UnitState,
)
from shared.labels import GLOSSARY, LANGUAGES, glossary, label, language_of
from shared.policy import DEFAULT_POLICY, load_policy

HAN = re.compile(r"[\u4e00-\u9fff]")
DISPATCH = Path(__file__).resolve().parents[2] / "services" / "dispatch"


def timeline_kinds() -> set[str]:
    """Every kind of timeline entry dispatch writes (`TimelineEntry(kind="...")`)."""
    kinds: set[str] = set()
    for path in DISPATCH.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "TimelineEntry":
                kinds |= {k.value.value for k in node.keywords
                          if k.arg == "kind" and isinstance(k.value, ast.Constant)}
    return kinds


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
    ("timeline_kind", tuple(timeline_kinds())),
    ("agency_kind", get_args(AgencyKind)),
    ("agency_role", get_args(AgencyRole)),
    ("evidence_kind", get_args(EvidenceKind)),
])
def test_every_code_a_member_or_the_command_room_reads_has_both_words(
        group: str, codes: tuple[str, ...]) -> None:
    assert set(codes) <= set(GLOSSARY[group]), sorted(set(codes) - set(GLOSSARY[group]))
    for code in codes:
        zh, en = GLOSSARY[group][code]
        assert HAN.search(zh) and en.strip() and not HAN.search(en), (code, zh, en)


def test_dispatch_writes_the_timeline_kinds_the_test_reads() -> None:
    # the scan finds what it is meant to (were it to find nothing, the test above would pass)
    assert {"reported", "offer", "response", "manual_assign", "closed"} <= timeline_kinds()


def test_every_word_of_the_glossary_is_in_chinese_and_in_english() -> None:
    for group, codes in GLOSSARY.items():
        for code, (zh, en) in codes.items():
            assert HAN.search(zh) and en.strip() and not HAN.search(en), (group, code, zh, en)


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


def test_the_follow_ups_kpi_names_what_a_visit_of_each_category_finds() -> None:
    # the KPI counts a fraud warning's visits (policy followup_resolved_days) as a dispute's:
    # "holding" is an agreement kept, or those warned of the fraud safe
    assert "fraud_warning" in load_policy().followup_resolved_days
    zh, en = (label("kpi", "followups", language) for language in ("zh", "en"))
    assert "协议" in zh and "骗" in zh, zh
    assert "agreement" in en and "warn" in en, en
