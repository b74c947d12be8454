"""A member's report from the street names the team their device token said they were on
(incident.reported's `reporter_team_id`): volunteers judges a hazard report by it, whatever
team a roster moves them to before its closing. A system's report names none."""

from __future__ import annotations

from datetime import UTC, datetime

from services.intake.api import _reported
from services.intake.domain import IncidentIn
from shared.events import IncidentReported
from shared.http import Principal

BODY = IncidentIn.model_validate({"external_ref": "app-1", "category": "hazard_report",
                                  "district": "d1", "location": {"lat": 22.8, "lon": 108.3}})
AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def reported(who: Principal) -> IncidentReported:
    return _reported("inc_1", BODY, who, (), "P4", AT, None, None)


def test_a_members_report_names_their_team_as_their_token_said() -> None:
    who = Principal(kind="device", subject="dev_1", districts=("d1",), member_id="m-sun",
                    team_id="t-vol2", agency_kind="volunteer", device_id="dev_1")
    event = reported(who)
    assert (event.system_id, event.reporter_team_id) == ("member:m-sun", "t-vol2")


def test_a_systems_report_names_no_team() -> None:
    who = Principal(kind="system", subject="sys_110", districts=("d1",))
    assert reported(who).reporter_team_id is None
