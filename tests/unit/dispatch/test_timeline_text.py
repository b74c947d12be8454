"""The timeline's texts: each code's English is what the engine's f-string wrote before the
codes came (its readers and its own checks compare it), and its Chinese names the same."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from services.dispatch import domain
from services.dispatch.timeline_text import TEMPLATES, WORDS, entry_detail, say
from shared.labels import GLOSSARY, label

HAN = re.compile(r"[\u4e00-\u9fff]")
BY = "dispatcher:wang"
ZONES = "the district's zones could not be loaded"

# code -> (sample arguments, the engine's old f-string over them)
OLD: dict[str, tuple[dict[str, str], Callable[..., str]]] = {
    "reported": ({"category": "violence", "priority": "P1"},
                 lambda category, priority: f"{category} {priority}"),
    "reported_unknown_category": (
        {"category": "gas_leak", "priority": "P2"},
        lambda category, priority: (
            f"{category} {priority}: not a category of dispatch's policy "
            "(intake's policy file differs?); sent to police as the nearest suitable, "
            "flagged for the command room")),
    "reported_late": (
        {"minutes": "50", "reported_at": "2026-12-05T20:10:00+08:00"},
        lambda minutes, reported_at: f"reported at {reported_at}, {minutes} min before it "
        "reached dispatch: the scene may have changed since"),
    "duplicate": ({"parent": "inc_a"}, lambda parent: f"duplicate report of {parent}"),
    "duplicate_not_known": (
        {"parent": "inc_a", "seconds": "30"},
        lambda parent, seconds: f"duplicate report of {parent}" + (
            f" (not known to dispatch yet: judged again in {seconds} s)")),
    "duplicate_of_ended": (
        {"parent": "inc_a", "status": "handed_over"},
        lambda parent, status: f"reported as a duplicate of {parent}, which had "
        f"ended ({status}): dispatched as an incident of its own"),
    "duplicate_never_received": (
        {"parent": "inc_a", "seconds": "30"},
        lambda parent, seconds: f"reported as a duplicate of {parent}, which dispatch never "
        f"received ({seconds} s on; its report lost?): dispatched "
        f"as an incident of its own, flagged for the command room"),
    "report_linked": ({"report": "inc_b"},
                      lambda report: f"another report linked: {report}"),
    # new with the codes: no f-string wrote them before
    "follow_up": ({"parent": "inc_a"}, lambda parent: f"follow-up of {parent}"),
    "follow_up_linked": ({"report": "inc_b"},
                         lambda report: f"a follow-up from its reporting system: {report}"),
    "revised_description_by_report": (
        {"report": "inc_b"}, lambda report: f"the caller's words added by a linked report ({report})"),
    "follow_up_of_ended": (
        {"parent": "inc_a", "status": "closed"},
        lambda parent, status: f"a follow-up of {parent}, which had ended ({status}): "
        "dispatched as an incident of its own"),
    "not_a_duplicate": ({"parent": "inc_a", "by": BY},
                        lambda parent, by: f"not a duplicate of {parent}: unlinked by {by}"),
    "report_not_a_duplicate": (
        {"report": "inc_b", "by": BY},
        lambda report, by: f"report {report} is not a duplicate of this incident: unlinked by {by}"),
    "report_not_handled": ({}, lambda: "its report kept failing and is in the dead letters: "
                           "no team is being sought. Assign one by hand, or have an "
                           "administrator replay the report once fixed"),
    "report_not_handled_sent_on": (
        {"onward": "inc_b"},
        lambda onward: f"its report kept failing and is in the dead letters; the same event "
        f"went out as {onward}, which has its team: do not send a second one. An "
        f"administrator replays the report once fixed, and it joins {onward}"),
    "report_not_handled_link": (
        {"parent": "inc_a"},
        lambda parent: f"its report kept failing and is in the dead letters before dispatch "
        f"judged its link to {parent}: had {parent} ended, this is of something still going "
        f"on, and no team is being sought. Check {parent}; assign a team by hand, close it if "
        f"it is of {parent}, or have an administrator replay the report once fixed (it joins "
        f"{parent}, or goes out as an incident of its own)"),
    "no_team": ({}, lambda: "no suitable team available; waiting"),
    "no_team_in_reach": ({"km": "10"}, lambda km: f"no team of the district is known within "
                         f"{km} km of the place: is the location right? waiting"),
    # no new sentence of the engine's f-strings: written since the codes came
    "no_team_turned_down": (
        {"teams": "Team 7, Guard 2"},
        lambda teams: f"no other suitable team available: {teams} declined it or timed out, "
        "and dispatch never offers it to them again; waiting for a freed team, or for the "
        "command room to send one by hand"),
    "offer": ({"kind": "dispatch", "team": "Team 7", "agency_kind": "police"},
              lambda kind, team, agency_kind: f"{kind} order to {team} ({agency_kind})"),
    "offer_eta": ({"kind": "reinforcement", "team": "Team 7", "agency_kind": "volunteer",
                   "minutes": "3.5"},
                  lambda kind, team, agency_kind, minutes:
                  f"{kind} order to {team} ({agency_kind})" + f", ETA {minutes} min"),
    "received": ({"channel": "sms"}, lambda channel: f"received on a device ({channel})"),
    "routing_timeout": ({"ack_by": "2026-12-06T03:04:05+00:00"},
                        lambda ack_by: f"no acknowledgement by {ack_by} (routing timeout)"),
    "answer_read_after_timeout": (
        {"team": "Team 7", "response": "acknowledged", "at": "2026-12-06T03:04:01+00:00",
         "ack_by": "2026-12-06T03:04:05+00:00"},
        lambda team, response, at, ack_by: f"{team} answered {response} at {at}, by the "
        f"deadline ({ack_by}), but dispatch read the answer only after it had timed the "
        f"order out: the order stays withdrawn; not counted as the team's routing timeout"),
    "assigned_by_hand": ({}, lambda: "assigned by the command room"),
    "taken_back": ({"by": BY}, lambda by: f"taken back by {by}"),
    "volunteers_barred": ({"flags": "weapon, in_progress"},
                          lambda flags: "volunteers are not sent to an "
                          f"incident flagged {flags}: taken off"),
    # a code added with its entry (no older sentence): its English as the test of the move wrote it
    # new with their codes: the sentence they were written with
    "stood_down_resolved": ({"team": "Team 7"},
                            lambda team: f"stood down: the incident was resolved by {team}"),
    "stood_down_handed_over": (
        {"team": "Team 7"},
        lambda team: f"stood down: the incident was handed over to the station by {team}"),
    "resolved_left_to_police": (
        {"team": "Team 7", "police": "Car 1, Car 2"},
        lambda team, police: f"{team} answered resolved: the incident is a P1 and stays with "
        f"the police ({police}), whose answer ends it"),
    "handover_left_to_police": (
        {"team": "Team 7", "police": "Car 1, Car 2"},
        lambda team, police: f"{team} answered hand over: the incident is a P1 and stays with "
        f"the police ({police}), who resolve it or hand it over to the station"),
    "stood_down_closed": ({"by": BY}, lambda by: f"stood down: the incident was closed by {by}"),
    "stood_down_backed_order_ended": (
        {"team": "Team 7", "state": "handover"},
        lambda team, state: f"stood down: {team}'s order it came to back ended (handed over)"),
    "team_now_volunteers": ({"team": "Team 7", "agency": "ag-residents", "flags": "weapon"},
                            lambda team, agency, flags: f"{team} is now a team of {agency}, a "
                            "volunteer agency: volunteers are not sent to an incident flagged "
                            f"{flags}: taken off"),
    "team_now_unlisted": ({"team": "Team 7", "agency": "ag-guards", "kind": "security",
                           "category": "ebike_theft"},
                          lambda team, agency, kind, category: f"{team} is now a team of "
                          f"{agency} ({kind}), which {category} is not sent to: taken off"),
    "team_lacks_skills": ({"team": "Team 7", "skills": "first_aid", "category": "medical"},
                          lambda team, skills, category: f"{team} no longer has {skills}, "
                          f"which {category} needs: taken off"),
    "team_now_other_station": ({"team": "Team 7", "agency": "ps-2", "category": "fraud_warning",
                                "station": "ps-1"},
                               lambda team, agency, category, station: f"{team} is now a team "
                               f"of {agency}: {category} goes to its zone's own station, "
                               f"{station}: taken off"),
    "zone_now_other_station": ({"zone": "Nanhu 3", "station": "ps-2", "category": "fraud_warning",
                                "team": "Team 7", "agency": "ps-1"},
                               lambda zone, station, category, team, agency: f"zone {zone} is "
                               f"now a zone of {station}: {category} goes to its zone's own "
                               f"station: {team} of {agency} taken off"),
    "station_now_known": ({"station": "ps-1", "zone": "Nanhu 3", "category": "fraud_warning",
                           "team": "Team 7", "agency": "ps-2"},
                          lambda station, zone, category, team, agency: "the place's station "
                          f"is now known, {station} (zone {zone}): {category} goes to its "
                          f"zone's own station: {team} of {agency} taken off"),
    "team_now_volunteers_alone": ({"team": "Team 7", "agency": "ag-residents"},
                                  lambda team, agency: f"{team} is now a team of {agency}, a "
                                  "volunteer agency: volunteers are never the only responders "
                                  "to a P1: an escort is sought"),
    "team_no_longer_volunteers": ({"team": "Team 7", "agency": "ag-guards",
                                   "kind": "security"},
                                  lambda team, agency, kind: f"{team} is now a team of "
                                  f"{agency} ({kind}): no longer counted as volunteers"),
    "revised_priority": ({"old": "P3", "new": "P1", "by": BY},
                         lambda old, new, by: "; ".join([f"priority {old} → {new}"]) + f" by {by}"),
    "revised_flags": ({"flags": "weapon, injury", "by": BY},
                      lambda flags, by: "; ".join(["flags added: " + flags]) + f" by {by}"),
    "revised_priority_flags": (
        {"old": "P3", "new": "P1", "flags": "weapon", "by": BY},
        lambda old, new, flags, by: "; ".join([f"priority {old} → {new}", "flags added: " + flags])
        + f" by {by}"),
    "revised_priority_by_report": (
        {"old": "P3", "new": "P2", "report": "inc_b"},
        lambda old, new, report: f"priority {old} → {new}" + f" by a linked report ({report})"),
    "revised_flags_by_report": (
        {"flags": "injury", "report": "inc_b"},
        lambda flags, report: "flags added: " + flags + f" by a linked report ({report})"),
    "revised_priority_flags_by_report": (
        {"old": "P3", "new": "P1", "flags": "weapon", "report": "inc_b"},
        lambda old, new, flags, report: "; ".join([f"priority {old} → {new}",
                                                   "flags added: " + flags])
        + f" by a linked report ({report})"),
    "revised_nothing": ({"priority": "P1", "by": BY},
                        lambda priority, by: f"nothing to change (already {priority}) by {by}"),
    "revised_nothing_flagged": (
        {"priority": "P1", "flags": "weapon, injury", "by": BY},
        lambda priority, flags, by:
        f"nothing to change (already {priority + (', flagged ' + flags)}) by {by}"),
    "attached": ({"by": BY}, lambda by: f"attached by {by}"),
    "remark": ({"by": BY}, lambda by: f"remark by {by}"),
    "remark_keeps_open": ({"by": BY}, lambda by: f"remark by {by}: kept open, its reporting "
                          "system's request to cancel answered"),
    "cancel_requested": ({}, lambda: "its reporting system asks to cancel it: the command "
                         "room decides (close it, or answer with a remark to keep it open)"),
    "cancel_requested_linked": (
        {"report": "inc_b"},
        lambda report: f"the reporting system of linked report {report} asks to cancel it: the "
        "command room decides (close it, or answer with a remark to keep it open)"),
    "cancel_requested_ended": ({}, lambda: "its reporting system asked to cancel it after it "
                               "had ended: nothing to do"),
    "closed": ({"by": BY}, lambda by: f"closed by {by}"),
    "reinforcement_for": ({"team": "Team 7"}, lambda team: f"requested by {team}"),
    "reinforcement_unavailable": (
        {"seconds": "60", "team": "Team 7"},
        lambda seconds, team: "reinforcement requested; no suitable team available: looked "
        f"for again every {seconds} s while {team} is on the incident"),
    "handed_over": ({"station": "ps-1"}, lambda station: f"handed over to station {station}"),
    "handed_over_by": ({"station": "ps-1", "by": BY},
                       lambda station, by: f"handed over to station {station}, assigned by {by}"),
    "station_not_known": ({}, lambda: "the owning police station is not known yet (the "
                          "district's zones could not be loaded): the hand-over goes to it "
                          "once they are"),
    "station_unstaffed": ({"minutes": "15"},
                          lambda minutes: "no on-shift team of the owning police station "
                          f"found; tried again every {minutes} min until one is"),
    "station_gone": (
        {"minutes": "15"},
        lambda minutes: "no police station owns the place now (its zone was removed or re-cut, "
        f"or none holds it); the hand-over is tried again every {minutes} min until one does "
        "and has a team on shift"),
    "station_none": ({}, lambda: "no on-shift team of the owning police station found (no "
                     "station owns the place)"),
    "handover_refused": (
        {"refusal": "removed", "minutes": "15"},
        lambda refusal, minutes: "the hand-over was withdrawn (its team was removed from the "
        f"roster) and no other team of the station is on shift: tried again every {minutes} "
        "min until one takes it"),
    "station_team_removed": (
        {"team": "Team 7"},
        lambda team: f"{team} was removed from the roster"
        ": the station's order goes to another of its teams"),
    "station_team_moved": (
        {"team": "Team 7", "station": "ps-1", "agency": "ps-2"},
        lambda team, station, agency: f"{team} is no longer a team of station {station} "
        f"(now of {agency}): the station's order goes to another of its teams"),
    "station_team_not_police": (
        {"team": "Team 7", "station": "ps-1"},
        lambda team, station: f"{team} is no longer a team of station {station} (its agency "
        "is no longer a police station): the station's order goes to another of its teams"),
    "awaiting_station": (
        {"category": "dispute"},
        lambda category: "waiting for the owning police station: the district's zones "
        f"are not available yet ({category} goes to its zone's station only)"),
    "place_known": ({"zone": "南湖社区", "station": "ps-1"},
                    lambda zone, station: f"place known: zone {zone}, owned by station {station}"),
    "place_outside_zones": ({}, lambda: "place known: outside every zone: no station owns it"),
    "station_still_unknown": (
        {"minutes": "10"},
        lambda minutes: f"the owning police station is still unknown after {minutes} min (the "
        "district's zones could not be loaded): any station's team may go"),
    "zone_unknown": ({"minutes": "10"},
                     lambda minutes: "zone unknown: the district's zones could not be loaded "
                     f"for {minutes} min"),
    "agreement_failed": ({"visits": "3"},
                         lambda visits: f"the agreement does not hold after {visits} visits: "
                         "the command room decides what follows"),
    "agreement_revisit": ({"visit": "2", "date": "2026-12-13", "timezone": "Asia/Shanghai"},
                          lambda visit, date, timezone: "the agreement does not hold: visit "
                          f"{visit} by {date} ({timezone})"),
    # codes added with their entries (no older sentence): their English as the tests wrote it
    "warning_failed": ({"visits": "3"},
                       lambda visits: "those warned of the fraud are still at risk after "
                       f"{visits} visits: the command room decides what follows"),
    "warning_revisit": ({"visit": "2", "date": "2026-12-13", "timezone": "Asia/Shanghai"},
                        lambda visit, date, timezone: "those warned of the fraud are still at "
                        f"risk: visit {visit} by {date} ({timezone})"),
    "followup_planned": ({"date": "2026-12-13", "timezone": "Asia/Shanghai", "station": "ps-1"},
                         lambda date, timezone, station: f"follow-up visit due by {date} "
                         f"({timezone}; station {station})"),
    "followup_planned_no_station": (
        {"date": "2026-12-13", "timezone": "Asia/Shanghai"},
        lambda date, timezone: f"follow-up visit due by {date} ({timezone}); no police "
        "station is known to own the place now: the visit goes to the one owning it then"),
    "followup_unowned": ({}, lambda: "no follow-up visit: no police station owns the place"),
    "followup_unstaffed": (
        {"span": "an hour", "hours": "1"},
        lambda span, hours: f"follow-up visit due: {'no team of the station on shift'}; "
        f"ordered again in {span} until one is"),
    "followup_station_not_known": (
        {"span": "24 h", "hours": "24"},
        lambda span, hours: f"follow-up visit due: the owning police station is not known "
        f"yet ({ZONES}); ordered again in {span} until one is"),
    "followup_station_gone": (
        {"span": "24 h", "hours": "24"},
        lambda span, hours: f"follow-up visit due: no police station owns the place any more "
        f"(its zone was removed or re-cut); ordered again in {span} until one does, or the case "
        f"is closed"),
    "followup_ordered": ({}, lambda: "follow-up visit ordered"),
    "followup_unanswered": (
        {"team": "Team 7", "span": "24 h", "hours": "24"},
        lambda team, span, hours: f"{team} has not answered the follow-up visit order within "
        f"{span}: flagged until a team takes it"),
    "followup_no_verdict": (
        {"team": "Team 7", "hours": "24"},
        lambda team, hours: f"{team} took the follow-up visit order but has given no verdict "
        f"(holds, or does not) within {hours} h: flagged until it does"),
    "followup_refused": (
        {"refusal": "declined", "span": "an hour", "hours": "1"},
        lambda refusal, span, hours: f"follow-up visit {refusal}; no other team of the "
        f"station on shift: ordered again in {span}"),
    "off_shift": ({"team": "Team 7", "state": "en_route"},
                  lambda team, state: f"{team} {'went off shift'} while "
                  f"{state.replace('_', ' ')} on this order: the command room decides"),
    "off_roster": ({"team": "Team 7", "state": "on_scene"},
                   lambda team, state: f"{team} {'was removed from the roster'} while "
                   f"{state.replace('_', ' ')} on this order: the command room decides"),
}


def test_every_code_has_its_old_sentence() -> None:
    assert set(OLD) == set(TEMPLATES), sorted(set(OLD) ^ set(TEMPLATES))


@pytest.mark.parametrize("code", sorted(OLD))
def test_the_english_of_each_code_is_what_the_engine_wrote(code: str) -> None:
    args, old = OLD[code]
    written = entry_detail(code, **args)
    assert written == {"detail": old(**args), "detail_code": code, "detail_args": args}


@pytest.mark.parametrize("code", sorted(TEMPLATES))
def test_the_chinese_of_each_code_names_only_what_the_entry_carries(code: str) -> None:
    args, _ = OLD[code]
    zh = say(code, args, "zh")  # a blank its arguments lack would raise KeyError
    assert HAN.search(zh) and "{" not in zh
    for _, group in re.findall(r"\{(\w+)(?::(\w+))?\}", TEMPLATES[code]["zh"]):
        assert not group or group == "time" or group in WORDS or group in GLOSSARY, group


def test_the_chinese_says_the_codes_an_entry_fills_in_in_words() -> None:
    assert say("routing_timeout", {"ack_by": "2026-12-06T03:04:05+00:00"}, "zh") == (
        "2026-12-06T03:04:05+00:00前未接单（警情分流超时）")  # the console shows it local
    assert say("volunteers_barred", {"flags": "weapon, in_progress"}, "zh") == (
        f"警情已标记{label('flag', 'weapon')}、{label('flag', 'in_progress')}，不派志愿者：已撤下")
    assert say("reported", {"category": "violence", "priority": "P1"}, "zh") == "打架斗殴，P1特急"


@pytest.mark.parametrize("state", domain.LIVE_ORDER_STATES)
def test_a_live_orders_state_reads_as_the_engine_spelt_it(state: str) -> None:
    # off_shift's English names the state in the glossary's word: the engine's was the code
    # with spaces
    args: dict[str, Any] = {"team": "T", "state": state}
    assert entry_detail("off_shift", **args)["detail"] == (
        f"T went off shift while {state.replace('_', ' ')} on this order: the command room decides")


def test_the_tables_own_words_are_no_glossary_group_and_say_both_languages() -> None:
    assert not set(WORDS) & set(GLOSSARY)
    for codes in WORDS.values():
        for zh, en in codes.values():
            assert HAN.search(zh) and not HAN.search(en)
