"""The audit trail: every admin and dispatcher action, with who, what and when.

Each service appends to a stream under its own key prefix (`intake:audit`,
`roster:audit`, ...) and serves it to the admin at
`GET /v1/admin/audit`. Entries name objects by id and never carry personal data.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from redis.asyncio import Redis

from shared.dead_letters import EntryId
from shared.events import utcnow
from shared.http import InputFirstRoute, Principal, require
from shared.streams import KEY_PREFIX

# The newest actions kept per service: ~200 bytes each in Redis's memory, so about 40 MB per
# service at the cap (a million, as before, could take 800 MB of the four: most of
# REDIS_MAXMEMORY, and then every write, new incidents among them, is refused). At a few
# hundred actions a day that is more than a year; export it for longer (operations.md).
AUDIT_MAXLEN = 200_000


def audit_key(service: str) -> str:
    return f"{KEY_PREFIX[service]}audit"


def entry(who: Principal, action: str, target: str, detail: str = "") -> dict[str, str]:
    """An audit entry's fields, for `record` or a script that writes it with its action."""
    return {"at": utcnow().isoformat(), "who": f"{who.kind}:{who.subject}", "action": action,
            "target": target, "detail": detail[:500]}


async def record(redis: Redis, service: str, who: Principal, action: str, target: str,
                 detail: str = "") -> None:
    await redis.xadd(audit_key(service), entry(who, action, target, detail),
                     maxlen=AUDIT_MAXLEN, approximate=True)


def build_router(*, redis: Redis, service: str) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["operations"], route_class=InputFirstRoute)

    @router.get("/audit", summary="Admin and dispatcher actions, newest first")
    async def audit(
        _: Annotated[Principal, Depends(require("admin"))],
        limit: int = Query(default=100, ge=1, le=1000),
        before: Annotated[EntryId | None,
                          Query(description="an entry id: page back from it")] = None,
    ) -> dict[str, Any]:
        if before is not None and before.strip("0-") == "":
            return {"entries": [], "count": 0}  # nothing comes before 0-0
        end = f"({before}" if before else "+"
        entries = await redis.xrevrange(audit_key(service), max=end, count=limit)
        rows = [{"id": _s(entry_id), **{_s(k): _s(v) for k, v in fields.items()}}
                for entry_id, fields in entries]
        return {"entries": rows, "count": len(rows)}

    return router


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
