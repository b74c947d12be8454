"""docs/operations.md, dead letters: an event nobody will ever read (not JSON, a test's
garbage) is discarded, not replayed (a replay puts it back for every group to give up on
again), and both a discard and a replay are in the service's audit trail, as every admin
action is."""

from __future__ import annotations

from shared import streams
from tests.helpers import poll_until
from tests.integration.dispatch.test_writes_once import ReplyEater
from tests.integration.stream_probes import ADMIN, Service, running

STREAM = streams.ORDER_RESPONDED.name  # read by dispatch and volunteers


async def dead_letter_of_garbage(svc: Service) -> dict[str, str]:
    """Garbage on the stream, and its dead letter as the service lists it."""
    await svc.redis.xadd(STREAM, {b"__data__": b"not json at all"})

    async def listed() -> list[dict[str, str]]:
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                 params={"stream": STREAM})
        assert r.status_code == 200, r.text
        return [d for d in r.json()["dead_letters"] if d["group"] == svc.name]

    (letter,) = await poll_until(listed, f"the garbage's dead letter at {svc.name}")
    return letter


async def audited(svc: Service) -> list[dict[str, str]]:
    r = await svc.client.get("/v1/admin/audit", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


async def test_a_dead_letter_nobody_can_read_is_discarded_and_the_discard_audited(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        letter = await dead_letter_of_garbage(svc)
        entries = await svc.redis.xlen(STREAM)
        path = f"/v1/admin/dead-letters/{STREAM}/{letter['dead_letter_id']}"

        r = await svc.client.delete(path, headers=ADMIN)
        assert r.status_code == 204, r.text

        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                 params={"stream": STREAM})
        assert r.json()["totals"][STREAM] == 0
        assert await svc.redis.xlen(STREAM) == entries  # nothing put back on the stream
        (entry,) = [e for e in await audited(svc) if e["action"] == "dead_letter.discard"]
        assert entry["who"] == "admin:admin"
        assert entry["target"] == f"{STREAM}/{letter['dead_letter_id']}"
        assert "json_invalid" in entry["detail"] and "dispatch" in entry["detail"]
        assert "not json" not in entry["detail"]  # the payload is never written there

        r = await svc.client.delete(path, headers=ADMIN)  # gone: asked again
        assert r.status_code == 404, r.text


async def test_a_replay_is_in_the_audit_trail(clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        letter = await dead_letter_of_garbage(svc)
        r = await svc.client.post(
            f"/v1/admin/dead-letters/{STREAM}/{letter['dead_letter_id']}/replay", headers=ADMIN)
        assert r.status_code == 200, r.text

        (entry,) = [e for e in await audited(svc) if e["action"] == "dead_letter.replay"]
        assert entry["who"] == "admin:admin"
        assert entry["target"] == f"{STREAM}/{letter['dead_letter_id']}"
        assert r.json()["replayed_as"] in entry["detail"]


async def two_dead_letters_of_garbage(svc: Service) -> tuple[str, str]:
    """Two garbage entries on the stream, and their dead letters' ids as the service lists
    them, the newest first."""
    for garbage in (b"not json at all", b"nor this"):
        await svc.redis.xadd(STREAM, {b"__data__": garbage})

    async def listed() -> list[str] | None:
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                 params={"stream": STREAM})
        ids = [d["dead_letter_id"] for d in r.json()["dead_letters"] if d["group"] == svc.name]
        return ids if len(ids) == 2 else None

    first, second = await poll_until(listed, "the garbage's two dead letters")
    return first, second


async def test_a_discard_whose_reply_was_lost_is_in_the_audit_trail(clean_redis: str) -> None:
    """The letter's removal ran but its reply was lost (a dropped connection): the
    administrator is told to ask again (503) and, asking again, that there is no such
    letter (404). The discard was made all the same, and it is in the audit trail, once:
    the one record of a letter nobody replayed."""
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url, running("dispatch", proxy_url) as svc:
        first, second = await two_dead_letters_of_garbage(svc)
        r = await svc.client.delete(f"/v1/admin/dead-letters/{STREAM}/{first}", headers=ADMIN)
        assert r.status_code == 204, r.text  # (what removes a letter is known to Redis now)

        # the second's look-up goes through; the reply of what removes it is lost
        proxy.marker, proxy.skip = second.encode(), 1
        path = f"/v1/admin/dead-letters/{STREAM}/{second}"
        r = await svc.client.delete(path, headers=ADMIN)
        assert proxy.eaten == 1
        assert r.status_code in (204, 503), r.text
        if r.status_code == 503:  # asked again, as told
            r = await svc.client.delete(path, headers=ADMIN)
            assert r.status_code in (204, 404), r.text
        assert not await svc.redis.xrange(f"dlq.{STREAM}", min=second, max=second)
        (entry,) = [e for e in await audited(svc)
                    if e["action"] == "dead_letter.discard" and second in e["target"]]
        assert entry["target"] == f"{STREAM}/{second}"


async def test_a_replay_whose_reply_was_lost_is_in_the_audit_trail(clean_redis: str) -> None:
    """As a discard: the letter put back on its stream and removed, the reply lost, the
    replay is in the audit trail, once, however the administrator was answered."""
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url, running("dispatch", proxy_url) as svc:
        first, second = await two_dead_letters_of_garbage(svc)
        r = await svc.client.delete(f"/v1/admin/dead-letters/{STREAM}/{first}", headers=ADMIN)
        assert r.status_code == 204, r.text  # (what removes a letter is known to Redis now)

        # its look-up goes through; the reply of what removes it is lost
        proxy.marker, proxy.skip = second.encode(), 1
        path = f"/v1/admin/dead-letters/{STREAM}/{second}/replay"
        entries = await svc.redis.xlen(STREAM)
        r = await svc.client.post(path, headers=ADMIN)
        assert proxy.eaten == 1
        assert r.status_code in (200, 503), r.text
        if r.status_code == 503:  # asked again, as told
            r = await svc.client.post(path, headers=ADMIN)
            assert r.status_code in (200, 404), r.text
        assert not await svc.redis.xrange(f"dlq.{STREAM}", min=second, max=second)
        assert await svc.redis.xlen(STREAM) == entries + 1  # put back once
        (entry,) = [e for e in await audited(svc) if e["action"] == "dead_letter.replay"]
        assert entry["target"] == f"{STREAM}/{second}"
