"""A coordinator's reward or penalty retried (the reply lost on the network) is recorded once:
with its `adjustment_id`, with an `Idempotency-Key` header instead, and also with neither
(the same member, amount and reason again within ADJUSTMENT_RETRY_S is the retry it is)."""

from __future__ import annotations

from services.volunteers.api.points import ADJUSTMENT_RETRY_S

from .conftest import ADMIN, Volunteers
from .test_points import points_of

URL = "/v1/members/m-wang/points"


async def test_an_adjustment_without_a_key_retried_is_recorded_once(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    reward = {"points": 5, "note": "helped at the night market"}
    first = await volunteers.client.post(URL, headers=ADMIN, json=reward)
    assert (first.status_code, first.json()["recorded"]) == (201, True), first.text
    retried = await volunteers.client.post(URL, headers=ADMIN, json=reward)
    assert (retried.status_code, retried.json()["recorded"]) == (200, False), retried.text
    assert retried.json()["entry"]["entry_id"] == first.json()["entry"]["entry_id"]
    mine = await points_of(volunteers, wang)
    assert (mine["balance"], mine["count"]) == (5, 1)

    # another amount, reason or member is another adjustment
    for url, body in ((URL, {**reward, "points": 6}), (URL, {**reward, "note": "the briefing"}),
                      ("/v1/members/m-chen/points", reward)):
        r = await volunteers.client.post(url, headers=ADMIN, json=body)
        assert (r.status_code, r.json()["recorded"]) == (201, True), (body, r.text)
    assert (await points_of(volunteers, wang))["balance"] == 16
    # the retry window is kept for ADJUSTMENT_RETRY_S, and no longer: the same again later
    # is the coordinator's own second reward
    windows = [k async for k in volunteers.redis.scan_iter("roster:points:adjust_retry:*")]
    assert len(windows) == 4
    for key in windows:
        assert 0 < await volunteers.redis.ttl(key) <= ADJUSTMENT_RETRY_S
    await volunteers.redis.delete(*windows)
    again = await volunteers.client.post(URL, headers=ADMIN, json=reward)
    assert (again.status_code, again.json()["recorded"]) == (201, True), again.text
    assert (await points_of(volunteers, wang))["balance"] == 21


async def test_an_idempotency_key_header_is_the_adjustment_s_key(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    reward = {"points": 5, "note": "helped at the night market"}
    keyed = {**ADMIN, "Idempotency-Key": "coord-7f3a"}
    first = await volunteers.client.post(URL, headers=keyed, json=reward)
    assert first.status_code == 201, first.text
    assert first.json()["entry"]["entry_id"] == "adjust:coord-7f3a"
    retried = await volunteers.client.post(URL, headers=keyed, json=reward)
    assert (retried.status_code, retried.json()["recorded"]) == (200, False), retried.text
    # the same key in the body is the same adjustment
    body_keyed = await volunteers.client.post(URL, headers=ADMIN,
                                              json={**reward, "adjustment_id": "coord-7f3a"})
    assert (body_keyed.status_code, body_keyed.json()["recorded"]) == (200, False)
    other = await volunteers.client.post(URL, headers=keyed, json={**reward, "points": 9})
    assert other.status_code == 409, other.text  # the key was used for another adjustment
    assert (await points_of(volunteers, wang))["balance"] == 5

    for headers, body in (({**ADMIN, "Idempotency-Key": "a b"}, reward),
                          (keyed, {**reward, "adjustment_id": "coord-other"})):
        r = await volunteers.client.post(URL, headers=headers, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "Idempotency-Key", r.text
    assert (await points_of(volunteers, wang))["balance"] == 5
