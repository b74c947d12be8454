"""What dispatch's timeline entries say (TimelineEntry.detail), by code, in English and
Chinese (zh-CN): the engine writes each entry's English `detail` from this table with its
`detail_code` and `detail_args` beside it, and the command room's console says the same
code in its dispatcher's language.

A template's blanks are its entry's arguments: `{name}` the value as the engine gave it,
`{name:group}` the value's word in that group (the glossary's, shared/labels.py, or the
table's own WORDS; a list of codes as ", " joins them), `{name:time}` an instant (ISO 8601),
which the console shows as it shows its other times. The English says exactly what the
engine's entries said before the codes came (the API's readers, the archive and the
engine's own checks compare it); the Chinese may name more of the arguments.
"""

from __future__ import annotations

import re
from typing import TypedDict, cast

from shared.labels import LANGUAGES, Group, Language, label

# what the timeline's sentences name beside the glossary's words: code -> (Chinese, English)
WORDS: dict[str, dict[str, tuple[str, str]]] = {
    # how a station's hand-over or follow-up order ended without its team taking it
    "refusal": {
        "declined": ("被拒", "declined"),
        "removed": ("已撤回（其警组已移出名册）", "withdrawn (its team was removed from the roster)"),
        "moved": ("已撤回（其警组已不属于该所）", "withdrawn (its team is no longer the station's)"),
        "taken_back": ("被撤回", "taken back"),
    },
    # a team's kind as a category's list names it (domain.sent_as)
    "force": {
        "police": ("公安", "police"),
        "police:patrol": ("巡逻警", "police patrol"),
        "police:station": ("派出所", "police station"),
        "security": ("保安", "security"),
        "volunteer": ("志愿者", "volunteer"),
    },
}

_ELSEWHERE = "the station's order goes to another of its teams"
_ELSEWHERE_ZH = "该所的指令改派该所其他警组"
_ZONES_DOWN = "the district's zones could not be loaded"
_ZONES_DOWN_ZH = "辖区划分无法加载"
_BY_REPORT = "a linked report ({report})"

# code -> {language: template}
TEMPLATES: dict[str, dict[Language, str]] = {
    "reported": {
        "en": "{category} {priority}",
        "zh": "{category:category}，{priority}{priority:priority}"},
    "reported_unknown_category": {
        "en": "{category} {priority}: not a category of dispatch's policy (intake's policy "
              "file differs?); sent to police as the nearest suitable, flagged for the "
              "command room",
        "zh": "{category:category}，{priority}{priority:priority}：调度策略中没有此警情类别"
              "（接警端策略文件不一致？）；已派最近的合适公安警组，并提请指挥室关注"},
    # a report that reached dispatch more than domain.LATE_REPORT after it was made
    "reported_late": {
        "en": "reported at {reported_at:time}, {minutes} min before it reached dispatch: "
              "the scene may have changed since",
        "zh": "该警情上报于{reported_at:time}，{minutes}分钟后才送达调度：现场情况可能已有变化"},
    "duplicate": {
        "en": "duplicate report of {parent}",
        "zh": "{parent}的重复上报"},
    "duplicate_not_known": {
        "en": "duplicate report of {parent} (not known to dispatch yet: judged again in "
              "{seconds} s)",
        "zh": "{parent}的重复上报（调度尚未收到该警情：{seconds}秒后重新研判）"},
    "duplicate_of_ended": {
        "en": "reported as a duplicate of {parent}, which had ended ({status}): dispatched "
              "as an incident of its own",
        "zh": "作为{parent}的重复上报，但该警情已结束（{status:incident_status}）：作为独立警情派警"},
    "duplicate_never_received": {
        "en": "reported as a duplicate of {parent}, which dispatch never received ({seconds} s "
              "on; its report lost?): dispatched as an incident of its own, flagged for the "
              "command room",
        "zh": "作为{parent}的重复上报，但{seconds}秒后调度仍未收到该警情（其上报丢失？）："
              "作为独立警情派警，并提请指挥室关注"},
    "report_linked": {
        "en": "another report linked: {report}",
        "zh": "又一起上报作为重复上报并入：{report}"},
    # a reporting system's follow-up of its own report (intake's follow-ups route)
    "follow_up": {
        "en": "follow-up of {parent}",
        "zh": "{parent}的后续上报（补充警情）"},
    "follow_up_linked": {
        "en": "a follow-up from its reporting system: {report}",
        "zh": "报警系统就本警情发来后续上报（补充警情）：{report}"},
    "follow_up_of_ended": {
        "en": "a follow-up of {parent}, which had ended ({status}): dispatched as an "
              "incident of its own",
        "zh": "{parent}的后续上报，但该警情已结束（{status:incident_status}）：作为独立警情派警"},
    # a reporting system's request to cancel its report (intake's cancel-requests route):
    # its words are the entry's note, the command room's
    "cancel_requested": {
        "en": "its reporting system asks to cancel it: the command room decides (close it, "
              "or answer with a remark to keep it open)",
        "zh": "报警系统请求撤销本警情：由指挥室决定（结案，或添加备注以继续处置）"},
    "cancel_requested_linked": {
        "en": "the reporting system of linked report {report} asks to cancel it: the command "
              "room decides (close it, or answer with a remark to keep it open)",
        "zh": "重复上报{report}的报警系统请求撤销：由指挥室决定（结案，或添加备注以继续处置）"},
    "cancel_requested_ended": {
        "en": "its reporting system asked to cancel it after it had ended: nothing to do",
        "zh": "警情结束后报警系统请求撤销：无需处置"},
    "not_a_duplicate": {
        "en": "not a duplicate of {parent}: unlinked by {by}",
        "zh": "非{parent}的重复上报：{by}已解除合并"},
    "report_not_a_duplicate": {
        "en": "report {report} is not a duplicate of this incident: unlinked by {by}",
        "zh": "上报{report}不是本警情的重复上报：{by}已解除合并"},
    "report_not_handled": {
        "en": "its report kept failing and is in the dead letters: no team is being sought. "
              "Assign one by hand, or have an administrator replay the report once fixed",
        "zh": "该警情上报处理多次失败，已转入死信：系统不会自动派警。请人工指派警组，"
              "或在故障修复后由管理员重放该上报"},
    "report_not_handled_sent_on": {
        "en": "its report kept failing and is in the dead letters; the same event went out as "
              "{onward}, which has its team: do not send a second one. An administrator "
              "replays the report once fixed, and it joins {onward}",
        "zh": "该警情上报处理多次失败，已转入死信；同一事件已作为{onward}派出并有警组处置，"
              "请勿重复派警。故障修复后由管理员重放该上报，即并入{onward}"},
    "report_not_handled_link": {
        "en": "its report kept failing and is in the dead letters before dispatch judged its "
              "link to {parent}: had {parent} ended, this is of something still going on, and "
              "no team is being sought. Check {parent}; assign a team by hand, close it if it "
              "is of {parent}, or have an administrator replay the report once fixed (it joins "
              "{parent}, or goes out as an incident of its own)",
        "zh": "该上报处理多次失败，已转入死信，调度尚未研判其与{parent}的合并：如{parent}"
              "已结束，本上报所报为仍在发生的警情，系统不会为其派警。请核查{parent}；可人工"
              "指派警组，如确属{parent}可将其结案，或在故障修复后由管理员重放该上报（即并入{parent}，"
              "或作为独立警情派警）"},
    "no_team": {
        "en": "no suitable team available; waiting",
        "zh": "暂无合适警组，等待派警"},
    # waiting after teams turned it down: never offered to them again (flagged turned_down)
    "no_team_turned_down": {
        "en": "no other suitable team available: {teams} declined it or timed out, and "
              "dispatch never offers it to them again; waiting for a freed team, or for the "
              "command room to send one by hand",
        "zh": "暂无其他合适警组：{teams}已拒单或超时未接，系统不再向其派单；等待空闲警组，"
              "或由指挥室手动派警"},
    "no_team_in_reach": {
        "en": "no team of the district is known within {km} km of the place: is the "
              "location right? waiting",
        "zh": "本辖区没有警组的已知位置在现场{km}公里内：地点是否有误？等待派警"},
    "offer": {
        "en": "{kind} order to {team} ({agency_kind})",
        "zh": "向{team}（{agency_kind:agency_kind}）下达{kind:order_kind}指令"},
    "offer_eta": {
        "en": "{kind} order to {team} ({agency_kind}), ETA {minutes} min",
        "zh": "向{team}（{agency_kind:agency_kind}）下达{kind:order_kind}指令，"
              "预计{minutes}分钟到达"},
    "received": {
        "en": "received on a device ({channel})",
        "zh": "警组终端已收到（{channel}）"},
    "routing_timeout": {
        "en": "no acknowledgement by {ack_by:time} (routing timeout)",
        "zh": "{ack_by:time}前未接单（警情分流超时）"},
    "answer_read_after_timeout": {
        "en": "{team} answered {response} at {at:time}, by the deadline ({ack_by:time}), but "
              "dispatch read the answer only after it had timed the order out: the order "
              "stays withdrawn; not counted as the team's routing timeout",
        "zh": "{team}已于{at:time}答复“{response:response}”，未超过接单时限（{ack_by:time}），"
              "但调度读到该答复时已按超时撤回指令：指令仍撤回，不计为该警组的分流超时"},
    "assigned_by_hand": {
        "en": "assigned by the command room",
        "zh": "指挥室人工派警"},
    "taken_back": {
        "en": "taken back by {by}",
        "zh": "{by}撤回指令"},
    # an order withdrawn as what it was for ended without it (Dispatcher._withdraw): its
    # team stood down, the phones told not to go
    "stood_down_resolved": {
        "en": "stood down: the incident was resolved by {team}",
        "zh": "收队：警情已由{team}处置完毕"},
    "stood_down_handed_over": {
        "en": "stood down: the incident was handed over to the station by {team}",
        "zh": "收队：{team}已将警情移交派出所"},
    # a P1's resolution by a team that is not police, with police orders live
    # (Dispatcher._left_to_police): the team's order ends, the incident does not
    "resolved_left_to_police": {
        "en": "{team} answered resolved: the incident is a P1 and stays with the police "
              "({police}), whose answer ends it",
        "zh": "{team}报告已处置完毕：本警情为P1，仍由公安警组（{police}）处置，待其答复后结束"},
    # the same of a hand-over (the team's words on the note, and in the station's
    # instructions should the police hand it over)
    "handover_left_to_police": {
        "en": "{team} answered hand over: the incident is a P1 and stays with the police "
              "({police}), who resolve it or hand it over to the station",
        "zh": "{team}报告需移交派出所：本警情为P1，仍由公安警组（{police}）处置，"
              "由其决定就地处置或移交派出所"},
    "stood_down_closed": {
        "en": "stood down: the incident was closed by {by}",
        "zh": "收队：{by}已结案"},
    "stood_down_backed_order_ended": {
        "en": "stood down: {team}'s order it came to back ended ({state:order_state})",
        "zh": "收队：所增援的{team}的指令已结束（{state:order_state}）"},
    "team_now_volunteers": {
        "en": "{team} is now a team of {agency}, a volunteer agency: volunteers are not sent "
              "to an incident flagged {flags}: taken off",
        "zh": "{team}现属志愿者组织{agency}，警情已标记{flags:flag}，不派志愿者：已撤下"},
    "team_now_unlisted": {
        "en": "{team} is now a team of {agency} ({kind}), which {category} is not sent to: "
              "taken off",
        "zh": "{team}现属{agency}（{kind:force}），{category:category}警情不派此类队伍：已撤下"},
    "team_now_other_station": {
        "en": "{team} is now a team of {agency}: {category} goes to its zone's own station, "
              "{station}: taken off",
        "zh": "{team}现属{agency}：{category:category}警情只派属地派出所{station}：已撤下"},
    "zone_now_other_station": {
        "en": "zone {zone} is now a zone of {station}: {category} goes to its zone's own "
              "station: {team} of {agency} taken off",
        "zh": "辖区{zone}现归{station}管辖：{category:category}警情只派属地派出所："
              "{agency}的{team}已撤下"},
    "station_now_known": {
        "en": "the place's station is now known, {station} (zone {zone}): {category} goes to "
              "its zone's own station: {team} of {agency} taken off",
        "zh": "属地派出所现已明确为{station}（辖区{zone}）：{category:category}警情只派属地派出所："
              "{agency}的{team}已撤下"},
    "team_lacks_skills": {
        "en": "{team} no longer has {skills}, which {category} needs: taken off",
        "zh": "{team}已不具备{skills}技能，{category:category}警情需要此技能：已撤下"},
    "team_now_volunteers_alone": {
        "en": "{team} is now a team of {agency}, a volunteer agency: volunteers are never the "
              "only responders to a P1: an escort is sought",
        "zh": "{team}现属志愿者组织{agency}，一级警情不能仅由志愿者处置：另派公安或保安护送"},
    "team_no_longer_volunteers": {
        "en": "{team} is now a team of {agency} ({kind}): no longer counted as volunteers",
        "zh": "{team}现属{agency}（{kind:agency_kind}）：不再按志愿者计"},
    "volunteers_barred": {
        "en": "volunteers are not sent to an incident flagged {flags}: taken off",
        "zh": "警情已标记{flags:flag}，不派志愿者：已撤下"},
    "revised_priority": {
        "en": "priority {old} → {new} by {by}",
        "zh": "等级 {old}{old:priority} → {new}{new:priority}（{by}更正）"},
    "revised_flags": {
        "en": "flags added: {flags} by {by}",
        "zh": "新增标记：{flags:flag}（{by}更正）"},
    "revised_priority_flags": {
        "en": "priority {old} → {new}; flags added: {flags} by {by}",
        "zh": "等级 {old}{old:priority} → {new}{new:priority}；新增标记：{flags:flag}（{by}更正）"},
    "revised_priority_by_report": {
        "en": "priority {old} → {new} by " + _BY_REPORT,
        "zh": "等级 {old}{old:priority} → {new}{new:priority}（据并入的上报{report}更正）"},
    "revised_flags_by_report": {
        "en": "flags added: {flags} by " + _BY_REPORT,
        "zh": "新增标记：{flags:flag}（据并入的上报{report}更正）"},
    "revised_priority_flags_by_report": {
        "en": "priority {old} → {new}; flags added: {flags} by " + _BY_REPORT,
        "zh": "等级 {old}{old:priority} → {new}{new:priority}；新增标记：{flags:flag}"
              "（据并入的上报{report}更正）"},
    # a follow-up's words added to the incident's description (its police teams told)
    "revised_description_by_report": {
        "en": "the caller's words added by " + _BY_REPORT,
        "zh": "补充警情描述（据并入的上报{report}）"},
    "revised_nothing": {
        "en": "nothing to change (already {priority}) by {by}",
        "zh": "无需更正（已是{priority}{priority:priority}）：{by}"},
    "revised_nothing_flagged": {
        "en": "nothing to change (already {priority}, flagged {flags}) by {by}",
        "zh": "无需更正（已是{priority}{priority:priority}，已标记{flags:flag}）：{by}"},
    "attached": {
        "en": "attached by {by}",
        "zh": "{by}添加"},
    "remark": {
        "en": "remark by {by}",
        "zh": "{by}备注"},
    "remark_keeps_open": {
        "en": "remark by {by}: kept open, its reporting system's request to cancel answered",
        "zh": "{by}备注：继续处置，已答复报警系统的撤销请求"},
    "closed": {
        "en": "closed by {by}",
        "zh": "{by}结案"},
    "reinforcement_for": {
        "en": "requested by {team}",
        "zh": "应{team}请求"},
    "reinforcement_unavailable": {
        "en": "reinforcement requested; no suitable team available: looked for again every "
              "{seconds} s while {team} is on the incident",
        "zh": "请求增援，暂无合适警组：{team}在现场期间每{seconds}秒重新查找"},
    "handed_over": {
        "en": "handed over to station {station}",
        "zh": "移交派出所{station}"},
    "handed_over_by": {
        "en": "handed over to station {station}, assigned by {by}",
        "zh": "移交派出所{station}（{by}指派）"},
    "station_not_known": {
        "en": f"the owning police station is not known yet ({_ZONES_DOWN}): the hand-over "
              "goes to it once they are",
        "zh": f"属地派出所尚不明确（{_ZONES_DOWN_ZH}）：明确后即移交该所"},
    "station_unstaffed": {
        "en": "no on-shift team of the owning police station found; tried again every "
              "{minutes} min until one is",
        "zh": "属地派出所无在岗警组；每{minutes}分钟重试，直到有警组在岗"},
    "station_gone": {
        "en": "no police station owns the place now (its zone was removed or re-cut, or none "
              "holds it); the hand-over is tried again every {minutes} min until one does and "
              "has a team on shift",
        "zh": "该地点目前无属地派出所（其辖区已删除或调整，或不在任何辖区内）；每{minutes}分钟"
              "重试移交，直到有属地派出所且有警组在岗"},
    # A hand-over no station owned the place of, flagged and never tried again: the
    # engine writes station_gone since (it is tried again); kept for the entries stored.
    "station_none": {
        "en": "no on-shift team of the owning police station found (no station owns the "
              "place)",
        "zh": "找不到属地派出所的在岗警组（该地点不属于任何派出所辖区）"},
    "handover_refused": {
        "en": "the hand-over was {refusal:refusal} and no other team of the station is on "
              "shift: tried again every {minutes} min until one takes it",
        "zh": "移交指令{refusal:refusal}，该所无其他在岗警组：每{minutes}分钟重试，直到有警组接手"},
    "station_team_removed": {
        "en": f"{{team}} was removed from the roster: {_ELSEWHERE}",
        "zh": f"{{team}}已移出名册：{_ELSEWHERE_ZH}"},
    "station_team_moved": {
        "en": f"{{team}} is no longer a team of station {{station}} (now of {{agency}}): "
              f"{_ELSEWHERE}",
        "zh": f"{{team}}已不是派出所{{station}}的警组（现属{{agency}}）：{_ELSEWHERE_ZH}"},
    "station_team_not_police": {
        "en": f"{{team}} is no longer a team of station {{station}} (its agency is no longer "
              f"a police station): {_ELSEWHERE}",
        "zh": f"{{team}}已不是派出所{{station}}的警组（其单位已不是派出所）：{_ELSEWHERE_ZH}"},
    "awaiting_station": {
        "en": "waiting for the owning police station: the district's zones are not available "
              "yet ({category} goes to its zone's station only)",
        "zh": "等待明确属地派出所：辖区划分暂不可用（{category:category}只派属地派出所）"},
    "place_known": {
        "en": "place known: zone {zone}, owned by station {station}",
        "zh": "地点已明确：辖区{zone}，属派出所{station}"},
    "place_outside_zones": {
        "en": "place known: outside every zone: no station owns it",
        "zh": "地点已明确：不在任何辖区内，无属地派出所"},
    "station_still_unknown": {
        "en": f"the owning police station is still unknown after {{minutes}} min ({_ZONES_DOWN}): "
              "any station's team may go",
        "zh": f"{{minutes}}分钟后属地派出所仍不明确（{_ZONES_DOWN_ZH}）：任何派出所的警组均可出警"},
    "zone_unknown": {
        "en": f"zone unknown: {_ZONES_DOWN} for {{minutes}} min",
        "zh": "辖区不明：辖区划分已{minutes}分钟无法加载"},
    "agreement_failed": {
        "en": "the agreement does not hold after {visits} visits: the command room decides "
              "what follows",
        "zh": "回访{visits}次，调解协议仍未履行：由指挥室决定后续处置"},
    "agreement_revisit": {
        "en": "the agreement does not hold: visit {visit} by {date} ({timezone})",
        "zh": "调解协议未履行：{date}（{timezone}）前第{visit}次回访"},
    "warning_failed": {
        "en": "those warned of the fraud are still at risk after {visits} visits: the command "
              "room decides what follows",
        "zh": "回访{visits}次，防骗提醒对象仍有受骗风险：由指挥室决定后续处置"},
    "warning_revisit": {
        "en": "those warned of the fraud are still at risk: visit {visit} by {date} ({timezone})",
        "zh": "防骗提醒对象仍有受骗风险：{date}（{timezone}）前第{visit}次回访"},
    "followup_planned": {
        "en": "follow-up visit due by {date} ({timezone}; station {station})",
        "zh": "{date}（{timezone}）前由派出所{station}回访"},
    "followup_planned_no_station": {
        "en": "follow-up visit due by {date} ({timezone}); no police station is known to own "
              "the place now: the visit goes to the one owning it then",
        "zh": "{date}（{timezone}）前回访；目前不明该地点的属地派出所：届时由属地派出所回访"},
    "followup_unowned": {
        "en": "no follow-up visit: no police station owns the place",
        "zh": "不安排回访：该地点无属地派出所"},
    "followup_unstaffed": {
        "en": "follow-up visit due: no team of the station on shift; ordered again in {span} "
              "until one is",
        "zh": "回访到期：该所无在岗警组；{hours}小时后再次下达，直到有警组在岗"},
    "followup_station_not_known": {
        "en": f"follow-up visit due: the owning police station is not known yet ({_ZONES_DOWN}); "
              "ordered again in {span} until one is",
        "zh": f"回访到期：属地派出所尚不明确（{_ZONES_DOWN_ZH}）；{{hours}}小时后再次下达，直到明确"},
    "followup_station_gone": {
        "en": "follow-up visit due: no police station owns the place any more (its zone was "
              "removed or re-cut); ordered again in {span} until one does, or the case is closed",
        "zh": "回访到期：该地点已无属地派出所（其辖区已删除或调整）；{hours}小时后再次下达，直到有属地"
              "派出所或结案"},
    "followup_ordered": {
        "en": "follow-up visit ordered",
        "zh": "已下达回访指令"},
    "followup_unanswered": {
        "en": "{team} has not answered the follow-up visit order within {span}: flagged until "
              "a team takes it",
        "zh": "{team}在{hours}小时内未回复回访指令：已标记，直到有警组接单"},
    "followup_no_verdict": {
        "en": "{team} took the follow-up visit order but has given no verdict (holds, or does "
              "not) within {hours} h: flagged until it does",
        "zh": "{team}已接回访指令，但{hours}小时内未报告回访结果（协议是否履行）：已标记，直到报告"},
    "followup_refused": {
        "en": "follow-up visit {refusal:refusal}; no other team of the station on shift: "
              "ordered again in {span}",
        "zh": "回访指令{refusal:refusal}，该所无其他在岗警组：{hours}小时后再次下达"},
    "off_shift": {
        "en": "{team} went off shift while {state:order_state} on this order: the command "
              "room decides",
        "zh": "{team}在本指令{state:order_state}时下班：由指挥室决定"},
    "off_roster": {
        "en": "{team} was removed from the roster while {state:order_state} on this order: "
              "the command room decides",
        "zh": "{team}在本指令{state:order_state}时被移出名册：由指挥室决定"},
}

_BLANK = re.compile(r"\{(\w+)(?::(\w+))?\}")
_LIST = {"zh": "、", "en": ", "}


class Detail(TypedDict):
    """A timeline entry's detail: its English, its code and what it fills in."""

    detail: str
    detail_code: str
    detail_args: dict[str, str]


def word(group: str, code: str, language: Language) -> str:
    """`code` of `group` in `language`: the table's WORDS, else the glossary's."""
    if group in WORDS:
        words = WORDS[group].get(code)
        return words[LANGUAGES.index(language)] if words else code
    return label(cast(Group, group), code, language)


def say(code: str, args: dict[str, str], language: Language) -> str:
    """The entry `code` with `args` in `language` (a time as the engine wrote it)."""

    def blank(found: re.Match[str]) -> str:
        value, group = args[found.group(1)], found.group(2)
        if group is None or group == "time":
            return value
        return _LIST[language].join(word(group, item, language) for item in value.split(", "))

    return _BLANK.sub(blank, TEMPLATES[code][language])


def entry_detail(code: str, **args: object) -> Detail:
    """What a TimelineEntry says (`TimelineEntry(kind=..., **entry_detail(...))`): the
    English of `code` filled with `args` (each as text), the code and the arguments."""
    values = {name: str(value) for name, value in args.items()}
    return {"detail": say(code, values, "en"), "detail_code": code, "detail_args": values}


def script_words() -> dict[Language, dict[str, object]]:
    """The templates and WORDS per language, for the console's script (its STRINGS)."""
    at = {language: LANGUAGES.index(language) for language in LANGUAGES}
    return {language: {"timeline": {code: said[language] for code, said in TEMPLATES.items()},
                       **{group: {code: words[at[language]] for code, words in codes.items()}
                          for group, codes in WORDS.items()}}
            for language in LANGUAGES}

