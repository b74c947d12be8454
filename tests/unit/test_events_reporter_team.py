"""`reporter_team_id`: the team a member was on when they reported from the street, carried
by incident.reported and incident.closed. Optional on both, so an entry written before it
(none) still reads, and one with it reads back as written, through a stream entry's
envelope as the services write it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from faststream.redis.parser import BinaryMessageFormatV1

from shared import streams
from shared.bus import entry_to_write
from shared.events import Event, IncidentClosed, IncidentReported, Location

REPORTED = IncidentReported(
    district="d1", incident_id="inc_1", system_id="member:m-sun", external_ref="app-1",
    category="hazard_report", priority="P4", location=Location(lat=22.8, lon=108.3),
    reported_at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC), reporter_team_id="t-vol2")
CLOSED = IncidentClosed(district="d1", incident_id="inc_1", final_status="resolved",
                        resolved_by=("t-vol",), category="hazard_report",
                        reported_by_member="m-sun", reporter_team_id="t-vol2")


async def read_back(stream: streams.Stream, event: Event) -> dict[str, object]:
    async with entry_to_write(stream, event, "inc_1") as entry:
        body, _ = BinaryMessageFormatV1.parse(entry)
    return json.loads(body)


@pytest.mark.parametrize(("stream", "event"), [(streams.INCIDENT_REPORTED, REPORTED),
                                               (streams.INCIDENT_CLOSED, CLOSED)])
async def test_the_reporters_team_reads_back_as_written(stream: streams.Stream,
                                                         event: Event) -> None:
    body = await read_back(stream, event)
    assert body["reporter_team_id"] == "t-vol2"
    assert type(event).model_validate(body) == event


@pytest.mark.parametrize(("stream", "event"), [(streams.INCIDENT_REPORTED, REPORTED),
                                               (streams.INCIDENT_CLOSED, CLOSED)])
async def test_an_entry_from_before_it_still_reads_without_a_team(stream: streams.Stream,
                                                                  event: Event) -> None:
    body = await read_back(stream, event)
    del body["reporter_team_id"]
    read = type(event).model_validate(body)
    assert read.reporter_team_id is None  # type: ignore[attr-defined]
    assert read == event.model_copy(update={"reporter_team_id": None})


def test_a_systems_report_and_a_command_rooms_close_name_no_team() -> None:
    assert IncidentReported.model_fields["reporter_team_id"].default is None
    assert IncidentClosed.model_fields["reporter_team_id"].default is None
