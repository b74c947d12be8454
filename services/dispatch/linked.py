"""What the command room reads of the reports linked to an incident: who reported each (its
source), the reports of each source and what they said, and the incident's timeline with
the runs of one source's repeats folded into one line.

Plain functions over records as stored (dispatch's incident hashes, timeline entries as
dicts): no Redis or HTTP here.

A source is who reported, as the dispatcher would ring or ask back: a reporting system
(a camera platform, a door gateway), a patrol member (`member:<id>`), and within one
system each caller it names: a 110 call-taking system is one system and many callers,
and a second caller is a second account, not a repeat. A camera repeating its alert every
second is one source; its repeats tell that the event goes on, and when they stop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# The timeline entries that name a report linked to the incident (detail_args `report`)
LINK_CODES = ("report_linked", "follow_up_linked")
# What a linked report's record is read for (the district first: a record, not a leftover)
LINKED_FIELDS = ("district", "status", "linked_to", "system_id", "system_name", "caller",
                 "external_ref", "category", "priority", "flags", "description",
                 "reported_at", "received_at", "follow_up_of", "archived_at")
# A source's accounts listed in the incident's view: its first, and its newest after it
# (a camera whose every alert words the count of people it sees says something "new"
# every second); the rest counted (`accounts_left_out`), each on the timeline
MAX_ACCOUNTS = 20


def report_source(report: Mapping[str, str]) -> str:
    """Who reported the record `report` (an incident's own report, or one linked to it):
    its system, and within it the caller it names, by phone else by name, as a digest (the
    key is kept beside the incident, never the number)."""
    system = report.get("system_id") or ""
    caller = _caller(report) or {}
    who = "".join(str(caller.get("phone") or "").split()) or str(caller.get("name") or "").strip()
    if not who:
        return system
    return f"{system}|{hashlib.sha256(who.encode()).hexdigest()[:16]}"


def _caller(report: Mapping[str, str]) -> dict[str, Any] | None:
    raw = report.get("caller")
    if not raw:
        return None
    try:
        caller = json.loads(raw)
    except ValueError:
        return None
    return caller if isinstance(caller, dict) and any(caller.values()) else None


def _flags(report: Mapping[str, str]) -> list[str]:
    try:
        flags = json.loads(report.get("flags") or "[]")
    except ValueError:
        return []
    return [str(f) for f in flags] if isinstance(flags, list) else []


def is_linked_here(report: Mapping[str, str] | None, incident_id: str) -> bool:
    """Whether the record is a report linked to the incident now (not unlinked since, nor
    sent out as an incident of its own)."""
    return (report is not None and report.get("status") == "linked"
            and report.get("linked_to") == incident_id)


def _said(report: Mapping[str, str]) -> tuple[Any, ...]:
    """What a report says, beside who and when: two reports of a source that say the same
    are one account repeated."""
    return (report.get("category"), report.get("priority"), tuple(_flags(report)),
            report.get("description") or "", bool(report.get("follow_up_of")))


def _account(report_id: str, report: Mapping[str, str]) -> dict[str, Any]:
    return {"incident_id": report_id, "external_ref": report.get("external_ref") or None,
            "reported_at": report.get("reported_at") or None,
            "received_at": report.get("received_at") or None,
            "category": report.get("category") or None, "priority": report.get("priority") or None,
            "flags": _flags(report), "description": report.get("description") or None,
            "follow_up": bool(report.get("follow_up_of")),
            "archived": bool(report.get("archived_at")),
            "repeats": 0, "last_incident_id": None, "last_reported_at": None}


def linked_reports(incident: Mapping[str, str],
                   reports: Sequence[tuple[str, Mapping[str, str]]]) -> list[dict[str, Any]]:
    """The reports linked to `incident` (`reports`: each id and record, in the order
    dispatch linked them; those linked here now only), by source, in the order each source
    first reported: its system, its caller (the newest it named; the command room's to
    read, as the incident's own), whether it is the incident's own reporter (`own_source`:
    its repeats), how many reports, the first and last reported, every flag they carried,
    and its `accounts`: a report, with the reports after it of that source that said the
    same (category, priority, flags, description) folded into it (`repeats`, the last one's
    id and time). A report that says anything else is an account of its own."""
    own = report_source(incident)
    groups: dict[str, dict[str, Any]] = {}
    accounts: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
    for report_id, report in reports:
        source = report_source(report)
        group = groups.get(source)
        if group is None:
            group = groups[source] = {
                "system_id": report.get("system_id") or None, "system_name": None,
                "caller": None, "own_source": source == own, "count": 0,
                "first_reported_at": report.get("reported_at") or None,
                "last_reported_at": None, "flags": [], "accounts": [],
                "accounts_left_out": 0}
            accounts[source] = []
        group["count"] += 1
        group["system_name"] = report.get("system_name") or group["system_name"]
        group["caller"] = _caller(report) or group["caller"]
        at = report.get("reported_at") or None
        if at and (group["first_reported_at"] is None or at < group["first_reported_at"]):
            group["first_reported_at"] = at
        if at and (group["last_reported_at"] is None or at > group["last_reported_at"]):
            group["last_reported_at"] = at
        group["flags"] += [f for f in _flags(report) if f not in group["flags"]]
        said, listed = _said(report), accounts[source]
        if listed and listed[-1][0] == said:
            last = listed[-1][1]
            last["repeats"] += 1
            last["last_incident_id"], last["last_reported_at"] = report_id, at
        else:
            listed.append((said, _account(report_id, report)))
    for source, group in groups.items():
        listed = [account for _, account in accounts[source]]
        kept = listed if len(listed) <= MAX_ACCOUNTS else [listed[0],
                                                           *listed[-(MAX_ACCOUNTS - 1):]]
        group["accounts"] = kept
        group["accounts_left_out"] = len(listed) - len(kept)
    return list(groups.values())


def timeline_with_sources(timeline: Sequence[dict[str, Any]], incident_id: str,
                          reports: Mapping[str, Mapping[str, str] | None], *,
                          collapse: bool) -> list[dict[str, Any]]:
    """The incident's timeline with each entry that names a report (linked to it, or linked
    once and unlinked since: its `detail_args` `report`) saying who reported it
    (`report_source`: its system's id and name: who said "weapon", who asks to cancel),
    read from `reports` (id -> record, None: gone). `collapse`: a run of "another report
    linked" entries of one source, each right after the one before, is its first entry
    with `repeats` (how many more, the last one's report and time); a report of another
    source, one unlinked since (its record says so) and any other entry stay lines of
    their own."""
    out: list[dict[str, Any]] = []
    run: str | None = None  # the source of the run the last line holds, if it may grow
    for entry in timeline:
        report_id = (entry.get("detail_args") or {}).get("report")
        report = reports.get(report_id) if report_id else None
        if report is None:
            out.append(entry)
            run = None
            continue
        source = report_source(report)
        foldable = (collapse and entry.get("detail_code") == "report_linked"
                    and is_linked_here(report, incident_id))
        if foldable and run == source:
            head = out[-1]
            repeats = head.setdefault("repeats", {"count": 0})
            repeats.update(count=repeats["count"] + 1, last_report=report_id,
                           last_at=entry.get("at"))
            continue
        out.append({**entry, "report_source": {"system_id": report.get("system_id") or None,
                                               "system_name": report.get("system_name")
                                               or None}})
        run = source if foldable else None
    return out
