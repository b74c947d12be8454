"""The words members and the command room read for the system's codes (a category, a
priority, an answer, a status), in Chinese (zh-CN, the default) and English.

One glossary for every page and text that shows them (notify's member page and SMS, the
command room's console): a code it does not have (a category a deployment's own policy
file adds) is shown as the code itself, never as nothing.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Literal, cast

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
DEFAULT_LANGUAGE: Language = "zh"

# code -> (Chinese, English). The Chinese is a police station's own word for it (警情类别,
# 派单, 接单, 增援, 移交, 回访); the English is what the pages and texts said before.
_CATEGORIES = {
    "violence": ("打架斗殴", "violence"),
    "theft_in_progress": ("盗窃现行", "theft in progress"),
    "medical": ("急救求助", "medical"),
    "fire": ("火警", "fire"),
    "suspicious": ("可疑情况", "suspicious"),
    "dispute": ("纠纷", "dispute"),
    "lost_person": ("人员走失", "lost person"),
    "traffic": ("交通警情", "traffic"),
    "help_request": ("求助", "help request"),
    "ebike_theft": ("电动车被盗", "e-bike theft"),
    "noise": ("噪音扰民", "noise"),
    "hazard_report": ("隐患上报", "hazard report"),
    "fraud_warning": ("反诈预警", "fraud warning"),
}
_PRIORITIES = {
    "P1": ("特急", "emergency"),
    "P2": ("紧急", "urgent"),
    "P3": ("较急", "prompt"),
    "P4": ("一般", "routine"),
}
# What a member presses (and the command room reads as the team's answer).
_RESPONSES = {
    "received": ("已收到", "Received"),
    "acknowledged": ("接单", "Acknowledge"),
    "declined": ("拒单", "Decline"),
    "en_route": ("出发", "En route"),
    "on_scene": ("到场", "On scene"),
    "resolved": ("已处置", "Resolved"),
    "handover": ("移交派出所", "Hand over"),
    "reinforce": ("请求增援", "Need help"),
}
# Where an order stands, as its card says.
_ORDER_STATES = {
    "issued": ("新指令", "new"),
    "acknowledged": ("已接单", "acknowledged"),
    "en_route": ("在途", "en route"),
    "on_scene": ("已到场", "on scene"),
    "resolved": ("已处置", "resolved"),
    "handover": ("已移交", "handed over"),
    "declined": ("已拒单", "declined"),
    "withdrawn": ("已撤回", "withdrawn"),
    # as dispatch has them (the command room's view of an incident's orders)
    "offered": ("已派单", "offered"),
    "timed_out": ("超时未接", "timed out"),
}
_ORDER_KINDS = {
    "dispatch": ("派警", "dispatch"),
    "handover": ("移交", "handover"),
    "followup": ("回访", "follow-up"),
    "reinforcement": ("增援", "reinforcement"),
    "manual": ("人工派单", "manual"),
}
# A team's status (volunteers' and dispatch's unit states).
_TEAM_STATUSES = {
    "off_duty": ("未在岗", "off duty"),
    "available": ("待命", "available"),
    "busy": ("忙碌", "busy"),
    "dispatched": ("已派单", "dispatched"),
    "en_route": ("在途", "en route"),
    "on_scene": ("在现场", "on scene"),
}
_INCIDENT_STATUSES = {
    "reported": ("已上报", "reported"),
    "dispatching": ("派警中", "dispatching"),
    "assigned": ("已派警", "assigned"),
    "acknowledged": ("已接单", "acknowledged"),
    "en_route": ("出警途中", "en route"),
    "on_scene": ("已到场", "on scene"),
    "resolved": ("已处置", "resolved"),
    "handed_over": ("已移交", "handed over"),
    "closed": ("已结案", "closed"),
    "linked": ("已合并", "linked"),
    "unassigned": ("待派警", "unassigned"),
}
# The flags that make an order urgent (those an SMS names); a calling system's own flags
# are its free text and shown as they came.
_FLAGS = {
    "weapon": ("持械", "weapon"),
    "injury": ("有人受伤", "injury"),
    "in_progress": ("正在发生", "in progress"),
}

# What happened, as an incident's timeline names it (dispatch's TimelineEntry.kind); the
# entry's `detail` is said by its `detail_code` (dispatch's own table of its texts).
_TIMELINE_KINDS = {
    "reported": ("上报", "reported"),
    "offer": ("派单", "offered to a team"),
    "receipt": ("手机已收到", "received on a phone"),
    "response": ("警组回复", "team answered"),
    "timeout": ("超时未接单（分流超时）", "no answer in time (routing timeout)"),
    "handover": ("移交派出所", "handed over to the station"),
    "linked": ("作为重复上报合并", "linked as a duplicate report"),
    "unlinked": ("非重复上报：独立警情", "not a duplicate: its own incident"),
    "revised": ("更正", "revised"),
    "note": ("记录", "note"),
    "remark": ("指挥室备注", "command room's remark"),
    "cancel_request": ("报警系统请求撤销", "reporting system asks to cancel"),
    "evidence": ("添加证据", "evidence attached"),
    "withdrawn": ("撤回指令", "order taken back"),
    "manual_assign": ("人工派警", "assigned by hand"),
    "reinforcement": ("派出增援", "reinforcement sent"),
    "followup": ("回访", "follow-up visit"),
    "unassigned": ("无可派警组", "no team found"),
    "closed": ("结案", "closed"),
    "status": ("状态变更", "status changed"),
}
# Who a team is (a unit's agency kind, and a police team's role).
_AGENCY_KINDS = {
    "police": ("公安", "police"),
    "security": ("保安", "security"),
    "volunteer": ("志愿者", "volunteer"),
}
_AGENCY_ROLES = {
    "station": ("派出所", "station"),
    "patrol": ("巡逻", "patrol"),
}
_EVIDENCE_KINDS = {
    "video": ("视频", "video"),
    "photo": ("照片", "photo"),
    "audio": ("录音", "audio"),
    "document": ("文书", "document"),
}
# The command room's figures (the fields of dispatch's GET /v1/kpis), as its console names
# them.
_KPIS = {
    "incidents": ("警情数", "incidents"),
    "routing_timeouts": ("警情分流超时", "routing timeouts"),
    "declines": ("拒绝出警", "offers declined"),
    "time_to_assign_s": ("派警用时 p50 / p90（秒）", "assign p50 / p90 s"),
    # beside the time to assign, which counts only the incidents sent a team
    "never_assigned": ("未派警警情", "never assigned"),
    "assigned_after_deadline": ("超过接单时限才派警", "assigned after the deadline"),
    "time_to_acknowledge_s": ("接单用时 p50 / p90（秒）", "ack p50 / p90 s"),
    "time_to_scene_s": ("到场用时 p50 / p90（秒）", "on scene p50 / p90 s"),
    "resolved_on_site_share": ("现场处置率", "resolved on site"),
    "handed_over": ("移交派出所", "handed over"),
    "filings_overdue": ("受立案超期", "filings overdue"),
    "by_category": ("按类别", "by type"),
    # a visit's "holding": a dispute's agreement kept, or those warned of a fraud safe
    "followups": ("回访见效（调解协议履行、防骗对象未再受骗）",
                  "follow-ups: agreements holding, those warned of fraud safe"),
    "by_hour": ("最忙时段", "busiest hours"),
    "by_zone": ("最忙辖区", "busiest zones"),
}
# Why a volunteer's points changed (a ledger entry's reason; an adjustment has the
# coordinator's own words too, shown in their place).
_POINTS_REASONS = {
    "resolved_order": ("处置完成", "order resolved"),
    "hazard_report": ("隐患上报属实", "hazard report confirmed"),
    "patrol": ("巡逻时长", "patrol hours"),
    "missed_order": ("指令超时未接", "order missed"),
    "missed_order_reversed": ("已按时接单，超时扣分退回", "answered in time: order-missed points back"),
    "adjustment": ("人工奖惩", "coordinator's adjustment"),
}

GLOSSARY: dict[str, dict[str, tuple[str, str]]] = {
    "category": _CATEGORIES, "priority": _PRIORITIES, "response": _RESPONSES,
    "order_state": _ORDER_STATES, "order_kind": _ORDER_KINDS, "team_status": _TEAM_STATUSES,
    "incident_status": _INCIDENT_STATUSES, "flag": _FLAGS, "points_reason": _POINTS_REASONS,
    "timeline_kind": _TIMELINE_KINDS, "agency_kind": _AGENCY_KINDS, "agency_role": _AGENCY_ROLES,
    "evidence_kind": _EVIDENCE_KINDS, "kpi": _KPIS,
}
Group = Literal["category", "priority", "response", "order_state", "order_kind",
                "team_status", "incident_status", "flag", "points_reason", "timeline_kind",
                "agency_kind", "agency_role", "evidence_kind", "kpi"]


def label(group: Group, code: str, language: Language = DEFAULT_LANGUAGE) -> str:
    """What a reader of `language` sees for `code` of `group`; the code itself where the
    glossary has no word for it (a deployment's own category)."""
    words = GLOSSARY[group].get(code)
    return words[LANGUAGES.index(language)] if words else code


def glossary(language: Language) -> dict[str, dict[str, str]]:
    """The whole glossary in one language, group -> code -> word: what a page's script
    carries (as JSON) to name what its server sends."""
    at = LANGUAGES.index(language)
    return {group: {code: words[at] for code, words in codes.items()}
            for group, codes in GLOSSARY.items()}


def language_of(value: str) -> Language:
    """A language as a setting or a browser gives it (`zh`, `zh-CN`, `en-US`, `EN`): one of
    LANGUAGES; ValueError for another."""
    base = value.strip().lower().replace("_", "-").split("-", 1)[0]
    for language in LANGUAGES:
        if base == language:
            return language
    raise ValueError(f"{value!r} is not a language of the glossary ({', '.join(LANGUAGES)})")


def script_strings(text: Mapping[Language, Mapping[str, str]],
                   more: Mapping[Language, Mapping[str, object]] | None = None) -> str:
    """A page's own `text` and the glossary, per language, as a JavaScript literal for its
    script (and `more` of its own beside them, by name): the script is hashed for the
    page's Content-Security-Policy as it is, so it is built once, at import."""
    table = {language: {"text": dict(text[language]), **glossary(language),
                        **(more[language] if more else {})}
             for language in LANGUAGES}
    # "</" would end the inline script early
    return json.dumps(table, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")


def page_in_words(template: str, text: Mapping[Language, Mapping[str, str]],
                  more: Mapping[Language, Mapping[str, object]] | None = None) -> str:
    """A page in Chinese where its markup has words (`{{key}}` of the page's `text`,
    `{{group:code}}` of the glossary: what shows before its script runs), and its script's
    table of both languages (with `more`) in place of `__STRINGS__`."""
    zh = text[DEFAULT_LANGUAGE]

    def word(found: re.Match[str]) -> str:
        key, code = found.group(1), found.group(2)
        return html.escape(label(cast(Group, key), code) if code else zh[key])

    page = re.sub(r"\{\{(\w+)(?::(\w+))?\}\}", word, template)
    return page.replace("__STRINGS__", script_strings(text, more), 1)
