"""A roster import's `as_of` (optional): the time the sender's roster was taken. An HR or
agency system that retries a document after a newer one was applied must not roll the
roster back: an import older than the last one applied for its district is refused (409
naming `as_of`), the same one again is an idempotent retry, one without `as_of` is taken as
before. JSON documents and CSV (as JSON texts and as multipart files) alike."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from .conftest import ADMIN, DISTRICT, Volunteers
from .test_roster_import import CSV, UNCHANGED

MORNING = "2026-12-07T08:00:00+08:00"
NOON = "2026-12-07T12:00:00+08:00"


def moved(as_of: str | None) -> dict[str, Any]:
    """The district with Uncle Chen moved to the guards (as a guard) and the post renamed."""
    doc = copy.deepcopy(DISTRICT)
    doc["teams"][1]["name"] = "Post 3 (north gate)"
    doc["members"][3].update({"agency_id": "s-co", "team_id": "t-guards", "role": "guard"})
    if as_of is not None:
        doc["as_of"] = as_of
    return doc


def at(doc: dict[str, Any], as_of: str | None) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if as_of is not None:
        doc["as_of"] = as_of
    return doc


async def send(volunteers: Volunteers, **kwargs: Any) -> Any:
    return await volunteers.client.post("/v1/roster/import", headers=ADMIN, **kwargs)


async def chen_and_post(volunteers: Volunteers) -> tuple[str, str]:
    chen = (await volunteers.client.get("/v1/members/m-chen", headers=ADMIN)).json()
    post = (await volunteers.client.get("/v1/teams/t-guards", headers=ADMIN)).json()
    return chen["team_id"], post["name"]


async def test_an_older_roster_sent_after_a_newer_one_is_refused_and_changes_nothing(
    volunteers: Volunteers,
) -> None:
    assert (await send(volunteers, json=at(DISTRICT, MORNING))).status_code == 200
    newer = await send(volunteers, json=moved(NOON))
    assert newer.status_code == 200, newer.text
    assert newer.json()["as_of"] == "2026-12-07T04:00:00Z"
    assert await chen_and_post(volunteers) == ("t-guards", "Post 3 (north gate)")
    published = await volunteers.redis.xlen("unit.status")

    # The HR system retries the morning's document (its reply was lost): it would move
    # Uncle Chen back and rename the post.
    retried = await send(volunteers, json=at(DISTRICT, MORNING))
    assert retried.status_code == 409, retried.text
    error = retried.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "as_of")
    assert "2026-12-07T00:00:00Z" in error["message"]
    assert "2026-12-07T04:00:00Z" in error["message"]
    assert await chen_and_post(volunteers) == ("t-guards", "Post 3 (north gate)")
    assert await volunteers.redis.xlen("unit.status") == published
    # the same time in another offset is the same instant: not older
    same = await send(volunteers, json=moved("2026-12-07T04:00:00Z"))
    assert same.status_code == 200, same.text


async def test_the_same_roster_sent_again_is_an_idempotent_retry(
    volunteers: Volunteers,
) -> None:
    first = await send(volunteers, json=at(DISTRICT, NOON))
    assert first.status_code == 200, first.text
    published = await volunteers.redis.xlen("unit.status")
    again = await send(volunteers, json=at(DISTRICT, NOON))
    assert again.status_code == 200, again.text
    assert again.json()["counts"] == UNCHANGED and again.json()["unit_status_published"] == 0
    assert await volunteers.redis.xlen("unit.status") == published


async def test_an_import_without_as_of_is_taken_as_before_and_moves_no_mark(
    volunteers: Volunteers,
) -> None:
    assert (await send(volunteers, json=moved(NOON))).status_code == 200
    # by hand, without as_of (as every sender before as_of): never refused
    plain = await send(volunteers, json=DISTRICT)
    assert plain.status_code == 200, plain.text
    assert plain.json()["as_of"] == "2026-12-07T04:00:00Z"  # still the last one given
    assert (await chen_and_post(volunteers))[0] == "t-vol"
    # the morning's document is still older than noon's
    assert (await send(volunteers, json=at(DISTRICT, MORNING))).status_code == 409
    # a district without any as_of answers null
    other = await send(volunteers, json={"district": "d2", "agencies": [
        {"id": "v-d2", "name": "Other", "kind": "volunteer"}]})
    assert other.status_code == 200 and other.json()["as_of"] is None


async def test_each_district_keeps_its_own_mark(volunteers: Volunteers) -> None:
    assert (await send(volunteers, json=at(DISTRICT, NOON))).status_code == 200
    other = {"district": "d2", "as_of": MORNING,
             "agencies": [{"id": "v-d2", "name": "Other", "kind": "volunteer"}]}
    response = await send(volunteers, json=other)
    assert response.status_code == 200, response.text


async def test_csv_imports_carry_as_of_too(volunteers: Volunteers) -> None:
    newer = await send(volunteers, json={"district": "d1", "csv": CSV, "as_of": NOON})
    assert newer.status_code == 200, newer.text
    older = await send(volunteers, json={"district": "d1", "csv": CSV, "as_of": MORNING})
    assert (older.status_code, older.json()["error"]["field"]) == (409, "as_of"), older.text
    files = {name: (f"{name}.csv", text.encode(), "text/csv") for name, text in CSV.items()}
    upload = await send(volunteers, data={"district": "d1", "as_of": MORNING}, files=files)
    assert (upload.status_code, upload.json()["error"]["field"]) == (409, "as_of"), upload.text
    upload = await send(volunteers, data={"district": "d1", "as_of": NOON}, files=files)
    assert upload.status_code == 200, upload.text
    assert upload.json()["counts"] == UNCHANGED


async def test_an_as_of_that_is_no_time_with_an_offset_or_lies_ahead_is_a_422(
    volunteers: Volunteers,
) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    for value in ("2026-12-07T08:00:00", "yesterday", 1733558400, ahead):
        response = await send(volunteers, json=at(DISTRICT, value))  # type: ignore[arg-type]
        assert response.status_code == 422, (value, response.text)
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_roster", "as_of"), response.text
        assert "yesterday" not in response.text
    assert await volunteers.redis.keys("roster:*") == []
    response = await send(volunteers, json={"district": "d1", "csv": CSV, "as_of": "noon"})
    assert (response.status_code, response.json()["error"]["field"]) == (422, "as_of")
