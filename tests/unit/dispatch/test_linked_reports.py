"""What the command room reads of an incident's linked reports (services/dispatch/linked.py):
by who reported them, what each source said, and the timeline with one source's runs of
repeats folded into a line."""

from __future__ import annotations

import json
from typing import Any

from services.dispatch.linked import (
    MAX_ACCOUNTS,
    linked_reports,
    report_source,
    timeline_with_sources,
)

PARENT = "inc_p"


def record(system: str = "sys_cam", *, name: str | None = "Skynet video",
           caller: dict[str, str] | None = None, flags: tuple[str, ...] = (),
           description: str = "crowd", at: str = "2026-12-08T03:00:00+08:00",
           status: str = "linked", linked_to: str = PARENT) -> dict[str, str]:
    return {"district": "d1", "status": status, "linked_to": linked_to, "system_id": system,
            "system_name": name or "", "caller": json.dumps(caller) if caller else "",
            "external_ref": "ref", "category": "violence", "priority": "P1",
            "flags": json.dumps(list(flags)), "description": description, "reported_at": at,
            "received_at": at}


def test_a_source_is_a_system_and_within_it_each_caller() -> None:
    camera = report_source(record())
    assert camera == report_source(record(description="another crowd"))
    first = report_source(record("sys_110", caller={"phone": "138 0000 0000", "name": "Li"}))
    assert first == report_source(record("sys_110", caller={"phone": "13800000000"}))
    assert first != report_source(record("sys_110", caller={"phone": "13900000000"}))
    assert first != camera and "13800000000" not in first  # a digest, never the number
    by_name = report_source(record("sys_110", caller={"name": "Zhang"}))
    assert by_name not in (first, report_source(record("sys_110")))


def test_repeats_of_one_source_fold_into_one_account_and_a_caller_is_listed_apart() -> None:
    incident = record(status="assigned", linked_to="")
    reports = [(f"inc_{n}", record(at=f"2026-12-08T03:0{n}:00+08:00")) for n in range(3)]
    reports.insert(1, ("inc_call", record("sys_110", name="110", description="he has a knife",
                                          flags=("weapon",), caller={"phone": "13800000000"})))
    reports.append(("inc_fight", record(description="fight", flags=("in_progress",),
                                        at="2026-12-08T03:05:00+08:00")))
    camera, call = linked_reports(incident, reports)
    assert (camera["own_source"], camera["count"], camera["flags"]) == (True, 4, ["in_progress"])
    assert (camera["first_reported_at"], camera["last_reported_at"]) == (
        "2026-12-08T03:00:00+08:00", "2026-12-08T03:05:00+08:00")
    crowd, fight = camera["accounts"]
    assert (crowd["incident_id"], crowd["repeats"], crowd["last_incident_id"]) == (
        "inc_0", 2, "inc_2")
    assert (fight["incident_id"], fight["repeats"], fight["last_incident_id"]) == (
        "inc_fight", 0, None)
    assert (call["own_source"], call["count"], call["caller"]) == (
        False, 1, {"phone": "13800000000"})
    assert [a["description"] for a in call["accounts"]] == ["he has a knife"]


def test_a_source_saying_something_new_every_time_lists_its_first_and_newest() -> None:
    reports = [(f"inc_{n:03}", record(description=f"{n} persons")) for n in range(100)]
    [camera] = linked_reports(record(status="assigned", linked_to=""), reports)
    ids = [a["incident_id"] for a in camera["accounts"]]
    assert len(ids) == MAX_ACCOUNTS and camera["accounts_left_out"] == 100 - MAX_ACCOUNTS
    assert ids[0] == "inc_000" and ids[-1] == "inc_099"


def entry(report: str, at: str, code: str = "report_linked") -> dict[str, Any]:
    return {"at": at, "kind": "note", "detail_code": code, "detail_args": {"report": report}}


def test_a_run_of_one_source_s_repeats_is_one_line_and_anything_else_breaks_it() -> None:
    reports = {f"cam{n}": record() for n in range(6)}
    reports["call"] = record("sys_110", name="110", caller={"phone": "13800000000"})
    reports["cam5"] = record(status="dispatching", linked_to="")  # unlinked since
    timeline = [entry("cam0", "t0"), entry("cam1", "t1"), entry("cam2", "t2"),
                entry("call", "t3"), entry("cam3", "t4"),
                {"at": "t5", "kind": "revised", "detail_code": "revised_flags_by_report",
                 "detail_args": {"report": "cam3", "flags": "weapon"}},
                entry("cam4", "t6"), entry("cam5", "t7"), entry("gone", "t8")]
    lines = timeline_with_sources(timeline, PARENT, {**reports, "gone": None}, collapse=True)
    said = [((e.get("detail_args") or {}).get("report"), e.get("repeats")) for e in lines]
    assert said == [("cam0", {"count": 2, "last_report": "cam2", "last_at": "t2"}),
                    ("call", None), ("cam3", None), ("cam3", None), ("cam4", None),
                    ("cam5", None), ("gone", None)]
    assert lines[1]["report_source"] == {"system_id": "sys_110", "system_name": "110"}
    # who said "weapon": the revision by a report names its source too
    assert lines[3]["report_source"] == {"system_id": "sys_cam", "system_name": "Skynet video"}
    assert "report_source" not in lines[-1]  # a report no longer kept
    whole = timeline_with_sources(timeline, PARENT, reports, collapse=False)
    assert len(whole) == len(timeline) and not any("repeats" in e for e in whole)
    assert timeline[0] == entry("cam0", "t0")  # the stored entries are left as they are
