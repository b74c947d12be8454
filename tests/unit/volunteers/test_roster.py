"""Roster parsing: JSON paths and CSV lines in errors, references, and the import plan's counts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.volunteers.domain.roster import (
    InvalidRoster,
    RosterDoc,
    check_references,
    parse_document,
    plan_import,
    record_of,
)
from services.volunteers.domain.roster_csv import parse_csv, parse_polygon

SQUARE = [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1], [108.0, 22.1]]

DOC: dict[str, Any] = {
    "district": "d1",
    "agencies": [
        {"id": "p1", "name": "Station One", "kind": "police"},
        {"id": "p2", "name": "Street station", "kind": "police", "role": "patrol"},
        {"id": "v1", "name": "Red armbands", "kind": "volunteer"},
    ],
    "zones": [{"id": "z1", "name": "Z1", "owner_agency_id": "p1", "polygon": SQUARE}],
    "teams": [
        {"id": "t-pat", "agency_id": "p2", "name": "Patrol 1", "mode": "car",
         "skills": ["First_Aid", "first_aid"], "home_zone_id": "z1"},
        {"id": "t-vol", "agency_id": "v1", "name": "Aunties", "mode": "foot"},
    ],
    "members": [
        {"id": "m1", "name": "Officer Li", "agency_id": "p2", "team_id": "t-pat",
         "role": "officer", "phone": "+86 138 0000 0000"},
        {"id": "m2", "name": "Auntie Wang", "agency_id": "v1", "team_id": "t-vol",
         "role": "volunteer"},
    ],
}

CSV = {
    "agencies": "id,name,kind,role\np1,Station One,police,\np2,Street station,police,patrol\n"
                "v1,Red armbands,volunteer,\n",
    "zones": 'id,name,owner_agency_id,polygon\n'
             'z1,Z1,p1,"POLYGON ((108 22, 108.1 22, 108.1 22.1, 108 22.1, 108 22))"\n'
             'z2,Z2,p1,"[[108.1,22],[108.2,22],[108.2,22.1]]"\n',
    "teams": "id,agency_id,name,mode,skills,home_zone_id\n"
             "t-pat,p2,Patrol 1,car,first_aid;drone,z1\n"
             "\n"
             "t-vol,v1,Aunties,foot,,\n",
    "members": "\ufeffid,name,agency_id,team_id,role,phone\n"
               "m1,Officer Li,p2,t-pat,officer,+86 138\n"
               "m2,Auntie Wang,v1,t-vol,volunteer,\n",
}


def validate(data: Any) -> None:
    check_references(parse_document(data), {})


def validate_csv(district: str, files: dict[str, str]) -> None:
    check_references(parse_csv(district, files), {})


def errors_of(fn, *args) -> list[dict[str, Any]]:
    with pytest.raises(InvalidRoster) as info:
        fn(*args)
    return [e.as_dict() for e in info.value.errors]


def test_a_valid_document_parses_with_defaults() -> None:
    doc = parse_document(DOC)
    assert doc.district == "d1"
    assert [a.role for a in doc.agencies] == ["station", "patrol", None]
    assert doc.teams[0].skills == ("first_aid",)
    assert doc.zones[0].polygon[0] == (108.0, 22.0)


def test_every_bad_field_is_reported_by_json_path_and_field() -> None:
    bad = copy.deepcopy(DOC)
    bad["teams"][1]["mode"] = "boat"
    bad["members"][0]["role"] = "captain"
    del bad["members"][1]["name"]
    bad["zones"][0]["polygon"] = [[200.0, 22.0], [108.1, 22.0], [108.1, 22.1]]
    found = {(e["path"], e["field"]) for e in errors_of(validate, bad)}
    assert found == {("teams.1.mode", "mode"), ("members.0.role", "role"),
                     ("members.1.name", "name"), ("zones.0.polygon", "polygon")}


def test_messages_never_echo_values() -> None:
    bad = copy.deepcopy(DOC)
    bad["members"][0]["phone"] = "call me at home"
    [error] = errors_of(validate, bad)
    assert error["path"] == "members.0.phone" and "home" not in error["message"]


def test_duplicate_ids_and_unknown_fields_are_errors() -> None:
    bad = copy.deepcopy(DOC)
    bad["teams"].append(dict(bad["teams"][0]))
    bad["agencies"][2]["colour"] = "red"
    found = {e["path"] for e in errors_of(validate, bad)}
    assert found == {"teams.2.id", "agencies.2.colour"}


def test_only_police_agencies_have_a_role() -> None:
    bad = copy.deepcopy(DOC)
    bad["agencies"][2]["role"] = "station"
    [error] = errors_of(validate, bad)
    assert error["path"] == "agencies.2.role"


def test_a_self_crossing_polygon_is_refused() -> None:
    bad = copy.deepcopy(DOC)
    bad["zones"][0]["polygon"] = [[0, 0], [1, 1], [1, 0], [0, 1]]
    [error] = errors_of(validate, bad)
    assert error["field"] == "polygon" and "crosses" in error["message"]


@pytest.mark.parametrize("point", [[float("nan"), 22.1], [108.1, float("nan")],
                                   [108.1, float("inf")], [float("-inf"), 22.1]])
def test_a_polygon_point_that_is_no_finite_number_is_named_as_such(
        point: list[float]) -> None:
    # Python's json reads NaN and Infinity, a CSV cell's JSON too: a NaN latitude was told
    # it lay beyond 85.05112878 degrees ("is it [lat, lon]?"), a NaN longitude that it was
    # outside the valid range
    bad = copy.deepcopy(DOC)
    bad["zones"][0]["polygon"] = [[108.0, 22.0], [108.1, 22.0], point, [108.0, 22.1]]
    [error] = errors_of(validate, bad)
    assert error["path"] == "zones.0.polygon"
    assert "point 2" in error["message"] and "finite number" in error["message"], error
    assert "[lat, lon]" not in error["message"] and "range" not in error["message"], error
    cell = "[[108,22],[108.1,22],[108.1,NaN],[108,22.1]]"
    files = {**CSV, "zones": f'id,name,owner_agency_id,polygon\nz1,Z1,p1,"{cell}"\n'}
    [error] = errors_of(validate_csv, "d1", files)
    assert "point 2" in error["message"] and "finite number" in error["message"], error


def test_references_must_resolve_within_the_district() -> None:
    bad = copy.deepcopy(DOC)
    bad["teams"][1]["agency_id"] = "nobody"
    bad["members"][1]["team_id"] = "t-pat"  # a volunteer in a police team
    bad["zones"][0]["owner_agency_id"] = "p2"  # a patrol station owns no territory
    bad["members"][0]["role"] = "guard"
    found = {(e["path"], e["message"]) for e in errors_of(validate, bad)}
    assert found == {
        ("teams.1.agency_id", "names no agency of this district"),
        ("members.1.team_id", "names a team of another agency"),
        ("zones.0.owner_agency_id", "must name a police agency with role station"),
        ("members.0.role", "is not a role of a police agency (auxiliary, officer)"),
    }


def test_references_may_point_to_stored_rows_but_not_to_another_district() -> None:
    doc = parse_document({"district": "d1", "teams": [
        {"id": "t9", "agency_id": "v1", "name": "Late team", "mode": "bike"}]})
    stored = {"agencies": {"v1": {"id": "v1", "district": "d1", "kind": "volunteer"}}}
    check_references(doc, stored)
    elsewhere = {"agencies": {"v1": {"id": "v1", "district": "d2", "kind": "volunteer"}},
                 "teams": {"t9": {"id": "t9", "district": "d2"}}}
    found = {e["path"] for e in errors_of(check_references, doc, elsewhere)}
    assert found == {"teams.0.agency_id", "teams.0.id"}


def stored_from(doc: RosterDoc) -> dict[str, dict[str, dict[str, str]]]:
    return {e: {r.id: record_of(e, r, doc.district) for r in doc.rows(e)}
            for e in ("agencies", "zones", "teams", "members")}


def test_reimporting_counts_created_updated_unchanged() -> None:
    doc = parse_document(DOC)
    first = plan_import(doc, {})
    assert first.counts["members"] == {"created": 2, "updated": 0, "unchanged": 0}
    assert first.teams_changed == {"t-pat", "t-vol"}
    changed = copy.deepcopy(DOC)
    changed["teams"][1]["mode"] = "ebike"
    changed["agencies"][1]["role"] = "station"
    second = plan_import(parse_document(changed), stored_from(doc))
    assert second.counts["teams"] == {"created": 0, "updated": 1, "unchanged": 1}
    assert second.counts["agencies"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert second.teams_changed == {"t-vol"} and second.agencies_profile_changed == {"p2"}
    assert [w.id for w in second.writes] == ["p2", "t-vol"]
    assert not second.zones_changed


def test_csv_files_parse_to_the_same_roster() -> None:
    doc = parse_csv("d1", CSV)
    assert [t.id for t in doc.teams] == ["t-pat", "t-vol"]
    assert doc.teams[0].skills == ("first_aid", "drone")
    assert doc.teams[1].home_zone_id is None
    assert doc.zones[0].polygon == ((108.0, 22.0), (108.1, 22.0), (108.1, 22.1), (108.0, 22.1))
    assert len(doc.zones[1].polygon) == 3
    assert doc.members[0].phone == "+86 138" and doc.members[1].phone is None


def test_csv_errors_name_the_file_line_and_field() -> None:
    files = dict(CSV)
    files["teams"] = ("id,agency_id,name,mode,skills,home_zone_id\n"
                      "t-pat,p2,Patrol 1,car,,z1\n"
                      "\n"
                      "t-vol,v1,Aunties,hovercraft,,\n")
    files["zones"] = "id,name,owner_agency_id,polygon\nz1,Z1,p1,not a polygon\n"
    found = {(e["entity"], e["line"], e["field"]) for e in errors_of(validate_csv, "d1", files)}
    assert found == {("teams", 4, "mode"), ("zones", 2, "polygon")}


def test_row_errors_and_reference_errors_come_together_without_echoes_of_each_other() -> None:
    bad = copy.deepcopy(DOC)
    bad["teams"][1]["mode"] = "boat"  # t-vol does not parse: m2's reference is not re-reported
    bad["members"][0]["team_id"] = "t-none"
    found = [e["path"] for e in errors_of(validate, bad)]
    assert found == ["teams.1.mode", "members.0.team_id"]


def test_csv_header_problems_are_reported_on_line_one() -> None:
    files = {"members": "id,name,agency,team_id,role\nm1,A,v1,t1,volunteer\n"}
    found = {(e["line"], e["field"], e["message"]) for e in errors_of(validate_csv, "d1", files)}
    assert found == {(1, "agency_id", "column is missing"), (1, "agency", "is not a known column")}


def test_csv_rows_with_the_wrong_number_of_cells_are_reported() -> None:
    files = {"agencies": "id,name,kind,role\np1,Station,police\n"}
    [error] = errors_of(validate_csv, "d1", files)
    assert error["line"] == 2 and "cells" in error["message"]


def test_csv_needs_a_district_and_known_file_names() -> None:
    found = {e["entity"] for e in errors_of(validate_csv, "", {"people": "id\n"})}
    assert found == {"district", "people", "(files)"}


def test_polygon_cells_accept_json_or_wkt() -> None:
    assert parse_polygon("[[1, 2], [3, 4], [5, 6]]") == [[1, 2], [3, 4], [5, 6]]
    assert parse_polygon("POLYGON ((1 2, 3 4, 5 2, 1 2))")[0] == [1.0, 2.0]
    with pytest.raises(ValueError):
        parse_polygon("LINESTRING (1 2, 3 4)")


def test_a_polygon_cell_nested_too_deep_is_refused_as_any_bad_polygon() -> None:
    with pytest.raises(ValueError, match="not a JSON list"):
        parse_polygon("[" * 1500 + "]" * 1500)
