"""What the command room reads of an incident's linked reports (services/dispatch/linked.py):
by who reported them, and what each source said."""

from __future__ import annotations

import json

from services.dispatch.linked import MAX_ACCOUNTS, linked_reports, report_source

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
