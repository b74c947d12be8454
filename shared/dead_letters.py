"""Dead letters: list what a service's consumers gave up on, and replay one after a fix.

Each service serves `GET /v1/admin/dead-letters` and
`POST /v1/admin/dead-letters/{stream}/{entry_id}/replay` (admin) for the streams it reads.
A replay puts the original payload back on its stream as a new entry (every consumer is
idempotent, so groups that had processed it change nothing) and removes the dead letter.
"""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis

from shared import streams
from shared.http import ApiError, Principal, not_found, require

log = logging.getLogger(__name__)
# Module level: with postponed annotations FastAPI resolves route hints in module globals.
Admin = Annotated[Principal, Depends(require("admin"))]

# A stream entry id as Redis reads it: `<ms>-<seq>`, each an unsigned 64-bit number. ASCII
# digits only: `\d` admits other scripts' digits, and 20 digits go past 2**64 - 1, both of
# which Redis refuses ("Invalid stream ID"), which would be a 500.
ENTRY_ID_PART_MAX = 2**64 - 1


def _fits_redis(value: str) -> str:
    if any(int(part) > ENTRY_ID_PART_MAX for part in value.split("-")):
        raise PydanticCustomError(
            "stream_entry_id", f"is not a stream entry id: each part is at most {ENTRY_ID_PART_MAX}")
    return value


# The pattern inside the type, not in Query()/Path(): so it is checked before the part bound
# and the OpenAPI document shows it.
EntryId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$"),
                    AfterValidator(_fits_redis)]


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value is not None else None


def _view(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    payload = fields.get(b"payload", b"")
    return {
        "stream": stream,
        "dead_letter_id": entry_id.decode(),
        "original_entry_id": _text(fields.get(b"entry_id")),
        "group": _text(fields.get(b"group")),
        "reason": _text(fields.get(b"reason")),
        "attempts": int(fields.get(b"attempts", b"0") or 0),
        "dead_at": _text(fields.get(b"dead_at")),
        # the payload may hold personal data: admins only, and never logged
        "payload_base64": base64.b64encode(payload).decode(),
    }


async def list_dead_letters(redis: Redis, stream: str, *, count: int) -> list[dict[str, Any]]:
    entries = await redis.xrevrange(f"dlq.{stream}", count=count)
    return [_view(stream, entry_id, fields) for entry_id, fields in entries]


async def replay(redis: Redis, stream: str, dead_letter_id: str) -> str:
    entries = await redis.xrange(f"dlq.{stream}", min=dead_letter_id, max=dead_letter_id)
    if not entries:
        raise not_found("dead letter")
    _, fields = entries[0]
    new_id = await redis.xadd(stream, {"__data__": fields[b"payload"]})
    await redis.xdel(f"dlq.{stream}", dead_letter_id)
    log.warning("replayed dead letter %s of %s as %s", dead_letter_id, stream, new_id)
    return new_id.decode() if isinstance(new_id, bytes) else str(new_id)


def build_router(*, redis_url: str, service: str) -> APIRouter:
    """`redis_url`: a bytes client is made here, since payloads are binary envelopes."""
    readable = {s.name for s in streams.consumed_by(service)}
    client = Redis.from_url(redis_url)
    router = APIRouter(prefix="/v1/admin", tags=["operations"])

    def check(stream: str) -> None:
        if stream not in readable:
            raise ApiError(422, "invalid_field",
                           f"stream must be one of: {', '.join(sorted(readable))}", "stream")

    @router.get("/dead-letters", summary="Dead letters of the streams this service reads")
    async def dead_letters(
        _: Admin,
        stream: str | None = Query(default=None, max_length=64),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> dict[str, Any]:
        names = [stream] if stream else sorted(readable)
        if stream:
            check(stream)
        rows: list[dict[str, Any]] = []
        for name in names:
            rows += await list_dead_letters(client, name, count=limit)
        return {"dead_letters": rows[:limit], "count": min(len(rows), limit)}

    @router.post("/dead-letters/{stream}/{dead_letter_id}/replay",
                 summary="Put a dead letter back on its stream")
    async def replay_one(
        stream: str,
        dead_letter_id: Annotated[EntryId, Path(description="the dead letter's entry id")],
        _: Admin,
    ) -> dict[str, str]:
        check(stream)
        new_id = await replay(client, stream, dead_letter_id)
        return {"stream": stream, "replayed_as": new_id}

    return router
